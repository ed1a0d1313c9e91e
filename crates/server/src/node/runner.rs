//! The raft thread's loop: take queued messages (batched: many proposals
//! share one Ready, one WAL write and one fsync), tick, and handle each
//! Ready in the order raft-rs requires: send what may go first, install a
//! snapshot, hand committed entries to the apply thread (`apply_thread`),
//! persist, answer reads, send what had to wait for persistence, advance.
//! Apply runs beside this loop; this thread waits for it only to apply a
//! conf change (rare), which it does itself once apply has drained.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::EtcdError;
use raft::eraftpb::{ConfState, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use raftlog::LogStore;
use storage::{AppliedIndex, MvccStore};
use tokio::sync::{oneshot, watch};

use super::apply_thread::{self, ApplyThread, Captured, Task, Worker};
use super::background::BackgroundSnapshot;
use super::bootstrap::Opened;
use super::wal_thread::{self, WalThread};
use super::{ApplyWaiters, NodeError, NodeHandle, NodeMsg, Report};
use crate::apply::lessor::Lessor;
use crate::apply::members::Membership;
use crate::apply::Applier;
use crate::config::ServerConfig;
use crate::node::state::SharedState;

/// Messages taken off the queue per loop turn, so ticks and Readies keep
/// their pace under a flood.
const MAX_BATCH: usize = 4096;
/// A read index request unanswered this long is asked again (raft drops
/// requests made before the leader commits in its term, or lost on the way).
const READ_RETRY: Duration = Duration::from_millis(500);

/// Sends raft messages to peers and learns who the peers are.
pub trait Transport: Send + 'static {
    fn send(&mut self, msgs: Vec<Message>);
    /// The current members other than this one: (ID, peer URLs).
    fn set_peers(&mut self, peers: Vec<(u64, Vec<String>)>);
}

type ReadWaiter = oneshot::Sender<Result<u64, EtcdError>>;

pub struct Runner {
    pub(super) raw: RawNode<raftlog::RaftStorage>,
    pub(super) log: LogStore,
    pub(super) apply: ApplyThread,
    wal: WalThread,
    /// Per Ready handed to the WAL thread, in order: its number and the
    /// messages to send once it is persisted.
    unpersisted: VecDeque<(u64, Vec<Message>)>,
    pub(super) mvcc: Arc<MvccStore>,
    lessor: Arc<Lessor>,
    pub(super) members: Arc<Membership>,
    pub(super) state: Arc<SharedState>,
    pub(super) waiters: Arc<ApplyWaiters>,
    staged: Arc<super::staged::StagedSnapshots>,
    pub(super) transport: Box<dyn Transport>,
    pub(super) removed: bool,
    peers_version: u64,
    pub(super) election_timeout: Duration,
    rx: mpsc::Receiver<NodeMsg>,
    stopping: Arc<AtomicBool>,
    heartbeat: Duration,
    snapshot_count: u64,
    last_snapshot: u64,
    /// Whether the snapshot at `last_snapshot` holds the state (always, with
    /// a volatile engine; a persistent one writes data-less snapshots that
    /// only cut the log, and dumps the state when a member needs it).
    last_snapshot_has_data: bool,
    /// A periodic snapshot being written off this thread.
    background: Option<BackgroundSnapshot>,
    /// The apply thread taking a snapshot's state, and whether a member
    /// asked for the snapshot.
    capture: Option<(bool, mpsc::Receiver<Result<Captured, NodeError>>)>,
    /// Per peer, since when it has been sending without a gap longer than
    /// an election timeout, and when its last message arrived: etcd's
    /// "active since" of a peer's stream, for the strict reconfiguration
    /// check (`node/conf.rs`).
    pub(super) heard: HashMap<u64, (Instant, Instant)>,
    pending_reads: Vec<ReadWaiter>,
    inflight_reads: HashMap<u64, (Instant, Vec<ReadWaiter>)>,
    read_seq: u64,
}

impl Runner {
    pub(super) fn new(
        cfg: &ServerConfig,
        opened: Opened,
        node: &NodeHandle,
        // This thread's queue, and a sender to it for the WAL thread.
        (rx, notify): (mpsc::Receiver<NodeMsg>, mpsc::SyncSender<NodeMsg>),
        stopping: Arc<AtomicBool>,
        revision_tx: watch::Sender<i64>,
        transport: Box<dyn Transport>,
    ) -> Result<Runner, NodeError> {
        let applied = opened.mvcc.applied_index().index;
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
        let mut raw = RawNode::new(&raft_cfg, opened.log.raft_storage(), &crate::node::raft_logger::logger())?;
        let voters: Vec<u64> = raw.raft.prs().conf().voters().ids().iter().collect();
        if voters == [cfg.member_id] {
            // A lone voter need not wait an election timeout to lead.
            raw.campaign()?;
        }
        let volatile = !opened.mvcc.engine().persistent();
        let apply = apply_thread::start(Worker {
            applier: Applier::new(
                opened.mvcc.clone(),
                opened.lessor.clone(),
                opened.members.clone(),
                opened.alarms.clone(),
                opened.auth.clone(),
            ),
            waiters: node.waiters.clone(),
            state: node.state.clone(),
            members: opened.members.clone(),
            revision_tx,
        })?;
        let wal = WalThread::start(opened.log.writer(), notify)?;
        let mut runner = Runner {
            raw,
            log: opened.log,
            apply,
            wal,
            unpersisted: VecDeque::new(),
            mvcc: opened.mvcc,
            lessor: opened.lessor,
            members: opened.members,
            state: node.state.clone(),
            waiters: node.waiters.clone(),
            staged: node.staged.clone(),
            transport,
            removed: false,
            peers_version: 0,
            election_timeout: cfg.election_timeout,
            rx,
            stopping,
            heartbeat: cfg.heartbeat,
            snapshot_count: cfg.snapshot_count.max(1),
            last_snapshot: opened.last_snapshot,
            last_snapshot_has_data: volatile,
            background: None,
            capture: None,
            heard: HashMap::new(),
            pending_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            read_seq: 0,
        };
        runner.refresh_peers(cfg);
        Ok(runner)
    }

    /// Tells the transport who the peers are: the recorded membership, or
    /// (before a joining member has received any state) the initial cluster.
    pub(super) fn refresh_peers(&mut self, cfg: &ServerConfig) {
        let me = self.state.member_id;
        let mut peers: Vec<(u64, Vec<String>)> =
            self.members.list().into_iter().filter(|m| m.id != me).map(|m| (m.id, m.peer_urls)).collect();
        if peers.is_empty() {
            peers = cfg.members.iter().filter(|m| m.id != me).map(|m| (m.id, m.peer_urls.clone())).collect();
        }
        self.peers_version = self.members.version();
        self.transport.set_peers(peers);
    }

    pub(super) fn refresh_peers_from_members(&mut self) {
        self.peers_version = self.members.version();
        let me = self.state.member_id;
        let peers = self.members.list().into_iter().filter(|m| m.id != me).map(|m| (m.id, m.peer_urls)).collect();
        self.transport.set_peers(peers);
    }

    pub fn run(mut self) -> Result<(), NodeError> {
        let mut result = self.run_loop();
        // What was handed to the WAL is written (or the write failed).
        let written = self.wal.stop();
        if result.is_ok() {
            result = written;
        }
        // What was handed to apply is applied (or apply failed).
        let applied = self.apply.stop();
        if result.is_ok() {
            result = applied;
        }
        // A snapshot being written is finished and recorded, so the next
        // start replays less.
        let finished = self.finish_background_snapshot(true);
        if result.is_ok() {
            result = finished;
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft node stopped on error");
        }
        if self.removed {
            self.state.set_removed();
        }
        self.state.set_stopped();
        let err = if self.removed { EtcdError::MemberRemoved } else { EtcdError::Stopped };
        self.waiters.fail_all(|| Err(err.clone()));
        for w in self.pending_reads.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for (_, (_, ws)) in self.inflight_reads.drain() {
            for w in ws {
                let _ = w.send(Err(err.clone()));
            }
        }
        result
    }

    fn run_loop(&mut self) -> Result<(), NodeError> {
        let mut next_tick = Instant::now() + self.heartbeat;
        let mut open = true;
        while open && !self.removed && !self.stopping.load(Ordering::Acquire) {
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
            self.wal.check()?;
            self.apply.check()?;
            self.advance_applied();
            while self.raw.has_ready() {
                self.on_ready()?;
            }
            self.finish_capture()?;
            if self.raw.store().take_snapshot_request() {
                // A peer needs a snapshot newer than the files hold.
                self.snapshot(true)?;
            }
            self.finish_background_snapshot(false)?;
        }
        Ok(())
    }

    /// Tells raft how far apply has got (it keeps a conf change pending,
    /// and a candidate from campaigning, until then). raft refuses an index
    /// beyond what it delivered or behind what it was told.
    fn advance_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let applied = self.state.applied_index();
        if applied > log.applied && applied <= log.committed.min(log.persisted) {
            self.raw.advance_apply_to(applied);
        }
    }

    fn note_heard(&mut self, peer: u64) {
        let now = Instant::now();
        let gap = self.election_timeout;
        let contact = self.heard.entry(peer).or_insert((now, now));
        if now.duration_since(contact.1) > gap {
            contact.0 = now;
        }
        contact.1 = now;
    }

    fn handle(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    let err = self.proposal_error(e);
                    self.waiters.complete(id, Err(err));
                }
            }
            NodeMsg::ReadIndex(tx) => self.pending_reads.push(tx),
            NodeMsg::Step(m) => {
                self.note_heard(m.from);
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft rejected a peer message");
                }
            }
            NodeMsg::Report(Report::Unreachable(id)) => self.raw.report_unreachable(id),
            NodeMsg::Report(Report::Snapshot(id, status)) => self.raw.report_snapshot(id, status),
            NodeMsg::Report(Report::Removed) => {
                tracing::warn!("peers say this member was removed from the cluster; stopping");
                self.removed = true;
            }
            NodeMsg::ConfChange { id, cc, check } => self.propose_conf_change(id, cc, check),
            NodeMsg::TransferLeader { target, reply } => {
                let _ = reply.send(self.transfer_leader(target));
            }
            NodeMsg::Persisted(number) => self.on_persisted(number),
        }
    }

    pub(super) fn proposal_error(&self, e: raft::Error) -> EtcdError {
        match e {
            raft::Error::ProposalDropped if self.raw.raft.leader_id == raft::INVALID_ID => EtcdError::NoLeader,
            raft::Error::ProposalDropped => EtcdError::NotLeader,
            other => EtcdError::Internal(other.to_string()),
        }
    }

    /// `target` 0 picks the most caught-up other voter that was heard from
    /// within an election timeout (for shutdown): one that just died may
    /// still be the most caught-up, and leadership handed to it would be
    /// lost for an election timeout (etcd picks the longest connected).
    fn transfer_leader(&mut self, mut target: u64) -> Result<(), EtcdError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(EtcdError::NotLeader);
        }
        if target == 0 {
            let me = self.state.member_id;
            let now = Instant::now();
            let alive = |id: &u64| {
                self.heard.get(id).is_some_and(|(_, last)| now.duration_since(*last) <= self.election_timeout)
            };
            let prs = self.raw.raft.prs();
            let best = prs
                .conf()
                .voters()
                .ids()
                .iter()
                .filter(|id| *id != me && alive(id))
                .max_by_key(|id| prs.get(*id).map_or(0, |p| p.matched));
            match best {
                Some(id) => target = id,
                None => return Ok(()),
            }
        }
        if !self.raw.raft.prs().conf().voters().contains(target) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target != self.state.member_id {
            self.raw.transfer_leader(target);
        }
        Ok(())
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
        // The leader drops a request whose context it already has pending,
        // so contexts must be unique across members: member ID + sequence.
        let mut ctx = self.state.member_id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.read_seq.to_be_bytes());
        self.raw.read_index(ctx);
        self.inflight_reads.insert(self.read_seq, (Instant::now(), batch));
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
        // Tests stall (sleep, pause) or crash (panic) the raft thread here.
        failpoint::hit("raft::ready");
        let started = Instant::now();
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            let was_leader = self.state.leader() == self.state.member_id;
            let is_leader = ss.raft_state == StateRole::Leader;
            // The lessor changes before the leader is published, so whoever
            // sees this member as leader finds its lessor primary.
            if is_leader && !was_leader {
                // etcd's rule: a new leader gives every lease its full TTL
                // plus an election timeout, as nobody timed them meanwhile.
                self.lessor.promote(self.election_timeout);
            } else if !is_leader {
                self.lessor.demote();
            }
            if ss.leader_id != self.state.leader() {
                // etcd fails reads waiting on a ReadIndex when the leader changes.
                for (_, (_, ws)) in self.inflight_reads.drain() {
                    for w in ws {
                        let _ = w.send(Err(EtcdError::LeaderChanged));
                    }
                }
            }
            self.state.set_leader(ss.leader_id);
        }
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            return self.on_snapshot_ready(ready);
        }
        self.apply_committed(ready.take_committed_entries())?;
        // Staged for raft to read, written by the WAL thread; raft counts
        // them as persisted once it reports them (`on_persisted`).
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        self.log.stage(&entries, hard_state.as_ref())?;
        let number = ready.number();
        let sync = ready.must_sync();
        self.wal.persist(wal_thread::Task::Persist { number, entries, hard_state, sync })?;
        if let Some(hs) = ready.hs() {
            self.state.set_term(hs.term);
            self.state.set_commit(hs.commit);
        }
        self.answer_reads(ready.take_read_states());
        self.unpersisted.push_back((number, ready.take_persisted_messages()));
        self.raw.advance_append_async(ready);
        let busy = started.elapsed();
        if busy > self.election_timeout / 2 {
            // etcd's "leader failed to send out heartbeat on time": a Ready
            // this long holds heartbeats back (an overloaded CPU, a queue to
            // the WAL or apply thread full because the disk is that slow).
            tracing::warn!(busy_ms = busy.as_millis() as u64, "raft thread busy for over half an election timeout");
        }
        self.advance_applied();
        self.snapshot(false)
    }

    /// The WAL thread wrote every Ready up to `number`: raft may count
    /// them, and their messages (votes, acknowledgements) go out.
    fn on_persisted(&mut self, number: u64) {
        if number == 0 {
            // The WAL thread failed; the loop finds out from it.
            return;
        }
        while self.unpersisted.front().is_some_and(|(n, _)| *n <= number) {
            if let Some((_, msgs)) = self.unpersisted.pop_front() {
                self.wal.in_flight = self.wal.in_flight.saturating_sub(1);
                self.transport.send(msgs);
            }
        }
        self.raw.on_persist_ready(number);
    }

    /// Waits until the WAL thread has written everything handed to it and
    /// tells raft, before this thread writes the WAL itself (a snapshot, a
    /// hard state): records must not land out of order.
    fn drain_wal(&mut self) -> Result<(), NodeError> {
        self.wal.drain()?;
        if let Some(&(last, _)) = self.unpersisted.back() {
            self.on_persisted(last);
        }
        Ok(())
    }

    /// A Ready with a snapshot from the leader, handled whole on this
    /// thread: what is in flight is written first, then the snapshot, its
    /// entries and hard state, as raft-rs's synchronous path does.
    fn on_snapshot_ready(&mut self, mut ready: raft::Ready) -> Result<(), NodeError> {
        self.drain_wal()?;
        self.install_snapshot(ready.snapshot().clone())?;
        self.apply_committed(ready.take_committed_entries())?;
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.log.persist(ready.entries(), ready.hs(), ready.must_sync())?;
        }
        if let Some(hs) = ready.hs() {
            self.state.set_term(hs.term);
            self.state.set_commit(hs.commit);
        }
        self.answer_reads(ready.take_read_states());
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.raw.advance_append(ready);
        if let Some(c) = light.commit_index() {
            self.state.set_commit(c);
        }
        self.transport.send(light.take_messages());
        self.apply_committed(light.take_committed_entries())?;
        self.advance_applied();
        Ok(())
    }

    fn answer_reads(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let mut seq = [0u8; 8];
            if rs.request_ctx.len() == 16 && rs.request_ctx[..8] == self.state.member_id.to_be_bytes() {
                seq.copy_from_slice(&rs.request_ctx[8..]);
            }
            if let Some((_, ws)) = self.inflight_reads.remove(&u64::from_be_bytes(seq)) {
                for w in ws {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
    }

    /// Records a leader's snapshot in the log (the staged file renamed into
    /// place, a WAL marker) and hands the restore to the apply thread. Costs
    /// this thread the same whatever the snapshot's size: a copy or a read of
    /// the data here would stop heartbeats, and a two-voter cluster's leader
    /// would lose its quorum (check-quorum) while a new member installs.
    fn install_snapshot(&mut self, snap: raft::eraftpb::Snapshot) -> Result<(), NodeError> {
        let meta = snap.get_metadata().clone();
        let started = Instant::now();
        tracing::info!(index = meta.index, term = meta.term, "installing a snapshot from the leader");
        match self.staged.take(meta.index, meta.term) {
            Some(path) => {
                let installed = self.log.install_staged(&meta, &path);
                if installed.is_err() {
                    let _ = std::fs::remove_file(&path);
                }
                installed?;
            }
            None if snap.data.is_empty() => {
                return Err(NodeError::SnapshotNotReceived { index: meta.index, term: meta.term })
            }
            None => self.log.install_snapshot(&snap)?,
        }
        self.staged.discard_through(meta.index);
        // Tests crash here: the log records the snapshot, the engine is
        // not restored from it yet.
        failpoint::hit("snapshot::install");
        // The apply thread checks the file and restores the engine from it,
        // streamed, once it has applied what came before. The file is open
        // from here on, so no pruning can take it meanwhile.
        let file = self
            .log
            .snapshot_store()
            .open_unverified(meta.index, meta.term)?
            .ok_or(NodeError::SnapshotGone { index: meta.index, term: meta.term })?;
        self.apply.send(Task::Restore { meta: meta.clone(), file })?;
        self.last_snapshot = meta.index;
        self.last_snapshot_has_data = true;
        let took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(index = meta.index, took_ms, "snapshot recorded; the apply thread restores it");
        Ok(())
    }

    /// Hands committed entries to the apply thread, in order. A conf change
    /// is applied here, by the thread that owns raft's configuration, once
    /// everything before it is applied: its verdict depends on the members
    /// as applied, and raft must switch configuration exactly there.
    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let mut batch = Vec::new();
        for e in entries {
            if self.removed {
                break;
            }
            if e.get_entry_type() != EntryType::EntryConfChange {
                batch.push(e);
                continue;
            }
            if !batch.is_empty() {
                self.apply.send(Task::Entries(std::mem::take(&mut batch)))?;
            }
            self.apply.drain(Task::Barrier)?;
            if e.index > self.mvcc.applied_index().index {
                self.apply_conf_change_entry(&e)?;
            }
            self.state.set_applied(e.index.max(self.state.applied_index()));
            self.advance_applied();
        }
        if !batch.is_empty() && !self.removed {
            self.apply.send(Task::Entries(batch))?;
        }
        if self.members.version() != self.peers_version {
            self.refresh_peers_from_members();
        }
        Ok(())
    }

    /// Records a conf change entry that changes nothing as applied (the
    /// apply thread is drained: nothing else writes the engine).
    pub(super) fn mark_applied(&self, applied: AppliedIndex) -> Result<(), NodeError> {
        self.mvcc.set_applied(applied).map_err(|e| NodeError::Apply { index: applied.index, reason: e.to_string() })
    }

    /// Takes a snapshot every `snapshot_count` applied entries, or now when
    /// `force` (a member needs one: anything applied since the last one, or
    /// the last one has no data). A persistent engine's periodic snapshots
    /// are data-less: the engine holds the state, the snapshot only lets the
    /// log be cut, so neither the disk nor the raft thread pays for a dump.
    /// Snapshots with data are written in the background when the engine
    /// can defer its dump (both engines can); one running answers a request
    /// for another, since raft asks again until a file serves it.
    fn snapshot(&mut self, force: bool) -> Result<(), NodeError> {
        let applied = self.mvcc.applied_index().index;
        let due = if force {
            applied > self.last_snapshot || !self.last_snapshot_has_data
        } else {
            applied >= self.last_snapshot + self.snapshot_count
        };
        if !due || self.background.is_some() || self.capture.is_some() {
            return Ok(());
        }
        if force || !self.mvcc.engine().persistent() {
            // The state must be taken exactly where apply is: the apply
            // thread takes it between two entries (`finish_capture`).
            let (reply, captured) = mpsc::sync_channel(1);
            self.apply.send(Task::Capture(reply))?;
            self.capture = Some((force, captured));
            return Ok(());
        }
        // Data-less: the engine holds the state; whatever apply adds after
        // `applied` is made durable by the sync too.
        let (term, cs) = self.snapshot_position(applied)?;
        self.mvcc.engine().sync()?;
        let started = Instant::now();
        let mut no_data = |_: &mut dyn std::io::Write| Ok(());
        self.log.create_snapshot(applied, term, &cs, &mut no_data)?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(index = applied, with_data = false, elapsed_ms, "snapshot saved");
        self.last_snapshot = applied;
        self.last_snapshot_has_data = false;
        Ok(())
    }

    /// The term and conf state of a snapshot at `applied`, with the commit
    /// index recorded first (a snapshot may not name an index beyond the
    /// commit index the log holds). raft's configuration is the one at
    /// `applied`: conf changes are applied on this thread, only once apply
    /// has reached them.
    fn snapshot_position(&mut self, applied: u64) -> Result<(u64, ConfState), NodeError> {
        self.drain_wal()?;
        self.log.persist_commit(self.raw.raft.raft_log.committed)?;
        let term = self.raw.raft.raft_log.term(applied)?;
        Ok((term, self.raw.raft.prs().conf().to_conf_state()))
    }

    /// Starts writing a snapshot with data once the apply thread has taken
    /// its state: in the background when the engine can defer its dump,
    /// else here, with apply drained.
    fn finish_capture(&mut self) -> Result<(), NodeError> {
        let Some((force, captured)) = &self.capture else {
            return Ok(());
        };
        let force = *force;
        let captured = match captured.try_recv() {
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => {
                self.capture = None;
                self.apply.check()?;
                return Err(NodeError::Io(std::io::Error::other("the apply thread dropped a snapshot capture")));
            }
            Ok(c) => c,
        };
        self.capture = None;
        let Captured { applied, dump } = captured?;
        let applied = applied.index;
        let (term, cs) = self.snapshot_position(applied)?;
        // The log below this snapshot goes: what the engine holds must not
        // be lost with it.
        self.mvcc.engine().sync()?;
        let Some(dump) = dump else {
            return self.synchronous_snapshot(force);
        };
        let meta = if applied == self.last_snapshot {
            Some(self.log.refill_meta(applied, term, &cs)?)
        } else {
            self.log.snapshot_meta(applied, term, &cs)?
        };
        if let Some(meta) = meta {
            self.background = Some(BackgroundSnapshot::start(self.log.snapshot_store(), meta, dump)?);
        }
        Ok(())
    }

    /// A snapshot with data dumped on this thread, apply drained (for an
    /// engine that cannot defer its dump).
    fn synchronous_snapshot(&mut self, force: bool) -> Result<(), NodeError> {
        self.apply.drain(Task::Barrier)?;
        let applied = self.mvcc.applied_index().index;
        if !force && applied < self.last_snapshot + self.snapshot_count && applied <= self.last_snapshot {
            return Ok(());
        }
        let (term, cs) = self.snapshot_position(applied)?;
        let engine = self.mvcc.engine().clone();
        engine.sync()?;
        let started = Instant::now();
        let mut dump = |w: &mut dyn std::io::Write| engine.dump(w).map_err(std::io::Error::other);
        if applied == self.last_snapshot {
            self.log.refill_snapshot(applied, term, &cs, &mut dump)?;
        } else {
            self.log.create_snapshot(applied, term, &cs, &mut dump)?;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(index = applied, with_data = true, elapsed_ms, "snapshot saved");
        self.last_snapshot = applied;
        self.last_snapshot_has_data = true;
        Ok(())
    }

    /// Records the background snapshot once its file is saved (waiting for
    /// it when `wait`). A failed write stops the node, as a failed
    /// synchronous snapshot does.
    fn finish_background_snapshot(&mut self, wait: bool) -> Result<(), NodeError> {
        if !self.background.as_ref().is_some_and(|bg| wait || bg.is_finished()) {
            return Ok(());
        }
        let Some(bg) = self.background.take() else {
            return Ok(());
        };
        let (index, term) = (bg.index, bg.term);
        let (written, elapsed) = bg.join();
        written?;
        let elapsed_ms = elapsed.as_millis() as u64;
        self.drain_wal()?;
        if self.log.commit_saved_snapshot(index, term)? {
            self.last_snapshot = index;
            self.last_snapshot_has_data = true;
            tracing::info!(index, with_data = true, background = true, elapsed_ms, "snapshot saved");
        } else if index == self.last_snapshot {
            // The latest snapshot, data-less until now, was written again
            // with data (the marker and the log stay as they are).
            self.last_snapshot_has_data = true;
            tracing::info!(index, with_data = true, background = true, elapsed_ms, "snapshot written again with data");
        }
        Ok(())
    }
}
