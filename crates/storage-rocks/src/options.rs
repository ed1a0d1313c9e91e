//! RocksDB tuning: the defaults and why (see also docs/operations.md).
//!
//! - **Block cache**: one LRU cache shared by every column family, index and
//!   filter blocks included (so it bounds read memory), 64 MiB by default.
//!   Reads of current values mostly hit the memtables and the newest files.
//! - **Write buffers**: 16 MiB memtables for the MVCC history (`key`), three
//!   at most; 4 MiB for the small tables. All memtables together are capped
//!   at twice the `key` buffer. Metadata writes are small: loading 1M keys
//!   ran as fast as with RocksDB's usual 64 MiB (and with 32 MiB), with 26
//!   and then 11 MiB less RSS (docs/benchmarks.md).
//! - **Compression**: none for L0/L1 (hot, rewritten soon), LZ4 below, ZSTD
//!   for the bottom level, where most bytes of a large store sit.
//! - **Bloom filters** (10 bits/key) on `key` (point reads by revision) and
//!   `index` (a put of a new key asks for a history that is not there).
//!   Their filters and indexes are partitioned, with only the top level
//!   pinned: a whole file's filter is megabytes at millions of keys, and
//!   with whole filters the 64 MiB cache thrashed past 1M keys (every miss
//!   read and checksummed one: puts fell from 15k to 3k per second; the
//!   profile was XXH3 and `pread`).
//! - **WAL**: on, point-in-time recovery (a prefix of batches after a
//!   crash), not fsynced per write: durability of acknowledged writes comes
//!   from the raft WAL, and the node fsyncs RocksDB's WAL before it
//!   truncates the raft log (see the crate docs).
//! - **Background jobs**: two, matching a small machine; RocksDB's own info
//!   log is kept to three 16 MiB files.
//! - **Compactions run at the lowest CPU priority** (nice 19, RocksDB's
//!   low-priority pool; flushes keep the normal one). They use idle CPU and
//!   yield it to the threads that serve requests. An MVCC compaction
//!   deletes old revisions scattered over the whole history, so RocksDB
//!   then rewrites all of it. At the normal priority, three members doing
//!   that at once on two cores tripled put p99; at nice 19 the rewrite
//!   waits instead (docs/benchmarks.md, Scale). A compaction starved for
//!   long lets level-0 files pile up until RocksDB slows writes down, which
//!   frees the CPU it needs: the backlog is bounded either way.

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, Env,
    Options,
};
use storage::Table;

/// User-facing knobs; everything else is fixed in [`RocksOptions::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Shared block cache, bytes.
    pub block_cache_bytes: usize,
    /// Memtable size of the MVCC history table, bytes.
    pub write_buffer_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions { block_cache_bytes: 64 << 20, write_buffer_bytes: 16 << 20 }
    }
}

const SMALL_WRITE_BUFFER: usize = 4 << 20;

impl RocksOptions {
    /// Database options and one descriptor per [`Table`].
    pub fn build(&self) -> (Options, Vec<ColumnFamilyDescriptor>) {
        let cache = Cache::new_lru_cache(self.block_cache_bytes);
        let mut db = Options::default();
        db.create_if_missing(true);
        db.create_missing_column_families(true);
        db.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        db.set_max_background_jobs(2);
        // Best effort: without a handle on the environment, compactions keep
        // the normal priority.
        if let Ok(mut env) = Env::new() {
            env.lower_thread_pool_cpu_priority();
            db.set_env(&env);
        }
        db.set_db_write_buffer_size(self.write_buffer_bytes * 2);
        db.set_max_total_wal_size(4 * self.write_buffer_bytes as u64);
        db.set_bytes_per_sync(1 << 20);
        db.set_keep_log_file_num(3);
        db.set_max_log_file_size(16 << 20);
        let cfs = Table::all()
            .iter()
            .map(|&t| {
                let mut o = Options::default();
                let mut table = BlockBasedOptions::default();
                table.set_block_cache(&cache);
                table.set_cache_index_and_filter_blocks(true);
                table.set_pin_l0_filter_and_index_blocks_in_cache(true);
                if t == Table::Key || t == Table::Index {
                    table.set_bloom_filter(10.0, false);
                    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
                    table.set_partition_filters(true);
                    table.set_metadata_block_size(4096);
                    table.set_pin_top_level_index_and_filter(true);
                    o.set_write_buffer_size(self.write_buffer_bytes);
                    o.set_max_write_buffer_number(3);
                } else {
                    o.set_write_buffer_size(SMALL_WRITE_BUFFER);
                    o.set_max_write_buffer_number(2);
                }
                o.set_block_based_table_factory(&table);
                o.set_level_compaction_dynamic_level_bytes(true);
                o.set_compression_per_level(&[
                    DBCompressionType::None,
                    DBCompressionType::None,
                    DBCompressionType::Lz4,
                    DBCompressionType::Lz4,
                    DBCompressionType::Lz4,
                    DBCompressionType::Lz4,
                    DBCompressionType::Lz4,
                ]);
                o.set_bottommost_compression_type(DBCompressionType::Zstd);
                ColumnFamilyDescriptor::new(t.name(), o)
            })
            .collect();
        (db, cfs)
    }
}
