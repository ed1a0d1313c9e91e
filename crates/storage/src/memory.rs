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

use crate::dump::{read_dump, DumpWriter};
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
        let mut contents = read_dump(input)?;
        let _guard = self.write_lock.lock();
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

    fn collect(e: &MemoryEngine, t: Table, start: &[u8], end: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        e.scan(t, start, end, &mut |k, _| {
            keys.push(k.to_vec());
            true
        })
        .unwrap();
        keys
    }

    #[test]
    fn put_get_delete_and_size() {
        let e = MemoryEngine::new();
        assert_eq!(e.kind(), "memory");
        let mut b = WriteBatch::default();
        b.put(Table::Key, b"a".to_vec(), b"11".to_vec());
        b.put(Table::Meta, b"a".to_vec(), b"2".to_vec());
        b.put(Table::Key, b"a".to_vec(), b"333".to_vec()); // later op wins
        e.write(b).unwrap();
        assert_eq!(e.get(Table::Key, b"a").unwrap(), Some(b"333".to_vec()));
        assert_eq!(e.get(Table::Meta, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(e.get(Table::Lease, b"a").unwrap(), None);
        assert_eq!(e.size_bytes(), 4 + 2);
        let mut b = WriteBatch::default();
        b.delete(Table::Key, b"a".to_vec());
        b.delete(Table::Key, b"missing".to_vec());
        e.write(b).unwrap();
        assert_eq!(e.get(Table::Key, b"a").unwrap(), None);
        assert_eq!(e.size_bytes(), 2);
    }

    #[test]
    fn scan_bounds_and_early_stop() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            b.put(Table::Auth, k.to_vec(), vec![]);
        }
        e.write(b).unwrap();
        assert_eq!(collect(&e, Table::Auth, b"b", Some(b"d")), [b"b", b"c"]);
        assert_eq!(collect(&e, Table::Auth, b"b", None).len(), 3);
        assert!(collect(&e, Table::Auth, b"d", Some(b"b")).is_empty());
        assert!(collect(&e, Table::Auth, b"b", Some(b"b")).is_empty());
        assert!(collect(&e, Table::Key, b"", None).is_empty());
        let mut n = 0;
        e.scan(Table::Auth, b"", None, &mut |_, _| {
            n += 1;
            n < 2
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn dump_restore_round_trip() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        for (i, &t) in Table::all().iter().enumerate() {
            for j in 0..10u8 {
                b.put(t, vec![j, i as u8], vec![j; j as usize]);
            }
        }
        e.write(b).unwrap();
        let mut dump = Vec::new();
        e.dump(&mut dump).unwrap();

        let f = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Table::Lease, b"stale".to_vec(), b"x".to_vec());
        f.write(b).unwrap();
        f.restore(&mut &dump[..]).unwrap();
        assert_eq!(f.get(Table::Lease, b"stale").unwrap(), None);
        assert_eq!(f.size_bytes(), e.size_bytes());
        for &t in Table::all() {
            let all = |x: &MemoryEngine| {
                let mut v = Vec::new();
                x.scan(t, b"", None, &mut |k, val| {
                    v.push((k.to_vec(), val.to_vec()));
                    true
                })
                .unwrap();
                v
            };
            assert_eq!(all(&e), all(&f));
            assert_eq!(all(&e).len(), 10);
        }
        let mut again = Vec::new();
        f.dump(&mut again).unwrap();
        assert_eq!(again, dump);
    }

    #[test]
    fn restore_garbage_is_corrupt_and_keeps_contents() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Table::Key, b"k".to_vec(), b"v".to_vec());
        e.write(b).unwrap();
        let mut dump = Vec::new();
        e.dump(&mut dump).unwrap();
        for garbage in [&b""[..], b"garbage", &dump[..dump.len() - 1]] {
            let r = e.restore(&mut &garbage[..]);
            assert!(matches!(r, Err(EngineError::Corrupt(_))), "{r:?}");
        }
        assert_eq!(e.get(Table::Key, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(e.size_bytes(), 2);
    }
}
