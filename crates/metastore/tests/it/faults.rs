//! Fail-stop under injected faults (failpoints set over a member's
//! `/debug/failpoints`, and a real full disk): a member that cannot apply a
//! committed entry, or whose raft thread panics, ends its process with a
//! failure instead of serving on with state that diverges or stands still;
//! the others carry on, and after a restart the member converges.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use testkit::Cluster;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A member that must stop does so within this (it fails on the next entry
/// it applies; the harness elects in ~1 s).
const STOP_BOUND: Duration = Duration::from_secs(10);

fn cluster(n: usize, extra: &[&str]) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), n, extra))
}

async fn connect(urls: Vec<String>) -> Client {
    let opts = etcd_client::ConnectOptions::new().with_timeout(CALL_TIMEOUT).with_connect_timeout(CALL_TIMEOUT);
    Client::connect(urls, Some(opts)).await.expect("connect")
}

/// Waits until member `i` has exited; its exit status.
async fn wait_exit(c: &mut Cluster, i: usize, bound: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + bound;
    while Instant::now() < end {
        if let Some(st) = c.member_mut(i).exit_status() {
            return Some(st);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// HashKV of every listed member at `rev`, once each has applied it.
async fn hashes_at(urls: &[String], rev: i64) -> Vec<u32> {
    let mut out = Vec::new();
    for url in urls {
        let end = Instant::now() + Duration::from_secs(20);
        let mut c = connect(vec![url.clone()]).await;
        loop {
            match c.hash_kv(rev).await {
                Ok(r) => {
                    out.push(r.hash());
                    break;
                }
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("hash_kv({rev}) on {url}: {e}"),
            }
        }
    }
    out
}

/// Puts `n` keys under `prefix` through `urls`; the revision of the last.
async fn put_all(urls: Vec<String>, prefix: &str, n: usize, value: &str) -> i64 {
    let mut c = connect(urls).await;
    let mut rev = 0;
    for i in 0..n {
        let r = c.put(format!("{prefix}{i:05}"), value, None).await.unwrap_or_else(|e| panic!("put {i}: {e}"));
        rev = r.header().expect("header").revision();
    }
    rev
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_cannot_apply_stops_and_converges_after_a_restart() {
    let mut c = cluster(3, &[]);
    let others = vec![c.member(0).client_url(), c.member(1).client_url()];
    put_all(c.endpoints(), "before/", 10, "v").await;
    // Member 2's engine fails on the next entry it applies.
    c.member(2).set_failpoint("raft::apply", "1*error");
    let rev = put_all(others.clone(), "during/", 50, "v").await;
    let status = wait_exit(&mut c, 2, STOP_BOUND).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "member 2 went on after failing to apply an entry ({status:?}); log:\n{}",
        c.member(2).log_text()
    );
    assert!(c.member(2).log_text().contains("applying committed entry"), "a clear log line says why");
    // The others carry on.
    let rev = rev.max(put_all(others.clone(), "after/", 10, "v").await);
    // Restarted (the failpoint lives in the process, so it is gone), it
    // applies the entry it failed on and converges.
    tokio::task::block_in_place(|| c.member_mut(2).start());
    let hashes = hashes_at(&c.endpoints(), rev).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ after the restart: {hashes:?}");
    let mut m2 = connect(vec![c.member(2).client_url()]).await;
    let got = m2.get("during/", Some(GetOptions::new().with_prefix().with_count_only().with_serializable())).await;
    assert_eq!(got.expect("read member 2").count(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_on_the_raft_thread_ends_the_process() {
    let mut c = cluster(1, &[]);
    let mut client = connect(c.endpoints()).await;
    client.put("k", "v", None).await.expect("put");
    c.member(0).set_failpoint("raft::ready", "panic");
    // The next Ready (a write, or just a tick's heartbeat) panics.
    let _ = client.put("k", "w", None).await;
    let status = wait_exit(&mut c, 0, STOP_BOUND).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the process outlived a panic on its raft thread ({status:?}); log:\n{}",
        c.member(0).log_text()
    );
    assert!(c.member(0).log_text().contains("panic: stopping this member"));
    // What was acknowledged is there after a restart.
    tokio::task::block_in_place(|| c.member_mut(0).start());
    let mut client = connect(c.endpoints()).await;
    let got = client.get("k", None).await.expect("get");
    assert!(!got.kvs().is_empty());
}

/// A member whose RocksDB directory is on a small tmpfs that fills up:
/// it stops (its engine refuses the write of an entry the others applied),
/// the others carry on, and once there is room again it restarts and its
/// HashKV equals the others'. Needs root (mount) and the RocksDB engine.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_member_and_it_converges_once_there_is_room() {
    if !nix_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_metastore"));
    let mut c = tokio::task::block_in_place(|| Cluster::prepare(binary, 3, &["--storage", "rocksdb"]));
    let dir = c.member(2).data_dir().join("member").join("rocksdb");
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

/// A put that may meet one leader election (member 2 may have led when it
/// stopped); the others must take it within `RETRY_BOUND`.
async fn put_retrying(client: &mut Client, key: &str, value: &str) -> i64 {
    const RETRY_BOUND: Duration = Duration::from_secs(15);
    let end = Instant::now() + RETRY_BOUND;
    loop {
        match client.put(key, value, None).await {
            Ok(r) => return r.header().expect("header").revision(),
            Err(e) if Instant::now() < end => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the others did not carry on: put {key}: {e}"),
        }
    }
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
