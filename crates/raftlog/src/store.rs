//! The durable raft log used by the raft Ready loop: a [`Wal`] plus a
//! [`SnapshotStore`], mirrored into raft-rs's [`MemStorage`], which is what
//! raft reads.
//!
//! Ordering invariants (each step is durable before the next starts):
//! - `persist`: WAL append (+ fsync when `sync`) → `MemStorage` append /
//!   hard state. Raft never sees an entry the WAL could lose.
//! - `stage` then `WalWriter::write` on another thread (raft-rs's async
//!   persistence): raft reads the entries from `MemStorage` at once, but
//!   counts them as persisted (a vote, an acknowledgement, an own match for
//!   commit, apply) only after the write returned and the caller told it
//!   (`on_persist_ready`). Writes in flight finish before the store writes
//!   a marker or conf state (the caller waits for them).
//! - `install_snapshot` and `create_snapshot`: new file protected from
//!   pruning → snapshot file (fsynced, renamed, directory fsynced) → WAL
//!   marker (fsynced) → the old marker's file unprotected → WAL segment
//!   release → `MemStorage` (apply or compact). A crash anywhere leaves
//!   either the old marker or the new one durable, and the file it names on
//!   disk: the file a durable marker names is protected until a newer marker
//!   is durable (see `snapfile`).
//! - `persist_conf_state(index, cs)`: WAL record carrying `index` (fsynced)
//!   → `MemStorage`. The record may precede the marker of an older snapshot
//!   (taken in the background meanwhile); its index, not its position, says
//!   it is newer.
//! - The member, `wal/` and `snap/` directories are durable in their parents
//!   (fsynced) before anything is written into them.
//!
//! Recovery (`open`): snapshot files newer than the WAL's marker (saved, but
//! the crash came before their marker) are deleted → snapshot named by the
//! WAL's latest marker (its absence is an error, never a silent fallback) →
//! `MemStorage::apply_snapshot` with the metadata only → WAL entries after it
//! → hard state (commit raised to the snapshot index if a crash came between
//! installing a snapshot and persisting the Ready's hard state) → conf state:
//! the newest persisted one, i.e. the WAL's conf state record when its index
//! is above the snapshot's, else the snapshot's (a legacy record without an
//! index counts when it was written after the marker).
//!
//! Example: snapshot meta taken at I = 100 (voters {1, 2}); a conf change at
//! J = 105 adds 3 and is persisted; the file for 100 is then saved and its
//! marker written. The WAL holds `ConfState@105 {1, 2, 3}` before
//! `marker(100)`; open starts raft with {1, 2, 3}, since 105 > 100.
//!
//! Caller rules for the Ready loop (raft-rs 0.7), in this order:
//!
//! ```text
//! let mut rd = node.ready();
//! send(rd.take_messages());                      // leader traffic: may go first
//! if !rd.snapshot().is_empty() {
//!     store.install_snapshot(rd.snapshot())?;    // then restore the state machine from it
//! }
//! apply(rd.take_committed_entries());
//! store.persist(rd.entries(), rd.hs(), rd.must_sync())?;
//! send(rd.take_persisted_messages());            // only after persist returned Ok
//! let mut light = node.advance(rd);
//! if let Some(c) = light.commit_index() { store.persist_commit(c)?; }
//! send(light.take_messages());
//! apply(light.take_committed_entries());
//! node.advance_apply();
//! // every N applied entries, between Readies:
//! store.create_snapshot(applied, term_of(applied), &conf_state_at(applied), &mut write_state)?;
//! ```
//!
//! - Give `RawNode` [`LogStore::raft_storage`], so a leader sends snapshots
//!   with their data; on restart set `Config::applied` to the recovered
//!   snapshot's index (0 without one) after restoring the state machine.
//! - Any error from `persist`, `install_snapshot` or `create_snapshot` is
//!   fatal for the member: stop the Ready loop and restart from disk.

#[cfg(test)]
mod power_loss;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::Storage;
use tracing::{debug, info, warn};

use crate::fsutil;
use crate::raft_storage::RaftStorage;
use crate::snapfile::{LoadedSnapshot, SnapshotError, SnapshotStore};
use crate::wal::{Wal, WalError, WalOptions};

/// Entries kept in memory below a local snapshot so that slightly lagging
/// followers can catch up from the log instead of needing a snapshot
/// (etcd's `SnapshotCatchUpEntries`, `--experimental-snapshot-catchup-entries`).
pub const DEFAULT_CATCHUP_ENTRIES: u64 = 5000;
const WAL_DIR: &str = "wal";
const SNAP_DIR: &str = "snap";

/// Tunables for [`LogStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStoreOptions {
    /// WAL options (segment size).
    pub wal: WalOptions,
    /// Entries kept below a local snapshot; see [`DEFAULT_CATCHUP_ENTRIES`].
    pub catchup_entries: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions { wal: WalOptions::default(), catchup_entries: DEFAULT_CATCHUP_ENTRIES }
    }
}

/// What [`LogStore::open`] recovered besides the raft log itself.
pub struct Recovered {
    /// The snapshot named by the WAL's latest marker: restore the state
    /// machine from it, then apply committed entries after its index.
    pub snapshot: Option<LoadedSnapshot>,
    /// True when the WAL held nothing at all: the caller must bootstrap (or
    /// wait for a snapshot from the leader, when joining an existing cluster).
    pub fresh: bool,
}

impl fmt::Debug for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovered")
            .field("snapshot", &self.snapshot.as_ref().map(|(m, _)| m))
            .field("fresh", &self.fresh)
            .finish()
    }
}

/// Errors raised by [`LogStore`].
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The snapshot store failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The WAL's snapshot marker names a snapshot file that does not exist.
    #[error("the WAL marks snapshot (index {index}, term {term}) but its file is missing")]
    MissingSnapshot {
        /// Marker index.
        index: u64,
        /// Marker term.
        term: u64,
    },
    /// raft-rs's `MemStorage` refused an operation.
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
    /// A snapshot no newer than what the store already holds.
    #[error(
        "snapshot at index {index} is out of date (store has snapshot {snapshot_index}, first index {first_index})"
    )]
    SnapshotOutOfDate {
        /// The rejected snapshot's index.
        index: u64,
        /// The store's snapshot index.
        snapshot_index: u64,
        /// The store's first log index.
        first_index: u64,
    },
    /// The request does not fit the log (a caller bug or a damaged store).
    #[error("inconsistent raft log: {0}")]
    Inconsistent(String),
    /// `bootstrap` on a store that already has state.
    #[error("the raft log already has state; bootstrap is only for a fresh member")]
    AlreadyBootstrapped,
    /// Creating the member directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The durable raft log. See the module docs for the ordering guarantees.
pub struct LogStore {
    /// Shared with the [`WalWriter`]s handed out for writing entries from
    /// another thread; every write takes the lock, so records never
    /// interleave.
    wal: Arc<Mutex<Wal>>,
    snaps: SnapshotStore,
    storage: MemStorage,
    opts: LogStoreOptions,
    /// `(index, term)` of the latest snapshot, `(0, 0)` if none.
    snapshot: (u64, u64),
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("wal", &*self.wal())
            .field("snapshot", &self.snapshot)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish()
    }
}

impl LogStore {
    /// Opens `dir` (`<data-dir>/member`) with default options and recovers.
    pub fn open(dir: &Path) -> Result<(LogStore, Recovered), LogStoreError> {
        Self::open_with(dir, LogStoreOptions::default())
    }

    /// Opens with explicit options and recovers (see the module docs).
    pub fn open_with(dir: &Path, opts: LogStoreOptions) -> Result<(LogStore, Recovered), LogStoreError> {
        fsutil::create_dir_all(dir).map_err(|source| LogStoreError::Io { path: dir.to_path_buf(), source })?;
        let (wal, contents) = Wal::open_with(&dir.join(WAL_DIR), opts.wal)?;
        let snaps = SnapshotStore::open(&dir.join(SNAP_DIR))?;
        let fresh = contents.is_empty();
        let storage = MemStorage::new();
        snaps.remove_after(contents.snapshot.map_or(0, |(i, _)| i))?;

        let mut loaded = None;
        let mut snap_pos = (0, 0);
        if let Some((index, term)) = contents.snapshot {
            snaps.set_marked(index, term);
            let (meta, reader) = snaps.load(index, term)?.ok_or(LogStoreError::MissingSnapshot { index, term })?;
            let mut s = Snapshot::default();
            s.set_metadata(meta.clone());
            storage.wl().apply_snapshot(s)?;
            loaded = Some((meta, reader));
            snap_pos = (index, term);
        }

        if let Some(first) = contents.entries.first() {
            if first.index != snap_pos.0 + 1 {
                return Err(LogStoreError::Inconsistent(format!(
                    "WAL entries start at {} but the snapshot is at {}",
                    first.index, snap_pos.0
                )));
            }
            storage.wl().append(&contents.entries)?;
        }
        let last_index = storage.last_index()?;

        if let Some(mut hs) = contents.hard_state {
            // A crash between install_snapshot and persisting the Ready's
            // hard state leaves an older commit; the snapshot is committed.
            hs.commit = hs.commit.max(snap_pos.0);
            hs.term = hs.term.max(snap_pos.1);
            if hs.commit > last_index {
                return Err(LogStoreError::Inconsistent(format!(
                    "hard state commit {} is beyond the last index {last_index}",
                    hs.commit
                )));
            }
            storage.wl().set_hardstate(hs);
        }
        if let Some(cs) = contents.conf_state {
            let newer = match contents.conf_state_index {
                Some(index) => index > snap_pos.0 || contents.snapshot.is_none(),
                None => contents.snapshot.is_none() || contents.conf_state_after_snapshot,
            };
            if newer {
                storage.wl().set_conf_state(cs);
            }
        }

        info!(dir = %dir.display(), fresh, snapshot_index = snap_pos.0,
            last_index, "raft log recovered");
        let store = LogStore { wal: Arc::new(Mutex::new(wal)), snaps, storage, opts, snapshot: snap_pos };
        let recovered = Recovered { snapshot: loaded, fresh };
        Ok((store, recovered))
    }

    /// A clone of the in-memory storage (Arc-backed; shares state with the
    /// store). Its `Storage::snapshot` returns data-less snapshots: prefer
    /// [`LogStore::raft_storage`] for `RawNode`.
    pub fn storage(&self) -> MemStorage {
        self.storage.clone()
    }

    /// A `raft::Storage` for `RawNode::new`: the same `MemStorage`, except
    /// that `snapshot()` serves the newest snapshot file with its data.
    pub fn raft_storage(&self) -> RaftStorage {
        RaftStorage::new(self.storage.clone(), self.snaps.clone())
    }

    /// First start of a new cluster: persists the initial conf state durably
    /// and sets it on the storage.
    pub fn bootstrap(&mut self, conf_state: &ConfState) -> Result<(), LogStoreError> {
        let state = self.storage.initial_state()?;
        if state.initialized() || self.snapshot.0 > 0 || self.last_index() > 0 {
            return Err(LogStoreError::AlreadyBootstrapped);
        }
        self.persist_conf_state(0, conf_state)
    }

    /// Durably records `conf_state`, the configuration after applying the
    /// conf change entry at `index` (0 for the bootstrap voters), so that a
    /// restart starts raft with it when `index` is above the snapshot's (it
    /// wins over that snapshot's conf state, whatever order the records are
    /// in). Call it for every applied conf change, before the state machine
    /// records the entry as applied: a state machine that resumes past the
    /// snapshot index needs the configuration of its applied index, and one
    /// that replays the log must not start raft with an older configuration
    /// meanwhile.
    pub fn persist_conf_state(&mut self, index: u64, conf_state: &ConfState) -> Result<(), LogStoreError> {
        {
            let mut wal = self.wal();
            wal.append_conf_state(index, conf_state)?;
            wal.sync()?;
        }
        self.storage.wl().set_conf_state(conf_state.clone());
        Ok(())
    }

    /// Raises the commit index to `index` (in memory) when a persistent state
    /// machine resumes from an applied index the on-disk hard state has not
    /// caught up with. Errors when the log does not reach `index`.
    pub fn mark_committed(&mut self, index: u64) -> Result<(), LogStoreError> {
        let last = self.last_index();
        if index > last {
            return Err(LogStoreError::Inconsistent(format!(
                "the state machine has applied index {index} but the raft log ends at {last}"
            )));
        }
        let mut core = self.storage.wl();
        let mut hs = core.hard_state().clone();
        if hs.commit < index {
            hs.commit = index;
            core.set_hardstate(hs);
        }
        Ok(())
    }

    /// Persists a Ready's entries and hard state: WAL append (+ fsync when
    /// `sync`, i.e. `ready.must_sync()`), then the in-memory storage. Entries
    /// may overwrite a suffix of the log (a raft conflict).
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), LogStoreError> {
        self.check_contiguous(entries)?;
        self.writer().write(entries, hard_state, sync)?;
        self.stage(entries, hard_state)
    }

    /// The in-memory half of [`LogStore::persist`], for a caller that writes
    /// the WAL on another thread ([`LogStore::writer`]) and tells raft-rs
    /// with `advance_append_async` / `on_persist_ready`: raft reads the
    /// entries from storage at once but counts them as persisted (for
    /// votes, acknowledgements, commit and apply) only once told.
    pub fn stage(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), LogStoreError> {
        self.check_contiguous(entries)?;
        let mut core = self.storage.wl();
        core.append(entries)?;
        if let Some(hs) = hard_state {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    fn check_contiguous(&self, entries: &[Entry]) -> Result<(), LogStoreError> {
        if let Some(first) = entries.first() {
            let (fi, li) = (self.first_index(), self.last_index());
            if first.index < fi || first.index > li + 1 {
                return Err(LogStoreError::Inconsistent(format!(
                    "entries start at {} but the log holds [{fi}, {li}]",
                    first.index
                )));
            }
            if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
                return Err(LogStoreError::Inconsistent(format!(
                    "entries are not contiguous: {} then {}",
                    w[0].index, w[1].index
                )));
            }
        }
        Ok(())
    }

    /// A handle that writes entries and hard states to this store's WAL
    /// from another thread. Its writes and the store's own (markers, conf
    /// states) never interleave, but their order is the callers' to keep:
    /// a caller with writes in flight waits for them before the store
    /// writes a marker or conf state.
    pub fn writer(&self) -> WalWriter {
        WalWriter { wal: self.wal.clone() }
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        // A panic while holding the lock ends the process (fail-stop), so a
        // poisoned lock is never seen by a running member.
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new commit index (from `LightReady::commit_index`) in the
    /// hard state. Not fsynced: a lost commit index is re-learned from the
    /// leader, as in etcd.
    pub fn persist_commit(&mut self, commit: u64) -> Result<(), LogStoreError> {
        let mut hs = self.storage.rl().hard_state().clone();
        if hs.commit == commit {
            return Ok(());
        }
        hs.commit = commit;
        self.persist(&[], Some(&hs), false)
    }

    /// Persists a snapshot received from the leader (`ready.snapshot()`):
    /// snapshot file, then WAL marker, then `MemStorage::apply_snapshot`.
    pub fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snap.get_metadata();
        self.install(meta, &mut |snaps| snaps.save(meta, &mut |w: &mut dyn Write| w.write_all(snap.get_data())))
    }

    /// [`LogStore::install_snapshot`] for a snapshot a transport received
    /// into `staged`: a complete, fsynced snapshot file (built with
    /// [`crate::Incoming`]) in the snapshot directory, which becomes the
    /// snapshot file by a rename ([`SnapshotStore::adopt`]). The raft thread
    /// calls this: its cost does not grow with the snapshot. On an error the
    /// staged file is left for the caller to remove.
    pub fn install_staged(&mut self, meta: &SnapshotMetadata, staged: &Path) -> Result<(), LogStoreError> {
        self.install(meta, &mut |snaps| snaps.adopt(meta, staged))
    }

    /// [`LogStore::install_snapshot`] with the data written by `write_data`
    /// (streamed into the file: a bootstrap from a large state never holds
    /// it in memory).
    pub fn install_snapshot_with(
        &mut self,
        meta: &SnapshotMetadata,
        write_data: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), LogStoreError> {
        self.install(meta, &mut |snaps| snaps.save(meta, write_data))
    }

    /// The snapshot files (shared; for streaming a snapshot's data out).
    pub fn snapshot_store(&self) -> SnapshotStore {
        self.snaps.clone()
    }

    /// Installs the snapshot file `write_file` puts in place.
    fn install(
        &mut self,
        meta: &SnapshotMetadata,
        write_file: &mut dyn FnMut(&SnapshotStore) -> Result<PathBuf, SnapshotError>,
    ) -> Result<(), LogStoreError> {
        let first_index = self.first_index();
        let (si, st) = self.snapshot;
        if meta.index < si || (meta.index == si && meta.term != st) || first_index > meta.index {
            return Err(LogStoreError::SnapshotOutOfDate { index: meta.index, snapshot_index: si, first_index });
        }
        // Protected before it exists: a background save's prune must not
        // take it between its save and its marker. (The same snapshot sent
        // again is the marked one, protected already and for good.)
        let newer = (meta.index, meta.term) != self.snapshot;
        if newer {
            self.snaps.protect(meta.index, meta.term);
        }
        if let Err(e) = write_file(&self.snaps) {
            if newer {
                self.snaps.unprotect(meta.index, meta.term);
            }
            return Err(e.into());
        }
        self.wal().mark_installed_snapshot(meta.index, meta.term)?;
        self.snaps.set_marked(meta.index, meta.term);
        let mut s = Snapshot::default();
        s.set_metadata(meta.clone());
        self.storage.wl().apply_snapshot(s)?;
        self.snapshot = (meta.index, meta.term);
        info!(index = meta.index, term = meta.term, "installed snapshot from leader");
        Ok(())
    }

    /// Local snapshot once the state machine has applied up to `index`
    /// (which must be committed, with term `term`): writes the snapshot file
    /// (data streamed by `write_data`), the WAL marker, then drops in-memory
    /// entries `<= index - catchup_entries` (never entry `index` itself) and
    /// releases WAL segments.
    /// A call with `index` not above the current snapshot does nothing.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
        write_data: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), LogStoreError> {
        let Some(meta) = self.snapshot_meta(index, term, conf_state)? else {
            return Ok(());
        };
        self.snaps.save(&meta, write_data)?;
        self.commit_saved_snapshot(index, term)?;
        Ok(())
    }

    /// The metadata of a local snapshot at `(index, term)`, after the checks
    /// [`LogStore::create_snapshot`] makes; None when it is not newer than the
    /// current one. For a caller that saves the file itself (from another
    /// thread, into [`LogStore::snapshot_store`]) and then calls
    /// [`LogStore::commit_saved_snapshot`].
    pub fn snapshot_meta(
        &self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
    ) -> Result<Option<SnapshotMetadata>, LogStoreError> {
        if index <= self.snapshot.0 {
            debug!(index, snapshot_index = self.snapshot.0, "snapshot not newer; skipped");
            return Ok(None);
        }
        let commit = self.storage.rl().hard_state().commit;
        if index > commit {
            return Err(LogStoreError::Inconsistent(format!(
                "snapshot index {index} is beyond the commit index {commit}"
            )));
        }
        let actual = self.storage.term(index)?;
        if actual != term {
            return Err(LogStoreError::Inconsistent(format!(
                "snapshot term {term} does not match entry {index}'s term {actual}"
            )));
        }
        Ok(Some(SnapshotMetadata { index, term, conf_state: Some(conf_state.clone()).into(), ..Default::default() }))
    }

    /// Makes a saved snapshot file at `(index, term)` the latest snapshot:
    /// durable WAL marker, then the log below it (but the catch-up entries)
    /// goes, unless a snapshot is being sent
    /// ([`SnapshotStore::hold_for_send`]): then the in-memory log stays whole
    /// until a later snapshot. Returns false, changing nothing, when a newer
    /// snapshot was taken or installed meanwhile (the file is then just an
    /// old one, pruned in time), or when the file is no longer there.
    pub fn commit_saved_snapshot(&mut self, index: u64, term: u64) -> Result<bool, LogStoreError> {
        if index <= self.snapshot.0 {
            debug!(index, snapshot_index = self.snapshot.0, "saved snapshot superseded; not recorded");
            return Ok(false);
        }
        self.snaps.protect(index, term);
        if !self.snaps.exists(index, term)? {
            // Pruned by newer saves before it could be protected: record
            // nothing (a marker must never name a missing file).
            self.snaps.unprotect(index, term);
            warn!(index, term, "saved snapshot file is gone; not recorded");
            return Ok(false);
        }
        self.wal().mark_snapshot(index, term)?;
        self.snaps.set_marked(index, term);
        self.snapshot = (index, term);
        if self.snaps.sending() {
            // The member receiving a snapshot needs the entries after it.
            info!(index, "skipped compacting the raft log: a snapshot is being sent");
            return Ok(true);
        }
        // Entry `index` itself always stays: raft-rs needs the term of the
        // last entry, and MemStorage::compact does not record the snapshot.
        let compact_to = (index.saturating_sub(self.opts.catchup_entries) + 1).min(index);
        self.storage.wl().compact(compact_to)?;
        info!(index, term, first_index = self.first_index(), "created snapshot");
        Ok(true)
    }

    /// Writes the latest local snapshot's file again with data, for a state
    /// machine that saved it data-less (see [`SnapshotStore::latest_with_data_meta`])
    /// and now must send it to a member. `(index, term)` must be the latest
    /// snapshot's; the WAL marker and the log stay as they are.
    pub fn refill_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
        write_data: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), LogStoreError> {
        let meta = self.refill_meta(index, term, conf_state)?;
        self.snaps.save(&meta, write_data)?;
        info!(index, term, "snapshot written again with data");
        Ok(())
    }

    /// The metadata for writing the latest snapshot's file again with data,
    /// after the checks [`LogStore::refill_snapshot`] makes; for a caller
    /// that saves the file itself into [`LogStore::snapshot_store`] (nothing
    /// is to be recorded afterwards).
    pub fn refill_meta(
        &self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
    ) -> Result<SnapshotMetadata, LogStoreError> {
        if (index, term) != self.snapshot {
            return Err(LogStoreError::Inconsistent(format!(
                "refilling snapshot {index}/{term} but the latest is {}/{}",
                self.snapshot.0, self.snapshot.1
            )));
        }
        Ok(SnapshotMetadata { index, term, conf_state: Some(conf_state.clone()).into(), ..Default::default() })
    }

    /// Index of the last log entry (the snapshot index if the log is empty).
    pub fn last_index(&self) -> u64 {
        infallible(self.storage.last_index())
    }

    /// Index of the first log entry still held in memory.
    pub fn first_index(&self) -> u64 {
        infallible(self.storage.first_index())
    }

    /// `(index, term)` of the latest snapshot, if any.
    pub fn snapshot_marker(&self) -> Option<(u64, u64)> {
        (self.snapshot.0 > 0).then_some(self.snapshot)
    }

    /// Number of live WAL segment files.
    pub fn wal_segment_count(&self) -> usize {
        self.wal().segment_count()
    }
}

/// Writes entries and hard states to a [`LogStore`]'s WAL from another
/// thread (see [`LogStore::writer`] and [`LogStore::stage`]).
#[derive(Clone)]
pub struct WalWriter {
    wal: Arc<Mutex<Wal>>,
}

impl WalWriter {
    /// Appends, then fsyncs when `sync` (else only flushes to the OS).
    pub fn write(&self, entries: &[Entry], hard_state: Option<&HardState>, sync: bool) -> Result<(), LogStoreError> {
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        wal.append(entries, hard_state)?;
        if sync {
            wal.sync()?;
        } else {
            wal.flush()?;
        }
        Ok(())
    }

    /// Makes everything written durable (fsync).
    pub fn sync(&self) -> Result<(), LogStoreError> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner()).sync()?;
        Ok(())
    }
}

/// `MemStorage`'s index queries cannot fail; a failure is a broken invariant
/// inside raft-rs, not something a disk or a client can cause.
fn infallible(r: raft::Result<u64>) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => panic!("MemStorage first/last index query failed: {e}"),
    }
}
