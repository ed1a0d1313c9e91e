//! A cached connection to the current leader's peer service, for requests
//! only the leader can answer (lease renewals and TTLs, learner promotion).

use std::future::Future;

use api::pb::metastorepb::peer_client::PeerClient;
use api::EtcdError;
use parking_lot::Mutex;
use tonic::transport::Channel;

use super::client::{connect, Dialer};
use crate::deadline::Deadline;
use crate::node::NodeHandle;

pub struct LeaderLink {
    dialer: Dialer,
    cached: Mutex<Option<(u64, PeerClient<Channel>)>>,
}

impl LeaderLink {
    pub fn new(dialer: Dialer) -> Self {
        LeaderLink { dialer, cached: Mutex::new(None) }
    }

    pub async fn client(&self, node: &NodeHandle) -> Result<PeerClient<Channel>, EtcdError> {
        let leader = node.state.leader();
        if leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        if let Some((id, c)) = self.cached.lock().as_ref() {
            if *id == leader {
                return Ok(c.clone());
            }
        }
        let member = node.members.get(leader).ok_or(EtcdError::NoLeader)?;
        let mut last = EtcdError::NoLeader;
        for url in &member.peer_urls {
            match connect(url, &self.dialer).await {
                Ok(c) => {
                    *self.cached.lock() = Some((leader, c.clone()));
                    return Ok(c);
                }
                Err(e) => last = EtcdError::Internal(format!("leader unreachable at {url}: {e}")),
            }
        }
        Err(last)
    }

    /// How this member dials its peers.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Forgets the connection after a failure, so the next call reconnects.
    pub fn reset(&self) {
        self.cached.lock().take();
    }

    /// Runs `call` on the leader's peer service within `deadline`.
    pub async fn call<T, F, Fut>(&self, node: &NodeHandle, deadline: Deadline, call: F) -> Result<T, EtcdError>
    where
        F: FnOnce(PeerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client(node).await?;
        match deadline.run(call(client)).await? {
            Ok(resp) => Ok(resp.into_inner()),
            Err(s) => {
                self.reset();
                Err(status_to_etcd(&s))
            }
        }
    }
}

/// The etcd error a forwarded call's status stands for, when it is one.
pub fn status_to_etcd(s: &tonic::Status) -> EtcdError {
    match s.message() {
        "etcdserver: requested lease not found" => EtcdError::LeaseNotFound,
        "etcdserver: not leader" => EtcdError::NotLeader,
        "etcdserver: no leader" => EtcdError::NoLeader,
        "etcdserver: can only promote a learner member which is in sync with leader" => EtcdError::LearnerNotReady,
        "etcdserver: can only promote a learner member" => EtcdError::MemberNotLearner,
        "etcdserver: member not found" => EtcdError::MemberNotFound,
        "etcdserver: request timed out" => EtcdError::Timeout,
        other => EtcdError::Internal(format!("leader: {other}")),
    }
}
