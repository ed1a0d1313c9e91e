//! The CORRUPT alarm and the corruption checks. A CORRUPT alarm (raised by
//! a client here, as etcd allows) stops every write and no read, the same
//! against MetaStore and Debian's etcd; a healthy cluster with both checks
//! on starts, restarts and runs without raising one.

use std::path::Path;
use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, Txn, TxnOp};

use crate::common::*;

fn outcome<T>(r: Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error: {e}"),
    }
}

async fn scenario(s: &ServerProcess) -> Vec<String> {
    let mut c = client(s).await;
    let mut out = Vec::new();
    let member = c.put("a", "1", None).await.unwrap().header().unwrap().member_id();
    let mut opts = AlarmOptions::new();
    opts.with_member(member);
    out.push(format!("raise: {}", outcome(c.alarm(AlarmAction::Activate, AlarmType::Corrupt, Some(opts)).await)));
    out.push(format!("put: {}", outcome(c.put("b", "2", None).await)));
    out.push(format!("delete: {}", outcome(c.delete("a", None).await)));
    out.push(format!("lease grant: {}", outcome(c.lease_grant(60, None).await)));
    let write = Txn::new().and_then([TxnOp::put("b", "2", None)]);
    out.push(format!("txn with a put: {}", outcome(c.txn(write).await)));
    let got = c.get("a", None).await.map(|r| r.kvs().first().map(|kv| kv.value().to_vec()));
    out.push(format!("get: {got:?}"));
    let read = Txn::new().and_then([TxnOp::get("a", None)]);
    out.push(format!("read-only txn: {}", outcome(c.txn(read).await)));
    let (ok, list, _) = etcdctl(&s.endpoint(), &["alarm", "list"]);
    out.push(format!(
        "alarm list: {ok} {}",
        list.trim().replace(&format!("{member:x}"), "ID").replace(&member.to_string(), "ID")
    ));
    let (ok, _, _) = etcdctl(&s.endpoint(), &["alarm", "disarm"]);
    out.push(format!("disarm: {ok}"));
    out.push(format!("put after disarm: {}", outcome(c.put("b", "2", None).await)));
    out
}

#[tokio::test]
async fn corrupt_alarm_stops_writes_as_etcd() {
    let etcd = scenario(&ServerProcess::etcd(&[])).await;
    let ours = scenario(&metastore(&[])).await;
    assert_eq!(ours, etcd);
    assert!(ours[1].contains("etcdserver: corrupt cluster"), "{ours:?}");
}

/// kubeadm's way of turning the initial check on (`=true`), plus the
/// leader's periodic check every 500 ms: identical members raise nothing,
/// through writes, a compaction and a member's restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_on_a_healthy_cluster_raise_nothing() {
    let flags = ["--experimental-initial-corrupt-check=true", "--experimental-corrupt-check-time", "500ms"];
    let mut c =
        tokio::task::block_in_place(|| testkit::Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &flags));
    let mut cl = Client::connect(c.endpoints(), None).await.unwrap();
    for i in 0..200 {
        cl.put(format!("k{}", i % 50), format!("v{i}"), None).await.unwrap();
    }
    let rev = cl.get("k0", None).await.unwrap().header().unwrap().revision();
    cl.compact(rev - 20, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = tokio::task::block_in_place(|| c.leader()).expect("a leader");
    let follower = (leader + 1) % 3;
    tokio::task::block_in_place(|| c.member_mut(follower).restart());
    for i in 0..20 {
        cl.put(format!("after{i}"), "v", None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alarms = cl.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert!(alarms.alarms().is_empty(), "{} alarms raised", alarms.alarms().len());
    let log = c.logs();
    assert!(log.contains("initial corruption check passed"), "the restarted member checked");
    assert!(!log.contains("raising CORRUPT"));
}
