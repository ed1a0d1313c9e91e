//! [`MemoryEngine`]: every table is a lock-free ordered skip list in memory.
//!
//! Durability comes from the raft WAL plus snapshots (see Durability and
//! restart in docs/architecture.md), not from this engine: after a crash its
//! contents are rebuilt by [`Engine::restore`] from the last snapshot and WAL
//! replay.
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
//! - A write that must wait for a deferred dump (it changes [`Table::Key`]
//!   below the dump's bound: in MVCC only the compactor does) waits without
//!   that mutex, so writes above the bound never queue behind it.
//! - `restore` parses and validates the whole input before touching the
//!   contents, so a corrupt dump leaves the engine unchanged.

use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;
use parking_lot::{Condvar, Mutex};

use crate::dump::{read_dump, read_dump_with, DumpWriter};
use crate::engine::{BatchOp, DeferredDump, Engine, EngineError, WriteBatch};
use crate::schema::Table;

type TableMap = SkipMap<Vec<u8>, Vec<u8>>;
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The in-memory engine (the default).
pub struct MemoryEngine {
    tables: [TableMap; 6],
    /// Sum of key and value lengths over all tables.
    bytes: AtomicU64,
    /// Serialises `write`, `dump` and `restore`.
    write_lock: Mutex<()>,
    /// Deferred dumps not yet done, and the highest `key_end` among them.
    dumps: Mutex<ActiveDumps>,
    dumps_done: Condvar,
}

#[derive(Default)]
struct ActiveDumps {
    count: usize,
    key_end: Vec<u8>,
}

/// Held by a deferred dump's job; dropping it lets waiting writes go on.
struct DumpGuard(Arc<MemoryEngine>);

impl Drop for DumpGuard {
    fn drop(&mut self) {
        let mut d = self.0.dumps.lock();
        d.count -= 1;
        if d.count == 0 {
            d.key_end.clear();
        }
        self.0.dumps_done.notify_all();
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        MemoryEngine {
            tables: Default::default(),
            bytes: AtomicU64::new(0),
            write_lock: Mutex::new(()),
            dumps: Mutex::new(ActiveDumps::default()),
            dumps_done: Condvar::new(),
        }
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

    /// Waits while a deferred dump runs that `conflicts` with (given its
    /// `key_end`). Bounded by the dump's own run time.
    fn wait_for_dumps(&self, conflicts: impl Fn(&[u8]) -> bool) {
        let mut d = self.dumps.lock();
        while d.count > 0 && conflicts(&d.key_end) {
            self.dumps_done.wait(&mut d);
        }
    }
}

/// True when `batch` writes [`Table::Key`] below `key_end`.
fn writes_key_below(batch: &WriteBatch, key_end: &[u8]) -> bool {
    batch.ops.iter().any(|op| match op {
        BatchOp::Put { table, key, .. } | BatchOp::Delete { table, key } => *table == Table::Key && &key[..] < key_end,
    })
}

fn entry_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Engine for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.table(table).get(key).map(|e| e.value().clone()))
    }

    /// Borrows each value instead of cloning it, as [`Engine::get`] must.
    fn get_each(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        _bulk: bool,
        found: &mut dyn FnMut(usize, Option<&[u8]>),
    ) -> Result<(), EngineError> {
        let t = self.table(table);
        for (i, k) in keys.iter().enumerate() {
            found(i, t.get(k.as_slice()).as_ref().map(|e| e.value().as_slice()));
        }
        Ok(())
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
        // A batch that must wait for a dump (the compactor's deletes) waits
        // without the write lock, so other writes (the apply loop's, above
        // the dump's bound) go on meanwhile. A dump starts under the write
        // lock, so one that is not running at the check below cannot start
        // before this batch is written.
        let conflicts = |key_end: &[u8]| writes_key_below(&batch, key_end);
        let _guard = loop {
            self.wait_for_dumps(conflicts);
            let guard = self.write_lock.lock();
            let d = self.dumps.lock();
            if d.count == 0 || !conflicts(&d.key_end) {
                break guard;
            }
        };
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

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.table(table).back().map(|e| e.key().clone()))
    }

    fn dump(&self, out: &mut dyn io::Write) -> Result<(), EngineError> {
        let _guard = self.write_lock.lock();
        let mut w = DumpWriter::new(out)?;
        for &table in Table::dumped() {
            w.begin_table(table)?;
            for entry in self.table(table) {
                w.entry(entry.key(), entry.value())?;
            }
        }
        w.finish()
    }

    fn deferred_dump(self: Arc<Self>, key_end: Vec<u8>) -> Result<Option<DeferredDump>, EngineError> {
        // Every dumped table but Key, copied now, in Table::dumped() order.
        let copied: Vec<Pairs> = {
            let _guard = self.write_lock.lock();
            let mut d = self.dumps.lock();
            d.count += 1;
            if key_end > d.key_end {
                d.key_end = key_end.clone();
            }
            Table::dumped()
                .iter()
                .filter(|&&t| t != Table::Key)
                .map(|&t| self.table(t).iter().map(|e| (e.key().clone(), e.value().clone())).collect())
                .collect()
        };
        let guard = DumpGuard(self);
        Ok(Some(Box::new(move |out: &mut dyn io::Write| {
            let engine = &guard.0;
            let mut w = DumpWriter::new(out)?;
            let mut copied = copied.into_iter();
            for &table in Table::dumped() {
                w.begin_table(table)?;
                if table == Table::Key {
                    let below: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Excluded(&key_end));
                    for e in engine.table(table).range::<[u8], _>(below) {
                        w.entry(e.key(), e.value())?;
                    }
                } else if let Some(entries) = copied.next() {
                    for (k, v) in &entries {
                        w.entry(k, v)?;
                    }
                }
            }
            w.finish()
        })))
    }

    fn restore(&self, input: &mut dyn io::Read) -> Result<(), EngineError> {
        let _guard = self.write_lock.lock();
        self.wait_for_dumps(|_| true);
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

    fn put(e: &MemoryEngine, table: Table, key: &[u8], value: &[u8]) {
        let mut b = WriteBatch::default();
        b.put(table, key.to_vec(), value.to_vec());
        e.write(b).unwrap();
    }

    #[test]
    fn a_deferred_dump_writes_the_state_it_was_taken_at() {
        let e = Arc::new(MemoryEngine::new());
        put(&e, Table::Key, b"k1", b"v1");
        put(&e, Table::Key, b"k2", b"v2");
        put(&e, Table::Meta, b"m", b"1");
        put(&e, Table::Lease, b"l1", b"x");
        let mut then = Vec::new();
        e.dump(&mut then).unwrap();
        let job = e.clone().deferred_dump(b"k3".to_vec()).unwrap().expect("the memory engine defers");
        // Changes after it was taken: at or above the bound in Table::Key,
        // anywhere in the other tables.
        put(&e, Table::Key, b"k3", b"v3");
        put(&e, Table::Meta, b"m", b"2");
        let mut b = WriteBatch::default();
        b.delete(Table::Lease, b"l1".to_vec());
        e.write(b).unwrap();
        let mut later = Vec::new();
        job(&mut later).unwrap();
        assert_eq!(later, then);
    }

    #[test]
    fn writes_below_a_running_dumps_bound_wait_for_it() {
        let e = Arc::new(MemoryEngine::new());
        put(&e, Table::Key, b"k1", b"v1");
        let job = e.clone().deferred_dump(b"k5".to_vec()).unwrap().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut b = WriteBatch::default();
                b.delete(Table::Key, b"k1".to_vec());
                e.write(b).unwrap();
                done_tx.send(()).unwrap();
            })
        };
        let waited = done_rx.recv_timeout(std::time::Duration::from_millis(200));
        assert!(waited.is_err(), "a delete below the bound must wait for the dump");
        // Meanwhile writes at or above the bound go on: the waiting delete
        // does not hold the write lock.
        let above = {
            let e = e.clone();
            std::thread::spawn(move || put(&e, Table::Key, b"k7", b"v7"))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !above.is_finished() {
            assert!(std::time::Instant::now() < deadline, "a write above the bound queued behind the waiting one");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        above.join().unwrap();
        let mut out = Vec::new();
        job(&mut out).unwrap();
        done_rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the delete goes on once the dump is done");
        writer.join().unwrap();
        let mut dumped = read_dump(&mut &out[..]).unwrap();
        assert_eq!(dumped.take_table(Table::Key), vec![(b"k1".to_vec(), b"v1".to_vec())]);
        assert_eq!(e.table_len(Table::Key), 1, "k1 deleted, k7 written");
        // A job dropped unrun releases its hold too.
        let job = e.clone().deferred_dump(b"k9".to_vec()).unwrap().unwrap();
        drop(job);
        put(&e, Table::Key, b"k2", b"v2");
        assert_eq!(e.table_len(Table::Key), 2);
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
