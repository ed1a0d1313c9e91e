//! `grpc_server_*` (go-grpc-prometheus, as etcd registers it) and the
//! client traffic counters, kept by the request layer over the client port's
//! services.
//!
//! Every method of etcd's services has its counters made at start, one
//! `grpc_server_handled_total` series per gRPC code included, as
//! go-grpc-prometheus pre-registers them: dashboards and alerts find their
//! series at zero before any request. A call counts as handled when its
//! status is known: from the headers of a trailers-only answer, from the
//! trailers at the end of the body, or `Canceled` when the client goes
//! away first (the layer's future or the body dropped). It counts as
//! started when its handler answers (a stream: at once) or, for an answer
//! that is only a status, together with it; a request refused for its
//! size is not counted, as grpc-go refuses it before etcd's interceptors.
//! Messages and their bytes are counted from the gRPC framing (a 5-byte
//! prefix per message) as the bodies go through, not by decoding them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unary,
    ServerStream,
    Bidi,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Unary => "unary",
            Kind::ServerStream => "server_stream",
            Kind::Bidi => "bidi_stream",
        }
    }
}

/// etcd's gRPC methods (the client port), as its `.proto` files declare
/// them; a unit test holds this list against the files.
pub const METHODS: &[(&str, &str, Kind)] = {
    use Kind::*;
    &[
        ("etcdserverpb.KV", "Range", Unary),
        ("etcdserverpb.KV", "Put", Unary),
        ("etcdserverpb.KV", "DeleteRange", Unary),
        ("etcdserverpb.KV", "Txn", Unary),
        ("etcdserverpb.KV", "Compact", Unary),
        ("etcdserverpb.Watch", "Watch", Bidi),
        ("etcdserverpb.Lease", "LeaseGrant", Unary),
        ("etcdserverpb.Lease", "LeaseRevoke", Unary),
        ("etcdserverpb.Lease", "LeaseKeepAlive", Bidi),
        ("etcdserverpb.Lease", "LeaseTimeToLive", Unary),
        ("etcdserverpb.Lease", "LeaseLeases", Unary),
        ("etcdserverpb.Cluster", "MemberAdd", Unary),
        ("etcdserverpb.Cluster", "MemberRemove", Unary),
        ("etcdserverpb.Cluster", "MemberUpdate", Unary),
        ("etcdserverpb.Cluster", "MemberList", Unary),
        ("etcdserverpb.Cluster", "MemberPromote", Unary),
        ("etcdserverpb.Maintenance", "Alarm", Unary),
        ("etcdserverpb.Maintenance", "Status", Unary),
        ("etcdserverpb.Maintenance", "Defragment", Unary),
        ("etcdserverpb.Maintenance", "Hash", Unary),
        ("etcdserverpb.Maintenance", "HashKV", Unary),
        ("etcdserverpb.Maintenance", "Snapshot", ServerStream),
        ("etcdserverpb.Maintenance", "MoveLeader", Unary),
        ("etcdserverpb.Auth", "AuthEnable", Unary),
        ("etcdserverpb.Auth", "AuthDisable", Unary),
        ("etcdserverpb.Auth", "AuthStatus", Unary),
        ("etcdserverpb.Auth", "Authenticate", Unary),
        ("etcdserverpb.Auth", "UserAdd", Unary),
        ("etcdserverpb.Auth", "UserGet", Unary),
        ("etcdserverpb.Auth", "UserList", Unary),
        ("etcdserverpb.Auth", "UserDelete", Unary),
        ("etcdserverpb.Auth", "UserChangePassword", Unary),
        ("etcdserverpb.Auth", "UserGrantRole", Unary),
        ("etcdserverpb.Auth", "UserRevokeRole", Unary),
        ("etcdserverpb.Auth", "RoleAdd", Unary),
        ("etcdserverpb.Auth", "RoleGet", Unary),
        ("etcdserverpb.Auth", "RoleList", Unary),
        ("etcdserverpb.Auth", "RoleDelete", Unary),
        ("etcdserverpb.Auth", "RoleGrantPermission", Unary),
        ("etcdserverpb.Auth", "RoleRevokePermission", Unary),
        ("v3lockpb.Lock", "Lock", Unary),
        ("v3lockpb.Lock", "Unlock", Unary),
        ("v3electionpb.Election", "Campaign", Unary),
        ("v3electionpb.Election", "Proclaim", Unary),
        ("v3electionpb.Election", "Leader", Unary),
        ("v3electionpb.Election", "Observe", ServerStream),
        ("v3electionpb.Election", "Resign", Unary),
    ]
};

/// gRPC's codes by number, spelled as grpc-go's `codes.Code.String()`.
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// Prometheus's default buckets, which go-grpc-prometheus uses.
const HANDLING_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One method's counters, resolved at start.
struct Method {
    kind: Kind,
    started: IntCounter,
    handled: Vec<IntCounter>,
    received: IntCounter,
    sent: IntCounter,
    handling: Option<Histogram>,
}

/// One call's accounting: started once, handled once, `Canceled` if
/// dropped before its status was known.
struct Call {
    method: &'static Method,
    start: Instant,
    started: bool,
    done: bool,
}

impl Call {
    fn new(method: &'static Method) -> Self {
        Call { method, start: Instant::now(), started: false, done: false }
    }

    fn mark_started(&mut self) {
        if !self.started {
            self.started = true;
            self.method.started.inc();
        }
    }

    fn finish(&mut self, code: usize) {
        if self.done {
            return;
        }
        self.mark_started();
        self.done = true;
        let code = if code < CODES.len() { code } else { UNKNOWN };
        self.method.handled[code].inc();
        if let Some(h) = &self.method.handling {
            h.observe(super::since(self.start));
        }
    }

    /// Not counted at all.
    fn forget(&mut self) {
        self.done = true;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

/// `etcd_server_client_requests_total` per `client-api-version`: slots for
/// "3.0" to "3.9" and "unknown", made at first use so a client cannot
/// grow the label set.
struct ClientRequests {
    vec: IntCounterVec,
    slots: [[OnceLock<IntCounter>; 11]; 2],
}

impl ClientRequests {
    /// The slot of a request's `client-api-version`.
    fn slot(headers: &HeaderMap) -> usize {
        match headers.get("client-api-version").map(|v| v.as_bytes()) {
            Some([b'3', b'.', minor]) if minor.is_ascii_digit() => (minor - b'0') as usize,
            _ => 10,
        }
    }

    fn inc(&self, kind: Kind, slot: usize) {
        let (ty, t) = if kind == Kind::Unary { ("unary", 0) } else { ("stream", 1) };
        self.slots[t][slot]
            .get_or_init(|| {
                let v = if slot == 10 { "unknown".to_string() } else { format!("3.{slot}") };
                self.vec.with_label_values(&[ty, &v])
            })
            .inc();
    }
}

struct Table {
    methods: HashMap<String, Method>,
    requests: ClientRequests,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// Makes every method's counters (see the module docs); idempotent.
pub(super) fn init(reg: &Registry, extensive: bool) {
    TABLE.get_or_init(|| build(reg, extensive));
}

fn build(reg: &Registry, extensive: bool) -> Table {
    let labels = ["grpc_type", "grpc_service", "grpc_method"];
    let vec = |name: &str, help: &str, labels: &[&str]| {
        let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        if let Err(e) = reg.register(Box::new(v.clone())) {
            tracing::error!(error = %e, "registering a metric failed");
        }
        v
    };
    let started = vec("grpc_server_started_total", "Total number of RPCs started on the server.", &labels);
    let handled = vec(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
    );
    let received =
        vec("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", &labels);
    let sent = vec("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", &labels);
    let handling = extensive.then(|| {
        let opts = HistogramOpts::new(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        )
        .buckets(HANDLING_BUCKETS.to_vec());
        let h = HistogramVec::new(opts, &labels).expect("valid metric");
        if let Err(e) = reg.register(Box::new(h.clone())) {
            tracing::error!(error = %e, "registering a metric failed");
        }
        h
    });
    let methods = METHODS
        .iter()
        .map(|&(service, method, kind)| {
            let l = [kind.label(), service, method];
            let m = Method {
                kind,
                started: started.with_label_values(&l),
                handled: CODES.iter().map(|c| handled.with_label_values(&[l[0], l[1], l[2], c])).collect(),
                received: received.with_label_values(&l),
                sent: sent.with_label_values(&l),
                handling: handling.as_ref().map(|h| h.with_label_values(&l)),
            };
            (format!("/{service}/{method}"), m)
        })
        .collect();
    let requests = ClientRequests {
        vec: vec(
            "etcd_server_client_requests_total",
            "The total number of client requests per client version.",
            &["type", "client_api_version"],
        ),
        slots: Default::default(),
    };
    Table { methods, requests }
}

/// Runs `inner` on a gRPC request and counts the call; see the module
/// docs. The request layer (`api::call::grpc_layer`) calls it first thing,
/// so admission refusals count too, at no extra layer's cost.
pub async fn observe<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let Some(table) = TABLE.get() else {
        return inner(req).await;
    };
    let Some(method) = table.methods.get(req.uri().path()) else {
        return inner(req).await;
    };
    let mut call = Call::new(method);
    let version = ClientRequests::slot(req.headers());
    let req = req.map(|b| Body::new(Counted::new(b, method, None)));
    let resp = inner(req).await;
    if let Some(code) = code_of(resp.headers()) {
        // Trailers-only: the status came with the headers, no body follows.
        if is_oversized(resp.headers()) {
            call.forget();
            return resp;
        }
        table.requests.inc(method.kind, version);
        call.finish(code);
        return resp;
    }
    table.requests.inc(method.kind, version);
    call.mark_started();
    resp.map(|b| Body::new(Counted::new(b, method, Some(call))))
}

/// tonic's status for a request over the size limit (which
/// `api::http::etcd_grpc_errors` rewrites into grpc-go's), or grpc-go's.
fn is_oversized(headers: &HeaderMap) -> bool {
    headers.get("grpc-message").is_some_and(|m| {
        let m = m.as_bytes();
        m.starts_with(b"Error, decoded message length too large")
            || m.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
            || m.starts_with(b"grpc: received message larger than max")
    })
}

fn code_of(headers: &HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?;
    Some(std::str::from_utf8(v.as_bytes()).ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(UNKNOWN))
}

/// Counts messages in a gRPC body: each is a 1-byte flag and a 4-byte
/// big-endian length, then that many bytes, split across frames anyhow.
#[derive(Default)]
struct Framing {
    prefix: [u8; 5],
    have: usize,
    skip: u64,
}

impl Framing {
    /// Messages that begin in `data` and their payload bytes.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
            }
            if data.is_empty() {
                return (messages, bytes);
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as u64;
                messages += 1;
                bytes += len;
                self.skip = len;
                self.have = 0;
            }
        }
    }
}

/// A request or response body, counted on its way through. A response
/// body carries its call, and reports the status once (dropped first:
/// `Canceled`).
struct Counted {
    inner: Body,
    method: &'static Method,
    framing: Framing,
    call: Option<Call>,
}

impl Counted {
    fn new(inner: Body, method: &'static Method, call: Option<Call>) -> Self {
        Counted { inner, method, framing: Framing::default(), call }
    }

    fn finish(&mut self, code: usize) {
        if let Some(call) = &mut self.call {
            call.finish(code);
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (messages, bytes) = this.framing.feed(data);
                    if messages > 0 {
                        let net = &super::get().net;
                        if this.call.is_some() {
                            this.method.sent.inc_by(messages);
                            net.client_grpc_sent_bytes.inc_by(bytes);
                        } else {
                            this.method.received.inc_by(messages);
                            net.client_grpc_received_bytes.inc_by(bytes);
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.finish(code_of(trailers).unwrap_or(UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(UNKNOWN),
            // A response body always ends with trailers; without them the
            // status is unknown.
            Poll::Ready(None) => this.finish(UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_counts_messages_split_anyhow() {
        let msg = |len: u32| {
            let mut v = vec![0u8];
            v.extend_from_slice(&len.to_be_bytes());
            v.extend(std::iter::repeat_n(7u8, len as usize));
            v
        };
        let mut all = Vec::new();
        for len in [0, 3, 1000, 1] {
            all.extend(msg(len));
        }
        for cut in [1, 2, 4, 5, 7, 100, all.len()] {
            let mut f = Framing::default();
            let (mut m, mut b) = (0, 0);
            for chunk in all.chunks(cut) {
                let (mm, bb) = f.feed(chunk);
                m += mm;
                b += bb;
            }
            assert_eq!((m, b), (4, 1004), "chunks of {cut}");
        }
    }

    /// The table is etcd's `.proto` files' client RPCs, with their kinds.
    #[test]
    fn methods_are_the_protos() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        let mut found = Vec::new();
        for (file, package) in [
            ("etcdserverpb/rpc.proto", "etcdserverpb"),
            ("v3lockpb/v3lock.proto", "v3lockpb"),
            ("v3electionpb/v3election.proto", "v3electionpb"),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).expect("read proto");
            let mut service = String::new();
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().unwrap_or_default().to_string();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let name = rest.split('(').next().unwrap_or_default().trim().to_string();
                    let (args, ret) = rest.split_once("returns").expect("rpc returns");
                    let kind = match (args.contains("(stream "), ret.contains("(stream ")) {
                        (false, false) => Kind::Unary,
                        (false, true) => Kind::ServerStream,
                        (true, true) => Kind::Bidi,
                        (true, false) => panic!("client streams are not etcd's"),
                    };
                    found.push((format!("{package}.{service}"), name, kind));
                }
            }
        }
        let table: Vec<_> = METHODS.iter().map(|&(s, m, k)| (s.to_string(), m.to_string(), k)).collect();
        assert_eq!(found, table);
    }

    #[test]
    fn every_method_pre_registers_every_code() {
        let reg = Registry::new();
        let t = build(&reg, true);
        assert_eq!(t.methods.len(), METHODS.len());
        let families = reg.gather();
        let handled = families.iter().find(|f| f.get_name() == "grpc_server_handled_total").expect("handled");
        assert_eq!(handled.get_metric().len(), METHODS.len() * CODES.len());
        assert!(families.iter().any(|f| f.get_name() == "grpc_server_handling_seconds"));
        let mut h = HeaderMap::new();
        h.insert("client-api-version", "3.4".parse().expect("header"));
        t.requests.inc(Kind::Unary, ClientRequests::slot(&h));
        h.insert("client-api-version", "a very long made-up version".parse().expect("header"));
        t.requests.inc(Kind::Bidi, ClientRequests::slot(&h));
        let text = {
            let mut buf = Vec::new();
            prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &reg.gather(), &mut buf).expect("encode");
            String::from_utf8(buf).expect("utf8")
        };
        assert!(
            text.contains(r#"etcd_server_client_requests_total{client_api_version="3.4",type="unary"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"etcd_server_client_requests_total{client_api_version="unknown",type="stream"} 1"#));
    }
}
