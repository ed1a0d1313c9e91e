//! One watch stream: a task that reads client requests and catches its
//! watchers up with the store, sending responses through a bounded channel.
//!
//! The task races a catch-up against client requests and progress ticks
//! (`tokio::select!`), so a catch-up may be dropped at any await, typically
//! while it waits for room in the channel because the client reads slowly.
//! That must neither lose nor repeat a response: a watcher's responses for
//! a chunk of history (all the fragments of a fragmented one) are first
//! moved to the stream's `pending` queue, and the watcher advances then;
//! `pending` leaves only through [`StreamState::flush`], which takes a
//! response out of it only once the channel has room for it, and every send
//! flushes it first. So after a cancelled catch-up the rest of its responses
//! goes out before anything else: each once, in order, and the fragments of
//! one response back to back, as clients reassembling them expect (etcd's
//! `sendFragments` sends them in one go too).
//!
//! Example: a replay in fragments F1..F5, the client reads slowly, F1 and F2
//! are in the channel and the task waits for room for F3 when a progress
//! request arrives. The request is handled first; the progress answer (if
//! any) waits behind F3..F5, which the next catch-up (or that answer's own
//! send) flushes. The watcher was advanced past F5 when F1..F5 were queued,
//! so no catch-up reads that history again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use api::pb::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest, WatchResponse};
use storage::MvccError;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::watcher::{fragments, Watcher};
use super::WatchGauges;
use crate::api::call::Credential;
use crate::api::Ctx;

/// Revisions read from history per step; bounds the memory a lagging stream
/// holds and lets client requests interleave with a long catch-up.
const CHUNK_REVISIONS: i64 = 512;
/// etcd's default `--experimental-watch-progress-notify-interval`.
/// etcd's `clientv3.InvalidWatchID`.
const INVALID_WATCH_ID: i64 = -1;

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

/// How long a stopping member waits for room to tell a watch stream so.
const STOPPED_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// The client went away or stopped reading: the stream ends.
struct Closed;

struct StreamState {
    ctx: Ctx,
    /// What the stream was opened with (kept only while auth is on).
    credential: Credential,
    out: Out,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    /// A progress request waits for every watcher to be synced.
    progress_requested: bool,
    gauges: Arc<WatchGauges>,
    /// Responses whose watchers already advanced past them but that are not
    /// in the channel yet (see the module docs): at most one watcher's share
    /// of one chunk of history (a catch-up queues one watcher's responses
    /// only once the previous ones went out) and the one response a request
    /// handler is sending behind it.
    pending: VecDeque<WatchResponse>,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.gauges.add_watchers(-(self.watchers.len() as i64));
    }
}

/// Serves one watch stream: `inbound` is the client's requests (a gRPC
/// stream, or the gateway's). As etcd's, the stream outlives the end of
/// its requests (a client may half-close and go on reading events); it ends
/// when they fail or when the client stops reading answers.
pub async fn run<S>(ctx: Ctx, credential: Credential, mut inbound: S, out: Out)
where
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
{
    let every = ctx.cfg.watch_progress_notify_interval;
    let mut revision = ctx.node.revision.clone();
    let gauges = ctx.watch.clone();
    let mut st = StreamState {
        ctx,
        credential,
        out,
        watchers: BTreeMap::new(),
        next_auto_id: 0,
        progress_requested: false,
        gauges,
        pending: VecDeque::new(),
    };
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut requests_ended = false;
    // Tells when the client stopped reading, beside the borrows of `st`.
    let reader = st.out.clone();
    loop {
        revision.borrow_and_update();
        let current = st.current();
        // Responses left over from a cancelled catch-up are its work too.
        let behind = !st.pending.is_empty() || st.watchers.values().any(|w| w.behind(current));
        let step = tokio::select! {
            biased;
            msg = inbound.next(), if !requests_ended => match msg {
                Some(Ok(req)) => st.handle(req).await,
                None => {
                    requests_ended = true;
                    Ok(())
                }
                // The client broke the stream.
                Some(Err(_)) => Err(Closed),
            },
            // The client went away: nobody reads the answers.
            _ = reader.closed() => Err(Closed),
            _ = progress.tick() => st.progress_tick().await,
            r = st.catch_up(current), if behind => match r {
                Ok(reached) => st.answer_progress(reached).await,
                Err(e) => Err(e),
            },
            changed = revision.changed(), if !behind => match changed {
                Ok(()) => Ok(()),
                Err(_) => {
                    st.stopped().await;
                    Err(Closed)
                }
            },
        };
        if step.is_err() {
            break;
        }
    }
}

impl StreamState {
    /// The member stopped (its revision channel closed): the stream ends
    /// with etcd's Unavailable "server stopped", on which etcd's clients
    /// move the watch to another endpoint; a clean end would make them
    /// give it up (clientv3 treats only Unavailable and Internal as
    /// retryable, and `etcdctl make-mirror` then exits).
    async fn stopped(&mut self) {
        let stopped = Err(Status::from(api::EtcdError::Stopped));
        let _ = tokio::time::timeout(STOPPED_SEND, self.out.send(stopped)).await;
    }

    fn current(&self) -> i64 {
        self.ctx.node.mvcc.current_revision()
    }

    fn response(&self, watch_id: i64, revision: i64) -> WatchResponse {
        let header = self.ctx.header(Some(api::pb::etcdserverpb::ResponseHeader { revision, ..Default::default() }));
        WatchResponse { header, watch_id, ..Default::default() }
    }

    /// Sends one response after everything pending.
    async fn send(&mut self, wr: WatchResponse) -> Result<(), Closed> {
        self.pending.push_back(wr);
        self.flush().await
    }

    /// Moves the pending responses to the channel, in order. Cancel-safe: a
    /// response leaves `pending` only once the channel has room for it.
    async fn flush(&mut self) -> Result<(), Closed> {
        while !self.pending.is_empty() {
            let permit = self.out.reserve().await.map_err(|_| Closed)?;
            if let Some(wr) = self.pending.pop_front() {
                crate::metrics::get().mvcc.events.inc_by(wr.events.len() as u64);
                permit.send(Ok(wr));
            }
        }
        Ok(())
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Closed> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    self.gauges.add_watchers(-1);
                    let mut wr = self.response(c.watch_id, self.current());
                    wr.canceled = true;
                    self.send(wr).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // etcd answers once every watcher is synced, with the invalid
                // watch ID; with no watchers it says nothing. Watchers here
                // catch up lazily, so the answer waits for the catch-up.
                self.progress_requested = !self.watchers.is_empty();
                self.answer_progress(self.current()).await
            }
            None => Ok(()),
        }
    }

    /// etcd's `isWatchPermitted`: READ on the watched range, as the
    /// stream's credential says; the refusal is the cancel reason etcd sends.
    async fn permitted(&self, c: &WatchCreateRequest) -> Result<(), String> {
        // etcd's order: a negative start is refused as compacted first
        // (by `Watcher::new`), and an empty key is checked as "\0".
        if !self.ctx.node.auth.is_enabled() || c.start_revision < 0 {
            return Ok(());
        }
        let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
        self.credential
            .check_read(&self.ctx, key, &c.range_end)
            .await
            .map_err(|e| crate::api::auth_token::watch_cancel_reason(&e))
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Closed> {
        if let Err(reason) = self.permitted(&c).await {
            let mut wr = self.response(INVALID_WATCH_ID, self.current());
            wr.created = true;
            wr.canceled = true;
            wr.cancel_reason = reason;
            return self.send(wr).await;
        }
        let current = self.current();
        let id = if c.watch_id == 0 {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            Ok(self.next_auto_id - 1)
        } else if self.watchers.contains_key(&c.watch_id) {
            Err("mvcc: duplicate watch ID provided on the WatchStream")
        } else {
            Ok(c.watch_id)
        };
        let watcher = id.and_then(|id| Watcher::new(id, &c, current).map_err(|e| e.reason()));
        let mut wr = self.response(INVALID_WATCH_ID, current);
        wr.created = true;
        match watcher {
            Ok(w) => {
                wr.watch_id = w.id;
                self.watchers.insert(w.id, w);
                self.gauges.add_watchers(1);
            }
            Err(reason) => {
                wr.canceled = true;
                wr.cancel_reason = reason.to_string();
            }
        }
        self.send(wr).await
    }

    /// Sends, for every watcher behind `current`, the events of one chunk of
    /// history (or etcd's compacted response when that history is gone).
    /// Answers a pending progress request if every watcher has everything
    /// up to `rev`.
    async fn answer_progress(&mut self, rev: i64) -> Result<(), Closed> {
        if !self.progress_requested {
            return Ok(());
        }
        if self.watchers.is_empty() {
            self.progress_requested = false;
            return Ok(());
        }
        if self.watchers.values().all(|w| w.synced(rev)) {
            self.progress_requested = false;
            let wr = self.response(INVALID_WATCH_ID, rev);
            self.send(wr).await?;
        }
        Ok(())
    }

    /// Returns the revision the behind watchers were brought up to.
    async fn catch_up(&mut self, current: i64) -> Result<i64, Closed> {
        // What a cancelled catch-up left goes first.
        self.flush().await?;
        let mvcc = self.ctx.node.mvcc.clone();
        let compacted = mvcc.compact_revision();
        let lost: Vec<i64> =
            self.watchers.values().filter(|w| !w.compacted && w.next_rev < compacted).map(|w| w.id).collect();
        for id in lost {
            // etcd's compacted response: header without a revision.
            let wr = WatchResponse {
                header: self.ctx.header_without_revision(),
                watch_id: id,
                compact_revision: compacted,
                canceled: true,
                ..Default::default()
            };
            // Queued, then marked, then flushed: cancellation-safe as below.
            self.pending.push_back(wr);
            if let Some(w) = self.watchers.get_mut(&id) {
                w.compacted = true;
            }
            self.flush().await?;
        }
        let Some(from) = self.watchers.values().filter(|w| w.behind(current)).map(|w| w.next_rev).min() else {
            return Ok(current);
        };
        let to = current.min(from + CHUNK_REVISIONS - 1);
        let prev_kv = self.watchers.values().any(|w| w.prev_kv && w.behind(to));
        let events = match mvcc.events_between(from, to, prev_kv) {
            Ok(evs) => evs,
            // Compacted meanwhile: the next turn sends the compacted responses.
            Err(MvccError::Compacted) => return Ok(from - 1),
            Err(e) => {
                tracing::error!(error = %e, "reading watch history failed");
                let _ = self.out.send(Err(Status::internal(e.to_string()))).await;
                return Err(Closed);
            }
        };
        // etcd cuts fragments at the request limit plus gRPC's allowance.
        let max_bytes = self.ctx.cfg.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES;
        let ids: Vec<i64> = self.watchers.values().filter(|w| w.behind(to)).map(|w| w.id).collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            let evs: Vec<_> = events.iter().filter(|ev| w.wants(ev)).map(|ev| w.to_pb(ev)).collect();
            let sent = !evs.is_empty();
            if sent {
                let mut wr = self.response(id, to);
                wr.events = evs;
                if w.fragment {
                    self.pending.extend(fragments(wr, max_bytes));
                } else {
                    self.pending.push_back(wr);
                }
            }
            // Queued is as good as sent (see the module docs): advance now,
            // so a cancellation in the flush below repeats nothing.
            if let Some(w) = self.watchers.get_mut(&id) {
                w.sent_since_tick |= sent;
                w.next_rev = to + 1;
            }
            self.flush().await?;
        }
        Ok(to)
    }

    /// etcd's periodic progress: a synced progress_notify watcher that got
    /// no events since the last tick is told the current revision.
    async fn progress_tick(&mut self) -> Result<(), Closed> {
        let current = self.current();
        let due: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.progress_notify && !w.sent_since_tick && w.synced(current))
            .map(|w| w.id)
            .collect();
        for w in self.watchers.values_mut() {
            w.sent_since_tick = false;
        }
        for id in due {
            let wr = self.response(id, current);
            self.send(wr).await?;
        }
        Ok(())
    }
}
