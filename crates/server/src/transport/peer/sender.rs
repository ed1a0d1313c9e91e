//! The raft transport: per peer, two lanes, each a task with a bounded
//! queue and its own connection. Appends (which carry entries, up to
//! `--max-request-bytes` each) and snapshots take the data lane; heartbeats,
//! votes and every answer take the control lane, so a large entry on its
//! way never holds a heartbeat back long enough for the followers to call
//! an election (etcd keeps its MsgApp stream apart for the same reason).
//! Raft tolerates reordering between the lanes; within one lane order holds.
//! The raft thread never waits: when a lane's queue is full the message is
//! dropped and raft is told the peer is unreachable (raft retransmits). Each
//! task keeps one streaming call open, reconnecting with backoff; a snapshot
//! goes in its own call so its delivery can be reported to raft.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Weak};
use std::time::Duration;

use api::pb::metastorepb::{ProbeRequest, RaftEnvelope};
use prometheus::{IntCounter, IntGauge};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{connect, with_timeout, Dialer};
use super::SNAPSHOT_CHUNK;
use crate::metrics::{self, id_label};
use crate::node::{NodeHandle, Report, Transport};

/// Raft messages queued per peer; beyond this the peer counts as
/// unreachable and messages are dropped.
const PEER_QUEUE: usize = 4096;
/// Envelopes buffered in a streaming call.
const STREAM_QUEUE: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A stream that lived this long was a working connection: the next attempt
/// starts again from `BACKOFF_MIN`.
const STABLE_CONNECTION: Duration = Duration::from_secs(1);
/// Longest wait for room in a peer's stream before reconnecting.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a snapshot was sent the leader still keeps its raft log
/// whole, for the member to install the snapshot and ask for the entries
/// after it (etcd's `releaseDelayAfterSnapshot`).
const HOLD_AFTER_SNAPSHOT_SENT: Duration = Duration::from_secs(30);
/// Sending one snapshot gives up after this long and reports a failure.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Snapshot chunks read from disk ahead of the call.
const SNAPSHOT_READ_AHEAD: usize = 4;
/// How often each peer's round trip is timed (etcd's prober: 4 s).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// A probe unanswered this long counts the peer as inactive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

struct Lane {
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

struct Peer {
    urls: Vec<String>,
    control: Lane,
    data: Lane,
    probe: tokio::task::JoinHandle<()>,
}

impl Peer {
    fn abort(&self) {
        self.control.task.abort();
        self.data.task.abort();
        self.probe.abort();
    }
}

/// Whether a message takes the data lane: it may be large.
fn is_data(m: &Message) -> bool {
    matches!(m.get_msg_type(), MessageType::MsgAppend | MessageType::MsgSnapshot)
}

pub struct PeerTransport {
    rt: tokio::runtime::Handle,
    dialer: Dialer,
    node: Weak<NodeHandle>,
    peers: HashMap<u64, Peer>,
    /// This member's ID, as the peer metrics' `Local` label.
    local: String,
    /// A heartbeat to a peer later than this after the previous one (in
    /// the same term) counts as a send failure: etcd's timeout detector,
    /// twice `--heartbeat-interval`.
    heartbeat_deadline: Duration,
    /// Per peer, the term and time of the last heartbeat sent.
    last_heartbeat: HashMap<u64, (u64, std::time::Instant)>,
}

impl PeerTransport {
    pub fn new(rt: tokio::runtime::Handle, dialer: Dialer, node: &Arc<NodeHandle>, heartbeat: Duration) -> Self {
        let local = id_label(node.state.member_id);
        PeerTransport {
            rt,
            dialer,
            node: Arc::downgrade(node),
            peers: HashMap::new(),
            local,
            heartbeat_deadline: heartbeat * 2,
            last_heartbeat: HashMap::new(),
        }
    }

    /// etcd's `heartbeat_send_failures_total`: the leader sent a heartbeat
    /// too late (its raft loop was held up, likely by a slow disk).
    fn check_heartbeat(&mut self, m: &Message) {
        let now = std::time::Instant::now();
        let late = matches!(
            self.last_heartbeat.insert(m.to, (m.term, now)),
            Some((term, at)) if term == m.term && now.duration_since(at) > self.heartbeat_deadline
        );
        if late {
            metrics::get().server.heartbeat_send_failures.inc();
            tracing::warn!(
                to = %id_label(m.to),
                deadline_ms = self.heartbeat_deadline.as_millis() as u64,
                "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
            );
        }
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        for (_, p) in self.peers.drain() {
            p.abort();
        }
    }
}

fn report(node: &Weak<NodeHandle>, r: Report) {
    if let Some(n) = node.upgrade() {
        n.report(r);
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                self.check_heartbeat(&m);
            }
            let Some(peer) = self.peers.get(&to) else {
                tracing::debug!(to = %format!("{to:x}"), "raft message for an unknown peer dropped");
                continue;
            };
            let lane = if is_data(&m) { &peer.data } else { &peer.control };
            if lane.tx.try_send(m).is_err() {
                metrics::get().net.peer_sent_failures.with_label_values(&[&id_label(to)]).inc();
                report(&self.node, Report::Unreachable(to));
                if snapshot {
                    report(&self.node, Report::Snapshot(to, SnapshotStatus::Failure));
                }
            }
        }
    }

    fn set_peers(&mut self, peers: Vec<(u64, Vec<String>)>) {
        let wanted: HashMap<u64, Vec<String>> = peers.into_iter().collect();
        self.peers.retain(|id, p| {
            let keep = wanted.get(id) == Some(&p.urls);
            if !keep {
                p.abort();
            }
            keep
        });
        for (id, urls) in wanted {
            if self.peers.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let lane = || {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                let task = self.rt.spawn(peer_loop(id, urls.clone(), self.dialer.clone(), rx, self.node.clone()));
                Lane { tx, task }
            };
            let (control, data) = (lane(), lane());
            let probe = self.rt.spawn(probe_loop(self.local.clone(), id, urls.clone(), self.dialer.clone()));
            self.peers.insert(id, Peer { urls, control, data, probe });
        }
    }
}

/// The bulk of a raft message: its entries' data (snapshots travel apart).
/// Enough to choose blocking work, without `compute_size`'s walk of every
/// field, which the encoding itself repeats.
fn entry_bytes(m: &Message) -> usize {
    m.get_entries().iter().map(|e| e.get_data().len()).sum()
}

fn envelope(m: &Message) -> RaftEnvelope {
    RaftEnvelope { message: m.write_to_bytes().unwrap_or_default(), snapshot_data: Vec::new(), more: false }
}

/// Keeps a stream to one peer for one lane; ends when the peer is removed
/// (queue closed).
async fn peer_loop(
    id: u64,
    urls: Vec<String>,
    dialer: Dialer,
    mut rx: mpsc::Receiver<Message>,
    node: Weak<NodeHandle>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut turn = 0usize;
    let net = &metrics::get().net;
    let sent = net.peer_sent_bytes.with_label_values(&[&id_label(id)]);
    let failures = net.peer_sent_failures.with_label_values(&[&id_label(id)]);
    loop {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let client = match connect(url, &dialer).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = %format!("{id:x}"), %url, error = %e, "peer unreachable");
                if !pause(id, &mut rx, &node, &mut backoff, &failures).await {
                    return;
                }
                continue;
            }
        };
        let connected_at = tokio::time::Instant::now();
        let (stx, srx) = mpsc::channel(STREAM_QUEUE);
        let mut stream_client = client.clone();
        let mut call = tokio::spawn(async move { stream_client.raft(ReceiverStream::new(srx)).await });
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    None => {
                        call.abort();
                        return;
                    }
                    Some(m) if m.get_msg_type() == MessageType::MsgSnapshot => {
                        tokio::spawn(send_snapshot(id, client.clone(), m, node.clone()));
                    }
                    Some(m) => {
                        // Tests drop (error) or delay (sleep) peer messages.
                        match failpoint::eval("peer::send") {
                            Some(failpoint::Action::Error) => continue,
                            Some(failpoint::Action::Sleep(d)) => tokio::time::sleep(d).await,
                            _ => {}
                        }
                        let env = super::heavy(entry_bytes(&m), || envelope(&m));
                        let bytes = env.message.len() as u64;
                        // A stream that takes no message for this long is
                        // stuck (peer gone silent): reconnect.
                        match tokio::time::timeout(STREAM_SEND_TIMEOUT, stx.send(env)).await {
                            Ok(Ok(())) => sent.inc_by(bytes),
                            _ => {
                                failures.inc();
                                break;
                            }
                        }
                    }
                },
                done = &mut call => {
                    if let Ok(Err(status)) = done {
                        if status.message() == super::service::REMOVED {
                            report(&node, Report::Removed);
                        }
                    }
                    break;
                }
            }
        }
        call.abort();
        // A connection that fails right after it opened (the peer's process
        // is down behind a proxy or load balancer that accepts anyway) must
        // not turn into a reconnect storm that floods the raft queue.
        if connected_at.elapsed() >= STABLE_CONNECTION {
            backoff = BACKOFF_MIN;
            report(&node, Report::Unreachable(id));
        } else if !pause(id, &mut rx, &node, &mut backoff, &failures).await {
            return;
        }
    }
}

/// After a failed attempt: tells raft, drops what queued meanwhile (stale;
/// raft sends again), waits `backoff` and doubles it. False when the peer
/// was removed (its queue closed).
async fn pause(
    id: u64,
    rx: &mut mpsc::Receiver<Message>,
    node: &Weak<NodeHandle>,
    backoff: &mut Duration,
    failures: &IntCounter,
) -> bool {
    report(node, Report::Unreachable(id));
    while let Ok(m) = rx.try_recv() {
        failures.inc();
        if m.get_msg_type() == MessageType::MsgSnapshot {
            report(node, Report::Snapshot(id, SnapshotStatus::Failure));
        }
    }
    if rx.is_closed() {
        return false;
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

async fn send_snapshot(
    id: u64,
    mut client: api::pb::metastorepb::peer_client::PeerClient<tonic::transport::Channel>,
    mut m: Message,
    node: Weak<NodeHandle>,
) {
    let Some(snaps) = node.upgrade().map(|n| n.snapshots.clone()) else {
        return;
    };
    let hold = snaps.hold_for_send();
    let meta = m.get_snapshot().get_metadata().clone();
    // The message carries the metadata; the data is read from the snapshot
    // file a chunk at a time, a few chunks ahead of the call at most.
    let inline = std::mem::take(&mut m.mut_snapshot().data);
    let head = envelope(&m).message;
    let (tx, rx) = mpsc::channel(SNAPSHOT_READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || -> Result<u64, SnapshotReadError> {
        let mut data: Box<dyn Read + Send> = if inline.is_empty() {
            match snaps.load_to_send(meta.index, meta.term)? {
                Some((_, r)) => r,
                None => return Err(SnapshotReadError::Gone { index: meta.index, term: meta.term }),
            }
        } else {
            Box::new(std::io::Cursor::new(inline.to_vec()))
        };
        let mut sent = 0u64;
        let mut current = read_chunk(&mut data)?;
        let mut first = true;
        loop {
            let next = if current.len() == SNAPSHOT_CHUNK { read_chunk(&mut data)? } else { Vec::new() };
            let more = !next.is_empty();
            sent += current.len() as u64;
            let message = if first { head.clone() } else { Vec::new() };
            first = false;
            if tx.blocking_send(RaftEnvelope { message, snapshot_data: current, more }).is_err() {
                return Err(SnapshotReadError::CallEnded);
            }
            if !more {
                return Ok(sent);
            }
            current = next;
        }
    });
    let request = with_timeout(ReceiverStream::new(rx), SNAPSHOT_TIMEOUT);
    let net = &metrics::get().net;
    let peer = id_label(id);
    let inflight = metrics::Inflight::new(net.snapshot_send_inflights.with_label_values(&[&peer]));
    let start = std::time::Instant::now();
    let call = client.snapshot(request).await;
    let read = reader.await.unwrap_or_else(|e| Err(e.into()));
    drop(inflight);
    let status = match (call, read) {
        (Ok(_), Ok(bytes)) => {
            tracing::info!(peer = %format!("{id:x}"), bytes, "snapshot sent");
            net.snapshot_send_success.with_label_values(&[&peer]).inc();
            net.snapshot_send_duration.with_label_values(&[&peer]).observe(metrics::since(start));
            net.peer_sent_bytes.with_label_values(&[&peer]).inc_by(bytes);
            // Dropped early if the runtime shuts down first.
            tokio::spawn(async move {
                tokio::time::sleep(HOLD_AFTER_SNAPSHOT_SENT).await;
                drop(hold);
            });
            SnapshotStatus::Finish
        }
        (Err(e), _) => {
            net.snapshot_send_failures.with_label_values(&[&peer]).inc();
            tracing::warn!(peer = %format!("{id:x}"), error = %e.message(), "sending snapshot failed");
            SnapshotStatus::Failure
        }
        (_, Err(e)) => {
            net.snapshot_send_failures.with_label_values(&[&peer]).inc();
            tracing::warn!(peer = %format!("{id:x}"), error = %e, "reading snapshot failed");
            SnapshotStatus::Failure
        }
    };
    report(&node, Report::Snapshot(id, status));
}

/// Times a round trip to one peer every `PROBE_INTERVAL` (etcd's prober,
/// `etcd_network_peer_round_trip_time_seconds`) and keeps the peer's
/// `etcd_network_active_peers` gauge: active while probes get answers.
/// Ends when the peer is removed (the task is aborted).
async fn probe_loop(local: String, id: u64, urls: Vec<String>, dialer: Dialer) {
    let remote = id_label(id);
    let net = &metrics::get().net;
    let rtt = net.peer_rtt.with_label_values(&[&remote]);
    let mut active = Active { gauge: net.active_peers.with_label_values(&[&local, &remote]), up: false };
    let mut client = None;
    let mut turn = 0usize;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.is_none() {
            client = connect(&urls[turn % urls.len()], &dialer).await.ok();
            turn += 1;
        }
        let answered = match &mut client {
            Some(c) => {
                let start = std::time::Instant::now();
                let ok = match c.probe(with_timeout(ProbeRequest {}, PROBE_TIMEOUT)).await {
                    Ok(_) => true,
                    // A member of an older version answers Unimplemented:
                    // a round trip all the same.
                    Err(s) => s.code() == tonic::Code::Unimplemented,
                };
                if ok {
                    rtt.observe(metrics::since(start));
                }
                ok
            }
            None => false,
        };
        if !answered {
            client = None;
        }
        if active.set(answered) {
            net.disconnected_peers.with_label_values(&[&local, &remote]).inc();
        }
    }
}

/// A peer's `etcd_network_active_peers` gauge; taken back when the peer's
/// prober ends.
struct Active {
    gauge: IntGauge,
    up: bool,
}

impl Active {
    /// True when the peer just went from active to inactive.
    fn set(&mut self, up: bool) -> bool {
        if up == self.up {
            return false;
        }
        self.up = up;
        if up {
            self.gauge.inc();
        } else {
            self.gauge.dec();
        }
        !up
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Up to `SNAPSHOT_CHUNK` bytes (fewer only at the end of the data).
fn read_chunk(r: &mut dyn Read) -> Result<Vec<u8>, SnapshotReadError> {
    let mut buf = Vec::with_capacity(SNAPSHOT_CHUNK);
    r.take(SNAPSHOT_CHUNK as u64).read_to_end(&mut buf).map_err(SnapshotReadError::Read)?;
    Ok(buf)
}

/// Why a snapshot's data could not be streamed to a peer.
#[derive(Debug, thiserror::Error)]
enum SnapshotReadError {
    #[error("snapshot {index}/{term} is no longer on disk")]
    Gone { index: u64, term: u64 },
    #[error("{0}")]
    Load(#[from] raftlog::SnapshotError),
    #[error("reading snapshot data: {0}")]
    Read(std::io::Error),
    #[error("the snapshot call ended early")]
    CallEnded,
    #[error("the snapshot reader failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
