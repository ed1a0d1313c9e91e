//! The storage engine boundary: ordered byte tables with atomic write batches.
//!
//! Everything above this trait (MVCC, leases, auth, membership) talks to an
//! [`Engine`]; no engine-specific type (RocksDB or otherwise) appears here.
//!
//! Invariants every implementation must keep:
//! - Each [`Table`] is an independent ordered map from byte keys to byte values,
//!   ordered by plain lexicographic byte comparison (`memcmp`).
//! - [`Engine::write`] applies a whole [`WriteBatch`] or nothing, with respect to
//!   crashes. Ops inside one batch apply in order, so a later op on the same key
//!   wins.
//! - [`Engine::dump`] and [`Engine::restore`] use the format in [`crate::dump`],
//!   so a snapshot taken from one engine kind can be installed into another.
//! - Malformed input (a bad dump, corrupt on-disk data) is reported as
//!   [`EngineError::Corrupt`], never as a panic.
//! - A [`DeferredDump`] writes the state as of its creation, however long it
//!   runs; writes below its `key_end` in [`Table::Key`] may wait until it is
//!   done (the memory engine's do).

use std::io;
use std::sync::Arc;

use crate::schema::Table;

/// One change inside a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Insert or overwrite `key` in `table`.
    Put { table: Table, key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` from `table` (no error if absent).
    Delete { table: Table, key: Vec<u8> },
}

/// An ordered list of changes applied atomically by [`Engine::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put { table, key: key.into(), value: value.into() });
    }

    /// Appends a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete { table, key: key.into() });
    }

    /// True when the batch holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Errors an engine reports.
#[derive(thiserror::Error, Debug)]
pub enum EngineError {
    #[error("storage io error: {0}")]
    Io(#[from] io::Error),
    #[error("storage corrupted: {0}")]
    Corrupt(String),
    /// An engine-specific failure that is neither plain I/O nor corruption
    /// (for example a RocksDB status), carried as text.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// A dump whose contents were fixed when it was taken, written later by
/// whichever thread runs it; see [`Engine::deferred_dump`]. Dropping it
/// unrun releases what it holds.
pub type DeferredDump = Box<dyn FnOnce(&mut dyn io::Write) -> Result<(), EngineError> + Send>;

/// An ordered, multi-table key-value engine. See the module docs for the
/// invariants implementations keep.
pub trait Engine: Send + Sync + 'static {
    /// The value stored under `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Looks up every key of `keys`, which must be in ascending order, and
    /// calls `found(i, value)` once for each `keys[i]`, in that order (`None`:
    /// not stored). For the many point reads of one large range: RocksDB
    /// reads them batched, each block once. `bulk`: one large request's
    /// reads, which should not displace the block cache's working set (a
    /// 100 k-key LIST would otherwise fill the cache with values nobody
    /// reads again, and grow the process by the cache's free part). The
    /// default calls [`Engine::get`] per key.
    fn get_each(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        _bulk: bool,
        found: &mut dyn FnMut(usize, Option<&[u8]>),
    ) -> Result<(), EngineError> {
        for (i, k) in keys.iter().enumerate() {
            found(i, self.get(table, k)?.as_deref());
        }
        Ok(())
    }

    /// Visits keys in [start, end) (end None = to the end of the table) in
    /// ascending order until visit returns false.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError>;

    /// As [`Engine::scan`], for a one-pass read of a large part of a table
    /// (recovery, index rebuilds, restore sweeps, hashes): the engine may
    /// read ahead and keep what it reads out of its block cache, which such
    /// a pass would only flush of the working set. RocksDB restarts with
    /// leases 40 % faster this way (the lease recovery scans every
    /// revision). The default is [`Engine::scan`].
    fn scan_bulk(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        self.scan(table, start, end, visit)
    }

    /// Applies all ops atomically (all or none survive a crash).
    fn write(&self, batch: WriteBatch) -> Result<(), EngineError>;

    /// The greatest key of `table`, if any. The default scans the table.
    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, EngineError> {
        let mut last = None;
        self.scan(table, &[], None, &mut |k, _| {
            last = Some(k.to_vec());
            true
        })?;
        Ok(last)
    }

    /// Removes every key of `table` in [start, end) atomically. The default
    /// gathers the keys into one batch; RocksDB writes one range tombstone.
    fn delete_range(&self, table: Table, start: &[u8], end: &[u8]) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        self.scan(table, start, Some(end), &mut |k, _| {
            batch.delete(table, k.to_vec());
            true
        })?;
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch)
    }

    /// Approximate bytes held (for Status db_size), read now.
    fn size_bytes(&self) -> u64;

    /// Like [`Engine::size_bytes`], but may answer a reading up to a moment
    /// old: for checks on every write (the space quota), where a fresh
    /// reading would cost too much.
    fn size_bytes_hint(&self) -> u64 {
        self.size_bytes()
    }

    /// Of [`Engine::size_bytes`], the bytes live data takes (etcd's
    /// `db_size_in_use`); the rest is space a compaction or defragmentation
    /// gives back. An engine that keeps nothing dead answers its size.
    fn size_in_use_bytes(&self) -> u64 {
        self.size_bytes()
    }

    /// "memory" or "rocksdb".
    fn kind(&self) -> &'static str;

    /// Streams every table's contents in the framed format of [`crate::dump`]
    /// (used for raft snapshots); must be a consistent view when no writer runs
    /// concurrently.
    fn dump(&self, out: &mut dyn io::Write) -> Result<(), EngineError>;

    /// Like [`dump`](Engine::dump), but returns at once with a job that
    /// writes the dump later, from any thread, while writes go on: the job
    /// writes the state as of this call. The caller promises that later
    /// writes to [`Table::Key`] go at or above `key_end` (the job may leave
    /// them out); a write below `key_end` may wait until the job is done or
    /// dropped (so the caller must not make one on the thread that runs the
    /// job). The memory engine copies the other tables now and makes such
    /// writes wait; RocksDB reads a snapshot and makes nothing wait.
    /// `Ok(None)`: this engine cannot, dump synchronously instead.
    fn deferred_dump(self: Arc<Self>, _key_end: Vec<u8>) -> Result<Option<DeferredDump>, EngineError> {
        Ok(None)
    }

    /// Replaces ALL contents with a stream produced by dump(); rejects malformed
    /// input with EngineError::Corrupt (never panics). On error a volatile
    /// engine keeps its previous contents; a [`persistent`](Engine::persistent)
    /// engine may hold a partial state but then never an applied index
    /// (`mvcc::meta`), so its owner restores again before using it.
    fn restore(&self, input: &mut dyn io::Read) -> Result<(), EngineError>;

    /// True when the contents survive a restart by themselves (RocksDB): the
    /// node then resumes from the engine's applied index instead of
    /// restoring the latest raft snapshot and replaying the log after it.
    fn persistent(&self) -> bool {
        false
    }

    /// Makes every write so far durable. The raft log is only truncated after
    /// this, so what a persistent engine may lose on power failure (its
    /// unsynced tail) can always be re-applied from the log.
    fn sync(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// etcd's defragment: rewrites the engine's files so space held by
    /// deleted data is returned (RocksDB: a full compaction of every table).
    /// Blocks until done; nothing to do for an engine without files.
    fn defragment(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_helpers() {
        let mut b = WriteBatch::default();
        assert!(b.is_empty());
        b.put(Table::Key, b"a".to_vec(), b"1".to_vec());
        b.delete(Table::Meta, b"b".to_vec());
        assert_eq!(b.len(), 2);
        assert_eq!(b.ops[1], BatchOp::Delete { table: Table::Meta, key: b"b".to_vec() });
    }
}
