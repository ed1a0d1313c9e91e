//! The raft node: one thread (`runner`) owns the raft-rs `RawNode` and the
//! durable log, another applies committed entries (`apply_thread`); request handlers talk to it through
//! `NodeHandle` and a bounded queue.
//!
//! Invariants:
//! - an entry is applied only after it is durable in this member's WAL;
//! - apply runs on its own thread (`apply_thread`), in log order, beside
//!   the raft thread, which applies conf changes itself once apply has
//!   drained; the WAL is written by a thread of its own too (`wal_thread`),
//!   and raft counts entries as persisted only once it reported them;
//! - every queue into the thread is bounded (`PROPOSAL_QUEUE`); a full queue
//!   answers "too many requests" (or drops a peer message, which raft
//!   retransmits) instead of waiting.

mod apply_thread;
mod background;
pub(crate) mod bootstrap;
mod conf;
pub mod engine;
pub mod identity;
pub mod lifecycle;
mod queue_thread;
mod raft_logger;
mod runner;
pub mod staged;
pub mod state;
pub mod waiters;
mod wal_thread;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use api::pb::metastorepb::{internal_request::Request, InternalRequest, MemberRecord, RequestAuth};
use api::EtcdError;
use parking_lot::Mutex;
use prost::Message as _;
use raft::eraftpb::{ConfChange, Message};
use raft::SnapshotStatus;
use storage::{Engine, MvccStore};
use tokio::sync::{oneshot, watch};

use crate::apply::auth::AuthInfo;
use crate::apply::lessor::Lessor;
use crate::apply::members::Membership;
use crate::apply::ApplyResult;
use crate::config::ServerConfig;
use crate::deadline::Deadline;
use crate::node::state::SharedState;
use crate::node::waiters::Waiters;

pub use runner::Transport;

/// Proposals, reads and peer messages queued for the raft thread. Sized for
/// a burst of a few thousand concurrent clients; beyond it clients get
/// "too many requests" rather than unbounded memory.
const PROPOSAL_QUEUE: usize = 16 * 1024;
/// A ReadIndex slower than this counts as slow (etcd retries its own
/// after as long: `readIndexRetryTime`).
const SLOW_READ_INDEX: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft log: {0}")]
    Log(#[from] raftlog::LogStoreError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] raftlog::SnapshotError),
    #[error("storage: {0}")]
    Storage(#[from] storage::MvccError),
    #[error("engine: {0}")]
    Engine(#[from] storage::EngineError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    #[error("{0}")]
    Backup(#[from] crate::maintenance::backup::BackupError),
    #[error("restoring {what}: {source}")]
    Restore { what: String, source: storage::EngineError },
    #[error(
        "the {engine} engine holds state up to raft index {index} but the raft log is empty; \
         remove the data dir to start this member afresh"
    )]
    EngineAheadOfLog { engine: &'static str, index: u64 },
    #[error("the data of snapshot {index}/{term} was not received")]
    SnapshotNotReceived { index: u64, term: u64 },
    #[error("snapshot {index}/{term} vanished")]
    SnapshotGone { index: u64, term: u64 },
    #[error("the {name} thread {how}")]
    ThreadStopped { name: &'static str, how: &'static str },
    /// This member could not apply a committed entry (the engine failed):
    /// it stops rather than skip the entry and diverge from the others.
    #[error("applying committed entry {index} failed, stopping this member: {reason}")]
    Apply { index: u64, reason: String },
}

/// Extra checks the raft thread makes before proposing a conf change,
/// because only it sees the leader's view of followers' progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfCheck {
    /// etcd's strict reconfiguration check: enough started members remain.
    Strict,
    /// `--strict-reconfig-check=false`: no check.
    Unchecked,
    /// The learner must be in sync with the leader.
    Promote,
}

/// Feedback from the peer transport about deliveries.
#[derive(Debug)]
pub enum Report {
    Unreachable(u64),
    Snapshot(u64, SnapshotStatus),
    /// A peer refused our messages because this member was removed.
    Removed,
}

pub(crate) enum NodeMsg {
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    ReadIndex(oneshot::Sender<Result<u64, EtcdError>>),
    Step(Box<Message>),
    Report(Report),
    ConfChange {
        id: u64,
        cc: ConfChange,
        check: ConfCheck,
    },
    TransferLeader {
        target: u64,
        reply: oneshot::Sender<Result<(), EtcdError>>,
    },
    /// The WAL thread wrote every Ready up to this number (0: it failed).
    Persisted(u64),
}

pub type ApplyWaiters = Waiters<ApplyResult>;

/// The handle request handlers use. Cheap to share behind an Arc.
pub struct NodeHandle {
    tx: Mutex<Option<SyncSender<NodeMsg>>>,
    stopping: Arc<AtomicBool>,
    pub waiters: Arc<ApplyWaiters>,
    pub state: Arc<SharedState>,
    pub mvcc: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub members: Arc<Membership>,
    pub alarms: Arc<crate::apply::alarms::Alarms>,
    pub auth: Arc<crate::apply::auth::AuthStore>,
    /// The latest revision applied; watch streams wait on it.
    pub revision: watch::Receiver<i64>,
    /// This member's snapshot files; the transport streams data from them.
    pub snapshots: raftlog::SnapshotStore,
    /// Snapshot data received from a leader, waiting to be installed.
    pub staged: Arc<staged::StagedSnapshots>,
    max_request_bytes: usize,
    thread: Mutex<Option<JoinHandle<Result<(), NodeError>>>>,
}

impl NodeHandle {
    fn enqueue(&self, msg: NodeMsg) -> Result<(), EtcdError> {
        let tx = self.tx.lock().clone().ok_or(EtcdError::Stopped)?;
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(EtcdError::TooManyRequests),
            Err(TrySendError::Disconnected(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Proposes a request through raft and waits until it is applied here.
    pub async fn propose(&self, req: Request, deadline: Deadline) -> ApplyResult {
        self.propose_inner(req, None, deadline).await
    }

    /// Proposes a client's request: `sender` travels in the entry so every
    /// member checks its permissions at apply (etcd's RequestHeader).
    /// [`NodeHandle::propose`] is for the member's own entries, unchecked.
    pub async fn propose_as(&self, req: Request, sender: &AuthInfo, deadline: Deadline) -> ApplyResult {
        let auth = RequestAuth { username: sender.user.clone(), auth_revision: sender.revision };
        self.propose_inner(req, Some(auth), deadline).await
    }

    async fn propose_inner(&self, req: Request, auth: Option<RequestAuth>, deadline: Deadline) -> ApplyResult {
        let result = self.propose_once(req, auth, deadline).await;
        // etcd's proposals_failed counts proposals raft refused or that
        // timed out or were cancelled while waiting, not requests that
        // applied with an error nor those cut short by the member stopping
        // (etcd's `processInternalRaftRequestOnce`).
        if let Err(
            EtcdError::TooManyRequests
            | EtcdError::Timeout
            | EtcdError::TimeoutDueToLeaderFail
            | EtcdError::Canceled
            | EtcdError::NoLeader,
        ) = &result
        {
            crate::metrics::get().server.proposals_failed.inc();
        }
        result
    }

    async fn propose_once(&self, req: Request, auth: Option<RequestAuth>, deadline: Deadline) -> ApplyResult {
        let (id, rx, _guard) = self.waiters.register();
        let data = InternalRequest { id, auth, request: Some(req) }.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let term = self.state.term();
        self.enqueue(NodeMsg::Propose { id, data })?;
        match deadline.run(rx).await {
            Ok(result) => result.map_err(|_| EtcdError::Stopped)?,
            // etcd's hint when the entry may have been lost with a leader.
            Err(EtcdError::Timeout) if self.state.term() != term => Err(EtcdError::TimeoutDueToLeaderFail),
            Err(e) => Err(e),
        }
    }

    /// Proposes a membership change for `member` and waits until applied.
    pub async fn propose_conf_change(
        &self,
        mut cc: ConfChange,
        member: MemberRecord,
        check: ConfCheck,
        deadline: Deadline,
    ) -> ApplyResult {
        let (id, rx, _guard) = self.waiters.register();
        cc.context =
            api::pb::metastorepb::ConfChangeContext { request_id: id, member: Some(member) }.encode_to_vec().into();
        self.enqueue(NodeMsg::ConfChange { id, cc, check })?;
        deadline.run(rx).await?.map_err(|_| EtcdError::Stopped)?
    }

    /// Linearizable read barrier: returns once this member has applied
    /// everything committed before the call (raft ReadIndex).
    pub async fn read_barrier(&self, deadline: Deadline) -> Result<(), EtcdError> {
        let start = std::time::Instant::now();
        let index = self.read_index(deadline).await.inspect_err(|_| {
            crate::metrics::get().server.read_indexes_failed.inc();
        })?;
        if start.elapsed() >= SLOW_READ_INDEX {
            crate::metrics::get().server.slow_read_indexes.inc();
        }
        let mut applied = self.state.subscribe_applied();
        deadline.run(applied.wait_for(|a| *a >= index)).await?.map_err(|_| EtcdError::Stopped)?;
        Ok(())
    }

    /// The commit index a quorum confirmed (raft ReadIndex).
    async fn read_index(&self, deadline: Deadline) -> Result<u64, EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(NodeMsg::ReadIndex(tx))?;
        deadline.run(rx).await?.map_err(|_| EtcdError::Stopped)?
    }

    /// etcd's `ensureLeadership` (etcd issue 15247): true leadership,
    /// confirmed by a quorum (a ReadIndex round), before this member acts
    /// as leader on its own clock (renewing or expiring leases). A leader
    /// whose raft thread stalled, or that was deposed without knowing it
    /// yet, gets no answer from a quorum: the call fails at the deadline
    /// instead of renewing a lease that a newer leader may be expiring.
    /// On success this member has also applied everything committed before
    /// the call.
    pub async fn confirm_leadership(&self, deadline: Deadline) -> Result<(), EtcdError> {
        let me = self.state.member_id;
        let term = self.state.term();
        if self.state.leader() != me {
            return Err(EtcdError::NotLeader);
        }
        self.read_barrier(deadline).await?;
        if self.state.leader() != me || self.state.term() != term {
            return Err(EtcdError::NotLeader);
        }
        Ok(())
    }

    /// Asks the leader (this member) to hand leadership to `target` (0: the
    /// most caught-up other voter).
    pub async fn transfer_leader(&self, target: u64, deadline: Deadline) -> Result<(), EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(NodeMsg::TransferLeader { target, reply })?;
        deadline.run(rx).await?.map_err(|_| EtcdError::Stopped)?
    }

    /// Hands a message from a peer to raft; dropped when the queue is full.
    pub fn step(&self, msg: Message) {
        if self.enqueue(NodeMsg::Step(Box::new(msg))).is_err() {
            tracing::debug!("raft message from a peer dropped: queue full");
        }
    }

    pub fn report(&self, r: Report) {
        let _ = self.enqueue(NodeMsg::Report(r));
    }

    pub fn is_learner(&self) -> bool {
        self.members.is_learner(self.state.member_id)
    }

    /// Stops the raft thread after it drains what is queued; waits for it.
    pub fn stop(&self) -> Result<(), NodeError> {
        self.stopping.store(true, Ordering::Release);
        self.tx.lock().take();
        let handle = self.thread.lock().take();
        match handle {
            Some(h) => h.join().unwrap_or_else(|_| Err(NodeError::Io(std::io::Error::other("raft thread panicked")))),
            None => Ok(()),
        }
    }
}

/// Where the transport is created once the node's handle exists (it needs
/// the handle to report back).
pub type TransportFactory = Box<dyn FnOnce(Arc<NodeHandle>) -> Box<dyn Transport> + Send>;

/// Opens the log and state, replays, and starts the raft thread.
pub fn start(
    cfg: &ServerConfig,
    engine: Arc<dyn Engine>,
    restore: Option<crate::maintenance::backup::RestoreSource>,
    transport: TransportFactory,
) -> Result<Arc<NodeHandle>, NodeError> {
    let opened = bootstrap::open(cfg, engine, restore)?;
    let (tx, rx) = mpsc::sync_channel(PROPOSAL_QUEUE);
    let stopping = Arc::new(AtomicBool::new(false));
    let applied = opened.mvcc.applied_index().index;
    let state = Arc::new(SharedState::new(cfg.member_id, opened.cluster_id, applied));
    let (revision_tx, revision) = watch::channel(opened.mvcc.current_revision());
    let node = Arc::new(NodeHandle {
        tx: Mutex::new(Some(tx)),
        stopping: stopping.clone(),
        waiters: Waiters::new(cfg.member_id),
        state,
        mvcc: opened.mvcc.clone(),
        lessor: opened.lessor.clone(),
        members: opened.members.clone(),
        alarms: opened.alarms.clone(),
        auth: opened.auth.clone(),
        revision,
        snapshots: opened.log.snapshot_store(),
        staged: Arc::new(staged::StagedSnapshots::new(opened.log.snapshot_store().dir())),
        max_request_bytes: cfg.max_request_bytes,
        thread: Mutex::new(None),
    });
    let transport = transport(node.clone());
    let notify = node.tx.lock().clone().ok_or(NodeError::Etcd(EtcdError::Stopped))?;
    let runner = runner::Runner::new(cfg, opened, &node, (rx, notify), stopping, revision_tx, transport)?;
    let thread = std::thread::Builder::new().name("raft".into()).spawn(move || runner.run())?;
    *node.thread.lock() = Some(thread);
    Ok(node)
}
