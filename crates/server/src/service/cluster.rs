//! etcd's Cluster service: member list, add (voter or learner), remove,
//! update and promote. Membership changes are raft conf changes, validated
//! at apply so every member agrees; promotion runs on the leader, which
//! alone knows whether the learner has caught up.

use std::time::{SystemTime, UNIX_EPOCH};

use api::pb::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use api::pb::metastorepb::{internal_request::Request as Internal, MemberRecord};
use api::EtcdError;
use raft::eraftpb::{ConfChange, ConfChangeType};
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::apply::ApplyResponse;
use crate::deadline::Deadline;
use crate::members::to_pb;
use crate::node::ConfCheck;

pub struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub fn new(ctx: Ctx) -> Self {
        ClusterService { ctx }
    }
}

fn conf_change(kind: ConfChangeType, id: u64) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(kind);
    cc.node_id = id;
    cc
}

fn members_of(r: ApplyResponse) -> Result<Vec<MemberRecord>, EtcdError> {
    match r {
        ApplyResponse::Members(m) => Ok(m),
        _ => Err(EtcdError::Internal("apply answered a membership change with another kind".into())),
    }
}

/// etcd accepts only absolute http(s) URLs with a host and a port.
fn valid_peer_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
            rest.and_then(|r| r.trim_end_matches('/').rsplit_once(':'))
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        })
}

fn learner_guard(ctx: &Ctx) -> Result<(), EtcdError> {
    if ctx.node.is_learner() {
        return Err(EtcdError::NotSupportedForLearner);
    }
    Ok(())
}

/// etcd's `--strict-reconfig-check`: on unless turned off.
fn reconfig_check(ctx: &Ctx) -> ConfCheck {
    if ctx.cfg.strict_reconfig_check {
        ConfCheck::Strict
    } else {
        ConfCheck::Unchecked
    }
}

/// Promotion on this member, which must be the leader.
pub async fn promote_here(ctx: &Ctx, id: u64, deadline: Deadline) -> Result<MemberPromoteResponse, EtcdError> {
    // The learner may have been added through a follower that applied the
    // change before this leader did.
    ctx.node.read_barrier(deadline).await?;
    ctx.node.members.check_promote(id)?;
    let member = ctx.node.members.get(id).ok_or(EtcdError::MemberNotFound)?;
    let cc = conf_change(ConfChangeType::AddNode, id);
    let members = members_of(ctx.node.propose_conf_change(cc, member, ConfCheck::Promote, deadline).await?)?;
    Ok(MemberPromoteResponse { header: ctx.header_without_revision(), members: members.iter().map(to_pb).collect() })
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        learner_guard(&self.ctx)?;
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        // Like etcd, the start time goes into the ID, so a member removed
        // and added again with the same URLs gets a new ID.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let id = crate::ids::member_id_at(&r.peer_ur_ls, &self.ctx.cfg.initial_cluster_token, now);
        let member = MemberRecord {
            id,
            name: String::new(),
            peer_urls: r.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            is_learner: r.is_learner,
        };
        self.ctx.node.members.check_add(&member)?;
        let kind = if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        let applied = self
            .ctx
            .node
            .propose_conf_change(conf_change(kind, id), member.clone(), reconfig_check(&self.ctx), deadline)
            .await?;
        let members = members_of(applied)?;
        Ok(Response::new(MemberAddResponse {
            header: self.ctx.header_without_revision(),
            member: Some(to_pb(&member)),
            members: members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        learner_guard(&self.ctx)?;
        self.ctx.node.members.check_remove(r.id)?;
        let member = self.ctx.node.members.get(r.id).unwrap_or_default();
        let cc = conf_change(ConfChangeType::RemoveNode, r.id);
        let members =
            members_of(self.ctx.node.propose_conf_change(cc, member, reconfig_check(&self.ctx), deadline).await?)?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.ctx.header_without_revision(),
            members: members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        learner_guard(&self.ctx)?;
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        if self.ctx.node.members.get(r.id).is_none() {
            return Err(EtcdError::MemberNotFound.into());
        }
        let members = members_of(self.ctx.node.propose(Internal::MemberUpdate(r), deadline).await?)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.ctx.header_without_revision(),
            members: members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_list(&self, _r: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let members = self.ctx.node.members.list();
        Ok(Response::new(MemberListResponse {
            header: self.ctx.header_without_revision(),
            members: members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let deadline = Deadline::from_request(&request, self.ctx.request_timeout());
        let r = request.into_inner();
        if self.ctx.node.state.leader() == self.ctx.cfg.member_id {
            return Ok(Response::new(promote_here(&self.ctx, r.id, deadline).await?));
        }
        // Only the leader knows whether the learner caught up: forward.
        let leader = &self.ctx.leader;
        let mut resp = leader.call(&self.ctx.node, deadline, |mut c| async move { c.member_promote(r).await }).await?;
        resp.header = self.ctx.header_without_revision();
        Ok(Response::new(resp))
    }
}
