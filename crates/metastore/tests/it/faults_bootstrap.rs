//! A crash while a new member bootstraps (from `--restore-snapshot`, or
//! writing its first membership) leaves the engine written and the raft log
//! empty. The next start must finish the bootstrap, not refuse the data dir
//! (issue 12, defect 11): with RocksDB it used to say "the rocksdb engine
//! holds state up to raft index 1 but the raft log is empty".

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};

use crate::common::*;

/// The engines this build has: each is crashed during its bootstrap.
fn engines() -> Vec<&'static str> {
    if cfg!(feature = "rocksdb") {
        vec!["rocksdb", "memory"]
    } else {
        vec!["memory"]
    }
}

/// One member on `data_dir`, its log appended to `log`; `failpoints` go to
/// METASTORE_FAILPOINTS.
struct Start<'a> {
    data_dir: &'a Path,
    log: &'a Path,
    engine: &'a str,
    backup: Option<&'a Path>,
    failpoints: &'a str,
    client_port: u16,
    peer_port: u16,
}

impl Start<'_> {
    fn spawn(&self) -> Child {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metastore"));
        cmd.args(["--data-dir", self.data_dir.to_str().unwrap(), "--storage", self.engine])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .env("METASTORE_FAILPOINTS", self.failpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        if let Some(b) = self.backup {
            cmd.args(["--restore-snapshot", b.to_str().unwrap()]);
        }
        cmd.spawn().expect("spawn metastore")
    }
}

/// Waits up to 30 s for `child` to exit; kills it if it does not.
fn wait_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_bootstrapping_is_finished_by_the_next_start() {
    // A backup with some history to restore from.
    let s = metastore(&[]);
    let mut c = client(&s).await;
    for i in 0..50 {
        c.put(format!("k{i:02}"), format!("v{i}"), None).await.unwrap();
    }
    c.delete("k00", None).await.unwrap();
    let all = || Some(GetOptions::new().with_prefix());
    let before = c.get("k", all()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let backup = tmp.path().join("backup.db");
    let (ok, out, err) = etcdctl(&s.endpoint(), &["snapshot", "save", backup.to_str().unwrap()]);
    assert!(ok, "{out}{err}");

    let sites = ["bootstrap::restored", "bootstrap::log"];
    for engine in engines() {
        for (n, site) in sites.iter().enumerate() {
            for with_backup in [true, false] {
                if *site == "bootstrap::restored" && !with_backup {
                    continue; // only reached when restoring a backup
                }
                let case = format!("{engine}, crash at {site}, backup: {with_backup}");
                let data_dir = tmp.path().join(format!("{engine}-{n}-{with_backup}"));
                let log = tmp.path().join(format!("{engine}-{n}-{with_backup}.log"));
                let start = Start {
                    data_dir: &data_dir,
                    log: &log,
                    engine,
                    backup: with_backup.then_some(backup.as_path()),
                    failpoints: &format!("{site}=panic"),
                    client_port: testkit::free_port(),
                    peer_port: testkit::free_port(),
                };
                let status = wait_exit(&mut start.spawn());
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(status.is_some_and(|st| !st.success()), "{case}: the first start crashes: {status:?}\n{text}");

                // Started again, without the fault: it finishes the bootstrap.
                let start = Start { failpoints: "", ..start };
                let from = testkit::log_len(&log);
                let mut child = start.spawn();
                let serving = testkit::wait_until(Duration::from_secs(30), || {
                    testkit::says_it_serves(&log, from, start.client_port) || child.try_wait().unwrap().is_some()
                });
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let exited = child.try_wait().unwrap();
                if exited.is_some() || !serving {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{case}: the second start serves (exited: {exited:?})\n{text}");
                }
                let checked = async {
                    let mut rc = Client::connect([format!("127.0.0.1:{}", start.client_port)], None).await?;
                    let got = rc.get("k", all()).await?;
                    let members = rc.member_list().await?.members().len();
                    let put = rc.put("after", "1", None).await?;
                    Ok::<_, etcd_client::Error>((got, members, put))
                }
                .await;
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let (got, members, put) = checked.unwrap_or_else(|e| panic!("{case}: {e}\n{text}"));
                assert_eq!(members, 1, "{case}");
                assert!(text.contains("starting the bootstrap over"), "{case}: says so\n{text}");
                if with_backup {
                    let kvs = |r: &etcd_client::GetResponse| {
                        r.kvs()
                            .iter()
                            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(kvs(&got), kvs(&before), "{case}: the backup's keys, restored once");
                    let rev = before.header().unwrap().revision();
                    assert_eq!(put.header().unwrap().revision(), rev + 1, "{case}");
                } else {
                    assert!(got.kvs().is_empty(), "{case}: a new, empty cluster");
                    assert_eq!(put.header().unwrap().revision(), 2, "{case}");
                }
            }
        }
    }
}
