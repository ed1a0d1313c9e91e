//! `lease-keepalive`: each client grants one lease, opens one LeaseKeepAlive
//! stream and sends keep-alives one at a time; an operation is one
//! request-response round trip (which on etcd and MetaStore alike is answered
//! by the leader and, for MetaStore, not written to raft).

use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use api::pb::etcdserverpb::lease_client::LeaseClient;
use api::pb::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::args::LeaseArgs;
use crate::conn::Pool;
use crate::runner::Workload;
use crate::stats::status_message;

/// Keep-alive requests queued per stream: one is in flight at a time.
const KEEPALIVE_QUEUE: usize = 1;
/// Limit on granting the lease and opening the stream.
const SETUP_LIMIT: Duration = Duration::from_secs(10);

pub struct KeepAlive {
    pool: Arc<Pool>,
    ttl: i64,
}

pub struct Stream {
    lease: LeaseClient<Conn>,
    id: i64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAlive {
    pub fn new(pool: Arc<Pool>, a: &LeaseArgs) -> (KeepAlive, Value) {
        (KeepAlive { pool, ttl: a.ttl }, json!({"ttl": a.ttl}))
    }
}

async fn next(rx: &mut Streaming<LeaseKeepAliveResponse>) -> Result<LeaseKeepAliveResponse, String> {
    match rx.message().await {
        Ok(Some(r)) if r.ttl > 0 => Ok(r),
        Ok(Some(_)) => Err("keep-alive answered TTL <= 0: lease not found".into()),
        Ok(None) => Err("keep-alive stream closed by the server".into()),
        Err(s) => Err(status_message(&s)),
    }
}

impl Workload for KeepAlive {
    type Worker = Stream;

    async fn setup(&self, worker: usize) -> Result<Stream, String> {
        let setup = async {
            let mut lease = self.pool.conn(worker).lease();
            let grant = lease
                .lease_grant(LeaseGrantRequest { ttl: self.ttl, id: 0 })
                .await
                .map_err(|s| format!("lease grant: {}", status_message(&s)))?
                .into_inner();
            let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE);
            // Queue the first keep-alive before opening the stream: a server
            // may send response headers only with its first message.
            tx.send(LeaseKeepAliveRequest { id: grant.id }).await.map_err(|_| "keep-alive queue closed".to_string())?;
            let mut rx = lease
                .lease_keep_alive(ReceiverStream::new(rx))
                .await
                .map_err(|s| format!("lease keep-alive: {}", status_message(&s)))?
                .into_inner();
            next(&mut rx).await?;
            Ok(Stream { lease, id: grant.id, tx, rx })
        };
        tokio::time::timeout(SETUP_LIMIT, setup).await.unwrap_or_else(|_| Err("lease setup timed out".into()))
    }

    async fn op(&self, s: &mut Stream, _i: u64, _limit: Duration) -> Result<(), String> {
        s.tx.send(LeaseKeepAliveRequest { id: s.id }).await.map_err(|_| "keep-alive stream closed".to_string())?;
        next(&mut s.rx).await.map(drop)
    }

    async fn teardown(&self, mut s: Stream) {
        drop(s.tx);
        let _ = s.lease.lease_revoke(LeaseRevokeRequest { id: s.id }).await;
    }
}
