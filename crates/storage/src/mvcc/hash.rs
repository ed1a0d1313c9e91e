//! What the hash checks read: etcd's HashKV inputs ([`MvccStore::hash_scan`])
//! and the raw stored history ([`MvccStore::scan_stored`], for
//! Maintenance.Hash). The server does the hashing and etcd's encoding
//! (`server::maintenance::hashkv`).
//!
//! HashKV at `rev` counts every stored revision up to `rev`, in revision
//! order, as (its revision key as stored, its key-value), where revisions at
//! or below the compacted one count only if they are the live revision of
//! their key at `rev` (etcd's `kvindex.Keep(rev)`), and a tombstone at
//! exactly the compacted revision is skipped (etcd versions disagree on
//! keeping it). The revision key bytes are etcd's bucket key, which etcd
//! hashes as is, so members with the same history hash as etcd does.
//!
//! Invariants:
//! - The inputs do not depend on how far the physical deletion of the last
//!   compaction got: the keep set (`MvccStore::hash_keep`, exact
//!   revisions) only holds revisions that compaction keeps, and nothing else
//!   at or below the compacted revision counts. So a member still compacting
//!   hashes as one that finished (corruption checks compare members at any
//!   moment).
//! - The engine is scanned without the store's locks; a compaction applied
//!   or a snapshot installed meanwhile (`MvccStore::history_epoch`
//!   changed) makes the scan start over with a fresh hasher, [`HASH_ATTEMPTS`]
//!   times at most, then [`MvccError::StoreChanged`].
//! - Both read the whole history: callers run them off async workers.

use std::collections::HashSet;

use crate::schema::Table;

use super::error::MvccError;
use super::kv::{decode_kv, KeyValue};
use super::rebuild::try_scan;
use super::revision::{Revision, RevisionKey};
use super::store::MvccStore;

/// Scans started over because the store changed under them, at most.
pub const HASH_ATTEMPTS: usize = 3;

/// What [`MvccStore::hash_scan`] returns.
#[derive(Debug)]
pub struct HashScan<H> {
    /// The caller's hasher after it was fed the whole input.
    pub hasher: H,
    /// The compact revision the scan honoured (-1 when never compacted).
    pub compact_revision: i64,
}

impl MvccStore {
    /// Feeds etcd's HashKV inputs at `rev` (0: the current revision) to a
    /// hasher made by `start`: `feed` gets each counted revision's key as
    /// stored and its key-value, in revision order (see the module docs).
    /// When the store changes under the scan, a new hasher is started and
    /// the scan repeated. Errors as [`Self::range`] at `rev`.
    pub fn hash_scan<H>(
        &self,
        rev: i64,
        mut start: impl FnMut() -> H,
        mut feed: impl FnMut(&mut H, &[u8], KeyValue),
    ) -> Result<HashScan<H>, MvccError> {
        let rev = if rev <= 0 { self.current_revision() } else { rev };
        for _ in 0..HASH_ATTEMPTS {
            let epoch = self.history_epoch();
            let (keep, compact) = self.hash_keep(rev)?;
            let mut hasher = start();
            scan_hash_inputs(self, rev, compact, &keep, &mut |k, kv| feed(&mut hasher, k, kv))?;
            if self.history_epoch() == epoch {
                return Ok(HashScan { hasher, compact_revision: compact });
            }
        }
        Err(MvccError::StoreChanged { attempts: HASH_ATTEMPTS })
    }

    /// Visits every stored revision as stored (encoded revision key, encoded
    /// key-value), in revision order, compacted ones not yet deleted
    /// included: a checksum of the bytes on disk (Maintenance.Hash). Not one
    /// consistent state while writes and compaction go on, as etcd's.
    pub fn scan_stored(&self, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), MvccError> {
        Ok(self.engine().scan(Table::Key, &[], None, &mut |k, v| {
            visit(k, v);
            true
        })?)
    }
}

/// The stored history up to `rev` given the compact revision and its keep
/// set, fed to `visit` (see the module docs).
fn scan_hash_inputs(
    store: &MvccStore,
    rev: i64,
    compact: i64,
    keep: &HashSet<Revision>,
    visit: &mut dyn FnMut(&[u8], KeyValue),
) -> Result<(), MvccError> {
    let end = Revision::new(rev.saturating_add(1), 0).to_bytes();
    try_scan(store.engine().as_ref(), Table::Key, Some(&end), &mut |k, v| {
        let rk = RevisionKey::decode(k)?;
        if rk.rev.main <= compact && (rk.tombstone && rk.rev.main == compact || !keep.contains(&rk.rev)) {
            return Ok(());
        }
        visit(k, decode_kv(v)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{AppliedIndex, CompactionConfig, KeyRange, MemoryEngine};

    /// 30 keys, 400 txns: puts, deletes, and txns that put a key twice.
    fn history(batch_revisions: usize) -> MvccStore {
        let config = CompactionConfig { batch_revisions, background: false, ..CompactionConfig::default() };
        let s = MvccStore::open_with(Arc::new(MemoryEngine::new()), config).unwrap();
        for n in 0..400u64 {
            let key = format!("k{:02}", (n * 13) % 30).into_bytes();
            let mut t = s.write_txn();
            if n % 5 == 2 {
                t.delete_range(&KeyRange::Single(key.clone())).unwrap();
            }
            t.put(&key, format!("v{n}").as_bytes(), 0);
            if n % 3 == 0 {
                t.put(&key, format!("w{n}").as_bytes(), 0);
            }
            t.commit(AppliedIndex { index: n + 1, term: 1 }).unwrap();
        }
        s
    }

    type Inputs = Vec<(Vec<u8>, KeyValue)>;

    /// The HashKV inputs at `rev` and the compact revision.
    fn inputs(s: &MvccStore, rev: i64) -> (Inputs, i64) {
        let scan = s.hash_scan(rev, Vec::new, |v: &mut Inputs, k, kv| v.push((k.to_vec(), kv))).unwrap();
        (scan.hasher, scan.compact_revision)
    }

    #[test]
    fn the_inputs_do_not_depend_on_how_far_compaction_got() {
        let s = history(3);
        let at = 300;
        s.compact(at, AppliedIndex { index: 1000, term: 1 }).unwrap();
        let revs = [at, at + 1, 350, s.current_revision()];
        let want: Vec<(Inputs, i64)> = revs.iter().map(|&r| inputs(&s, r)).collect();
        assert!(want.iter().all(|(_, c)| *c == at));
        let mut batches = 0;
        while s.compact_step().unwrap() {
            batches += 1;
            let got: Vec<(Inputs, i64)> = revs.iter().map(|&r| inputs(&s, r)).collect();
            assert_eq!(got, want, "after {batches} batches");
        }
        assert!(batches > 10);
        let got: Vec<(Inputs, i64)> = revs.iter().map(|&r| inputs(&s, r)).collect();
        assert_eq!(got, want, "finished");
        // A member that compacted in one go agrees.
        let other = history(1_000_000);
        other.compact(at, AppliedIndex { index: 1000, term: 1 }).unwrap();
        other.finish_compaction().unwrap();
        let got: Vec<(Inputs, i64)> = revs.iter().map(|&r| inputs(&other, r)).collect();
        assert_eq!(got, want, "compacted in one batch");
        assert!(matches!(s.hash_scan(at - 1, || (), |_, _, _| ()), Err(MvccError::Compacted)));
        let future = s.current_revision() + 1;
        assert!(matches!(s.hash_scan(future, || (), |_, _, _| ()), Err(MvccError::FutureRevision)));
    }

    /// What is counted, on a small history: every revision up to `rev` with
    /// its stored key (etcd's bytes) and key-value; below the compaction only
    /// each key's live revision, and no tombstone at the compact revision.
    #[test]
    fn the_inputs_are_the_kept_revisions_in_order() {
        let s = MvccStore::open_with(
            Arc::new(MemoryEngine::new()),
            CompactionConfig { background: false, ..CompactionConfig::default() },
        )
        .unwrap();
        let put = |k: &[u8], v: &[u8], i: u64| {
            let mut t = s.write_txn();
            t.put(k, v, 0);
            t.commit(AppliedIndex { index: i, term: 1 }).unwrap();
        };
        put(b"a", b"1", 1); // 2
        put(b"b", b"1", 2); // 3
        put(b"a", b"2", 3); // 4
        let mut t = s.write_txn();
        t.delete_range(&KeyRange::Single(b"b".to_vec())).unwrap();
        t.commit(AppliedIndex { index: 4, term: 1 }).unwrap(); // 5
        put(b"c", b"1", 5); // 6
        let revs = |s: &MvccStore, rev| -> Vec<(i64, bool, Vec<u8>)> {
            inputs(s, rev)
                .0
                .into_iter()
                .map(|(k, kv)| {
                    let rk = RevisionKey::decode(&k).unwrap();
                    assert_eq!(k, rk.encode(), "the key as stored");
                    (rk.rev.main, rk.tombstone, kv.key)
                })
                .collect()
        };
        let all = vec![
            (2, false, b"a".to_vec()),
            (3, false, b"b".to_vec()),
            (4, false, b"a".to_vec()),
            (5, true, b"b".to_vec()),
            (6, false, b"c".to_vec()),
        ];
        assert_eq!(revs(&s, 0), all, "0 is the current revision");
        assert_eq!(revs(&s, 4), all[..3]);
        assert_eq!(inputs(&s, 4).0[2].1.value, b"2");
        assert_eq!(inputs(&s, 6).1, -1, "never compacted");
        s.compact(5, AppliedIndex { index: 6, term: 1 }).unwrap();
        // At 5: a's live revision is 4, b was deleted at 5 (the tombstone at
        // the compact revision is not counted).
        assert_eq!(revs(&s, 5), [(4, false, b"a".to_vec())]);
        assert_eq!(revs(&s, 6), [(4, false, b"a".to_vec()), (6, false, b"c".to_vec())]);
        s.finish_compaction().unwrap();
        assert_eq!(revs(&s, 6), [(4, false, b"a".to_vec()), (6, false, b"c".to_vec())]);
        assert_eq!(inputs(&s, 6).1, 5);
    }

    #[test]
    fn scan_stored_visits_every_stored_pair() {
        let s = history(1_000_000);
        let mut got = Vec::new();
        s.scan_stored(&mut |k, v| got.push((k.to_vec(), v.to_vec()))).unwrap();
        assert!(got.len() > 400);
        assert_eq!(got, crate::conformance::all_pairs(s.engine().as_ref(), Table::Key));
    }
}
