//! `--auto-compaction-mode periodic --auto-compaction-retention`: history
//! older than the retention is compacted by the leader without any client
//! asking, and current data stays readable.

use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use crate::common::*;

#[tokio::test]
async fn periodic_auto_compaction_drops_old_history() {
    let s = metastore(&["--auto-compaction-retention", "2s"]);
    let mut c = client(&s).await;
    let first = c.put("k", "v1", None).await.unwrap().header().unwrap().revision();
    let start = Instant::now();
    let mut compacted = false;
    while start.elapsed() < Duration::from_secs(15) {
        c.put("k", format!("v{}", start.elapsed().as_millis()), None).await.unwrap();
        match c.get("k", Some(GetOptions::new().with_revision(first))).await {
            Err(etcd_client::Error::GRpcStatus(st)) => {
                assert_eq!(st.message(), "etcdserver: mvcc: required revision has been compacted");
                compacted = true;
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(compacted, "revision {first} was never compacted with a 2 s retention");
    assert!(start.elapsed() >= Duration::from_secs(2), "compacted before the retention passed");
    let now = c.get("k", None).await.unwrap();
    assert_eq!(now.kvs().len(), 1, "current data survives compaction");
}
