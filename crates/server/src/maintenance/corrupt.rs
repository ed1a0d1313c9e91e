//! etcd's corruption checks (`--experimental-initial-corrupt-check`,
//! `--experimental-corrupt-check-time`): members with the same history have
//! the same HashKV at the same revision, so a member whose hash differs
//! from the others' at a revision both hold (same compaction) has diverged.
//!
//! - Initial: before serving clients, a member compares its hash at its
//!   current revision with every peer's at that revision; a mismatch stops
//!   it ("found data inconsistency with peers"). Peers that cannot answer
//!   (down, behind, compacted past it) are skipped, as in etcd.
//! - Periodic: the leader compares its hash with every peer's at its current
//!   revision and raises a CORRUPT alarm for each peer that differs; the
//!   alarm stops all writes cluster-wide until an operator disarms it.

use std::time::Duration;

use api::pb::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvRequest};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::EtcdError;

use crate::api::maintenance::hash_kv_here;
use crate::api::Ctx;
use crate::deadline::Deadline;
use crate::transport::peer::client::{connect, with_timeout, PeerCallError};

/// Bound on one peer's answer.
const PEER_HASH_TIMEOUT: Duration = Duration::from_secs(10);

/// A member's hash at the revision asked, with its compact revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub hash: u32,
    pub compact_revision: i64,
}

/// The peers whose reading contradicts `mine`: same compaction, another
/// hash. Peers with another compaction hashed another history and prove
/// nothing; peers without a reading are skipped.
pub fn mismatched(mine: Reading, peers: &[(u64, Option<Reading>)]) -> Vec<u64> {
    peers
        .iter()
        .filter_map(|(id, r)| {
            r.filter(|r| r.compact_revision == mine.compact_revision && r.hash != mine.hash).map(|_| *id)
        })
        .collect()
}

/// Every other member's reading at `rev` (None where it could not give one).
async fn peer_readings(ctx: &Ctx, rev: i64) -> Vec<(u64, Option<Reading>)> {
    let mut out = Vec::new();
    for m in ctx.node.members.list() {
        if m.id == ctx.cfg.member_id || m.is_learner {
            continue;
        }
        let mut reading = None;
        for url in &m.peer_urls {
            let answer = async {
                let mut c = connect(url, ctx.leader.dialer())
                    .await
                    .map_err(|source| PeerCallError::Connect { url: url.clone(), source })?;
                let req = with_timeout(HashKvRequest { revision: rev }, PEER_HASH_TIMEOUT);
                let reply = c.hash_kv(req).await.map_err(|status| PeerCallError::Call { url: url.clone(), status });
                reply.map(tonic::Response::into_inner)
            };
            match tokio::time::timeout(PEER_HASH_TIMEOUT, answer).await {
                Ok(Ok(r)) => {
                    reading = Some(Reading { hash: r.hash, compact_revision: r.compact_revision });
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %format!("{:x}", m.id), %url, error = %e, "cannot get a peer's hash")
                }
                Err(_) => tracing::warn!(peer = %format!("{:x}", m.id), %url, "a peer's hash took too long"),
            }
        }
        out.push((m.id, reading));
    }
    out
}

/// Why the initial check stops this member.
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    #[error("cannot hash this member's store: {0}")]
    Hash(#[from] EtcdError),
    #[error(
        "{member:x} found data inconsistency with peers (hash {hash} at revision {revision} differs from {})",
        .peers.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>().join(", ")
    )]
    Inconsistent { member: u64, hash: u32, revision: i64, peers: Vec<u64> },
}

async fn my_reading(ctx: &Ctx) -> Result<(i64, Reading), EtcdError> {
    let (r, rev) = hash_kv_here(ctx, 0).await?;
    Ok((rev, Reading { hash: r.hash, compact_revision: r.compact_revision }))
}

/// The check before serving clients; Err stops the member.
pub async fn initial_check(ctx: &Ctx) -> Result<(), CorruptError> {
    let (rev, mine) = my_reading(ctx).await?;
    let peers = peer_readings(ctx, rev).await;
    let bad = mismatched(mine, &peers);
    if bad.is_empty() {
        tracing::info!(revision = rev, hash = mine.hash, checked = peers.len(), "initial corruption check passed");
        return Ok(());
    }
    Err(CorruptError::Inconsistent { member: ctx.cfg.member_id, hash: mine.hash, revision: rev, peers: bad })
}

/// The leader's periodic check, every `every`, until the task is dropped.
pub async fn periodic(ctx: Ctx, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        if ctx.node.state.leader() != ctx.cfg.member_id {
            continue;
        }
        let (rev, mine) = match my_reading(&ctx).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "corruption check: cannot hash this member's store");
                continue;
            }
        };
        for id in mismatched(mine, &peer_readings(&ctx, rev).await) {
            tracing::error!(peer = %format!("{id:x}"), revision = rev, "corruption check: a member's hash differs; raising CORRUPT");
            let alarm =
                AlarmRequest { action: AlarmAction::Activate as i32, member_id: id, alarm: AlarmType::Corrupt as i32 };
            let deadline = Deadline::new(ctx.request_timeout(), None);
            if let Err(e) = ctx.node.propose(Internal::Alarm(alarm), deadline).await {
                tracing::warn!(error = %e, "raising the CORRUPT alarm failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_hash_of_the_same_history_is_a_mismatch() {
        let mine = Reading { hash: 7, compact_revision: 3 };
        let peers = [
            (1, Some(Reading { hash: 7, compact_revision: 3 })),
            (2, Some(Reading { hash: 8, compact_revision: 3 })),
            (3, Some(Reading { hash: 8, compact_revision: 5 })),
            (4, None),
        ];
        assert_eq!(mismatched(mine, &peers), vec![2]);
        assert!(mismatched(mine, &[]).is_empty());
    }
}
