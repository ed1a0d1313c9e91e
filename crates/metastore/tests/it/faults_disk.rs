//! A real full disk (a small tmpfs under one member's RocksDB directory, or
//! under its WAL and snapshots with the memory engine): the member
//! fail-stops, the others carry on, and once there is room it restarts and
//! converges. Needs root (mount).

use std::path::Path;
use std::process::Command;

use testkit::Cluster;

use crate::faults::{connect, hashes_at, put_all, put_retrying, wait_exit, STOP_BOUND};

/// A member whose RocksDB directory is on a small tmpfs that fills up:
/// it stops (its engine refuses the write of an entry the others applied),
/// the others carry on, and once there is room again it restarts and its
/// HashKV equals the others'.
#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_member_and_it_converges_once_there_is_room() {
    full_disk(&["--storage", "rocksdb"], &["member", "rocksdb"]).await;
}

/// The same with the memory engine, whose WAL and snapshots fill the disk:
/// a WAL write or snapshot that fails stops the member.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_wal_stops_the_member_and_it_converges_once_there_is_room() {
    full_disk(&["--storage", "memory", "--snapshot-count", "2000"], &["member"]).await;
}

/// Member 2 with `under` (a path in its data dir) on a 24 MiB tmpfs: it
/// stops once the disk is full, the others carry on, and after the tmpfs
/// grows it restarts and converges. Needs root (mount).
async fn full_disk(flags: &[&str], under: &[&str]) {
    if !nix_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_metastore"));
    let mut c = tokio::task::block_in_place(|| Cluster::prepare(binary, 3, flags));
    let dir = under.iter().fold(c.member(2).data_dir(), |d, p| d.join(p));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mount = Tmpfs::mount(&dir, "24m");
    tokio::task::block_in_place(|| c.start_all());
    let others = vec![c.member(0).client_url(), c.member(1).client_url()];
    // 64 KiB values: the 24 MiB tmpfs fills within ~400 puts.
    let value = "x".repeat(64 << 10);
    let mut client = connect(others.clone()).await;
    let mut rev = 0;
    let mut stopped = None;
    for i in 0..2000 {
        rev = put_retrying(&mut client, &format!("big/{i:05}"), &value).await;
        if let Some(st) = c.member_mut(2).exit_status() {
            stopped = Some(st);
            break;
        }
    }
    let stopped = match stopped {
        Some(st) => Some(st),
        None => wait_exit(&mut c, 2, STOP_BOUND).await,
    };
    assert!(
        stopped.is_some_and(|s| !s.success()),
        "member 2 went on with a full disk ({stopped:?}); log tail:\n{}",
        tail(&c.member(2).log_text())
    );
    rev = rev.max(put_all(others, "after/", 5, "v").await);
    mount.resize("1g");
    tokio::task::block_in_place(|| c.member_mut(2).start());
    let hashes = hashes_at(&c.endpoints(), rev).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ after the disk was freed: {hashes:?}");
}

/// A snapshot download (`etcdctl snapshot save`) on a member whose
/// snapshot directory is full fails with the disk's error, leaves no
/// temporary file, and the member goes on serving.
#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_download_on_a_full_disk_fails_cleanly() {
    if !nix_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_metastore"));
    let mut c = tokio::task::block_in_place(|| Cluster::prepare(binary, 3, &["--storage", "rocksdb"]));
    let snap = c.member(0).data_dir().join("member").join("snap");
    std::fs::create_dir_all(&snap).expect("mkdir");
    let _mount = Tmpfs::mount(&snap, "2m");
    tokio::task::block_in_place(|| c.start_all());
    // About 8 MiB of data: its snapshot does not fit in 2 MiB.
    put_all(c.endpoints(), "big/", 128, &"x".repeat(64 << 10)).await;
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("s.db");
    let endpoint = c.member(0).endpoint();
    let (ok, out, err) = crate::common::etcdctl(&endpoint, &["snapshot", "save", path.to_str().unwrap()]);
    assert!(!ok, "the download succeeded on a full disk: {out}");
    assert!(err.contains("No space left on device"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&snap)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("download"))
        .collect();
    assert!(left.is_empty(), "the download left {left:?}");
    let rev = put_all(vec![c.member(0).client_url()], "after/", 5, "v").await;
    assert!(rev > 0, "the member serves after the failed download");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn nix_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount tmpfs on {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
