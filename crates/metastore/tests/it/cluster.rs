//! Multi-member clusters with real processes: failover under load, a member
//! cut off by fault-injecting proxies, catching up through a snapshot,
//! membership changes with etcdctl, and a linearizability check of
//! concurrent clients' histories recorded during faults.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use testkit::linearizability::{check, History, Op, Outcome};
use testkit::Cluster;

use crate::common::*;

/// Every client call in these tests gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Heartbeat 50 ms, election 500 ms (the harness defaults): a new leader is
/// due within a few election timeouts.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

fn cluster(n: usize, extra: &[&str]) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), n, extra))
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn connect(urls: Vec<String>) -> Client {
    let opts = etcd_client::ConnectOptions::new().with_timeout(CALL_TIMEOUT).with_connect_timeout(CALL_TIMEOUT);
    Client::connect(urls, Some(opts)).await.expect("connect")
}

async fn timed<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

/// Waits until member `i` (serializable read) holds at least `want` keys
/// under `prefix`.
async fn wait_keys(url: String, prefix: &str, want: usize, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(mut c) = Client::connect([url.clone()], None).await {
            let opts = GetOptions::new().with_prefix().with_count_only().with_serializable();
            if let Some(r) = timed(c.get(prefix, Some(opts))).await {
                if r.count() as usize >= want {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

type Acked = Arc<Mutex<BTreeMap<String, i64>>>;

async fn writer(urls: Vec<String>, id: usize, acked: Acked, stop: Arc<AtomicBool>) {
    let mut c = connect(urls).await;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("load/w{id}/{i:06}");
        if let Some(r) = timed(c.put(key.clone(), "v", None)).await {
            acked.lock().unwrap().insert(key, r.header().expect("header").revision());
        }
        i += 1;
    }
}

async fn verify_all_members(c: &Cluster, acked: &Acked) {
    let expected = acked.lock().unwrap().clone();
    for m in c.members() {
        assert!(
            wait_keys(m.client_url(), "load/", expected.len(), Duration::from_secs(15)).await,
            "member {} did not catch up",
            m.name()
        );
        let mut client = Client::connect([m.client_url()], None).await.unwrap();
        let got = client.get("load/", Some(GetOptions::new().with_prefix().with_serializable())).await.unwrap();
        let stored: BTreeMap<String, i64> =
            got.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision())).collect();
        for (k, rev) in &expected {
            assert_eq!(stored.get(k), Some(rev), "member {} lost acknowledged write {k}@{rev}", m.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_9_under_load_fails_over_and_keeps_acked_writes() {
    let mut c = cluster(3, &[]);
    let leader = blocking(|| c.leader()).expect("initial leader");
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4).map(|id| tokio::spawn(writer(c.endpoints(), id, acked.clone(), stop.clone()))).collect();
    assert!(wait_until_async(Duration::from_secs(10), || acked.lock().unwrap().len() > 50).await);

    blocking(|| c.member_mut(leader).kill9());
    let killed_at = Instant::now();
    let new_leader = blocking(|| c.wait_leader(FAILOVER_BOUND)).expect("a new leader within a few election timeouts");
    assert_ne!(new_leader, leader);
    println!("new leader after {:?}", killed_at.elapsed());
    let before = acked.lock().unwrap().len();
    assert!(
        wait_until_async(Duration::from_secs(10), || acked.lock().unwrap().len() > before + 50).await,
        "writes did not resume after failover"
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    blocking(|| c.member_mut(leader).restart());
    verify_all_members(&c, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_member_never_acks_writes_or_serves_linearizable_reads() {
    let mut c = cluster(3, &[]);
    let old = blocking(|| c.leader()).expect("leader");
    let mut isolated = connect(vec![c.member(old).client_url()]).await;
    isolated.put("before", "1", None).await.unwrap();
    blocking(|| c.isolate(old));
    let majority: Vec<String> = (0..3).filter(|i| *i != old).map(|i| c.member(i).client_url()).collect();
    let mut healthy = connect(majority).await;

    // For several election timeouts, the cut-off member (the old leader,
    // which must step down) acknowledges nothing and serves no
    // linearizable read, while the majority goes on.
    let end = Instant::now() + Duration::from_secs(4);
    let mut majority_writes = 0;
    let mut n = 0;
    while Instant::now() < end {
        let key = format!("minority/{n}");
        assert!(timed(isolated.put(key.clone(), "x", None)).await.is_none(), "isolated member acked {key}");
        assert!(timed(isolated.get("before", None)).await.is_none(), "isolated member served a linearizable read");
        if timed(healthy.put(format!("majority/{n}"), "y", None)).await.is_some() {
            majority_writes += 1;
        }
        n += 1;
    }
    assert!(majority_writes > 0, "the majority should accept writes");
    // Without a leader, a request that requires one (etcd's `hasleader`
    // metadata: clientv3.WithRequireLeader, Kubernetes' watches) fails at
    // once; a serializable read without it is served.
    {
        use api::pb::etcdserverpb::{kv_client::KvClient, RangeRequest};
        let ch = tonic::transport::Channel::from_shared(c.member(old).client_url()).unwrap().connect().await.unwrap();
        let range = || RangeRequest { key: b"before".to_vec(), serializable: true, ..Default::default() };
        let mut req = tonic::Request::new(range());
        req.metadata_mut().insert("hasleader", "true".parse().unwrap());
        let err = KvClient::new(ch.clone()).range(req).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (tonic::Code::Unavailable, "etcdserver: no leader"));
        let got = KvClient::new(ch).range(range()).await.unwrap().into_inner();
        assert_eq!(got.kvs.len(), 1);
    }
    // The minority's proposals must not have been committed anywhere.
    let r = healthy.get("minority/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(r.count(), 0, "a write sent to the isolated member was committed");

    blocking(|| c.heal());
    assert!(
        wait_keys(c.member(old).client_url(), "majority/", majority_writes, Duration::from_secs(15)).await,
        "the healed member did not catch up; logs:\n{}",
        c.logs()
    );
    let r = timed(isolated.get("majority/", Some(GetOptions::new().with_prefix().with_count_only()))).await;
    assert!(r.is_some_and(|r| r.count() as usize >= majority_writes), "linearizable reads work again after heal");
}

/// A member added to a one-member cluster makes two voters: the leader
/// keeps its quorum only while the new member answers heartbeats and
/// appends. Restoring a large snapshot takes long (here the restore stalls
/// 8 s on the new member's apply thread); its raft thread must go on
/// answering meanwhile, or check-quorum steps the leader down and writes
/// fail until the restore ends (as happened with 10 M keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_member_restoring_a_snapshot_keeps_the_leader_and_writes_going() {
    let mut c = cluster(1, &["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"]);
    let ep = c.member(0).client_url();
    let mut client = connect(vec![ep.clone()]).await;
    for i in 0..200 {
        client.put(format!("join/{i:03}"), vec![b'v'; 1000], None).await.expect("put");
    }
    let new = blocking(|| c.prepare_member("joiner"));
    c.member_mut(new.index).set_start_failpoints("snapshot::restore=1*sleep(8000)");
    let (ok, out, err) = etcdctl(&ep, &["member", "add", "joiner", &format!("--peer-urls={}", new.peer_url)]);
    assert!(ok, "member add: {out}{err}");
    let initial = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|s| s.trim_end_matches('"').to_string())
        .expect("ETCD_INITIAL_CLUSTER in member add output");
    let term = client.status().await.expect("status").raft_term();
    blocking(|| c.start_member(new.index, "existing", &initial));
    let paused = wait_until_async(Duration::from_secs(20), || {
        c.member(new.index).log_text().contains("snapshot recorded; the apply thread restores it")
    })
    .await;
    assert!(paused, "the new member never installed a snapshot:\n{}", c.logs());
    // Six election timeouts with the restore stopped: the leader stays,
    // and a write (which needs the new member's vote of the two) commits.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let put = timed(client.put(format!("during/{i}"), "v", None)).await;
        assert!(put.is_some(), "a put failed while the new member restored:\n{}", c.logs());
    }
    assert_eq!(client.status().await.expect("status").raft_term(), term, "an election:\n{}", c.logs());
    let log = c.member(new.index).log_text();
    assert!(!log.contains("state restored from the leader's snapshot"), "the restore was not stalled:\n{log}");
    let joiner = c.member(new.index).client_url();
    assert!(wait_keys(joiner.clone(), "join/", 200, Duration::from_secs(20)).await, "{}", c.logs());
    assert!(wait_keys(joiner, "during/", 6, Duration::from_secs(20)).await, "{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_member_catches_up_through_a_snapshot() {
    // A small snapshot count and few entries kept for slow followers (etcd's
    // 5,000 by default), so the leader's log is compacted past the stopped
    // member's position.
    let mut c = cluster(3, &["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "1000"]);
    let leader = blocking(|| c.leader()).expect("leader");
    let lagging = (leader + 1) % 3;
    blocking(|| c.member_mut(lagging).kill9());
    let others: Vec<String> = (0..3).filter(|i| *i != lagging).map(|i| c.member(i).client_url()).collect();
    let total = 2_500;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let urls = others.clone();
        tasks.push(tokio::spawn(async move {
            let mut cl = connect(urls).await;
            for i in (w..total).step_by(8) {
                let mut tries = 0;
                while timed(cl.put(format!("snap/{i:05}"), "v", None)).await.is_none() {
                    tries += 1;
                    assert!(tries < 20, "put kept failing");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    blocking(|| c.member_mut(lagging).restart());
    assert!(
        wait_keys(c.member(lagging).client_url(), "snap/", total, Duration::from_secs(30)).await,
        "restarted member did not catch up"
    );
    assert!(
        c.member(lagging).log_text().contains("installing a snapshot from the leader"),
        "the member should have caught up through a snapshot"
    );
    // Snapshots with data, the one made for the lagging member included
    // (RocksDB's periodic ones carry none, so it is written on demand), are
    // written off the raft thread: a dump of a large state would stall
    // heartbeats long enough for the followers to call an election.
    let logs: Vec<String> = (0..3).map(|i| c.member(i).log_text()).collect();
    let mut background = 0;
    for line in logs.iter().flat_map(|l| l.lines()) {
        let data_written = line.contains("snapshot saved") && line.contains(r#""with_data":true"#)
            || line.contains("snapshot written again with data");
        if data_written {
            assert!(line.contains(r#""background":true"#), "a snapshot with data written on the raft thread: {line}");
            background += 1;
        }
    }
    assert!(background > 0, "no snapshot with data was written:\n{}", logs.join("\n"));
}

/// `etcdctl member remove ID` through `ep`, again while the answer is
/// "unhealthy cluster": as etcd, the leader refuses a removal until enough
/// of the other voters have been connected to it for 5 s, which a cluster
/// just started or just changed has not.
fn remove_when_healthy(ep: &str, id: &str) -> (bool, String, String) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = etcdctl(ep, &["member", "remove", id]);
        if ok || !err.contains("etcdserver: unhealthy cluster") || Instant::now() > end {
            return (ok, out, err);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// etcd's strict reconfiguration check: with a voter down, adding a voter
/// or removing a live one would leave too few connected voters for a
/// quorum, so the leader refuses ("etcdserver: unhealthy cluster"), while
/// the member that is down may be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfiguration_protects_the_active_quorum() {
    let mut c = cluster(3, &[]);
    let leader = blocking(|| c.leader()).expect("leader");
    let ep = c.member(leader).endpoint();
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    let id_of = |name: &str| {
        let tag = format!(", {name},");
        list.lines().find(|l| l.contains(&tag)).and_then(|l| l.split(',').next()).unwrap().to_string()
    };
    let down = (leader + 1) % 3;
    let live = (leader + 2) % 3;
    let (down_id, live_id) = (id_of(&format!("m{down}")), id_of(&format!("m{live}")));
    // Until the voters have been connected for 5 s every change is refused;
    // let that pass, so that the refusals below are the down member's doing.
    std::thread::sleep(Duration::from_millis(5500));
    blocking(|| c.member_mut(down).kill9());
    // Past an election timeout (500 ms here) the leader counts it as gone.
    std::thread::sleep(Duration::from_secs(1));

    let (ok, _, err) = etcdctl(&ep, &["member", "add", "m9", "--peer-urls=http://127.0.0.1:9"]);
    assert!(!ok && err.contains("etcdserver: unhealthy cluster"), "member add with a voter down: {err}");
    let (ok, _, err) = etcdctl(&ep, &["member", "remove", &live_id]);
    assert!(!ok && err.contains("etcdserver: unhealthy cluster"), "removing a live voter with another down: {err}");
    let (ok, out, err) = remove_when_healthy(&ep, &down_id);
    assert!(ok, "removing the member that is down: {out}{err}");
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    let put_ok = wait_until(Duration::from_secs(10), || etcdctl(&ep, &["put", "after", "1"]).0);
    assert!(put_ok, "the two remaining members take writes:\n{}", c.logs());
}

/// `--strict-reconfig-check=false` turns the check off, as in etcd: with a
/// voter down, adding a voter is accepted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfiguration_check_can_be_turned_off() {
    let mut c = cluster(3, &["--strict-reconfig-check=false"]);
    let leader = blocking(|| c.leader()).expect("leader");
    let ep = c.member(leader).endpoint();
    blocking(|| c.member_mut((leader + 1) % 3).kill9());
    std::thread::sleep(Duration::from_secs(1));
    let (ok, out, err) = etcdctl(&ep, &["member", "add", "m9", "--peer-urls=http://127.0.0.1:9"]);
    assert!(ok && out.contains("Member") && out.contains("added"), "member add without the check: {out}{err}");
}

/// A backup taken from one cluster bootstraps a new 3-member cluster: every
/// member restores the same file, they agree, and writes replicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_bootstraps_a_new_three_member_cluster() {
    let source = cluster(1, &[]);
    blocking(|| source.leader()).expect("leader");
    let mut c = connect(vec![source.member(0).client_url()]).await;
    for i in 0..200 {
        c.put(format!("b/{i:03}"), format!("v{i}"), None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8 temp path");
    let (ok, out, err) = etcdctl(&source.member(0).endpoint(), &["snapshot", "save", file_arg]);
    assert!(ok, "snapshot save: {out}{err}");
    let rev = c.get("b/", None).await.unwrap().header().unwrap().revision();
    drop(source);

    let restored = cluster(3, &["--restore-snapshot", file_arg]);
    let leader = blocking(|| restored.leader()).expect("the restored cluster elects a leader");
    let mut lc = connect(vec![restored.member(leader).client_url()]).await;
    let put = lc.put("b/new", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), rev + 1);
    for i in 0..3 {
        assert!(
            wait_keys(restored.member(i).client_url(), "b/", 201, Duration::from_secs(10)).await,
            "member {i} holds the restored keys and the new one"
        );
    }
    let (_, list, _) = etcdctl(&restored.member(leader).endpoint(), &["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

/// The NOSPACE alarm is cluster state: raised by the member whose store
/// reached the quota, it makes every member refuse writes that add data,
/// and disarming it through any member lifts it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nospace_alarm_holds_on_every_member() {
    let c = cluster(3, &["--quota-backend-bytes", "4194304"]);
    let leader = blocking(|| c.leader()).expect("leader");
    let other = (leader + 1) % 3;
    let mut lc = connect(vec![c.member(leader).client_url()]).await;
    let value = "v".repeat(16 << 10);
    let mut raised = false;
    for i in 0..1000 {
        if let Err(e) = lc.put(format!("q/{i:04}"), value.as_str(), None).await {
            assert!(e.to_string().contains("database space exceeded"), "{e}");
            raised = true;
            break;
        }
    }
    assert!(raised, "16 MB of puts never reached a 4 MiB quota");
    let mut oc = connect(vec![c.member(other).client_url()]).await;
    let refused = wait_until(Duration::from_secs(5), || {
        etcdctl(&c.member(other).endpoint(), &["alarm", "list"]).1.contains("alarm:NOSPACE")
    });
    assert!(refused, "the alarm reached the other members");
    let e = oc.put("small", "1", None).await.expect_err("a write through another member");
    assert!(e.to_string().contains("database space exceeded"), "{e}");
    let deleted = oc.delete("q/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    oc.compact(deleted.header().unwrap().revision(), None).await.unwrap();
    for i in 0..3 {
        let (ok, out, err) = etcdctl(&c.member(i).endpoint(), &["defrag"]);
        assert!(ok, "defrag member {i}: {out}{err}");
    }
    let (ok, out, err) = etcdctl(&c.member(other).endpoint(), &["alarm", "disarm"]);
    assert!(ok && out.contains("alarm:NOSPACE"), "{out}{err}");
    let written =
        wait_until(Duration::from_secs(5), || etcdctl(&c.member(leader).endpoint(), &["put", "small", "1"]).0);
    assert!(written, "writes work again once the space is freed and the alarm disarmed");
}

/// A follower applies an entry once the leader has committed it, and may
/// do so before the leader applies it. Lease reads answered by the leader
/// (time-to-live, keep-alive) must still see what a client just wrote
/// through a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_reads_through_a_follower_see_its_writes_at_once() {
    let c = cluster(3, &[]);
    let leader = blocking(|| c.leader()).expect("leader");
    let follower = (leader + 1) % 3;
    let mut fc = connect(vec![c.member(follower).client_url()]).await;
    // Writers on the leader keep its apply busy, which widens the window.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (url, stop) = (c.member(leader).client_url(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut lc = connect(vec![url]).await;
            let value = "x".repeat(32 << 10);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = timed(lc.put(format!("load/{w}/{}", n % 64), value.as_str(), None)).await;
                n += 1;
            }
        }));
    }
    for i in 0..150 {
        let lease = fc.lease_grant(60, None).await.expect("grant").id();
        let (mut keeper, mut responses) = fc.lease_keep_alive(lease).await.expect("keep-alive stream");
        keeper.keep_alive().await.expect("keep-alive");
        let ttl = responses.message().await.expect("keep-alive answer").expect("an answer").ttl();
        assert!(ttl > 0, "round {i}: keep-alive of a lease just granted answered TTL {ttl}");
        let key = format!("lk/{i:03}");
        fc.put(key.as_str(), "v", Some(etcd_client::PutOptions::new().with_lease(lease))).await.expect("put");
        let opts = etcd_client::LeaseTimeToLiveOptions::new().with_keys();
        let r = fc.lease_time_to_live(lease, Some(opts)).await.expect("time to live");
        let keys: Vec<String> = r.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        assert_eq!(keys, [key], "round {i}: the key just attached through the follower");
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load writer");
    }
}

/// `etcdctl member add NAME --learner` through `ep`, then starts the new
/// member with the printed initial cluster and waits until it has published
/// its name (through raft, as in etcd). Returns it and its hex ID.
fn add_learner(c: &mut Cluster, ep: &str, name: &str) -> (testkit::cluster::NewMember, String) {
    let new = blocking(|| c.prepare_member(name));
    let (ok, out, err) = etcdctl(ep, &["member", "add", name, "--learner", &format!("--peer-urls={}", new.peer_url)]);
    assert!(ok, "member add: {out}{err}");
    assert!(out.contains("added to cluster"), "{out}");
    let initial = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|s| s.trim_end_matches('"').to_string())
        .expect("ETCD_INITIAL_CLUSTER in member add output");
    blocking(|| c.start_member(new.index, "existing", &initial));
    let listed = format!(", {name},");
    let named = wait_until(Duration::from_secs(15), || etcdctl(ep, &["member", "list"]).1.contains(&listed));
    assert!(named, "{name} never published its name");
    let (_, list, _) = etcdctl(ep, &["member", "list"]);
    let id = list.lines().find(|l| l.contains(&listed)).and_then(|l| l.split(',').next()).expect("listed");
    (new, id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_add_promote_remove_and_move_leader_with_etcdctl() {
    let mut c = cluster(3, &[]);
    blocking(|| c.leader()).expect("leader");
    let ep = c.member(0).endpoint();
    let (new, id) = add_learner(&mut c, &ep, "m3");
    let id = id.as_str();
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    assert!(list.lines().any(|l| l.contains(", m3,") && l.ends_with("true")), "m3 is a learner: {list}");

    // The learner refuses writes, as etcd's do.
    let (ok, _, err) = etcdctl(&c.member(new.index).endpoint(), &["put", "k", "v"]);
    assert!(!ok && err.contains("rpc not supported for learner"), "{err}");
    // It serves only what etcd's learner serves: status and serializable
    // reads; not a member list, not a linearizable read.
    let learner_ep = c.member(new.index).endpoint();
    let status = etcdctl(&learner_ep, &["endpoint", "status", "-w", "json"]);
    assert!(status.0 && status.1.contains("\"isLearner\":true"), "{status:?}");
    assert!(etcdctl(&learner_ep, &["get", "k", "--consistency=s"]).0);
    for args in [&["member", "list"][..], &["get", "k"]] {
        let (ok, _, err) = etcdctl(&learner_ep, args);
        assert!(!ok && err.contains("rpc not supported for learner"), "{args:?}: {err}");
    }

    // Promotion succeeds once the learner has caught up.
    let promoted = wait_until(Duration::from_secs(15), || etcdctl(&ep, &["member", "promote", id]).0);
    assert!(promoted, "learner was never promoted");
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    assert!(list.lines().any(|l| l.contains(", m3,") && l.ends_with("false")), "m3 is a voter: {list}");
    assert!(wait_keys(c.member(new.index).client_url(), "", 0, Duration::from_secs(5)).await);
    let (ok, _, err) = etcdctl(&c.member(new.index).endpoint(), &["put", "k", "v"]);
    assert!(ok, "promoted member takes writes: {err}");

    // Remove member 1; the rest keep working.
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    let m1 = list.lines().find(|l| l.contains(", m1,")).and_then(|l| l.split(',').next()).unwrap().to_string();
    let removed = remove_when_healthy(&ep, &m1);
    assert!(removed.0, "member remove: {}{}", removed.1, removed.2);
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    assert!(!list.contains(", m1,"), "{list}");
    // If the removed member led, a put forwarded to it just before it left
    // times out (as in etcd); the next one goes to the new leader.
    let put_ok = wait_until(Duration::from_secs(20), || etcdctl(&ep, &["put", "after-remove", "1"]).0);
    assert!(put_ok, "the cluster takes writes after a member is removed:\n{}", c.logs());

    // Move leadership to m3 through the current leader's endpoint.
    let leader = blocking(|| c.wait_leader(FAILOVER_BOUND)).expect("leader");
    let (ok, out, err) = etcdctl(&c.member(leader).endpoint(), &["move-leader", id]);
    if leader != new.index {
        assert!(ok, "move-leader: {out}{err}");
        assert!(out.contains("Leadership transferred"), "{out}");
        assert_eq!(blocking(|| c.wait_leader(FAILOVER_BOUND)), Some(new.index));
    }
}

/// Concurrent clients run puts, linearizable gets and compare-and-swaps on a
/// few keys while the leader is cut off, a follower is killed and restarted,
/// and a follower is cut off; the recorded history must be linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_faults_are_linearizable() {
    let mut c = cluster(3, &[]);
    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let keys = ["a", "b", "c"];
    let mut tasks = Vec::new();
    for client in 0..6 {
        let url = c.member(client % 3).client_url();
        let (history, stop) = (history.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut cl = connect(vec![url]).await;
            let mut seq = 0u64;
            let mut last_seen: BTreeMap<&str, Option<String>> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let key = keys[(seq as usize + client) % keys.len()];
                let value = format!("c{client}-{seq}");
                match seq % 3 {
                    0 => {
                        let id = history.invoke(client, Op::put(key, value.clone()));
                        let out = if timed(cl.put(key, value, None)).await.is_some() {
                            Outcome::Ok
                        } else {
                            Outcome::Unknown
                        };
                        history.complete(id, out);
                    }
                    1 => {
                        let id = history.invoke(client, Op::get(key));
                        match timed(cl.get(key, None)).await {
                            Some(r) => {
                                let v = r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                                last_seen.insert(key, v.clone());
                                history.complete(id, Outcome::Got(v));
                            }
                            // A failed read changes nothing.
                            None => history.complete(id, Outcome::Failed),
                        }
                    }
                    _ => {
                        let expect = last_seen.get(key).cloned().flatten();
                        let id = history.invoke(client, Op::cas(key, expect.as_deref(), value.clone()));
                        let cmp = match &expect {
                            Some(v) => Compare::value(key, CompareOp::Equal, v.as_str()),
                            None => Compare::version(key, CompareOp::Equal, 0),
                        };
                        let txn = Txn::new().when([cmp]).and_then([TxnOp::put(key, value, None)]);
                        let out = match timed(cl.txn(txn)).await {
                            Some(r) => Outcome::Cas(r.succeeded()),
                            None => Outcome::Unknown,
                        };
                        history.complete(id, out);
                    }
                }
            }
        }));
    }
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(800).await;
    let leader = blocking(|| c.leader()).expect("leader");
    blocking(|| c.isolate(leader));
    pause(1500).await;
    blocking(|| c.heal());
    pause(800).await;
    let follower = (blocking(|| c.leader()).expect("leader") + 1) % 3;
    blocking(|| c.member_mut(follower).kill9());
    pause(1000).await;
    blocking(|| c.member_mut(follower).restart());
    pause(800).await;
    let other = (blocking(|| c.leader()).expect("leader") + 2) % 3;
    blocking(|| c.isolate(other));
    pause(1200).await;
    blocking(|| c.heal());
    pause(800).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let entries = history.entries();
    let completed =
        entries.iter().filter(|e| matches!(e.outcome, Outcome::Ok | Outcome::Got(_) | Outcome::Cas(_))).count();
    println!("{} operations recorded, {completed} with a definite outcome", entries.len());
    assert!(completed > 100, "too few operations completed to mean anything");
    if let Err(v) = check(&history) {
        panic!("history is not linearizable:\n{v}");
    }
}

async fn wait_until_async(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// SIGTERM on the leader hands leadership over before stopping (etcd's
/// TryTransferLeadershipOnShutdown), and writes go on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_hands_over_leadership() {
    let mut c = cluster(3, &[]);
    let old = blocking(|| c.leader()).expect("leader");
    let code = blocking(|| c.member_mut(old).terminate(Duration::from_secs(15)));
    assert_eq!(code, Some(0), "clean exit");
    assert!(c.member(old).log_text().contains("handed over leadership"), "{}", c.member(old).log_text());
    let new = blocking(|| c.wait_leader(FAILOVER_BOUND)).expect("a leader after the hand-over");
    assert_ne!(new, old);
    let mut cl = connect(vec![c.member(new).client_url()]).await;
    assert!(timed(cl.put("after-handover", "1", None)).await.is_some());
}

/// The hand-over on SIGTERM goes to a live voter: with two of five members
/// just killed (they may be as caught up as the rest), leadership moves at
/// once to one of the two still running, instead of waiting out the
/// request timeout on a dead transferee and an election after it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_leadership_to_a_live_member() {
    let mut c = cluster(5, &[]);
    let old = blocking(|| c.leader()).expect("leader");
    let mut cl = connect(c.endpoints()).await;
    assert!(timed(cl.put("before", "1", None)).await.is_some());
    let dead = [(old + 1) % 5, (old + 2) % 5];
    blocking(|| {
        for d in dead {
            c.member_mut(d).kill9();
        }
    });
    // Past an election timeout: the leader has stopped hearing from them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let code = blocking(|| c.member_mut(old).terminate(Duration::from_secs(15)));
    assert_eq!(code, Some(0), "clean exit");
    let log = c.member(old).log_text();
    assert!(log.contains("handed over leadership"), "{log}");
    let new = blocking(|| c.wait_leader(FAILOVER_BOUND)).expect("a leader after the hand-over");
    assert!(new != old && !dead.contains(&new), "leader {new}");
}

/// A restart must bring raft back with the configuration of every applied
/// conf change, also when the engine resumes past the last snapshot
/// (RocksDB): a one-member cluster grows to two voters, both are killed and
/// only the first comes back. With the right configuration it cannot elect
/// itself (it needs the second's vote), so it serves nothing; a stale
/// single-voter configuration would let it lead alone and acknowledge
/// writes the second member never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_voters_of_applied_conf_changes() {
    // No snapshot after the bootstrap one: the conf changes live only in the log.
    let mut c = cluster(1, &["--snapshot-count", "100000"]);
    let ep = c.member(0).endpoint();
    let (new, id) = add_learner(&mut c, &ep, "m1");
    let promoted = wait_until(Duration::from_secs(15), || etcdctl(&ep, &["member", "promote", &id]).0);
    assert!(promoted, "learner was never promoted:\n{}", c.logs());
    let (ok, _, err) = etcdctl(&ep, &["put", "before", "1"]);
    assert!(ok, "{err}");

    blocking(|| {
        c.member_mut(0).kill9();
        c.member_mut(new.index).kill9();
        c.member_mut(0).spawn();
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = c.member(0).client_url();
    let served = tokio::time::timeout(2 * CALL_TIMEOUT, async move {
        let opts = etcd_client::ConnectOptions::new().with_timeout(CALL_TIMEOUT).with_connect_timeout(CALL_TIMEOUT);
        let mut alone = Client::connect([url], Some(opts)).await?;
        alone.get("before", Some(GetOptions::new().with_serializable())).await
    })
    .await;
    assert!(!matches!(served, Ok(Ok(_))), "a lone member of a two-voter cluster must not serve:\n{}", c.logs());

    blocking(|| c.member_mut(new.index).spawn());
    let mut both = connect(c.endpoints()).await;
    let mut put = None;
    for _ in 0..20 {
        put = timed(both.put("after", "2", None)).await;
        if put.is_some() {
            break;
        }
    }
    assert!(put.is_some(), "the two voters take writes again:\n{}", c.logs());
    let (_, list, _) = etcdctl(&ep, &["member", "list"]);
    assert_eq!(list.lines().filter(|l| l.ends_with("false")).count(), 2, "two voters: {list}");
}

/// The `Error:` line of etcdctl's stderr (it may log retries around it).
fn etcdctl_error(err: &str) -> String {
    err.lines().find(|l| l.starts_with("Error:")).unwrap_or(err.trim()).to_string()
}

/// The strict reconfiguration check on a 3-member cluster of `binary` with
/// one voter down, through the leader and through the live follower:
/// adding a voter, removing the live follower and removing the leader would
/// each leave too few connected voters. Returns each step's (name, accepted,
/// error line), then removes the member that is down through the follower
/// (allowed: it is not part of the active quorum).
fn reconfiguration_through_each_member(binary: &Path) -> Vec<(String, bool, String)> {
    let mut c = blocking(|| Cluster::start(binary, 3, &[]));
    let leader = blocking(|| c.leader()).expect("leader");
    let (down, live) = ((leader + 1) % 3, (leader + 2) % 3);
    let (lead_ep, live_ep) = (c.member(leader).endpoint(), c.member(live).endpoint());
    let (_, list, _) = etcdctl(&lead_ep, &["member", "list"]);
    let id_of = |i: usize| {
        let tag = format!(", m{i},");
        list.lines().find(|l| l.contains(&tag)).and_then(|l| l.split(',').next()).expect("member listed").to_string()
    };
    let (leader_id, down_id, live_id) = (id_of(leader), id_of(down), id_of(live));
    // As in strict_reconfiguration_protects_the_active_quorum: the voters
    // must have been connected for etcd's 5 s health interval, so that the
    // refusals below are the down member's doing; then, past an election
    // timeout (500 ms here), it counts as gone.
    std::thread::sleep(Duration::from_millis(5500));
    blocking(|| c.member_mut(down).kill9());
    std::thread::sleep(Duration::from_secs(1));

    let mut out = Vec::new();
    for (via, ep) in [("leader", &lead_ep), ("follower", &live_ep)] {
        let steps: [(&str, Vec<&str>); 3] = [
            ("add a voter", vec!["member", "add", "m9", "--peer-urls=http://127.0.0.1:9"]),
            ("remove the live follower", vec!["member", "remove", &live_id]),
            ("remove the leader", vec!["member", "remove", &leader_id]),
        ];
        for (step, args) in steps {
            let (ok, stdout, err) = blocking(|| etcdctl(ep, &args));
            let outcome = if ok { stdout.lines().next().unwrap_or_default().to_string() } else { etcdctl_error(&err) };
            out.push((format!("{step} through the {via}"), ok, outcome));
            if ok {
                // The cluster changed: what follows would not be comparable.
                return out;
            }
        }
    }
    let (ok, _, err) = blocking(|| remove_when_healthy(&live_ep, &down_id));
    out.push(("remove the member that is down through the follower".into(), ok, if ok { String::new() } else { err }));
    // At once through the follower too: it answered once it applied the
    // change itself.
    let (_, list, _) = etcdctl(&live_ep, &["member", "list"]);
    out.push(("members listed by the follower".into(), true, list.lines().count().to_string()));
    let (_, list, _) = etcdctl(&lead_ep, &["member", "list"]);
    out.push(("members listed by the leader".into(), true, list.lines().count().to_string()));
    out
}

/// etcd checks a reconfiguration wherever it arrives (each etcd member sees
/// every peer's connection); MetaStore's follower once skipped the check
/// (only the leader knows whether followers are connected) and let a change
/// that loses the active quorum through. Debian's etcd gives the expected
/// answers, step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfiguration_is_checked_when_sent_to_a_follower_as_in_etcd() {
    // testkit's Cluster waits for MetaStore's "serving client requests
    // address=..." log line; a wrapper says it for Debian's etcd, whose own
    // readiness testkit then checks by connecting.
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = testkit::etcd_member_binary(dir.path());
    let want = reconfiguration_through_each_member(&etcd);
    let unhealthy = "Error: etcdserver: unhealthy cluster";
    for (step, ok, outcome) in &want[..6] {
        assert!(!ok && outcome == unhealthy, "etcd: {step}: {outcome}");
    }
    let got = reconfiguration_through_each_member(Path::new(env!("CARGO_BIN_EXE_metastore")));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w, "MetaStore (left) and etcd (right) differ");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
}
