//! [`MvccStore`]: the multi-version key-value store over an [`Engine`], and its
//! read paths.
//!
//! Concurrency design:
//! - **One writer.** Write txns, scheduling a compaction, `set_applied`,
//!   `reload` and `restore_snapshot` serialise on the writer mutex (in
//!   MetaStore the raft apply loop is the only caller). A thread holding a
//!   [`WriteTxn`] must not call any of the others: the mutex is not
//!   re-entrant and it would deadlock.
//! - **Readers never wait for the writer.** A read loads the published current
//!   revision `R` (an atomic) once and only considers revisions `<= R`. A write
//!   txn at `R+1` first writes its revisions to the engine, then appends them to
//!   the key index, and only then publishes `R+1` — so a reader sees all of a
//!   txn or none of it.
//! - **Compaction vs readers.** Applying a compaction only publishes the new
//!   compact revision `C` (and records it durably); the background compactor
//!   (`compactor.rs`) deletes. Readers enter the [`ReaderGate`] before they
//!   check their revision against the compact revision, and the compactor
//!   waits for a grace period (every reader that entered before `C` was
//!   published has left) before it deletes anything for `C`. Every later
//!   reader has `R >= C`, and the revisions such a reader needs (per key, the
//!   latest `<= R`) are never deleted by compaction at `C`. Nobody waits for
//!   anybody but the compactor.
//! - **Snapshot install vs readers.** Readers hold the index lock shared for
//!   a whole read; a snapshot install takes it exclusively only to swap in
//!   the new state, which it prepared while readers went on (`restore.rs`).
//! - **Lock order**: compaction job, writer, index. The compactor holds the
//!   job lock for one batch and the writer only to compact the key index.
//! - **The engine is the source of truth**: values are always read from
//!   [`Table::Key`] by revision; the key index only maps keys to revisions.
//!   The in-memory one is rebuilt from the engine on open and reload; the
//!   stored one (`stored_index.rs`) is written with the revisions and only
//!   rebuilt when the engine holds none.
//!
//! Revision numbering follows etcd: an empty store is at revision 1, the first
//! write txn that changes something is revision 2, and a txn that changes
//! nothing does not advance the revision.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::engine::{DeferredDump, Engine, WriteBatch};
use crate::schema::Table;

use super::compactor::{CompactionConfig, CompactionCtl, CompactorThread};
use super::count_marks::{CountMarks, Scope};
use super::error::MvccError;
use super::gate::ReaderGate;
use super::index::TreeIndex;
use super::indexes::{Index, KeyIndexKind};
use super::kv::{decode_kv, Event, EventKind, KeyValue};
use super::lease_rows::{LeasedKeys, LiveLeases};
use super::meta::{self, AppliedIndex};
use super::range::{KeyRange, KvSink, RangeOptions, RangeResult, RangeTotals};
use super::rebuild::load_index;
use super::revision::{Revision, RevisionKey};
use super::stored_index::{StoredBuilder, StoredIndex};
use super::txn::WriteTxn;

/// Internal compact revision before any compaction (etcd's `-1`): a request
/// to compact at 0 on a fresh store succeeds, as in etcd.
pub(super) const NEVER_COMPACTED: i64 = -1;

/// The MVCC store. `Send + Sync`; share it as `Arc<MvccStore>`.
pub struct MvccStore {
    pub(super) shared: Arc<Shared>,
    /// Published current revision; readers see revisions `<=` it.
    pub(super) current_rev: AtomicI64,
    /// Revision of the last compaction applied (scheduled), readers below
    /// it fail; [`NEVER_COMPACTED`] if none.
    pub(super) compact_rev: AtomicI64,
    pub(super) applied: Mutex<AppliedIndex>,
    /// Bumped whenever stored history at or below the current revision may
    /// change under a reader that does not hold the index lock: a new
    /// compaction scheduled, a snapshot installed (see [`Self::history_epoch`]).
    pub(super) epoch: AtomicU64,
    pub(super) compactor: CompactorThread,
    /// How the key index was last made ready (open, reload).
    index_load: Mutex<IndexLoad>,
    /// What large ranges' counts learned (`count_marks.rs`).
    pub(super) counts: CountMarks,
}

/// How a store made its key index ready, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexLoad {
    /// True when it read every stored revision (the in-memory index always
    /// does; the stored one only when the engine held none).
    pub rebuilt: bool,
    /// Time it took.
    pub took: std::time::Duration,
}

/// What the store shares with its background compactor.
pub(super) struct Shared {
    pub(super) engine: Arc<dyn Engine>,
    /// Held shared by readers for a whole read; exclusively only while a
    /// snapshot install or reload swaps in a new index.
    pub(super) index: RwLock<Index>,
    /// The kind of `index` (never `Auto`).
    pub(super) index_kind: KeyIndexKind,
    /// Held by the single writer (see the module docs).
    pub(super) writer: Mutex<()>,
    pub(super) gate: ReaderGate,
    pub(super) compaction: CompactionCtl,
}

impl MvccStore {
    /// Opens over an engine, rebuilding the in-memory key index from Table::Key
    /// and restoring current/compacted revision and applied index from
    /// Table::Meta. current revision = max(highest revision in Table::Key,
    /// scheduled compact revision); starts at 1 for an empty store (etcd: first
    /// write gets revision 2). A compaction that had not finished (crash,
    /// snapshot taken mid-way) resumes in the background.
    pub fn open(engine: Arc<dyn Engine>) -> Result<MvccStore, MvccError> {
        Self::open_with(engine, CompactionConfig::default())
    }

    /// [`Self::open`] with compaction settings (batch size; tests may turn
    /// the background compactor off and step it by hand).
    pub fn open_with(engine: Arc<dyn Engine>, config: CompactionConfig) -> Result<MvccStore, MvccError> {
        Self::open_with_index(engine, config, KeyIndexKind::Auto)
    }

    /// [`Self::open_with`] with the key index chosen: `Auto` stores it in a
    /// persistent engine and keeps it in memory otherwise.
    pub fn open_with_index(
        engine: Arc<dyn Engine>,
        config: CompactionConfig,
        kind: KeyIndexKind,
    ) -> Result<MvccStore, MvccError> {
        let index_kind = kind.resolve(engine.as_ref());
        let store = MvccStore {
            shared: Arc::new(Shared {
                engine,
                index: RwLock::new(Index::Memory(TreeIndex::new())),
                index_kind,
                writer: Mutex::new(()),
                gate: ReaderGate::default(),
                compaction: CompactionCtl::new(config),
            }),
            current_rev: AtomicI64::new(1),
            compact_rev: AtomicI64::new(NEVER_COMPACTED),
            applied: Mutex::new(AppliedIndex::default()),
            epoch: AtomicU64::new(0),
            compactor: CompactorThread::default(),
            index_load: Mutex::new(IndexLoad::default()),
            counts: CountMarks::default(),
        };
        let index = store.load()?;
        *store.shared.index.write() = index;
        store.kick_compactor();
        Ok(store)
    }

    /// Reads all in-memory state but the index from the engine and returns
    /// the index (opened, or rebuilt) for the caller to install. Callers
    /// hold the job, writer and exclusive index locks (or own the store
    /// exclusively).
    pub(super) fn load(&self) -> Result<Index, MvccError> {
        let engine = &*self.shared.engine;
        let applied = meta::load_applied(engine)?;
        let finished = meta::load_finished_compact(engine)?.unwrap_or(NEVER_COMPACTED);
        let scheduled = meta::load_scheduled_compact(engine)?.unwrap_or(NEVER_COMPACTED).max(finished);
        let (index, max_main) = self.load_index()?;
        // As etcd: a compaction may have removed the latest revisions (trailing
        // deletes), and it may have done so before it finished.
        let current = max_main.max(scheduled).max(1);
        self.publish_loaded(current, scheduled, finished, applied);
        Ok(index)
    }

    /// The key index and the highest main revision stored.
    fn load_index(&self) -> Result<(Index, i64), MvccError> {
        let started = std::time::Instant::now();
        let (index, max_main, rebuilt) = self.open_or_build_index()?;
        *self.index_load.lock() = IndexLoad { rebuilt, took: started.elapsed() };
        Ok((index, max_main))
    }

    /// How the key index was last made ready.
    pub fn index_load(&self) -> IndexLoad {
        *self.index_load.lock()
    }

    /// The stored index when the engine holds one, else a rebuilt one;
    /// true when rebuilt.
    fn open_or_build_index(&self) -> Result<(Index, i64, bool), MvccError> {
        let engine = &self.shared.engine;
        if self.shared.index_kind != KeyIndexKind::Stored {
            StoredIndex::invalidate(engine.as_ref())?;
            let loaded = load_index(engine.as_ref())?;
            // In key order (a B-tree): each skip-list insert finds its place
            // on a hot path, several times faster than random order at 1M keys.
            return Ok((Index::Memory(TreeIndex::from_keys(loaded.keys)), loaded.max_main, true));
        }
        if let Some(stored) = StoredIndex::open(engine.clone())? {
            let max_main = match engine.last_key(Table::Key)? {
                Some(k) => RevisionKey::decode(&k)?.rev.main,
                None => 0,
            };
            return Ok((Index::Stored(stored), max_main, false));
        }
        StoredIndex::clear_slot(engine.as_ref(), 1)?;
        let built = StoredBuilder::rebuild(engine.clone(), 0)?;
        Ok((Index::Stored(built.index), built.max_main, true))
    }

    /// The kind of key index this store keeps (`Memory` or `Stored`).
    pub fn key_index_kind(&self) -> KeyIndexKind {
        self.shared.index_kind
    }

    /// Publishes freshly loaded revisions and resets the compactor to them.
    pub(super) fn publish_loaded(&self, current: i64, scheduled: i64, finished: i64, applied: AppliedIndex) {
        self.compact_rev.store(scheduled, Ordering::SeqCst);
        self.current_rev.store(current, Ordering::SeqCst);
        *self.applied.lock() = applied;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.counts.clear();
        self.shared.compaction.reset(scheduled, finished);
    }

    /// Every existing key attached to a lease, by lease. The stored index
    /// keeps them as lease rows (one read per leased key); with the
    /// in-memory index it is one pass over the stored history reading only
    /// key headers. Call it with no writer running (open, snapshot install).
    pub fn leased_keys(&self) -> Result<LeasedKeys, MvccError> {
        if let Index::Stored(stored) = &*self.index() {
            return stored.leased_keys();
        }
        Ok(LiveLeases::scan(self.shared.engine.as_ref())?.by_lease())
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }

    /// Keys in the index, those whose history holds only a deletion
    /// included (etcd's `keys_total`).
    pub fn keys_total(&self) -> usize {
        self.shared.index.read().len()
    }

    /// The latest published revision.
    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The last compaction revision applied; 0 when never compacted. Reads
    /// below it fail from the moment it is applied, whether or not the old
    /// revisions are physically gone yet (see [`Self::finished_compact_revision`]).
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire).max(0)
    }

    /// Changes whenever stored history at or below the current revision may
    /// have changed for a reader that scans the engine without the store's
    /// locks (HashKV): a compaction applied, a snapshot installed. Equal
    /// before and after such a scan means the scan saw one consistent state
    /// (the physical deletion of an already applied compaction only removes
    /// revisions that no read at or above it can see).
    pub(crate) fn history_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// HashKV's keep set at `rev` with the compact revision it was computed
    /// against (-1 when never compacted): the revision each key existing at
    /// `rev` has there, when at or below that compact revision (etcd's
    /// `kvindex.Keep` as its hasher uses it). The same whether or not the
    /// compaction finished physically. Errors as [`Self::range`] at `rev`.
    pub(crate) fn hash_keep(&self, rev: i64) -> Result<(HashSet<Revision>, i64), MvccError> {
        let index = self.shared.index.read();
        let _reader = self.shared.gate.enter();
        let cur = self.current_rev.load(Ordering::Acquire);
        let rev = self.resolve_rev(rev, cur)?;
        let compact = self.compact_rev.load(Ordering::Acquire);
        Ok((index.hash_keep(rev, compact)?, compact))
    }

    /// The raft position of the last entry applied to this store.
    pub fn applied_index(&self) -> AppliedIndex {
        *self.applied.lock()
    }

    /// Concurrent, never blocks the writer: takes rev = requested or current;
    /// errors: rev > current => FutureRevision; rev < compact_revision (and
    /// rev > 0 requested) => Compacted. Keys in ascending order; limit applied
    /// (count still counts all).
    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult, MvccError> {
        let mut kvs = Vec::new();
        let totals = self.range_into(range, opts, &mut kvs)?;
        Ok(RangeResult { kvs, count: totals.count, rev: totals.rev })
    }

    /// [`Self::range`], handing the key-values to `sink` as they are read:
    /// at most one batch of them is held here at a time.
    pub fn range_into(
        &self,
        range: &KeyRange,
        opts: RangeOptions,
        sink: &mut dyn KvSink,
    ) -> Result<RangeTotals, MvccError> {
        let index = self.shared.index.read();
        let _reader = self.shared.gate.enter();
        let cur = self.current_rev.load(Ordering::Acquire);
        self.range_at(&index, range, opts, cur, sink)
    }

    /// The index, for the writer and the compactor (readers take it in
    /// their read path, see the module docs).
    pub(super) fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.shared.index.read()
    }

    /// Validates a requested read revision against `cur` (the reader's current
    /// revision) and the compaction, as etcd's `rangeKeys`.
    pub(super) fn resolve_rev(&self, requested: i64, cur: i64) -> Result<i64, MvccError> {
        if requested > cur {
            return Err(MvccError::FutureRevision);
        }
        let rev = if requested <= 0 { cur } else { requested };
        if rev < self.compact_rev.load(Ordering::Acquire) {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// A range read as of a reader whose current revision is `cur`.
    pub(super) fn range_at(
        &self,
        index: &Index,
        range: &KeyRange,
        opts: RangeOptions,
        cur: i64,
        sink: &mut dyn KvSink,
    ) -> Result<RangeTotals, MvccError> {
        let rev = self.resolve_rev(opts.rev, cur)?;
        let limit = limit_of(opts);
        let mut revs = Vec::new();
        // Marks only at a published revision (see `count_marks.rs`).
        let published = rev <= self.current_rev.load(Ordering::Acquire);
        let scope = published.then(|| Scope::of(range, rev, self.epoch.load(Ordering::SeqCst))).flatten();
        let mut walk = self.counts.walk(scope);
        index.visit(range, rev, |k, at| {
            if !walk.count(k) {
                return false;
            }
            if revs.len() < limit {
                revs.push(at.modified);
            }
            walk.counted(k, revs.len() >= limit);
            true
        })?;
        let count = walk.finish();
        sink.start(revs.len());
        self.read_kvs(&revs, sink)?;
        Ok(RangeTotals { count, rev: cur })
    }

    /// Hands `sink` the stored values of live revisions the index points at,
    /// in the order given. Read in batches ([`Engine::get_each`]), each in
    /// revision order, the table's: one by one each read would look its
    /// block up again. More than [`BULK_READ_VALUES`] values are a bulk read,
    /// kept out of the block cache.
    fn read_kvs(&self, revs: &[Revision], sink: &mut dyn KvSink) -> Result<(), MvccError> {
        if let [rev] = revs {
            // A single key's read, the most common: no batch to set up.
            return sink.kv(self.read_kv(*rev)?);
        }
        let bulk = revs.len() > BULK_READ_VALUES;
        let mut order: Vec<usize> = Vec::with_capacity(READ_BATCH.min(revs.len()));
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(order.capacity());
        let mut read: Vec<Option<KeyValue>> = Vec::with_capacity(order.capacity());
        for batch in revs.chunks(READ_BATCH) {
            order.clear();
            order.extend(0..batch.len());
            order.sort_unstable_by_key(|&i| batch[i]);
            keys.clear();
            keys.extend(order.iter().map(|&i| batch[i].to_bytes().to_vec()));
            read.clear();
            read.resize_with(batch.len(), || None);
            let mut failed = None;
            self.shared.engine.get_each(Table::Key, &keys, bulk, &mut |j, v| {
                let i = order[j];
                match v.map(decode_kv) {
                    Some(Ok(kv)) => read[i] = Some(kv),
                    Some(Err(e)) => failed = Some(e),
                    None => failed = Some(missing(batch[i])),
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            for (kv, &rev) in read.drain(..).zip(batch) {
                sink.kv(kv.ok_or_else(|| missing(rev))?)?;
            }
        }
        Ok(())
    }

    /// The stored value of a live (non-tombstone) revision the index points at.
    pub(super) fn read_kv(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        self.try_read_kv(rev)?.ok_or_else(|| missing(rev))
    }

    /// Like [`Self::read_kv`] but None when the revision is gone (compacted).
    fn try_read_kv(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        match self.shared.engine.get(Table::Key, &rev.to_bytes())? {
            Some(bytes) => Ok(Some(decode_kv(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Only one writer at a time (the raft apply loop): blocks until the
    /// previous [`WriteTxn`] (or compaction, `set_applied`, reload) finished.
    pub fn write_txn(&self) -> WriteTxn<'_> {
        WriteTxn::new(self, self.shared.writer.lock())
    }

    /// Saves applied index alone (for raft entries that change no key), atomically.
    pub fn set_applied(&self, applied: AppliedIndex) -> Result<(), MvccError> {
        self.set_applied_with(applied, WriteBatch::default())
    }

    /// Saves the applied index together with `extra` ops in one atomic batch
    /// (state outside the key space that changed without a key changing).
    pub fn set_applied_with(&self, applied: AppliedIndex, extra: WriteBatch) -> Result<(), MvccError> {
        let _writer = self.shared.writer.lock();
        let mut batch = extra;
        meta::put_applied(&mut batch, applied);
        self.shared.engine.write(batch)?;
        *self.applied.lock() = applied;
        Ok(())
    }

    /// Events (puts and deletes, with prev_kv if asked) for revisions in
    /// [from_rev, to_rev] in revision order, read from the engine (for watch
    /// replay). from_rev < compact_revision => Compacted. `to_rev` is clamped
    /// to the current revision.
    ///
    /// `prev_kv` is the version the change replaced when it is still stored;
    /// it is absent for the first put of a generation and, as in etcd's watch,
    /// when that version was compacted away (only possible for changes at the
    /// compaction revision itself).
    ///
    /// The whole window is collected in memory: replay long histories in
    /// bounded chunks.
    pub fn events_between(&self, from_rev: i64, to_rev: i64, prev_kv: bool) -> Result<Vec<Event>, MvccError> {
        let index = self.shared.index.read();
        let _reader = self.shared.gate.enter();
        let cur = self.current_rev.load(Ordering::Acquire);
        let from = from_rev.max(0);
        let compact = self.compact_rev.load(Ordering::Acquire);
        if from < compact {
            return Err(MvccError::Compacted);
        }
        let to = to_rev.min(cur);
        if from > to {
            return Ok(Vec::new());
        }
        let start = Revision::new(from, 0).to_bytes();
        let end = Revision::new(to + 1, 0).to_bytes();
        let mut raw = Vec::new();
        self.shared.engine.scan(Table::Key, &start, Some(&end), &mut |k, v| {
            raw.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let mut events = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let rk = RevisionKey::decode(&k)?;
            let stored = decode_kv(&v)?;
            // At the compact revision itself the answer is the compacted
            // one whether or not the compactor got to this key yet: only
            // each key's last change there, without the version it replaced.
            let at_compact = rk.rev.main == compact;
            if at_compact && index.superseded_at(&stored.key, rk.rev)? {
                continue;
            }
            let prev = if prev_kv && !at_compact {
                match index.prev_in_generation(&stored.key, rk.rev)? {
                    Some(p) => self.try_read_kv(p)?,
                    None => None,
                }
            } else {
                None
            };
            let (kind, kv) = if rk.tombstone {
                let kv = KeyValue { key: stored.key, mod_revision: rk.rev.main, ..Default::default() };
                (EventKind::Delete, kv)
            } else {
                (EventKind::Put, stored)
            };
            events.push(Event { kind, kv, prev_kv: prev });
        }
        Ok(events)
    }

    /// Re-reads everything from the engine after Engine::restore (the
    /// two-step form of [`Self::restore_snapshot`]; readers wait while the
    /// index is rebuilt). If it fails the store is unusable (its index no
    /// longer matches the engine) and must be dropped.
    pub fn reload(&self) -> Result<(), MvccError> {
        let _job = self.shared.compaction.pause();
        let _writer = self.shared.writer.lock();
        let mut index = self.shared.index.write();
        *index = self.load()?;
        drop(index);
        self.kick_compactor();
        Ok(())
    }

    /// A dump of the engine as of the current revision, written later by
    /// another thread while applies go on ([`Engine::deferred_dump`]); None
    /// when the engine cannot defer. Any thread may call it: it takes the
    /// writer lock, which a write txn holds for its whole life, so the dump
    /// falls between applies and every later revision's [`Table::Key`]
    /// entry sorts at or above the bound given. The background compactor
    /// (the only writer below it) waits for the dump where the engine needs
    /// it to (memory), on its own thread, holding no lock of the store's
    /// but its job lock.
    pub fn deferred_dump(&self) -> Result<Option<DeferredDump>, MvccError> {
        let _writer = self.shared.writer.lock();
        let end = Revision::new(self.current_revision() + 1, 0).to_bytes().to_vec();
        Ok(self.shared.engine.clone().deferred_dump(end)?)
    }

    /// A copy of the key index, in key order (tests).
    #[cfg(test)]
    pub(crate) fn index_snapshot(&self) -> Vec<(Vec<u8>, super::key_index::KeyIndex)> {
        self.shared.index.read().snapshot()
    }
}

/// Values read per [`Engine::get_each`] call in [`MvccStore::read_kvs`].
const READ_BATCH: usize = 256;
/// A range that reads more values than this keeps them out of the block cache.
const BULK_READ_VALUES: usize = 1000;

/// The error of a revision the index names but the engine does not hold.
fn missing(rev: Revision) -> MvccError {
    MvccError::Corrupt(format!("revision {rev} is in the key index but not in the engine"))
}

/// The kv limit of a read as a count (`usize::MAX` for none).
pub(super) fn limit_of(opts: RangeOptions) -> usize {
    if opts.count_only {
        0
    } else if opts.limit > 0 {
        usize::try_from(opts.limit).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    }
}
