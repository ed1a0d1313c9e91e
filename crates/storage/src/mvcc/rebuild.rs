//! Rebuilding the key index from [`Table::Key`] (open, restart, snapshot
//! install), as etcd's `restore`.
//!
//! The engine scan visits revisions in ascending order. For each stored
//! revision: a key seen for the first time starts from `restore` (a put whose
//! `create_revision` and `version` come from the stored value, because earlier
//! revisions may have been compacted away) or `restore_tombstone` (a lone
//! tombstone kept by compaction); later revisions are appended as puts or
//! tombstones.
//!
//! Invariant: anything that could not have been written by this crate (an
//! undecodable key or value, a revision out of order for its key, a tombstone
//! for a key that does not exist) is [`MvccError::Corrupt`], never a panic.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::schema::Table;

use super::error::MvccError;
use super::key_index::KeyIndex;
use super::kv::{decode_header, KvHeader};
use super::revision::{Revision, RevisionKey};

/// The rebuilt index and the highest main revision found (0 if none).
/// A B-tree, not a hash map: denser while millions of keys are rebuilt, and
/// its key order makes inserting into the skip-list index fast.
#[derive(Default)]
pub struct Loaded {
    pub keys: BTreeMap<Vec<u8>, KeyIndex>,
    pub max_main: i64,
}

/// Reads all of [`Table::Key`] and rebuilds every key's history.
pub fn load_index(engine: &dyn Engine) -> Result<Loaded, MvccError> {
    let mut loaded = Loaded { keys: BTreeMap::new(), max_main: 0 };
    try_scan(engine, Table::Key, None, &mut |k, v| add_revision(&mut loaded, k, v))?;
    Ok(loaded)
}

/// A visitor of stored pairs that may fail.
pub(super) type TryVisit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), MvccError> + 'a;

/// Scans `table` from its first key up to `end` (exclusive; None = all),
/// stopping at the first error `visit` returns and handing it back. Every
/// caller reads the table once through, so this is a bulk scan
/// ([`Engine::scan_bulk`]).
pub(super) fn try_scan(
    engine: &dyn Engine,
    table: Table,
    end: Option<&[u8]>,
    visit: &mut TryVisit<'_>,
) -> Result<(), MvccError> {
    let mut failure = None;
    engine.scan_bulk(table, &[], end, &mut |k, v| match visit(k, v) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// Adds one stored revision (in ascending order) to the index being rebuilt.
pub(super) fn add_revision(loaded: &mut Loaded, k: &[u8], v: &[u8]) -> Result<(), MvccError> {
    let rk = RevisionKey::decode(k)?;
    let h = decode_header(v)?;
    add_to(&mut loaded.keys, rk, &h)?;
    loaded.max_main = loaded.max_main.max(rk.rev.main);
    Ok(())
}

/// Adds the stored revision `rk` of the key-value `h` to `keys`, which
/// holds the key's history so far if it has one.
pub(super) fn add_to(
    keys: &mut BTreeMap<Vec<u8>, KeyIndex>,
    rk: RevisionKey,
    h: &KvHeader<'_>,
) -> Result<(), MvccError> {
    let rev = rk.rev;
    match keys.get_mut(h.key) {
        Some(ki) => {
            if rev <= ki.modified() {
                return Err(MvccError::Corrupt(format!(
                    "revision {rev} of key {:?} is not after {}",
                    String::from_utf8_lossy(h.key),
                    ki.modified()
                )));
            }
            if rk.tombstone {
                if !ki.tombstone(rev) {
                    return Err(MvccError::Corrupt(format!(
                        "tombstone {rev} for key {:?} that does not exist",
                        String::from_utf8_lossy(h.key)
                    )));
                }
            } else {
                ki.put(rev);
            }
        }
        None => {
            let mut ki = KeyIndex::new();
            if rk.tombstone {
                ki.restore_tombstone(rev);
            } else {
                ki.restore(Revision::new(h.create_revision, 0), rev, h.version);
            }
            keys.insert(h.key.to_vec(), ki);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::WriteBatch;
    use crate::mvcc::kv::{encode_kv, KeyValue};
    use crate::MemoryEngine;

    fn put(b: &mut WriteBatch, main: i64, tomb: bool, kv: KeyValue) {
        b.put(Table::Key, RevisionKey::new(Revision::new(main, 0), tomb).encode(), encode_kv(&kv));
    }

    fn kv(key: &[u8], create: i64, ver: i64) -> KeyValue {
        KeyValue { key: key.to_vec(), create_revision: create, version: ver, ..Default::default() }
    }

    #[test]
    fn rebuilds_compacted_history() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        // "a": put 2..4 compacted away; 5 kept (version 4), put 6.
        put(&mut b, 5, false, kv(b"a", 2, 4));
        put(&mut b, 6, false, kv(b"a", 2, 5));
        // "b": lone tombstone at 7, then recreated at 8.
        put(&mut b, 7, true, kv(b"b", 0, 0));
        put(&mut b, 8, false, kv(b"b", 8, 1));
        e.write(b).unwrap();
        let loaded = load_index(&e).unwrap();
        assert_eq!(loaded.max_main, 8);
        let a = &loaded.keys[&b"a".to_vec()];
        let at = a.get(6).unwrap();
        assert_eq!((at.created.main, at.version), (2, 5));
        assert_eq!(a.get(5).unwrap().version, 4);
        let bk = &loaded.keys[&b"b".to_vec()];
        assert_eq!(bk.get(7), None);
        assert_eq!(bk.get(8).unwrap().version, 1);
    }

    #[test]
    fn rejects_impossible_histories() {
        // Tombstone of a key whose current generation is empty.
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        put(&mut b, 2, true, kv(b"a", 0, 0));
        put(&mut b, 3, true, kv(b"a", 0, 0));
        e.write(b).unwrap();
        assert!(matches!(load_index(&e), Err(MvccError::Corrupt(_))));

        // Same revision stored as put and tombstone.
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        put(&mut b, 2, false, kv(b"a", 2, 1));
        put(&mut b, 2, true, kv(b"a", 0, 0));
        e.write(b).unwrap();
        assert!(matches!(load_index(&e), Err(MvccError::Corrupt(_))));

        // Garbage key and garbage value.
        for (k, v) in [
            (b"junk".to_vec(), encode_kv(&kv(b"a", 2, 1))),
            (RevisionKey::new(Revision::new(2, 0), false).encode(), b"junk".to_vec()),
        ] {
            let e = MemoryEngine::new();
            let mut b = WriteBatch::default();
            b.put(Table::Key, k, v);
            e.write(b).unwrap();
            assert!(matches!(load_index(&e), Err(MvccError::Corrupt(_))));
        }
    }
}
