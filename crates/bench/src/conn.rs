//! gRPC connections: `--conns` HTTP/2 connections spread round-robin over the
//! endpoints, each a separate tonic `Channel` (cloning a `Channel` shares its
//! connection, `Endpoint::connect` makes a new one). Worker `w` uses
//! connection `w % conns`, so 1000 clients over 100 connections is ten
//! concurrent streams per connection, as with etcd's tool.

use std::time::Duration;

use api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use api::pb::etcdserverpb::StatusRequest;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

pub struct Pool {
    channels: Vec<Channel>,
}

impl Pool {
    /// Dials `conns` connections (concurrently), connection `i` to endpoint `i % endpoints.len()`.
    pub async fn connect(endpoints: &[String], conns: usize, dial_timeout: Duration) -> Result<Pool, String> {
        let mut set = JoinSet::new();
        for i in 0..conns {
            let ep = endpoints[i % endpoints.len()].clone();
            set.spawn(async move { (i, dial(&ep, dial_timeout).await) });
        }
        let mut channels: Vec<Option<Channel>> = vec![None; conns];
        while let Some(r) = set.join_next().await {
            let (i, ch) = r.map_err(|e| format!("dial task failed: {e}"))?;
            channels[i] = Some(ch?);
        }
        Ok(Pool { channels: channels.into_iter().flatten().collect() })
    }

    /// The connection worker (or stream) `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }
}

/// One new HTTP/2 connection to `ep`.
pub async fn dial(ep: &str, dial_timeout: Duration) -> Result<Channel, String> {
    let e = Endpoint::from_shared(ep.to_string())
        .map_err(|e| format!("bad endpoint {ep:?}: {e}"))?
        .connect_timeout(dial_timeout)
        .tcp_nodelay(true);
    match tokio::time::timeout(dial_timeout, e.connect()).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(err)) => Err(format!("cannot connect to {ep}: {err}")),
        Err(_) => Err(format!("cannot connect to {ep}: timed out after {dial_timeout:?}")),
    }
}

/// The endpoints whose member is the leader (Maintenance.Status: member_id == leader).
pub async fn leader_endpoints(
    endpoints: &[String],
    dial_timeout: Duration,
    request_timeout: Duration,
) -> Result<Vec<String>, String> {
    let mut leaders = Vec::new();
    let mut problems = Vec::new();
    for ep in endpoints {
        let status = async {
            let ch = dial(ep, dial_timeout).await?;
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(request_timeout);
            let resp = MaintenanceClient::new(ch).status(req).await.map_err(|s| format!("{ep}: {}", s.message()))?;
            Ok::<_, String>(resp.into_inner())
        };
        match status.await {
            Ok(s) => {
                let member = s.header.map(|h| h.member_id).unwrap_or(0);
                if member != 0 && member == s.leader {
                    leaders.push(ep.clone());
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if leaders.is_empty() {
        return Err(format!("--target-leader: no endpoint reports itself as leader ({})", problems.join("; ")));
    }
    Ok(leaders)
}
