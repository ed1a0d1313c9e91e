//! Issue 12, item 6: whole-history scans must not hold the async workers.
//! `Maintenance.Hash` used to read the whole history on the tokio worker that
//! served it; a server has as many workers as cores, so a few concurrent
//! calls (`etcdctl endpoint hash` from several tools) held every worker and
//! keep-alives, like every other request, waited for the scans to end. Now
//! Hash and HashKV run on blocking threads, a bounded number at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, Txn, TxnOp};

use crate::common::{client, metastore};

/// History: `TXNS` txns of `PUTS_PER_TXN` puts (etcd's default txn limit) of
/// `VALUE_BYTES`, over a small key space: 819,200 history entries, ~50 MB
/// to scan per Hash call (over 100 ms in a debug build).
const TXNS: usize = 6_400;
const PUTS_PER_TXN: usize = 128;
const VALUE_BYTES: usize = 16;
const LOADERS: usize = 16;
/// Concurrent Hash calls (the figure).
const CALLS: usize = 16;
/// How long a keep-alive may take while the hashes run: this, or a quarter
/// of the time the 16 calls took together, whichever is longer (on a loaded
/// machine a keep-alive can take 200 ms with no Hash involved; the scans
/// slow down with it). Inline, the 16 scans took both workers of a 2-core
/// machine for 8 scans each, and a keep-alive sent meanwhile waited for
/// most of the calls' total time (805 ms of 1.05 s).
const KEEPALIVE_BOUND: Duration = Duration::from_millis(200);

async fn load(c: &Client) {
    let value = "v".repeat(VALUE_BYTES);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..LOADERS {
        let (mut kv, next, value) = (c.kv_client(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TXNS {
                    return;
                }
                let ops: Vec<TxnOp> =
                    (0..PUTS_PER_TXN).map(|i| TxnOp::put(format!("h/{i:03}"), value.as_str(), None)).collect();
                kv.txn(Txn::new().and_then(ops)).await.expect("loading txn");
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
}

/// One keep-alive, sent and answered.
async fn round_trip(keeper: &mut LeaseKeeper, stream: &mut LeaseKeepAliveStream) -> Duration {
    let sent = Instant::now();
    keeper.keep_alive().await.expect("send keep-alive");
    let resp = stream.message().await.expect("keep-alive answer").expect("keep-alive stream open");
    assert_eq!(resp.ttl(), 60);
    sent.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hash_calls_do_not_delay_keep_alives() {
    let s = metastore(&[]);
    let mut c = client(&s).await;
    load(&c).await;
    let lease = c.lease_grant(60, None).await.expect("grant").id();
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.expect("keep alive");
    let baseline = round_trip(&mut keeper, &mut stream).await;

    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..CALLS {
        let (mut m, done) = (c.maintenance_client(), done.clone());
        calls.push(tokio::spawn(async move {
            let hash = m.hash().await.expect("hash").hash();
            done.store(true, Ordering::Relaxed);
            hash
        }));
    }
    // Keep-alives while the scans run (until the first one ends, at least
    // ten): one at a time, as a client's keeper sends them.
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while n < 10 || !done.load(Ordering::Relaxed) {
        worst = worst.max(round_trip(&mut keeper, &mut stream).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut hashes = Vec::new();
    for call in calls {
        hashes.push(call.await.expect("hash call"));
    }
    let all = started.elapsed();
    hashes.dedup();
    assert_eq!(hashes.len(), 1, "every call hashed the same history");
    eprintln!("{CALLS} Hash calls took {all:?}; worst keep-alive of {n} {worst:?} (alone: {baseline:?})");
    let bound = KEEPALIVE_BOUND.max(all / 4);
    assert!(worst <= bound, "a keep-alive took {worst:?} while {CALLS} Hash calls ran ({all:?} in all)");
}
