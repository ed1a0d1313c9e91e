//! Process lifecycle: flags that are wrong exit with code 2 and a message,
//! `--version` answers, SIGTERM shuts down cleanly keeping every write, and a
//! data dir survives a clean restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Runs the binary to completion; a run that does not end within 20 s (a
/// server that started when it should have refused) is killed and reported
/// with no exit code.
fn run_binary(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metastore"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run metastore");
    let ended = wait_until(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
    }
    child.wait_with_output().expect("collect output")
}

/// Starts the binary on `s`'s data dir (after `s` stopped), on any ports.
fn run_on_data_dir(s: &ServerProcess) -> std::process::Output {
    let dir = s.data_dir();
    let dir = dir.to_str().expect("utf-8 temp path");
    run_binary(&[
        "--data-dir",
        dir,
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--listen-peer-urls",
        "http://127.0.0.1:0",
    ])
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["--no-such-flag"],
        &["--snapshot-count", "many"],
        &["--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"],
        &["--heartbeat-interval", "500", "--election-timeout", "1000"],
        &["--listen-client-urls", "127.0.0.1:2379"],
        &["--storage", "tape"],
        &["--initial-cluster-state", "sideways"],
        &["--log-level", "chatty"],
    ];
    for args in cases {
        let out = run_binary(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?} should explain itself");
    }
    let out = run_binary(&["--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("couldn't find local name \"a\""));
    // etcd takes `--auth-token`'s options at server creation: exit 1.
    let out = run_binary(&["--auth-token", "jwt,sign-method=RS256"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth: missing key data"));
}

#[test]
fn version_flag() {
    let out = run_binary(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("metastore Version:"), "{text}");
    assert!(text.contains("etcd API Version: 3.5"), "{text}");
}

#[tokio::test]
async fn sigterm_is_graceful_and_keeps_writes() {
    let mut s = metastore(&[]);
    let mut c = client(&s).await;
    for i in 0..50 {
        c.put(format!("k{i:02}"), format!("v{i}"), None).await.unwrap();
    }
    assert_eq!(s.terminate(Duration::from_secs(10)), Some(0), "clean exit on SIGTERM");
    assert!(s.log_text().contains("stopped"), "shutdown should be logged:\n{}", s.log_text());
    s.restart();
    let mut c = client(&s).await;
    let resp = c.get("k", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(resp.kvs().len(), 50);
    assert_eq!(resp.header().unwrap().revision(), 51);
    assert_eq!(resp.kvs()[49].value(), b"v49");
}

#[tokio::test]
async fn engine_marker_refuses_a_foreign_data_dir() {
    let mut s = metastore(&[]);
    s.terminate(Duration::from_secs(10));
    let marker = s.data_dir().join("member").join("engine");
    let engine = testkit::storage_engine();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), engine);
    let other = if engine == "memory" { "rocksdb" } else { "memory" };
    std::fs::write(&marker, other).unwrap();
    let out = run_on_data_dir(&s);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("was written by the {other} engine")), "{stderr}");
    assert!(Path::new(&marker).exists());
}

/// The real thing, both ways: a data dir one engine wrote is refused by the
/// other, and the refused start leaves it usable by its own engine.
#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn each_engine_refuses_the_other_engines_data_dir() {
    for (first, second) in [("memory", "rocksdb"), ("rocksdb", "memory")] {
        let mut s = metastore(&["--storage", first]);
        client(&s).await.put("k", "v", None).await.unwrap();
        assert_eq!(s.terminate(Duration::from_secs(10)), Some(0));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_metastore"))
            .args(["--data-dir", &s.data_dir().display().to_string(), "--storage", second])
            .args(["--listen-client-urls", "http://127.0.0.1:0", "--listen-peer-urls", "http://127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{first} -> {second}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("was written by the {first} engine")), "{stderr}");
        assert_eq!(s.data_dir().join("member").join("rocksdb").exists(), first == "rocksdb");
        s.restart();
        let resp = client(&s).await.get("k", None).await.unwrap();
        assert_eq!(resp.kvs()[0].value(), b"v", "{first} data dir still serves after the refused start");
    }
}

/// A WAL damaged in the middle (not a torn tail) must stop the server with a
/// clear error instead of silently dropping acknowledged entries.
#[tokio::test]
async fn corrupt_wal_in_the_middle_is_a_startup_error() {
    let mut s = metastore(&[]);
    let mut c = client(&s).await;
    for i in 0..200 {
        c.put(format!("k{i:03}"), "some value to fill the log", None).await.unwrap();
    }
    assert_eq!(s.terminate(Duration::from_secs(10)), Some(0));
    let wal_dir = s.data_dir().join("member").join("wal");
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    // The segment is preallocated: flip a byte among its records, not in
    // the zeros after them.
    let records = bytes.iter().rposition(|&b| b != 0).expect("records") + 1;
    let at = records / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = run_on_data_dir(&s);
    assert_eq!(out.status.code(), Some(1), "a corrupt WAL must stop the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt"), "the error should say the WAL is corrupt: {stderr}");
}

/// On RocksDB the engine holds the state, so periodic snapshots only cut the
/// raft log: their files carry no data (a member that needs a snapshot gets
/// one dumped on demand, see cluster::lagging_member_catches_up_through_a_snapshot).
#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn rocksdb_periodic_snapshots_carry_no_data() {
    let mut s = metastore(&["--storage", "rocksdb", "--snapshot-count", "20"]);
    let mut c = client(&s).await;
    let value = "v".repeat(1000);
    for i in 0..100 {
        c.put(format!("k{i:03}"), value.as_str(), None).await.unwrap();
    }
    assert_eq!(s.terminate(Duration::from_secs(10)), Some(0));
    let snaps: Vec<u64> = std::fs::read_dir(s.data_dir().join("member").join("snap"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(!snaps.is_empty() && snaps.iter().all(|&len| len < 2048), "snapshot file sizes {snaps:?}");
    assert!(s.log_text().contains(r#""with_data":false"#), "{}", s.log_text());
    s.restart();
    let resp = client(&s).await.get("k", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(resp.kvs().len(), 100);
}

/// `--listen-metrics-urls` serves /metrics, /health and /version on a port
/// of their own (and nothing else there), as etcd; kubeadm's etcd command
/// line uses it.
#[tokio::test]
async fn metrics_urls_serve_metrics_and_health_only() {
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let s = metastore(&["--listen-metrics-urls", &url]);
    let addr = format!("127.0.0.1:{port}");
    let get = |path: &str| testkit::metrics::http_get(&addr, path, Duration::from_secs(5)).expect("GET");
    // The metrics port answers from the start, before there is a leader.
    let led = wait_until(Duration::from_secs(10), || get("/metrics").1.contains("etcd_server_has_leader 1"));
    let (status, body) = get("/metrics");
    assert!(led && status == 200, "{status} {body:.200}");
    assert_eq!(get("/health"), (200, r#"{"health":"true"}"#.to_string()));
    let (status, _) =
        testkit::metrics::http_post(&addr, "/v3/kv/range", r#"{"key":"YQ=="}"#, Duration::from_secs(5)).expect("POST");
    assert_eq!(status, 404, "the gateway is not on the metrics port");
    assert_eq!(testkit::http_get(&s, "/metrics").map(|r| r.0).ok(), Some(200), "still on the client port");
}

/// `--experimental-watch-progress-notify-interval`: a watcher that asked
/// for progress notifications gets one per interval while nothing changes.
#[tokio::test]
async fn watch_progress_notify_interval_is_configurable() {
    let s = metastore(&["--experimental-watch-progress-notify-interval", "300ms"]);
    let mut c = client(&s).await;
    let rev = c.put("p", "1", None).await.unwrap().header().unwrap().revision();
    let opts = etcd_client::WatchOptions::new().with_progress_notify();
    let mut stream = c.watch("p", Some(opts)).await.unwrap();
    let start = std::time::Instant::now();
    let mut progress = 0;
    while progress < 2 {
        let r = tokio::time::timeout(Duration::from_secs(3), stream.message()).await.expect("a progress notification");
        let r = r.unwrap().unwrap();
        if r.events().is_empty() && !r.created() {
            assert_eq!(r.header().unwrap().revision(), rev);
            progress += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(3), "two notifications took {:?}", start.elapsed());
    let bad = run_binary(&["--experimental-watch-progress-notify-interval", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `--log-outputs`: the log goes to every destination named.
#[tokio::test]
async fn log_outputs_name_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("member.log");
    // The file first: each line reaches it before the stderr the harness
    // waits on.
    let outputs = format!("{},stderr", file.display());
    let s = metastore(&["--log-outputs", &outputs, "--logger=zap"]);
    let text = || std::fs::read_to_string(&file).unwrap();
    let line = format!(r#""msg":"serving client requests","address":"127.0.0.1:{}""#, s.client_port);
    // The harness saw this line on stderr; the file had it first.
    assert!(text().contains(&line) && s.log_text().contains(&line), "{}", text());
    let later = wait_until(Duration::from_secs(10), || text().contains("metastore member started"));
    assert!(later, "{}", text());
}
