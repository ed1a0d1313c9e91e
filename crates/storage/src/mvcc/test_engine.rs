//! The engine the MVCC tests inject faults with: a memory engine whose
//! reads, writes or history deletions can be made to fail, and which counts
//! scans, the entries they visit and the ops written.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crate::engine::{BatchOp, Engine, EngineError, WriteBatch};
use crate::memory::MemoryEngine;
use crate::schema::Table;

#[derive(Default)]
pub(super) struct FaultyEngine {
    pub(super) inner: MemoryEngine,
    pub(super) fail_get: AtomicBool,
    pub(super) fail_write: AtomicBool,
    /// Fails only batches that delete history (`Table::Key`): compaction's
    /// deletions, a restore's sweep of the old state.
    pub(super) fail_key_deletes: AtomicBool,
    /// Fails only batches that write the stored key index.
    pub(super) fail_index_writes: AtomicBool,
    pub(super) scans: AtomicUsize,
    pub(super) scanned: AtomicUsize,
    pub(super) written_ops: AtomicUsize,
}

impl FaultyEngine {
    pub(super) fn reset_counts(&self) {
        self.scans.store(0, SeqCst);
        self.scanned.store(0, SeqCst);
        self.written_ops.store(0, SeqCst);
    }

    fn injected() -> EngineError {
        EngineError::Io(std::io::Error::other("injected failure"))
    }
}

impl Engine for FaultyEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if self.fail_get.load(SeqCst) {
            return Err(Self::injected());
        }
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        self.scans.fetch_add(1, SeqCst);
        self.inner.scan(table, start, end, &mut |k, v| {
            self.scanned.fetch_add(1, SeqCst);
            visit(k, v)
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let key_deletes = batch.ops.iter().any(|op| matches!(op, BatchOp::Delete { table: Table::Key, .. }));
        let index_writes = batch.ops.iter().any(|op| match op {
            BatchOp::Put { table, .. } | BatchOp::Delete { table, .. } => *table == Table::Index,
        });
        if self.fail_write.load(SeqCst)
            || (key_deletes && self.fail_key_deletes.load(SeqCst))
            || (index_writes && self.fail_index_writes.load(SeqCst))
        {
            return Err(Self::injected());
        }
        self.written_ops.fetch_add(batch.len(), SeqCst);
        self.inner.write(batch)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.last_key(table)
    }

    fn kind(&self) -> &'static str {
        "faulty"
    }

    fn dump(&self, out: &mut dyn std::io::Write) -> Result<(), EngineError> {
        self.inner.dump(out)
    }

    fn restore(&self, input: &mut dyn std::io::Read) -> Result<(), EngineError> {
        self.inner.restore(input)
    }
}

/// A memory engine whose scans see each key as of one moment, as RocksDB's
/// iterators do (a scan holds a read lock that writes wait for; the memory
/// engine's own scans can miss a key overwritten while they pass it, which
/// the stored key index, overwriting histories, must not meet), and which
/// counts the [`Table::Key`] entries scanned.
#[derive(Default)]
pub(super) struct ConsistentEngine {
    pub(super) inner: Arc<MemoryEngine>,
    pub(super) key_scans: Arc<AtomicUsize>,
    lock: parking_lot::RwLock<()>,
}

impl ConsistentEngine {
    /// Over `inner`'s contents, counting into `key_scans`.
    pub(super) fn over(inner: Arc<MemoryEngine>, key_scans: Arc<AtomicUsize>) -> ConsistentEngine {
        ConsistentEngine { inner, key_scans, lock: parking_lot::RwLock::new(()) }
    }
}

impl Engine for ConsistentEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let _read = self.lock.read();
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let _read = self.lock.read();
        self.inner.scan(table, start, end, &mut |k, v| {
            if table == Table::Key {
                self.key_scans.fetch_add(1, SeqCst);
            }
            visit(k, v)
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let _write = self.lock.write();
        self.inner.write(batch)
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.last_key(table)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn kind(&self) -> &'static str {
        "consistent"
    }

    fn dump(&self, out: &mut dyn std::io::Write) -> Result<(), EngineError> {
        self.inner.dump(out)
    }

    fn restore(&self, input: &mut dyn std::io::Read) -> Result<(), EngineError> {
        self.inner.restore(input)
    }
}
