//! Auto-compaction, as etcd's `--auto-compaction-mode` /
//! `--auto-compaction-retention`. Only the leader compacts; the compaction
//! itself is an ordinary raft request, so every member applies it.
//!
//! - periodic: keep `retention` of history. The revision is sampled every
//!   min(retention, 1 h) / 10, and each tick compacts to the newest sample
//!   that is at least `retention` old (etcd's periodic compactor).
//! - revision: every 5 minutes, compact to current revision - retention.
//!
//! Applying a compaction only publishes it; the store deletes the old
//! revisions in the background (`storage::mvcc` compactor). etcd's
//! `physical` flag, "answer once the old revisions are gone", is
//! [`wait_physical`], for the member that proposed the compaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use api::pb::etcdserverpb::CompactionRequest;
use api::pb::metastorepb::internal_request::Request as Internal;
use api::EtcdError;
use storage::MvccStore;
use tokio::time::Instant;

use crate::deadline::Deadline;
use crate::errors::from_mvcc;
use crate::node::NodeHandle;

/// How often a `physical` compaction's caller looks whether the deletion
/// finished (a check is one uncontended mutex).
const PHYSICAL_POLL: Duration = Duration::from_millis(5);

/// etcd's revision-mode check interval.
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    Periodic(Duration),
    Revision(i64),
}

/// Periodic mode's bookkeeping: revisions sampled over time.
#[derive(Default)]
pub struct Samples {
    samples: VecDeque<(Instant, i64)>,
}

impl Samples {
    /// Records `rev` at `now`; returns the revision to compact to: the newest
    /// sample at least `retention` old, if any.
    pub fn tick(&mut self, now: Instant, rev: i64, retention: Duration) -> Option<i64> {
        self.samples.push_back((now, rev));
        let mut target = None;
        while let Some(&(t, r)) = self.samples.front() {
            if now.duration_since(t) >= retention {
                target = Some(r);
                self.samples.pop_front();
            } else {
                break;
            }
        }
        target
    }
}

/// etcd's `physical`: waits until this member's store deleted the history
/// that the compaction at `rev` (applied here already) dropped, or the
/// deadline passes. Never blocks a runtime thread.
pub async fn wait_physical(mvcc: &MvccStore, rev: i64, deadline: Deadline) -> Result<(), EtcdError> {
    deadline
        .run(async {
            loop {
                match mvcc.wait_compacted(rev, Duration::ZERO) {
                    Ok(true) => return Ok(()),
                    Ok(false) => tokio::time::sleep(PHYSICAL_POLL).await,
                    Err(e) => return Err(from_mvcc(e)),
                }
            }
        })
        .await?
}

pub fn periodic_interval(retention: Duration) -> Duration {
    (retention.min(Duration::from_secs(3600)) / 10).max(Duration::from_millis(10))
}

async fn compact(node: &NodeHandle, rev: i64, timeout: Duration) {
    let req = CompactionRequest { revision: rev, physical: false };
    match node.propose(Internal::Compaction(req), Deadline::new(timeout, None)).await {
        Ok(_) => tracing::info!(revision = rev, "auto-compacted"),
        Err(EtcdError::Compacted) => {}
        Err(e) => tracing::warn!(revision = rev, error = %e, "auto-compaction failed; will retry"),
    }
}

pub async fn run(node: Arc<NodeHandle>, mode: AutoCompaction, timeout: Duration) {
    let leader = |n: &NodeHandle| n.state.leader() == n.state.member_id;
    match mode {
        AutoCompaction::Periodic(retention) => {
            let mut tick = tokio::time::interval(periodic_interval(retention));
            let mut samples = Samples::default();
            loop {
                tick.tick().await;
                if !leader(&node) {
                    // A new leader starts its own clock, as etcd's does.
                    samples = Samples::default();
                    continue;
                }
                let rev = node.mvcc.current_revision();
                if let Some(target) = samples.tick(Instant::now(), rev, retention) {
                    if target > node.mvcc.compact_revision() {
                        compact(&node, target, timeout).await;
                    }
                }
            }
        }
        AutoCompaction::Revision(retention) => {
            let mut tick = tokio::time::interval(REVISION_INTERVAL);
            loop {
                tick.tick().await;
                let target = node.mvcc.current_revision() - retention;
                if leader(&node) && target > 0 && target > node.mvcc.compact_revision() {
                    compact(&node, target, timeout).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_compacts_to_the_revision_retention_ago() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut samples = Samples::default();
        assert_eq!(samples.tick(t0, 10, 10 * s), None);
        assert_eq!(samples.tick(t0 + 5 * s, 50, 10 * s), None);
        assert_eq!(samples.tick(t0 + 10 * s, 90, 10 * s), Some(10));
        assert_eq!(samples.tick(t0 + 12 * s, 95, 10 * s), None);
        assert_eq!(samples.tick(t0 + 16 * s, 99, 10 * s), Some(50));
    }

    #[tokio::test]
    async fn physical_waits_for_the_deletion() {
        use storage::{AppliedIndex, CompactionConfig, MemoryEngine};
        let manual = CompactionConfig { batch_revisions: 1, background: false, ..CompactionConfig::default() };
        let mvcc = std::sync::Arc::new(MvccStore::open_with(std::sync::Arc::new(MemoryEngine::new()), manual).unwrap());
        for i in 0..20u64 {
            let mut t = mvcc.write_txn();
            t.put(b"k", b"v", 0);
            t.commit(AppliedIndex { index: i + 1, term: 1 }).unwrap();
        }
        mvcc.compact(15, AppliedIndex { index: 100, term: 1 }).unwrap();
        let short = Deadline::new(Duration::from_millis(50), None);
        assert!(wait_physical(&mvcc, 15, short).await.is_err(), "nothing deleted yet");
        let stepper = {
            let mvcc = mvcc.clone();
            tokio::task::spawn_blocking(move || mvcc.finish_compaction())
        };
        wait_physical(&mvcc, 15, Deadline::new(Duration::from_secs(30), None)).await.unwrap();
        assert_eq!(mvcc.finished_compact_revision(), 15);
        stepper.await.unwrap().unwrap();
    }

    #[test]
    fn interval_is_a_tenth_capped_at_an_hour() {
        assert_eq!(periodic_interval(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(periodic_interval(Duration::from_secs(7200)), Duration::from_secs(360));
    }
}
