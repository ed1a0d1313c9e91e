//! The raft node: one thread owns the raft-rs `RawNode`, the durable log and
//! the applier. It loops: take queued proposals and read requests (batched:
//! many proposals share one Ready, one WAL write and one fsync), tick, and
//! handle a Ready: persist, apply committed entries, answer reads, advance.
//!
//! Invariants:
//! - an entry is applied only after it is durable in the WAL (persist happens
//!   before the committed entries of the next Ready are applied, and a single
//!   voter commits only what it persisted);
//! - apply runs on this thread only, in log order;
//! - every queue into the thread is bounded (`PROPOSAL_QUEUE`); a full queue
//!   answers "too many requests" instead of waiting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::pb::metastorepb::{internal_request::Request, InternalRequest};
use api::EtcdError;
use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use raftlog::LogStore;
use storage::{AppliedIndex, Engine, MvccStore};
use tokio::sync::{oneshot, watch};

use crate::apply::{Applier, ApplyResult};
use crate::config::ServerConfig;
use crate::deadline::Deadline;
use crate::lessor::Lessor;
use crate::state::SharedState;
use crate::waiters::Waiters;

/// Proposals and read requests queued for the raft thread. Sized for a burst
/// of a few thousand concurrent clients; beyond it clients get "too many
/// requests" rather than unbounded memory.
const PROPOSAL_QUEUE: usize = 16 * 1024;
/// Messages taken off the queue per loop turn, so ticks and Readies keep
/// their pace under a flood.
const MAX_BATCH: usize = 4096;
/// A read index request unanswered this long is asked again (raft drops
/// requests made before the leader commits in its term).
const READ_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft log: {0}")]
    Log(#[from] raftlog::LogStoreError),
    #[error("storage: {0}")]
    Storage(#[from] storage::MvccError),
    #[error("engine: {0}")]
    Engine(#[from] storage::EngineError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Sends raft messages to peers. A single-member cluster has none to send.
pub trait Transport: Send + 'static {
    fn send(&mut self, msgs: Vec<Message>);
}

pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::warn!(
                count = msgs.len(),
                "raft messages for peers dropped: no peer transport"
            );
        }
    }
}

enum NodeMsg {
    Propose { id: u64, data: Vec<u8> },
    ReadIndex(oneshot::Sender<Result<u64, EtcdError>>),
}

pub type ApplyWaiters = Waiters<ApplyResult>;

/// The handle request handlers use. Cheap to share behind an Arc.
pub struct NodeHandle {
    tx: Mutex<Option<SyncSender<NodeMsg>>>,
    pub waiters: Arc<ApplyWaiters>,
    pub state: Arc<SharedState>,
    pub mvcc: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    /// The latest revision applied; watch streams wait on it.
    pub revision: watch::Receiver<i64>,
    max_request_bytes: usize,
    thread: Mutex<Option<JoinHandle<Result<(), NodeError>>>>,
}

impl NodeHandle {
    fn sender(&self) -> Result<SyncSender<NodeMsg>, EtcdError> {
        self.tx.lock().clone().ok_or(EtcdError::Stopped)
    }

    fn enqueue(&self, msg: NodeMsg) -> Result<(), EtcdError> {
        match self.sender()?.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(EtcdError::TooManyRequests),
            Err(TrySendError::Disconnected(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Proposes a request through raft and waits until it is applied.
    pub async fn propose(&self, req: Request, deadline: Deadline) -> ApplyResult {
        let (id, rx, _guard) = self.waiters.register();
        let data = InternalRequest {
            id,
            request: Some(req),
        }
        .encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        self.enqueue(NodeMsg::Propose { id, data })?;
        deadline.run(rx).await?.map_err(|_| EtcdError::Stopped)?
    }

    /// Linearizable read barrier: returns once this member has applied
    /// everything committed before the call (raft ReadIndex).
    pub async fn read_barrier(&self, deadline: Deadline) -> Result<(), EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(NodeMsg::ReadIndex(tx))?;
        let index = deadline.run(rx).await?.map_err(|_| EtcdError::Stopped)??;
        let mut applied = self.state.subscribe_applied();
        deadline
            .run(applied.wait_for(|a| *a >= index))
            .await?
            .map_err(|_| EtcdError::Stopped)?;
        Ok(())
    }

    /// Stops the raft thread after it drains what is queued; waits for it.
    pub fn stop(&self) -> Result<(), NodeError> {
        self.tx.lock().take();
        let handle = self.thread.lock().take();
        match handle {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(NodeError::Io(std::io::Error::other("raft thread panicked")))
            }),
            None => Ok(()),
        }
    }
}

/// Opens the log and state, replays, and starts the raft thread.
pub fn start(cfg: &ServerConfig, engine: Arc<dyn Engine>) -> Result<Arc<NodeHandle>, NodeError> {
    let member_dir: PathBuf = cfg.member_dir();
    let (mut log, recovered) = LogStore::open(&member_dir)?;
    let last_snapshot = recovered
        .snapshot
        .as_ref()
        .map(|(meta, _)| meta.index)
        .unwrap_or(0);
    if let Some((meta, mut reader)) = recovered.snapshot {
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "restoring state from snapshot"
        );
        engine.restore(&mut reader)?;
    }
    let mvcc = Arc::new(MvccStore::open(engine)?);
    let lessor = Arc::new(Lessor::new(Lessor::min_ttl_for(cfg.election_timeout)));
    lessor
        .recover(&mvcc)
        .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))?;
    let (revision_tx, revision) = watch::channel(mvcc.current_revision());
    if recovered.fresh {
        let mut cs = ConfState::default();
        cs.voters = cfg.members.iter().map(|m| m.id).collect();
        log.bootstrap(&cs)?;
    }
    let applied = mvcc.applied_index().index;
    let raft_cfg = raft::Config {
        id: cfg.member_id,
        election_tick: cfg.election_ticks(),
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let mut raw = RawNode::new(&raft_cfg, log.raft_storage(), &crate::raft_logger::logger())?;
    if cfg.members.len() == 1 {
        // A lone voter need not wait an election timeout to lead.
        raw.campaign()?;
    }
    let state = Arc::new(SharedState::new(cfg.member_id, cfg.cluster_id, applied));
    let waiters = Waiters::new(cfg.member_id);
    let (tx, rx) = mpsc::sync_channel(PROPOSAL_QUEUE);
    let runner = Runner {
        raw,
        log,
        applier: Applier::new(mvcc.clone(), lessor.clone()),
        revision_tx,
        election_timeout: cfg.election_timeout,
        state: state.clone(),
        waiters: waiters.clone(),
        rx,
        transport: Box::new(NoPeers),
        heartbeat: cfg.heartbeat,
        snapshot_count: cfg.snapshot_count.max(1),
        last_snapshot,
        pending_reads: Vec::new(),
        inflight_reads: HashMap::new(),
        read_seq: 0,
    };
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || runner.run())?;
    Ok(Arc::new(NodeHandle {
        tx: Mutex::new(Some(tx)),
        waiters,
        state,
        mvcc,
        lessor,
        revision,
        max_request_bytes: cfg.max_request_bytes,
        thread: Mutex::new(Some(thread)),
    }))
}

type ReadWaiter = oneshot::Sender<Result<u64, EtcdError>>;

struct Runner {
    raw: RawNode<raftlog::RaftStorage>,
    log: LogStore,
    applier: Applier,
    revision_tx: watch::Sender<i64>,
    election_timeout: Duration,
    state: Arc<SharedState>,
    waiters: Arc<ApplyWaiters>,
    rx: mpsc::Receiver<NodeMsg>,
    transport: Box<dyn Transport>,
    heartbeat: Duration,
    snapshot_count: u64,
    last_snapshot: u64,
    pending_reads: Vec<ReadWaiter>,
    inflight_reads: HashMap<u64, (Instant, Vec<ReadWaiter>)>,
    read_seq: u64,
}

impl Runner {
    fn run(mut self) -> Result<(), NodeError> {
        let result = self.run_loop();
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft node stopped on error");
        }
        self.state.set_stopped();
        self.waiters.fail_all(|| Err(EtcdError::Stopped));
        for w in self.pending_reads.drain(..) {
            let _ = w.send(Err(EtcdError::Stopped));
        }
        for (_, (_, ws)) in self.inflight_reads.drain() {
            for w in ws {
                let _ = w.send(Err(EtcdError::Stopped));
            }
        }
        result
    }

    fn run_loop(&mut self) -> Result<(), NodeError> {
        let mut next_tick = Instant::now() + self.heartbeat;
        let mut open = true;
        while open {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            for _ in 0..MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = (next_tick + self.heartbeat).max(now);
                self.retry_reads(now);
            }
            self.flush_reads();
            while self.raw.has_ready() {
                self.on_ready()?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    let err = match e {
                        raft::Error::ProposalDropped
                            if self.raw.raft.leader_id == raft::INVALID_ID =>
                        {
                            EtcdError::NoLeader
                        }
                        raft::Error::ProposalDropped => EtcdError::NotLeader,
                        other => EtcdError::Internal(other.to_string()),
                    };
                    self.waiters.complete(id, Err(err));
                }
            }
            NodeMsg::ReadIndex(tx) => self.pending_reads.push(tx),
        }
    }

    /// One raft ReadIndex request answers every read queued since the last.
    fn flush_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        if self.raw.raft.leader_id == raft::INVALID_ID {
            for w in self.pending_reads.drain(..) {
                let _ = w.send(Err(EtcdError::NoLeader));
            }
            return;
        }
        self.read_seq += 1;
        let batch = std::mem::take(&mut self.pending_reads);
        self.raw.read_index(self.read_seq.to_be_bytes().to_vec());
        self.inflight_reads
            .insert(self.read_seq, (Instant::now(), batch));
    }

    fn retry_reads(&mut self, now: Instant) {
        let stale: Vec<u64> = self
            .inflight_reads
            .iter()
            .filter(|(_, (t, _))| now.duration_since(*t) >= READ_RETRY)
            .map(|(k, _)| *k)
            .collect();
        for seq in stale {
            if let Some((_, mut ws)) = self.inflight_reads.remove(&seq) {
                ws.retain(|w| !w.is_closed());
                self.pending_reads.extend(ws);
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), NodeError> {
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            self.state.set_leader(ss.leader_id);
            if ss.raft_state == StateRole::Leader {
                // etcd's rule: a new leader gives every lease its full TTL
                // plus an election timeout, as nobody timed them meanwhile.
                self.applier.lessor().promote(self.election_timeout);
            } else {
                self.applier.lessor().demote();
            }
        }
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.log
                .persist(ready.entries(), ready.hs(), ready.must_sync())?;
        }
        if let Some(hs) = ready.hs() {
            self.state.set_term(hs.term);
            self.state.set_commit(hs.commit);
        }
        for rs in ready.take_read_states() {
            let mut seq = [0u8; 8];
            if rs.request_ctx.len() == 8 {
                seq.copy_from_slice(&rs.request_ctx);
            }
            if let Some((_, ws)) = self.inflight_reads.remove(&u64::from_be_bytes(seq)) {
                for w in ws {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(c) = light.commit_index() {
            // Recorded before applying, so a snapshot never names an index
            // beyond the commit index the log holds.
            self.log.persist_commit(c)?;
            self.state.set_commit(c);
        }
        self.transport.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.raw.advance_apply();
        self.maybe_snapshot()
    }

    fn install_snapshot(&mut self, snap: raft::eraftpb::Snapshot) -> Result<(), NodeError> {
        self.log.install_snapshot(&snap)?;
        let mut data: &[u8] = &snap.data;
        self.applier.mvcc().restore_snapshot(&mut data)?;
        self.applier
            .lessor()
            .recover(self.applier.mvcc())
            .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))?;
        let meta = snap.get_metadata();
        self.last_snapshot = meta.index;
        self.state.set_applied(meta.index);
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for e in entries {
            let applied = AppliedIndex {
                index: e.index,
                term: e.term,
            };
            if applied.index <= self.applier.mvcc().applied_index().index {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => self.mark_applied(applied),
                EntryType::EntryNormal => self.apply_normal(&e.data, applied),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).unwrap_or_else(|err| {
                        panic!(
                            "committed conf change at index {} undecodable: {err}",
                            e.index
                        )
                    });
                    self.raw.apply_conf_change(&cc)?;
                    self.mark_applied(applied);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&e.data).unwrap_or_else(|err| {
                        panic!(
                            "committed conf change at index {} undecodable: {err}",
                            e.index
                        )
                    });
                    self.raw.apply_conf_change(&cc)?;
                    self.mark_applied(applied);
                }
            }
        }
        self.state.set_applied(last);
        self.revision_tx.send_if_modified(|r| {
            let now = self.applier.mvcc().current_revision();
            std::mem::replace(r, now) != now
        });
        Ok(())
    }

    fn mark_applied(&self, applied: AppliedIndex) {
        if let Err(e) = self.applier.mark_applied(applied) {
            tracing::error!(index = applied.index, error = %e, "recording applied index failed");
        }
    }

    fn apply_normal(&self, data: &[u8], applied: AppliedIndex) {
        // The WAL checks every record's CRC, so an undecodable committed entry
        // means a bug or a peer speaking another protocol: stop, don't guess.
        let req = InternalRequest::decode(data).unwrap_or_else(|err| {
            panic!(
                "committed entry at index {} undecodable: {err}",
                applied.index
            )
        });
        let result = match req.request {
            Some(r) => self.applier.apply(r, applied),
            None => {
                self.mark_applied(applied);
                return;
            }
        };
        if let Err(EtcdError::Internal(msg)) = &result {
            tracing::error!(index = applied.index, error = %msg, "apply failed");
        }
        if req.id != 0 {
            self.waiters.complete(req.id, result);
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        let applied = self.applier.mvcc().applied_index().index;
        if applied < self.last_snapshot + self.snapshot_count {
            return Ok(());
        }
        let term = self.raw.raft.raft_log.term(applied)?;
        let cs: ConfState = self.raw.raft.prs().conf().to_conf_state();
        let engine = self.applier.mvcc().engine().clone();
        let started = Instant::now();
        self.log.create_snapshot(applied, term, &cs, &mut |w| {
            engine.dump(w).map_err(std::io::Error::other)
        })?;
        tracing::info!(
            index = applied,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot saved"
        );
        self.last_snapshot = applied;
        Ok(())
    }
}
