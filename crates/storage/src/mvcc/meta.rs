//! Store-wide metadata kept in [`Table::Meta`]: the raft applied index and the
//! finished compaction revision.
//!
//! Keys (names follow etcd's meta bucket; values are 8-byte big-endian):
//!
//! | key                  | value                                   |
//! |----------------------|-----------------------------------------|
//! | `consistent_index`   | `u64` raft index of the last applied entry |
//! | `term`               | `u64` raft term of that entry           |
//! | `finishedCompactRev` | `i64` revision of the last finished compaction |
//!
//! Invariant: the applied index is written in the same engine batch as the
//! changes of the entry it names, so after a crash the engine never holds an
//! entry's effects without its index (or the index without the effects).
//! Other layers may add their own Meta keys but must not reuse these names.

use crate::engine::{Engine, Table, WriteBatch};

use super::error::MvccError;

/// Meta key of the applied raft index.
pub const APPLIED_INDEX_KEY: &[u8] = b"consistent_index";
/// Meta key of the applied raft term.
pub const APPLIED_TERM_KEY: &[u8] = b"term";
/// Meta key of the last finished compaction revision.
pub const FINISHED_COMPACT_KEY: &[u8] = b"finishedCompactRev";

/// The raft position of the last entry whose effects are in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppliedIndex {
    pub index: u64,
    pub term: u64,
}

/// Adds the applied index to `batch`.
pub fn put_applied(batch: &mut WriteBatch, applied: AppliedIndex) {
    batch.put(Table::Meta, APPLIED_INDEX_KEY.to_vec(), applied.index.to_be_bytes().to_vec());
    batch.put(Table::Meta, APPLIED_TERM_KEY.to_vec(), applied.term.to_be_bytes().to_vec());
}

/// Adds the finished compaction revision to `batch`.
pub fn put_finished_compact(batch: &mut WriteBatch, rev: i64) {
    batch.put(Table::Meta, FINISHED_COMPACT_KEY.to_vec(), rev.to_be_bytes().to_vec());
}

fn read_u64(engine: &dyn Engine, key: &[u8]) -> Result<Option<u64>, MvccError> {
    match engine.get(Table::Meta, key)? {
        None => Ok(None),
        Some(v) => {
            let arr: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                MvccError::Corrupt(format!("meta key {} has {} bytes, want 8", String::from_utf8_lossy(key), v.len()))
            })?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

/// Reads the applied index (zero when never saved).
pub fn load_applied(engine: &dyn Engine) -> Result<AppliedIndex, MvccError> {
    Ok(AppliedIndex {
        index: read_u64(engine, APPLIED_INDEX_KEY)?.unwrap_or(0),
        term: read_u64(engine, APPLIED_TERM_KEY)?.unwrap_or(0),
    })
}

/// Reads the finished compaction revision, if any compaction finished.
pub fn load_finished_compact(engine: &dyn Engine) -> Result<Option<i64>, MvccError> {
    Ok(read_u64(engine, FINISHED_COMPACT_KEY)?.map(|v| v as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryEngine;

    #[test]
    fn round_trip_and_defaults() {
        let e = MemoryEngine::new();
        assert_eq!(load_applied(&e).unwrap(), AppliedIndex::default());
        assert_eq!(load_finished_compact(&e).unwrap(), None);
        let mut b = WriteBatch::default();
        put_applied(&mut b, AppliedIndex { index: 7, term: 3 });
        put_finished_compact(&mut b, 42);
        e.write(b).unwrap();
        assert_eq!(load_applied(&e).unwrap(), AppliedIndex { index: 7, term: 3 });
        assert_eq!(load_finished_compact(&e).unwrap(), Some(42));
    }

    #[test]
    fn wrong_width_is_corrupt() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Table::Meta, APPLIED_TERM_KEY.to_vec(), vec![1, 2, 3]);
        e.write(b).unwrap();
        assert!(matches!(load_applied(&e), Err(MvccError::Corrupt(_))));
    }
}
