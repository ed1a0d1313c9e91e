//! State the raft thread publishes for request handlers: term, leader, commit
//! and applied indexes. Handlers read it lock-free; applied index changes are
//! also broadcast so linearizable reads can wait for them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{watch, Notify};

pub struct SharedState {
    pub member_id: u64,
    cluster_id: AtomicU64,
    term: AtomicU64,
    leader: AtomicU64,
    commit: AtomicU64,
    applied_tx: watch::Sender<u64>,
    stopped: AtomicBool,
    removed: AtomicBool,
    stopped_notify: Notify,
}

impl SharedState {
    pub fn new(member_id: u64, cluster_id: u64, applied: u64) -> Self {
        SharedState {
            member_id,
            cluster_id: AtomicU64::new(cluster_id),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            commit: AtomicU64::new(applied),
            applied_tx: watch::channel(applied).0,
            stopped: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            stopped_notify: Notify::new(),
        }
    }
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }
    /// A joining member learns the cluster ID with its first snapshot.
    pub(crate) fn set_cluster_id(&self, id: u64) {
        self.cluster_id.store(id, Ordering::Release)
    }
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn commit_index(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    pub(crate) fn set_term(&self, t: u64) {
        self.term.store(t, Ordering::Release)
    }
    pub(crate) fn set_leader(&self, l: u64) {
        let before = self.leader.swap(l, Ordering::AcqRel);
        // etcd counts a change to a known leader, the first one included.
        if l != 0 && l != before {
            crate::metrics::get().server.leader_changes.inc();
        }
    }
    pub(crate) fn set_commit(&self, c: u64) {
        self.commit.fetch_max(c, Ordering::AcqRel);
    }
    pub(crate) fn set_applied(&self, a: u64) {
        self.applied_tx.send_replace(a);
    }
    /// This member was removed from the cluster (it stops for good).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
    pub(crate) fn set_removed(&self) {
        self.removed.store(true, Ordering::Release)
    }
    pub(crate) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stopped_notify.notify_waiters();
    }

    /// Resolves once the raft node has stopped (shutdown or fatal error).
    pub async fn wait_stopped(&self) {
        loop {
            let notified = self.stopped_notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}
