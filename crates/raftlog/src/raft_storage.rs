//! [`RaftStorage`]: the `raft::Storage` to hand to `RawNode`.
//!
//! It delegates everything to the shared [`MemStorage`] except
//! `snapshot()`: `MemStorage` would answer with an empty-data snapshot
//! labelled with the current commit index, which is useless to a follower.
//! `RaftStorage` serves the newest verified snapshot file instead, data
//! included, so a leader can send `MsgSnapshot` without further help.
//!
//! Invariant: the served snapshot's index is never below the log's
//! `first_index() - 1` (local snapshots compact the log only below their own
//! index), so a follower can always continue from it with log entries.

use std::io::Read;

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::snapfile::SnapshotStore;

/// `MemStorage` plus on-disk snapshots; cheap to clone (shared state).
#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    snaps: SnapshotStore,
}

impl RaftStorage {
    pub(crate) fn new(mem: MemStorage, snaps: SnapshotStore) -> RaftStorage {
        RaftStorage { mem, snaps }
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

    /// The newest snapshot file with its data; `SnapshotTemporarilyUnavailable`
    /// when there is none yet or it is older than `request_index`.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let loaded = self
            .snaps
            .load_latest()
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        match loaded {
            Some((meta, mut reader)) if meta.index >= request_index => {
                let mut data = Vec::new();
                reader.read_to_end(&mut data)?;
                let mut snap = Snapshot::default();
                snap.set_metadata(meta);
                snap.set_data(data.into());
                Ok(snap)
            }
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}
