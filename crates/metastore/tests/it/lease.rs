//! The Lease service against etcd v3.5's semantics (`lease/lessor.go`,
//! `v3rpc/lease.go`, `etcdserver/v3_server.go`), one server per test: grant
//! with server- and client-chosen IDs and its errors, the minimum and
//! maximum TTL, keys attached by puts, TimeToLive and Leases, revoke
//! (all keys in one revision), keep-alive, expiry, and leases across a
//! restart.
//!
//! The default election timeout (1 s, heartbeat 100 ms) makes etcd's
//! minimum TTL 2 s: `ceil((3 * electionTicks / 2) * heartbeat)`. Expired
//! leases are revoked by the leader's expiry check, every 500 ms.
//!
//! `METASTORE_IT_AGAINST=etcd` runs the same tests against Debian's etcd,
//! to check the expectations themselves.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions,
};

use crate::common::*;
use crate::watch::{created, evs, fresh_server, next, server, Ev};

const NOT_FOUND: &str = "NotFound";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// The gRPC status of a failed call as (code name, message).
fn status<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) -> (String, String) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) => (format!("{:?}", s.code()), s.message().to_string()),
        Err(e) => ("not a gRPC status".to_string(), e.to_string()),
        Ok(v) => ("success".to_string(), format!("{v:?}")),
    }
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>, code: &str, message: &str) {
    assert_eq!(status(r), (code.to_string(), message.to_string()));
}

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    let r = c.lease_grant(ttl, None).await.expect("lease grant");
    assert_eq!(r.ttl(), ttl, "granted TTL");
    r.id()
}

async fn put_leased(c: &mut Client, key: &str, lease: i64) -> i64 {
    let r = c.put(key, format!("v-{key}"), Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
    r.header().unwrap().revision()
}

/// (remaining TTL, granted TTL, attached keys sorted) as TimeToLive reports.
async fn ttl_of(c: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let r = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("time to live");
    assert_eq!(r.id(), id, "TimeToLive echoes the ID");
    // etcd lists a lease's keys in map order: compare them sorted.
    let keys: BTreeSet<String> = r.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    (r.ttl(), r.granted_ttl(), keys.into_iter().collect())
}

async fn lease_ids(c: &mut Client) -> BTreeSet<i64> {
    c.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect()
}

async fn keys_with_prefix(c: &mut Client, prefix: &str, rev: i64) -> Vec<(String, i64)> {
    let r = c.get(prefix, Some(GetOptions::new().with_prefix().with_revision(rev))).await.expect("get prefix");
    r.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease())).collect()
}

async fn revision(c: &mut Client) -> i64 {
    c.get("__revision_probe__", None).await.expect("revision probe").header().unwrap().revision()
}

/// Waits, after a restart, until a linearizable read gets through.
async fn reconnect(s: &ServerProcess) -> Client {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), Client::connect([s.url()], None)).await {
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), c.get("probe", None)).await {
                return c;
            }
        }
        assert!(Instant::now() < end, "server not serving after restart; log:\n{}", s.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn grant_with_server_and_client_chosen_ids() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let rev = revision(&mut c).await;
    let r = c.lease_grant(60, None).await.unwrap();
    assert!(r.id() > 0, "server-chosen IDs are positive: {}", r.id());
    assert_eq!(r.ttl(), 60);
    assert_eq!(r.error(), "");
    assert_eq!(r.header().unwrap().revision(), rev, "a grant does not change the revision");
    let a = r.id();
    let b = grant(&mut c, 60).await;
    assert_ne!(a, b, "server-chosen IDs are unique");

    let r = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(1234))).await.unwrap();
    assert_eq!((r.id(), r.ttl()), (1234, 30));
    assert_status(
        c.lease_grant(10, Some(LeaseGrantOptions::new().with_id(1234))).await,
        "FailedPrecondition",
        "etcdserver: lease already exists",
    );
    assert_status(
        c.lease_grant(10, Some(LeaseGrantOptions::new().with_id(a))).await,
        "FailedPrecondition",
        "etcdserver: lease already exists",
    );
    // Any non-zero ID may be chosen, negative ones too.
    let r = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(-5))).await.unwrap();
    assert_eq!((r.id(), r.ttl()), (-5, 30));
    put_leased(&mut c, "neg", -5).await;
    assert_eq!(ttl_of(&mut c, -5).await.2, ["neg"]);
    c.lease_revoke(-5).await.expect("revoke a negative ID");
    // The failed grant did not change the lease.
    assert_eq!(ttl_of(&mut c, 1234).await.1, 30);
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([a, b, 1234]));
    // Only the put and the revoke of "neg" made revisions.
    assert_eq!(revision(&mut c).await, rev + 2);
}

#[tokio::test]
async fn grant_ttl_is_raised_to_the_minimum_and_capped_at_the_maximum() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    for asked in [1, 0, -5] {
        let r = c.lease_grant(asked, None).await.unwrap();
        assert_eq!(r.ttl(), 2, "TTL {asked} is raised to the 2 s minimum");
        assert_eq!(ttl_of(&mut c, r.id()).await.1, 2, "granted TTL of a lease asked for {asked}");
    }
    assert_eq!(c.lease_grant(3, None).await.unwrap().ttl(), 3);
    let r = c.lease_grant(9_000_000_000, None).await.unwrap();
    assert_eq!(r.ttl(), 9_000_000_000, "etcd's MaxLeaseTTL itself is allowed");
    let (remaining, granted, _) = ttl_of(&mut c, r.id()).await;
    assert_eq!(granted, 9_000_000_000);
    assert!(remaining > 8_999_999_000, "remaining {remaining}");
    assert_status(c.lease_grant(9_000_000_001, None).await, "OutOfRange", "etcdserver: too large lease TTL");
    assert_status(
        c.lease_grant(i64::MAX, Some(LeaseGrantOptions::new().with_id(77))).await,
        "OutOfRange",
        "etcdserver: too large lease TTL",
    );
    assert_eq!(lease_ids(&mut c).await.len(), 5);

    // The minimum follows the election timeout: 3000 ms with 300 ms ticks is
    // 10 ticks, 15 ticks x 300 ms = 4.5 s, rounded up to 5 s.
    let slow = server(&["--heartbeat-interval", "300", "--election-timeout", "3000"]);
    let mut c = client(&slow).await;
    assert_eq!(c.lease_grant(1, None).await.unwrap().ttl(), 5);
    assert_eq!(c.lease_grant(6, None).await.unwrap().ttl(), 6);
}

#[tokio::test]
async fn puts_attach_keys_and_time_to_live_reports_them() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let l1 = grant(&mut c, 60).await;
    let l2 = grant(&mut c, 120).await;
    put_leased(&mut c, "k1", l1).await;
    put_leased(&mut c, "k2", l1).await;
    put_leased(&mut c, "k3", l2).await;
    c.put("k4", "plain", None).await.unwrap();

    let (remaining, granted, keys) = ttl_of(&mut c, l1).await;
    assert_eq!(granted, 60);
    assert!((57..=60).contains(&remaining), "remaining {remaining} of a fresh 60 s lease");
    assert_eq!(keys, ["k1", "k2"]);
    let r = c.lease_time_to_live(l1, None).await.unwrap();
    assert!(r.keys().is_empty(), "keys only when asked for");
    assert_eq!(r.granted_ttl(), 60);
    assert_eq!(ttl_of(&mut c, l2).await.2, ["k3"]);
    let rev = revision(&mut c).await;
    assert_eq!(
        keys_with_prefix(&mut c, "k", rev).await,
        vec![("k1".into(), l1), ("k2".into(), l1), ("k3".into(), l2), ("k4".into(), 0)]
    );

    // A put with another lease moves the key; without one, detaches it;
    // a delete detaches it too.
    put_leased(&mut c, "k1", l2).await;
    assert_eq!(ttl_of(&mut c, l1).await.2, ["k2"]);
    assert_eq!(ttl_of(&mut c, l2).await.2, ["k1", "k3"]);
    c.put("k2", "no lease", None).await.unwrap();
    assert_eq!(ttl_of(&mut c, l1).await.2, Vec::<String>::new());
    c.delete("k3", None).await.unwrap();
    assert_eq!(ttl_of(&mut c, l2).await.2, ["k1"]);
    // A lease with no keys left still exists.
    assert!(ttl_of(&mut c, l1).await.0 > 0);

    // Puts and deletes in a txn attach and detach keys the same way.
    c.txn(Txn::new().and_then(vec![
        TxnOp::put("t1", "v", Some(PutOptions::new().with_lease(l1))),
        TxnOp::put("t2", "v", Some(PutOptions::new().with_lease(l1))),
        TxnOp::delete("k1", None),
    ]))
    .await
    .unwrap();
    assert_eq!(ttl_of(&mut c, l1).await.2, ["t1", "t2"]);
    assert_eq!(ttl_of(&mut c, l2).await.2, Vec::<String>::new());
    // Revoking deletes only what is still attached.
    let r = c.lease_revoke(l1).await.unwrap();
    let rev = r.header().unwrap().revision();
    assert_eq!(keys_with_prefix(&mut c, "", rev).await, vec![("k2".into(), 0), ("k4".into(), 0)]);

    // A missing lease: TTL -1 and nothing else, not an error.
    let r = c.lease_time_to_live(4321, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((r.id(), r.ttl(), r.granted_ttl(), r.keys().len()), (4321, -1, 0, 0));
    // A put naming a missing lease fails and writes nothing.
    let rev = revision(&mut c).await;
    assert_status(c.put("k5", "v", Some(PutOptions::new().with_lease(4321))).await, NOT_FOUND, LEASE_NOT_FOUND);
    assert_eq!(revision(&mut c).await, rev);
}

#[tokio::test]
async fn leases_lists_every_lease() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    assert!(lease_ids(&mut c).await.is_empty());
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 30).await;
    let r = c.lease_grant(90, Some(LeaseGrantOptions::new().with_id(7))).await.unwrap();
    assert_eq!(r.id(), 7);
    let resp = c.leases().await.unwrap();
    assert!(resp.header().unwrap().revision() > 0, "Leases has a header");
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([a, b, 7]));
    c.lease_revoke(b).await.unwrap();
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([a, 7]));
}

#[tokio::test]
async fn revoke_deletes_every_attached_key_in_one_revision() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let l = grant(&mut c, 60).await;
    for k in ["r/5", "r/1", "r/3", "r/2", "r/4"] {
        put_leased(&mut c, k, l).await;
    }
    c.put("r/keep", "plain", None).await.unwrap();
    let mut ws = c.watch("r/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
    let id = created(&mut ws).await;
    let before = revision(&mut c).await;

    let r = c.lease_revoke(l).await.expect("revoke");
    let rev = r.header().unwrap().revision();
    assert_eq!(rev, before + 1, "one revision for all the deletes");
    let resp = next(&mut ws, "the revoke's deletes").await;
    assert_eq!(resp.watch_id(), id);
    let got = evs(&resp);
    let want: Vec<Ev> = (1..=5)
        .map(|i| Ev { rev, put: false, key: format!("r/{i}"), value: String::new(), prev: Some(format!("v-r/{i}")) })
        .collect();
    assert_eq!(got, want, "all five deletes in one response, at one revision, in key order");
    assert_eq!(keys_with_prefix(&mut c, "r/", rev - 1).await.len(), 6);
    assert_eq!(keys_with_prefix(&mut c, "r/", rev).await, vec![("r/keep".into(), 0)]);
    assert_eq!(ttl_of(&mut c, l).await.0, -1);
    assert!(!lease_ids(&mut c).await.contains(&l));

    // Revoking a lease without keys deletes nothing and keeps the revision.
    let empty = grant(&mut c, 60).await;
    let r = c.lease_revoke(empty).await.expect("revoke empty lease");
    assert_eq!(r.header().unwrap().revision(), rev);
    assert_eq!(revision(&mut c).await, rev);
    // Nothing more for the watcher: the next event is this put.
    let rev2 = c.put("r/after", "1", None).await.unwrap().header().unwrap().revision();
    assert_eq!(rev2, rev + 1);
    let resp = next(&mut ws, "the put after").await;
    assert_eq!(evs(&resp)[0].key, "r/after");
}

#[tokio::test]
async fn revoke_of_a_missing_lease_is_not_found() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    assert_status(c.lease_revoke(999).await, NOT_FOUND, LEASE_NOT_FOUND);
    let l = grant(&mut c, 60).await;
    c.lease_revoke(l).await.expect("first revoke");
    assert_status(c.lease_revoke(l).await, NOT_FOUND, LEASE_NOT_FOUND);
}

#[tokio::test]
async fn keep_alive_holds_a_lease_past_its_ttl_then_it_expires() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let l = grant(&mut c, 2).await;
    put_leased(&mut c, "ka", l).await;
    let (mut keeper, mut stream) = c.lease_keep_alive(l).await.expect("keep alive");
    assert_eq!(keeper.id(), l);
    let start = Instant::now();
    let mut last = Instant::now();
    // 5 s = two and a half TTLs, renewed every 500 ms.
    while start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        keeper.keep_alive().await.expect("send keep alive");
        let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("keep-alive response in time")
            .expect("keep-alive stream")
            .expect("keep-alive response");
        last = Instant::now();
        assert_eq!((r.id(), r.ttl()), (l, 2), "a keep-alive answers the granted TTL");
        assert!(r.header().is_some());
    }
    let (remaining, _, keys) = ttl_of(&mut c, l).await;
    assert!((0..=2).contains(&remaining), "remaining {remaining}");
    assert_eq!(keys, ["ka"]);
    assert_eq!(c.get("ka", None).await.unwrap().kvs().len(), 1, "kept alive past its TTL");

    // Without keep-alives it expires within TTL + 1 s of the last one.
    drop((keeper, stream));
    let gone = wait_until_async(Duration::from_secs(10), || {
        let mut c = c.clone();
        async move { c.get("ka", None).await.map(|r| r.kvs().is_empty()).unwrap_or(false) }
    })
    .await;
    let after = last.elapsed();
    assert!(gone, "the lease never expired");
    assert!(after <= Duration::from_secs(3), "expired {after:?} after the last keep-alive (TTL 2 s + 1 s)");
    assert!(after >= Duration::from_millis(1900), "expired early: {after:?} after the last keep-alive");
    assert_eq!(ttl_of(&mut c, l).await.0, -1);
}

/// Polls an async condition every 20 ms until it holds or `timeout` passes.
async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

#[tokio::test]
async fn keep_alive_of_a_missing_lease_answers_ttl_0() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    // (A leader first: see `keep_alive_right_after_start_waits_for_a_leader`.)
    revision(&mut c).await;
    // The client turns the first response's TTL 0 into an error.
    match c.lease_keep_alive(999).await {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("keep-alive of a missing lease: {other:?}"),
    }
    // On an open stream, the raw answer for a lease revoked meanwhile.
    let l = grant(&mut c, 60).await;
    let (mut keeper, mut stream) = c.lease_keep_alive(l).await.expect("keep alive");
    c.lease_revoke(l).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("keep-alive response in time")
        .expect("keep-alive stream")
        .expect("keep-alive response");
    assert_eq!((r.id(), r.ttl()), (l, 0));
}

/// etcd's `LeaseRenew` (`etcdserver/v3_server.go`) waits up to the request
/// timeout for a leader (`waitLeader`) and forwards the renewal to it, so a
/// keep-alive sent right after the server started listening, before its
/// first election, is answered. (MetaStore once failed it at once with
/// "etcdserver: no leader".)
#[tokio::test]
async fn keep_alive_right_after_start_waits_for_a_leader() {
    // The window between listening and the first election is short: try
    // ten fresh servers.
    for attempt in 0..10 {
        let srv = fresh_server(&[]);
        let mut c = client(&srv).await;
        match c.lease_keep_alive(999).await {
            Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert!(m.contains("not found"), "{m}"),
            other => panic!("keep-alive of a missing lease right after start (attempt {attempt}): {other:?}"),
        }
    }
}

/// etcd serves client requests only once the server is ready (`serve()` in
/// `embed/serve.go` first waits on `ReadyNotify()`: a leader, and the
/// member published), so requests sent as soon as the port listens wait and
/// succeed rather than fail with "no leader" or "leader changed".
#[tokio::test]
async fn requests_right_after_start_are_served() {
    // Eight servers starting at once, each asked at once.
    let starts: Vec<_> = (0..8).map(|_| tokio::task::spawn_blocking(|| fresh_server(&[]))).collect();
    let mut tasks = Vec::new();
    for (i, s) in starts.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let srv = s.await.expect("start");
            let mut c = client(&srv).await;
            let r = c.get("k", None).await;
            assert!(r.is_ok(), "a get right after start (server {i}): {r:?}; log:\n{}", srv.log_text());
            let r = c.lease_grant(60, None).await;
            assert!(r.is_ok(), "a grant right after start (server {i}): {r:?}; log:\n{}", srv.log_text());
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[tokio::test]
async fn expired_lease_deletes_its_keys_at_once_within_ttl_plus_1s() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("x/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    created(&mut ws).await;
    let sent = Instant::now();
    let l = grant(&mut c, 2).await;
    let granted = Instant::now();
    for k in ["x/1", "x/2", "x/3"] {
        put_leased(&mut c, k, l).await;
    }
    c.put("x/keep", "plain", None).await.unwrap();
    let mut puts = 0;
    while puts < 4 {
        let r = next(&mut ws, "the puts").await;
        puts += evs(&r).iter().filter(|e| e.put).count();
        assert!(evs(&r).iter().all(|e| e.put), "a delete before the TTL passed: {r:?}");
    }
    let r = next(&mut ws, "the expiry's deletes").await;
    let at = Instant::now();
    let got = evs(&r);
    assert_eq!(
        got.iter().map(|e| (e.put, e.key.as_str())).collect::<Vec<_>>(),
        [(false, "x/1"), (false, "x/2"), (false, "x/3")]
    );
    assert!(got.iter().all(|e| e.rev == got[0].rev), "one revision: {got:?}");
    assert!(at - sent >= Duration::from_secs(2), "expired before its TTL: {:?} after the grant", at - sent);
    assert!(
        at - granted <= Duration::from_secs(3),
        "expired {:?} after the grant; TTL 2 s + 1 s allowed",
        at - granted
    );
    let rev = got[0].rev;
    assert_eq!(keys_with_prefix(&mut c, "x/", rev).await, vec![("x/keep".into(), 0)]);
    assert_eq!(keys_with_prefix(&mut c, "x/", rev - 1).await.len(), 4);
    assert_eq!(ttl_of(&mut c, l).await.0, -1);
    assert!(lease_ids(&mut c).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_leases_expire_together_each_in_one_revision() {
    const LEASES: usize = 300;
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("m/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    created(&mut ws).await;
    let mut tasks = Vec::new();
    for w in 0..10 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..LEASES).step_by(10) {
                let l = grant(&mut c, 2).await;
                put_leased(&mut c, &format!("m/{i:03}/a"), l).await;
                put_leased(&mut c, &format!("m/{i:03}/b"), l).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("granter");
    }
    let last_grant = Instant::now();
    // Every lease's two deletes share a revision no other delete has.
    let mut deletes: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    let mut n = 0;
    while n < 2 * LEASES {
        let r = next(&mut ws, "the expiries").await;
        for e in evs(&r).into_iter().filter(|e| !e.put) {
            deletes.entry(e.rev).or_default().push(e.key);
            n += 1;
        }
    }
    let took = last_grant.elapsed();
    assert_eq!(deletes.len(), LEASES, "one revision per lease");
    for (rev, keys) in &deletes {
        let lease = &keys[0][..5];
        assert_eq!(keys, &[format!("{lease}/a"), format!("{lease}/b")], "revision {rev}");
    }
    assert!(took <= Duration::from_secs(3), "the last of {LEASES} leases expired {took:?} after its grant");
    assert!(lease_ids(&mut c).await.is_empty());
}

#[tokio::test]
async fn restart_keeps_leases_and_resets_their_ttl() {
    let mut srv = server(&[]);
    let mut c = client(&srv).await;
    let long = grant(&mut c, 10).await;
    put_leased(&mut c, "r1", long).await;
    put_leased(&mut c, "r2", long).await;
    let short = grant(&mut c, 3).await;
    put_leased(&mut c, "s1", short).await;
    let custom = c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(99))).await.unwrap().id();
    // Let time pass: the short lease has about 1 s left, the long one 8 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (remaining, _, _) = ttl_of(&mut c, short).await;
    assert!(remaining <= 1, "remaining {remaining} of a 3 s lease after 2 s");
    let (remaining, _, _) = ttl_of(&mut c, long).await;
    assert!(remaining <= 8, "remaining {remaining} of a 10 s lease after 2 s");
    drop(c);

    srv.restart();
    let mut c = reconnect(&srv).await;
    // etcd's rule: a new leader gives every lease its full TTL again (plus
    // the election timeout as an extension), so the short lease, which had
    // about 1 s left, has at least 2 s again.
    let (remaining, granted, keys) = ttl_of(&mut c, short).await;
    assert!(remaining >= 2, "short lease after restart: remaining {remaining}, want its full 3 s again");
    assert_eq!((granted, keys), (3, vec!["s1".to_string()]));
    let (remaining, granted, keys) = ttl_of(&mut c, long).await;
    assert!((9..=11).contains(&remaining), "long lease after restart: remaining {remaining}, want the full 10 s");
    assert_eq!(granted, 10);
    assert_eq!(keys, ["r1", "r2"]);
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([long, short, custom]));
    let rev = revision(&mut c).await;
    assert_eq!(
        keys_with_prefix(&mut c, "", rev).await,
        vec![("r1".into(), long), ("r2".into(), long), ("s1".into(), short)]
    );

    // The recovered attachments work: revoke deletes r1 and r2 at once, and
    // the short lease expires on its own.
    let r = c.lease_revoke(long).await.unwrap();
    let revoked = r.header().unwrap().revision();
    assert_eq!(revoked, rev + 1);
    assert_eq!(keys_with_prefix(&mut c, "r", revoked).await, vec![]);
    let gone = wait_until_async(Duration::from_secs(6), || {
        let mut c = c.clone();
        async move { c.get("s1", None).await.map(|r| r.kvs().is_empty()).unwrap_or(false) }
    })
    .await;
    assert!(gone, "the short lease did not expire after the restart");
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([custom]));
}
