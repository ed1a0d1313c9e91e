//! etcd's Lock and Election services (v3lock, v3election), the same steps
//! against MetaStore and Debian's etcd: each run writes a transcript
//! (revisions relative to the run's first one, keys, values, errors) and
//! the two transcripts must be equal.

use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, LeaseGrantOptions, LockOptions, ProclaimOptions, ResignOptions};

use crate::common::*;

/// Long enough for a blocked call to show that it is blocked.
const SETTLE: Duration = Duration::from_millis(300);
/// Bound on each call that should answer.
const CALL: Duration = Duration::from_secs(5);

const LEASE_A: i64 = 0x1a;
const LEASE_B: i64 = 0x2b;

fn outcome<T>(r: &Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error: {e}"),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL, f).await.expect("a call that should answer hung")
}

struct Run {
    c: Client,
    base: i64,
    log: Vec<String>,
}

impl Run {
    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    fn rev(&self, h: Option<&etcd_client::ResponseHeader>) -> i64 {
        h.map_or(-1, |h| h.revision() - self.base)
    }

    async fn keys(&mut self, prefix: &str) -> String {
        let r = within(self.c.get(prefix, Some(GetOptions::new().with_prefix()))).await.unwrap();
        let keys: Vec<String> = r.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect();
        keys.join(",")
    }
}

async fn lock_steps(run: &mut Run, url: String) {
    let mut locks = run.c.lock_client();
    let a = within(locks.lock("mtx", Some(LockOptions::new().with_lease(LEASE_A)))).await.unwrap();
    let key_a = a.key().to_vec();
    let line = format!("lock A: key {} rev {}", String::from_utf8_lossy(&key_a), run.rev(a.header()));
    run.note(line);

    // B waits behind A.
    let mut waiter = Client::connect([url.clone()], None).await.unwrap().lock_client();
    let b = tokio::spawn(async move { waiter.lock("mtx", Some(LockOptions::new().with_lease(LEASE_B))).await });
    tokio::time::sleep(SETTLE).await;
    let line = format!("B blocked: {}; keys {}", !b.is_finished(), run.keys("mtx/").await);
    run.note(line);
    // Locking again with the lease that holds the lock answers at once.
    let again = within(locks.lock("mtx", Some(LockOptions::new().with_lease(LEASE_A)))).await.unwrap();
    let line = format!("lock A again: key {} rev {}", String::from_utf8_lossy(again.key()), run.rev(again.header()));
    run.note(line);
    let u = within(locks.unlock(key_a.clone())).await.unwrap();
    let line = format!("unlock A: rev {}", run.rev(u.header()));
    run.note(line);
    let b = within(b).await.unwrap().unwrap();
    let line = format!("lock B: key {} rev {}", String::from_utf8_lossy(b.key()), run.rev(b.header()));
    run.note(line);

    // A waiter that gives up leaves no key behind.
    let gave_up =
        tokio::time::timeout(SETTLE, locks.lock("mtx", Some(LockOptions::new().with_lease(LEASE_A)))).await.is_err();
    let mut cleaned = false;
    for _ in 0..50 {
        if run.keys("mtx/").await == "mtx/2b" {
            cleaned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.note(format!("A gave up: {gave_up}; its key removed: {cleaned}"));

    // Revoking the holder's lease releases the lock.
    within(run.c.lease_revoke(LEASE_B)).await.unwrap();
    let a = within(locks.lock("mtx", Some(LockOptions::new().with_lease(LEASE_A)))).await.unwrap();
    let line = format!("lock A after revoke: key {}", String::from_utf8_lossy(a.key()));
    run.note(line);

    // No lease: the server grants one of 60 s for the lock.
    let free = within(locks.lock("free", None)).await.unwrap();
    let key = String::from_utf8_lossy(free.key()).into_owned();
    let id = key.strip_prefix("free/").map(|hex| i64::from_str_radix(hex, 16));
    let granted = match id {
        Some(Ok(id)) => within(run.c.lease_time_to_live(id, None)).await.map(|t| t.granted_ttl()).unwrap_or(-1),
        _ => -1,
    };
    run.note(format!("lock without lease: key under free/ named by its lease's id, lease ttl {granted}"));

    let r = within(locks.lock("mtx2", Some(LockOptions::new().with_lease(0x77)))).await;
    run.note(format!("lock with a missing lease: {}", outcome(&r)));
    let r = within(locks.unlock("no/such/key")).await;
    run.note(format!("unlock of a missing key: {} rev {}", outcome(&r), r.map_or(-1, |u| run.rev(u.header()))));
    let r = within(locks.lock("", Some(LockOptions::new().with_lease(LEASE_A)))).await;
    run.note(format!("lock with an empty name: {} key {:?}", outcome(&r), r.map(|l| l.key().to_vec()).ok()));
}

fn leader_key(l: Option<&LeaderKey>) -> LeaderKey {
    let l = l.expect("a leader key");
    LeaderKey::new().with_name(l.name()).with_key(l.key()).with_rev(l.rev()).with_lease(l.lease())
}

async fn election_steps(run: &mut Run, url: String) {
    let mut el = run.c.election_client();
    let r = within(el.leader("el")).await;
    run.note(format!("leader before any campaign: {}", outcome(&r)));

    let a = within(el.campaign("el", "a1", LEASE_A)).await.unwrap();
    let la = leader_key(a.leader());
    let line = format!(
        "campaign A: key {} rev {} lease {:x} header rev {}",
        String::from_utf8_lossy(la.key()),
        la.rev() - run.base,
        la.lease(),
        run.rev(a.header())
    );
    run.note(line);

    let mut observer = within(el.observe("el")).await.unwrap();
    let mut observed = Vec::new();
    let first = within(observer.message()).await.unwrap().unwrap();
    observed.push(String::from_utf8_lossy(first.kv().unwrap().value()).into_owned());

    let mut other = Client::connect([url], None).await.unwrap().election_client();
    let b = tokio::spawn(async move { other.campaign("el", "b1", LEASE_B).await });
    tokio::time::sleep(SETTLE).await;
    let line = format!("B blocked: {}; keys {}", !b.is_finished(), run.keys("el/").await);
    run.note(line);

    let p = within(el.proclaim("a2", Some(ProclaimOptions::new().with_leader(la.clone())))).await.unwrap();
    let line = format!("proclaim a2: rev {}", run.rev(p.header()));
    run.note(line);
    let l = within(el.leader("el")).await.unwrap();
    let kv = l.kv().unwrap();
    let line = format!("leader: {} = {}", String::from_utf8_lossy(kv.key()), String::from_utf8_lossy(kv.value()));
    run.note(line);
    let stale = la.clone().with_rev(la.rev() + 100);
    let r = within(el.proclaim("x", Some(ProclaimOptions::new().with_leader(stale)))).await;
    run.note(format!("proclaim with a wrong rev: {}", outcome(&r)));
    let r = within(el.proclaim("x", None)).await;
    run.note(format!("proclaim without a leader: {}", outcome(&r)));
    let r = within(el.resign(None)).await;
    run.note(format!("resign without a leader: {}", outcome(&r)));

    let r = within(el.resign(Some(ResignOptions::new().with_leader(la.clone())))).await.unwrap();
    let line = format!("resign A: rev {}", run.rev(r.header()));
    run.note(line);
    let b = within(b).await.unwrap().unwrap();
    let lb = leader_key(b.leader());
    let line = format!("campaign B: key {} header rev {}", String::from_utf8_lossy(lb.key()), run.rev(b.header()));
    run.note(line);
    // Campaigning again with the leader's lease and a new value proclaims it.
    let again = within(el.campaign("el", "b2", LEASE_B)).await.unwrap();
    let line = format!("campaign B again: rev {}", leader_key(again.leader()).rev() - run.base);
    run.note(line);
    let r = within(el.resign(Some(ResignOptions::new().with_leader(la)))).await;
    run.note(format!("resign A again: {}", outcome(&r)));

    while observed.len() < 4 {
        let m = within(observer.message()).await.unwrap().unwrap();
        observed.push(String::from_utf8_lossy(m.kv().unwrap().value()).into_owned());
    }
    run.note(format!("observed: {}", observed.join(" ")));
    within(el.resign(Some(ResignOptions::new().with_leader(lb)))).await.unwrap();
    let r = within(el.leader("el")).await;
    run.note(format!("leader after B resigned: {}", outcome(&r)));
}

async fn scenario(s: &ServerProcess) -> Vec<String> {
    let c = client(s).await;
    let mut run = Run { c, base: 0, log: Vec::new() };
    for id in [LEASE_A, LEASE_B] {
        within(run.c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))).await.unwrap();
    }
    run.base = within(run.c.get("x", None)).await.unwrap().header().unwrap().revision();
    lock_steps(&mut run, s.url()).await;
    within(run.c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(LEASE_B)))).await.unwrap();
    election_steps(&mut run, s.url()).await;
    run.log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_as_etcd() {
    let etcd = scenario(&ServerProcess::etcd(&[])).await;
    let ours = scenario(&metastore(&[])).await;
    for (i, (o, e)) in ours.iter().zip(&etcd).enumerate() {
        assert_eq!(o, e, "step {i}; ours:\n{}\netcd:\n{}", ours.join("\n"), etcd.join("\n"));
    }
    assert_eq!(ours.len(), etcd.len());
}

/// Eight clients take turns through one lock, each doing a read-modify-write
/// of a counter inside it: no two are ever inside at once, and no increment
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_and_hands_over_in_turn() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let s = metastore(&[]);
    let inside = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8i64 {
        let (url, inside) = (s.url(), inside.clone());
        workers.push(tokio::spawn(async move {
            let mut c = Client::connect([url], None).await.unwrap();
            let lease = c.lease_grant(30, None).await.unwrap().id();
            let mut locks = c.lock_client();
            for _ in 0..5 {
                let held = within(locks.lock("counter-lock", Some(LockOptions::new().with_lease(lease)))).await;
                let key = held.unwrap().key().to_vec();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "worker {w} entered while another held the lock");
                let n = match c.get("counter", None).await.unwrap().kvs().first() {
                    Some(kv) => String::from_utf8_lossy(kv.value()).parse::<u64>().unwrap(),
                    None => 0,
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
                c.put("counter", (n + 1).to_string(), None).await.unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                within(locks.unlock(key)).await.unwrap();
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w).await.expect("the workers finished").unwrap();
    }
    let mut c = client(&s).await;
    let kv = c.get("counter", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.value(), b"40", "every increment under the lock counted");
    let left = c.get("counter-lock/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(left.count(), 0, "every lock key was released");
}

/// Observers that go away leave nothing behind: the server keeps serving
/// new observers and campaigns, and a lock waiter whose connection drops
/// gives its place up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_observers_and_waiters_free_what_they_held() {
    let s = metastore(&[]);
    let mut c = client(&s).await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let leader = c.election_client().campaign("obs", "v0", lease).await.unwrap();
    for _ in 0..100 {
        let conn = Client::connect([s.url()], None).await.unwrap();
        let mut stream = conn.election_client().observe("obs").await.unwrap();
        assert_eq!(within(stream.message()).await.unwrap().unwrap().kv().unwrap().value(), b"v0");
    }
    let streams = || testkit::metric(&s, "etcd_debugging_mvcc_watch_stream_total");
    let gone = wait_until(Duration::from_secs(5), || streams() == 0);
    assert!(gone, "observers outlived their connections: {:?} streams", streams());
    // A waiter on a lock that another lease holds, on its own connection,
    // dropped mid-wait.
    let holder = c.lock_client().lock("held", Some(LockOptions::new().with_lease(lease))).await.unwrap();
    let waiter_lease = c.lease_grant(60, None).await.unwrap().id();
    let url = s.url();
    let waiter = tokio::spawn(async move {
        let conn = Client::connect([url], None).await.unwrap();
        conn.lock_client().lock("held", Some(LockOptions::new().with_lease(waiter_lease))).await
    });
    let two = wait_until(Duration::from_secs(5), || {
        let out = etcdctl(&s.endpoint(), &["get", "--prefix", "--keys-only", "held/"]).1;
        out.lines().filter(|l| !l.is_empty()).count() == 2
    });
    assert!(two, "the waiter queued its key");
    waiter.abort();
    let one = wait_until(Duration::from_secs(5), || {
        let out = etcdctl(&s.endpoint(), &["get", "--prefix", "--keys-only", "held/"]).1;
        out.lines().filter(|l| !l.is_empty()).count() == 1
    });
    assert!(one, "the dropped waiter's key was removed");
    c.lock_client().unlock(holder.key()).await.unwrap();
    // Everything still works, and a new observer sees the latest value.
    let lk = leader.leader().unwrap().clone();
    c.election_client().proclaim("v1", Some(ProclaimOptions::new().with_leader(lk))).await.unwrap();
    let mut stream = c.election_client().observe("obs").await.unwrap();
    assert_eq!(within(stream.message()).await.unwrap().unwrap().kv().unwrap().value(), b"v1");
}

/// A member that shuts down cleanly ends an Observe stream with etcd's
/// Unavailable "server stopped" (what a stopping etcd's clients see as
/// the transport closes), not with a clean end of stream (which tells a
/// client the election is over; it is what this test saw before).
#[tokio::test]
async fn an_observe_stream_ends_unavailable_when_its_member_stops() {
    let mut s = metastore(&[]);
    let mut c = client(&s).await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let mut el = c.election_client();
    within(el.campaign("stop-el", "v", lease)).await.unwrap();
    let mut observer = within(el.observe("stop-el")).await.unwrap();
    assert!(within(observer.message()).await.unwrap().is_some(), "the leader is observed");
    let stopping = tokio::task::spawn_blocking(move || {
        s.terminate(Duration::from_secs(30));
        s
    });
    let end = tokio::time::timeout(Duration::from_secs(20), observer.message()).await.expect("the stream ends");
    match end {
        Err(etcd_client::Error::GRpcStatus(st)) if st.code() == tonic::Code::Unavailable => {
            assert_eq!(st.message(), "etcdserver: server stopped");
        }
        // The process may exit before the status reaches the client (a
        // loaded machine): the connection breaks, also not a clean end.
        Err(etcd_client::Error::GRpcStatus(st)) if st.message().contains("error reading a body") => {}
        other => panic!("the stream ended with {other:?}, not Unavailable"),
    }
    drop(stopping.await.unwrap());
}
