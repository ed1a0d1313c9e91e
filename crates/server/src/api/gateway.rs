//! etcd's gRPC-JSON gateway on the client port: `POST /v3/kv/put` and the
//! rest (also under `/v3beta/`, as etcd 3.4), JSON in and out as etcd's
//! grpc-gateway writes it (proto field names, 64-bit integers as strings,
//! bytes as base64, zero values left out; api's pbjson code).
//!
//! Each route calls the same service code as gRPC. Errors answer
//! `{"error", "message", "code"}` with grpc-gateway's HTTP status for the
//! code. Streams (watch, lease keep-alive, election observe, snapshot)
//! answer one `{"result": ...}` line per message. A bidirectional stream
//! takes every request in the body, and the request stream ends there, as
//! grpc-gateway closes its send side at the end of the body; each service
//! then does what it does at that point over gRPC: a watch stream stays
//! open until the client goes away, a keep-alive stream answers each
//! request and ends (Patroni and etcd3gw read that body to its end).

use std::future::Future;
use std::sync::Arc;

use api::pb::etcdserverpb::{
    auth_server::Auth, cluster_server::Cluster, kv_server::Kv, lease_server::Lease, maintenance_server::Maintenance,
    LeaseKeepAliveRequest, WatchRequest,
};
use api::pb::v3electionpb::election_server::Election;
use api::pb::v3lockpb::lock_server::Lock;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

use crate::api::call::{admit, Credential, Via};
use crate::api::{
    auth::AuthService, cluster::ClusterService, election::ElectionService, kv::KvService, lease::LeaseService,
    lock::LockService, maintenance::MaintenanceService, Ctx,
};

/// grpc-gateway's HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// grpc-gateway's error body, its fields in its order.
fn error(s: &Status) -> Response {
    let m = json_string(s.message());
    let body = format!(r#"{{"error":{m},"message":{m},"code":{}}}"#, s.code() as i32);
    json_response(http_status(s.code()), body.into_bytes())
}

/// The requests in a body: JSON objects one after another (none in an
/// empty body: grpc-gateway sends a stream nothing then).
fn requests<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, Status> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A gRPC request for `method`, admitted by the request layer with the
/// HTTP request's headers: its `Grpc-Timeout` and its Authorization
/// header (the token), as grpc-gateway hands them on as metadata.
async fn grpc_request<T>(ctx: &Ctx, method: &str, headers: &HeaderMap, msg: T) -> Result<tonic::Request<T>, Status> {
    let call = admit(ctx, method, headers, None, Via::Gateway).await?;
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(call);
    Ok(r)
}

/// The first request in a body (a unary call takes one; an empty body is
/// one with every field at its default).
fn first_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    Ok(requests::<T>(body)?.into_iter().next().unwrap_or_default())
}

async fn unary<Req, Resp, F, Fut>(ctx: &Ctx, method: &str, headers: HeaderMap, body: Bytes, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req = match first_request::<Req>(&body) {
        Ok(req) => req,
        Err(s) => return error(&s),
    };
    let req = match grpc_request(ctx, method, &headers, req).await {
        Ok(req) => req,
        Err(s) => return error(&s),
    };
    match call(req).await {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => error(&Status::internal(e.to_string())),
        },
        Err(s) => error(&s),
    }
}

/// One line of a streamed answer: `{"result": ...}` or grpc-gateway's
/// stream error.
fn stream_line<T: Serialize>(item: Result<T, Status>) -> Bytes {
    let error = |code: Code, message: &str| {
        let http = http_status(code);
        format!(
            r#"{{"error":{{"grpc_code":{},"http_code":{},"message":{},"http_status":{}}}}}"#,
            code as i32,
            http.as_u16(),
            json_string(message),
            json_string(http.canonical_reason().unwrap_or("")),
        )
    };
    let mut line = match item {
        Ok(msg) => match serde_json::to_string(&msg) {
            Ok(v) => format!(r#"{{"result":{v}}}"#),
            Err(e) => error(Code::Internal, &e.to_string()),
        },
        Err(s) => error(s.code(), s.message()),
    };
    line.push('\n');
    Bytes::from(line)
}

fn streamed<T, S>(answers: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + 'static,
{
    let body = Body::from_stream(answers.map(|item| Ok::<_, std::io::Error>(stream_line(item))));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default()
}

/// A unary route: `$svc.$method`, admitted as the gRPC `$path`.
macro_rules! unary {
    ($ctx:expr, $svc:expr, $method:ident, $path:literal) => {{
        let (svc, ctx) = ($svc.clone(), $ctx.clone());
        post(move |headers: HeaderMap, body: Bytes| {
            let (svc, ctx) = (svc.clone(), ctx.clone());
            async move { unary(&ctx, $path, headers, body, |req| async move { svc.$method(req).await }).await }
        })
    }};
}

macro_rules! server_stream {
    ($ctx:expr, $svc:expr, $method:ident, $path:literal) => {{
        let (svc, ctx) = ($svc.clone(), $ctx.clone());
        post(move |headers: HeaderMap, body: Bytes| {
            let (svc, ctx) = (svc.clone(), ctx.clone());
            async move {
                let req = match first_request(&body) {
                    Ok(req) => req,
                    Err(s) => return error(&s),
                };
                let req = match grpc_request(&ctx, $path, &headers, req).await {
                    Ok(req) => req,
                    Err(s) => return error(&s),
                };
                match svc.$method(req).await {
                    Ok(stream) => streamed(stream.into_inner()),
                    Err(s) => error(&s),
                }
            }
        })
    }};
}

/// A bidirectional stream over HTTP, admitted as the gRPC `method`: every
/// request in the body, answers streamed back until the service's task
/// drops the sender. `serve` starts the stream's task with its requests,
/// the credential of the Authorization header, and the answers' sender.
fn bidi<Req, Resp, F>(ctx: &Ctx, method: &'static str, serve: F, queue: usize) -> MethodRouter
where
    Req: DeserializeOwned + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Vec<Req>, Credential, mpsc::Sender<Result<Resp, Status>>) + Clone + Send + Sync + 'static,
{
    let ctx = ctx.clone();
    post(move |headers: HeaderMap, body: Bytes| {
        let (serve, ctx) = (serve.clone(), ctx.clone());
        async move {
            let reqs = match requests::<Req>(&body) {
                Ok(r) => r,
                Err(s) => return error(&s),
            };
            let call = match admit(&ctx, method, &headers, None, Via::Gateway).await {
                Ok(call) => call,
                Err(s) => return error(&s),
            };
            let (tx, rx) = mpsc::channel(queue);
            serve(reqs, call.credential().clone(), tx);
            streamed(ReceiverStream::new(rx))
        }
    })
}

pub fn router(ctx: Ctx) -> Router {
    let kv = Arc::new(KvService::new(ctx.clone()));
    let lease = Arc::new(LeaseService::new(ctx.clone()));
    let cluster = Arc::new(ClusterService::new(ctx.clone()));
    let maintenance = Arc::new(MaintenanceService::new(ctx.clone()));
    let lock = Arc::new(LockService::new(ctx.clone()));
    let election = Arc::new(ElectionService::new(ctx.clone()));
    let auth = Arc::new(AuthService::new(ctx.clone()));
    let watch = {
        let ctx = ctx.clone();
        move |reqs: Vec<WatchRequest>, credential, tx| {
            crate::api::watch::serve_stream(ctx.clone(), credential, tokio_stream::iter(reqs.into_iter().map(Ok)), tx)
        }
    };
    let keep_alive = {
        let ctx = ctx.clone();
        move |reqs: Vec<LeaseKeepAliveRequest>, credential, tx| {
            crate::api::lease::serve_keep_alive(
                ctx.clone(),
                credential,
                tokio_stream::iter(reqs.into_iter().map(Ok)),
                tx,
            )
        }
    };
    // JSON carries bytes as base64 (4/3 of their size): room for the
    // largest request gRPC takes, with some to spare.
    let body_limit = (ctx.cfg.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES) * 2;
    let mut router = Router::new();
    for v in ["/v3", "/v3beta"] {
        router = router
            .route(&format!("{v}/kv/range"), unary!(ctx, kv, range, "/etcdserverpb.KV/Range"))
            .route(&format!("{v}/kv/put"), unary!(ctx, kv, put, "/etcdserverpb.KV/Put"))
            .route(&format!("{v}/kv/deleterange"), unary!(ctx, kv, delete_range, "/etcdserverpb.KV/DeleteRange"))
            .route(&format!("{v}/kv/txn"), unary!(ctx, kv, txn, "/etcdserverpb.KV/Txn"))
            .route(&format!("{v}/kv/compaction"), unary!(ctx, kv, compact, "/etcdserverpb.KV/Compact"))
            .route(
                &format!("{v}/watch"),
                bidi(&ctx, "/etcdserverpb.Watch/Watch", watch.clone(), crate::api::watch::OUT_QUEUE),
            )
            .route(&format!("{v}/lease/grant"), unary!(ctx, lease, lease_grant, "/etcdserverpb.Lease/LeaseGrant"))
            .route(&format!("{v}/lease/revoke"), unary!(ctx, lease, lease_revoke, "/etcdserverpb.Lease/LeaseRevoke"))
            .route(&format!("{v}/kv/lease/revoke"), unary!(ctx, lease, lease_revoke, "/etcdserverpb.Lease/LeaseRevoke"))
            .route(
                &format!("{v}/lease/keepalive"),
                bidi(
                    &ctx,
                    "/etcdserverpb.Lease/LeaseKeepAlive",
                    keep_alive.clone(),
                    crate::api::lease::KEEPALIVE_QUEUE,
                ),
            )
            .route(
                &format!("{v}/lease/timetolive"),
                unary!(ctx, lease, lease_time_to_live, "/etcdserverpb.Lease/LeaseTimeToLive"),
            )
            .route(
                &format!("{v}/kv/lease/timetolive"),
                unary!(ctx, lease, lease_time_to_live, "/etcdserverpb.Lease/LeaseTimeToLive"),
            )
            .route(&format!("{v}/lease/leases"), unary!(ctx, lease, lease_leases, "/etcdserverpb.Lease/LeaseLeases"))
            .route(&format!("{v}/kv/lease/leases"), unary!(ctx, lease, lease_leases, "/etcdserverpb.Lease/LeaseLeases"))
            .route(
                &format!("{v}/cluster/member/add"),
                unary!(ctx, cluster, member_add, "/etcdserverpb.Cluster/MemberAdd"),
            )
            .route(
                &format!("{v}/cluster/member/remove"),
                unary!(ctx, cluster, member_remove, "/etcdserverpb.Cluster/MemberRemove"),
            )
            .route(
                &format!("{v}/cluster/member/update"),
                unary!(ctx, cluster, member_update, "/etcdserverpb.Cluster/MemberUpdate"),
            )
            .route(
                &format!("{v}/cluster/member/list"),
                unary!(ctx, cluster, member_list, "/etcdserverpb.Cluster/MemberList"),
            )
            .route(
                &format!("{v}/cluster/member/promote"),
                unary!(ctx, cluster, member_promote, "/etcdserverpb.Cluster/MemberPromote"),
            )
            .route(
                &format!("{v}/maintenance/alarm"),
                unary!(ctx, maintenance, alarm, "/etcdserverpb.Maintenance/Alarm"),
            )
            .route(
                &format!("{v}/maintenance/status"),
                unary!(ctx, maintenance, status, "/etcdserverpb.Maintenance/Status"),
            )
            .route(
                &format!("{v}/maintenance/defragment"),
                unary!(ctx, maintenance, defragment, "/etcdserverpb.Maintenance/Defragment"),
            )
            .route(&format!("{v}/maintenance/hash"), unary!(ctx, maintenance, hash, "/etcdserverpb.Maintenance/Hash"))
            .route(
                &format!("{v}/maintenance/snapshot"),
                server_stream!(ctx, maintenance, snapshot, "/etcdserverpb.Maintenance/Snapshot"),
            )
            .route(
                &format!("{v}/maintenance/transfer-leadership"),
                unary!(ctx, maintenance, move_leader, "/etcdserverpb.Maintenance/MoveLeader"),
            )
            .route(&format!("{v}/lock/lock"), unary!(ctx, lock, lock, "/v3lockpb.Lock/Lock"))
            .route(&format!("{v}/lock/unlock"), unary!(ctx, lock, unlock, "/v3lockpb.Lock/Unlock"))
            .route(
                &format!("{v}/election/campaign"),
                unary!(ctx, election, campaign, "/v3electionpb.Election/Campaign"),
            )
            .route(
                &format!("{v}/election/proclaim"),
                unary!(ctx, election, proclaim, "/v3electionpb.Election/Proclaim"),
            )
            .route(&format!("{v}/election/leader"), unary!(ctx, election, leader, "/v3electionpb.Election/Leader"))
            .route(
                &format!("{v}/election/observe"),
                server_stream!(ctx, election, observe, "/v3electionpb.Election/Observe"),
            )
            .route(&format!("{v}/election/resign"), unary!(ctx, election, resign, "/v3electionpb.Election/Resign"))
            .route(&format!("{v}/auth/enable"), unary!(ctx, auth, auth_enable, "/etcdserverpb.Auth/AuthEnable"))
            .route(&format!("{v}/auth/disable"), unary!(ctx, auth, auth_disable, "/etcdserverpb.Auth/AuthDisable"))
            .route(&format!("{v}/auth/status"), unary!(ctx, auth, auth_status, "/etcdserverpb.Auth/AuthStatus"))
            .route(
                &format!("{v}/auth/authenticate"),
                unary!(ctx, auth, authenticate, "/etcdserverpb.Auth/Authenticate"),
            )
            .route(&format!("{v}/auth/user/add"), unary!(ctx, auth, user_add, "/etcdserverpb.Auth/UserAdd"))
            .route(&format!("{v}/auth/user/get"), unary!(ctx, auth, user_get, "/etcdserverpb.Auth/UserGet"))
            .route(&format!("{v}/auth/user/list"), unary!(ctx, auth, user_list, "/etcdserverpb.Auth/UserList"))
            .route(&format!("{v}/auth/user/delete"), unary!(ctx, auth, user_delete, "/etcdserverpb.Auth/UserDelete"))
            .route(
                &format!("{v}/auth/user/changepw"),
                unary!(ctx, auth, user_change_password, "/etcdserverpb.Auth/UserChangePassword"),
            )
            .route(
                &format!("{v}/auth/user/grant"),
                unary!(ctx, auth, user_grant_role, "/etcdserverpb.Auth/UserGrantRole"),
            )
            .route(
                &format!("{v}/auth/user/revoke"),
                unary!(ctx, auth, user_revoke_role, "/etcdserverpb.Auth/UserRevokeRole"),
            )
            .route(&format!("{v}/auth/role/add"), unary!(ctx, auth, role_add, "/etcdserverpb.Auth/RoleAdd"))
            .route(&format!("{v}/auth/role/get"), unary!(ctx, auth, role_get, "/etcdserverpb.Auth/RoleGet"))
            .route(&format!("{v}/auth/role/list"), unary!(ctx, auth, role_list, "/etcdserverpb.Auth/RoleList"))
            .route(&format!("{v}/auth/role/delete"), unary!(ctx, auth, role_delete, "/etcdserverpb.Auth/RoleDelete"))
            .route(
                &format!("{v}/auth/role/grant"),
                unary!(ctx, auth, role_grant_permission, "/etcdserverpb.Auth/RoleGrantPermission"),
            )
            .route(
                &format!("{v}/auth/role/revoke"),
                unary!(ctx, auth, role_revoke_permission, "/etcdserverpb.Auth/RoleRevokePermission"),
            );
    }
    router.layer(axum::extract::DefaultBodyLimit::max(body_limit))
}
