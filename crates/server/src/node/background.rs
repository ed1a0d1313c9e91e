//! Periodic snapshots of a volatile engine (the memory engine), written by a
//! thread of their own so the raft thread does not stall while the whole
//! state is dumped (hundreds of milliseconds at a million keys).
//!
//! The raft thread takes the dump (`MvccStore::deferred_dump`: the state as
//! of the applied index, however long the writing takes), starts the
//! writer, goes on applying, and records the snapshot (WAL marker, log
//! trimmed) once the file is saved: see `Runner::finish_background_snapshot`.
//! Invariants: at most one runs at a time; a crash before the marker leaves
//! a file that no marker names, which `LogStore::open` removes.

use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::SnapshotMetadata;
use raftlog::SnapshotStore;
use storage::DeferredDump;

pub(super) struct BackgroundSnapshot {
    pub(super) index: u64,
    pub(super) term: u64,
    started: Instant,
    thread: JoinHandle<io::Result<()>>,
}

impl BackgroundSnapshot {
    /// Starts writing `dump` as the snapshot file for `meta`.
    pub(super) fn start(store: SnapshotStore, meta: SnapshotMetadata, dump: DeferredDump) -> io::Result<Self> {
        let (index, term) = (meta.index, meta.term);
        let thread = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            // Tests make the disk fail here (error) or the writer slow (sleep).
            if failpoint::hit("snapshot::save") {
                return Err(io::Error::other("failpoint snapshot::save"));
            }
            let mut dump = Some(dump);
            let mut write = |w: &mut dyn io::Write| match dump.take() {
                Some(d) => d(w).map_err(io::Error::other),
                None => Err(io::Error::other("the snapshot dump was already written")),
            };
            let start = Instant::now();
            let saved = store.save(&meta, &mut write).map(drop).map_err(io::Error::other);
            crate::metrics::get().disk.snap_save.observe(crate::metrics::since(start));
            saved
        })?;
        Ok(BackgroundSnapshot { index, term, started: Instant::now(), thread })
    }

    pub(super) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the writer; returns how long the snapshot took.
    pub(super) fn join(self) -> (io::Result<()>, Duration) {
        let result =
            self.thread.join().unwrap_or_else(|_| Err(io::Error::other("the snapshot writer thread panicked")));
        (result, self.started.elapsed())
    }
}
