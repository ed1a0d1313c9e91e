//! [`RocksEngine`]: the [`Engine`] over RocksDB, for state larger than memory
//! and a state machine that survives restarts by itself.
//!
//! Layout: one column family per [`Table`], named [`Table::name`], in
//! `<data-dir>/member/rocksdb`; what each holds is `storage::schema`.
//!
//! Invariants:
//! - [`Engine::write`] is one RocksDB `WriteBatch` with the RocksDB WAL on, so
//!   a batch (data and applied index together, see `storage::mvcc::meta`)
//!   survives a crash whole or not at all, across column families.
//! - Writes are not fsynced one by one: acknowledged writes are already
//!   durable in the raft WAL, and RocksDB recovers to a prefix of its batches
//!   (point-in-time recovery), whose applied index tells the node where to
//!   resume replaying the raft log. [`Engine::sync`] fsyncs the RocksDB WAL;
//!   the node calls it before truncating the raft log.
//! - Iterators and snapshots are scoped values: they are released on every
//!   path, errors included. Every RocksDB error becomes an [`EngineError`].
//! - [`Engine::dump`] reads one RocksDB snapshot, so it is consistent even
//!   while writes go on; [`Engine::deferred_dump`] takes that snapshot at
//!   once and reads it later on a thread of its own (`deferred`), and no
//!   write ever waits for it. [`Engine::restore`] streams: it first removes every
//!   key (range deletes) and the applied index, writes the dump in bounded
//!   batches, writes the dump's applied index last and syncs. A crash or a
//!   corrupt dump part-way leaves no applied index, which makes the node
//!   restore again rather than trust a partial state.

mod deferred;
mod options;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, WriteOptions, DB};
use storage::dump::{read_dump_with, DumpWriter};
use storage::schema::is_applied_index;
use storage::{BatchOp, DeferredDump, Engine, EngineError, Table, WriteBatch};

pub use options::RocksOptions;

/// Restore writes are flushed to RocksDB in batches of about this many bytes.
const RESTORE_BATCH_BYTES: usize = 4 << 20;

/// The RocksDB engine.
pub struct RocksEngine {
    db: Arc<DB>,
    path: PathBuf,
    /// [`Engine::size_bytes_hint`] is asked before every write that adds
    /// data (the space quota) and RocksDB's size properties cost a lock per
    /// table: the last reading and when it was taken (ms since `opened`, 0
    /// = stale) serve the hint for [`SIZE_REUSE_MS`].
    size: AtomicU64,
    size_read_at: AtomicU64,
    opened: Instant,
}

/// How long a size read from RocksDB's properties is reused.
const SIZE_REUSE_MS: u64 = 100;

fn backend(e: rocksdb::Error) -> EngineError {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => EngineError::Corrupt(e.into_string()),
        rocksdb::ErrorKind::IOError => EngineError::Io(io::Error::other(e.into_string())),
        _ => EngineError::Backend(e.into_string()),
    }
}

impl RocksEngine {
    /// Opens (creating if missing) the database at `path`.
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<RocksEngine, EngineError> {
        std::fs::create_dir_all(path)?;
        let (db_opts, cfs) = opts.build();
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(backend)?;
        Ok(RocksEngine {
            db: Arc::new(db),
            path: path.to_path_buf(),
            size: AtomicU64::new(0),
            size_read_at: AtomicU64::new(0),
            opened: Instant::now(),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, table: Table) -> Result<&ColumnFamily, EngineError> {
        cf_of(&self.db, table)
    }

    /// An integer RocksDB property summed over every table.
    pub fn property_sum(&self, name: &str) -> u64 {
        Table::all()
            .iter()
            .filter_map(|&t| self.cf(t).ok())
            .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
            .sum()
    }

    /// Writes the dump of the view `snap` (see [`Engine::dump`]).
    fn dump_from(&self, snap: &rocksdb::Snapshot<'_>, out: &mut dyn io::Write) -> Result<(), EngineError> {
        let mut w = DumpWriter::new(out)?;
        for &table in Table::dumped() {
            w.begin_table(table)?;
            let mut ro = ReadOptions::default();
            ro.set_snapshot(snap);
            // A full scan would only churn the block cache.
            ro.fill_cache(false);
            let mut it = self.db.raw_iterator_cf_opt(self.cf(table)?, ro);
            it.seek_to_first();
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                w.entry(k, v)?;
                it.next();
            }
            it.status().map_err(backend)?;
        }
        w.finish()
    }

    fn write_raw(&self, batch: rocksdb::WriteBatch) -> Result<(), EngineError> {
        self.db.write_opt(batch, &WriteOptions::default()).map_err(backend)
    }

    /// [`Engine::scan`] with the given read options.
    fn scan_with(
        &self,
        mut ro: ReadOptions,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        if let Some(end) = end {
            if end <= start {
                return Ok(());
            }
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(table)?, ro);
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !visit(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }
}

/// Read-ahead of a bulk scan ([`Engine::scan_bulk`]): large sequential
/// reads instead of RocksDB's own read-ahead, which starts at 8 KiB.
const BULK_READAHEAD: usize = 4 << 20;

fn cf_of(db: &DB, table: Table) -> Result<&ColumnFamily, EngineError> {
    db.cf_handle(table.name()).ok_or_else(|| EngineError::Corrupt(format!("column family {} is missing", table.name())))
}

impl Engine for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let v = self.db.get_pinned_cf(self.cf(table)?, key).map_err(backend)?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn get_each(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        bulk: bool,
        found: &mut dyn FnMut(usize, Option<&[u8]>),
    ) -> Result<(), EngineError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(!bulk);
        let values = self.db.batched_multi_get_cf_opt(self.cf(table)?, keys.iter(), true, &ro);
        for (i, v) in values.into_iter().enumerate() {
            found(i, v.map_err(backend)?.as_deref());
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
        self.scan_with(ReadOptions::default(), table, start, end, visit)
    }

    fn scan_bulk(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        ro.set_readahead_size(BULK_READAHEAD);
        self.scan_with(ro, table, start, end, visit)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                BatchOp::Put { table, key, value } => wb.put_cf(self.cf(*table)?, key, value),
                BatchOp::Delete { table, key } => wb.delete_cf(self.cf(*table)?, key),
            }
        }
        self.write_raw(wb)
    }

    fn size_bytes(&self) -> u64 {
        let now = (self.opened.elapsed().as_millis() as u64).max(1);
        let size =
            self.property_sum("rocksdb.total-sst-files-size") + self.property_sum("rocksdb.cur-size-all-mem-tables");
        self.size.store(size, Ordering::Release);
        self.size_read_at.store(now, Ordering::Release);
        size
    }

    fn size_bytes_hint(&self) -> u64 {
        let now = self.opened.elapsed().as_millis() as u64;
        let at = self.size_read_at.load(Ordering::Acquire);
        if at != 0 && now - at.min(now) < SIZE_REUSE_MS {
            return self.size.load(Ordering::Acquire);
        }
        self.size_bytes()
    }

    fn size_in_use_bytes(&self) -> u64 {
        // RocksDB's estimate of the SST bytes still live (dead versions and
        // tombstones excluded), plus the memtables; never above the size.
        let live =
            self.property_sum("rocksdb.estimate-live-data-size") + self.property_sum("rocksdb.cur-size-all-mem-tables");
        // The hint reuses the reading a scrape or Status took just before.
        live.min(self.size_bytes_hint())
    }

    fn kind(&self) -> &'static str {
        "rocksdb"
    }

    fn dump(&self, out: &mut dyn io::Write) -> Result<(), EngineError> {
        self.dump_from(&self.db.snapshot(), out)
    }

    fn deferred_dump(self: Arc<Self>, _key_end: Vec<u8>) -> Result<Option<DeferredDump>, EngineError> {
        deferred::start(self).map(Some)
    }

    fn restore(&self, input: &mut dyn io::Read) -> Result<(), EngineError> {
        // 1. Remove everything, the applied index included, in one batch.
        let mut wipe = rocksdb::WriteBatch::default();
        for &table in Table::all() {
            if let Some(mut last) = self.last_key(table)? {
                last.push(0);
                wipe.delete_range_cf(self.cf(table)?, Vec::<u8>::new(), last);
            }
        }
        self.write_raw(wipe)?;
        self.sync()?;
        // 2. Stream the dump in bounded batches, holding back the applied
        //    index until the whole dump has been read and checked.
        let mut held_back = Vec::new();
        let mut wb = rocksdb::WriteBatch::default();
        read_dump_with(input, &mut |table, key, value| {
            if is_applied_index(table, &key) {
                held_back.push((key, value));
                return Ok(());
            }
            wb.put_cf(cf_of(&self.db, table)?, key, value);
            if wb.size_in_bytes() >= RESTORE_BATCH_BYTES {
                self.write_raw(std::mem::take(&mut wb))?;
            }
            Ok(())
        })?;
        // 3. The rest, then the applied index, then make it durable.
        for (key, value) in held_back {
            wb.put_cf(self.cf(Table::Meta)?, key, value);
        }
        self.write_raw(wb)?;
        // Space of the removed keys comes back with RocksDB's compactions.
        self.sync()
    }

    fn persistent(&self) -> bool {
        true
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, EngineError> {
        let mut it = self.db.raw_iterator_cf(self.cf(table)?);
        it.seek_to_last();
        let last = it.key().map(<[u8]>::to_vec);
        it.status().map_err(backend)?;
        Ok(last)
    }

    fn delete_range(&self, table: Table, start: &[u8], end: &[u8]) -> Result<(), EngineError> {
        let mut wb = rocksdb::WriteBatch::default();
        wb.delete_range_cf(self.cf(table)?, start, end);
        self.write_raw(wb)
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.db.flush_wal(true).map_err(backend)
    }

    fn defragment(&self) -> Result<(), EngineError> {
        for &table in Table::all() {
            self.db.compact_range_cf(self.cf(table)?, None::<&[u8]>, None::<&[u8]>);
        }
        // The space came back: the next size is read afresh.
        self.size_read_at.store(0, Ordering::Release);
        Ok(())
    }
}

/// Iterates `table` from the first key (diagnostics and tests).
pub fn count_keys(engine: &RocksEngine, table: Table) -> Result<usize, EngineError> {
    let mut n = 0;
    for item in engine.db.iterator_cf(engine.cf(table)?, IteratorMode::Start) {
        item.map_err(backend)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
