//! [`RaftStorage`]: the `raft::Storage` to hand to `RawNode`.
//!
//! It delegates everything to the shared [`MemStorage`] except
//! `snapshot()`: `MemStorage` would answer with an empty-data snapshot
//! labelled with the current commit index, which is useless to a follower.
//! `RaftStorage` names the newest snapshot file with data instead: the
//! returned snapshot carries its metadata only (read from the file's
//! header), and the transport checks and streams the data from that file
//! ([`crate::SnapshotStore::load_to_send`]), so a snapshot is never held in
//! memory whole, and the raft thread never reads one.
//!
//! Invariant: the served snapshot's index is never below the log's
//! `first_index() - 1` (local snapshots compact the log only below their own
//! index), so a follower can always continue from it with log entries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::snapfile::SnapshotStore;

/// `MemStorage` plus on-disk snapshots; cheap to clone (shared state).
#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    snaps: SnapshotStore,
    /// Raft asked for a snapshot that the files on disk cannot serve (too
    /// old, or from before the receiver joined): the owner should take one.
    wanted: Arc<AtomicBool>,
}

impl RaftStorage {
    pub(crate) fn new(mem: MemStorage, snaps: SnapshotStore) -> RaftStorage {
        RaftStorage { mem, snaps, wanted: Arc::new(AtomicBool::new(false)) }
    }

    /// True once after raft wanted a snapshot newer than any on disk.
    pub fn take_snapshot_request(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// The shared in-memory storage.
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// The newest snapshot file with data: its metadata (the data stays in
    /// the file, checked when the transport reads it), from the file headers
    /// only, so the raft thread never reads a whole snapshot here;
    /// `SnapshotTemporarilyUnavailable` when there is none yet or it is
    /// older than `request_index`.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let loaded =
            self.snaps.latest_with_data_meta().map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        // A snapshot is useful only if the receiver is in its configuration
        // (raft refuses it otherwise) and it reaches the log's first entry.
        let first = self.mem.first_index()?;
        let usable = |meta: &raft::eraftpb::SnapshotMetadata| {
            let cs = meta.get_conf_state();
            meta.index >= request_index
                && meta.index + 1 >= first
                && (cs.voters.contains(&to) || cs.learners.contains(&to))
        };
        match loaded {
            Some(meta) if usable(&meta) => {
                let mut snap = Snapshot::default();
                snap.set_metadata(meta);
                Ok(snap)
            }
            _ => {
                self.wanted.store(true, Ordering::Release);
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
            }
        }
    }
}
