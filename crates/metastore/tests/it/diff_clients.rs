//! What an operator runs first, with clients nobody here wrote, against
//! MetaStore and Debian's etcd side by side: etcdctl with its endpoint
//! written as a URL (the Go client then sends `http://127.0.0.1:2379` as
//! the HTTP/2 `:authority`, which the `h2` crate alone refuses), the
//! `--cluster` forms (they dial every member's advertised client URL), and
//! the outputs that differed: HashKV's compact revision, `alarm list -w
//! json` with no alarm.

use crate::common::ServerProcess;
use crate::diff::{mask_status_simple, mask_took, seed, Pair};
use crate::diff_common::Norm;

fn keep(s: &str) -> String {
    s.to_string()
}

/// Same output on both servers through `endpoint`, and etcd succeeded.
fn ok_at(p: &Pair, endpoint: fn(&ServerProcess) -> String, args: &[&str], extra: fn(&str) -> String) -> Norm {
    let n = p.same_at(endpoint, args, b"", extra);
    assert_eq!(n.code, Some(0), "etcd failed `etcdctl {}`: {n:#?}", args.join(" "));
    n
}

#[test]
fn url_endpoints_as_etcd() {
    let p = Pair::start();
    p.ok(&["put", "a", "1"]);
    let url = ServerProcess::url;
    ok_at(&p, url, &["get", "a", "-w", "json"], keep);
    ok_at(&p, url, &["endpoint", "status"], mask_status_simple);
    ok_at(&p, url, &["endpoint", "hashkv"], keep);
    ok_at(&p, url, &["endpoint", "health"], mask_took);
    for w in ["json", "table"] {
        for cmd in ["status", "hashkv"] {
            let n = ok_at(&p, url, &["endpoint", cmd, "-w", w], keep);
            assert!(n.stdout.contains("http://<client>"), "{cmd} -w {w}: {n:#?}");
        }
    }
    ok_at(&p, url, &["member", "list", "-w", "table"], keep);
}

#[test]
fn cluster_forms_dial_the_advertised_urls_as_etcd() {
    let p = Pair::start();
    p.ok(&["put", "a", "1"]);
    for endpoint in [ServerProcess::endpoint as fn(&ServerProcess) -> String, ServerProcess::url] {
        for w in ["json", "table"] {
            for cmd in ["status", "hashkv"] {
                let n = ok_at(&p, endpoint, &["endpoint", cmd, "--cluster", "-w", w], keep);
                assert!(n.stdout.contains("http://<client>"), "a row for the member: {n:#?}");
            }
        }
        ok_at(&p, endpoint, &["endpoint", "status", "--cluster"], mask_status_simple);
        ok_at(&p, endpoint, &["endpoint", "health", "--cluster"], mask_took);
    }
}

#[test]
fn hashkv_compact_revision_and_alarm_list_as_etcd() {
    let p = Pair::start();
    seed(&p);
    let n = p.ok(&["endpoint", "hashkv", "-w", "json"]);
    assert!(n.stdout.contains(r#""compact_revision":-1"#), "never compacted: {n:#?}");
    p.ok(&["compact", "5"]);
    let n = p.ok(&["endpoint", "hashkv", "-w", "json"]);
    assert!(n.stdout.contains(r#""compact_revision":5"#), "{n:#?}");
    p.err(&["endpoint", "hashkv", "--rev=5"], "required revision has been compacted");
    p.ok(&["endpoint", "hashkv", "--rev=6", "-w", "json"]);
    let n = p.ok(&["alarm", "list", "-w", "json"]);
    assert_eq!(n.stdout.trim(), "{}");
    p.ok(&["alarm", "list"]);
    p.ok(&["alarm", "disarm", "-w", "json"]);
}

/// What a server streams back to a client that sent its requests and then
/// closed its side of the stream (grpc-gateway does that at the end of an
/// HTTP body; some gRPC clients do it too): etcd keeps a watch stream open
/// and ends a keep-alive stream once it answered every request.
async fn half_closed_streams(s: &ServerProcess) -> Vec<String> {
    use api::pb::etcdserverpb::{
        kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient, watch_request::RequestUnion,
        LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, WatchCreateRequest, WatchRequest,
    };
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(5);
    let channel = tonic::transport::Channel::from_shared(s.url()).expect("url").connect().await.expect("connect");
    let mut out = Vec::new();
    let create = WatchCreateRequest { key: b"hc".to_vec(), ..Default::default() };
    let requests = tokio_stream::iter(vec![WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }]);
    let mut watch = WatchClient::new(channel.clone()).watch(requests).await.expect("watch").into_inner();
    let created = tokio::time::timeout(WAIT, watch.message()).await.expect("created in time").expect("created");
    out.push(format!("created: {:?}", created.map(|r| r.created)));
    let put = PutRequest { key: b"hc".to_vec(), value: b"after".to_vec(), ..Default::default() };
    KvClient::new(channel.clone()).put(put).await.expect("put");
    let event = match tokio::time::timeout(WAIT, watch.message()).await {
        Ok(Ok(Some(r))) => {
            format!("{:?}", r.events.iter().map(|e| e.kv.as_ref().map(|kv| kv.value.clone())).collect::<Vec<_>>())
        }
        other => format!("no event: {other:?}"),
    };
    out.push(format!("watch after half-close: {event}"));
    let mut lease = LeaseClient::new(channel);
    let id = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.expect("grant").into_inner().id;
    let requests = tokio_stream::iter(vec![LeaseKeepAliveRequest { id }, LeaseKeepAliveRequest { id: 999 }]);
    let mut answers = lease.lease_keep_alive(requests).await.expect("keep-alive").into_inner();
    loop {
        match tokio::time::timeout(WAIT, answers.message()).await {
            Ok(Ok(Some(r))) => out.push(format!("keep-alive: own lease {} ttl>0 {}", r.id == id, r.ttl > 0)),
            Ok(Ok(None)) => {
                out.push("keep-alive: ended".into());
                break;
            }
            other => {
                out.push(format!("keep-alive: {other:?}"));
                break;
            }
        }
    }
    out
}

#[tokio::test]
async fn half_closed_streams_as_etcd() {
    let p = tokio::task::spawn_blocking(Pair::start).await.expect("start pair");
    let etcd = half_closed_streams(&p.etcd).await;
    let ours = half_closed_streams(&p.ms).await;
    assert_eq!(ours, etcd, "left: metastore, right: etcd");
    assert_eq!(etcd.last().map(String::as_str), Some("keep-alive: ended"), "{etcd:?}");
}
