//! etcd's gRPC-JSON gateway (`POST /v3/...`), the same requests against
//! MetaStore and Debian's etcd: status codes and JSON bodies must match once
//! the IDs that differ between any two clusters (cluster, member, term) are
//! taken out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::metrics::{http_post, http_post_persistent};

use crate::common::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Drops what differs between two clusters, and the seconds left of a
/// lease (they tick).
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["cluster_id", "member_id", "raft_term", "TTL"] {
                m.remove(k);
            }
            m.values_mut().for_each(normalise);
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

fn norm(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            normalise(&mut v);
            v.to_string()
        }
        Err(_) => format!("not JSON: {body}"),
    }
}

const STEPS: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    ("/v3/kv/range", r#"{"key":"bm8="}"#),
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#),
    ("/v3/kv/put", r#"{"key":"Zm9vMg==","value":"eA==","prevKv":true,"unknown_field":1}"#),
    ("/v3/kv/range", r#"{"key":""}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"100"}"#),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","sort_target":"KEY","count_only":true}"#,
    ),
    ("/v3/lease/grant", r#"{"ID":"1000","TTL":30}"#),
    ("/v3/kv/put", r#"{"key":"bGVhc2Vk","value":"dg==","lease":"1000"}"#),
    ("/v3/lease/timetolive", r#"{"ID":"1000","keys":true}"#),
    ("/v3/kv/lease/leases", "{}"),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"dA==","value":"MQ=="}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VERSION","version":"9"}],"failure":[{"request_delete_range":{"key":"dA==","prev_kv":true}}]}"#,
    ),
    ("/v3/lease/revoke", r#"{"ID":"1000"}"#),
    ("/v3/lease/revoke", r#"{"ID":"1000"}"#),
    ("/v3/kv/deleterange", r#"{"key":"Zm9v","range_end":"Zm9w","prev_kv":true}"#),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
    ("/v3beta/kv/put", r#"{"key":"YmV0YQ==","value":"MQ=="}"#),
    ("/v3/lease/grant", r#"{"ID":"2000","TTL":60}"#),
    ("/v3/lock/lock", r#"{"name":"bG9jaw==","lease":"2000"}"#),
    ("/v3/lock/unlock", r#"{"key":"bG9jay83ZDA="}"#),
    ("/v3/election/leader", r#"{"name":"ZWw="}"#),
    ("/v3/election/campaign", r#"{"name":"ZWw=","value":"YQ==","lease":"2000"}"#),
    ("/v3/election/leader", r#"{"name":"ZWw="}"#),
];

fn run_steps(s: &ServerProcess) -> Vec<String> {
    let ep = s.endpoint();
    let mut out = Vec::new();
    for (path, body) in STEPS {
        let (status, resp) = http_post(&ep, path, body, TIMEOUT).expect("POST");
        out.push(format!("{path} {body} -> {status} {}", norm(&resp)));
    }
    // A value near --max-request-bytes (1.5 MiB), 4/3 larger in base64.
    let big = format!(r#"{{"key":"Ymln","value":"{}"}}"#, "QUJD".repeat(1_400_000 / 3));
    let (status, resp) = http_post(&ep, "/v3/kv/put", &big, TIMEOUT).expect("POST");
    out.push(format!("1.4 MB value -> {status} {}", norm(&resp)));
    // Bad JSON: etcd's message is Go's parser's, so only the status and code.
    let (status, resp) = http_post(&ep, "/v3/kv/range", "not json", TIMEOUT).expect("POST");
    let code = serde_json::from_str::<Value>(&resp).ok().and_then(|v| v.get("code").cloned());
    out.push(format!("bad JSON -> {status} code {code:?}"));
    let (status, _) = testkit::metrics::http_get(&ep, "/v3/kv/range", TIMEOUT).expect("GET");
    out.push(format!("GET -> {status}"));
    out
}

/// The `{"result": ...}` lines a streaming POST answered within `wait`,
/// after `then` ran (with the stream open).
fn stream_lines(ep: &str, path: &str, body: &str, want: usize, then: impl FnOnce()) -> Vec<String> {
    let mut s = TcpStream::connect(ep).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {ep}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut then = Some(then);
    let mut raw = Vec::new();
    let end = Instant::now() + TIMEOUT;
    let lines = |raw: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(raw)
            .lines()
            .filter(|l| l.starts_with("{\"result\"") || l.starts_with("{\"error\""))
            .map(norm)
            .collect()
    };
    while Instant::now() < end && lines(&raw).len() < want {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !lines(&raw).is_empty() {
            if let Some(f) = then.take() {
                f();
            }
        }
    }
    lines(&raw)
}

fn streams(s: &ServerProcess) -> Vec<String> {
    let ep = s.endpoint();
    let put = || {
        http_post(&ep, "/v3/kv/put", r#"{"key":"d2F0Y2hlZA==","value":"MQ=="}"#, TIMEOUT).expect("put");
    };
    let mut out = stream_lines(&ep, "/v3/watch", r#"{"create_request":{"key":"d2F0Y2hlZA=="}}"#, 2, put);
    http_post(&ep, "/v3/lease/grant", r#"{"ID":"3000","TTL":60}"#, TIMEOUT).expect("grant");
    // A keep-alive answers each request in the body and ends, as Patroni
    // and etcd3gw expect: read on a persistent connection to the body's end.
    for body in [r#"{"ID":"3000"}"#, r#"{"ID":"3000"} {"ID":"999"}"#, ""] {
        let (status, resp) = http_post_persistent(&ep, "/v3/lease/keepalive", body, TIMEOUT)
            .unwrap_or_else(|e| panic!("keep-alive {body:?} never ended: {e}"));
        out.push(format!("keepalive {body} -> {status} {:?}", resp.lines().map(norm).collect::<Vec<_>>()));
    }
    out.extend(stream_lines(&ep, "/v3/election/observe", r#"{"name":"ZWw="}"#, 1, || {}));
    out
}

#[test]
fn json_gateway_as_etcd() {
    let etcd = ServerProcess::etcd(&[]);
    let (etcd_steps, etcd_streams) = (run_steps(&etcd), streams(&etcd));
    let ours = metastore(&[]);
    let (our_steps, our_streams) = (run_steps(&ours), streams(&ours));
    for (o, e) in our_steps.iter().zip(&etcd_steps) {
        assert_eq!(o, e);
    }
    assert_eq!(our_steps.len(), etcd_steps.len());
    assert_eq!(our_streams, etcd_streams);
    assert_eq!(our_streams.len(), 6, "{our_streams:?}");
    // The streams' clients are gone: so are the streams.
    let gone =
        wait_until(Duration::from_secs(5), || testkit::metric(&ours, "etcd_debugging_mvcc_watch_stream_total") == 0);
    assert!(gone, "gateway watch streams outlived their clients");
}
