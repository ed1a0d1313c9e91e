//! The raft transport: one task per peer with a bounded queue. The raft
//! thread never waits: when a peer's queue is full the message is dropped
//! and raft is told the peer is unreachable (raft retransmits). Each task
//! keeps one streaming call open, reconnecting with backoff; a snapshot goes
//! in its own call so its delivery can be reported to raft.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use api::pb::metastorepb::RaftEnvelope;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{connect, with_timeout};
use super::SNAPSHOT_CHUNK;
use crate::node::{NodeHandle, Report, Transport};

/// Raft messages queued per peer; beyond this the peer counts as
/// unreachable and messages are dropped.
const PEER_QUEUE: usize = 4096;
/// Envelopes buffered in a streaming call.
const STREAM_QUEUE: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest wait for room in a peer's stream before reconnecting.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Sending one snapshot gives up after this long and reports a failure.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Peer {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

pub struct PeerTransport {
    rt: tokio::runtime::Handle,
    source: Option<IpAddr>,
    node: Weak<NodeHandle>,
    peers: HashMap<u64, Peer>,
}

impl PeerTransport {
    pub fn new(rt: tokio::runtime::Handle, source: Option<IpAddr>, node: &Arc<NodeHandle>) -> Self {
        PeerTransport { rt, source, node: Arc::downgrade(node), peers: HashMap::new() }
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        for (_, p) in self.peers.drain() {
            p.task.abort();
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
            let Some(peer) = self.peers.get(&to) else {
                tracing::debug!(to = %format!("{to:x}"), "raft message for an unknown peer dropped");
                continue;
            };
            if peer.tx.try_send(m).is_err() {
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
                p.task.abort();
            }
            keep
        });
        for (id, urls) in wanted {
            if self.peers.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let task = self.rt.spawn(peer_loop(id, urls.clone(), self.source, rx, self.node.clone()));
            self.peers.insert(id, Peer { urls, tx, task });
        }
    }
}

fn envelope(m: &Message) -> RaftEnvelope {
    RaftEnvelope { message: m.write_to_bytes().unwrap_or_default(), snapshot_data: Vec::new(), more: false }
}

/// Keeps a stream to one peer; ends when the peer is removed (queue closed).
async fn peer_loop(
    id: u64,
    urls: Vec<String>,
    source: Option<IpAddr>,
    mut rx: mpsc::Receiver<Message>,
    node: Weak<NodeHandle>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut turn = 0usize;
    loop {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let client = match connect(url, source).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = %format!("{id:x}"), %url, error = %e, "peer unreachable");
                report(&node, Report::Unreachable(id));
                // Whatever queued meanwhile is stale; raft will send again.
                while let Ok(m) = rx.try_recv() {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        report(&node, Report::Snapshot(id, SnapshotStatus::Failure));
                    }
                }
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
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
                        // A stream that takes no message for this long is
                        // stuck (peer gone silent): reconnect.
                        match tokio::time::timeout(STREAM_SEND_TIMEOUT, stx.send(envelope(&m))).await {
                            Ok(Ok(())) => {}
                            _ => break,
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
        report(&node, Report::Unreachable(id));
    }
}

async fn send_snapshot(
    id: u64,
    mut client: api::pb::metastorepb::peer_client::PeerClient<tonic::transport::Channel>,
    mut m: Message,
    node: Weak<NodeHandle>,
) {
    let data = std::mem::take(&mut m.mut_snapshot().data);
    let size = data.len();
    let head = envelope(&m);
    let chunks = size.div_ceil(SNAPSHOT_CHUNK).max(1);
    // Chunks are cut as the call pulls them: no second copy of the snapshot.
    let pieces = (0..chunks).map(move |i| {
        let piece = data.slice(i * SNAPSHOT_CHUNK..((i + 1) * SNAPSHOT_CHUNK).min(size)).to_vec();
        let message = if i == 0 { head.message.clone() } else { Vec::new() };
        RaftEnvelope { message, snapshot_data: piece, more: i + 1 < chunks }
    });
    let request = with_timeout(tokio_stream::iter(pieces), SNAPSHOT_TIMEOUT);
    let status = match client.snapshot(request).await {
        Ok(_) => {
            tracing::info!(peer = %format!("{id:x}"), bytes = size, "snapshot sent");
            SnapshotStatus::Finish
        }
        Err(e) => {
            tracing::warn!(peer = %format!("{id:x}"), error = %e.message(), "sending snapshot failed");
            SnapshotStatus::Failure
        }
    };
    report(&node, Report::Snapshot(id, status));
}
