//! Lease expiry: the leader proposes a revoke for each lease whose TTL ran
//! out, as etcd's lessor does; apply deletes the attached keys on every
//! member. Only a confirmed leader revokes (etcd issue 15247), so a deposed
//! or stalled leader cannot expire a lease the new leader keeps alive.

use std::sync::Arc;

use api::pb::etcdserverpb::LeaseRevokeRequest;
use api::pb::metastorepb::internal_request::Request as Internal;

use crate::deadline::Deadline;
use crate::node::NodeHandle;

/// How often the leader looks for expired leases (etcd checks every 500 ms).
const EXPIRY_CHECK: std::time::Duration = std::time::Duration::from_millis(500);
/// Revokes proposed per check at most, like etcd's lease revoke rate limit.
const REVOKES_PER_CHECK: usize = 500;

/// The leader proposes a revoke for every expired lease; apply deletes its
/// keys. Each revoke is its own bounded request.
pub async fn revoke_expired_leases(node: Arc<NodeHandle>, timeout: std::time::Duration) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    loop {
        tick.tick().await;
        let expired = node.lessor.take_expired(REVOKES_PER_CHECK);
        if expired.is_empty() {
            continue;
        }
        // As etcd (issue 15247): expire only as a confirmed leader. Those
        // taken are pushed back and come again while this member leads.
        if let Err(e) = node.confirm_leadership(Deadline::new(timeout, None)).await {
            tracing::debug!(error = %e, "not revoking expired leases: leadership not confirmed");
            continue;
        }
        for id in expired {
            let node = node.clone();
            tokio::spawn(async move {
                let deadline = Deadline::new(timeout, None);
                match node.propose(Internal::LeaseRevoke(LeaseRevokeRequest { id }), deadline).await {
                    Ok(_) => {
                        crate::metrics::get().server.lease_expired.inc();
                        tracing::debug!(lease = id, "expired lease revoked")
                    }
                    Err(api::EtcdError::LeaseNotFound) => tracing::debug!(lease = id, "expired lease already revoked"),
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            });
        }
    }
}
