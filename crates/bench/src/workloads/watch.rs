//! `watch-latency`: `--watchers` watchers of one key, spread over `--streams`
//! bidi Watch streams (round-robin over the connections); one putter writes
//! the key `--put-total` times at `--put-rate` per second. Each value begins
//! with the put's sequence number, so each arriving event is matched to its
//! put. Reported:
//!   - latency: event arrival minus the put's acknowledgement (0 when the
//!     event arrived before the ack, which is allowed: the server may send the
//!     event first; `events_before_ack` counts those);
//!   - "event after put start": event arrival minus the moment the put was
//!     sent (what etcd's `watch-latency` measures);
//!   - "put": the puts' own latency.
//!
//! Events still missing `--request-timeout` after the last put are errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::pb::etcdserverpb::watch_request::RequestUnion;
use api::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::args::WatchArgs;
use crate::conn::Pool;
use crate::keys::{parse_seq, seq_value};
use crate::report::Report;
use crate::runner::HARD_TIMEOUT;
use crate::stats::{status_message, ErrorCounts, Samples};

/// Limit on opening one stream and creating its watchers.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

pub fn params(a: &WatchArgs) -> Value {
    json!({"watchers": a.watchers, "streams": a.streams, "put_total": a.put_total,
        "put_rate": a.put_rate, "key": a.key, "val_size": a.val_size})
}

/// Watchers per stream: `watchers` spread as evenly as possible over `streams`.
fn split(watchers: usize, streams: usize) -> Vec<usize> {
    (0..streams).map(|s| watchers / streams + usize::from(s < watchers % streams)).collect()
}

/// Moments (nanoseconds since `base`, plus one so 0 means "not yet") of each put.
struct Timeline {
    base: Instant,
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

impl Timeline {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
    fn get(v: &[AtomicU64], seq: u64) -> Option<u64> {
        v.get(seq as usize).map(|a| a.load(Ordering::Acquire)).filter(|&t| t != 0)
    }
}

/// What one stream's reader saw.
#[derive(Default)]
struct StreamResult {
    after_ack: Samples,
    after_send: Samples,
    /// (seq, arrival) of events that came before their put's ack was recorded.
    early: Vec<(u64, u64)>,
    received: u64,
    before_ack: u64,
    errors: ErrorCounts,
    timed_out: bool,
}

struct OpenStream {
    /// Kept open for the run: dropping it ends the request stream.
    _tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
    watchers: usize,
}

async fn open_stream(pool: &Pool, s: usize, key: &[u8], watchers: usize) -> Result<OpenStream, String> {
    let mut client = pool.conn(s).watch();
    // Every create request is queued before the stream opens (the queue holds
    // exactly this stream's watchers), so the server's first answer flushes
    // its response headers.
    let (tx, rx) = mpsc::channel(watchers);
    for _ in 0..watchers {
        let create = WatchCreateRequest { key: key.to_vec(), ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
            .await
            .map_err(|_| "watch queue closed".to_string())?;
    }
    let mut rx =
        client.watch(ReceiverStream::new(rx)).await.map_err(|s| format!("watch: {}", status_message(&s)))?.into_inner();
    let mut created = 0;
    while created < watchers {
        match rx.message().await {
            Ok(Some(r)) if r.created && !r.canceled => created += 1,
            Ok(Some(r)) if r.canceled => return Err(format!("watch create canceled: {}", r.cancel_reason)),
            Ok(Some(_)) => {}
            Ok(None) => return Err("watch stream closed during setup".into()),
            Err(s) => return Err(format!("watch: {}", status_message(&s))),
        }
    }
    Ok(OpenStream { _tx: tx, rx, watchers })
}

async fn read_stream(
    mut st: OpenStream,
    tl: Arc<Timeline>,
    put_total: u64,
    mut stop: watch::Receiver<bool>,
    hard_deadline: Instant,
) -> StreamResult {
    let mut r = StreamResult::default();
    let expected = put_total * st.watchers as u64;
    while r.received < expected {
        tokio::select! {
            m = st.rx.message() => match m {
                Ok(Some(resp)) => {
                    let arrival = tl.now();
                    if resp.canceled {
                        r.errors.add(format!("watch canceled: {}", resp.cancel_reason));
                        break;
                    }
                    for ev in resp.events {
                        let Some(seq) = ev.kv.and_then(|kv| parse_seq(&kv.value)).filter(|&s| s < put_total) else {
                            r.errors.add("event for a value this run did not write");
                            continue;
                        };
                        r.received += 1;
                        if let Some(sent) = Timeline::get(&tl.sent, seq) {
                            r.after_send.push_nanos(arrival.saturating_sub(sent));
                        }
                        match Timeline::get(&tl.acked, seq) {
                            Some(ack) => {
                                r.before_ack += u64::from(arrival < ack);
                                r.after_ack.push_nanos(arrival.saturating_sub(ack));
                            }
                            None => r.early.push((seq, arrival)),
                        }
                    }
                }
                Ok(None) => {
                    r.errors.add("watch stream closed by the server");
                    break;
                }
                Err(s) => {
                    r.errors.add(status_message(&s));
                    break;
                }
            },
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(hard_deadline.into()) => {
                r.timed_out = true;
                break;
            }
        }
    }
    r
}

pub async fn run(
    pool: Arc<Pool>,
    a: &WatchArgs,
    conns: usize,
    hard_deadline: Instant,
    request_timeout: Duration,
    mut report: Report,
) -> Result<Report, String> {
    let key = a.key.clone().into_bytes();
    report.conns = conns;
    report.clients = a.streams;

    // Open the streams and create the watchers, concurrently.
    let mut set = JoinSet::new();
    for (s, n) in split(a.watchers, a.streams).into_iter().enumerate() {
        let (pool, key) = (pool.clone(), key.clone());
        set.spawn(async move {
            let limit = SETUP_LIMIT.min(hard_deadline.saturating_duration_since(Instant::now()));
            tokio::time::timeout(limit, open_stream(&pool, s, &key, n))
                .await
                .unwrap_or_else(|_| Err("watch setup timed out".into()))
        });
    }
    let mut streams = Vec::new();
    while let Some(r) = set.join_next().await {
        streams.push(r.map_err(|e| format!("watch setup task failed: {e}"))??);
    }

    // Readers.
    let tl = Arc::new(Timeline {
        base: Instant::now(),
        sent: (0..a.put_total).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..a.put_total).map(|_| AtomicU64::new(0)).collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    for st in streams {
        readers.spawn(read_stream(st, tl.clone(), a.put_total, stop_rx.clone(), hard_deadline));
    }

    // The putter: paced, one put at a time.
    let start = Instant::now();
    let mut kv = pool.conn(0).kv();
    let mut put_lat = Samples::with_capacity(a.put_total as usize);
    let mut errors = ErrorCounts::default();
    let mut timed_out = false;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.put_rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..a.put_total {
        tick.tick().await;
        let now = Instant::now();
        if now >= hard_deadline {
            timed_out = true;
            errors.add_n(format!("put: {HARD_TIMEOUT}"), a.put_total - seq);
            break;
        }
        let limit = request_timeout.min(hard_deadline - now);
        let mut req = tonic::Request::new(PutRequest {
            key: key.clone(),
            value: seq_value(seq, a.val_size),
            ..Default::default()
        });
        req.set_timeout(limit);
        tl.sent[seq as usize].store(tl.now(), Ordering::Release);
        let t0 = Instant::now();
        match tokio::time::timeout(limit, kv.put(req)).await {
            Ok(Ok(_)) => {
                tl.acked[seq as usize].store(tl.now(), Ordering::Release);
                put_lat.push(t0.elapsed());
            }
            Ok(Err(s)) => errors.add(format!("put: {}", status_message(&s))),
            Err(_) => errors.add("put: client: no answer within --request-timeout"),
        }
    }

    // Let the events drain, then stop the readers.
    let drain = request_timeout.min(hard_deadline.saturating_duration_since(Instant::now()));
    let mut results = Vec::new();
    let drained = tokio::time::timeout(drain, async {
        while let Some(r) = readers.join_next().await {
            results.push(r);
        }
    })
    .await;
    if drained.is_err() {
        let _ = stop_tx.send(true);
        while let Some(r) = readers.join_next().await {
            results.push(r);
        }
    }
    let elapsed = start.elapsed();

    let mut after_ack = Samples::default();
    let mut after_send = Samples::default();
    let mut received = 0;
    let mut before_ack = 0u64;
    for r in results {
        let r = r.map_err(|e| format!("watch reader failed: {e}"))?;
        received += r.received;
        before_ack += r.before_ack;
        after_ack.merge(r.after_ack);
        after_send.merge(r.after_send);
        errors.merge(r.errors);
        timed_out |= r.timed_out;
        for (seq, arrival) in r.early {
            if let Some(ack) = Timeline::get(&tl.acked, seq) {
                before_ack += u64::from(arrival < ack);
                after_ack.push_nanos(arrival.saturating_sub(ack));
            } else {
                errors.add("event for a put that was not acknowledged");
            }
        }
    }
    let puts_ok = put_lat.len() as u64;
    let expected = puts_ok * a.watchers as u64;
    errors.add_n("event not received before the drain deadline", expected.saturating_sub(received));

    report.ok = received;
    report.errors = errors;
    report.elapsed = elapsed;
    report.timed_out = timed_out;
    report.latency = after_ack.summary();
    report.extra = vec![("event after put start".into(), after_send.summary()), ("put".into(), put_lat.summary())];
    report.info = vec![
        ("puts_ok".into(), json!(puts_ok)),
        ("events_expected".into(), json!(expected)),
        ("events_before_ack".into(), json!(before_ack)),
    ];
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn watchers_are_spread_evenly() {
        assert_eq!(super::split(10, 3), vec![4, 3, 3]);
        assert_eq!(super::split(3, 3), vec![1, 1, 1]);
        assert_eq!(super::split(1000, 10), vec![100; 10]);
    }
}
