//! The workload: KV clients (puts, linearizable gets, compare-and-swap
//! txns) recorded in the shared history, and lockers (Lock API with a lease
//! kept alive, lock-guarded writes).
//!
//! Recording rules (what the checker may assume):
//! - every written value is unique (`c<client>-<seq>`), so an unknown write
//!   either shows up somewhere or can be dropped by the checker;
//! - an op is `Unknown` unless its answer arrived: a timeout or a broken
//!   connection after sending says nothing about whether it applied. Only a
//!   refused connection (the request never left) is `Failed`;
//! - keys rotate every `EPOCH` (`chaos/kv/e<epoch>/k<i>`), so each key's
//!   history spans a few seconds and the WGL search stays small even with
//!   the unknown ops a fault leaves behind.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, LockOptions, Txn, TxnOp};
use testkit::linearizability::{Op, Outcome};

use super::driver::{connect_bounded, connect_ops, Acked, Shared};
use super::rng::Rng;

pub const KV_PREFIX: &str = "chaos/kv/";
/// The lock every locker takes; its keys are `LOCK_NAME/<lease hex>`.
pub const LOCK_NAME: &str = "chaos/lock/m";
/// The key only the lock holder writes (txn guarded by its lock key).
pub const LOCK_DATA: &str = "chaos/lockdata/m";
/// How long one key set is used before the clients move to fresh keys.
const EPOCH: Duration = Duration::from_secs(8);
/// Keys per epoch: few enough that clients contend on each.
const KEYS: u64 = 6;
/// After an error, a client pauses this long so a dead endpoint is not
/// hammered (each refused attempt would be one more op to check).
const ERROR_PAUSE: Duration = Duration::from_millis(150);
/// Lease TTL of a locker: longer than a stall plus an election, so a
/// healthy holder keeps its lock; a lease that does expire is legal and
/// only makes the holder's guarded writes fail.
const LOCK_TTL: i64 = 6;
/// Keep-alive period of a held lease.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// Guarded writes per lock holding.
const GUARDED_WRITES: usize = 3;

/// Whether an error proves the request was never sent (no connection).
pub fn never_sent(e: &etcd_client::Error) -> bool {
    let text = format!("{e} {e:?}");
    text.contains("Connection refused") || text.contains("ConnectionRefused")
}

fn outcome_of_error(call: &str, e: &etcd_client::Error, s: &Shared) -> Outcome {
    s.error(call, e);
    if never_sent(e) {
        s.counts.refused.fetch_add(1, Relaxed);
        Outcome::Failed
    } else {
        s.counts.unknown.fetch_add(1, Relaxed);
        Outcome::Unknown
    }
}

/// One KV client bound to `url` until `s.stop`.
pub async fn kv_client(id: usize, url: String, seed: u64, s: Arc<Shared>) {
    let mut rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x5851_F42D_4C95_7F2D));
    let Some(mut c) = connect_ops(&url, &s).await else { return };
    // Last value this client saw per key: what its next cas expects.
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    let mut seq = 0u64;
    while !s.stopped() {
        let epoch = s.start.elapsed().as_secs() / EPOCH.as_secs();
        let key = format!("{KV_PREFIX}e{epoch}/k{}", rng.below(KEYS));
        seq += 1;
        let value = format!("c{id}-{seq}");
        let ok = match rng.below(10) {
            0..=3 => put(&mut c, id, &key, &value, &s).await,
            4..=6 => get(&mut c, id, &key, &mut seen, &s).await,
            _ => {
                let expect = seen.get(&key).cloned().flatten();
                cas(&mut c, id, &key, expect, &value, &mut seen, &s).await
            }
        };
        if !ok {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

async fn put(c: &mut Client, id: usize, key: &str, value: &str, s: &Shared) -> bool {
    s.counts.puts.fetch_add(1, Relaxed);
    let op = s.history.invoke(id, Op::put(key, value));
    match c.put(key, value, None).await {
        Ok(r) => {
            s.history.complete(op, Outcome::Ok);
            let rev = r.header().map_or(0, |h| h.revision());
            s.ack(key, value, rev);
            true
        }
        Err(e) => {
            s.history.complete(op, outcome_of_error("put", &e, s));
            false
        }
    }
}

async fn get(c: &mut Client, id: usize, key: &str, seen: &mut HashMap<String, Option<String>>, s: &Shared) -> bool {
    s.counts.gets.fetch_add(1, Relaxed);
    let op = s.history.invoke(id, Op::get(key));
    match c.get(key, None).await {
        Ok(r) => {
            let v = r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            s.history.complete(op, Outcome::Got(v.clone()));
            seen.insert(key.to_string(), v);
            true
        }
        Err(e) => {
            s.history.complete(op, outcome_of_error("get", &e, s));
            false
        }
    }
}

/// "if value == expect (None: the key is absent) then put new", as etcd
/// clients write it: a value compare, or `version == 0` for absence.
async fn cas(
    c: &mut Client,
    id: usize,
    key: &str,
    expect: Option<String>,
    new: &str,
    seen: &mut HashMap<String, Option<String>>,
    s: &Shared,
) -> bool {
    s.counts.cases.fetch_add(1, Relaxed);
    let op = s.history.invoke(id, Op::cas(key, expect.as_deref(), new));
    let cmp = match &expect {
        Some(v) => Compare::value(key, CompareOp::Equal, v.as_str()),
        None => Compare::version(key, CompareOp::Equal, 0),
    };
    let txn = Txn::new().when([cmp]).and_then([TxnOp::put(key, new, None)]);
    match c.txn(txn).await {
        Ok(r) => {
            s.history.complete(op, Outcome::Cas(r.succeeded()));
            if r.succeeded() {
                s.ack(key, new, r.header().map_or(0, |h| h.revision()));
                seen.insert(key.to_string(), Some(new.to_string()));
            } else {
                // Stale expectation: read before the next cas on this key.
                seen.remove(key);
            }
            true
        }
        Err(e) => {
            s.history.complete(op, outcome_of_error("cas", &e, s));
            false
        }
    }
}

/// One locker bound to `url`: grant a lease, keep it alive, lock, write
/// `LOCK_DATA` guarded by the lock key a few times, unlock, revoke.
pub async fn locker(id: usize, url: String, all: Vec<String>, seed: u64, s: Arc<Shared>) {
    let mut rng = Rng::new(seed ^ (id as u64 + 101).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let Some(mut c) = connect_ops(&url, &s).await else { return };
    while !s.stopped() {
        s.counts.lock_cycles.fetch_add(1, Relaxed);
        let lease = match c.lease_grant(LOCK_TTL, None).await {
            Ok(r) => r.id(),
            Err(e) => {
                s.error("lease grant", &e);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let keeper = tokio::spawn(keep_alive(c.clone(), lease, alive.clone(), s.clone()));
        let locked = c.lock(LOCK_NAME, Some(LockOptions::new().with_lease(lease))).await;
        if let Err(e) = &locked {
            s.error("lock", e);
        }
        if let Ok(r) = locked {
            s.counts.locks_taken.fetch_add(1, Relaxed);
            let lock_key = r.key().to_vec();
            let lock_key_str = String::from_utf8_lossy(&lock_key).into_owned();
            for i in 0..GUARDED_WRITES {
                // The value names the writer's lock key: the check finds the
                // owner at the write's revision and compares.
                let value = format!("{lock_key_str}#{i}");
                let guard = Compare::version(lock_key.clone(), CompareOp::Greater, 0);
                let txn = Txn::new().when([guard]).and_then([TxnOp::put(LOCK_DATA, value.as_str(), None)]);
                match c.txn(txn).await {
                    Ok(r) if r.succeeded() => {
                        s.counts.guarded_writes.fetch_add(1, Relaxed);
                        s.ack(LOCK_DATA, &value, r.header().map_or(0, |h| h.revision()));
                    }
                    // The lease expired: the lock is gone.
                    Ok(_) => {
                        s.counts.guard_failed.fetch_add(1, Relaxed);
                        break;
                    }
                    Err(e) => {
                        s.error("guarded txn", &e);
                        break;
                    }
                }
                tokio::time::sleep(rng.millis(5, 40)).await;
            }
            if let Err(e) = c.unlock(lock_key).await {
                s.error("unlock", &e);
            }
        }
        alive.store(false, Relaxed);
        let _ = keeper.await;
        if c.lease_revoke(lease).await.is_err() {
            // Its member is down or cut off: a key of this lease left in the
            // lock's queue would block every other locker until the lease
            // expires (and each new leader extends leases by a TTL), so
            // revoke it through any member.
            tokio::spawn(revoke_anywhere(all.clone(), lease));
        }
        tokio::time::sleep(rng.millis(20, 150)).await;
    }
}

/// Revokes `lease` through any of `urls`, trying for up to `REVOKE_FOR`.
async fn revoke_anywhere(urls: Vec<String>, lease: i64) {
    const REVOKE_FOR: Duration = Duration::from_secs(20);
    let end = tokio::time::Instant::now() + REVOKE_FOR;
    while tokio::time::Instant::now() < end {
        if let Some(mut c) = connect_bounded(&urls).await {
            match c.lease_revoke(lease).await {
                Ok(_) => return,
                Err(e) if e.to_string().contains("lease not found") => return,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Renews `lease` every `KEEPALIVE_EVERY` while `alive`, one short
/// keep-alive stream per renewal (a stream per renewal cannot outlive the
/// client's per-call timeout).
async fn keep_alive(mut c: Client, lease: i64, alive: Arc<std::sync::atomic::AtomicBool>, s: Arc<Shared>) {
    while alive.load(Relaxed) {
        let once = async {
            let (mut k, mut stream) = c.lease_keep_alive(lease).await.ok()?;
            k.keep_alive().await.ok()?;
            stream.message().await.ok().flatten()
        };
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(3), once).await {
            if r.ttl() > 0 {
                s.counts.keepalives.fetch_add(1, Relaxed);
            }
        }
        let end = tokio::time::Instant::now() + KEEPALIVE_EVERY;
        while alive.load(Relaxed) && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Shared {
    pub fn ack(&self, key: &str, value: &str, rev: i64) {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).push(Acked {
            key: key.to_string(),
            value: value.to_string(),
            rev,
        });
    }
}
