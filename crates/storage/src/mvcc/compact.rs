//! Compaction: dropping history at or before a revision, as etcd's
//! `kvstore.go` (`Compact`, `updateCompactRev`) + `kvstore_compaction.go` +
//! `keyIndex.compact`.
//!
//! Compaction at `C` keeps, per key, the latest revision `<= C` (a tombstone
//! exactly at `C` included, as etcd ≥ 3.5.14 does so a watch from `C` still
//! gets the delete) and everything after `C`; it drops every older revision and
//! every generation that ended before `C`, and removes keys with nothing left.
//! Reads at any revision `>= C` give the same answers before, during and after.
//!
//! It happens in two halves, so that applying it is cheap:
//! 1. **Apply** ([`MvccStore::compact`], on the raft apply loop, under the
//!    writer mutex): check `C` (Compacted / FutureRevision), write
//!    `scheduledCompactRev = C` with the applied index (one small batch),
//!    publish `C` — from then on reads below `C` fail — and hand `C` to the
//!    compactor. No scan, no wait for readers: O(1).
//! 2. **Physical deletion** (`compactor.rs`, a thread of the store's own):
//!    after a reader grace period, deletes the dropped revisions in batches
//!    of [`CompactionConfig::batch_revisions`](super::CompactionConfig), each
//!    its own engine write, compacting the key index alongside; its last
//!    batch writes `finishedCompactRev = C`.
//!
//! Crash safety: every batch is atomic and deletes only revisions no read at
//! `>= C` needs, so any prefix of the batches is a valid state. On open,
//! `scheduledCompactRev > finishedCompactRev` means a compaction was cut
//! short: the compact revision is the scheduled one at once, and the
//! compactor finishes the job (etcd's `restore` resuming `scheduledCompact`).
//! The same holds for a snapshot taken mid-way (memory engine) once it is
//! installed.
//!
//! Things that must not depend on how far the deletion got, and do not:
//! range reads (above), watch replay from `C` (`events_between` answers at
//! `C` as if compacted), HashKV (its keep set is at or below what compaction
//! keeps; see `TreeIndex::hash_keep`). etcd's `physical` flag, waiting for
//! the deletion, is [`MvccStore::wait_compacted`].
//!
//! Example: history `a@2 a@3 b@4 b@5(t) a@6`, compact(5): apply publishes 5
//! (a read at 4 now fails; at 5 it sees `a@3` only); the compactor deletes
//! `a@2`, `b@4`, keeps `b@5(t)` (a tombstone exactly at 5), `a@3` and `a@6`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::engine::WriteBatch;

use super::compactor::Step;
use super::error::MvccError;
use super::meta::{self, AppliedIndex};
use super::store::MvccStore;

impl MvccStore {
    /// Applies a compaction at `rev` (see the module docs): returns once it is
    /// recorded and published; the old revisions are deleted in the
    /// background. Errors: rev <= compact_revision => Compacted; rev > current
    /// => FutureRevision. Saves `applied` in the same batch; on error nothing
    /// is saved, so a caller applying a raft entry that failed this way must
    /// still record it with [`MvccStore::set_applied`].
    pub fn compact(&self, rev: i64, applied: AppliedIndex) -> Result<(), MvccError> {
        let writer = self.shared.writer.lock();
        if rev <= self.compact_rev.load(Ordering::Acquire) {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev.load(Ordering::Acquire) {
            return Err(MvccError::FutureRevision);
        }
        let mut batch = WriteBatch::default();
        meta::put_scheduled_compact(&mut batch, rev);
        meta::put_applied(&mut batch, applied);
        self.shared.engine.write(batch)?;
        // Readers that checked against the old revision may still be reading:
        // the compactor waits for them before it deletes anything.
        self.compact_rev.store(rev, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *self.applied.lock() = applied;
        self.shared.compaction.schedule(rev);
        drop(writer);
        self.kick_compactor();
        Ok(())
    }

    /// The revision the last finished compaction deleted up to (0 when none):
    /// once it reaches [`Self::compact_revision`], the old revisions are gone
    /// from the engine.
    pub fn finished_compact_revision(&self) -> i64 {
        self.shared.compaction.finished().max(0)
    }

    /// Waits up to `timeout` for the physical deletion of the compaction at
    /// `rev` (or a later one) to finish (etcd's `physical`): Ok(true) when it
    /// did, Ok(false) on timeout (also when no compaction at `rev` was
    /// applied); an error when the compactor's last batch failed (it retries
    /// by itself). Blocks the calling thread.
    pub fn wait_compacted(&self, rev: i64, timeout: Duration) -> Result<bool, MvccError> {
        self.shared.compaction.wait(rev, timeout)
    }

    /// Runs one batch of the pending physical deletion on this thread;
    /// Ok(true) while more remains. For stores opened without a background
    /// compactor (`CompactionConfig::background` false) and for tools;
    /// harmless next to the background thread (they take turns).
    pub fn compact_step(&self) -> Result<bool, MvccError> {
        Ok(match self.shared.compact_step(&|| false)? {
            Step::Idle => false,
            Step::Batch | Step::Finished(_) => self.shared.compaction.pending(),
        })
    }

    /// Runs the pending physical deletion to its end on this thread.
    pub fn finish_compaction(&self) -> Result<(), MvccError> {
        while self.compact_step()? {}
        Ok(())
    }

    /// Makes sure the background compactor runs when there is work: starts
    /// its thread (or, if no thread can be started, compacts right here).
    pub(super) fn kick_compactor(&self) {
        let ctl = &self.shared.compaction;
        if !ctl.config().background || !ctl.pending() {
            return;
        }
        if !self.compactor.ensure(&self.shared) {
            // Out of threads: slow but correct. An error stays pending and
            // is retried by the next compaction or restart.
            let _ = self.finish_compaction();
        }
    }
}

impl Drop for MvccStore {
    fn drop(&mut self) {
        self.compactor.shut_down(&self.shared);
    }
}
