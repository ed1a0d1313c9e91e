//! Backups: `etcdctl snapshot save` from a member, `--restore-snapshot` to
//! bootstrap a new cluster from the file (etcd's format both ways is
//! `migration`'s).

use etcd_client::{GetOptions, LeaseTimeToLiveOptions, PutOptions};

use crate::common::*;

/// A key, its value, create and mod revisions, version and lease.
type KeyState = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Every key with its value and revisions, for comparing states.
fn state(r: &etcd_client::GetResponse) -> Vec<KeyState> {
    r.kvs()
        .iter()
        .map(|kv| {
            (kv.key().to_vec(), kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease())
        })
        .collect()
}

#[tokio::test]
async fn snapshot_save_then_restore_into_a_new_cluster() {
    let s = metastore(&[]);
    let mut c = client(&s).await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    // About 300 KB: the download comes in many 32 KiB chunks.
    for i in 0..300 {
        c.put(format!("k{i:03}"), format!("v{i}-{}", "x".repeat(1000)), None).await.unwrap();
    }
    c.put("k001", "again", None).await.unwrap();
    c.put("leased", "x", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    c.delete("k000", None).await.unwrap();
    let all = || Some(GetOptions::new().with_from_key());
    let before = c.get("\0", all()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8 temp path");
    let (ok, out, err) = etcdctl(&s.endpoint(), &["snapshot", "save", file_arg]);
    assert!(ok && out.contains(&format!("Snapshot saved at {file_arg}")), "{out}{err}");
    assert!(std::fs::metadata(&file).unwrap().len() > 300_000);
    c.put("after-save", "1", None).await.unwrap();
    let snap_dir = s.data_dir().join("member").join("snap");
    let leftovers: Vec<_> = std::fs::read_dir(&snap_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("download"))
        .collect();
    assert!(leftovers.is_empty(), "the download's temporary file is removed: {leftovers:?}");

    let mut r = metastore(&["--restore-snapshot", file_arg]);
    let mut rc = client(&r).await;
    let after = rc.get("\0", all()).await.unwrap();
    assert_eq!(state(&after), state(&before), "the restored keys, values, revisions and leases");
    let rev = before.header().unwrap().revision();
    assert_eq!(after.header().unwrap().revision(), rev);
    assert!(rc.get("after-save", None).await.unwrap().kvs().is_empty(), "a write after the save");
    let ttl = rc.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert!(ttl.ttl() > 0, "the lease came along");
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);
    // The new cluster is the one on the command line: this member alone.
    let members = rc.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1, "{:?}", members.members());
    assert_eq!(members.members()[0].peer_urls(), [format!("http://127.0.0.1:{}", r.peer_port)]);
    assert_ne!(after.header().unwrap().cluster_id(), before.header().unwrap().cluster_id());
    let put = rc.put("new", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), rev + 1, "revisions go on from the backup's");

    // Once the data dir holds the member, the flag no longer matters.
    r.restart();
    let mut rc = client(&r).await;
    assert_eq!(rc.get("new", None).await.unwrap().kvs().len(), 1);
    assert_eq!(rc.get("\0", all()).await.unwrap().kvs().len(), before.kvs().len() + 1);

    // A damaged file is refused before anything is restored.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).unwrap();
    let data_dir = dir.path().join("fresh");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metastore"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--restore-snapshot", damaged.to_str().unwrap()])
        .args(["--listen-client-urls", "http://127.0.0.1:0", "--listen-peer-urls", "http://127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad snapshot is a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected sha256"), "{stderr}");
    assert!(!data_dir.exists(), "nothing was written");
}
