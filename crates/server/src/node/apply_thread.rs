//! The apply thread: applies committed entries to the state machine, in
//! log order, off the raft thread, as etcd applies in a goroutine of its
//! own. A large entry (up to `--max-request-bytes`) or heavy apply work
//! then holds back only the answers that wait for it, never raft's
//! heartbeats, votes or WAL writes: a leader busy applying stays leader.
//!
//! The raft thread hands it [`Task`]s through a bounded queue
//! ([`APPLY_QUEUE`]; when apply falls that far behind, the raft thread waits:
//! back-pressure instead of unbounded memory):
//! - `Entries`: committed entries in log order. Conf changes are not among
//!   them: the raft thread applies those itself once this thread has
//!   drained (`Barrier`), since only it may touch raft's configuration;
//! - `Restore`: a snapshot installed from the leader, whose data replaces
//!   the engine's state;
//! - `Capture`: the state as of the last applied entry, for a snapshot
//!   written in the background;
//! - `Barrier`: answered once everything before it is applied.
//!
//! Invariants: entries reach the engine in log order, once (an entry at or
//! below the engine's applied index is skipped); `SharedState::applied` and
//! the published revision move only after the engine holds an entry; a
//! failure to apply ends this thread with the error, which the raft thread
//! turns into a member stop (fail-stop), and no later entry is applied.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use api::pb::metastorepb::InternalRequest;
use api::EtcdError;
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType, SnapshotMetadata};
use storage::{AppliedIndex, DeferredDump};
use tokio::sync::watch;

use super::queue_thread::QueueThread;
use super::{ApplyWaiters, NodeError};
use crate::apply::auth::AuthInfo;
use crate::apply::members::Membership;
use crate::apply::Applier;
use crate::node::state::SharedState;

/// Tasks queued for the apply thread: each Ready's committed entries are
/// one task, so this is how many Readies apply may fall behind before the
/// raft thread waits for it.
pub(super) const APPLY_QUEUE: usize = 1024;

pub(super) enum Task {
    Entries(Vec<Entry>),
    /// The snapshot file, not yet read: its CRC is checked here, off the
    /// raft thread.
    Restore {
        meta: SnapshotMetadata,
        file: raftlog::Unverified,
    },
    Capture(SyncSender<Result<Captured, NodeError>>),
    Barrier(SyncSender<()>),
}

/// A snapshot's state: the last applied entry and the engine's state as of
/// it (None: the engine cannot defer its dump).
pub(super) struct Captured {
    pub(super) applied: AppliedIndex,
    pub(super) dump: Option<DeferredDump>,
}

/// What the thread works with (shared with the rest of the node).
pub(super) struct Worker {
    pub(super) applier: Applier,
    pub(super) waiters: Arc<ApplyWaiters>,
    pub(super) state: Arc<SharedState>,
    pub(super) members: Arc<Membership>,
    pub(super) revision_tx: watch::Sender<i64>,
}

/// An entry that takes longer than this to apply counts as slow (etcd's
/// `warnApplyDuration`).
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

/// The apply thread; the raft thread waits for it with `drain(Task::Barrier)`.
pub(super) type ApplyThread = QueueThread<Task>;

pub(super) fn start(worker: Worker) -> Result<ApplyThread, NodeError> {
    let run = move |rx| {
        yield_to_raft();
        worker.run(rx)
    };
    QueueThread::start("apply", APPLY_QUEUE, "apply stopped on error", run, || {})
}

/// Lowers this thread's scheduling priority (nice +5): when the CPU is
/// short, as while a large entry is being applied, the raft thread (and its
/// heartbeats) goes first; apply only waits a little longer.
fn yield_to_raft() {
    if let Err(e) = storage::thread_priority::lower_current_thread(5) {
        tracing::debug!(error = %e, "could not lower the apply thread's priority");
    }
}

impl Worker {
    fn run(self, rx: Receiver<Task>) -> Result<(), NodeError> {
        while let Ok(task) = rx.recv() {
            match task {
                Task::Entries(entries) => {
                    // etcd's backend commit is a bbolt commit; here the
                    // engine takes a batch of entries as they apply.
                    let start = std::time::Instant::now();
                    self.apply_entries(entries)?;
                    crate::metrics::get().disk.backend_commit.observe(crate::metrics::since(start));
                }
                Task::Restore { meta, file } => {
                    let in_progress = &crate::metrics::get().server.snapshot_apply_in_progress;
                    in_progress.set(1);
                    let restored = self.restore(&meta, file);
                    in_progress.set(0);
                    restored?
                }
                Task::Capture(reply) => {
                    let captured = self.capture();
                    let failed = captured.is_err();
                    let _ = reply.send(captured);
                    if failed {
                        return Err(NodeError::Io(std::io::Error::other("capturing a snapshot's state failed")));
                    }
                }
                Task::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
        Ok(())
    }

    fn apply_entries(&self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for e in entries {
            let applied = AppliedIndex { index: e.index, term: e.term };
            if applied.index <= self.applier.mvcc().applied_index().index {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => self.mark_applied(applied)?,
                EntryType::EntryNormal => {
                    let start = std::time::Instant::now();
                    self.apply_normal(&e.data, applied)?;
                    if start.elapsed() >= SLOW_APPLY {
                        crate::metrics::get().server.slow_apply.inc();
                    }
                }
                // The raft thread applies conf changes; MetaStore proposes no v2.
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    tracing::error!(index = e.index, "a conf change entry reached the apply thread; ignored");
                    self.mark_applied(applied)?;
                }
            }
        }
        self.state.set_applied(last);
        self.publish_revision();
        Ok(())
    }

    /// Records an entry that changes nothing as applied; failing to is the
    /// member failing (see `apply_normal`).
    fn mark_applied(&self, applied: AppliedIndex) -> Result<(), NodeError> {
        self.applier.mark_applied(applied).map_err(|e| NodeError::Apply { index: applied.index, reason: e.to_string() })
    }

    /// Applies one entry and answers its waiter. An `EtcdError::Internal`
    /// means this member could not apply it (the engine failed): the error
    /// ends this thread and stops the member, so the waiter is failed with
    /// the others, no later entry is applied or acknowledged, and after a
    /// restart the entry is applied again (its index was not recorded).
    fn apply_normal(&self, data: &[u8], applied: AppliedIndex) -> Result<(), NodeError> {
        // The WAL checks every record's CRC, so an undecodable committed entry
        // means a bug or a peer speaking another protocol: stop, don't guess.
        let req = InternalRequest::decode(data)
            .unwrap_or_else(|err| panic!("committed entry at index {} undecodable: {err}", applied.index));
        let result = match req.request {
            // Tests make the engine fail here (a full or failing disk).
            Some(_) if failpoint::hit("raft::apply") => Err(EtcdError::Internal("failpoint raft::apply".into())),
            Some(r) => {
                let sender = req.auth.map(|a| AuthInfo { user: a.username, revision: a.auth_revision });
                self.applier.apply(r, sender.as_ref(), applied)
            }
            None => return self.mark_applied(applied),
        };
        if let Err(EtcdError::Internal(reason)) = result {
            return Err(NodeError::Apply { index: applied.index, reason });
        }
        if req.id != 0 {
            self.waiters.complete(req.id, result);
        }
        Ok(())
    }

    /// Replaces the state with a snapshot's (installed from the leader).
    fn restore(&self, meta: &SnapshotMetadata, file: raftlog::Unverified) -> Result<(), NodeError> {
        // Tests stall here: a long restore must not hold the raft thread.
        failpoint::hit("snapshot::restore");
        let started = std::time::Instant::now();
        let (_, mut data) = file.verify()?;
        let verified = started.elapsed();
        let mvcc = self.applier.mvcc();
        mvcc.restore_snapshot(&mut data)?;
        self.applier.lessor().recover(mvcc)?;
        self.members.load(mvcc.engine().as_ref())?;
        self.applier.alarms().load(mvcc.engine().as_ref())?;
        self.applier.auth().load(mvcc.engine().as_ref())?;
        if self.state.cluster_id() == 0 || self.members.cluster_id() != 0 {
            self.state.set_cluster_id(self.members.cluster_id());
        }
        self.state.set_applied(meta.index);
        self.publish_revision();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            verify_ms = verified.as_millis() as u64,
            took_ms = started.elapsed().as_millis() as u64,
            "state restored from the leader's snapshot"
        );
        Ok(())
    }

    fn capture(&self) -> Result<Captured, NodeError> {
        let mvcc = self.applier.mvcc();
        // Nothing else writes the store: the dump and the index agree.
        let applied = mvcc.applied_index();
        let dump = mvcc.deferred_dump()?;
        Ok(Captured { applied, dump })
    }

    fn publish_revision(&self) {
        let now = self.applier.mvcc().current_revision();
        self.revision_tx.send_if_modified(|r| std::mem::replace(r, now) != now);
    }
}
