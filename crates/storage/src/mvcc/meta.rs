//! Store-wide metadata kept in [`Table::Meta`]: the raft applied index and the
//! scheduled and finished compaction revisions. The key names are in
//! [`crate::schema`] (etcd's meta bucket names); values are 8-byte big-endian.
//!
//! Invariants: the applied index is written in the same engine batch as the
//! changes of the entry it names, so after a crash the engine never holds an
//! entry's effects without its index (or the index without the effects). A
//! compaction entry's effect is `scheduledCompactRev` (etcd's name and
//! meaning); `finishedCompactRev` is written in the last batch of the
//! physical deletion, so `scheduled > finished` after a restart means a
//! compaction to resume (see `compact.rs`).

use crate::engine::{Engine, WriteBatch};
use crate::schema::{Table, META_CONSISTENT_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TERM};

use super::error::MvccError;

/// The raft position of the last entry whose effects are in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppliedIndex {
    pub index: u64,
    pub term: u64,
}

/// Adds the applied index to `batch`.
pub fn put_applied(batch: &mut WriteBatch, applied: AppliedIndex) {
    batch.put(Table::Meta, META_CONSISTENT_INDEX.to_vec(), applied.index.to_be_bytes().to_vec());
    batch.put(Table::Meta, META_TERM.to_vec(), applied.term.to_be_bytes().to_vec());
}

/// Adds the finished compaction revision to `batch`.
pub fn put_finished_compact(batch: &mut WriteBatch, rev: i64) {
    batch.put(Table::Meta, META_FINISHED_COMPACT.to_vec(), rev.to_be_bytes().to_vec());
}

/// Adds the scheduled compaction revision to `batch`.
pub fn put_scheduled_compact(batch: &mut WriteBatch, rev: i64) {
    batch.put(Table::Meta, META_SCHEDULED_COMPACT.to_vec(), rev.to_be_bytes().to_vec());
}

/// Decodes the value `v` stored under meta key `key`.
pub(crate) fn decode_u64(key: &[u8], v: &[u8]) -> Result<u64, MvccError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| {
        MvccError::Corrupt(format!("meta key {} has {} bytes, want 8", String::from_utf8_lossy(key), v.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn read_u64(engine: &dyn Engine, key: &[u8]) -> Result<Option<u64>, MvccError> {
    engine.get(Table::Meta, key)?.map(|v| decode_u64(key, &v)).transpose()
}

/// Reads the applied index (zero when never saved).
pub fn load_applied(engine: &dyn Engine) -> Result<AppliedIndex, MvccError> {
    Ok(AppliedIndex {
        index: read_u64(engine, META_CONSISTENT_INDEX)?.unwrap_or(0),
        term: read_u64(engine, META_TERM)?.unwrap_or(0),
    })
}

/// Reads the finished compaction revision, if any compaction finished.
pub fn load_finished_compact(engine: &dyn Engine) -> Result<Option<i64>, MvccError> {
    Ok(read_u64(engine, META_FINISHED_COMPACT)?.map(|v| v as i64))
}

/// Reads the scheduled compaction revision, if any compaction was applied
/// since this key exists (older stores only have the finished one).
pub fn load_scheduled_compact(engine: &dyn Engine) -> Result<Option<i64>, MvccError> {
    Ok(read_u64(engine, META_SCHEDULED_COMPACT)?.map(|v| v as i64))
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
        assert_eq!(load_scheduled_compact(&e).unwrap(), None);
        let mut b = WriteBatch::default();
        put_applied(&mut b, AppliedIndex { index: 7, term: 3 });
        put_finished_compact(&mut b, 42);
        put_scheduled_compact(&mut b, 43);
        e.write(b).unwrap();
        assert_eq!(load_applied(&e).unwrap(), AppliedIndex { index: 7, term: 3 });
        assert_eq!(load_finished_compact(&e).unwrap(), Some(42));
        assert_eq!(load_scheduled_compact(&e).unwrap(), Some(43));
    }

    #[test]
    fn wrong_width_is_corrupt() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Table::Meta, META_TERM.to_vec(), vec![1, 2, 3]);
        e.write(b).unwrap();
        assert!(matches!(load_applied(&e), Err(MvccError::Corrupt(_))));
    }
}
