//! Snapshot files: one file per snapshot, written atomically, verified before
//! use, newest two kept.
//!
//! File `{term:016x}-{index:016x}.snap`:
//!
//! ```text
//! magic "MSSNAP\r\n" | u32 LE version (1) | u32 LE meta_len | SnapshotMetadata (protobuf)
//! data (streamed, any length)
//! u64 LE data_len | u32 LE crc32 of every preceding byte
//! ```
//!
//! Invariants:
//! - A `.snap` file only ever appears complete: it is written as `.snap.tmp`,
//!   fsynced, renamed, and the directory fsynced. Leftover `.tmp` files (a
//!   crash mid-save) are removed by [`SnapshotStore::open`].
//! - No data is handed out before its CRC verifies; a reader returned by a
//!   load covers exactly the data section of a verified file. Only
//!   [`SnapshotStore::latest_with_data_meta`] trusts a header without the
//!   CRC, for metadata; a file whose data then fails when it is loaded to
//!   be sent is renamed `.broken` and is no longer listed.
//! - Pruning keeps the newest [`KEEP_SNAPSHOTS`] files, the one just saved,
//!   and every *protected* file. The log store protects the file its durable
//!   WAL marker names (from open on), and the file a marker is about to name
//!   from before that file is saved until the marker is durable; only then
//!   is the old one released. So the file the latest durable marker names is
//!   never removed, whatever runs concurrently (a background save prunes
//!   too) and wherever a crash falls. Files newer than the marker (saved,
//!   but their marker never became durable) are removed on open
//!   ([`SnapshotStore::remove_after`]).
//! - Every rename and removal is followed by an fsync of the directory
//!   before anything relies on it; the directory itself is made durable in
//!   its parent when opened.

#[cfg(test)]
pub(crate) mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protobuf::Message;
use raft::eraftpb::SnapshotMetadata;
use tracing::{debug, warn};

use crate::fsutil::{self, sync_dir};

/// Snapshot files kept on disk (the newest ones).
pub const KEEP_SNAPSHOTS: usize = 2;
const MAGIC: [u8; 8] = *b"MSSNAP\r\n";
const VERSION: u32 = 1;
const PREFIX_LEN: u64 = 16; // magic + version + meta_len
const TRAILER_LEN: u64 = 12; // data_len + crc
/// Metadata holds only the index, term and conf state: 16 MiB is generous.
const MAX_META_BYTES: u32 = 16 << 20;
const SNAP_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
/// Appended to the name of a corrupt file found while sending it.
const BROKEN_SUFFIX: &str = ".broken";
/// Buffer for streaming snapshot data in and out (256 KiB).
const IO_BUFFER_BYTES: usize = 256 << 10;

/// A loaded snapshot: its metadata and a reader over its data section.
pub type LoadedSnapshot = (SnapshotMetadata, Box<dyn Read + Send>);

/// Errors raised by [`SnapshotStore`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O failure on `path` (including errors returned by the caller's
    /// data writer while saving).
    #[error("snapshot I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file fails verification.
    #[error("corrupt snapshot file {path}: {reason}")]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// Encoding the metadata failed.
    #[error("encoding snapshot metadata: {0}")]
    Encode(#[source] protobuf::ProtobufError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// A directory of snapshot files. Cheap to clone (the path, the count of
/// sends in flight and the protected files, shared by every clone).
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    sending: Arc<AtomicUsize>,
    /// `(index, term)` of the files pruning must keep (see the module docs).
    /// Held while pruning, so protecting a file waits for a prune under way.
    protected: Arc<Mutex<Vec<(u64, u64)>>>,
}

/// Held while a snapshot is on its way to a member (see
/// [`SnapshotStore::hold_for_send`]); dropping it ends the hold.
#[derive(Debug)]
pub struct SendHold {
    sending: Arc<AtomicUsize>,
}

impl Drop for SendHold {
    fn drop(&mut self) {
        self.sending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a verified file's data section lies.
struct Verified {
    meta: SnapshotMetadata,
    data_offset: u64,
    data_len: u64,
}

impl SnapshotStore {
    /// Opens `dir`, creating it if missing (durably: its parent is fsynced)
    /// and removing leftover `*.tmp` files.
    pub fn open(dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        fsutil::create_dir_all(dir).map_err(io_err(dir))?;
        let mut removed = false;
        for ent in fs::read_dir(dir).map_err(io_err(dir))? {
            let ent = ent.map_err(io_err(dir))?;
            if ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                warn!(file = %ent.path().display(), "removing leftover snapshot temp file");
                fsutil::remove_file(&ent.path()).map_err(io_err(&ent.path()))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            sending: Arc::new(AtomicUsize::new(0)),
            protected: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn protected(&self) -> MutexGuard<'_, Vec<(u64, u64)>> {
        // The list stays consistent even if a holder panicked.
        self.protected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the file of `(index, term)` from being pruned (in addition to
    /// those already protected) until [`SnapshotStore::set_marked`] or
    /// [`SnapshotStore::unprotect`].
    pub(crate) fn protect(&self, index: u64, term: u64) {
        let mut p = self.protected();
        if !p.contains(&(index, term)) {
            p.push((index, term));
        }
    }

    /// Ends the protection [`SnapshotStore::protect`] gave.
    pub(crate) fn unprotect(&self, index: u64, term: u64) {
        self.protected().retain(|p| *p != (index, term));
    }

    /// The durable WAL marker now names `(index, term)`: only its file stays
    /// protected.
    pub(crate) fn set_marked(&self, index: u64, term: u64) {
        let mut p = self.protected();
        p.clear();
        p.push((index, term));
    }

    /// Whether the snapshot file of `(index, term)` exists.
    pub(crate) fn exists(&self, index: u64, term: u64) -> Result<bool, SnapshotError> {
        let path = self.dir.join(file_name(index, term));
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Marks a snapshot as being sent to a member until the hold is dropped.
    /// While any hold lives the log store keeps its log whole when it takes
    /// a snapshot (see [`crate::LogStore::commit_saved_snapshot`]): the
    /// member needs the entries right after the snapshot it receives, and a
    /// large snapshot takes long enough to send and install that cutting
    /// them would make it ask for another snapshot, again and again (etcd
    /// pauses its raft log compaction the same way).
    pub fn hold_for_send(&self) -> SendHold {
        self.sending.fetch_add(1, Ordering::AcqRel);
        SendHold { sending: self.sending.clone() }
    }

    /// Whether a snapshot is being sent (a [`SendHold`] lives).
    pub fn sending(&self) -> bool {
        self.sending.load(Ordering::Acquire) > 0
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot file for `meta` with the data produced by
    /// `write_data`, durably and atomically, then prunes old files. Returns
    /// the path of the new file.
    pub fn save(
        &self,
        meta: &SnapshotMetadata,
        write_data: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<PathBuf, SnapshotError> {
        let name = file_name(meta.index, meta.term);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let meta_bytes = meta.write_to_bytes().map_err(SnapshotError::Encode)?;
        let result = write_file(&tmp, &meta_bytes, write_data)
            .and_then(|()| fsutil::rename(&tmp, &path).map_err(io_err(&tmp)))
            .and_then(|()| sync_dir(&self.dir).map_err(io_err(&self.dir)));
        if let Err(e) = result {
            // Best effort: `open` removes it next time anyway.
            let _ = fsutil::remove_file(&tmp);
            return Err(e);
        }
        debug!(file = %path.display(), "saved snapshot");
        self.prune(&path)?;
        Ok(path)
    }

    /// The newest snapshot whose checks pass. A corrupt file is reported with
    /// a warning and the next older one is tried.
    pub fn load_latest(&self) -> Result<Option<LoadedSnapshot>, SnapshotError> {
        for (_, _, path) in self.list()?.into_iter().rev() {
            let file = match File::open(&path) {
                Ok(file) => file,
                // Pruned between listing and opening: try the next one.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            match (Unverified { file, path }).verify() {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(SnapshotError::Corrupt { path, reason }) => {
                    warn!(file = %path.display(), %reason, "skipping corrupt snapshot file");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The metadata of the newest snapshot file that carries data (a
    /// persistent state machine writes data-less snapshots that only mark
    /// where the log was cut; they cannot bring another member up to date),
    /// read from the files' headers only, so that it is cheap enough for the raft
    /// thread whatever the snapshot's size. Its data is checked when it is
    /// read to be sent ([`SnapshotStore::load_to_send`]), and a file that
    /// fails then is set aside, so the next call names an older one.
    pub fn latest_with_data_meta(&self) -> Result<Option<SnapshotMetadata>, SnapshotError> {
        for (_, _, path) in self.list()?.into_iter().rev() {
            match peek(&path) {
                Ok(Ok((meta, data_len))) if data_len > 0 => return Ok(Some(meta)),
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => {
                    warn!(file = %path.display(), %reason, "skipping corrupt snapshot file");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(None)
    }

    /// [`SnapshotStore::load`] for sending to a member. A file that fails its
    /// checks is renamed `<name>.broken` (as etcd's snapshotter does with a
    /// snapshot it cannot read), so lookups stop offering it and fall back
    /// to an older file; the renamed file stays for an operator to examine.
    pub fn load_to_send(&self, index: u64, term: u64) -> Result<Option<LoadedSnapshot>, SnapshotError> {
        let loaded = self.load(index, term);
        if let Err(SnapshotError::Corrupt { path, reason }) = &loaded {
            let broken = path.with_file_name(format!("{}{BROKEN_SUFFIX}", file_name(index, term)));
            match fsutil::rename(path, &broken).and_then(|()| sync_dir(&self.dir)) {
                Ok(()) => warn!(file = %broken.display(), %reason, "corrupt snapshot file set aside"),
                Err(e) => warn!(file = %path.display(), error = %e, "could not set aside a corrupt snapshot file"),
            }
        }
        loaded
    }

    /// The snapshot for exactly `(index, term)`: `None` if no such file,
    /// [`SnapshotError::Corrupt`] if it fails its checks or was set aside as
    /// `.broken` by [`SnapshotStore::load_to_send`].
    pub fn load(&self, index: u64, term: u64) -> Result<Option<LoadedSnapshot>, SnapshotError> {
        match self.open_unverified(index, term)? {
            Some(file) => file.verify().map(Some),
            None => Ok(None),
        }
    }

    /// The file of exactly `(index, term)`, opened but not yet checked:
    /// cheap enough for the raft thread whatever the file's size, and, being
    /// open, safe from pruning until [`Unverified::verify`] has read it (on
    /// another thread). `None` and `Corrupt` as [`SnapshotStore::load`].
    pub fn open_unverified(&self, index: u64, term: u64) -> Result<Option<Unverified>, SnapshotError> {
        let path = self.dir.join(file_name(index, term));
        match File::open(&path) {
            Ok(file) => Ok(Some(Unverified { file, path })),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let broken = self.dir.join(format!("{}{BROKEN_SUFFIX}", file_name(index, term)));
                if broken.exists() {
                    let reason = "set aside after failing its checks when it was to be sent".to_string();
                    return Err(SnapshotError::Corrupt { path: broken, reason });
                }
                Ok(None)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Makes `staged`, a complete and fsynced file in this directory built
    /// with [`Incoming`], the snapshot file of `meta`: renamed, not copied,
    /// so installing a leader's snapshot costs the same whatever its size.
    /// Its header must name `meta` and its trailer the data length the
    /// header implies (a truncated file fails); the CRC is checked when the
    /// file is read ([`Unverified::verify`]). Prunes as
    /// [`SnapshotStore::save`] does; returns the new path.
    pub fn adopt(&self, meta: &SnapshotMetadata, staged: &Path) -> Result<PathBuf, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt { path: staged.to_path_buf(), reason };
        let mut file = File::open(staged).map_err(io_err(staged))?;
        let len = file.metadata().map_err(io_err(staged))?.len();
        let header =
            read_header(&mut file, len, &mut crc32fast::Hasher::new()).map_err(io_err(staged))?.map_err(corrupt)?;
        let named = SnapshotMetadata::parse_from_bytes(&header.meta_bytes)
            .map_err(|e| corrupt(format!("undecodable metadata: {e}")))?;
        if named != *meta {
            return Err(corrupt(format!(
                "metadata (index {}, term {}) is not the snapshot's (index {}, term {})",
                named.index, named.term, meta.index, meta.term
            )));
        }
        let mut len_field = [0u8; 8];
        file.seek(SeekFrom::Start(len - TRAILER_LEN))
            .and_then(|_| file.read_exact(&mut len_field))
            .map_err(io_err(staged))?;
        if u64::from_le_bytes(len_field) != header.data_len {
            return Err(corrupt(format!(
                "trailer says {} data bytes, file holds {}",
                u64::from_le_bytes(len_field),
                header.data_len
            )));
        }
        drop(file);
        let path = self.dir.join(file_name(meta.index, meta.term));
        fsutil::rename(staged, &path).map_err(io_err(staged))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        debug!(file = %path.display(), "adopted staged snapshot");
        self.prune(&path)?;
        Ok(path)
    }

    /// `(index, term, path)` of every snapshot file, oldest first.
    pub fn list(&self) -> Result<Vec<(u64, u64, PathBuf)>, SnapshotError> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let ent = ent.map_err(io_err(&self.dir))?;
            let name = ent.file_name();
            if let Some((index, term)) = name.to_str().and_then(parse_name) {
                out.push((index, term, ent.path()));
            }
        }
        out.sort_by_key(|(index, term, _)| (*index, *term));
        Ok(out)
    }

    /// Deletes every snapshot file with an index above `index`; returns how
    /// many. The log store calls this on open with the WAL marker's index:
    /// such files were saved but their marker never became durable, and
    /// leaving them would let pruning delete the file the marker names.
    pub fn remove_after(&self, index: u64) -> Result<usize, SnapshotError> {
        let mut removed = 0;
        for (i, t, path) in self.list()? {
            if i <= index {
                continue;
            }
            warn!(file = %path.display(), index = i, term = t, marker_index = index,
                "removing snapshot file that no WAL marker names");
            match fsutil::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        if removed > 0 {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(removed)
    }

    /// Deletes all but the newest [`KEEP_SNAPSHOTS`] files, never `keep`
    /// and never a protected file.
    fn prune(&self, keep: &Path) -> Result<(), SnapshotError> {
        let protected = self.protected();
        let all = self.list()?;
        let excess = all.len().saturating_sub(KEEP_SNAPSHOTS);
        let mut removed = false;
        for (index, term, path) in all.into_iter().take(excess) {
            if path == keep || protected.contains(&(index, term)) {
                continue;
            }
            match fsutil::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            debug!(file = %path.display(), "removed old snapshot");
        }
        if removed {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(())
    }
}

/// `{term:016x}-{index:016x}.snap`
pub fn file_name(index: u64, term: u64) -> String {
    format!("{term:016x}-{index:016x}{SNAP_SUFFIX}")
}

/// Parses a snapshot file name into `(index, term)`.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAP_SUFFIX)?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(index, 16).ok()?, u64::from_str_radix(term, 16).ok()?))
}

/// Counts and checksums everything written through it.
struct CrcWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes and fsyncs the complete file at `tmp`.
fn write_file(
    tmp: &Path,
    meta_bytes: &[u8],
    write_data: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> Result<(), SnapshotError> {
    let prefix = prefix(meta_bytes).map_err(|reason| SnapshotError::Corrupt { path: tmp.to_path_buf(), reason })?;
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(tmp).map_err(io_err(tmp))?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(IO_BUFFER_BYTES, file),
        hasher: crc32fast::Hasher::new(),
        written: 0,
    };
    let mut write_all = |w: &mut CrcWriter<BufWriter<File>>| -> io::Result<()> {
        w.write_all(&prefix)?;
        let header_len = w.written;
        write_data(w)?;
        let data_len = w.written - header_len;
        w.write_all(&data_len.to_le_bytes())?;
        let crc = w.hasher.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())?;
        w.inner.flush()
    };
    write_all(&mut w).map_err(io_err(tmp))?;
    let file = w.inner.into_inner().map_err(|e| io_err(tmp)(e.into_error()))?;
    fsutil::sync_file(&file, tmp).map_err(io_err(tmp))
}

/// A file's bytes before its data: magic, version, metadata length and
/// metadata.
fn prefix(meta_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let meta_len = u32::try_from(meta_bytes.len())
        .ok()
        .filter(|l| *l <= MAX_META_BYTES)
        .ok_or_else(|| format!("metadata of {} bytes is too large", meta_bytes.len()))?;
    let mut out = Vec::with_capacity(PREFIX_LEN as usize + meta_bytes.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(meta_bytes);
    Ok(out)
}

/// A snapshot file written by a caller as its data arrives in pieces (a
/// leader's chunks, received by an async task): write the bytes
/// [`Incoming::start`] returns, then each piece (after handing it to
/// [`Incoming::data`]), then [`Incoming::trailer`]; fsync the file and give
/// it to [`SnapshotStore::adopt`].
pub struct Incoming {
    hasher: crc32fast::Hasher,
    data_len: u64,
}

impl Incoming {
    /// The builder and the bytes the file starts with.
    pub fn start(meta: &SnapshotMetadata) -> Result<(Incoming, Vec<u8>), SnapshotError> {
        let meta_bytes = meta.write_to_bytes().map_err(SnapshotError::Encode)?;
        let prefix = prefix(&meta_bytes).map_err(|reason| SnapshotError::Corrupt {
            path: PathBuf::from(file_name(meta.index, meta.term)),
            reason,
        })?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&prefix);
        Ok((Incoming { hasher, data_len: 0 }, prefix))
    }

    /// Counts a piece of data written to the file.
    pub fn data(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.data_len += piece.len() as u64;
    }

    /// The bytes that end the file: the data length and the CRC.
    pub fn trailer(mut self) -> [u8; TRAILER_LEN as usize] {
        let len = self.data_len.to_le_bytes();
        self.hasher.update(&len);
        let mut out = [0u8; TRAILER_LEN as usize];
        out[..8].copy_from_slice(&len);
        out[8..].copy_from_slice(&self.hasher.finalize().to_le_bytes());
        out
    }
}

/// An open snapshot file not yet checked (see
/// [`SnapshotStore::open_unverified`]).
#[derive(Debug)]
pub struct Unverified {
    file: File,
    path: PathBuf,
}

impl Unverified {
    /// Checks the file end to end (CRC, lengths, metadata against its name)
    /// and returns its metadata and a reader over its data.
    pub fn verify(self) -> Result<LoadedSnapshot, SnapshotError> {
        let Unverified { mut file, path } = self;
        match verify_file(&file, &path) {
            Ok(Ok(v)) => {
                file.seek(SeekFrom::Start(v.data_offset)).map_err(io_err(&path))?;
                let reader = BufReader::with_capacity(IO_BUFFER_BYTES, file).take(v.data_len);
                Ok((v.meta, Box::new(reader)))
            }
            Ok(Err(reason)) => Err(SnapshotError::Corrupt { path, reason }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Where a file's parts are, from its header.
struct Header {
    meta_bytes: Vec<u8>,
    data_offset: u64,
    data_len: u64,
}

/// Reads and checks the prefix and the metadata bytes of a file of `len`
/// bytes, feeding them to `hasher`. The outer `Err` is an I/O failure; the
/// inner `Err` says why the file is corrupt.
fn read_header(r: &mut impl Read, len: u64, hasher: &mut crc32fast::Hasher) -> io::Result<Result<Header, String>> {
    if len < PREFIX_LEN + TRAILER_LEN {
        return Ok(Err(format!("file of {len} bytes is too short")));
    }
    let mut prefix = [0u8; PREFIX_LEN as usize];
    r.read_exact(&mut prefix)?;
    hasher.update(&prefix);
    if prefix[..8] != MAGIC {
        return Ok(Err("bad magic".to_string()));
    }
    let version = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if version != VERSION {
        return Ok(Err(format!("unsupported version {version}")));
    }
    let meta_len = u32::from_le_bytes([prefix[12], prefix[13], prefix[14], prefix[15]]);
    if meta_len > MAX_META_BYTES || u64::from(meta_len) > len - PREFIX_LEN - TRAILER_LEN {
        return Ok(Err(format!("metadata length {meta_len} is out of range")));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta_bytes)?;
    hasher.update(&meta_bytes);
    let data_offset = PREFIX_LEN + u64::from(meta_len);
    Ok(Ok(Header { meta_bytes, data_offset, data_len: len - data_offset - TRAILER_LEN }))
}

/// Decodes the metadata of the file at `path` and checks it against the name.
fn decode_meta(path: &Path, meta_bytes: &[u8]) -> Result<SnapshotMetadata, String> {
    let meta = SnapshotMetadata::parse_from_bytes(meta_bytes).map_err(|e| format!("undecodable metadata: {e}"))?;
    let named = path.file_name().and_then(|n| n.to_str()).and_then(parse_name);
    if named != Some((meta.index, meta.term)) {
        return Err(format!("metadata (index {}, term {}) does not match the file name", meta.index, meta.term));
    }
    Ok(meta)
}

/// Checks a file end to end. The outer `Err` is an I/O failure; the inner
/// `Err` says why the file is corrupt.
fn verify_file(file: &File, path: &Path) -> io::Result<Result<Verified, String>> {
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(IO_BUFFER_BYTES, file);
    let mut hasher = crc32fast::Hasher::new();
    let header = match read_header(&mut r, len, &mut hasher)? {
        Ok(h) => h,
        Err(reason) => return Ok(Err(reason)),
    };
    // Stream the data section through the hasher.
    let mut left = header.data_len;
    let mut chunk = vec![0u8; IO_BUFFER_BYTES];
    while left > 0 {
        let want = usize::try_from(left.min(IO_BUFFER_BYTES as u64)).unwrap_or(IO_BUFFER_BYTES);
        r.read_exact(&mut chunk[..want])?;
        hasher.update(&chunk[..want]);
        left -= want as u64;
    }
    let mut len_field = [0u8; 8];
    r.read_exact(&mut len_field)?;
    hasher.update(&len_field);
    let stored_crc = read_u32(&mut r)?;
    if hasher.finalize() != stored_crc {
        return Ok(Err("crc mismatch".to_string()));
    }
    let data_len = header.data_len;
    if u64::from_le_bytes(len_field) != data_len {
        return Ok(Err(format!("trailer says {} data bytes, file holds {data_len}", u64::from_le_bytes(len_field))));
    }
    Ok(decode_meta(path, &header.meta_bytes).map(|meta| Verified { meta, data_offset: header.data_offset, data_len }))
}

/// The metadata and data length of a file from its header alone (no CRC
/// check: a few hundred bytes read, whatever the file's size).
fn peek(path: &Path) -> io::Result<Result<(SnapshotMetadata, u64), String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let header = match read_header(&mut file, len, &mut crc32fast::Hasher::new())? {
        Ok(h) => h,
        Err(reason) => return Ok(Err(reason)),
    };
    Ok(decode_meta(path, &header.meta_bytes).map(|meta| (meta, header.data_len)))
}
