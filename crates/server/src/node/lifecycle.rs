//! A member's entrance and exit, as etcd's server does them: once running it
//! publishes its name and client URLs through raft; when stopping as leader
//! it hands leadership over first.

use std::sync::Arc;

use api::pb::metastorepb::internal_request::Request as Internal;
use api::pb::metastorepb::MemberAttrRequest;

use crate::config::ServerConfig;
use crate::deadline::Deadline;
use crate::node::NodeHandle;

/// How often a member retries publishing its attributes until it succeeds.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// etcd's publish: once running, a member records its name and client URLs
/// through raft, so every member lists them. It returns once the entry is
/// applied here, which also means this member has caught up to it.
pub async fn publish_attributes(node: Arc<NodeHandle>, cfg: Arc<ServerConfig>) {
    let attrs =
        MemberAttrRequest { id: cfg.member_id, name: cfg.name.clone(), client_urls: cfg.advertise_client_urls.clone() };
    loop {
        if node.state.is_stopped() {
            return;
        }
        let deadline = Deadline::new(cfg.request_timeout(), None);
        match node.propose(Internal::MemberAttr(attrs.clone()), deadline).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

/// Like etcd on graceful shutdown: a leader with peers hands leadership to
/// the most caught-up voter first, so the cluster need not wait an election
/// timeout. Bounded by the request timeout; failing it only costs that wait.
pub async fn hand_over_leadership(node: &NodeHandle, cfg: &ServerConfig) {
    if node.state.leader() != cfg.member_id || node.members.list().len() < 2 {
        return;
    }
    let deadline = Deadline::new(cfg.request_timeout(), None);
    if let Err(e) = node.transfer_leader(0, deadline).await {
        tracing::warn!(error = %e, "could not hand over leadership before stopping");
        return;
    }
    let moved = deadline
        .run(async {
            while node.state.leader() == cfg.member_id {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
    match moved {
        Ok(()) => tracing::info!(leader = %format!("{:x}", node.state.leader()), "handed over leadership"),
        Err(_) => tracing::warn!("leadership did not move before stopping"),
    }
}
