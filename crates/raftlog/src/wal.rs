//! The write-ahead log: raft entries, hard states, conf states and snapshot
//! markers appended to CRC-framed segment files in one directory.
//!
//! Write path: [`Wal::append`] / [`Wal::append_conf_state`] only buffer;
//! [`Wal::flush`] hands the buffer to the kernel; [`Wal::sync`] also
//! fdatasyncs. Once `sync` returns `Ok`, a `kill -9` or power loss cannot lose
//! the records. When the active segment has reached
//! [`WalOptions::segment_bytes`] the next write first cuts a new segment
//! (fsyncing the old one and the directory), so a segment can exceed the limit
//! by at most one batch.
//!
//! The active segment is preallocated to `segment_bytes` (as etcd does) and
//! records are written at the logical end, so an fdatasync normally flushes
//! data only, not a new file size. A segment is cut back to its records'
//! length when the next one starts.
//!
//! Invariants:
//! - Every segment but the last is fully synced; only the last may end in a
//!   torn write, which [`Wal::open`] truncates away (with a warning). The
//!   first write after each fdatasync starts with a sync claim record (how
//!   far the segment is synced), so open can tell synced data gone bad from
//!   an unsynced torn tail; `segment` has the rules.
//! - Any other damage is [`WalError::Corrupt`]: nothing is skipped silently.
//! - [`Wal::open`] fdatasyncs the last segment before returning: records a
//!   crashed process wrote but never synced are replayed, and the caller
//!   treats whatever replay returns as persisted.
//! - Conf state records carry the raft index they belong to; replay keeps
//!   the one with the highest index (see `replay`).
//! - [`Wal::mark_snapshot`] (local snapshot) and
//!   [`Wal::mark_installed_snapshot`] (snapshot from the leader, which
//!   replaces the whole log) write the marker durably into a fresh segment,
//!   preceded by the latest hard state and conf state, and only then delete
//!   the oldest segments whose entries the marker covers, oldest first and
//!   each removal fsynced in the directory before the next (unsynced
//!   unlinks may land in any order; a surviving older segment with a newer
//!   one gone would read as a missing segment). Replay may thus start
//!   mid-history; see `replay` for why that is still exact.
//! - The WAL directory is durable in its parent before it is used; a new
//!   segment is fsynced, then the directory, before anything is written to
//!   it.
//! - After a failed write or fsync the `Wal` is poisoned: every call returns
//!   [`WalError::Poisoned`] until it is reopened, because after an fsync error
//!   the kernel may already have dropped the dirty pages.
//! - A `LOCK` file (flock) keeps a second writer out of the directory.

mod error;
#[cfg(test)]
mod power_loss;
mod record;
mod replay;
mod segment;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState};
use tracing::{debug, warn};

pub use error::WalError;
pub use record::MAX_RECORD_BYTES;

use crate::fsutil::{self, preallocate, sync_dir};
use record::Record;
use replay::Replay;

/// Default segment size limit (64 MiB), as etcd.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
const LOCK_FILE: &str = "LOCK";
/// A write buffer grown past this by a huge batch is shrunk back afterwards.
const BUFFER_KEEP_BYTES: usize = 4 << 20;

/// Tunables for [`Wal::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Cut a new segment once the active one holds at least this many bytes.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

/// Everything replay recovered from the segments.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The latest hard state record.
    pub hard_state: Option<HardState>,
    /// The newest conf state record (bootstrap or explicitly persisted):
    /// the one with the highest index (see `replay`).
    pub conf_state: Option<ConfState>,
    /// The raft index `conf_state` belongs to (0: bootstrap); None when it
    /// came from a legacy record that carries no index.
    pub conf_state_index: Option<u64>,
    /// True when `conf_state` was written after the latest snapshot marker.
    /// Only meaningful for a legacy record (`conf_state_index` None): then it
    /// is newer than the conf state inside that snapshot.
    pub conf_state_after_snapshot: bool,
    /// The latest snapshot marker `(index, term)`.
    pub snapshot: Option<(u64, u64)>,
    /// Entries with index > the snapshot index, after applying overwrites.
    pub entries: Vec<Entry>,
}

impl WalContents {
    /// True when the WAL holds no state at all (a brand-new member).
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.conf_state.is_none() && self.snapshot.is_none() && self.entries.is_empty()
    }
}

/// One live segment file.
#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written to the segment (0 if none).
    max_entry_index: u64,
}

/// An open write-ahead log. See the module docs for the guarantees.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Live segments in sequence order; never empty, the last is active.
    segments: Vec<Segment>,
    active: File,
    /// Bytes of records in `active`: where the next write goes. The file
    /// itself is usually longer (preallocated zeros).
    active_len: u64,
    /// Bytes written to `active` since its last fdatasync.
    dirty: bool,
    /// Bytes of `active` known durable (its last successful fdatasync).
    synced_len: u64,
    /// The offset the last sync claim written into `active` claimed.
    claimed_len: u64,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    buf_first_index: Option<u64>,
    buf_max_index: u64,
    /// Index of the last entry appended (or of the snapshot, if later).
    last_index: u64,
    hard_state: Option<HardState>,
    /// The newest conf state and its index (0 for one replayed from a legacy
    /// record: older than any snapshot, as such a copy before a marker is).
    conf_state: Option<(u64, ConfState)>,
    snapshot: Option<(u64, u64)>,
    poisoned: bool,
    _lock: File,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("active_len", &self.active_len)
            .field("buffered", &self.buf.len())
            .field("last_index", &self.last_index)
            .field("snapshot", &self.snapshot)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Wal {
    /// Opens (creating the directory if missing, durably) with default
    /// options and replays every segment.
    pub fn open(dir: &Path) -> Result<(Wal, WalContents), WalError> {
        Self::open_with(dir, WalOptions::default())
    }

    /// Opens with explicit options. A torn tail in the last segment is
    /// truncated away; any other damage is [`WalError::Corrupt`].
    pub fn open_with(dir: &Path, opts: WalOptions) -> Result<(Wal, WalContents), WalError> {
        fsutil::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        let lock = lock_dir(dir)?;
        let files = segment::list(dir)?;

        let mut replay = Replay::default();
        let mut segments = Vec::with_capacity(files.len().max(1));
        let mut torn = None;
        let mut last_valid_len = 0;
        for (i, f) in files.iter().enumerate() {
            let is_last = i + 1 == files.len();
            let mut max_entry_index = 0;
            let end = segment::scan(&f.path, is_last, |rec, offset| {
                if let Record::Entry(e) = &rec {
                    max_entry_index = max_entry_index.max(e.index);
                }
                replay.apply(rec).map_err(|reason| WalError::corrupt(&f.path, offset, reason))
            })?;
            if let Some(reason) = end.torn {
                torn = Some((reason, end.valid_len, end.file_len));
            }
            last_valid_len = end.valid_len;
            segments.push(Segment { seq: f.seq, path: f.path.clone(), max_entry_index });
        }
        let contents = replay.finish().map_err(|reason| WalError::corrupt(dir, 0, reason))?;

        let (active, active_len) = match segments.last() {
            Some(last) => {
                let file = OpenOptions::new().write(true).open(&last.path).map_err(|e| WalError::io(&last.path, e))?;
                if let Some((reason, valid_len, file_len)) = torn {
                    warn!(
                        segment = %last.path.display(),
                        offset = valid_len,
                        // The torn record plus the preallocated zeros after it.
                        tail_bytes = file_len - valid_len,
                        %reason,
                        "truncating torn tail of the last WAL segment (it is preallocated again)"
                    );
                    file.set_len(valid_len)
                        .and_then(|()| fsutil::sync_file(&file, &last.path))
                        .map_err(|e| WalError::io(&last.path, e))?;
                }
                reserve(&file, &last.path, last_valid_len, opts.segment_bytes)?;
                // What replay found may have been written but never synced
                // (a process crash): raft treats it as persisted from now on.
                fsutil::sync_file_data(&file, &last.path).map_err(|e| WalError::io(&last.path, e))?;
                (file, last_valid_len)
            }
            None => {
                let path = dir.join(segment::file_name(0, 1));
                let file = create_segment(dir, &path, opts.segment_bytes)?;
                segments.push(Segment { seq: 0, path, max_entry_index: 0 });
                (file, 0)
            }
        };
        let last_entry = contents.entries.last().map_or(0, |e| e.index);
        let snap_index = contents.snapshot.map_or(0, |(i, _)| i);
        let wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            segments,
            active,
            active_len,
            dirty: false,
            synced_len: active_len,
            claimed_len: 0,
            buf: Vec::new(),
            buf_first_index: None,
            buf_max_index: 0,
            last_index: last_entry.max(snap_index),
            hard_state: contents.hard_state.clone(),
            conf_state: contents.conf_state.clone().map(|cs| (contents.conf_state_index.unwrap_or(0), cs)),
            snapshot: contents.snapshot,
            poisoned: false,
            _lock: lock,
        };
        debug!(dir = %dir.display(), segments = wal.segments.len(),
            entries = contents.entries.len(), snapshot = ?contents.snapshot, "WAL opened");
        Ok((wal, contents))
    }

    /// Buffers records (entries then the hard state); nothing is durable
    /// until [`Wal::sync`]. On error nothing of this call is buffered.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), WalError> {
        self.check_poisoned()?;
        let start = self.buf.len();
        let encoded = encode_batch(&mut self.buf, entries, hard_state);
        if let Err(e) = encoded {
            self.buf.truncate(start);
            return Err(e);
        }
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            self.buf_first_index.get_or_insert(first.index);
            self.buf_max_index = entries.iter().map(|e| e.index).fold(self.buf_max_index, u64::max);
            self.last_index = last.index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = Some(hs.clone());
        }
        Ok(())
    }

    /// Buffers the conf state in force after applying the entry at `index`
    /// (0 for the bootstrap voters), for a restart to start raft with it
    /// when it is newer than the snapshot. Durable after [`Wal::sync`].
    /// Replay keeps the conf state with the highest index.
    pub fn append_conf_state(&mut self, index: u64, cs: &ConfState) -> Result<(), WalError> {
        self.check_poisoned()?;
        record::encode_conf_state_at(&mut self.buf, index, cs)?;
        if self.conf_state.as_ref().is_none_or(|(held, _)| *held <= index) {
            self.conf_state = Some((index, cs.clone()));
        }
        Ok(())
    }

    /// Writes buffered records to the active segment without fsync: they
    /// survive a process crash but not a power loss.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check_poisoned()?;
        self.write_buffered()
    }

    /// Writes buffered records and fdatasyncs the active segment. After `Ok`
    /// every record appended so far is durable.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_poisoned()?;
        self.write_buffered()?;
        self.fsync_active()
    }

    /// Durably records a *local* snapshot marker (a snapshot of our own
    /// state machine at `index`, which must be in the log with `term`), then
    /// deletes the oldest segments whose entries are all `<= index`. Entries
    /// after `index` stay in the log. The marker goes into a freshly cut
    /// segment after copies of the latest hard state and conf state, so
    /// deleting older segments never loses them.
    pub fn mark_snapshot(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.mark(index, term, false)
    }

    /// Durably records the marker of a snapshot *installed from the leader*:
    /// on replay the whole log before it is discarded (as
    /// `MemStorage::apply_snapshot` does) and the log restarts at
    /// `index + 1`. Every older segment is deleted.
    pub fn mark_installed_snapshot(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.mark(index, term, true)
    }

    fn mark(&mut self, index: u64, term: u64, installed: bool) -> Result<(), WalError> {
        self.check_poisoned()?;
        if let Some((ci, ct)) = self.snapshot {
            if index < ci || (index == ci && term != ct) {
                return Err(WalError::MarkerRegression { index, term, current_index: ci, current_term: ct });
            }
        }
        self.sync()?;
        if self.active_len > 0 {
            self.cut()?;
        }
        let start = self.buf.len();
        let encoded = encode_marker_batch(
            &mut self.buf,
            self.hard_state.as_ref(),
            self.conf_state.as_ref(),
            (index, term, installed),
        );
        if let Err(e) = encoded {
            self.buf.truncate(start);
            return Err(e);
        }
        self.sync()?;
        self.snapshot = Some((index, term));
        if installed {
            self.last_index = index;
            self.release(u64::MAX)
        } else {
            self.last_index = self.last_index.max(index);
            self.release(index)
        }
    }

    /// Number of live segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest snapshot marker, if any.
    pub fn snapshot_marker(&self) -> Option<(u64, u64)> {
        self.snapshot
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn active_path(&self) -> PathBuf {
        self.segments.last().map(|s| s.path.clone()).unwrap_or_else(|| self.dir.clone())
    }

    fn write_buffered(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.active_len >= self.opts.segment_bytes {
            self.cut()?;
        }
        if self.synced_len > self.claimed_len {
            // The first write since an fdatasync says how far that reached,
            // so that open never mistakes synced data for a torn tail.
            self.buf.splice(0..0, record::encode_synced(self.synced_len));
        }
        if let Err(e) = self.active.write_all_at(&self.buf, self.active_len) {
            self.poisoned = true;
            return Err(WalError::io(self.active_path(), e));
        }
        self.claimed_len = self.synced_len;
        self.active_len += self.buf.len() as u64;
        self.dirty = true;
        if let Some(active) = self.segments.last_mut() {
            active.max_entry_index = active.max_entry_index.max(self.buf_max_index);
        }
        self.buf.clear();
        if self.buf.capacity() > BUFFER_KEEP_BYTES {
            self.buf.shrink_to(BUFFER_KEEP_BYTES / 4);
        }
        self.buf_first_index = None;
        self.buf_max_index = 0;
        Ok(())
    }

    fn fsync_active(&mut self) -> Result<(), WalError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.active_path();
        if let Err(e) = fsutil::sync_file_data(&self.active, &path) {
            self.poisoned = true;
            return Err(WalError::io(path, e));
        }
        self.dirty = false;
        self.synced_len = self.active_len;
        Ok(())
    }

    /// Syncs the active segment, cuts it back to its records (dropping the
    /// unused preallocation, so only the last segment ever ends in zeros) and
    /// starts a new, empty one.
    fn cut(&mut self) -> Result<(), WalError> {
        self.fsync_active()?;
        let path = self.active_path();
        if let Err(e) = self.active.set_len(self.active_len).and_then(|()| fsutil::sync_file(&self.active, &path)) {
            self.poisoned = true;
            return Err(WalError::io(path, e));
        }
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let first_index = self.buf_first_index.unwrap_or(self.last_index + 1);
        let path = self.dir.join(segment::file_name(seq, first_index));
        let file = match create_segment(&self.dir, &path, self.opts.segment_bytes) {
            Ok(f) => f,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        debug!(segment = %path.display(), "cut WAL segment");
        self.segments.push(Segment { seq, path, max_entry_index: 0 });
        self.active = file;
        self.active_len = 0;
        self.dirty = false;
        self.synced_len = 0;
        self.claimed_len = 0;
        Ok(())
    }

    /// Deletes the longest prefix of non-active segments whose entries are
    /// all `<= index`, oldest first, so the survivors stay contiguous. The
    /// directory is fsynced after each removal: unlinks that are not yet
    /// durable may land in any order, and a newer segment gone while an older
    /// one survives would read as a missing segment.
    fn release(&mut self, index: u64) -> Result<(), WalError> {
        let active = self.segments.len() - 1;
        let releasable = self.segments[..active].iter().take_while(|s| s.max_entry_index <= index).count();
        for _ in 0..releasable {
            let path = self.segments[0].path.clone();
            match fsutil::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(&path, e)),
            }
            sync_dir(&self.dir).map_err(|e| WalError::io(&self.dir, e))?;
            self.segments.remove(0);
            debug!(segment = %path.display(), "released WAL segment");
        }
        Ok(())
    }
}

fn encode_batch(buf: &mut Vec<u8>, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), WalError> {
    for e in entries {
        record::encode_entry(buf, e)?;
    }
    if let Some(hs) = hard_state {
        record::encode_hard_state(buf, hs)?;
    }
    Ok(())
}

fn encode_marker_batch(
    buf: &mut Vec<u8>,
    hard_state: Option<&HardState>,
    conf_state: Option<&(u64, ConfState)>,
    (index, term, installed): (u64, u64, bool),
) -> Result<(), WalError> {
    if let Some(hs) = hard_state {
        record::encode_hard_state(buf, hs)?;
    }
    if let Some((cs_index, cs)) = conf_state {
        record::encode_conf_state_at(buf, *cs_index, cs)?;
    }
    record::encode_marker(buf, index, term, installed)
}

/// Creates a new, empty, preallocated segment and makes its directory entry
/// durable.
fn create_segment(dir: &Path, path: &Path, segment_bytes: u64) -> Result<File, WalError> {
    let file = OpenOptions::new().create_new(true).write(true).open(path).map_err(|e| WalError::io(path, e))?;
    reserve(&file, path, 0, segment_bytes)?;
    sync_dir(dir).map_err(|e| WalError::io(dir, e))?;
    Ok(file)
}

/// Preallocates the active segment (whose records end at `valid_len`) to
/// `segment_bytes`, durably. Preallocation only saves time: where the
/// filesystem refuses it (full disk, no support) the segment is left at its
/// records' length and grows by appending, as it would without it.
fn reserve(file: &File, path: &Path, valid_len: u64, segment_bytes: u64) -> Result<(), WalError> {
    let io = |e| WalError::io(path, e);
    if file.metadata().map_err(io)?.len() >= segment_bytes {
        return Ok(());
    }
    if let Err(e) = preallocate(file, segment_bytes) {
        warn!(segment = %path.display(), error = %e, "cannot preallocate the WAL segment; appending instead");
        file.set_len(valid_len).map_err(io)?;
    }
    fsutil::sync_file(file, path).map_err(io)
}

/// Takes an exclusive advisory lock on `dir/LOCK`, held while the file lives.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| WalError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(WalError::io(&path, e)),
    }
}
