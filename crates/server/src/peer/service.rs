//! The peer gRPC service: what other members call on this one.

use std::sync::Arc;

use api::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberPromoteRequest, MemberPromoteResponse,
};
use api::pb::metastorepb::{peer_server::Peer, MembersRequest, MembersResponse, RaftAck, RaftEnvelope};
use api::EtcdError;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::{Request, Response, Status, Streaming};

use crate::node::NodeHandle;
use crate::service::Ctx;

/// What a member hears when it talks to peers after being removed.
pub const REMOVED: &str = "etcdserver: the member has been permanently removed from the cluster";

/// Largest snapshot a member accepts (the memory engine's whole state).
const MAX_SNAPSHOT_BYTES: usize = 16 << 30;

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
        while let Some(env) = inbound.message().await? {
            let msg = decode(&env.message)?;
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
        let Some(first) = inbound.message().await? else {
            return Err(Status::invalid_argument("empty snapshot call"));
        };
        let mut msg = decode(&first.message)?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("not a snapshot message"));
        }
        let mut data = first.snapshot_data;
        let mut more = first.more;
        while more {
            let Some(env) = inbound.message().await? else {
                return Err(Status::invalid_argument("snapshot call ended early"));
            };
            if data.len() + env.snapshot_data.len() > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted("snapshot too large"));
            }
            data.extend_from_slice(&env.snapshot_data);
            more = env.more;
        }
        tracing::info!(from = %format!("{:x}", msg.from), bytes = data.len(), "snapshot received");
        msg.mut_snapshot().data = data.into();
        self.node().step(msg);
        Ok(Response::new(RaftAck {}))
    }

    async fn members(&self, _request: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let node = self.node();
        Ok(Response::new(MembersResponse { cluster_id: node.state.cluster_id(), members: node.members.list() }))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let r = request.into_inner();
        let ttl = match self.node().lessor.renew(r.id) {
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
        let r = request.into_inner();
        if !self.node().lessor.is_primary() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(crate::service::lease::time_to_live(&self.ctx, &r)))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(crate::service::cluster::promote_here(&self.ctx, r.id).await?))
    }
}
