//! etcd's Watch service.
//!
//! Design: watchers pull. Apply only publishes the newest revision (a
//! `tokio::sync::watch` value, never blocking); each gRPC stream runs one task
//! that owns its watchers and, whenever some watcher is behind the store,
//! reads the missing events from MVCC history in bounded chunks and sends
//! them. So a slow or stalled client never slows writers or other streams
//! (it just stops reading history, holding one chunk at most), a lagging
//! watcher is caught up from history, and when its history was compacted
//! away it gets etcd's compacted response.
//!
//! Invariants: a watcher receives each matching event exactly once, in
//! revision order (its `next_rev` only grows, and advances once its
//! responses are in the stream's pending queue, which is drained in order
//! before anything else is sent, whatever cancels a catch-up: see
//! `stream.rs`); the fragments of one response go out back to back; a
//! stream that ends, however it ends, drops all its watchers.

mod stream;
mod watcher;

use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use api::pb::etcdserverpb::{watch_server::Watch, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::call::{Call, Credential};
use crate::api::Ctx;

/// Responses queued per stream before the stream task waits for the client.
pub const OUT_QUEUE: usize = 64;

/// Live watch streams and watchers, for metrics and leak tests.
#[derive(Default)]
pub struct WatchGauges {
    streams: AtomicI64,
    watchers: AtomicI64,
}

impl WatchGauges {
    pub fn streams(&self) -> i64 {
        self.streams.load(Ordering::Relaxed)
    }
    pub fn watchers(&self) -> i64 {
        self.watchers.load(Ordering::Relaxed)
    }
    fn add_watchers(&self, n: i64) {
        self.watchers.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts an election observer as the watch stream and watcher it is
    /// in etcd (which builds it on a watch) while the guard lives.
    pub fn observer(self: &Arc<Self>) -> ObserverGauge {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.add_watchers(1);
        ObserverGauge(self.clone())
    }
}

pub struct ObserverGauge(Arc<WatchGauges>);

impl Drop for ObserverGauge {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
        self.0.add_watchers(-1);
    }
}

pub struct WatchService {
    ctx: Ctx,
}

impl WatchService {
    pub fn new(ctx: Ctx) -> Self {
        WatchService { ctx }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Starts serving a watch stream whose requests come from `inbound` (a gRPC
/// stream, or the JSON gateway's); its responses arrive on the receiver.
/// `credential` is the one the stream was opened with: each watch created
/// on it is checked with it (etcd's `isWatchPermitted`).
pub fn spawn_stream<S>(ctx: Ctx, credential: Credential, inbound: S) -> mpsc::Receiver<Result<WatchResponse, Status>>
where
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    serve_stream(ctx, credential, inbound, tx);
    rx
}

/// Like [`spawn_stream`], answering on `out`.
pub fn serve_stream<S>(ctx: Ctx, credential: Credential, inbound: S, out: mpsc::Sender<Result<WatchResponse, Status>>)
where
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin + Send + 'static,
{
    let gauges: Arc<WatchGauges> = ctx.watch.clone();
    gauges.streams.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        stream::run(ctx, credential, inbound, out).await;
        gauges.streams.fetch_sub(1, Ordering::Relaxed);
    });
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let credential = Call::of(&request)?.credential().clone();
        let rx = spawn_stream(self.ctx.clone(), credential, request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
