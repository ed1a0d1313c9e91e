//! The background compactor: the physical half of compaction (etcd's
//! `scheduleCompaction` in `kvstore_compaction.go`), run off the apply path in
//! bounded batches. `compact.rs` has the apply half and the overall picture.
//!
//! A *pass* compacts every key at one target revision `T`, walking the key
//! index in key order. Each batch:
//! 1. holds the job lock (a snapshot install or reload waits for the batch to
//!    end, and then starts the pass over on the new state);
//! 2. plans a slice: the next keys, up to [`CompactionConfig::batch_revisions`]
//!    revisions to drop (or ten times as many keys visited), without any lock
//!    of the store (`TreeIndex::compact_slice` only reads);
//! 3. deletes those revisions in one engine batch, holding no lock a reader
//!    or the writer wants;
//! 4. compacts those keys in the key index under the writer mutex, so it
//!    never races an append: microseconds of memory for the in-memory
//!    index, one read per key and one engine batch for the stored one. The
//!    last batch of a pass also records `finishedCompactRev`.
//!
//! Before the first batch at a new target the compactor waits for a reader
//! grace period (`gate.rs`), so no reader that checked its revision against an
//! older compact revision is still reading.
//!
//! The thread runs at nice +10, below the apply thread: when cores are short
//! the deletion waits, not the puts.
//!
//! Space: a pass only deletes. An engine with tombstones (RocksDB) drops
//! the deleted revisions in its own background compactions, and `defrag`
//! rewrites everything at once, as etcd gives space back. A manual
//! compaction of the compacted range after each pass used to run besides:
//! it rewrote the whole history a second time, right after the compaction
//! the deletes had already set off, and on three members sharing two cores
//! it doubled the pass's cost to puts (docs/benchmarks.md, Scale).
//!
//! Invariants:
//! - Revisions are deleted from the engine before the index forgets them;
//!   readers at or above the published compact revision never need either,
//!   so the order only matters for a failed write, which then changes
//!   nothing and is retried, and for a crash in between, after which the
//!   pass resumes (its finish is recorded with the index).
//! - A compaction applied while a pass runs raises the pass's target from its
//!   cursor on; the pass then finishes at the target it *started* with (every
//!   key was compacted at least that far) and a new pass follows. So each pass
//!   ends after one walk, however often compactions come, and
//!   `finishedCompactRev` never claims more than was done.
//! - What a pass drops for one key is always a prefix of its history, so a
//!   state cut between any two batches (crash, snapshot) rebuilds to an index
//!   that answers every read at or above the compact revision as before; a
//!   restart resumes (scheduled > finished), a fresh pass redoing nothing
//!   but the walk.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::engine::WriteBatch;
use crate::schema::Table;

use super::error::MvccError;
use super::meta;
use super::store::{Shared, NEVER_COMPACTED};

/// etcd's `--experimental-compaction-batch-limit` default: revisions deleted
/// per engine batch.
pub const DEFAULT_BATCH_REVISIONS: usize = 1000;
/// Pause between two batches (etcd's compaction sleep interval): a batch
/// holds nothing the apply loop waits for beyond a key index update, but it
/// takes CPU and engine bandwidth, and members often share cores; this keeps
/// the compactor to a small share of one (1 M revisions: about 12 s).
pub const DEFAULT_BATCH_PAUSE: Duration = Duration::from_millis(10);
/// A batch stops after visiting this many keys per revision it may delete,
/// even if it found few to delete, so one batch stays short.
const KEYS_VISITED_PER_REVISION: usize = 10;
/// After a failed batch (an engine error) the compactor retries this late.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// How the physical compaction runs.
#[derive(Clone, Copy, Debug)]
pub struct CompactionConfig {
    /// Revisions deleted per engine batch (at least 1).
    pub batch_revisions: usize,
    /// Pause between two batches.
    pub batch_pause: Duration,
    /// True: a thread of the store's own deletes in the background. False:
    /// only [`MvccStore::compact_step`](super::MvccStore::compact_step) and
    /// `finish_compaction` do (tests that stop half-way).
    pub background: bool,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            batch_revisions: DEFAULT_BATCH_REVISIONS,
            batch_pause: DEFAULT_BATCH_PAUSE,
            background: true,
        }
    }
}

/// What one [`Shared::compact_step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing to do (or cancelled).
    Idle,
    /// Deleted one batch; the pass goes on.
    Batch,
    /// The pass finished: everything is compacted at this revision.
    Finished(i64),
}

/// A pass in progress (see the module docs).
pub(super) struct Pass {
    /// The state it works on; a snapshot install or reload starts a new one.
    generation: u64,
    /// Target when the pass began: what it finishes at.
    start_target: i64,
    /// Target now (raised by compactions applied meanwhile).
    target: i64,
    /// Last key done; None before the first batch.
    after: Option<Vec<u8>>,
    /// The grace period for `target` has passed.
    synced: bool,
    /// For [`CompactionStats`].
    started: Instant,
    revisions_deleted: u64,
    index_pause: Duration,
}

/// What one finished compaction did, for the server's metrics.
#[derive(Clone, Copy, Debug)]
pub struct CompactionStats {
    /// From its first batch to its last.
    pub duration: Duration,
    /// Revisions deleted from the engine.
    pub revisions_deleted: u64,
    /// Time writers waited while the key index was compacted, all batches.
    pub index_pause: Duration,
}

static ON_FINISHED: std::sync::OnceLock<fn(&CompactionStats)> = std::sync::OnceLock::new();

/// Registers the function told of every finished compaction (once per
/// process; later calls are ignored). It runs on the compactor thread and
/// must not block.
pub fn on_compaction_finished(hook: fn(&CompactionStats)) {
    let _ = ON_FINISHED.set(hook);
}

struct State {
    /// Latest compaction applied.
    target: i64,
    /// Latest compaction physically finished.
    finished: i64,
    generation: u64,
    stop: bool,
    /// The last batch failed with this (cleared by the next success).
    failure: Option<String>,
}

/// The compactor's shared control block.
pub(super) struct CompactionCtl {
    config: CompactionConfig,
    /// The pass; held for exactly one batch.
    job: Mutex<Option<Pass>>,
    state: Mutex<State>,
    /// New work or stop.
    wake: Condvar,
    /// `finished` moved or a batch failed.
    progress: Condvar,
}

impl CompactionCtl {
    pub(super) fn new(mut config: CompactionConfig) -> Self {
        config.batch_revisions = config.batch_revisions.max(1);
        CompactionCtl {
            config,
            job: Mutex::new(None),
            state: Mutex::new(State {
                target: NEVER_COMPACTED,
                finished: NEVER_COMPACTED,
                generation: 0,
                stop: false,
                failure: None,
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
        }
    }

    pub(super) fn config(&self) -> CompactionConfig {
        self.config
    }

    /// Waits for the batch in progress and drops the pass: held while a
    /// snapshot install or reload replaces the state (lock order: this,
    /// then the writer).
    pub(super) fn pause(&self) -> MutexGuard<'_, Option<Pass>> {
        let mut job = self.job.lock();
        *job = None;
        job
    }

    /// The state was (re)loaded: this is now what is applied and finished.
    pub(super) fn reset(&self, scheduled: i64, finished: i64) {
        let mut st = self.state.lock();
        st.target = scheduled;
        st.finished = finished;
        st.generation += 1;
        st.failure = None;
        drop(st);
        self.wake.notify_all();
        self.progress.notify_all();
    }

    /// A compaction at `rev` was applied.
    pub(super) fn schedule(&self, rev: i64) {
        let mut st = self.state.lock();
        st.target = st.target.max(rev);
        drop(st);
        self.wake.notify_all();
    }

    /// True while applied compactions are not all finished.
    pub(super) fn pending(&self) -> bool {
        let st = self.state.lock();
        st.target > st.finished
    }

    pub(super) fn finished(&self) -> i64 {
        self.state.lock().finished
    }

    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
        self.progress.notify_all();
    }

    fn stopping(&self) -> bool {
        self.state.lock().stop
    }

    /// Waits until there is work (true) or the store stops (false).
    fn wait_for_work(&self) -> bool {
        let mut st = self.state.lock();
        while !st.stop && st.target <= st.finished {
            self.wake.wait(&mut st);
        }
        !st.stop
    }

    /// Sleeps `d` unless the store stops first.
    fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut st = self.state.lock();
        // Being woken by new work does not end a pause.
        while !st.stop && !self.wake.wait_until(&mut st, deadline).timed_out() {}
    }

    fn recovered(&self) {
        let mut st = self.state.lock();
        if st.failure.is_some() {
            st.failure = None;
        }
    }

    fn fail(&self, e: &MvccError) {
        self.state.lock().failure = Some(e.to_string());
        self.progress.notify_all();
    }

    /// Waits until compaction at `rev` finished physically: Ok(true); Ok(false)
    /// after `timeout`; an error when the last batch failed (the compactor
    /// retries on its own).
    pub(super) fn wait(&self, rev: i64, timeout: Duration) -> Result<bool, MvccError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if st.finished >= rev {
                return Ok(true);
            }
            if let Some(f) = &st.failure {
                return Err(MvccError::Engine(crate::engine::EngineError::Backend(format!("compaction failed: {f}"))));
            }
            if st.stop || self.progress.wait_until(&mut st, deadline).timed_out() {
                return Ok(st.finished >= rev);
            }
        }
    }
}

impl Shared {
    /// Runs one batch of the current pass (see the module docs). `cancel`
    /// ends a wait for a grace period early (the store is closing).
    pub(super) fn compact_step(&self, cancel: &dyn Fn() -> bool) -> Result<Step, MvccError> {
        let ctl = &self.compaction;
        let mut job = ctl.job.lock();
        let (target, generation) = {
            let st = ctl.state.lock();
            if st.target <= st.finished {
                *job = None;
                return Ok(Step::Idle);
            }
            (st.target, st.generation)
        };
        let pass = match job.take() {
            Some(p) if p.generation == generation => job.insert(p),
            _ => job.insert(Pass {
                generation,
                start_target: target,
                target,
                after: None,
                synced: false,
                started: Instant::now(),
                revisions_deleted: 0,
                index_pause: Duration::ZERO,
            }),
        };
        if target > pass.target {
            pass.target = target;
            pass.synced = false;
        }
        if !pass.synced {
            if !self.gate.synchronize(cancel) {
                return Ok(Step::Idle);
            }
            pass.synced = true;
        }
        let batch_revs = ctl.config.batch_revisions;
        let max_keys = batch_revs.saturating_mul(KEYS_VISITED_PER_REVISION);
        let slice = self.index.read().compact_slice(pass.after.as_deref(), pass.target, max_keys, batch_revs)?;
        let done = slice.next.is_none();
        let mut batch = WriteBatch::default();
        for d in &slice.drops {
            batch.delete(Table::Key, d.encode());
        }
        if !batch.is_empty() {
            self.engine.write(batch)?;
        }
        pass.revisions_deleted += slice.drops.len() as u64;
        // The pass is recorded as finished with its last histories, so a
        // crash before them resumes it (a stored index still names the
        // revisions just deleted).
        let mut tail = WriteBatch::default();
        if done {
            meta::put_finished_compact(&mut tail, pass.start_target);
        }
        if !slice.keys.is_empty() || !tail.is_empty() {
            // Writers wait from here: time to acquire the mutex is not theirs.
            let _writer = self.writer.lock();
            let paused = Instant::now();
            self.index.read().write_compaction(self.engine.as_ref(), tail, &slice, pass.target)?;
            pass.index_pause += paused.elapsed();
        }
        if !done {
            pass.after = slice.next;
            return Ok(Step::Batch);
        }
        let finished = pass.start_target;
        let stats = CompactionStats {
            duration: pass.started.elapsed(),
            revisions_deleted: pass.revisions_deleted,
            index_pause: pass.index_pause,
        };
        *job = None;
        {
            let mut st = ctl.state.lock();
            st.finished = st.finished.max(finished);
        }
        ctl.progress.notify_all();
        drop(job);
        if let Some(hook) = ON_FINISHED.get() {
            hook(&stats);
        }
        Ok(Step::Finished(finished))
    }
}

/// The compactor thread's nice value: below the apply thread's (+5, which
/// is below the raft thread's and the async workers'). On a busy machine the
/// deletion is the one job that can wait: three members compacting on two
/// shared cores otherwise hold the apply threads (and every put) back by
/// scheduler time slices.
const COMPACTOR_NICE: i32 = 10;

/// The background thread: batches while there is work, sleeps otherwise.
fn run(shared: Arc<Shared>) {
    // Best effort: at the normal priority it only competes harder.
    let _ = crate::thread_priority::lower_current_thread(COMPACTOR_NICE);
    let ctl = &shared.compaction;
    let cancel = || ctl.stopping();
    while ctl.wait_for_work() {
        match shared.compact_step(&cancel) {
            Ok(Step::Batch) => {
                ctl.recovered();
                ctl.sleep(ctl.config.batch_pause);
            }
            Ok(Step::Idle | Step::Finished(_)) => ctl.recovered(),
            Err(e) => {
                ctl.fail(&e);
                ctl.sleep(RETRY_DELAY);
            }
        }
    }
}

/// The store's handle on its compactor thread, started when there is work.
#[derive(Default)]
pub(super) struct CompactorThread {
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl CompactorThread {
    /// Starts the thread unless it runs. False when it could not be started
    /// (the caller then compacts itself).
    pub(super) fn ensure(&self, shared: &Arc<Shared>) -> bool {
        let mut handle = self.handle.lock();
        if handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return true;
        }
        let shared = shared.clone();
        match std::thread::Builder::new().name("mvcc-compact".into()).spawn(move || run(shared)) {
            Ok(h) => {
                *handle = Some(h);
                true
            }
            Err(_) => false,
        }
    }

    /// Stops and joins the thread (the store is being dropped).
    pub(super) fn shut_down(&self, shared: &Shared) {
        shared.compaction.stop();
        if let Some(h) = self.handle.lock().take() {
            // A panic in the compactor was already reported by its thread.
            let _ = h.join();
        }
    }
}
