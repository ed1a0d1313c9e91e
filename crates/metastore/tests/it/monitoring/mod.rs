//! etcd's monitoring, unchanged, on MetaStore: the alerting rules and the
//! Grafana dashboard of etcd's mixin (rendered in `deploy/prometheus/`),
//! checked by promtool, queried through a real Prometheus scraping a
//! MetaStore cluster beside an etcd cluster, and fired by real faults.

mod prometheus;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus::{metric_names, Prometheus};
use serde_json::Value;
use testkit::cluster::Cluster;

const FIRE_TIMEOUT: Duration = Duration::from_secs(40);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(deploy_dir())
        .output()
        .expect("run promtool (scripts/setup.sh installs prometheus)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_sample_config() {
    let (ok, out) = promtool(&["check", "rules", "etcd-alerts.yaml"]);
    assert!(ok && out.contains("SUCCESS: 15 rules found"), "{out}");
    // The mixin's own unit tests of its rules.
    let (ok, out) = promtool(&["test", "rules", "etcd-alerts-test.yaml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"]);
    assert!(ok, "{out}");
    // A broken rule is refused: the checks above can fail.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        deploy_file("etcd-alerts.yaml").replace("etcd_server_has_leader{", "etcd_server_has_leader{{"),
    )
    .unwrap();
    let (ok, _) = promtool(&["check", "rules", bad.to_str().unwrap()]);
    assert!(!ok, "a broken rule file passed promtool");
}

/// Every expression in a JSON document (the dashboard's panels).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The alert rules' expressions.
fn alert_exprs(rules: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(n) = t.strip_prefix("- alert: ") {
            name = n.trim().to_string();
        } else if let Some(e) = t.strip_prefix("expr: ") {
            let mut expr = String::new();
            if e.trim() == "|" {
                let indent = lines.peek().map_or(0, |l| l.len() - l.trim_start().len());
                while lines.peek().is_some_and(|l| l.len() - l.trim_start().len() >= indent && !l.trim().is_empty()) {
                    expr.push_str(lines.next().unwrap_or_default().trim());
                    expr.push('\n');
                }
            } else {
                expr = e.trim().to_string();
            }
            out.push((name.clone(), expr));
        }
    }
    out
}

fn cluster_targets(c: &Cluster) -> Vec<String> {
    c.members().iter().map(|m| format!("127.0.0.1:{}", m.client_port())).collect()
}

/// Puts, gets, a watch and a lease keep-alive on every member, the way an
/// application keeps a cluster busy, until `until`.
async fn load(endpoints: Vec<String>, until: Instant) {
    let mut tasks = Vec::new();
    for (i, ep) in endpoints.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut c = etcd_client::Client::connect([ep], None).await.expect("connect");
            let mut events =
                c.watch("load/", Some(etcd_client::WatchOptions::new().with_prefix())).await.expect("watch");
            let lease = c.lease_grant(30, None).await.expect("grant").id();
            let (mut keeper, mut acks) = c.lease_keep_alive(lease).await.expect("keep alive");
            let mut n = 0u64;
            while Instant::now() < until {
                c.put(format!("load/{i}/{}", n % 50), "v".repeat(100), None).await.expect("put");
                c.get(format!("load/{i}/{}", n % 50), None).await.expect("get");
                if n.is_multiple_of(20) {
                    keeper.keep_alive().await.expect("keep alive");
                    let _ = acks.message().await;
                }
                // Read some of what the watch delivered.
                let _ = tokio::time::timeout(Duration::from_millis(1), events.message()).await;
                n += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
}

/// The dashboard's and the alerts' queries find data on MetaStore wherever
/// they find it on etcd (each cluster its own Prometheus job), and every
/// dashboard panel has data on MetaStore.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_and_alert_query_finds_data_as_on_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--metrics", "extensive"];
    let ms = Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &flags);
    let etcd = Cluster::start(&testkit::etcd_member_binary(dir.path()), 3, &flags);
    let jobs = [("etcd-metastore", cluster_targets(&ms)), ("etcd-real", cluster_targets(&etcd))];
    let prom = Prometheus::start(&jobs, None);
    let until = Instant::now() + Duration::from_secs(8);
    tokio::join!(load(ms.endpoints(), until), load(etcd.endpoints(), until));
    prom.wait_scrapes(8, Duration::from_secs(30));

    same_families_as_etcd(&ms, &etcd);

    let dashboard: Value = serde_json::from_str(&deploy_file("etcd-dashboard.json")).expect("dashboard JSON");
    let mut panels = Vec::new();
    exprs(&dashboard, &mut panels);
    assert_eq!(panels.len(), 19, "{panels:?}");
    let series = |expr: &str, job: &str| -> usize {
        let q = expr.replace("$cluster", job).replace("$__rate_interval", "1m");
        prom.query(&q).unwrap_or_else(|e| panic!("{q}: {e}")).len()
    };
    let mut missing = Vec::new();
    for e in &panels {
        let (ours, theirs) = (series(e, "etcd-metastore"), series(e, "etcd-real"));
        if ours == 0 {
            missing.push(format!("panel {e}: MetaStore none, etcd {theirs}"));
        }
    }
    // Each metric the alerts select, by job.
    let rules = deploy_file("etcd-alerts.yaml");
    let alerts = alert_exprs(&rules);
    assert_eq!(alerts.len(), 15, "{alerts:?}");
    for (name, expr) in &alerts {
        // Every rule evaluates (firing or not) on both.
        prom.query(expr).unwrap_or_else(|e| panic!("{name}: {e}"));
        for metric in metric_names(expr) {
            let count = |job: &str| series(&format!("{metric}{{job=\"{job}\"}}"), job);
            let (ours, theirs) = (count("etcd-metastore"), count("etcd-real"));
            if theirs > 0 && ours == 0 {
                missing.push(format!("alert {name}: {metric}: MetaStore none, etcd {theirs}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}\n{}", missing.join("\n"), prom.log());
    // Sanity: the dashboard's failed-RPC panel counts nothing on a healthy
    // MetaStore, its RPC rate something.
    let rate =
        prom.query(r#"sum(rate(grpc_server_started_total{job="etcd-metastore",grpc_type="unary"}[1m]))"#).unwrap();
    let v = rate[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    assert!(v > 0.0, "RPC rate {rate:?}");
}

/// etcd's families MetaStore does not serve, each for a reason
/// docs/operations.md gives ("What /metrics serves").
const NOT_SERVED: &[&str] = &[
    // bbolt's internals.
    "etcd_debugging_disk_backend_commit_rebalance_duration_seconds",
    "etcd_debugging_disk_backend_commit_spill_duration_seconds",
    "etcd_debugging_disk_backend_commit_write_duration_seconds",
    "etcd_mvcc_db_open_read_transactions",
    // The v2 store, the gRPC proxy, Go.
    "etcd_debugging_store_expires_total",
    "etcd_debugging_store_reads_total",
    "etcd_debugging_store_watch_requests_total",
    "etcd_debugging_store_watchers",
    "etcd_debugging_store_writes_total",
    "etcd_grpc_proxy_cache_hits_total",
    "etcd_grpc_proxy_cache_keys_total",
    "etcd_grpc_proxy_cache_misses_total",
    "etcd_grpc_proxy_events_coalescing_total",
    "etcd_grpc_proxy_watchers_coalescing_total",
    "etcd_server_go_version",
    "etcd_debugging_snap_save_marshalling_duration_seconds",
    // etcd's .snap.db files.
    "etcd_snap_db_fsync_duration_seconds",
    "etcd_snap_db_save_total_duration_seconds",
    "etcd_snap_fsync_duration_seconds",
    // Not yet.
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_mvcc_pending_events_total",
    "etcd_server_learner_promote_failures",
    "etcd_network_server_stream_failures_total",
];

/// `name type` of every family a member's /metrics declares.
fn families(addr: &str) -> std::collections::BTreeMap<String, String> {
    let (code, body) = testkit::metrics::http_get(addr, "/metrics", Duration::from_secs(10)).expect("scrape");
    assert_eq!(code, 200);
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Every family etcd serves (but Go's and the listed ones) MetaStore serves
/// with the same type; the list holds no family MetaStore does serve.
fn same_families_as_etcd(ms: &Cluster, etcd: &Cluster) {
    let ours = families(&format!("127.0.0.1:{}", ms.member(0).client_port()));
    let theirs = families(&format!("127.0.0.1:{}", etcd.member(0).client_port()));
    let mut wrong = Vec::new();
    for (name, kind) in &theirs {
        if name.starts_with("go_") || name.starts_with("promhttp_") || NOT_SERVED.contains(&name.as_str()) {
            continue;
        }
        match ours.get(name) {
            Some(k) if k == kind => {}
            other => wrong.push(format!("{name}: etcd {kind}, MetaStore {other:?}")),
        }
    }
    for name in NOT_SERVED {
        if ours.contains_key(*name) {
            wrong.push(format!("{name} is served: take it off NOT_SERVED"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(ours.len() >= 70, "{} families", ours.len());
}

/// etcd's alerts, with their `for` durations cut to zero, fire on MetaStore
/// under the faults they are written for, and none fires before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcds_alerts_fire_on_metastore_under_faults() {
    const QUOTA: u64 = 4 << 20;
    let quota = QUOTA.to_string();
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &["--quota-backend-bytes", &quota]);
    let leader = c.wait_leader(Duration::from_secs(15)).expect("a leader");
    let rules = cut_for_durations(&deploy_file("etcd-alerts.yaml"));
    let prom = Prometheus::start(&[("etcd", cluster_targets(&c))], Some(&rules));
    load(c.endpoints(), Instant::now() + Duration::from_secs(4)).await;
    prom.wait_scrapes(4, Duration::from_secs(30));
    // Healthy and busy: nothing fires.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(prom.firing(), Vec::<Value>::new(), "alerts on a healthy cluster");

    // A follower's disk: every WAL fsync takes 700 ms.
    let slow = (leader + 1) % 3;
    let slow_target = format!("127.0.0.1:{}", c.member(slow).client_port());
    c.member(slow).set_failpoint("wal::sync", "sleep(700)");
    let mut client = etcd_client::Client::connect([c.member(leader).endpoint()], None).await.expect("connect");
    let end = Instant::now() + FIRE_TIMEOUT;
    let fired = loop {
        client.put("slow", "disk", None).await.expect("put");
        let f = prom.firing();
        if let Some(a) =
            f.iter().find(|a| a["alertname"] == "etcdHighFsyncDurations" && a["instance"] == slow_target.as_str())
        {
            break a.clone();
        }
        assert!(Instant::now() < end, "etcdHighFsyncDurations not firing; firing: {f:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fired["severity"], "warning", "{fired}");
    c.member(slow).set_failpoint("wal::sync", "off");

    // The store nearly at its quota.
    let value = "q".repeat(100 << 10);
    for i in 0.. {
        let size = client.status().await.expect("status").db_size() as u64;
        if size * 100 > QUOTA * 96 {
            break;
        }
        assert!(i < 100, "the store never neared its quota: {size}");
        if let Err(e) = client.put(format!("fill/{i}"), value.as_str(), None).await {
            assert!(e.to_string().contains("database space exceeded"), "{e}");
            break;
        }
    }
    prom.wait_firing("etcdDatabaseQuotaLowSpace", FIRE_TIMEOUT, |_| true).unwrap();

    // Members stop: one, then a majority.
    let (first, second) = ((leader + 1) % 3, (leader + 2) % 3);
    c.member_mut(first).kill9();
    prom.wait_firing("etcdMembersDown", FIRE_TIMEOUT, |_| true).unwrap();
    c.member_mut(second).kill9();
    prom.wait_firing("etcdInsufficientMembers", FIRE_TIMEOUT, |_| true).unwrap();
    let survivor = format!("127.0.0.1:{}", c.member(leader).client_port());
    prom.wait_firing("etcdNoLeader", FIRE_TIMEOUT, |a| a["instance"] == survivor.as_str()).unwrap();
}

/// The rules with every `for:` at zero, so an alert fires at its first
/// evaluation that finds its condition.
fn cut_for_durations(rules: &str) -> String {
    let out: Vec<String> = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    assert!(out.iter().filter(|l| l.trim() == "for: 0s").count() >= 10);
    out.join("\n")
}

/// Counters move with what they count: puts, ranges, txns, deletes, a
/// compaction's pass on the compactor thread, leases, health checks, and
/// the gRPC methods' started/handled series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_the_requests() {
    let s = crate::common::metastore(&[]);
    let mut c = crate::common::client(&s).await;
    let m = |name: &str| testkit::metric(&s, name);
    let before =
        (m("etcd_mvcc_put_total"), m("etcd_mvcc_range_total"), m("etcd_mvcc_txn_total"), m("etcd_mvcc_delete_total"));
    for i in 0..10 {
        c.put("k", format!("v{i}"), None).await.unwrap();
    }
    c.get("k", None).await.unwrap();
    c.delete("k", None).await.unwrap();
    // As etcd, a txn counts when it did more than one thing, a compare
    // being a range.
    c.txn(etcd_client::Txn::new().and_then([etcd_client::TxnOp::put("t", "1", None)])).await.unwrap();
    let version_is_1 = etcd_client::Compare::version("t", etcd_client::CompareOp::Equal, 1);
    c.txn(etcd_client::Txn::new().when([version_is_1]).and_then([etcd_client::TxnOp::put("t", "2", None)]))
        .await
        .unwrap();
    let rev = c.put("k", "last", None).await.unwrap().header().unwrap().revision();
    // Ten puts, the two txns', the last.
    assert_eq!(m("etcd_mvcc_put_total") - before.0, 13);
    assert_eq!(m("etcd_debugging_mvcc_put_total"), m("etcd_mvcc_put_total"));
    assert_eq!(m("etcd_mvcc_range_total") - before.1, 2);
    assert_eq!(m("etcd_mvcc_txn_total") - before.2, 1);
    assert_eq!(m("etcd_mvcc_delete_total") - before.3, 1);
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    let compacted =
        testkit::wait_until(Duration::from_secs(10), || m("etcd_debugging_mvcc_db_compaction_keys_total") >= 10);
    assert!(compacted, "compaction keys {}", m("etcd_debugging_mvcc_db_compaction_keys_total"));
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.lease_revoke(lease).await.unwrap();
    assert_eq!((m("etcd_debugging_lease_granted_total"), m("etcd_debugging_lease_revoked_total")), (1, 1));
    let health = testkit::metrics::http_get(&s.endpoint(), "/health", Duration::from_secs(5)).unwrap();
    assert_eq!(health.0, 200);
    assert_eq!(m("etcd_server_health_success"), 1);
    // etcd's default quota (2 GiB) for the default flag, 0.
    assert_eq!(m("etcd_server_quota_backend_bytes"), 2 << 30);
    let text = testkit::metrics::http_get(&s.endpoint(), "/metrics", Duration::from_secs(5)).unwrap().1;
    let put_ok = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 11"#;
    assert!(text.contains(put_ok), "{text}");
    // A refused request is handled with its code.
    assert!(c.get("k", Some(etcd_client::GetOptions::new().with_revision(1))).await.is_err());
    let text = testkit::metrics::http_get(&s.endpoint(), "/metrics", Duration::from_secs(5)).unwrap().1;
    let compacted = r#"grpc_server_handled_total{grpc_code="OutOfRange",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#;
    assert!(text.contains(compacted), "{text}");
    // A call whose client gives up while it waits is handled as Canceled.
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.lock("held", Some(etcd_client::LockOptions::new().with_lease(lease))).await.unwrap();
    let waiter_lease = c.lease_grant(60, None).await.unwrap().id();
    let url = s.url();
    let waiter = tokio::spawn(async move {
        let mut conn = etcd_client::Client::connect([url], None).await.unwrap();
        conn.lock("held", Some(etcd_client::LockOptions::new().with_lease(waiter_lease))).await
    });
    let scrape = || testkit::metrics::http_get(&s.endpoint(), "/metrics", Duration::from_secs(5)).map(|r| r.1);
    let received =
        r#"grpc_server_msg_received_total{grpc_method="Lock",grpc_service="v3lockpb.Lock",grpc_type="unary"} 2"#;
    let arrived = testkit::wait_until(Duration::from_secs(10), || scrape().is_ok_and(|t| t.contains(received)));
    assert!(arrived, "the waiting Lock call never arrived");
    waiter.abort();
    let canceled = r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="Lock",grpc_service="v3lockpb.Lock",grpc_type="unary"} 1"#;
    let seen = testkit::wait_until(Duration::from_secs(10), || scrape().is_ok_and(|t| t.contains(canceled)));
    let text = scrape().unwrap();
    let lock: Vec<&str> = text.lines().filter(|l| l.contains("Lock") && !l.ends_with(" 0")).collect();
    assert!(seen, "no Canceled Lock call counted: {lock:#?}");
}
