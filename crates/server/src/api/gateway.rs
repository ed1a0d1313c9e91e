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

/// A gRPC request carrying the HTTP request's `Grpc-Timeout`, as
/// grpc-gateway forwards it.
fn grpc_request<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(v) = headers.get("grpc-timeout").and_then(|v| v.to_str().ok()) {
        if let Ok(v) = v.parse() {
            r.metadata_mut().insert("grpc-timeout", v);
        }
    }
    // grpc-gateway hands the Authorization header on as metadata: the
    // token, as etcd's gateway clients send it.
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = v.parse() {
            r.metadata_mut().insert("authorization", v);
        }
    }
    r
}

/// The first request in a body (a unary call takes one; an empty body is
/// one with every field at its default).
fn first_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    Ok(requests::<T>(body)?.into_iter().next().unwrap_or_default())
}

async fn unary<Req, Resp, F, Fut>(headers: HeaderMap, body: Bytes, call: F) -> Response
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
    match call(grpc_request(&headers, req)).await {
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

macro_rules! unary {
    ($svc:expr, $method:ident) => {{
        let svc = $svc.clone();
        post(move |headers: HeaderMap, body: Bytes| {
            let svc = svc.clone();
            async move { unary(headers, body, |req| async move { svc.$method(req).await }).await }
        })
    }};
}

macro_rules! server_stream {
    ($svc:expr, $method:ident) => {{
        let svc = $svc.clone();
        post(move |headers: HeaderMap, body: Bytes| {
            let svc = svc.clone();
            async move {
                let req = match first_request(&body) {
                    Ok(req) => req,
                    Err(s) => return error(&s),
                };
                match svc.$method(grpc_request(&headers, req)).await {
                    Ok(stream) => streamed(stream.into_inner()),
                    Err(s) => error(&s),
                }
            }
        })
    }};
}

/// A bidirectional stream over HTTP: every request in the body, answers
/// streamed back until the service's task drops the sender. `serve` starts
/// the stream's task with its requests, the token of the Authorization
/// header, and the answers' sender.
fn bidi<Req, Resp, F>(serve: F, queue: usize) -> MethodRouter
where
    Req: DeserializeOwned + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Vec<Req>, Option<String>, mpsc::Sender<Result<Resp, Status>>) + Clone + Send + Sync + 'static,
{
    post(move |headers: HeaderMap, body: Bytes| {
        let serve = serve.clone();
        async move {
            let reqs = match requests::<Req>(&body) {
                Ok(r) => r,
                Err(s) => return error(&s),
            };
            let token = crate::api::auth_token::token_of(grpc_request(&headers, ()).metadata());
            let (tx, rx) = mpsc::channel(queue);
            serve(reqs, token, tx);
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
        move |reqs: Vec<WatchRequest>, token, tx| {
            crate::api::watch::serve_stream(ctx.clone(), token, tokio_stream::iter(reqs.into_iter().map(Ok)), tx)
        }
    };
    let keep_alive = {
        let ctx = ctx.clone();
        move |reqs: Vec<LeaseKeepAliveRequest>, token, tx| {
            crate::api::lease::serve_keep_alive(ctx.clone(), token, tokio_stream::iter(reqs.into_iter().map(Ok)), tx)
        }
    };
    // JSON carries bytes as base64 (4/3 of their size): room for the
    // largest request gRPC takes, with some to spare.
    let body_limit = (ctx.cfg.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES) * 2;
    let mut router = Router::new();
    for v in ["/v3", "/v3beta"] {
        router = router
            .route(&format!("{v}/kv/range"), unary!(kv, range))
            .route(&format!("{v}/kv/put"), unary!(kv, put))
            .route(&format!("{v}/kv/deleterange"), unary!(kv, delete_range))
            .route(&format!("{v}/kv/txn"), unary!(kv, txn))
            .route(&format!("{v}/kv/compaction"), unary!(kv, compact))
            .route(&format!("{v}/watch"), bidi(watch.clone(), crate::api::watch::OUT_QUEUE))
            .route(&format!("{v}/lease/grant"), unary!(lease, lease_grant))
            .route(&format!("{v}/lease/revoke"), unary!(lease, lease_revoke))
            .route(&format!("{v}/kv/lease/revoke"), unary!(lease, lease_revoke))
            .route(&format!("{v}/lease/keepalive"), bidi(keep_alive.clone(), crate::api::lease::KEEPALIVE_QUEUE))
            .route(&format!("{v}/lease/timetolive"), unary!(lease, lease_time_to_live))
            .route(&format!("{v}/kv/lease/timetolive"), unary!(lease, lease_time_to_live))
            .route(&format!("{v}/lease/leases"), unary!(lease, lease_leases))
            .route(&format!("{v}/kv/lease/leases"), unary!(lease, lease_leases))
            .route(&format!("{v}/cluster/member/add"), unary!(cluster, member_add))
            .route(&format!("{v}/cluster/member/remove"), unary!(cluster, member_remove))
            .route(&format!("{v}/cluster/member/update"), unary!(cluster, member_update))
            .route(&format!("{v}/cluster/member/list"), unary!(cluster, member_list))
            .route(&format!("{v}/cluster/member/promote"), unary!(cluster, member_promote))
            .route(&format!("{v}/maintenance/alarm"), unary!(maintenance, alarm))
            .route(&format!("{v}/maintenance/status"), unary!(maintenance, status))
            .route(&format!("{v}/maintenance/defragment"), unary!(maintenance, defragment))
            .route(&format!("{v}/maintenance/hash"), unary!(maintenance, hash))
            .route(&format!("{v}/maintenance/snapshot"), server_stream!(maintenance, snapshot))
            .route(&format!("{v}/maintenance/transfer-leadership"), unary!(maintenance, move_leader))
            .route(&format!("{v}/lock/lock"), unary!(lock, lock))
            .route(&format!("{v}/lock/unlock"), unary!(lock, unlock))
            .route(&format!("{v}/election/campaign"), unary!(election, campaign))
            .route(&format!("{v}/election/proclaim"), unary!(election, proclaim))
            .route(&format!("{v}/election/leader"), unary!(election, leader))
            .route(&format!("{v}/election/observe"), server_stream!(election, observe))
            .route(&format!("{v}/election/resign"), unary!(election, resign))
            .route(&format!("{v}/auth/enable"), unary!(auth, auth_enable))
            .route(&format!("{v}/auth/disable"), unary!(auth, auth_disable))
            .route(&format!("{v}/auth/status"), unary!(auth, auth_status))
            .route(&format!("{v}/auth/authenticate"), unary!(auth, authenticate))
            .route(&format!("{v}/auth/user/add"), unary!(auth, user_add))
            .route(&format!("{v}/auth/user/get"), unary!(auth, user_get))
            .route(&format!("{v}/auth/user/list"), unary!(auth, user_list))
            .route(&format!("{v}/auth/user/delete"), unary!(auth, user_delete))
            .route(&format!("{v}/auth/user/changepw"), unary!(auth, user_change_password))
            .route(&format!("{v}/auth/user/grant"), unary!(auth, user_grant_role))
            .route(&format!("{v}/auth/user/revoke"), unary!(auth, user_revoke_role))
            .route(&format!("{v}/auth/role/add"), unary!(auth, role_add))
            .route(&format!("{v}/auth/role/get"), unary!(auth, role_get))
            .route(&format!("{v}/auth/role/list"), unary!(auth, role_list))
            .route(&format!("{v}/auth/role/delete"), unary!(auth, role_delete))
            .route(&format!("{v}/auth/role/grant"), unary!(auth, role_grant_permission))
            .route(&format!("{v}/auth/role/revoke"), unary!(auth, role_revoke_permission));
    }
    router.layer(axum::extract::DefaultBodyLimit::max(body_limit))
}
