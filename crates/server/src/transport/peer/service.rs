//! The peer gRPC service: what other members call on this one.

use std::sync::Arc;
use std::time::Duration;

use api::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, MemberAddRequest,
    MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
};
use api::pb::metastorepb::{
    peer_server::Peer, MembersRequest, MembersResponse, ProbeRequest, ProbeResponse, RaftAck, RaftEnvelope,
};
use api::EtcdError;
use prometheus::IntCounter;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::api::Ctx;
use crate::deadline::Deadline;
use crate::metrics::id_label;
use crate::node::NodeHandle;

/// What a member hears when it talks to peers after being removed.
pub const REMOVED: &str = "etcdserver: the member has been permanently removed from the cluster";

/// A peer stream that delivers nothing for this long is closed: its sender
/// vanished without closing the connection (axum does not enforce
/// grpc-timeout). A live sender reconnects at once; raft traffic is never
/// idle that long while a leader exists (heartbeats).
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The next envelope of a peer stream, or an error once it idles too long.
async fn next(inbound: &mut Streaming<RaftEnvelope>) -> Result<Option<RaftEnvelope>, Status> {
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, inbound.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("peer stream idle for too long")),
    }
}

pub struct PeerService {
    ctx: Ctx,
}

impl PeerService {
    pub fn new(ctx: Ctx) -> Self {
        PeerService { ctx }
    }

    fn node(&self) -> &Arc<NodeHandle> {
        &self.ctx.node
    }
}

fn decode(bytes: &[u8]) -> Result<Message, Status> {
    Message::parse_from_bytes(bytes).map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftEnvelope>>) -> Result<Response<RaftAck>, Status> {
        let mut inbound = request.into_inner();
        let net = &crate::metrics::get().net;
        // The sender's counter, resolved at its first message.
        let mut from: Option<(u64, IntCounter)> = None;
        loop {
            let env = match next(&mut inbound).await {
                Ok(Some(env)) => env,
                Ok(None) => break,
                Err(status) => {
                    if let Some((id, _)) = &from {
                        net.peer_received_failures.with_label_values(&[&id_label(*id)]).inc();
                    }
                    return Err(status);
                }
            };
            let msg = super::heavy(env.message.len(), || decode(&env.message))?;
            let bytes = env.message.len() as u64;
            match &from {
                Some((id, counter)) if *id == msg.from => counter.inc_by(bytes),
                // Only members get a series: a stranger on the peer port
                // must not grow the label set.
                _ if self.node().members.get(msg.from).is_some() => {
                    let counter = net.peer_received_bytes.with_label_values(&[&id_label(msg.from)]);
                    counter.inc_by(bytes);
                    from = Some((msg.from, counter));
                }
                _ => {}
            }
            if self.node().members.is_removed(msg.from) {
                // etcd answers a removed member's traffic so it stops itself.
                return Err(Status::failed_precondition(REMOVED));
            }
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                return Err(Status::invalid_argument("snapshots go through the Snapshot call"));
            }
            self.node().step(msg);
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn snapshot(&self, request: Request<Streaming<RaftEnvelope>>) -> Result<Response<RaftAck>, Status> {
        let mut inbound = request.into_inner();
        let Some(first) = next(&mut inbound).await? else {
            return Err(Status::invalid_argument("empty snapshot call"));
        };
        let msg = decode(&first.message)?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("not a snapshot message"));
        }
        let net = &crate::metrics::get().net;
        // Only members get a series (see `raft`); a stranger's shows as "".
        let peer = if self.node().members.get(msg.from).is_some() { id_label(msg.from) } else { String::new() };
        let start = std::time::Instant::now();
        let inflight = crate::metrics::Inflight::new(net.snapshot_receive_inflights.with_label_values(&[&peer]));
        let result = self.receive_snapshot(msg, first, inbound).await;
        drop(inflight);
        match &result {
            Ok(bytes) => {
                net.snapshot_receive_success.with_label_values(&[&peer]).inc();
                net.snapshot_receive_duration.with_label_values(&[&peer]).observe(crate::metrics::since(start));
                net.peer_received_bytes.with_label_values(&[&peer]).inc_by(*bytes);
            }
            Err(_) => net.snapshot_receive_failures.with_label_values(&[&peer]).inc(),
        }
        result.map(|_| Response::new(RaftAck {}))
    }

    async fn probe(&self, _request: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse {}))
    }

    async fn members(&self, _request: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let node = self.node();
        Ok(Response::new(MembersResponse { cluster_id: node.state.cluster_id(), members: node.members.list() }))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        let ttl = match crate::api::lease::renew_here(&self.ctx, r.id, deadline).await {
            Ok(ttl) => ttl,
            Err(EtcdError::LeaseNotFound) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(LeaseKeepAliveResponse { header: self.ctx.header(None), id: r.id, ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        if !self.node().lessor.is_primary() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(crate::api::lease::time_to_live(&self.ctx, &r, deadline).await?))
    }

    async fn hash_kv(
        &self,
        request: Request<api::pb::etcdserverpb::HashKvRequest>,
    ) -> Result<Response<api::pb::etcdserverpb::HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        Ok(Response::new(crate::api::maintenance::hash_kv_here(&self.ctx, rev).await?.0))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        Ok(Response::new(crate::api::cluster::promote_here(&self.ctx, r.id, deadline).await?))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        Ok(Response::new(crate::api::cluster::add_here(&self.ctx, request.into_inner(), deadline).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        Ok(Response::new(crate::api::cluster::remove_here(&self.ctx, request.into_inner(), deadline).await?))
    }
}

impl PeerService {
    /// Stages a snapshot's chunks in a file as they arrive, then hands the
    /// message to raft (the raft thread installs from the file); the bytes
    /// received.
    async fn receive_snapshot(
        &self,
        mut msg: Message,
        first: RaftEnvelope,
        mut inbound: Streaming<RaftEnvelope>,
    ) -> Result<u64, Status> {
        let meta = msg.get_snapshot().get_metadata().clone();
        let staged = &self.node().staged;
        let path = staged.path_for(meta.index, meta.term);
        let io = |e: std::io::Error| Status::internal(format!("staging snapshot data: {e}"));
        // Staged as a complete snapshot file (header, data, CRC trailer,
        // fsynced), so installing it is a rename on the raft thread rather
        // than a copy that would hold heartbeats back.
        let (mut incoming, prefix) =
            raftlog::Incoming::start(&meta).map_err(|e| Status::internal(format!("staging snapshot data: {e}")))?;
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let received = async {
            file.write_all(&prefix).await.map_err(io)?;
            let mut bytes = first.snapshot_data.len() as u64;
            incoming.data(&first.snapshot_data);
            file.write_all(&first.snapshot_data).await.map_err(io)?;
            let mut more = first.more;
            while more {
                let Some(env) = next(&mut inbound).await? else {
                    return Err(Status::invalid_argument("snapshot call ended early"));
                };
                incoming.data(&env.snapshot_data);
                file.write_all(&env.snapshot_data).await.map_err(io)?;
                bytes += env.snapshot_data.len() as u64;
                more = env.more;
            }
            file.write_all(&incoming.trailer()).await.map_err(io)?;
            file.sync_all().await.map_err(io)?;
            Ok(bytes)
        }
        .await;
        drop(file);
        let bytes = match received {
            Ok(b) => b,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(e);
            }
        };
        tracing::info!(from = %format!("{:x}", msg.from), bytes, "snapshot received");
        staged.add(meta.index, meta.term, path);
        msg.mut_snapshot().data = Default::default();
        self.node().step(msg);
        Ok(bytes)
    }
}
