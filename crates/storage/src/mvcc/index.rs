//! [`TreeIndex`]: the in-memory map from key to [`KeyIndex`], shared by readers
//! and the single writer.
//!
//! It is a lock-free skip list of keys; each key's history sits behind its own
//! mutex, held only for the nanoseconds of one lookup or append. Readers
//! therefore never wait for the writer beyond that.
//!
//! Invariants:
//! - Only the writer (who holds `MvccStore`'s writer mutex) inserts keys,
//!   appends revisions, compacts, or removes keys. Readers only look up.
//! - Readers always pass an explicit revision and see only revisions `<=` it,
//!   so revisions the writer appends for a not-yet-published txn are invisible
//!   to them.
//! - A key whose history becomes empty through compaction is removed; a reader
//!   that still holds it sees an empty history, i.e. "no such key" — which is
//!   right, because compaction only empties keys that do not exist at any
//!   revision `>=` the compaction revision.

use std::collections::HashSet;

use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

use super::key_index::{KeyAt, KeyIndex};
use super::range::KeyRange;
use super::revision::Revision;

/// Key -> history. See the module docs.
#[derive(Default)]
pub struct TreeIndex {
    /// Boxed slices, not `Vec`s: the key lives in the skip-list node, and a
    /// capacity word per key is memory that 1M keys notice.
    map: SkipMap<Box<[u8]>, Mutex<KeyIndex>>,
}

impl TreeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held (including keys that only have history).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The key's version at `at_rev`, None if it did not exist then.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        let entry = self.map.get(key)?;
        let ki = entry.value().lock();
        if ki.is_empty() {
            return None;
        }
        ki.get(at_rev)
    }

    /// Calls `visit` for each key in `range` that exists at `at_rev`, in
    /// ascending key order, until `visit` returns false.
    pub fn visit(&self, range: &KeyRange, at_rev: i64, mut visit: impl FnMut(&[u8], KeyAt) -> bool) {
        if let KeyRange::Single(k) = range {
            if let Some(at) = self.get(k, at_rev) {
                visit(k, at);
            }
            return;
        }
        let Some(bounds) = range.bounds() else {
            return;
        };
        for entry in self.map.range::<[u8], _>(bounds) {
            let at = {
                let ki = entry.value().lock();
                if ki.is_empty() {
                    None
                } else {
                    ki.get(at_rev)
                }
            };
            if let Some(at) = at {
                if !visit(entry.key(), at) {
                    return;
                }
            }
        }
    }

    /// The revision before `rev` in the same generation of `key` (writer or
    /// reader; see [`KeyIndex::prev_in_generation`]).
    pub fn prev_in_generation(&self, key: &[u8], rev: Revision) -> Option<Revision> {
        let entry = self.map.get(key)?;
        let ki = entry.value().lock();
        ki.prev_in_generation(rev)
    }

    /// Writer only: appends a put.
    pub fn put(&self, key: &[u8], rev: Revision) {
        let entry = self.map.get_or_insert_with(key.into(), || Mutex::new(KeyIndex::new()));
        entry.value().lock().put(rev);
    }

    /// Writer only: appends a tombstone. Returns false if the key does not
    /// exist now (nothing changes).
    #[must_use]
    pub fn tombstone(&self, key: &[u8], rev: Revision) -> bool {
        match self.map.get(key) {
            Some(entry) => entry.value().lock().tombstone(rev),
            None => false,
        }
    }

    /// The revisions compaction at `at_rev` keeps among those `<= at_rev`
    /// (one per key at most). Does not change the index.
    pub fn compact_keep(&self, at_rev: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for entry in self.map.iter() {
            let ki = entry.value().lock();
            if ki.is_empty() {
                continue;
            }
            if let Some(rev) = ki.compact_keep(at_rev) {
                keep.insert(rev);
            }
        }
        keep
    }

    /// Writer only: compacts every key at `at_rev` and removes keys left empty.
    pub fn compact(&self, at_rev: i64) {
        for entry in self.map.iter() {
            let emptied = {
                let mut ki = entry.value().lock();
                if !ki.is_empty() {
                    ki.compact(at_rev);
                }
                ki.is_empty()
            };
            if emptied {
                entry.remove();
            }
        }
    }

    /// Writer only: replaces the whole contents (restart, snapshot install).
    pub fn replace_all(&self, keys: impl IntoIterator<Item = (Vec<u8>, KeyIndex)>) {
        self.map.clear();
        for (k, ki) in keys {
            self.map.insert(k.into_boxed_slice(), Mutex::new(ki));
        }
    }

    /// A copy of every key's history, in key order (tests and diagnostics).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(Vec<u8>, KeyIndex)> {
        self.map.iter().map(|e| (e.key().to_vec(), e.value().lock().clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: i64) -> Revision {
        Revision::new(m, 0)
    }

    fn keys(idx: &TreeIndex, range: &KeyRange, at: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        idx.visit(range, at, |k, _| {
            out.push(k.to_vec());
            true
        });
        out
    }

    #[test]
    fn visit_respects_range_and_revision() {
        let idx = TreeIndex::new();
        idx.put(b"a", r(2));
        idx.put(b"b", r(3));
        idx.put(b"c", r(4));
        assert!(idx.tombstone(b"b", r(5)));
        assert!(!idx.tombstone(b"zz", r(6)));
        let all = KeyRange::from_etcd(b"a", b"\0");
        assert_eq!(keys(&idx, &all, 4), [b"a", b"b", b"c"]);
        assert_eq!(keys(&idx, &all, 5), [b"a", b"c"]);
        assert_eq!(keys(&idx, &all, 2), [b"a"]);
        assert_eq!(keys(&idx, &KeyRange::from_etcd(b"b", b"c"), 4), [b"b"]);
        assert_eq!(keys(&idx, &KeyRange::from_etcd(b"c", b"a"), 4).len(), 0);
        assert_eq!(keys(&idx, &KeyRange::from_etcd(b"c", b""), 4), [b"c"]);
        let mut n = 0;
        idx.visit(&all, 4, |_, _| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn compact_removes_dead_keys_and_reports_keep() {
        let idx = TreeIndex::new();
        idx.put(b"a", r(2));
        idx.put(b"b", r(3));
        assert!(idx.tombstone(b"a", r(4)));
        idx.put(b"b", r(5));
        let keep = idx.compact_keep(5);
        assert_eq!(keep, [r(5)].into_iter().collect());
        idx.compact(5);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get(b"a", 5), None);
        assert_eq!(idx.get(b"b", 5).map(|k| k.version), Some(2));
        // Tombstone exactly at the compaction revision is kept.
        assert!(idx.tombstone(b"b", r(6)));
        assert_eq!(idx.compact_keep(6), [r(6)].into_iter().collect());
        idx.compact(6);
        assert_eq!(idx.len(), 1);
        idx.compact(7);
        assert!(idx.is_empty());
    }
}
