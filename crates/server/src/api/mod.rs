//! The client API: etcd's gRPC services (one file per service), the watch
//! streams, the JSON gateway and plain HTTP (`/metrics`, `/health`,
//! `/version`) on the client port. Handlers validate, then either read the
//! MVCC store (after a ReadIndex barrier for linearizable reads) or propose
//! through raft and wait for apply, always within a deadline. Errors stay
//! `EtcdError` until they leave through tonic, where `api::EtcdError`'s
//! conversion gives etcd's code and message.

pub mod auth;
pub mod auth_token;
pub mod call;
pub mod cluster;
pub mod election;
pub mod gateway;
pub mod http;
pub mod kv;
pub mod lease;
pub mod local;
pub mod lock;
pub mod maintenance;
mod mapped;
pub mod range_reply;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use api::pb::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, ResponseHeader};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::EtcdError;

use crate::config::ServerConfig;
use crate::deadline::Deadline;
use crate::node::NodeHandle;

/// What every service needs: the node, the config, and header fields.
#[derive(Clone)]
pub struct Ctx {
    pub node: Arc<NodeHandle>,
    pub cfg: Arc<ServerConfig>,
    pub watch: Arc<crate::api::watch::WatchGauges>,
    pub leader: Arc<crate::transport::peer::leader::LeaderLink>,
}

impl Ctx {
    pub fn request_timeout(&self) -> Duration {
        self.cfg.request_timeout()
    }

    /// etcd's quota check before proposing a write that adds `cost` bytes:
    /// if the store would reach `--quota-backend-bytes`, this member raises
    /// the NOSPACE alarm (through raft, so every member refuses such writes
    /// from then on) and the write fails with "database space exceeded".
    pub async fn check_quota(&self, cost: u64, deadline: Deadline) -> Result<(), EtcdError> {
        let Some(quota) = self.cfg.quota_bytes else {
            return Ok(());
        };
        if self.node.mvcc.engine().size_bytes_hint().saturating_add(cost) < quota {
            return Ok(());
        }
        if self.node.alarms.is_active(self.cfg.member_id, AlarmType::Nospace as i32) {
            // Raised already: another raft entry would change nothing.
            return Err(EtcdError::NoSpace);
        }
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.cfg.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.node.propose(Internal::Alarm(raise), deadline).await {
            tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
        }
        Err(EtcdError::NoSpace)
    }

    /// Fills cluster_id, member_id and raft_term, keeping the revision that
    /// the operation set (or the current one when it set none).
    pub fn header(&self, h: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = match h {
            Some(h) if h.revision != 0 => h.revision,
            _ => self.node.mvcc.current_revision(),
        };
        Some(ResponseHeader {
            cluster_id: self.node.state.cluster_id(),
            member_id: self.cfg.member_id,
            revision,
            raft_term: self.node.state.term(),
        })
    }

    /// A header without a revision, as etcd's Cluster service and its
    /// compacted watch responses send.
    pub fn header_without_revision(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.node.state.cluster_id(),
            member_id: self.cfg.member_id,
            revision: 0,
            raft_term: self.node.state.term(),
        })
    }
}
