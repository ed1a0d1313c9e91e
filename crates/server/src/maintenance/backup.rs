//! Backups: what `etcdctl snapshot save` downloads (Maintenance.Snapshot)
//! and what `--restore-snapshot` bootstraps a new cluster from.
//!
//! A backup is an etcd snapshot: a bbolt file laid out as etcd's backend
//! ([`super::etcd_export`]), whose SHA-256 the stream's last message
//! carries (so `etcdctl snapshot save` leaves a file of pages + 32 bytes),
//! exactly as etcd serves it. etcd's tools read it and etcd restores it.
//!
//! A restore takes an etcd snapshot ([`super::etcd_import`], from etcd
//! 3.4/3.5 or from MetaStore) or MetaStore's earlier format: the engine
//! dump (`storage::dump`), zeros up to a multiple of 512 bytes whose last 8
//! hold the dump's length (u64 LE), then the SHA-256 of all that. The two
//! are told apart by the dump's magic at byte 0 (a bbolt file starts with
//! its page 0 header).
//!
//! Invariants: the dump is taken at one point (a deferred dump: writes go on
//! meanwhile, and with the memory engine a compaction waits for it, as for
//! a periodic snapshot) and converted as it is produced (through a pipe, a
//! page per tree level in memory); the download is written to a `.tmp` file in the
//! snapshot directory first (so a slow client never holds the dump open,
//! and a crash leaves a file the next start removes) and removed when the
//! stream ends or the client goes; a restore reads nothing into the engine
//! before the whole file was checked (digest, and for etcd's format every
//! page and value).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use storage::MvccStore;

use super::etcd_export::{self, ExportError};
use super::etcd_import::{EtcdSnapshot, ImportError};

/// Bytes of the digest at the end of a backup.
const DIGEST_LEN: u64 = 32;
/// The dump plus its padding is a multiple of this (etcd's `hasChecksum`).
const ALIGN: u64 = 512;
const IO_BUFFER: usize = 256 << 10;

/// A backup written to a temporary file, removed when this is dropped.
pub struct BackupFile {
    pub path: PathBuf,
    /// Bytes before the digest: the whole bbolt file.
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
    #[error("exporting the store: {0}")]
    Export(#[from] ExportError),
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("{} is too short ({len} bytes) to be a snapshot", .path.display())]
    TooShort { path: PathBuf, len: u64 },
    #[error("{} is not a MetaStore snapshot ({len} bytes is not 512n + 32)", .path.display())]
    NotFramed { path: PathBuf, len: u64 },
    #[error("{}: SHA-256 mismatch (not a MetaStore snapshot, or damaged)", .path.display())]
    Digest { path: PathBuf },
    #[error("{}: the recorded dump length {dump_len} does not fit the file", .path.display())]
    DumpLength { path: PathBuf, dump_len: u64 },
}

/// Writes `mvcc` as of now into `path` as an etcd snapshot (blocking: call
/// it off the async runtime). The digest is kept aside, not written.
pub fn write_backup(mvcc: &MvccStore, path: PathBuf) -> Result<BackupFile, BackupError> {
    let dump = mvcc.deferred_dump()?;
    let file = File::create(&path).map_err(|source| BackupError::Io { op: "create", path: path.clone(), source })?;
    // From here on the file goes away with `backup` on every path.
    let mut backup = BackupFile { path, data_len: 0, digest: [0; 32] };
    let io = |op| {
        let path = backup.path.clone();
        move |source| BackupError::Io { op, path, source }
    };
    let (pipe_out, pipe_in) = io::pipe().map_err(io("pipe"))?;
    let exported = std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<(), BackupError> {
            let mut out = BufWriter::with_capacity(IO_BUFFER, pipe_in);
            match dump {
                Some(job) => job(&mut out)?,
                None => mvcc.engine().dump(&mut out)?,
            }
            out.flush().map_err(|source| BackupError::Io { op: "write", path: PathBuf::from("(pipe)"), source })
        });
        let mut input = BufReader::with_capacity(IO_BUFFER, pipe_out);
        let exported = etcd_export::export(&mut input, BufWriter::with_capacity(IO_BUFFER, file));
        // The producer stops at a broken pipe if the export gave up.
        drop(input);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(BackupError::Io {
                op: "dump",
                path: PathBuf::from("(dump thread)"),
                source: io::Error::other("the dump thread panicked"),
            })
        });
        match (exported, produced) {
            (Ok(done), Ok(())) => Ok(done),
            // A dump cut short is the producer's failure (the pipe closed
            // behind its error); a broken pipe is the export's (it stopped
            // reading).
            (Err(ExportError::Dump(_)), Err(e)) if !is_broken_pipe(&e) => Err(e),
            (Err(e), _) => Err(e.into()),
            (Ok(_), Err(e)) => Err(e),
        }
    });
    let (out, len) = exported?;
    let file = out.into_inner().map_err(|e| BackupError::Io {
        op: "write",
        path: backup.path.clone(),
        source: e.into_error(),
    })?;
    drop(file);
    let mut hasher = Sha256::new();
    let mut written = File::open(&backup.path).map_err(io("open"))?;
    io::copy(&mut BufReader::with_capacity(IO_BUFFER, &mut written), &mut hasher).map_err(io("read"))?;
    backup.data_len = len;
    backup.digest = hasher.finalize().into();
    Ok(backup)
}

/// A snapshot file ready to restore, checked whole.
pub enum RestoreSource {
    /// An etcd snapshot (etcd's or MetaStore's).
    Etcd(EtcdSnapshot),
    /// MetaStore's earlier format: the dump inside it.
    Dump(Box<dyn Read + Send>),
}

impl RestoreSource {
    /// Hands `restore` the snapshot's contents as a dump.
    pub fn restore_with<E: From<BackupError>>(
        self,
        restore: impl FnOnce(&mut dyn Read) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            RestoreSource::Dump(mut dump) => restore(&mut dump),
            RestoreSource::Etcd(snap) => {
                let (pipe_out, pipe_in) = io::pipe().map_err(|source| BackupError::Io {
                    op: "pipe",
                    path: PathBuf::from("(pipe)"),
                    source,
                })?;
                std::thread::scope(|s| {
                    let producer = s.spawn(move || {
                        let mut out = BufWriter::with_capacity(IO_BUFFER, pipe_in);
                        snap.import(&mut out)?;
                        out.flush().map_err(|source| BackupError::Io {
                            op: "write",
                            path: PathBuf::from("(pipe)"),
                            source,
                        })
                    });
                    let mut input = BufReader::with_capacity(IO_BUFFER, pipe_out);
                    let restored = restore(&mut input);
                    drop(input);
                    let produced = producer.join().unwrap_or_else(|_| {
                        Err(BackupError::Io {
                            op: "import",
                            path: PathBuf::from("(import thread)"),
                            source: io::Error::other("the import thread panicked"),
                        })
                    });
                    match (restored, produced) {
                        (Ok(()), Ok(())) => Ok(()),
                        // The importer stopped writing because the restore
                        // stopped reading: the restore's error is the cause.
                        (Err(e), Err(p)) if is_broken_pipe(&p) => Err(e),
                        (_, Err(p)) => Err(p.into()),
                        (Err(e), Ok(())) => Err(e),
                    }
                })
            }
        }
    }
}

/// True when `e` is a write into a pipe whose reader went away.
fn is_broken_pipe(e: &BackupError) -> bool {
    let io = match e {
        BackupError::Io { source, .. } | BackupError::Dump(storage::EngineError::Io(source)) => Some(source),
        BackupError::Import(ImportError::Write { source: storage::EngineError::Io(source), .. }) => Some(source),
        _ => None,
    };
    io.is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Opens the snapshot at `path` for a restore, whichever of the two
/// formats it is, after checking all of it.
pub fn open_restore(path: &Path, skip_hash_check: bool) -> Result<RestoreSource, BackupError> {
    let mut head = [0u8; 8];
    let is_dump = File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|source| BackupError::Io {
        op: "open",
        path: path.to_path_buf(),
        source,
    })? == head.len()
        && storage::dump::is_dump_header(&head);
    if is_dump {
        return Ok(RestoreSource::Dump(Box::new(open_backup(path)?)));
    }
    Ok(RestoreSource::Etcd(EtcdSnapshot::open(path, skip_hash_check)?))
}

/// Checks the digest at the end of a backup in MetaStore's earlier format
/// at `path` and returns a reader over its dump.
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
    io::copy(&mut (&mut reader).take(data_len), &mut hasher).map_err(io("read"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use storage::dump::{read_dump, DumpContents};
    use storage::schema::{self, AuthKey, MembersKey};
    use storage::{AppliedIndex, Engine, MemoryEngine, Table, WriteBatch};

    /// A store with history, a tombstone, a lease, auth and members.
    fn sample() -> MvccStore {
        let engine = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::default();
        b.put(Table::Lease, schema::lease_key(0x1234).to_vec(), 60i64.to_be_bytes().to_vec());
        b.put(Table::Auth, AuthKey::Enabled.encode(), vec![1]);
        b.put(Table::Auth, AuthKey::Revision.encode(), 7u64.to_be_bytes().to_vec());
        b.put(Table::Auth, AuthKey::User(b"u1".to_vec()).encode(), b"\x0a\x02u1".to_vec());
        b.put(Table::Auth, AuthKey::Role(b"r1".to_vec()).encode(), b"\x0a\x02r1".to_vec());
        b.put(Table::Members, MembersKey::Member(10).encode(), b"\x08\x0a\x12\x01m".to_vec());
        b.put(Table::Members, MembersKey::Removed(11).encode(), Vec::new());
        b.put(Table::Meta, schema::alarm_key(10, 1), Vec::new());
        engine.write(b).unwrap();
        let mvcc = MvccStore::open(engine).unwrap();
        for i in 0..300u64 {
            let mut txn = mvcc.write_txn();
            txn.put(
                format!("k{:03}", i % 120).as_bytes(),
                &vec![b'v'; (i % 5) as usize],
                if i == 7 { 0x1234 } else { 0 },
            );
            if i == 200 {
                txn.delete_range(&storage::KeyRange::Single(b"k005".to_vec())).unwrap();
            }
            txn.commit(AppliedIndex { index: i + 1, term: 1 }).unwrap();
        }
        mvcc
    }

    fn contents(engine: &dyn Engine) -> DumpContents {
        let mut bytes = Vec::new();
        engine.dump(&mut bytes).unwrap();
        read_dump(&mut bytes.as_slice()).unwrap()
    }

    /// The file a client saves: the stream's data, then its digest.
    fn saved(backup: &BackupFile, dir: &Path) -> PathBuf {
        let mut bytes = std::fs::read(&backup.path).unwrap();
        assert_eq!(bytes.len() as u64, backup.data_len);
        bytes.extend_from_slice(&backup.digest);
        let path = dir.join("saved.db");
        std::fs::write(&path, &bytes).unwrap();
        path
    }

    #[test]
    fn an_etcd_snapshot_restores_history_leases_and_auth_not_members() {
        let dir = tempfile::tempdir().unwrap();
        let mvcc = sample();
        let backup = write_backup(&mvcc, dir.path().join("b.tmp")).unwrap();
        assert!(backup.data_len.is_multiple_of(bbolt::DEFAULT_PAGE_SIZE as u64));
        let path = saved(&backup, dir.path());
        drop(backup);
        assert!(!dir.path().join("b.tmp").exists(), "the temporary file goes with the backup");

        let restored = MemoryEngine::new();
        open_restore(&path, false).unwrap().restore_with(|d| restored.restore(d).map_err(BackupError::Dump)).unwrap();
        let (want, got) = (contents(mvcc.engine().as_ref()), contents(&restored));
        for table in [Table::Key, Table::Lease, Table::Auth] {
            assert_eq!(got.table(table), want.table(table), "{}", table.name());
        }
        assert!(got.table(Table::Members).is_empty(), "a restore starts a new membership");
        assert!(got.table(Table::Meta).is_empty(), "no alarm, no applied index");
        let copy = MvccStore::open(Arc::new(restored)).unwrap();
        assert_eq!(copy.current_revision(), mvcc.current_revision());
    }

    #[test]
    fn damaged_or_truncated_snapshots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backup = write_backup(&sample(), dir.path().join("b.tmp")).unwrap();
        let path = saved(&backup, dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let with = |data: &[u8], skip: bool| {
            std::fs::write(&path, data).unwrap();
            open_restore(&path, skip).err().map(|e| e.to_string())
        };
        let mut damaged = bytes.clone();
        damaged[5000] ^= 1;
        assert!(with(&damaged, false).unwrap().contains("expected sha256"), "{:?}", with(&damaged, false));
        // Cut by whole pages, the last 32 bytes read as a digest that fails.
        let pages_cut = &bytes[..bytes.len() - 4096];
        assert!(with(pages_cut, false).unwrap().contains("expected sha256"), "{:?}", with(pages_cut, false));
        let cut = &bytes[..bytes.len() - 100];
        assert!(with(cut, false).unwrap().contains("snapshot missing hash"), "{:?}", with(cut, false));
        let half = &bytes[..bytes.len() / 2 / 4096 * 4096];
        assert!(with(half, true).unwrap().contains("truncated bbolt"), "{:?}", with(half, true));
        assert!(with(b"not a snapshot at all", true).unwrap().contains("not a bbolt database"));
        // Without the digest, with --skip-hash-check (a copied member/snap/db).
        assert_eq!(with(&bytes[..bytes.len() - 32], true), None);
        assert_eq!(with(&bytes, false), None);
    }

    #[test]
    fn a_bbolt_file_that_is_not_etcds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let mut w = bbolt::BoltWriter::new(File::create(&path).unwrap(), 4096).unwrap();
        w.bucket(b"widgets").unwrap();
        w.put(b"a", b"b").unwrap();
        w.finish().unwrap();
        let err = open_restore(&path, true).err().unwrap().to_string();
        assert!(err.contains("not an etcd snapshot: no bucket \"key\""), "{err}");

        // etcd's buckets, one value of a shape etcd never writes: refused
        // at the check, before anything is restored.
        let mut w = bbolt::BoltWriter::new(File::create(&path).unwrap(), 4096).unwrap();
        for (bucket, key, value) in
            [(&b"auth"[..], &b"authRevision"[..], &b"abc"[..]), (b"key", b"", b""), (b"meta", b"", b"")]
        {
            w.bucket(bucket).unwrap();
            if !key.is_empty() {
                w.put(key, value).unwrap();
            }
        }
        w.finish().unwrap();
        let err = open_restore(&path, true).err().unwrap().to_string();
        assert!(err.contains("bucket auth: key \"authRevision\": a value of 3 bytes"), "{err}");
    }

    /// A snapshot of a cluster restored with etcdutl's `--bump-revision
    /// --mark-compacted` (etcd 3.6): the bumped revision is a `key` entry
    /// with an empty value and the scheduled compaction; it restores, and
    /// revisions go on from the bumped one.
    #[test]
    fn a_bumped_revision_marker_restores() {
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bumped.db");
        let mut w = bbolt::BoltWriter::new(File::create(&path).unwrap(), 4096).unwrap();
        w.bucket(b"key").unwrap();
        let kv = api::pb::mvccpb::KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"1".to_vec(),
            lease: 0,
        };
        w.put(&super::super::etcd_format::compact_rev_bytes(2), &kv.encode_to_vec()).unwrap();
        w.put(&super::super::etcd_format::compact_rev_bytes(1002), b"").unwrap();
        w.bucket(b"meta").unwrap();
        w.put(b"scheduledCompactRev", &super::super::etcd_format::compact_rev_bytes(1002)).unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&digest);
        std::fs::write(&path, &bytes).unwrap();
        let restored = MemoryEngine::new();
        open_restore(&path, false).unwrap().restore_with(|d| restored.restore(d).map_err(BackupError::Dump)).unwrap();
        let mvcc = MvccStore::open(Arc::new(restored)).unwrap();
        assert_eq!(mvcc.current_revision(), 1002);
        assert_eq!(mvcc.compact_revision(), 1002);
        let r = mvcc.range(&storage::KeyRange::Single(b"a".to_vec()), storage::RangeOptions::default()).unwrap();
        assert_eq!(r.kvs.len(), 1);
    }

    /// Files saved from MetaStore before it spoke etcd's format still restore.
    #[test]
    fn the_earlier_format_still_restores() {
        let dir = tempfile::tempdir().unwrap();
        let mvcc = sample();
        let mut bytes = Vec::new();
        mvcc.engine().dump(&mut bytes).unwrap();
        let dump_len = bytes.len() as u64;
        let pad = 8 + (ALIGN - (dump_len + 8) % ALIGN) % ALIGN;
        bytes.resize((dump_len + pad - 8) as usize, 0);
        bytes.extend_from_slice(&dump_len.to_le_bytes());
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&digest);
        let path = dir.path().join("old.db");
        std::fs::write(&path, &bytes).unwrap();
        let restored = MemoryEngine::new();
        open_restore(&path, false).unwrap().restore_with(|d| restored.restore(d).map_err(BackupError::Dump)).unwrap();
        assert_eq!(contents(&restored), contents(mvcc.engine().as_ref()));
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(open_restore(&path, false), Err(BackupError::Digest { .. })));
    }
}
