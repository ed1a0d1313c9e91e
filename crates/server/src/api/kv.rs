//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Permissions (auth on): writes carry their sender into the raft entry and
//! are checked at apply (`apply::auth::check`); reads (Range, read-only
//! Txn, serializable or not) are checked here after the read barrier, and
//! an answer read while the auth store moved on is refused (etcd's
//! `doSerialize`); Compact needs the root role, checked here as etcd's
//! kvServer does. With auth off each check is one atomic load.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use api::pb::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::{validate, EtcdError};
use axum::http;
use tonic::{Request, Response, Status};

use super::auth_token::still_current;
use super::call::Call;
use super::range_reply::{self, RangeCodec, RangeReply};
use super::Ctx;
use crate::apply::auth::check;
use crate::apply::range::{execute_range, PinnedView};
use crate::apply::txn;
use crate::apply::ApplyResponse;
use crate::deadline::Deadline;

/// How long a `physical` compaction waits for the deletion without a client
/// deadline: etcd waits as long as it takes (one batch of 1,000 revisions
/// per 10 ms and more: 2 M revisions take over 20 s, beyond the request
/// timeout), this keeps that wait bounded too.
const PHYSICAL_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(600);

pub struct KvService {
    ctx: Ctx,
}

impl KvService {
    pub fn new(ctx: Ctx) -> Self {
        KvService { ctx }
    }

    /// Proposes a client's write with its sender, for apply to check.
    async fn propose(&self, req: Internal, call: &Call) -> Result<ApplyResponse, Status> {
        let sender = call.sender(&self.ctx).await?;
        Ok(self.ctx.node.propose_as(req, &sender, call.deadline).await?)
    }
}

impl KvService {
    /// Range's checks around the read `read` makes: the request's limits,
    /// the read barrier, the permission, and the auth store not having moved
    /// during the read.
    async fn range_with<T: WithHeader>(
        &self,
        request: Request<RangeRequest>,
        read: impl FnOnce(&PinnedView<'_>, &RangeRequest) -> Result<T, EtcdError>,
    ) -> Result<T, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            call.linearizable(&self.ctx).await?;
        }
        let info = call.sender(&self.ctx).await?;
        check::check_range(&self.ctx.node.auth, &info, &r.key, &r.range_end)?;
        let mut reply = read(&PinnedView::new(&self.ctx.node.mvcc), &r)?;
        still_current(&self.ctx, &info)?;
        reply.fill_header(&self.ctx);
        Ok(reply)
    }
}

/// A reply whose header the API completes after the read.
trait WithHeader {
    fn fill_header(&mut self, ctx: &Ctx);
}

impl WithHeader for RangeResponse {
    fn fill_header(&mut self, ctx: &Ctx) {
        self.header = ctx.header(self.header.take());
    }
}

impl WithHeader for RangeReply {
    fn fill_header(&mut self, ctx: &Ctx) {
        let header = self.header_mut();
        *header = ctx.header(header.take());
    }
}

/// The gRPC path of etcd's Range.
pub const RANGE_PATH: &str = "/etcdserverpb.KV/Range";

/// Serves [`RANGE_PATH`] ahead of the generated KV service, with
/// [`RangeCodec`]: a large range is encoded as it is read (see
/// `range_reply`). Same checks, same answer, as [`Kv::range`].
#[derive(Clone)]
pub struct RangeRoute {
    kv: Arc<KvService>,
    max_recv: usize,
}

impl RangeRoute {
    pub fn new(kv: Arc<KvService>, max_recv: usize) -> Self {
        RangeRoute { kv, max_recv }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<axum::body::Body>> for RangeRoute {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let method = RangeMethod(self.kv.clone());
        let mut grpc = tonic::server::Grpc::new(RangeCodec).apply_max_message_size_config(Some(self.max_recv), None);
        Box::pin(async move { Ok(grpc.unary(method, req).await) })
    }
}

struct RangeMethod(Arc<KvService>);

impl tonic::server::UnaryService<RangeRequest> for RangeMethod {
    type Response = RangeReply;
    type Future = BoxFuture<Result<Response<RangeReply>, Status>>;

    fn call(&mut self, request: Request<RangeRequest>) -> Self::Future {
        let kv = self.0.clone();
        Box::pin(async move { kv.range_with(request, range_reply::execute).await.map(Response::new) })
    }
}

fn unexpected(what: &'static str) -> Status {
    crate::errors::unexpected_response(what).into()
}

#[tonic::async_trait]
impl Kv for KvService {
    /// Reached by the in-process client (`local`); gRPC clients get
    /// [`RangeRoute`].
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let built = self.range_with(request, |view, r| execute_range(view, r)).await?;
        Ok(Response::new(built))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        validate::check_put(&r)?;
        self.ctx.check_quota(crate::apply::alarms::put_cost(&r), call.deadline).await?;
        match self.propose(Internal::Put(r), &call).await? {
            ApplyResponse::Put(mut resp) => {
                resp.header = self.ctx.header(resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        validate::check_delete(&r)?;
        match self.propose(Internal::DeleteRange(r), &call).await? {
            ApplyResponse::DeleteRange(mut resp) => {
                resp.header = self.ctx.header(resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("delete range")),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let call = Call::of(&request)?;
        let r = request.into_inner();
        validate::check_txn_full(&r, self.ctx.cfg.max_txn_ops)?;
        let mut resp = if txn::is_txn_readonly(&r) {
            if !txn::is_txn_serializable(&r) {
                call.linearizable(&self.ctx).await?;
            }
            let info = call.sender(&self.ctx).await?;
            let leases = |id| self.ctx.node.lessor.keys_of(id);
            check::check_txn(&self.ctx.node.auth, &leases, &info, &r)?;
            let resp = txn::execute_readonly_txn(&PinnedView::new(&self.ctx.node.mvcc), &r)?;
            still_current(&self.ctx, &info)?;
            resp
        } else {
            let cost = crate::apply::alarms::txn_cost(&r);
            if cost > 0 {
                self.ctx.check_quota(cost, call.deadline).await?;
            }
            match self.propose(Internal::Txn(r), &call).await? {
                ApplyResponse::Txn(resp) => resp,
                _ => return Err(unexpected("txn")),
            }
        };
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let call = Call::of(&request)?;
        let physical_deadline = Deadline::new(PHYSICAL_WAIT_MAX, call.client_timeout());
        let r = request.into_inner();
        let (rev, physical) = (r.revision, r.physical);
        match self.propose(Internal::Compaction(r), &call).await? {
            ApplyResponse::Compaction(mut resp) => {
                if physical {
                    // Applied here already; the deletion runs in the
                    // background (etcd waits on `physc` the same way).
                    crate::maintenance::auto_compaction::wait_physical(&self.ctx.node.mvcc, rev, physical_deadline)
                        .await?;
                }
                resp.header = self.ctx.header(resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("compaction")),
        }
    }
}
