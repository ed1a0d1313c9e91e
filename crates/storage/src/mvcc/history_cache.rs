//! [`HistoryCache`]: a bounded cache of the stored key index's histories,
//! so that reads and writes of hot keys do not go to the engine twice.
//!
//! Invariant: an entry is never older than the engine's history of its key,
//! except between the writer's engine write and its [`HistoryCache::put`] /
//! [`HistoryCache::remove`], a window in which the changed revisions are not
//! yet published (readers do not look at them). Readers fill the cache from
//! the engine without any lock of the writer's, so a reader that read a
//! history just before the writer changed it could put the old one back
//! after the writer's update. Each shard therefore counts its changes: a
//! reader notes the count before it reads the engine
//! ([`HistoryCache::ticket`]) and its [`HistoryCache::fill`] is dropped if
//! the writer changed anything in the shard since (an eviction needs not
//! count: what the reader read is still the engine's latest).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::Mutex;

use super::key_index::KeyIndex;

/// Shards, each with its own lock: readers on many threads rarely meet.
const SHARDS: usize = 64;
/// Histories held in all (about 150 bytes each: some 20 MiB).
pub const CAPACITY: usize = 131_072;

#[derive(Default)]
struct Shard {
    changes: u64,
    map: HashMap<Box<[u8]>, KeyIndex>,
}

/// See the module docs.
pub struct HistoryCache {
    hasher: RandomState,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
}

/// What a reader noted before reading a history from the engine.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    shard: usize,
    changes: u64,
}

impl HistoryCache {
    /// A cache of at most `capacity` histories.
    pub fn new(capacity: usize) -> HistoryCache {
        HistoryCache {
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// The cached history of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<KeyIndex> {
        self.shards[self.shard_of(key)].lock().map.get(key).cloned()
    }

    /// Notes the shard of `key` before its history is read from the engine.
    pub fn ticket(&self, key: &[u8]) -> Ticket {
        let shard = self.shard_of(key);
        Ticket { shard, changes: self.shards[shard].lock().changes }
    }

    /// Caches a history a reader read from the engine after taking `ticket`,
    /// unless the shard changed since.
    pub fn fill(&self, ticket: Ticket, key: &[u8], history: &KeyIndex) {
        let mut shard = self.shards[ticket.shard].lock();
        if shard.changes != ticket.changes || shard.map.contains_key(key) {
            return;
        }
        self.make_room(&mut shard);
        shard.map.insert(key.into(), history.clone());
    }

    /// Writer only: the history of `key` it just wrote to the engine.
    pub fn put(&self, key: &[u8], history: &KeyIndex) {
        let mut shard = self.shards[self.shard_of(key)].lock();
        shard.changes += 1;
        if let Some(cached) = shard.map.get_mut(key) {
            cached.clone_from(history);
            return;
        }
        self.make_room(&mut shard);
        shard.map.insert(key.into(), history.clone());
    }

    /// Writer only: `key`'s history was removed from the engine.
    pub fn remove(&self, key: &[u8]) {
        let mut shard = self.shards[self.shard_of(key)].lock();
        shard.changes += 1;
        shard.map.remove(key);
    }

    /// Evicts an arbitrary entry (the hash order's first) when the shard is
    /// full: cheap, and a hot key evicted comes back on its next read.
    fn make_room(&self, shard: &mut Shard) {
        if shard.map.len() < self.per_shard {
            return;
        }
        if let Some(victim) = shard.map.keys().next().cloned() {
            shard.map.remove(&victim);
        }
    }

    /// Histories held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Revision;

    fn history(main: i64) -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(Revision::new(main, 0));
        ki
    }

    #[test]
    fn a_fill_after_a_change_is_dropped() {
        let c = HistoryCache::new(1024);
        let t = c.ticket(b"k");
        c.put(b"k", &history(3));
        c.fill(t, b"k", &history(2));
        assert_eq!(c.get(b"k"), Some(history(3)), "the writer's history stays");
        c.remove(b"k");
        c.fill(t, b"k", &history(2));
        assert_eq!(c.get(b"k"), None, "a stale reader does not bring a removed history back");
        let t = c.ticket(b"k");
        c.fill(t, b"k", &history(4));
        assert_eq!(c.get(b"k"), Some(history(4)));
    }

    #[test]
    fn it_stays_within_its_capacity() {
        let c = HistoryCache::new(SHARDS * 2);
        for i in 0..10_000u32 {
            let key = i.to_be_bytes();
            if i % 2 == 0 {
                c.put(&key, &history(i64::from(i) + 1));
            } else {
                let t = c.ticket(&key);
                c.fill(t, &key, &history(i64::from(i) + 1));
            }
        }
        assert!(c.len() <= SHARDS * 2, "{} held", c.len());
        assert!(c.len() >= SHARDS, "{} held", c.len());
    }
}
