//! [`MemoryEngine`]: every table is a lock-free ordered skip list in memory.
//!
//! Durability comes from the raft WAL plus snapshots (see DESIGN.md §3), not from
//! this engine: after a crash its contents are rebuilt by [`Engine::restore`] from
//! the last snapshot and WAL replay.
//!
//! Invariants:
//! - Reads (`get`, `scan`) never take a lock; they may run during a `write` and
//!   then see some of its ops and not others. Callers that need batch-level
//!   visibility (MVCC) publish through their own mechanism (the current
//!   revision), which is why this is allowed.
//! - `write`, `dump` and `restore` serialise on one mutex, so a dump is a
//!   consistent point-in-time view even while a writer is waiting, and the byte
//!   count behind [`Engine::size_bytes`] is always exactly the sum of
//!   `key.len() + value.len()` over all tables.
//! - `restore` parses and validates the whole input before touching the
//!   contents, so a corrupt dump leaves the engine unchanged.

use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

use crate::dump::{read_dump, read_dump_with, DumpWriter};
use crate::engine::{BatchOp, Engine, EngineError, Table, WriteBatch};

type TableMap = SkipMap<Vec<u8>, Vec<u8>>;

/// The in-memory engine (the default).
pub struct MemoryEngine {
    tables: [TableMap; 5],
    /// Sum of key and value lengths over all tables.
    bytes: AtomicU64,
    /// Serialises `write`, `dump` and `restore`.
    write_lock: Mutex<()>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        MemoryEngine { tables: Default::default(), bytes: AtomicU64::new(0), write_lock: Mutex::new(()) }
    }

    fn table(&self, table: Table) -> &TableMap {
        &self.tables[table.index()]
    }

    /// Number of entries in `table` (tests and diagnostics).
    pub fn table_len(&self, table: Table) -> usize {
        self.table(table).len()
    }

    /// True when every table is empty.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.is_empty())
    }
}

fn entry_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Engine for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.table(table).get(key).map(|e| e.value().clone()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        if let Some(end) = end {
            if end <= start {
                return Ok(());
            }
        }
        let upper = match end {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(start), upper);
        for entry in self.table(table).range::<[u8], _>(range) {
            if !visit(entry.key(), entry.value()) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let _guard = self.write_lock.lock();
        let (mut added, mut removed) = (0u64, 0u64);
        for op in batch.ops {
            match op {
                BatchOp::Put { table, key, value } => {
                    let map = self.table(table);
                    if let Some(old) = map.get(&key[..]) {
                        removed += entry_size(old.key(), old.value());
                    }
                    added += entry_size(&key, &value);
                    map.insert(key, value);
                }
                BatchOp::Delete { table, key } => {
                    if let Some(old) = self.table(table).remove(&key[..]) {
                        removed += entry_size(old.key(), old.value());
                    }
                }
            }
        }
        // Only this thread changes `bytes` while the lock is held, so the
        // result cannot underflow.
        let now = self.bytes.load(Ordering::Relaxed) + added - removed;
        self.bytes.store(now, Ordering::Relaxed);
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn dump(&self, out: &mut dyn io::Write) -> Result<(), EngineError> {
        let _guard = self.write_lock.lock();
        let mut w = DumpWriter::new(out)?;
        for &table in Table::all() {
            w.begin_table(table)?;
            for entry in self.table(table).iter() {
                w.entry(entry.key(), entry.value())?;
            }
        }
        w.finish()
    }

    fn restore(&self, input: &mut dyn io::Read) -> Result<(), EngineError> {
        let _guard = self.write_lock.lock();
        if self.is_empty() {
            // A restart: nothing to keep on error, so entries go straight
            // into the maps as they are read (half the peak memory of
            // parsing the whole dump first).
            let mut bytes = 0u64;
            let streamed = read_dump_with(input, &mut |table, k, v| {
                bytes += entry_size(&k, &v);
                self.table(table).insert(k, v);
                Ok(())
            });
            if let Err(e) = streamed {
                self.tables.iter().for_each(|t| t.clear());
                return Err(e);
            }
            self.bytes.store(bytes, Ordering::Relaxed);
            return Ok(());
        }
        let mut contents = read_dump(input)?;
        let mut bytes = 0u64;
        for &table in Table::all() {
            let map = self.table(table);
            map.clear();
            for (k, v) in contents.take_table(table) {
                bytes += entry_size(&k, &v);
                map.insert(k, v);
            }
        }
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn passes_the_engine_conformance_checks() {
        conformance::run_all(&mut || Box::new(MemoryEngine::new()));
    }

    #[test]
    fn a_bad_dump_into_an_empty_engine_leaves_it_empty() {
        let source = MemoryEngine::new();
        let mut b = WriteBatch::default();
        for i in 0..100u32 {
            b.put(Table::Key, i.to_be_bytes().to_vec(), vec![1; 10]);
        }
        source.write(b).unwrap();
        let mut dump = Vec::new();
        source.dump(&mut dump).unwrap();
        let e = MemoryEngine::new();
        assert!(e.restore(&mut &dump[..dump.len() - 3]).is_err());
        assert!(e.is_empty());
        assert_eq!(e.size_bytes(), 0);
        e.restore(&mut &dump[..]).unwrap();
        assert_eq!(e.table_len(Table::Key), 100);
        assert_eq!(e.size_bytes(), source.size_bytes());
    }

    #[test]
    fn size_counts_keys_and_values() {
        let e = MemoryEngine::new();
        assert_eq!(e.kind(), "memory");
        let mut b = WriteBatch::default();
        b.put(Table::Key, b"a".to_vec(), b"11".to_vec());
        b.put(Table::Meta, b"a".to_vec(), b"2".to_vec());
        b.put(Table::Key, b"a".to_vec(), b"333".to_vec()); // later op wins
        e.write(b).unwrap();
        assert_eq!(e.size_bytes(), 4 + 2);
        let mut b = WriteBatch::default();
        b.delete(Table::Key, b"a".to_vec());
        e.write(b).unwrap();
        assert_eq!(e.size_bytes(), 2);
        let mut dump = Vec::new();
        e.dump(&mut dump).unwrap();
        let f = MemoryEngine::new();
        f.restore(&mut &dump[..]).unwrap();
        assert_eq!(f.size_bytes(), 2);
        assert!(f.restore(&mut &b"junk"[..]).is_err());
        assert_eq!(f.size_bytes(), 2);
    }
}
