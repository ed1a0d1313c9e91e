//! Watchers: one watch over the whole chaos prefix per member, from
//! revision 1, as a client that must not miss anything would run it: after
//! any failure (stream error, member down, no message for `IDLE`) it watches
//! again from the last revision it received + 1. What it received is kept
//! for `checks::watch_stream`, which compares it with the reference.
//!
//! The same loop, started after the final heal, collects the reference
//! history (a watch from revision 1 to the final revision).

use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};

pub const PREFIX: &str = "chaos/";
/// A watch that says nothing for this long is re-established (a stalled or
/// isolated member never says it is; the workload writes all the time).
const IDLE: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One event as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    pub rev: i64,
    pub key: String,
    pub put: bool,
    pub value: String,
    pub create_rev: i64,
}

impl std::fmt::Display for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.put { "PUT" } else { "DELETE" };
        write!(f, "rev {} {kind} {} = {:?} (created {})", self.rev, self.key, self.value, self.create_rev)
    }
}

/// What one watcher received.
#[derive(Default)]
pub struct WatchLog {
    pub events: Vec<Ev>,
    /// Watches (re-)established.
    pub watches: u64,
    /// What the server said that no correct server says here (a cancel, a
    /// compaction: nothing compacts in this run).
    pub problems: Vec<String>,
}

/// When watchers stop: once they reached `target` (> 0), or at `abort`.
#[derive(Default)]
pub struct WatchStop {
    pub target: AtomicI64,
    pub abort: std::sync::atomic::AtomicBool,
}

impl WatchStop {
    fn done(&self, last: i64) -> bool {
        let t = self.target.load(Relaxed);
        self.abort.load(Relaxed) || (t > 0 && last >= t)
    }
}

/// Watches `PREFIX` on `url` from revision 1 until `stop` says so.
pub async fn watcher(url: String, stop: Arc<WatchStop>, log: Arc<Mutex<WatchLog>>) {
    let mut last = 0i64;
    while !stop.done(last) {
        let opts = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let connected = tokio::time::timeout(IDLE, Client::connect([url.as_str()], Some(opts))).await;
        let Ok(Ok(mut c)) = connected else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let wopts = WatchOptions::new().with_prefix().with_start_revision(last + 1);
        let Ok(Ok(mut stream)) = tokio::time::timeout(IDLE, c.watch(PREFIX, Some(wopts))).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        lock(&log).watches += 1;
        while !stop.done(last) {
            let Ok(Ok(Some(msg))) = tokio::time::timeout(IDLE, stream.message()).await else {
                break;
            };
            if msg.canceled() {
                lock(&log).problems.push(format!(
                    "watch from {} on {url} canceled: compact revision {}, reason {:?}",
                    last + 1,
                    msg.compact_revision(),
                    msg.cancel_reason()
                ));
                break;
            }
            let mut l = lock(&log);
            for e in msg.events() {
                let Some(kv) = e.kv() else { continue };
                let ev = Ev {
                    rev: kv.mod_revision(),
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    put: e.event_type() == EventType::Put,
                    value: String::from_utf8_lossy(kv.value()).into_owned(),
                    create_rev: kv.create_revision(),
                };
                last = last.max(ev.rev);
                l.events.push(ev);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn lock(log: &Mutex<WatchLog>) -> std::sync::MutexGuard<'_, WatchLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}
