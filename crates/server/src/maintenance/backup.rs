//! Backups: what `etcdctl snapshot save` downloads (Maintenance.Snapshot)
//! and what `--restore-snapshot` bootstraps a new cluster from.
//!
//! A backup file is the engine dump (`storage::dump`, every table, as of one
//! revision), zeros up to a multiple of 512 bytes whose last 8 hold the
//! dump's length (u64 LE), then the SHA-256 of all that: the framing etcd
//! uses for its own snapshots (the stream's last message carries the
//! digest, and `etcdctl snapshot save` insists on a size of 512n + 32). It
//! is MetaStore's format: etcd's tools cannot read it, nor MetaStore etcd's.
//!
//! Invariants: the dump is taken at one point (a deferred dump: writes go on
//! meanwhile, and with the memory engine a compaction waits for it, as for
//! a periodic snapshot); the download is written to a `.tmp` file in the
//! snapshot directory first (so a slow client never holds the dump open,
//! and a crash leaves a file the next start removes) and removed when the
//! stream ends or the client goes; a restore reads nothing before the
//! digest matches.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use storage::MvccStore;

/// Bytes of the digest at the end of a backup.
const DIGEST_LEN: u64 = 32;
/// The dump plus its padding is a multiple of this (etcd's `hasChecksum`).
const ALIGN: u64 = 512;
const IO_BUFFER: usize = 256 << 10;

/// A backup written to a temporary file, removed when this is dropped.
pub struct BackupFile {
    pub path: PathBuf,
    /// Bytes before the digest: the dump and its padding.
    pub data_len: u64,
    pub digest: [u8; 32],
}

impl Drop for BackupFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a backup could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{op} {}: {source}", .path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("dumping the store: {0}")]
    Dump(#[from] storage::EngineError),
    #[error("dumping the store: {0}")]
    Store(#[from] storage::MvccError),
    #[error("{} is too short ({len} bytes) to be a snapshot", .path.display())]
    TooShort { path: PathBuf, len: u64 },
    #[error("{} is not a MetaStore snapshot ({len} bytes is not 512n + 32)", .path.display())]
    NotFramed { path: PathBuf, len: u64 },
    #[error("{}: SHA-256 mismatch (not a MetaStore snapshot, or damaged)", .path.display())]
    Digest { path: PathBuf },
    #[error("{}: the recorded dump length {dump_len} does not fit the file", .path.display())]
    DumpLength { path: PathBuf, dump_len: u64 },
}

/// Writes a dump of `mvcc` as of now into `path` (blocking: call it off the
/// async runtime). The digest is kept aside, not written.
pub fn write_backup(mvcc: &MvccStore, path: PathBuf) -> Result<BackupFile, BackupError> {
    let dump = mvcc.deferred_dump()?;
    let file = File::create(&path).map_err(|source| BackupError::Io { op: "create", path: path.clone(), source })?;
    // From here on the file goes away with `backup` on every path.
    let mut backup = BackupFile { path, data_len: 0, digest: [0; 32] };
    let mut out = HashingWriter { inner: BufWriter::with_capacity(IO_BUFFER, file), hasher: Sha256::new(), len: 0 };
    match dump {
        Some(job) => job(&mut out)?,
        None => mvcc.engine().dump(&mut out)?,
    }
    let dump_len = out.len;
    let pad = 8 + (ALIGN - (dump_len + 8) % ALIGN) % ALIGN;
    let mut padding = vec![0u8; pad as usize];
    padding[pad as usize - 8..].copy_from_slice(&dump_len.to_le_bytes());
    let io = |source| BackupError::Io { op: "write", path: backup.path.clone(), source };
    out.write_all(&padding).map_err(io)?;
    out.inner.flush().map_err(io)?;
    backup.data_len = out.len;
    backup.digest = out.hasher.finalize().into();
    Ok(backup)
}

/// Checks the digest at the end of the backup at `path` and returns a reader
/// over its dump.
pub fn open_backup(path: &Path) -> Result<impl Read, BackupError> {
    let io = |op| move |source| BackupError::Io { op, path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    if len < DIGEST_LEN {
        return Err(BackupError::TooShort { path: path.to_path_buf(), len });
    }
    let data_len = len - DIGEST_LEN;
    if !data_len.is_multiple_of(ALIGN) || data_len < 8 {
        return Err(BackupError::NotFramed { path: path.to_path_buf(), len });
    }
    let mut hasher = Sha256::new();
    let mut reader = BufReader::with_capacity(IO_BUFFER, &mut file);
    io::copy(&mut (&mut reader).take(data_len), &mut HashOnly(&mut hasher)).map_err(io("read"))?;
    let mut stored = [0u8; DIGEST_LEN as usize];
    reader.read_exact(&mut stored).map_err(io("read"))?;
    drop(reader);
    if hasher.finalize().as_slice() != stored {
        return Err(BackupError::Digest { path: path.to_path_buf() });
    }
    let mut len_field = [0u8; 8];
    file.seek(SeekFrom::Start(data_len - 8)).map_err(io("read"))?;
    file.read_exact(&mut len_field).map_err(io("read"))?;
    let dump_len = u64::from_le_bytes(len_field);
    if dump_len > data_len - 8 || data_len - 8 - dump_len >= ALIGN {
        return Err(BackupError::DumpLength { path: path.to_path_buf(), dump_len });
    }
    file.seek(SeekFrom::Start(0)).map_err(io("read"))?;
    Ok(BufReader::with_capacity(IO_BUFFER, file).take(dump_len))
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashOnly<'a>(&'a mut Sha256);

impl Write for HashOnly<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use storage::{AppliedIndex, MemoryEngine};

    #[test]
    fn a_backup_restores_to_the_state_it_was_taken_at_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mvcc = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
        for i in 0..100u64 {
            let mut txn = mvcc.write_txn();
            txn.put(format!("k{i:03}").as_bytes(), b"v", 0);
            txn.commit(AppliedIndex { index: i + 1, term: 1 }).unwrap();
        }
        let path = dir.path().join("b.tmp");
        let backup = write_backup(&mvcc, path.clone()).unwrap();
        // The file holds the padded dump; the digest is sent after it.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, backup.data_len);
        assert!(backup.data_len.is_multiple_of(512));
        bytes.extend_from_slice(&backup.digest);
        let saved = dir.path().join("saved.db");
        std::fs::write(&saved, &bytes).unwrap();
        drop(backup);
        assert!(!path.exists(), "the temporary file goes with the backup");

        let restored = MemoryEngine::new();
        storage::Engine::restore(&restored, &mut open_backup(&saved).unwrap()).unwrap();
        let copy = MvccStore::open(Arc::new(restored)).unwrap();
        assert_eq!(copy.current_revision(), 101);

        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        std::fs::write(&saved, &damaged).unwrap();
        let err = open_backup(&saved).err().expect("damage is refused");
        assert!(matches!(err, BackupError::Digest { .. }), "{err}");
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
        std::fs::write(&saved, &bytes[..20]).unwrap();
        assert!(matches!(open_backup(&saved), Err(BackupError::TooShort { len: 20, .. })));
        std::fs::write(&saved, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(open_backup(&saved), Err(BackupError::NotFramed { .. })));
    }
}
