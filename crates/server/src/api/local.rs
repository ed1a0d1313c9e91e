//! An in-process client of this member's KV and Lease services, for the
//! Lock and Election services. etcd builds those two on its own client
//! library talking to the server it runs in; this does the same without the
//! network: every call goes through the same service code (validation,
//! quota, raft, ReadIndex) as a client's would.
//!
//! Permissions: a call runs as the client that made the Lock or Election
//! call (its token goes with every request), as etcd's embedded client
//! hands the caller's context on; so a lock on keys the caller may not
//! write fails as its own put would.
//!
//! Errors: etcd's embedded client hands the services errors that gRPC then
//! sends as code Unknown with the original message ("etcdserver: requested
//! lease not found" arrives as Unknown, not NotFound); [`Local`] answers its
//! callers the same way. Deadline and cancellation keep their codes.
//!
//! Waiting: [`Local::wait_gone`] watches this member's applied revision and
//! looks at the key again after each change, so it uses no watcher and ends
//! as soon as the key's deletion is applied here.

use api::pb::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_server::Kv,
    lease_server::Lease,
    range_request::{SortOrder, SortTarget},
    request_op, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use api::pb::mvccpb::KeyValue;
use tonic::{Code, Request, Status};

use super::call::Call;
use super::kv::KvService;
use super::lease::LeaseService;
use super::Ctx;

/// The TTL of a lease granted for a lock or campaign that named none
/// (etcd's default session TTL).
pub const SESSION_TTL: i64 = 60;

/// etcd's embedded-client errors reach the client as Unknown.
pub fn as_embedded(s: Status) -> Status {
    match s.code() {
        Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => s,
        _ => Status::unknown(s.message().to_string()),
    }
}

pub struct Local {
    ctx: Ctx,
    kv: KvService,
    lease: LeaseService,
    /// The caller's call: each request made for it is admitted as the
    /// caller's own would be.
    call: Call,
}

impl Local {
    /// A client acting as the sender of `request`.
    pub fn as_caller<T>(ctx: Ctx, request: &Request<T>) -> Result<Self, Status> {
        Ok(Local::new(ctx, Call::of(request)?))
    }

    pub fn new(ctx: Ctx, call: Call) -> Self {
        Local { kv: KvService::new(ctx.clone()), lease: LeaseService::new(ctx.clone()), ctx, call }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// A request for `method`, admitted on the caller's behalf.
    async fn req<T>(&self, method: &str, msg: T) -> Result<Request<T>, Status> {
        let call = self.call.on_behalf(&self.ctx, method).await.map_err(as_embedded)?;
        let mut r = Request::new(msg);
        r.extensions_mut().insert(call);
        Ok(r)
    }

    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, Status> {
        let r = self.req("/etcdserverpb.KV/Txn", r).await?;
        self.kv.txn(r).await.map(|r| r.into_inner()).map_err(as_embedded)
    }

    /// A linearizable read.
    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse, Status> {
        let r = self.req("/etcdserverpb.KV/Range", r).await?;
        self.kv.range(r).await.map(|r| r.into_inner()).map_err(as_embedded)
    }

    pub async fn delete(&self, key: Vec<u8>) -> Result<DeleteRangeResponse, Status> {
        let r = self.req("/etcdserverpb.KV/DeleteRange", DeleteRangeRequest { key, ..Default::default() }).await?;
        self.kv.delete_range(r).await.map(|r| r.into_inner()).map_err(as_embedded)
    }

    /// Whether the caller may read `[key, end)` now, as etcd's embedded
    /// client's watch would be allowed to (`isWatchPermitted`).
    pub async fn may_read(&self, key: &[u8], end: &[u8]) -> bool {
        self.call.credential().check_read(&self.ctx, key, end).await.is_ok()
    }

    /// The lease a lock or campaign holds its key with: the one it named,
    /// or (0) a new one of [`SESSION_TTL`] seconds, as etcd's sessions.
    pub async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let r = self.req("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest { ttl: SESSION_TTL, id: 0 }).await?;
        self.lease.lease_grant(r).await.map(|r| r.into_inner().id).map_err(as_embedded)
    }

    /// Returns once `key`, created at `create_revision`, is gone on this
    /// member (deleted, or deleted and created again).
    pub async fn wait_gone(&self, key: &[u8], create_revision: i64) -> Result<(), Status> {
        let mut revision = self.ctx.node.revision.clone();
        loop {
            revision.borrow_and_update();
            let r = RangeRequest { key: key.to_vec(), serializable: true, ..Default::default() };
            let r = self.req("/etcdserverpb.KV/Range", r).await?;
            let now = self.kv.range(r).await.map_err(as_embedded)?.into_inner();
            if now.kvs.first().is_none_or(|kv| kv.create_revision != create_revision) {
                return Ok(());
            }
            revision.changed().await.map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
        }
    }

    /// Waits until no key under `prefix` created at or before
    /// `max_create_revision` is left (etcd's `waitDeletes`): the lock or
    /// campaign created after them is then first in line.
    pub async fn wait_deletes(&self, prefix: &[u8], max_create_revision: i64) -> Result<RangeResponse, Status> {
        loop {
            let mut r = last_created(prefix);
            r.max_create_revision = max_create_revision;
            let resp = self.range(r).await?;
            let Some(kv) = resp.kvs.first() else {
                return Ok(resp);
            };
            self.wait_gone(&kv.key, kv.create_revision).await?;
        }
    }
}

/// Runs `fut` within the client's own deadline, if it set one.
pub async fn within_client_deadline<T>(
    call: &Call,
    fut: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match call.client_timeout() {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(api::EtcdError::DeadlineExceeded.into()),
        },
        None => fut.await,
    }
}

/// Removes a key put to wait in line unless [`Cleanup::disarm`]ed first:
/// when the call fails, hits its deadline, or its future is dropped
/// because the client went away. Deletes the key only while it is still
/// the one created at `rev`.
pub struct Cleanup {
    ctx: Option<Ctx>,
    /// The caller's call: the key is removed as the caller put it.
    call: Call,
    key: Vec<u8>,
    rev: i64,
}

impl Cleanup {
    pub fn new(local: &Local, key: &[u8], rev: i64) -> Self {
        // The removal runs after the client is gone or its deadline
        // passed: it gets the server's timeout, not the client's.
        Cleanup { ctx: Some(local.ctx().clone()), call: local.call.detached(), key: key.to_vec(), rev }
    }

    pub fn disarm(&mut self) {
        self.ctx = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (Some(ctx), Ok(rt)) = (self.ctx.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (key, rev, call) = (std::mem::take(&mut self.key), self.rev, self.call.clone());
        rt.spawn(async move {
            let txn = TxnRequest { compare: vec![created_at(&key, rev)], success: vec![delete_op(&key)], failure: vec![] };
            if let Err(e) = Local::new(ctx, call).txn(txn).await {
                tracing::warn!(error = %e, key = %String::from_utf8_lossy(&key), "removing an abandoned lock or campaign key failed; its lease will");
            }
        });
    }
}

/// The end of the range of every key starting with `prefix`, as etcd's
/// `WithPrefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key from the prefix on.
    vec![0]
}

fn top(prefix: &[u8], order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The oldest key under `prefix` (etcd's `WithFirstCreate`).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    top(prefix, SortOrder::Ascend)
}

/// The newest key under `prefix` (etcd's `WithLastCreate`).
pub fn last_created(prefix: &[u8]) -> RangeRequest {
    top(prefix, SortOrder::Descend)
}

/// `create_revision(key) == rev`.
pub fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub fn put_op(key: &[u8], value: Vec<u8>, lease: i64) -> RequestOp {
    let put = PutRequest { key: key.to_vec(), value, lease, ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

pub fn get_op(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(r)) }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    let del = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(del)) }
}

/// The kvs of the `i`th response of a txn, when it was a range.
pub fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    use api::pb::etcdserverpb::response_op::Response;
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// The key of a session's entry under `prefix`: the prefix and the lease
/// ID in hex, as Go's `%x` prints an int64.
pub fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_as_etcd() {
        assert_eq!(prefix_end(b"mtx/"), b"mtx0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn session_keys_print_the_lease_as_go_does() {
        assert_eq!(session_key(b"el/", 0x1a), b"el/1a");
        assert_eq!(session_key(b"el/", -26), b"el/-1a");
        assert_eq!(session_key(b"", 7587888367727935242), b"694d9844a1bdff0a");
    }

    #[test]
    fn embedded_errors_arrive_as_unknown() {
        let s = as_embedded(Status::not_found("etcdserver: requested lease not found"));
        assert_eq!((s.code(), s.message()), (Code::Unknown, "etcdserver: requested lease not found"));
        assert_eq!(as_embedded(Status::deadline_exceeded("x")).code(), Code::DeadlineExceeded);
    }
}
