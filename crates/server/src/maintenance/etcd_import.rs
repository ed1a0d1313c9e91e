//! etcd's backend to MetaStore's tables: a bbolt file (an etcd 3.4/3.5
//! snapshot, or one MetaStore exported) in, a dump ([`storage::dump`]) out,
//! which an engine restores. Also `snapshot status`, as etcd computes it.
//!
//! What is taken: the whole MVCC history (`key`) and the compaction
//! revisions, leases, auth (switch, revision, users, roles). What is left:
//! members and cluster version (a restore starts a new cluster), alarms
//! (they name the old members), the old applied index.
//!
//! Invariants: a file is read twice: [`EtcdSnapshot::open`] checks the
//! trailer's SHA-256 and converts everything into nothing, so a file that
//! fails, at any byte, fails before a data dir is touched; the second
//! pass ([`EtcdSnapshot::import`]) writes. Keys stay in bucket order, which
//! is MetaStore's table order (the encodings of `key`, `lease` and the
//! auth names preserve it).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use api::pb::authpb;
use api::pb::mvccpb;
use bbolt::BoltReader;
use prost::Message;
use sha2::{Digest, Sha256};
use storage::dump::DumpWriter;
use storage::schema::{self, AuthKey};
use storage::Table;

use super::etcd_format::{self as etcd, LeasePb};
use super::hashkv::Crc32c;

/// Bytes of the SHA-256 trailer `etcdctl snapshot save` leaves.
pub const DIGEST_LEN: u64 = 32;

/// Why an etcd snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", .path.display())]
    Bolt { path: PathBuf, source: bbolt::BoltError },
    /// etcd's own words (etcdutl's `saveDB`).
    #[error("{}: snapshot missing hash but --skip-hash-check=false", .path.display())]
    NoHash { path: PathBuf },
    #[error("{}: expected sha256 {expected}, got {got} (damaged or truncated)", .path.display())]
    Hash { path: PathBuf, expected: String, got: String },
    #[error("{}: not an etcd snapshot: {why}", .path.display())]
    NotEtcd { path: PathBuf, why: String },
    #[error("{}: bucket {bucket}: {why}", .path.display())]
    Value { path: PathBuf, bucket: String, why: String },
    #[error("{}: writing the restored data: {source}", .path.display())]
    Write { path: PathBuf, source: storage::EngineError },
}

/// What a file holds, as `etcdctl snapshot status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// CRC-32C of every bucket name, key and value, in order.
    pub hash: u32,
    /// Main revision of the last entry of `key`.
    pub revision: i64,
    /// Pairs in all buckets (etcd 3.4/3.5's count).
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    /// Pages in use times the page size.
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// A checked etcd snapshot file (the handle that was checked: a file
/// swapped under the path afterwards is not read).
pub struct EtcdSnapshot {
    path: PathBuf,
    file: File,
    /// Bytes before the trailer.
    data_len: u64,
}

/// True when `len` bytes of bbolt pages (multiples of 512) can only be
/// followed by a digest (etcd's `hasChecksum`).
pub fn has_digest(len: u64) -> bool {
    len % 512 == DIGEST_LEN
}

impl EtcdSnapshot {
    /// Checks the trailer (unless `skip_hash_check`) and every bucket,
    /// key and value of the file at `path`.
    pub fn open(path: &Path, skip_hash_check: bool) -> Result<EtcdSnapshot, ImportError> {
        let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let data_len = if has_digest(len) {
            if !skip_hash_check {
                let mut hasher = Sha256::new();
                io::copy(&mut (&mut file).take(len - DIGEST_LEN), &mut hasher).map_err(io_err)?;
                let mut stored = [0u8; DIGEST_LEN as usize];
                file.read_exact(&mut stored).map_err(io_err)?;
                let got: [u8; 32] = hasher.finalize().into();
                if got != stored {
                    return Err(ImportError::Hash { path: path.to_path_buf(), expected: hex(&stored), got: hex(&got) });
                }
            }
            len - DIGEST_LEN
        } else if skip_hash_check {
            len
        } else {
            return Err(ImportError::NoHash { path: path.to_path_buf() });
        };
        let snap = EtcdSnapshot { path: path.to_path_buf(), file, data_len };
        snap.import(&mut io::sink())?;
        Ok(snap)
    }

    /// Writes the file's contents as a dump into `out`; returns the last
    /// revision.
    pub fn import(&self, out: &mut dyn Write) -> Result<i64, ImportError> {
        let reader = self.reader()?;
        let buckets = reader.buckets().map_err(|e| self.bolt(e))?;
        for required in [etcd::KEY, etcd::META] {
            if !buckets.iter().any(|(name, _)| name == required) {
                let why = format!("no bucket {:?}", String::from_utf8_lossy(required));
                return Err(ImportError::NotEtcd { path: self.path.clone(), why });
            }
        }
        let write = |source| ImportError::Write { path: self.path.clone(), source };
        let mut dump = DumpWriter::new(out).map_err(write)?;
        let mut table: Option<Table> = None;
        let mut revision = 0;
        for (name, bucket) in &buckets {
            let Some(into) = table_of(name) else { continue };
            if table != Some(into) {
                dump.begin_table(into).map_err(write)?;
                table = Some(into);
            }
            let bucket_name = String::from_utf8_lossy(name).into_owned();
            let mut failed = None;
            let result = reader.for_each::<ImportError>(bucket, &mut |k, v| {
                let converted = match convert(name, k, v) {
                    Ok(c) => c,
                    Err(why) => return Err(self.value(&bucket_name, k, why)),
                };
                if name == etcd::KEY {
                    revision = etcd::rev_main(k).unwrap_or(revision);
                }
                if let Some((key, value)) = converted {
                    if let Err(e) = dump.entry(&key, &value) {
                        failed = Some(e);
                        return Err(ImportError::NotEtcd { path: self.path.clone(), why: "stopped".into() });
                    }
                }
                Ok(())
            });
            if let Some(e) = failed {
                return Err(write(e));
            }
            result.map_err(|e| self.named(e))?;
        }
        dump.finish().map_err(write)?;
        Ok(revision)
    }

    fn reader(&self) -> Result<BoltReader, ImportError> {
        let file = self.file.try_clone().map_err(|source| ImportError::Io { path: self.path.clone(), source })?;
        BoltReader::open(file, self.data_len).map_err(|e| self.bolt(e))
    }

    fn bolt(&self, source: bbolt::BoltError) -> ImportError {
        match source {
            bbolt::BoltError::Io(source) => ImportError::Io { path: self.path.clone(), source },
            source => ImportError::Bolt { path: self.path.clone(), source },
        }
    }

    fn named(&self, e: ImportError) -> ImportError {
        match e {
            ImportError::Bolt { path, source } if path.as_os_str().is_empty() => self.bolt(source),
            e => e,
        }
    }

    fn value(&self, bucket: &str, key: &[u8], why: String) -> ImportError {
        let why = format!("key {:?}: {why}", String::from_utf8_lossy(key));
        ImportError::Value { path: self.path.clone(), bucket: bucket.to_string(), why }
    }
}

/// What the reader's own errors become inside a visit; `EtcdSnapshot::named`
/// gives them the file's path.
impl From<bbolt::BoltError> for ImportError {
    fn from(e: bbolt::BoltError) -> Self {
        ImportError::Bolt { path: PathBuf::new(), source: e }
    }
}

/// The table a bucket's pairs go to; None for buckets a restore leaves.
fn table_of(bucket: &[u8]) -> Option<Table> {
    match bucket {
        etcd::AUTH | etcd::AUTH_ROLES | etcd::AUTH_USERS => Some(Table::Auth),
        etcd::KEY => Some(Table::Key),
        etcd::LEASE => Some(Table::Lease),
        etcd::META => Some(Table::Meta),
        _ => None,
    }
}

/// A key and value of a MetaStore table.
type Pair = (Vec<u8>, Vec<u8>);

/// One pair of etcd's `bucket` as MetaStore's (None: not carried over).
fn convert(bucket: &[u8], key: &[u8], value: &[u8]) -> Result<Option<Pair>, String> {
    match bucket {
        etcd::KEY => {
            if etcd::rev_main(key).is_none() {
                return Err("not a revision".into());
            }
            // etcdutl's `restore --bump-revision` marks the bumped revision
            // with an empty value (its `scheduledCompactRev` says the same).
            if value.is_empty() {
                return Ok(None);
            }
            let kv = mvccpb::KeyValue::decode(value).map_err(|e| format!("not an mvccpb.KeyValue: {e}"))?;
            if kv.key.is_empty() {
                return Err("a key-value without key".into());
            }
            Ok(Some((key.to_vec(), storage::mvcc::kv::encode_kv(&crate::apply::range::from_pb_kv(kv)))))
        }
        etcd::LEASE => {
            let lease = LeasePb::decode(value).map_err(|e| format!("not a leasepb.Lease: {e}"))?;
            if key.len() != 8 || i64::from_be_bytes(key.try_into().expect("8 bytes")) != lease.id {
                return Err(format!("the key does not name lease {:x}", lease.id));
            }
            Ok(Some((schema::lease_key(lease.id).to_vec(), lease.ttl.to_be_bytes().to_vec())))
        }
        etcd::META => match key {
            schema::META_SCHEDULED_COMPACT | schema::META_FINISHED_COMPACT => {
                let rev = etcd::rev_main(value).ok_or("a compaction revision of another shape")?;
                Ok(Some((key.to_vec(), rev.to_be_bytes().to_vec())))
            }
            // The applied index starts over with the new cluster's log.
            _ => Ok(None),
        },
        etcd::AUTH => match key {
            schema::AUTH_ENABLED if value.len() == 1 => Ok(Some((key.to_vec(), value.to_vec()))),
            schema::AUTH_REVISION if value.len() == 8 => Ok(Some((key.to_vec(), value.to_vec()))),
            schema::AUTH_ENABLED | schema::AUTH_REVISION => Err(format!("a value of {} bytes", value.len())),
            _ => Ok(None),
        },
        etcd::AUTH_USERS => {
            authpb::User::decode(value).map_err(|e| format!("not an authpb.User: {e}"))?;
            Ok(Some((AuthKey::User(key.to_vec()).encode(), value.to_vec())))
        }
        etcd::AUTH_ROLES => {
            authpb::Role::decode(value).map_err(|e| format!("not an authpb.Role: {e}"))?;
            Ok(Some((AuthKey::Role(key.to_vec()).encode(), value.to_vec())))
        }
        _ => Ok(None),
    }
}

/// `etcdctl snapshot status` of the file at `path` (the trailer, if any,
/// is neither counted nor checked, as etcd's).
pub fn status(path: &Path) -> Result<Status, ImportError> {
    let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let data_len = if has_digest(len) { len - DIGEST_LEN } else { len };
    let snap = EtcdSnapshot { path: path.to_path_buf(), file, data_len };
    let reader = snap.reader()?;
    let mut h = Crc32c::default();
    let mut total_key = 0;
    let mut revision = 0;
    for (name, bucket) in reader.buckets().map_err(|e| snap.bolt(e))? {
        h.update(&name);
        reader
            .for_each::<ImportError>(&bucket, &mut |k, v| {
                h.update(k);
                h.update(v);
                total_key += 1;
                if name == etcd::KEY {
                    revision = etcd::rev_main(k).ok_or_else(|| snap.value("key", k, "not a revision".into()))?;
                }
                Ok(())
            })
            .map_err(|e| snap.named(e))?;
    }
    Ok(Status { hash: h.finish(), revision, total_key, total_size: reader.pages() * reader.page_size() as u64 })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
