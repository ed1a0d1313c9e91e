//! Crash safety: writers send puts while the server is `kill -9`ed at random
//! moments; after every restart each acknowledged put must be there with the
//! revision it was acknowledged with, and the server must always start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;

const WRITERS: usize = 8;
const ROUNDS: usize = 5;

/// A small xorshift so the kill moments vary per run; the seed is printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

type Acked = Arc<Mutex<BTreeMap<String, i64>>>;

async fn writer(url: String, id: usize, round: usize, acked: Acked, stop: Instant) {
    let Ok(mut c) = etcd_client::Client::connect([url], None).await else {
        return;
    };
    let mut i = 0u64;
    while Instant::now() < stop {
        let key = format!("r{round}/w{id}/{i:06}");
        match c.put(key.clone(), format!("value-{i}"), None).await {
            Ok(resp) => {
                let rev = resp.header().expect("put header").revision();
                acked.lock().unwrap().insert(key, rev);
            }
            // The server died under us: this put is not acknowledged.
            Err(_) => return,
        }
        i += 1;
    }
}

async fn verify(s: &ServerProcess, acked: &Acked) {
    let mut c = client(s).await;
    let expected = acked.lock().unwrap().clone();
    let resp = c.get("r", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get all");
    let stored: BTreeMap<String, i64> =
        resp.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision())).collect();
    for (key, rev) in &expected {
        assert_eq!(stored.get(key), Some(rev), "acknowledged put {key} at revision {rev} lost or changed");
    }
    // Revisions are unique per write.
    let mut revs: Vec<i64> = stored.values().copied().collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), stored.len(), "two keys share a revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    // A small snapshot count so restarts go through snapshot + WAL replay and
    // old segments get released.
    let mut s = metastore(&["--snapshot-count", "200"]);
    let acked: Acked = Arc::default();
    for round in 0..ROUNDS {
        let run_for = Duration::from_millis(300 + rng.next() % 900);
        let stop = Instant::now() + Duration::from_secs(30);
        let mut tasks = Vec::new();
        for id in 0..WRITERS {
            tasks.push(tokio::spawn(writer(s.url(), id, round, acked.clone(), stop)));
        }
        tokio::time::sleep(run_for).await;
        s.kill9();
        for t in tasks {
            let _ = t.await;
        }
        s.restart();
        verify(&s, &acked).await;
        println!("round {round}: {} acknowledged puts verified", acked.lock().unwrap().len());
    }
    assert!(acked.lock().unwrap().len() > 100, "the writers should have been acknowledged many puts");
    let lines = s.log_lines();
    assert!(lines.iter().any(|l| l.contains("snapshot saved")), "no snapshot was taken during the test");
    // A persistent engine resumes from its own applied index; the memory
    // engine restores the snapshot and replays the log after it.
    let resumed = lines.iter().filter(|l| l.contains("resuming from the engine's applied index")).count();
    let restored = lines.iter().filter(|l| l.contains("restoring state from snapshot")).count();
    if testkit::storage_engine() == "rocksdb" {
        assert_eq!((resumed, restored), (ROUNDS, 0), "every restart resumes from RocksDB");
    } else {
        assert_eq!((resumed, restored), (0, ROUNDS), "every restart restores the snapshot");
        let background = lines.iter().any(|l| l.contains("snapshot saved") && l.contains(r#""background":true"#));
        assert!(background, "the memory engine's periodic snapshots are written off the raft thread");
    }
}
