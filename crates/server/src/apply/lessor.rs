//! The lessor: leases, their TTLs and attached keys.
//!
//! Two halves with different rules:
//! - replicated state (which leases exist, their granted TTL, which keys are
//!   attached) changes only in apply, deterministically, and is persisted in
//!   `Table::Lease` in the same batch as the entry's other changes;
//! - expiry times are local to the leader (the "primary"): set on grant and
//!   on promotion (every lease gets its full TTL plus an extension when a
//!   member becomes leader, etcd's rule on recovery), refreshed by
//!   keep-alives, and checked by the expiry loop, which proposes revokes
//!   through raft. Followers keep no clock for leases.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use api::EtcdError;
use parking_lot::Mutex;
use storage::schema::{decode_lease_key, lease_key};
use storage::{MvccStore, Table, WriteBatch};
use tokio::time::Instant;

/// etcd's `MaxLeaseTTL` (about 285 years).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// An expired lease whose revoke is in flight is retried after this long
/// (etcd's `expiredLeaseRetryInterval`).
const EXPIRED_RETRY: Duration = Duration::from_secs(3);

struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// Leader only; None on followers.
    expiry: Option<Instant>,
}

struct Inner {
    leases: HashMap<i64, Lease>,
    primary: bool,
}

pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

/// What `LeaseTimeToLive` reports.
pub struct LeaseInfo {
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Lessor {
    /// `min_ttl` in seconds: etcd's 1.5 election timeouts, rounded up.
    pub fn new(min_ttl: i64) -> Self {
        Lessor { inner: Mutex::new(Inner { leases: HashMap::new(), primary: false }), min_ttl: min_ttl.max(1) }
    }

    /// etcd: `(3 * electionTicks / 2) * heartbeat`, in whole ticks, rounded
    /// up to seconds.
    pub fn min_ttl_for(heartbeat: Duration, election_ticks: usize) -> i64 {
        let ms = ((3 * election_ticks / 2) as u128 * heartbeat.as_millis()) as i64;
        (ms + 999) / 1000
    }

    /// Rebuilds leases from `Table::Lease` and attaches every live key that
    /// names one. Run at startup and after a snapshot is installed.
    pub fn recover(&self, mvcc: &MvccStore) -> Result<(), EtcdError> {
        let mut leases = HashMap::new();
        let mut bad = None;
        mvcc.engine()
            .scan(Table::Lease, &[], None, &mut |k, v| {
                match (decode_lease_key(k), <[u8; 8]>::try_from(v)) {
                    (Some(id), Ok(v)) => {
                        let lease = Lease { ttl: i64::from_be_bytes(v), keys: BTreeSet::new(), expiry: None };
                        leases.insert(id, lease);
                    }
                    _ => bad = Some(format!("malformed lease record of {} bytes", k.len() + v.len())),
                }
                true
            })
            .map_err(crate::errors::from_engine)?;
        if let Some(b) = bad {
            return Err(EtcdError::Internal(b));
        }
        if !leases.is_empty() {
            let attached = mvcc.leased_keys().map_err(crate::errors::from_mvcc)?;
            for (lease, keys) in attached {
                if let Some(l) = leases.get_mut(&lease) {
                    l.keys.extend(keys);
                }
            }
        }
        let mut inner = self.inner.lock();
        let primary = inner.primary;
        if primary {
            let now = Instant::now();
            for l in leases.values_mut() {
                l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
            }
        }
        inner.leases = leases;
        Ok(())
    }

    // ---- replicated half: called from apply only ----

    /// etcd `Grant`: returns the effective TTL and the record to persist.
    pub fn grant(&self, id: i64, ttl: i64, batch: &mut WriteBatch) -> Result<i64, EtcdError> {
        if id == 0 {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = inner.primary.then(|| Instant::now() + Duration::from_secs(ttl as u64));
        inner.leases.insert(id, Lease { ttl, keys: BTreeSet::new(), expiry });
        batch.put(Table::Lease, lease_key(id), ttl.to_be_bytes().to_vec());
        Ok(ttl)
    }

    /// The keys to delete when revoking, sorted so every member deletes in
    /// the same order.
    pub fn keys_of(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.inner.lock().leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    pub fn remove(&self, id: i64, batch: &mut WriteBatch) {
        self.inner.lock().leases.remove(&id);
        batch.delete(Table::Lease, lease_key(id));
    }

    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// Moves `key` from lease `old` to lease `new` (0 = none).
    pub fn reattach(&self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(l) = inner.leases.get_mut(&old) {
            l.keys.remove(key);
        }
        if let Some(l) = inner.leases.get_mut(&new) {
            l.keys.insert(key.to_vec());
        }
    }

    // ---- leader-local half ----

    /// Becoming leader: every lease gets its full TTL plus `extend`.
    pub fn promote(&self, extend: Duration) {
        let mut inner = self.inner.lock();
        inner.primary = true;
        let now = Instant::now();
        for l in inner.leases.values_mut() {
            l.expiry = Some(now + Duration::from_secs(l.ttl as u64) + extend);
        }
    }

    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        inner.primary = false;
        for l in inner.leases.values_mut() {
            l.expiry = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    /// Keep-alive: refreshes the expiry; returns the TTL.
    pub fn renew(&self, id: i64) -> Result<i64, EtcdError> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Err(EtcdError::NotLeader);
        }
        let l = inner.leases.get_mut(&id).ok_or(EtcdError::LeaseNotFound)?;
        let now = Instant::now();
        if l.expiry.is_some_and(|e| e <= now) {
            // Expired: its revoke is on the way.
            return Err(EtcdError::LeaseNotFound);
        }
        l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
        Ok(l.ttl)
    }

    /// Leases past their expiry (at most `limit`); each is pushed back by
    /// `EXPIRED_RETRY` so a revoke in flight is not proposed twice at once.
    pub fn take_expired(&self, limit: usize) -> Vec<i64> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, l) in &mut inner.leases {
            if out.len() >= limit {
                break;
            }
            if l.expiry.is_some_and(|e| e <= now) {
                l.expiry = Some(now + EXPIRED_RETRY);
                out.push(*id);
            }
        }
        out
    }

    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseInfo> {
        let inner = self.inner.lock();
        let l = inner.leases.get(&id)?;
        let remaining = match l.expiry {
            Some(e) => e.saturating_duration_since(Instant::now()).as_secs() as i64,
            // Not the leader: etcd reports the full TTL for a lease it does not time.
            None => l.ttl,
        };
        Some(LeaseInfo {
            remaining,
            granted: l.ttl,
            keys: if with_keys { l.keys.iter().cloned().collect() } else { Vec::new() },
        })
    }

    /// Lease IDs in etcd's order: soonest expiry first (then by ID; a
    /// follower times nothing, so it lists by ID).
    pub fn ids(&self) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut ids: Vec<(Option<Instant>, i64)> = inner.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_like_etcd() {
        let hb = Duration::from_millis(100);
        assert_eq!(Lessor::min_ttl_for(hb, 10), 2);
        assert_eq!(Lessor::min_ttl_for(hb, 30), 5);
        // 300 ms heartbeat, 1000 ms election: 3 ticks -> 4 ticks -> 1.2 s -> 2 s.
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(300), 3), 2);
    }

    #[test]
    fn grant_rules() {
        let l = Lessor::new(2);
        let mut b = WriteBatch::default();
        assert_eq!(l.grant(7, 1, &mut b), Ok(2), "TTL raised to the minimum");
        assert_eq!(l.grant(7, 10, &mut b), Err(EtcdError::LeaseExist));
        assert_eq!(l.grant(8, MAX_LEASE_TTL + 1, &mut b), Err(EtcdError::LeaseTtlTooLarge));
        assert_eq!(l.grant(0, 10, &mut b), Err(EtcdError::LeaseNotFound));
        assert_eq!(b.len(), 1);
    }

    #[tokio::test]
    async fn renew_and_expiry_only_on_primary() {
        let l = Lessor::new(1);
        let mut b = WriteBatch::default();
        l.grant(1, 1, &mut b).unwrap();
        assert_eq!(l.renew(1), Err(EtcdError::NotLeader));
        assert!(l.take_expired(10).is_empty());
        l.promote(Duration::ZERO);
        assert_eq!(l.renew(1), Ok(1));
        assert_eq!(l.renew(2), Err(EtcdError::LeaseNotFound));
        tokio::time::pause();
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(l.take_expired(10), vec![1]);
        assert!(l.take_expired(10).is_empty(), "not proposed twice while in flight");
    }

    #[test]
    fn keys_follow_puts() {
        let l = Lessor::new(1);
        let mut b = WriteBatch::default();
        l.grant(1, 5, &mut b).unwrap();
        l.grant(2, 5, &mut b).unwrap();
        l.reattach(b"k", 0, 1);
        l.reattach(b"j", 0, 1);
        assert_eq!(l.keys_of(1).unwrap(), vec![b"j".to_vec(), b"k".to_vec()]);
        l.reattach(b"k", 1, 2);
        assert_eq!(l.keys_of(1).unwrap(), vec![b"j".to_vec()]);
        assert_eq!(l.keys_of(2).unwrap(), vec![b"k".to_vec()]);
        let info = l.time_to_live(2, true).unwrap();
        assert_eq!((info.granted, info.keys.len()), (5, 1));
    }
}
