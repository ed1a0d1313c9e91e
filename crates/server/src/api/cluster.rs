//! etcd's Cluster service: member list, add (voter or learner), remove,
//! update and promote. Membership changes are raft conf changes, validated
//! at apply so every member agrees; promotion runs on the leader, which
//! alone knows whether the learner has caught up.
//!
//! With etcd's strict reconfiguration check (on unless turned off), adds and
//! removes run on the leader too: the check asks which voters have been
//! connected for a while, and only the leader knows (a follower hears from
//! the leader alone, while an etcd member sees every peer's connection and
//! can check wherever the request arrives). So a follower forwards them to
//! the leader's peer service and relays its answer, etcd's error included:
//! a change refused through the leader is refused through any member. When
//! leadership moves meanwhile ("not leader"), the request goes to the new
//! leader, until the request's deadline.
//!
//! Example: 3 voters, one down. `member remove <live follower>` sent to the
//! other follower is forwarded; the leader counts 2 connected voters, 1
//! after the removal, below the quorum of 2 in the remaining 2, and answers
//! "etcdserver: unhealthy cluster", which the follower returns.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::pb::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use api::pb::metastorepb::{internal_request::Request as Internal, peer_client::PeerClient, MemberRecord};
use api::EtcdError;
use raft::eraftpb::{ConfChange, ConfChangeType};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::call::Call;
use super::Ctx;
use crate::apply::members::to_pb;
use crate::apply::ApplyResponse;
use crate::deadline::Deadline;
use crate::node::ConfCheck;

/// How often a reconfiguration waiting for a leader, or for a new one after
/// leadership moved, looks again.
const LEADER_POLL: Duration = Duration::from_millis(50);

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
        _ => Err(crate::errors::unexpected_response("a membership change")),
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

/// etcd's `--strict-reconfig-check`: on unless turned off.
fn reconfig_check(ctx: &Ctx) -> ConfCheck {
    if ctx.cfg.strict_reconfig_check {
        ConfCheck::Strict
    } else {
        ConfCheck::Unchecked
    }
}

/// Where a member add or remove runs.
enum Route {
    Here,
    Leader(PeerClient<Channel>),
}

/// Here when the strict check is off (any member may propose) or this
/// member leads; else on the leader, waiting (within the deadline) for one.
async fn route(ctx: &Ctx, deadline: Deadline) -> Result<Route, EtcdError> {
    if reconfig_check(ctx) == ConfCheck::Unchecked {
        return Ok(Route::Here);
    }
    let leader = deadline
        .run(async {
            loop {
                match ctx.node.state.leader() {
                    0 => tokio::time::sleep(LEADER_POLL).await,
                    id => return id,
                }
            }
        })
        .await
        .map_err(|_| EtcdError::NoLeader)?;
    if leader == ctx.cfg.member_id {
        return Ok(Route::Here);
    }
    Ok(Route::Leader(ctx.leader.client(&ctx.node).await?))
}

/// Runs a member add or remove where the strict check can be made (see the
/// module docs): `here` on this member, or `forward` to the leader's peer
/// service, whose status (etcd's error) is returned as it is.
async fn on_leader<Req, Resp, H, HF, F, FF>(
    ctx: &Ctx,
    deadline: Deadline,
    req: Req,
    here: H,
    forward: F,
) -> Result<Resp, Status>
where
    Req: Clone,
    H: Fn(Req) -> HF,
    HF: Future<Output = Result<Resp, EtcdError>>,
    F: Fn(PeerClient<Channel>, Request<Req>) -> FF,
    FF: Future<Output = Result<Response<Resp>, Status>>,
{
    let not_leader = EtcdError::NotLeader.to_string();
    loop {
        let result = match route(ctx, deadline).await? {
            Route::Here => here(req.clone()).await.map_err(Status::from),
            Route::Leader(client) => {
                let mut request = Request::new(req.clone());
                // The leader gives up when this member does.
                request.set_timeout(deadline.at.saturating_duration_since(tokio::time::Instant::now()));
                match deadline.run(forward(client, request)).await? {
                    Ok(resp) => {
                        // The leader answered once it applied the change;
                        // like etcd's member that proposed it, answer once
                        // this member has too, so that what the client does
                        // next here (a member list, an update of the new
                        // member) sees it. Best effort: the change is made
                        // either way, and a member that removed itself
                        // stops instead.
                        let _ = ctx.node.read_barrier(deadline).await;
                        Ok(resp.into_inner())
                    }
                    Err(status) => {
                        // Reconnect next time, in case the link is the problem.
                        ctx.leader.reset();
                        Err(status)
                    }
                }
            }
        };
        match result {
            // Refused before anything was proposed: leadership moved, so
            // the request goes to the new leader.
            Err(s) if s.message() == not_leader && tokio::time::Instant::now() + LEADER_POLL < deadline.at => {
                tokio::time::sleep(LEADER_POLL).await;
            }
            other => return other,
        }
    }
}

/// With the strict check on, a member add or remove runs on the leader.
fn leader_guard(ctx: &Ctx) -> Result<(), EtcdError> {
    if reconfig_check(ctx) == ConfCheck::Strict && ctx.node.state.leader() != ctx.cfg.member_id {
        return Err(EtcdError::NotLeader);
    }
    Ok(())
}

/// MemberAdd on this member: the leader when the strict check is on. The
/// peer URLs were validated where the request arrived.
pub async fn add_here(ctx: &Ctx, r: MemberAddRequest, deadline: Deadline) -> Result<MemberAddResponse, EtcdError> {
    leader_guard(ctx)?;
    // Like etcd, the start time goes into the ID, so a member removed
    // and added again with the same URLs gets a new ID.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let id = crate::ids::member_id_at(&r.peer_ur_ls, &ctx.cfg.initial_cluster_token, now);
    let member = MemberRecord {
        id,
        name: String::new(),
        peer_urls: r.peer_ur_ls,
        client_urls: Vec::new(),
        is_learner: r.is_learner,
    };
    ctx.node.members.check_add(&member)?;
    let kind = if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
    let applied =
        ctx.node.propose_conf_change(conf_change(kind, id), member.clone(), reconfig_check(ctx), deadline).await?;
    let members = members_of(applied)?;
    Ok(MemberAddResponse {
        header: ctx.header_without_revision(),
        member: Some(to_pb(&member)),
        members: members.iter().map(to_pb).collect(),
    })
}

/// MemberRemove on this member: the leader when the strict check is on.
pub async fn remove_here(
    ctx: &Ctx,
    r: MemberRemoveRequest,
    deadline: Deadline,
) -> Result<MemberRemoveResponse, EtcdError> {
    leader_guard(ctx)?;
    ctx.node.members.check_remove(r.id)?;
    let member = ctx.node.members.get(r.id).unwrap_or_default();
    let cc = conf_change(ConfChangeType::RemoveNode, r.id);
    let members = members_of(ctx.node.propose_conf_change(cc, member, reconfig_check(ctx), deadline).await?)?;
    Ok(MemberRemoveResponse { header: ctx.header_without_revision(), members: members.iter().map(to_pb).collect() })
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
    crate::metrics::get().server.learner_promote_successes.inc();
    Ok(MemberPromoteResponse { header: ctx.header_without_revision(), members: members.iter().map(to_pb).collect() })
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let call = Call::of(&request)?;
        let deadline = call.deadline;
        let r = request.into_inner();
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        call.admin(&self.ctx).await?;
        let ctx = &self.ctx;
        let mut resp = on_leader(
            ctx,
            deadline,
            r,
            |r| add_here(ctx, r, deadline),
            |mut c, r| async move { c.member_add(r).await },
        )
        .await?;
        resp.header = ctx.header_without_revision();
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let deadline = Call::of(&request)?.deadline;
        let r = request.into_inner();
        let ctx = &self.ctx;
        let mut resp = on_leader(
            ctx,
            deadline,
            r,
            |r| remove_here(ctx, r, deadline),
            |mut c, r| async move { c.member_remove(r).await },
        )
        .await?;
        resp.header = ctx.header_without_revision();
        Ok(Response::new(resp))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        if self.ctx.node.members.get(r.id).is_none() {
            return Err(EtcdError::MemberNotFound.into());
        }
        let sender = call.sender(&self.ctx).await?;
        let members = members_of(self.ctx.node.propose_as(Internal::MemberUpdate(r), &sender, call.deadline).await?)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.ctx.header_without_revision(),
            members: members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_list(&self, r: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Call::of(&r)?;
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
        let deadline = Call::of(&request)?.deadline;
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
