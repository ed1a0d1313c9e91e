//! etcd's Lease service. Grant and Revoke go through raft; KeepAlive,
//! TimeToLive and Leases answer from the lessor on this member.
//!
//! Permissions (auth on), as etcd 3.5: every call needs a user; Revoke
//! needs WRITE on every key of the lease (checked at apply); a keep-alive
//! the same, checked on each renewal with the token the stream was opened
//! with; TimeToLive with keys and Leases need READ on the keys they show.
//! Root passes all.

use std::pin::Pin;

use api::pb::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::EtcdError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::call::{Call, Credential};
use super::Ctx;
use crate::apply::auth::check;
use crate::apply::ApplyResponse;
use crate::deadline::Deadline;

/// Keep-alive responses buffered per stream; a client that stops reading
/// stops being served (its requests are not read either) instead of growing
/// a queue.
pub const KEEPALIVE_QUEUE: usize = 16;
/// How often a keep-alive waiting for a leader looks again.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(10);

pub struct LeaseService {
    ctx: Ctx,
}

impl LeaseService {
    pub fn new(ctx: Ctx) -> Self {
        LeaseService { ctx }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let call = Call::of(&request)?;
        let mut r = request.into_inner();
        // No ID given: choose a positive one unique to this member, as etcd.
        while r.id == 0 {
            r.id = (self.ctx.node.waiters.next_id() & (i64::MAX as u64)) as i64;
        }
        self.ctx.check_quota(crate::apply::alarms::lease_cost(), call.deadline).await?;
        let sender = call.sender(&self.ctx).await?;
        match self.ctx.node.propose_as(Internal::LeaseGrant(r), &sender, call.deadline).await? {
            ApplyResponse::LeaseGrant(mut resp) => {
                resp.header = self.ctx.header(resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(crate::errors::unexpected_response("lease grant").into()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        let sender = call.sender(&self.ctx).await?;
        match self.ctx.node.propose_as(Internal::LeaseRevoke(r), &sender, call.deadline).await? {
            ApplyResponse::LeaseRevoke(mut resp) => {
                resp.header = self.ctx.header(resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(crate::errors::unexpected_response("lease revoke").into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let call = Call::of(&request)?;
        let rx = keep_alive_stream(self.ctx.clone(), call.credential().clone(), request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let call = Call::of(&request)?;
        let (info, deadline) = (call.sender(&self.ctx).await?, call.deadline);
        let r = request.into_inner();
        // etcd checks the keys only when they are asked for, on the member
        // the client called (every member's lessor knows the keys).
        let rev = self.ctx.node.auth.revision();
        if r.keys {
            let keys = self.ctx.node.lessor.keys_of(r.id).unwrap_or_default();
            check::check_lease_reads(&self.ctx.node.auth, &info, keys.iter().map(Vec::as_slice))?;
        }
        let keys_asked = r.keys;
        let resp = self.time_to_live(r, deadline).await?;
        // etcd's last check: with keys asked for, an auth store that moved
        // meanwhile refuses the answer.
        let auth = &self.ctx.node.auth;
        if keys_asked && auth.is_enabled() && rev != auth.revision() {
            return Err(EtcdError::AuthOldRevision.into());
        }
        Ok(resp)
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let call = Call::of(&request)?;
        let info = call.sender(&self.ctx).await?;
        let lessor = &self.ctx.node.lessor;
        let ids = lessor.ids();
        let auth = &self.ctx.node.auth;
        // Root reads everything: no copy of every leased key for it.
        if auth.is_enabled() && auth.check_admin(Some(&info)).is_err() {
            let rev = auth.revision();
            for id in &ids {
                let keys = lessor.keys_of(*id).unwrap_or_default();
                check::check_lease_reads(auth, &info, keys.iter().map(Vec::as_slice))?;
            }
            if rev != auth.revision() {
                return Err(EtcdError::AuthOldRevision.into());
            }
        }
        let leases = ids.into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.ctx.header(None), leases }))
    }
}

impl LeaseService {
    async fn time_to_live(
        &self,
        r: LeaseTimeToLiveRequest,
        deadline: Deadline,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if self.ctx.node.lessor.is_primary() {
            return Ok(Response::new(time_to_live(&self.ctx, &r, deadline).await?));
        }
        // Only the leader times leases: ask it.
        let leader = &self.ctx.leader;
        let mut resp =
            leader.call(&self.ctx.node, deadline, |mut c| async move { c.lease_time_to_live(r).await }).await?;
        resp.header = self.ctx.header(None);
        Ok(Response::new(resp))
    }
}

/// Serves one keep-alive stream whose requests come from `inbound` (a gRPC
/// stream, or the JSON gateway's). Ends when the client closes or breaks
/// the stream, or stops reading answers: nothing outlives the stream.
pub fn keep_alive_stream<S>(
    ctx: Ctx,
    credential: Credential,
    inbound: S,
) -> mpsc::Receiver<Result<LeaseKeepAliveResponse, Status>>
where
    S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE);
    serve_keep_alive(ctx, credential, inbound, tx);
    rx
}

/// Like [`keep_alive_stream`], answering on `tx`. `credential` is the one
/// the stream was opened with: each renewal is checked with it (etcd's
/// `checkLeaseRenew`), so it keeps working while the token lives.
pub fn serve_keep_alive<S>(
    ctx: Ctx,
    credential: Credential,
    mut inbound: S,
    tx: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) where
    S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(Ok(req)) = inbound.next().await {
            let renewed = match check_renew(&ctx, &credential, req.id).await {
                Ok(()) => renew(&ctx, req.id).await,
                Err(e) => Err(e),
            };
            let ttl = match renewed {
                Ok(ttl) => ttl,
                // etcd answers a keep-alive for an unknown lease with TTL 0.
                Err(EtcdError::LeaseNotFound) => 0,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    break;
                }
            };
            let resp = LeaseKeepAliveResponse { header: ctx.header(None), id: req.id, ttl };
            if tx.send(Ok(resp)).await.is_err() {
                break;
            }
        }
    });
}

/// etcd's `checkLeaseRenew`: a user, with WRITE on every key of the
/// lease (root passes), and the auth store unmoved meanwhile.
async fn check_renew(ctx: &Ctx, credential: &Credential, id: i64) -> Result<(), EtcdError> {
    let auth = &ctx.node.auth;
    if !auth.is_enabled() {
        return Ok(());
    }
    let rev = auth.revision();
    let info = credential.user(ctx, Deadline::new(ctx.request_timeout(), None)).await?;
    check::check_lease_puts(auth, &|id| ctx.node.lessor.keys_of(id), &info, id)?;
    if rev != auth.revision() {
        return Err(EtcdError::AuthOldRevision);
    }
    Ok(())
}

/// LeaseTimeToLive answered from this member's lessor (the leader's), once
/// it has applied everything committed before the call: a follower applies
/// an entry only after the leader committed it, yet may apply it before the
/// leader does, so a client that wrote through a follower would otherwise
/// miss its own write here.
pub async fn time_to_live(
    ctx: &Ctx,
    r: &LeaseTimeToLiveRequest,
    deadline: Deadline,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    ctx.node.read_barrier(deadline).await?;
    Ok(match ctx.node.lessor.time_to_live(r.id, r.keys) {
        Some(info) => LeaseTimeToLiveResponse {
            header: ctx.header(None),
            id: r.id,
            ttl: info.remaining,
            granted_ttl: info.granted,
            keys: info.keys,
        },
        // etcd reports a missing lease as TTL -1, not as an error.
        None => LeaseTimeToLiveResponse { header: ctx.header(None), id: r.id, ttl: -1, ..Default::default() },
    })
}

/// Renews on this member, the leader, once a quorum has confirmed it leads
/// (`NodeHandle::confirm_leadership`): a stalled or deposed leader must not
/// extend a lease the others may be expiring, or two clients would hold
/// the same lock. The confirmation also applies everything committed, so a
/// lease granted through a follower that applied the grant first is known.
pub async fn renew_here(ctx: &Ctx, id: i64, deadline: Deadline) -> Result<i64, EtcdError> {
    ctx.node.confirm_leadership(deadline).await?;
    let ttl = ctx.node.lessor.renew(id)?;
    crate::metrics::get().lease.renewed.inc();
    Ok(ttl)
}

/// Renews on the leader: here when this member leads, else forwarded.
async fn renew(ctx: &Ctx, id: i64) -> Result<i64, EtcdError> {
    // Like etcd, wait (bounded) for a leader rather than fail at once.
    let deadline = Deadline::new(ctx.request_timeout(), None);
    deadline
        .run(async {
            while ctx.node.state.leader() == 0 {
                tokio::time::sleep(LEADER_POLL).await;
            }
        })
        .await
        .map_err(|_| EtcdError::NoLeader)?;
    if ctx.node.lessor.is_primary() {
        return renew_here(ctx, id, deadline).await;
    }
    let req = LeaseKeepAliveRequest { id };
    let resp = ctx.leader.call(&ctx.node, deadline, |mut c| async move { c.lease_renew(req).await }).await?;
    Ok(resp.ttl)
}
