//! Compaction: dropping history at or before a revision, as etcd's
//! `kvstore_compaction.go` + `keyIndex.compact`.
//!
//! Compaction at `C` keeps, per key, the latest revision `<= C` (a tombstone
//! exactly at `C` included, as etcd ≥ 3.5.14 does so a watch from `C` still
//! gets the delete) and everything after `C`; it drops every older revision and
//! every generation that ended before `C`, and removes keys with nothing left.
//! Reads at any revision `>= C` give the same answers before and after.
//!
//! Steps (all under the writer mutex, so no write txn runs meanwhile):
//! 1. ask the key index which revisions `<= C` survive (no change yet);
//! 2. scan [`Table::Key`] up to `C` and batch a delete of every other revision,
//!    plus `finishedCompactRev = C` and the applied index (one atomic batch, so
//!    a crash leaves either the old or the new state, never half);
//! 3. publish `C` under the exclusive compaction lock — this waits for readers
//!    that checked against the old compact revision, and makes later readers
//!    below `C` fail with `Compacted`;
//! 4. write the batch, then compact the key index.
//!
//! If the engine write fails, the old compact revision is restored and nothing
//! else changed.

use std::sync::atomic::Ordering;

use crate::engine::{Table, WriteBatch};

use super::error::MvccError;
use super::meta::{self, AppliedIndex};
use super::rebuild::try_scan;
use super::revision::{Revision, RevisionKey};
use super::store::MvccStore;

impl MvccStore {
    /// etcd compaction semantics (keyIndex.compact); see the module docs.
    /// Errors: rev <= compact_revision => Compacted; rev > current =>
    /// FutureRevision. Saves `applied` in the same batch; on error nothing is
    /// saved, so a caller applying a raft entry that failed this way must still
    /// record it with [`MvccStore::set_applied`].
    pub fn compact(&self, rev: i64, applied: AppliedIndex) -> Result<(), MvccError> {
        let _writer = self.writer.lock();
        let old = self.compact_rev.load(Ordering::Acquire);
        if rev <= old {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev.load(Ordering::Acquire) {
            return Err(MvccError::FutureRevision);
        }

        let keep = self.index.compact_keep(rev);
        let mut batch = WriteBatch::default();
        let end = Revision::new(rev + 1, 0).to_bytes();
        try_scan(self.engine.as_ref(), Table::Key, Some(&end), &mut |k, _| {
            if !keep.contains(&RevisionKey::decode(k)?.rev) {
                batch.delete(Table::Key, k.to_vec());
            }
            Ok(())
        })?;
        meta::put_finished_compact(&mut batch, rev);
        meta::put_applied(&mut batch, applied);

        {
            let _exclusive = self.compaction.write();
            self.compact_rev.store(rev, Ordering::Release);
        }
        if let Err(e) = self.engine.write(batch) {
            let _exclusive = self.compaction.write();
            self.compact_rev.store(old, Ordering::Release);
            return Err(e.into());
        }
        self.index.compact(rev);
        *self.applied.lock() = applied;
        self.engine.compacted(Table::Key, &end);
        Ok(())
    }
}
