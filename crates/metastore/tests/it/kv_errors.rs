//! Every KV error a client can cause, with etcd v3.5's exact gRPC code and
//! message, and the rule that a failed request leaves the revision alone.
//! (An invalid sort option cannot be sent through the typed client.)

use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};

use crate::common::{client, ServerProcess};
use crate::kv::{check_header, current_rev, keys, server, start};

const INVALID_ARGUMENT: &str = "InvalidArgument";
const OUT_OF_RANGE: &str = "OutOfRange";
const NOT_FOUND: &str = "NotFound";

const EMPTY_KEY: &str = "etcdserver: key is not provided";
const KEY_NOT_FOUND: &str = "etcdserver: key not found";
const VALUE_PROVIDED: &str = "etcdserver: value is provided";
const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const TOO_LARGE: &str = "etcdserver: request is too large";

/// The gRPC status of a failed call as (code name, message).
fn status<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) -> (String, String) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) => (format!("{:?}", s.code()), s.message().to_string()),
        Err(e) => ("not a gRPC status".to_string(), e.to_string()),
        Ok(v) => {
            let mut v = format!("{v:?}");
            v.truncate(300);
            ("success".to_string(), v)
        }
    }
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>, code: &str, message: &str, what: &str) {
    assert_eq!(status(r), (code.to_string(), message.to_string()), "{what}");
}

/// Asserts that failed requests left the revision where it was.
async fn assert_rev(c: &mut Client, rev: i64) {
    assert_eq!(current_rev(c).await, rev, "a failed request must not change the revision");
}

fn puts(prefix: &str, n: usize) -> Vec<TxnOp> {
    (0..n).map(|i| TxnOp::put(format!("{prefix}{i}"), "v", None)).collect()
}

fn gets(prefix: &str, n: usize) -> Vec<TxnOp> {
    (0..n).map(|i| TxnOp::get(format!("{prefix}{i}"), None)).collect()
}

fn compares(n: usize) -> Vec<Compare> {
    (0..n).map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0)).collect()
}

// ---------------------------------------------------------------- Validation

#[tokio::test]
async fn empty_key_everywhere() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v", None).await.unwrap();
    let e = |r, what| assert_status(r, INVALID_ARGUMENT, EMPTY_KEY, what);

    e(status_of(c.get("", None).await), "range");
    e(status_of(c.get("", Some(GetOptions::new().with_range("z"))).await), "range with range_end");
    e(status_of(c.put("", "v", None).await), "put");
    e(status_of(c.delete("", None).await), "delete");
    e(status_of(c.delete("", Some(DeleteOptions::new().with_range("z"))).await), "delete with range_end");
    let txns = [
        ("compare key", Txn::new().when([Compare::value("", CompareOp::Equal, "x")])),
        ("compare key with range_end", Txn::new().when([Compare::version("", CompareOp::Equal, 0).with_range("z")])),
        (
            "second compare key",
            Txn::new().when([Compare::version("k", CompareOp::Equal, 1), Compare::version("", CompareOp::Equal, 0)]),
        ),
        ("put in then", Txn::new().and_then([TxnOp::put("", "v", None)])),
        ("range in then", Txn::new().and_then([TxnOp::get("", None)])),
        ("delete in then", Txn::new().and_then([TxnOp::delete("", None)])),
        ("put in else", Txn::new().or_else([TxnOp::put("", "v", None)])),
        ("range in else, never taken", Txn::new().and_then([TxnOp::get("k", None)]).or_else([TxnOp::get("", None)])),
        (
            "nested compare key",
            Txn::new().and_then([TxnOp::txn(Txn::new().when([Compare::value("", CompareOp::Equal, "")]))]),
        ),
        ("nested op", Txn::new().and_then([TxnOp::txn(Txn::new().or_else([TxnOp::delete("", None)]))])),
        // Validation comes before the duplicate check.
        ("two empty puts", Txn::new().and_then([TxnOp::put("", "1", None), TxnOp::put("", "2", None)])),
    ];
    for (what, t) in txns {
        e(status_of(c.txn(t).await), what);
    }
    assert_rev(&mut c, 2).await;
}

/// Lets `assert_status` take results of different response types through one
/// closure.
fn status_of<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) -> Result<(), etcd_client::Error> {
    match r {
        Ok(v) => {
            let mut v = format!("unexpected success: {v:?}");
            v.truncate(300);
            Err(etcd_client::Error::Internal(v))
        }
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn put_flags_that_contradict_the_request() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v", None).await.unwrap();
    for key in ["k", "missing"] {
        assert_status(
            c.put(key, "value", Some(PutOptions::new().with_ignore_value())).await,
            INVALID_ARGUMENT,
            VALUE_PROVIDED,
            "ignore_value with a value",
        );
        assert_status(
            c.put(key, "v", Some(PutOptions::new().with_ignore_lease().with_lease(7))).await,
            INVALID_ARGUMENT,
            LEASE_PROVIDED,
            "ignore_lease with a lease",
        );
        assert_status(
            c.txn(Txn::new().and_then([TxnOp::put(key, "value", Some(PutOptions::new().with_ignore_value()))])).await,
            INVALID_ARGUMENT,
            VALUE_PROVIDED,
            "ignore_value with a value in a txn",
        );
        // Checked before the compares, so even in a branch not taken.
        assert_status(
            c.txn(Txn::new().when([Compare::version("k", CompareOp::Equal, 1)]).or_else([TxnOp::put(
                key,
                "v",
                Some(PutOptions::new().with_ignore_lease().with_lease(7)),
            )]))
            .await,
            INVALID_ARGUMENT,
            LEASE_PROVIDED,
            "ignore_lease with a lease in a txn",
        );
    }
    assert_rev(&mut c, 2).await;
}

#[tokio::test]
async fn ignore_value_and_ignore_lease_need_an_existing_key() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v", None).await.unwrap();
    c.put("deleted", "v", None).await.unwrap();
    c.delete("deleted", None).await.unwrap();
    for key in ["missing", "deleted"] {
        assert_status(
            c.put(key, "", Some(PutOptions::new().with_ignore_value())).await,
            INVALID_ARGUMENT,
            KEY_NOT_FOUND,
            "ignore_value on a missing key",
        );
        assert_status(
            c.put(key, "v", Some(PutOptions::new().with_ignore_lease())).await,
            INVALID_ARGUMENT,
            KEY_NOT_FOUND,
            "ignore_lease on a missing key",
        );
        assert_status(
            c.txn(Txn::new().and_then([
                TxnOp::put("other", "x", None),
                TxnOp::put(key, "", Some(PutOptions::new().with_ignore_value())),
            ]))
            .await,
            INVALID_ARGUMENT,
            KEY_NOT_FOUND,
            "ignore_value on a missing key in a txn",
        );
        assert_status(
            c.txn(
                Txn::new()
                    .when([Compare::version("k", CompareOp::Equal, 0)])
                    .and_then([TxnOp::put("other", "x", None)])
                    .or_else([TxnOp::txn(Txn::new().and_then([TxnOp::put(
                        key,
                        "v",
                        Some(PutOptions::new().with_ignore_lease()),
                    )]))]),
            )
            .await,
            INVALID_ARGUMENT,
            KEY_NOT_FOUND,
            "ignore_lease on a missing key in a nested txn",
        );
    }
    // The whole txn failed: its other put did not happen.
    assert!(c.get("other", None).await.unwrap().kvs().is_empty());
    assert_rev(&mut c, 4).await;

    // In a branch that is not taken, the check does not apply.
    let t = c
        .txn(
            Txn::new()
                .when([Compare::version("k", CompareOp::Equal, 0)])
                .and_then([TxnOp::put("missing", "", Some(PutOptions::new().with_ignore_value()))])
                .or_else([TxnOp::put("other", "x", None)]),
        )
        .await
        .unwrap();
    check_header(t.header(), 5);
    assert!(!t.succeeded());
}

#[tokio::test]
async fn put_with_a_lease_that_does_not_exist() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v", None).await.unwrap();
    assert_status(
        c.put("k", "v2", Some(PutOptions::new().with_lease(0x1234))).await,
        NOT_FOUND,
        LEASE_NOT_FOUND,
        "put with an unknown lease",
    );
    assert_status(
        c.put("new", "v", Some(PutOptions::new().with_lease(-5))).await,
        NOT_FOUND,
        LEASE_NOT_FOUND,
        "put with a negative lease",
    );
    assert_status(
        c.txn(
            Txn::new()
                .and_then([TxnOp::put("a", "v", None), TxnOp::put("b", "v", Some(PutOptions::new().with_lease(99)))]),
        )
        .await,
        NOT_FOUND,
        LEASE_NOT_FOUND,
        "txn put with an unknown lease",
    );
    assert!(c.get("a", None).await.unwrap().kvs().is_empty(), "the failed txn wrote nothing");
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    assert_rev(&mut c, 2).await;
    // Not checked in a branch that is not taken.
    let t = c
        .txn(Txn::new().when([Compare::value("k", CompareOp::Equal, "nope")]).and_then([TxnOp::put(
            "b",
            "v",
            Some(PutOptions::new().with_lease(99)),
        )]))
        .await
        .unwrap();
    check_header(t.header(), 2);
    assert!(!t.succeeded());
}

// ---------------------------------------------------------------- Revisions

#[tokio::test]
async fn future_revision() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v1", None).await.unwrap();
    c.put("k", "v2", None).await.unwrap();
    let rev = 3;
    for future in [rev + 1, rev + 100] {
        assert_status(
            c.get("k", Some(GetOptions::new().with_revision(future))).await,
            OUT_OF_RANGE,
            FUTURE_REV,
            "range",
        );
        assert_status(
            c.get("k", Some(GetOptions::new().with_revision(future).with_serializable())).await,
            OUT_OF_RANGE,
            FUTURE_REV,
            "serializable range",
        );
        assert_status(
            c.get("k", Some(GetOptions::new().with_revision(future).with_count_only().with_prefix())).await,
            OUT_OF_RANGE,
            FUTURE_REV,
            "count_only range",
        );
        assert_status(
            c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(future)))])).await,
            OUT_OF_RANGE,
            FUTURE_REV,
            "range in a read-only txn",
        );
        // Checked against the revision before the txn, even though the txn
        // itself makes revision rev + 1.
        assert_status(
            c.txn(Txn::new().and_then([
                TxnOp::put("w", "x", None),
                TxnOp::get("k", Some(GetOptions::new().with_revision(future))),
            ]))
            .await,
            OUT_OF_RANGE,
            FUTURE_REV,
            "range in a write txn",
        );
        assert_status(c.compact(future, None).await, OUT_OF_RANGE, FUTURE_REV, "compact");
    }
    assert_rev(&mut c, rev).await;
    // The current revision itself is fine.
    let g = c.get("k", Some(GetOptions::new().with_revision(rev))).await.unwrap();
    check_header(g.header(), rev);
}

#[tokio::test]
async fn compacted_revision() {
    let (_s, mut c) = start(&[]).await;
    for i in 0..5 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // revs 2..=6
    }
    c.compact(4, None).await.unwrap();
    for old in [1, 2, 3] {
        assert_status(c.get("k", Some(GetOptions::new().with_revision(old))).await, OUT_OF_RANGE, COMPACTED, "range");
        assert_status(
            c.get("k", Some(GetOptions::new().with_revision(old).with_serializable().with_prefix())).await,
            OUT_OF_RANGE,
            COMPACTED,
            "serializable range",
        );
        assert_status(
            c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(old)))])).await,
            OUT_OF_RANGE,
            COMPACTED,
            "range in a read-only txn",
        );
        assert_status(
            c.txn(
                Txn::new().and_then([
                    TxnOp::put("w", "x", None),
                    TxnOp::get("k", Some(GetOptions::new().with_revision(old))),
                ]),
            )
            .await,
            OUT_OF_RANGE,
            COMPACTED,
            "range in a write txn",
        );
    }
    // Compacting at or below the compacted revision.
    for old in [4, 3, 1] {
        assert_status(c.compact(old, None).await, OUT_OF_RANGE, COMPACTED, "compact again");
    }
    assert!(c.get("w", None).await.unwrap().kvs().is_empty());
    assert_rev(&mut c, 6).await;
    // The compacted revision itself is still readable.
    let g = c.get("k", Some(GetOptions::new().with_revision(4))).await.unwrap();
    assert_eq!(g.kvs()[0].value(), b"v2");
}

// ---------------------------------------------------------------- Txn limits

#[tokio::test]
async fn too_many_txn_ops_with_max_txn_ops_4() {
    let (_s, mut c) = start(&["--max-txn-ops", "4"]).await;
    let tm = |r, what| assert_status(r, INVALID_ARGUMENT, TOO_MANY_OPS, what);

    // At the limit: fine.
    let t = c.txn(Txn::new().when(compares(4)).and_then(puts("a", 4)).or_else(gets("b", 4))).await.unwrap();
    check_header(t.header(), 2);
    assert!(t.succeeded());

    tm(status_of(c.txn(Txn::new().and_then(puts("p", 5))).await), "5 success ops");
    tm(status_of(c.txn(Txn::new().or_else(puts("p", 5))).await), "5 failure ops");
    tm(status_of(c.txn(Txn::new().when(compares(5))).await), "5 compares");
    tm(status_of(c.txn(Txn::new().and_then(gets("g", 5))).await), "5 ranges (read-only txn)");
    // Counted before keys are validated.
    let mut ops = puts("p", 4);
    ops.push(TxnOp::put("", "v", None));
    tm(status_of(c.txn(Txn::new().and_then(ops)).await), "5 ops, one with an empty key");

    // Nested txns get what their parent left: max - max(compares, success, failure).
    let nested = |outer: usize, inner: usize| {
        let mut ops = puts("o", outer - 1);
        ops.push(TxnOp::txn(Txn::new().and_then(puts("i", inner))));
        Txn::new().and_then(ops)
    };
    tm(status_of(c.txn(nested(2, 3)).await), "2 ops, one a txn of 3");
    tm(status_of(c.txn(nested(3, 2)).await), "3 ops, one a txn of 2");
    tm(
        status_of(c.txn(Txn::new().when(compares(3)).and_then([TxnOp::txn(Txn::new().when(compares(2)))])).await),
        "3 compares, a nested txn with 2 compares",
    );
    assert_rev(&mut c, 2).await;

    let t = c.txn(nested(2, 2)).await.unwrap();
    check_header(t.header(), 3);
    let t = c.txn(nested(3, 1)).await.unwrap();
    check_header(t.header(), 4);
}

#[tokio::test]
async fn too_many_txn_ops_default_limit_is_128() {
    let (_s, mut c) = start(&[]).await;
    let t = c.txn(Txn::new().and_then(puts("k", 128))).await.unwrap();
    check_header(t.header(), 2);
    assert_eq!(c.get("k", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 128);
    let t = c.txn(Txn::new().when(compares(128)).or_else(gets("g", 128))).await.unwrap();
    check_header(t.header(), 2);

    for (what, t) in [
        ("129 puts", Txn::new().and_then(puts("x", 129))),
        ("129 compares", Txn::new().when(compares(129))),
        ("129 failure ranges", Txn::new().or_else(gets("g", 129))),
    ] {
        assert_status(c.txn(t).await, INVALID_ARGUMENT, TOO_MANY_OPS, what);
    }
    assert_rev(&mut c, 2).await;
}

#[tokio::test]
async fn duplicate_keys_in_a_txn() {
    let (_s, mut c) = start(&[]).await;
    c.put("k", "v", None).await.unwrap();
    let put = |k: &str| TxnOp::put(k, "v", None);
    let del = |k: &str| TxnOp::delete(k, None);
    let del_range = |k: &str, end: &str| TxnOp::delete(k, Some(DeleteOptions::new().with_range(end)));
    let nested_then = |ops: Vec<TxnOp>| TxnOp::txn(Txn::new().and_then(ops));
    let nested_else = |ops: Vec<TxnOp>| TxnOp::txn(Txn::new().or_else(ops));
    let then = |ops: Vec<TxnOp>| Txn::new().and_then(ops);

    let rejected = [
        ("two puts", then(vec![put("a"), put("a")])),
        ("two puts among others", then(vec![put("a"), put("b"), TxnOp::get("a", None), put("a")])),
        ("two puts in the failure branch", Txn::new().or_else(vec![put("a"), put("a")])),
        ("delete then put", then(vec![del("a"), put("a")])),
        ("put then delete", then(vec![put("a"), del("a")])),
        ("put inside a deleted range", then(vec![del_range("a", "c"), put("b")])),
        ("put at the start of a deleted range", then(vec![put("a"), del_range("a", "c")])),
        (
            "put inside a deleted prefix",
            then(vec![TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix())), put("d/x")]),
        ),
        ("outer put and nested put", then(vec![put("a"), nested_then(vec![put("a")])])),
        ("outer put and nested else put", then(vec![put("a"), nested_else(vec![put("a")])])),
        ("outer delete and nested put", then(vec![del_range("a", "z"), nested_then(vec![put("q")])])),
        ("two nested txns putting one key", then(vec![nested_then(vec![put("a")]), nested_else(vec![put("a")])])),
        ("nested txn with two puts", then(vec![nested_then(vec![put("a"), put("a")])])),
    ];
    for (what, t) in rejected {
        assert_status(c.txn(t).await, INVALID_ARGUMENT, DUPLICATE_KEY, what);
    }
    assert_rev(&mut c, 2).await;

    let mut rev = 2;
    let allowed = [
        ("one key in then and else", Txn::new().and_then(vec![put("a")]).or_else(vec![put("a")])),
        (
            "one key in a nested then and else",
            then(vec![TxnOp::txn(Txn::new().and_then(vec![put("a")]).or_else(vec![put("a")]))]),
        ),
        ("two deletes of one key", then(vec![del("a"), del("a"), del_range("a", "c")])),
        ("put at the end of a deleted range", then(vec![del_range("a", "c"), put("c")])),
        ("put and range of one key", then(vec![put("a"), TxnOp::get("a", None), put("b")])),
        ("nested delete and outer put elsewhere", then(vec![nested_then(vec![del("x")]), put("y")])),
        // etcd's overlap check takes a from-key delete's range_end "\0"
        // literally (an empty interval), so a put after it passes.
        (
            "put after a from-key delete (etcd quirk)",
            then(vec![TxnOp::delete("zz", Some(DeleteOptions::new().with_from_key())), put("zzz")]),
        ),
    ];
    for (what, t) in allowed {
        let r = c.txn(t).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        rev += 1;
        check_header(r.header(), rev);
    }
    assert_eq!(
        keys(c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap().kvs()),
        ["a", "b", "c", "k", "y", "zzz"]
    );
}

// ---------------------------------------------------------------- Size limits

#[tokio::test]
async fn request_too_large() {
    let (_s, mut c) = start(&["--max-request-bytes", "1024"]).await;
    let small = "s".repeat(512);
    let big = "b".repeat(2048);
    let r = c.put("small", small.as_str(), None).await.unwrap();
    check_header(r.header(), 2);

    assert_status(c.put("big", big.as_str(), None).await, INVALID_ARGUMENT, TOO_LARGE, "put");
    assert_status(c.put(big.as_str(), "v", None).await, INVALID_ARGUMENT, TOO_LARGE, "put with a big key");
    assert_status(
        c.txn(Txn::new().and_then([TxnOp::put("big", big.as_str(), None)])).await,
        INVALID_ARGUMENT,
        TOO_LARGE,
        "txn",
    );
    assert_status(
        c.txn(
            Txn::new().and_then((0..4).map(|i| TxnOp::put(format!("k{i}"), small.as_str(), None)).collect::<Vec<_>>()),
        )
        .await,
        INVALID_ARGUMENT,
        TOO_LARGE,
        "txn of small puts that add up",
    );
    assert_status(
        c.delete(big.as_str(), Some(DeleteOptions::new().with_range(format!("{big}z")))).await,
        INVALID_ARGUMENT,
        TOO_LARGE,
        "delete with big keys",
    );
    assert_rev(&mut c, 2).await;
    assert!(c.get("big", None).await.unwrap().kvs().is_empty());

    // Reads do not go through raft: a big range request is fine.
    let g = c.get(big.as_str(), None).await.unwrap();
    check_header(g.header(), 2);
    assert_eq!(g.count(), 0);
}

/// Beyond `--max-request-bytes` plus gRPC's 512 KiB allowance the gRPC layer
/// itself refuses the message (grpc-go: ResourceExhausted, "grpc: received
/// message larger than max (N vs. M)").
#[tokio::test]
async fn request_beyond_the_grpc_receive_limit() {
    let (_s, mut c) = start(&["--max-request-bytes", "1024"]).await;
    let huge = "h".repeat(1024 + 512 * 1024 + 4096);
    let (code, message) = status(c.put("huge", huge.as_str(), None).await);
    assert_eq!(code, "ResourceExhausted", "{message}");
    assert!(message.starts_with("grpc: received message larger than max ("), "message: {message}");
    assert_rev(&mut c, 1).await;
}

// ---------------------------------------------------------------- Deadlines

/// Sends a signal to a server process (STOP freezes it, CONT resumes it).
/// kill(2) returns before a stop takes effect: each thread stops only when it
/// next runs, which on a loaded machine can take long enough for a running
/// thread to answer one more request. So a STOP waits until every thread of
/// the process shows state T in /proc.
fn signal(s: &ServerProcess, sig: &str) {
    let pid = s.pid().expect("server is running").to_string();
    let ok = std::process::Command::new("kill").args([sig, pid.as_str()]).status().expect("run kill").success();
    assert!(ok, "kill {sig} {pid}");
    if sig == "-STOP" {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(&pid) {
            assert!(Instant::now() < deadline, "server {pid} did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in its
/// `/proc/<pid>/task/<tid>/stat`; the state follows the parenthesised name).
fn all_threads_stopped(pid: &str) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read the server's threads");
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        // A thread that exited between the listing and the read is no runner.
        stat.is_empty() || state == Some('T')
    })
}

/// A request whose deadline passes fails with DeadlineExceeded or Cancelled
/// (depending on who notices first) instead of hanging, and the server stays
/// healthy. The etcd-client deadline is enforced by the client (tonic does not
/// send `grpc-timeout` for it), so the reliable way to make a request outlive
/// it is a server that does not answer: the process is frozen with SIGSTOP.
#[tokio::test]
async fn client_deadline() {
    let s = server(&[]);
    let mut c = client(&s).await;
    c.put("k", "v", None).await.unwrap();
    let is_deadline = |code: &str| code == "DeadlineExceeded" || code == "Cancelled";

    // A 1 ns deadline: each request is done in time or cut off, never stuck,
    // never another error.
    let opts = ConnectOptions::new().with_timeout(Duration::from_nanos(1));
    let mut hasty = Client::connect([s.url()], Some(opts)).await.expect("connect");
    for i in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), hasty.put(format!("hasty{i}"), "v", None))
            .await
            .expect("a put with a 1 ns deadline hung");
        let (code, message) = status(r);
        assert!(code == "success" || is_deadline(&code), "put {i}: {code} {message}");
        let r = tokio::time::timeout(Duration::from_secs(5), hasty.get("k", None))
            .await
            .expect("a range with a 1 ns deadline hung");
        let (code, message) = status(r);
        assert!(code == "success" || is_deadline(&code), "range {i}: {code} {message}");
    }

    // A 300 ms deadline against a server that does not answer.
    let opts = ConnectOptions::new().with_timeout(Duration::from_millis(300));
    let mut timed = Client::connect([s.url()], Some(opts)).await.expect("connect");
    timed.get("k", None).await.expect("range before the freeze");
    signal(&s, "-STOP");
    let started = Instant::now();
    let put = tokio::time::timeout(Duration::from_secs(5), timed.put("frozen", "v", None)).await;
    let put_took = started.elapsed();
    let started = Instant::now();
    let get = tokio::time::timeout(Duration::from_secs(5), timed.get("k", None)).await;
    let get_took = started.elapsed();
    let txn =
        tokio::time::timeout(Duration::from_secs(5), timed.txn(Txn::new().and_then([TxnOp::get("k", None)]))).await;
    signal(&s, "-CONT");
    let (code, message) = status(put.expect("put hung past its deadline"));
    assert!(is_deadline(&code), "put: {code} {message}");
    let (code, message) = status(get.expect("range hung past its deadline"));
    assert!(is_deadline(&code), "range: {code} {message}");
    let (code, message) = status(txn.expect("txn hung past its deadline"));
    assert!(is_deadline(&code), "txn: {code} {message}");
    assert!(put_took < Duration::from_secs(2), "put took {put_took:?}");
    assert!(get_took < Duration::from_secs(2), "range took {get_took:?}");

    // The server is fine afterwards. (A write cut off by its deadline may
    // still be applied: its outcome is unknown, as in etcd.)
    let r = c.put("after", "v", None).await.unwrap();
    let rev = r.header().unwrap().revision();
    let g = timed.get("after", None).await.unwrap();
    // The frozen put may land after "after", so the header may be ahead.
    assert!(g.header().unwrap().revision() >= rev);
    assert_eq!(g.kvs()[0].mod_revision(), rev);
}
