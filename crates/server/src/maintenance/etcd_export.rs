//! MetaStore's tables to etcd's backend: a dump ([`storage::dump`]) in, a
//! bbolt file laid out as etcd's in [`super::etcd_format`] out. What
//! `etcdctl snapshot save` downloads from a member.
//!
//! Invariants: the big tables (`key`, `lease`) stream straight from the
//! dump into their buckets (memory is one page per tree level); the small
//! ones (meta, alarms, auth, members) are gathered and written at the end,
//! since etcd splits them over buckets in another order. Every bucket etcd
//! creates exists in the file, empty or not.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};

use api::pb::etcdserverpb::AlarmMember;
use api::pb::metastorepb::MemberRecord;
use bbolt::BoltWriter;
use prost::Message;
use storage::schema::{self, AuthKey, MembersKey};
use storage::Table;

use super::etcd_format::{self as etcd, LeasePb, MemberJson};

/// Why the export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Bolt(#[from] bbolt::BoltError),
    #[error("reading the dump: {0}")]
    Dump(#[from] storage::EngineError),
    #[error("table {table}: {why}")]
    Value { table: &'static str, why: String },
}

/// Writes the dump read from `dump` as an etcd backend into `out`
/// (positioned at its start); returns `out` and the file's length.
pub fn export<W: Write + Seek>(dump: &mut dyn Read, out: W) -> Result<(W, u64), ExportError> {
    let mut w = BoltWriter::new(out, bbolt::DEFAULT_PAGE_SIZE)?;
    let mut streamed: BTreeSet<&'static [u8]> = BTreeSet::new();
    let mut small: BTreeMap<&'static [u8], BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    let mut failed: Option<ExportError> = None;
    let mut visit = |table: Table, key: Vec<u8>, value: Vec<u8>| -> Result<(), ExportError> {
        match table {
            Table::Key | Table::Lease => {
                let bucket = if table == Table::Key { etcd::KEY } else { etcd::LEASE };
                if streamed.insert(bucket) {
                    w.bucket(bucket)?;
                }
                let value = if table == Table::Key { kv_value(&value)? } else { lease_value(&key, &value)? };
                w.put(&key, &value)?;
            }
            Table::Meta => meta_entry(key, value, &mut small)?,
            Table::Auth => auth_entry(key, value, &mut small)?,
            Table::Members => member_entry(&key, &value, &mut small)?,
            // Derived, never in a dump (the dump reader refuses its name).
            Table::Index => {}
        }
        Ok(())
    };
    let read = storage::dump::read_dump_with(dump, &mut |table, key, value| {
        visit(table, key, value).map_err(|e| {
            failed = Some(e);
            storage::EngineError::Corrupt("export stopped".into())
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    small
        .entry(etcd::CLUSTER)
        .or_default()
        .insert(etcd::CLUSTER_VERSION.to_vec(), etcd::cluster_version().into_bytes());
    for name in etcd::BUCKETS {
        if streamed.contains(name) {
            continue;
        }
        w.bucket(name)?;
        for (k, v) in small.get(name).into_iter().flatten() {
            w.put(k, v)?;
        }
    }
    Ok(w.finish()?)
}

fn bad(table: &'static str, why: impl std::fmt::Display) -> ExportError {
    ExportError::Value { table, why: why.to_string() }
}

/// A stored key-value as etcd's `mvccpb.KeyValue` (a tombstone's holds
/// only its key, as etcd's).
fn kv_value(value: &[u8]) -> Result<Vec<u8>, ExportError> {
    let kv = storage::mvcc::kv::decode_kv(value).map_err(|e| bad("key", e))?;
    Ok(crate::apply::range::to_pb_kv(kv).encode_to_vec())
}

fn lease_value(key: &[u8], value: &[u8]) -> Result<Vec<u8>, ExportError> {
    let id = schema::decode_lease_key(key).ok_or_else(|| bad("lease", "a key that is not a lease ID"))?;
    let ttl = <[u8; 8]>::try_from(value)
        .map_err(|_| bad("lease", format!("lease {id:x}: a TTL of {} bytes", value.len())))?;
    Ok(LeasePb { id, ttl: i64::from_be_bytes(ttl), remaining_ttl: 0 }.encode_to_vec())
}

type Small = BTreeMap<&'static [u8], BTreeMap<Vec<u8>, Vec<u8>>>;

fn meta_entry(key: Vec<u8>, value: Vec<u8>, small: &mut Small) -> Result<(), ExportError> {
    if let Some((member_id, alarm)) = schema::decode_alarm_key(&key) {
        let k = AlarmMember { member_id, alarm }.encode_to_vec();
        small.entry(etcd::ALARM).or_default().insert(k, Vec::new());
        return Ok(());
    }
    let value = match key.as_slice() {
        schema::META_SCHEDULED_COMPACT | schema::META_FINISHED_COMPACT => {
            let rev =
                <[u8; 8]>::try_from(value.as_slice()).map_err(|_| bad("meta", "a compaction revision not 8 bytes"))?;
            etcd::compact_rev_bytes(i64::from_be_bytes(rev))
        }
        schema::META_CONSISTENT_INDEX | schema::META_TERM => value,
        // Nothing etcd knows.
        _ => return Ok(()),
    };
    small.entry(etcd::META).or_default().insert(key, value);
    Ok(())
}

fn auth_entry(key: Vec<u8>, value: Vec<u8>, small: &mut Small) -> Result<(), ExportError> {
    let (bucket, key) = match AuthKey::decode(&key) {
        Some(AuthKey::Enabled) | Some(AuthKey::Revision) => (etcd::AUTH, key),
        Some(AuthKey::User(name)) => (etcd::AUTH_USERS, name),
        Some(AuthKey::Role(name)) => (etcd::AUTH_ROLES, name),
        None => return Err(bad("auth", format!("an unknown key {:?}", String::from_utf8_lossy(&key)))),
    };
    small.entry(bucket).or_default().insert(key, value);
    Ok(())
}

fn member_entry(key: &[u8], value: &[u8], small: &mut Small) -> Result<(), ExportError> {
    match MembersKey::decode(key) {
        Some(MembersKey::Member(id)) => {
            let m = MemberRecord::decode(value).map_err(|e| bad("members", e))?;
            let json = MemberJson {
                id,
                peer_urls: m.peer_urls,
                is_learner: m.is_learner,
                name: m.name,
                client_urls: m.client_urls,
            };
            let json = serde_json::to_vec(&json).map_err(|e| bad("members", e))?;
            small.entry(etcd::MEMBERS).or_default().insert(format!("{id:x}").into_bytes(), json);
        }
        Some(MembersKey::Removed(id)) => {
            small.entry(etcd::MEMBERS_REMOVED).or_default().insert(format!("{id:x}").into_bytes(), b"removed".to_vec());
        }
        // etcd keeps the cluster ID in its WAL, not its backend.
        Some(MembersKey::ClusterId) => {}
        None => return Err(bad("members", "an unknown key")),
    }
    Ok(())
}
