//! Plain HTTP beside gRPC on the client port, as etcd serves it:
//! `/metrics` (Prometheus text, etcd's metric names), `/health` and
//! `/version`.

use std::time::Duration;

use api::pb::etcdserverpb::AlarmType;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::Ctx;
use crate::deadline::Deadline;

/// etcd's health check waits this long for its read to get through raft.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(ctx: Ctx) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(ctx);
    if failpoint::ENABLED {
        router.merge(failpoints())
    } else {
        router
    }
}

/// `/debug/failpoints`, in builds with failpoints (debug and test builds),
/// as etcd's gofail endpoint: GET lists them, `PUT /debug/failpoints/NAME`
/// with a spec in the body sets one (`error`, `panic`, `sleep(MS)`,
/// `pause`, `N*...`, `off`), DELETE clears it. Process tests inject faults
/// this way.
fn failpoints() -> Router {
    use axum::extract::Path;
    use axum::http::StatusCode;
    async fn list() -> String {
        failpoint::list().into_iter().map(|(n, s)| format!("{n}={s}\n")).collect()
    }
    async fn set(Path(name): Path<String>, spec: String) -> (StatusCode, String) {
        match failpoint::set(&name, &spec) {
            Ok(()) => (StatusCode::NO_CONTENT, String::new()),
            Err(e) => (StatusCode::BAD_REQUEST, e),
        }
    }
    async fn clear(Path(name): Path<String>) -> StatusCode {
        failpoint::clear(&name);
        StatusCode::NO_CONTENT
    }
    Router::new()
        .route("/debug/failpoints", get(list))
        .route("/debug/failpoints/{name}", axum::routing::put(set).delete(clear))
}

async fn version() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#, api::ETCD_VERSION, api::ETCD_CLUSTER_VERSION),
    )
}

/// Healthy when no alarm is active, there is a leader and a linearizable
/// read gets through.
async fn health(State(ctx): State<Ctx>) -> impl IntoResponse {
    let reason = if let Some(alarm) = ctx.node.alarms.list().first() {
        // etcd: an active alarm makes the member unhealthy.
        Some(match AlarmType::try_from(alarm.alarm) {
            Ok(AlarmType::Nospace) => "ALARM NOSPACE".to_string(),
            Ok(AlarmType::Corrupt) => "ALARM CORRUPT".to_string(),
            _ => "ALARM UNKNOWN".to_string(),
        })
    } else if ctx.node.state.leader() == 0 {
        Some("RAFT NO LEADER".to_string())
    } else {
        match ctx.node.read_barrier(Deadline::new(HEALTH_TIMEOUT, None)).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        }
    };
    // etcd 3.4 answers with the verdict only and logs why.
    let server = &crate::metrics::get().server;
    let (code, body) = match reason {
        None => {
            server.health_success.inc();
            (StatusCode::OK, r#"{"health":"true"}"#)
        }
        Some(r) => {
            server.health_failures.inc();
            tracing::warn!(reason = %r, "serving /health false");
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
        }
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    // Reading /proc, the engine's properties and the key index's lock
    // (held by a snapshot install) are blocking calls.
    let page = tokio::task::spawn_blocking(move || crate::metrics::render(&ctx)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
}

/// grpc-go (etcd) rejects an oversized request with ResourceExhausted
/// "grpc: received message larger than max (N vs. M)"; tonic says OutOfRange
/// in its own words. Clients match etcd's, so rewrite it on the way out.
pub async fn etcd_grpc_errors(mut resp: axum::response::Response) -> axum::response::Response {
    let headers = resp.headers_mut();
    let is_out_of_range = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"11");
    if !is_out_of_range {
        return resp;
    }
    let Some(msg) = headers.get("grpc-message").map(|v| percent_decode(v.as_bytes())) else {
        return resp;
    };
    if let Some((found, limit)) = parse_tonic_size_error(&msg) {
        let text = format!("grpc: received message larger than max ({found} vs. {limit})");
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
            headers.insert("grpc-message", v);
        }
    }
    resp
}

fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 1..i + 3]), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// "Error, decoded message length too large: found N bytes, the limit is: M bytes"
fn parse_tonic_size_error(msg: &str) -> Option<(u64, u64)> {
    let rest = msg.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_size_error_parsed() {
        let m = "Error, decoded message length too large: found 529418 bytes, the limit is: 525312 bytes";
        assert_eq!(parse_tonic_size_error(m), Some((529418, 525312)));
        assert_eq!(parse_tonic_size_error("something else"), None);
        assert_eq!(percent_decode(b"a%20b%3Ac"), "a b:c");
        assert_eq!(percent_decode(b"100%"), "100%");
    }
}
