//! [`TreeIndex`]: the in-memory map from key to [`KeyIndex`], shared by readers
//! and the single writer.
//!
//! It is a lock-free skip list of keys; each key's history sits behind its own
//! mutex, held only for the nanoseconds of one lookup or append. Readers
//! therefore never wait for the writer beyond that.
//!
//! Invariants:
//! - Only the writer (who holds `MvccStore`'s writer mutex) inserts keys,
//!   appends revisions, compacts, or removes keys. Readers only look up; the
//!   compactor plans its slices without the mutex (`compact_slice` changes
//!   nothing) and takes it to apply them (`compact_keys`).
//! - Readers always pass an explicit revision and see only revisions `<=` it,
//!   so revisions the writer appends for a not-yet-published txn are invisible
//!   to them.
//! - A key whose history becomes empty through compaction is removed; a reader
//!   that still holds it sees an empty history, i.e. "no such key" — which is
//!   right, because compaction only empties keys that do not exist at any
//!   revision `>=` the compaction revision.

use std::collections::HashSet;
use std::ops::Bound;

use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

use super::key_index::{KeyAt, KeyIndex};
use super::range::KeyRange;
use super::revision::{Revision, RevisionKey};

/// What [`TreeIndex::compact_slice`] found.
#[derive(Debug, Default)]
pub struct CompactSlice {
    /// Keys with revisions to drop, ascending.
    pub keys: Vec<Vec<u8>>,
    /// Their revisions to drop, as stored.
    pub drops: Vec<RevisionKey>,
    /// The last key visited when the slice stopped early; None when it
    /// reached the end of the index.
    pub next: Option<Vec<u8>>,
    /// The stored index: each key's history as the slice read it, before
    /// compaction (the in-memory index compacts its own, under the writer
    /// mutex, and leaves this empty).
    pub histories: Vec<KeyIndex>,
}

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

    /// The next slice of a compaction at `at_rev`: visits keys after `after`
    /// (from the first key when None) in key order, and gathers the keys that
    /// have revisions to drop and those revisions, until `max_revs` revisions
    /// or `max_keys` visited keys. Changes nothing, so it needs no lock: the
    /// writer only appends revisions above any published compaction, which
    /// leaves what compaction at `at_rev` drops unchanged.
    pub fn compact_slice(&self, after: Option<&[u8]>, at_rev: i64, max_keys: usize, max_revs: usize) -> CompactSlice {
        let mut slice = CompactSlice::default();
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let mut visited = 0;
        for entry in self.map.range::<[u8], _>((lower, Bound::Unbounded)) {
            let drops = entry.value().lock().compact_drops(at_rev);
            if !drops.is_empty() {
                slice.keys.push(entry.key().to_vec());
                slice.drops.extend(drops);
            }
            visited += 1;
            if visited >= max_keys || slice.drops.len() >= max_revs {
                slice.next = Some(entry.key().to_vec());
                return slice;
            }
        }
        slice
    }

    /// Writer only: compacts `keys` at `at_rev` (after their dropped
    /// revisions left the engine) and removes those left empty.
    pub fn compact_keys(&self, keys: &[Vec<u8>], at_rev: i64) {
        for key in keys {
            let Some(entry) = self.map.get(&key[..]) else {
                continue;
            };
            let emptied = {
                let mut ki = entry.value().lock();
                ki.compact(at_rev);
                ki.is_empty()
            };
            if emptied {
                entry.remove();
            }
        }
    }

    /// HashKV's keep set (etcd's `kvindex.Keep(rev)` as the hasher uses it):
    /// the revision each key that exists at `rev` has there, when that
    /// revision is at or below `compact`. Compaction at `compact` keeps every
    /// one of them, so the set is the same before and after it.
    pub fn hash_keep(&self, rev: i64, compact: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for entry in &self.map {
            let at = entry.value().lock().get(rev);
            if let Some(at) = at.filter(|at| at.modified.main <= compact) {
                keep.insert(at.modified);
            }
        }
        keep
    }

    /// True when `key` changed again after `rev` within the same main
    /// revision (one txn changed it twice): compaction at `rev.main` drops
    /// `rev`, whether or not it did so yet.
    pub fn superseded_at(&self, key: &[u8], rev: Revision) -> bool {
        self.map.get(key).is_some_and(|e| e.value().lock().modified_after_within(rev))
    }

    /// True when `key`'s history holds `rev`.
    pub fn contains(&self, key: &[u8], rev: Revision) -> bool {
        self.map.get(key).is_some_and(|e| e.value().lock().contains(rev))
    }

    /// An index holding `keys` (restart, snapshot install).
    pub fn from_keys(keys: impl IntoIterator<Item = (Vec<u8>, KeyIndex)>) -> Self {
        let index = TreeIndex::new();
        for (k, ki) in keys {
            index.map.insert(k.into_boxed_slice(), Mutex::new(ki));
        }
        index
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

    /// Compacts the whole index the way the compactor does, in slices.
    fn compact_all(idx: &TreeIndex, at: i64, max_keys: usize, max_revs: usize) -> Vec<Revision> {
        let (mut after, mut dropped) = (None, Vec::new());
        loop {
            let slice = idx.compact_slice(after.as_deref(), at, max_keys, max_revs);
            idx.compact_keys(&slice.keys, at);
            dropped.extend(slice.drops.iter().map(|d| d.rev));
            match slice.next {
                Some(k) => after = Some(k),
                None => return dropped,
            }
        }
    }

    #[test]
    fn compact_removes_dead_keys_in_slices() {
        let idx = TreeIndex::new();
        idx.put(b"a", r(2));
        idx.put(b"b", r(3));
        assert!(idx.tombstone(b"a", r(4)));
        idx.put(b"b", r(5));
        assert_eq!(idx.hash_keep(5, 5), [r(5)].into_iter().collect());
        assert_eq!(idx.hash_keep(5, 4), HashSet::new());
        let first = idx.compact_slice(None, 5, 1, 100);
        let want = vec![RevisionKey::new(r(2), false), RevisionKey::new(r(4), true)];
        assert_eq!((first.keys.len(), first.drops, first.next.as_deref()), (1, want, Some(&b"a"[..])));
        let mut dropped = compact_all(&idx, 5, 1, 1);
        dropped.sort();
        assert_eq!(dropped, [r(2), r(3), r(4)]);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get(b"a", 5), None);
        assert_eq!(idx.get(b"b", 5).map(|k| k.version), Some(2));
        assert!(idx.contains(b"b", r(5)) && !idx.contains(b"b", r(3)) && !idx.contains(b"a", r(4)));
        // Tombstone exactly at the compaction revision is kept.
        assert!(idx.tombstone(b"b", r(6)));
        assert_eq!(compact_all(&idx, 6, 10, 10), [r(5)]);
        assert_eq!(idx.len(), 1);
        assert_eq!(compact_all(&idx, 7, 10, 10), [r(6)]);
        assert!(idx.is_empty());
    }
}
