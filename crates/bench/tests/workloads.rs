//! Every workload of `metastore-bench`, end to end: the real binary against
//! a real MetaStore member (and the put workload against Debian's etcd, the
//! other server it must drive unchanged). Totals are small; what is checked
//! is that every request succeeds and the JSON report says so.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use testkit::ServerProcess;

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_metastore-bench"))
}

/// The server binary sits next to ours in the target dir; `cargo build
/// --workspace --bins` (scripts/test.sh) puts it there.
fn metastore_bin() -> PathBuf {
    let bin = bench_bin().with_file_name("metastore");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    bin
}

/// Runs the bench with `--json` against `server`, returns the report.
fn run(server: &ServerProcess, args: &[&str]) -> Value {
    let out = Command::new(bench_bin())
        .args(["--endpoints", &server.endpoint(), "--json", "--timeout", "60s"])
        .args(args)
        .output()
        .expect("run metastore-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

fn assert_clean(report: &Value, workload: &str, ok: u64) {
    assert_eq!(report["workload"], workload, "{report}");
    assert_eq!(report["errors_total"], 0, "{report}");
    assert_eq!(report["timed_out"], false, "{report}");
    assert_eq!(report["ok"], ok, "{report}");
    assert_eq!(report["latency_ms"]["count"], ok, "every success has a latency sample: {report}");
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["ops_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn every_workload_runs_clean_against_metastore() {
    let server = ServerProcess::metastore(&metastore_bin(), &[]);
    let put = ["put", "--key-size", "8", "--val-size", "64", "--sequential-keys", "--key-space-size", "500"];
    let r = run(&server, &[&["--conns", "4", "--clients", "20", "--total", "500"][..], &put[..]].concat());
    assert_clean(&r, "put", 500);
    assert_eq!(r["conns"], 4);
    assert_eq!(r["clients"], 20);

    // The keys the put wrote, read back both ways.
    for consistency in ["l", "s"] {
        let args = ["--conns", "2", "--clients", "8", "--total", "300", "range", "--consistency", consistency];
        let r = run(&server, &[&args[..], &["--key-size", "8", "--key-space-size", "500"]].concat());
        assert_clean(&r, "range", 300);
    }

    // Whole lists of the 500 keys, 7 a page, as Kubernetes pages them.
    let args = ["--clients", "4", "--total", "200", "range", "0", "1", "--limit", "7", "--paginate"];
    assert_clean(&run(&server, &args), "range", 200);

    // Sequential keys: random ones may repeat within a txn, which etcd
    // rejects (and the bench counts as an error, as etcd's tool does).
    let txn = ["txn-put", "--txn-ops", "3", "--sequential-keys", "--key-space-size", "50"];
    let r = run(&server, &[&["--clients", "4", "--total", "100"][..], &txn[..]].concat());
    assert_clean(&r, "txn-put", 100);

    let args = ["--conns", "2", "watch-latency", "--watchers", "20", "--streams", "4", "--put-total", "30"];
    let r = run(&server, &[&args[..], &["--put-rate", "100"]].concat());
    assert_eq!(r["errors_total"], 0, "{r}");
    // One sample per (put, watcher): every watcher saw every put.
    assert_eq!(r["latency_ms"]["count"], 30 * 20, "{r}");

    let r = run(&server, &["--clients", "5", "--total", "200", "lease-keepalive", "--ttl", "30"]);
    assert_clean(&r, "lease-keepalive", 200);
}

#[test]
fn put_runs_clean_against_etcd() {
    let etcd = ServerProcess::etcd(&[]);
    let r = run(&etcd, &["--conns", "2", "--clients", "10", "--total", "200", "put", "--val-size", "32"]);
    assert_clean(&r, "put", 200);
}

/// `--user`: with auth enabled, the bench authenticates and every request
/// carries the token, on both servers; without it every put is refused.
#[test]
fn user_flag_authenticates_against_both_servers() {
    for server in [ServerProcess::metastore(&metastore_bin(), &[]), ServerProcess::etcd(&[])] {
        let ep = server.endpoint();
        for args in [&["user", "add", "root:pw"][..], &["auth", "enable"]] {
            let (ok, out, err) = testkit::etcdctl(&ep, args);
            assert!(ok, "{:?} {args:?}: {out} {err}", server.kind);
        }
        let put = ["put", "--key-size", "8", "--val-size", "16", "--sequential-keys", "--key-space-size", "50"];
        let r = run(&server, &[&["--user", "root:pw", "--clients", "4", "--total", "100"][..], &put[..]].concat());
        assert_clean(&r, "put", 100);
        let out = Command::new(bench_bin())
            .args(["--endpoints", &ep, "--json", "--timeout", "60s", "--total", "20"])
            .args(put)
            .output()
            .expect("run metastore-bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match serde_json::from_str::<Value>(stdout.trim()) {
            Ok(r) => assert_eq!(r["ok"], 0, "{:?}: puts without a token succeeded: {r}", server.kind),
            Err(_) => assert!(!out.status.success(), "{:?}: {stdout}", server.kind),
        }
    }
}
