//! The Watch service against etcd v3.5's semantics (`v3rpc/watch.go`,
//! `mvcc/watchable_store.go`), one server per test: key, prefix, range and
//! from-key watchers, replay from a start revision across history chunks,
//! prev_kv, NOPUT/NODELETE, cancel, client-chosen and duplicate watch IDs,
//! progress requests, compacted start revisions, one response per txn,
//! fragmentation; then the load cases: 10,000 watchers on 100 streams, a
//! client that never reads, and connect/watch/disconnect churn.
//!
//! Every expected event list comes from a model of the writes the test made
//! (key, kind, value, revision from the write's own response), and every
//! test ends its writes with one that each watcher matches, so "no extra
//! event" is checked by exact list equality, not by waiting for silence.
//!
//! `METASTORE_IT_AGAINST=etcd` runs the same tests against Debian's etcd
//! 3.4, to check the expectations themselves. Two cases follow etcd 3.5.33
//! and so fail there: 3.4 answers a progress request on a stream without
//! watchers (`progress_request`) and accepts a negative start revision
//! (`compacted_start_revision_cancels_with_compact_revision`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, DeleteOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};

use crate::common::*;
use testkit::{metric, rss_kib};

/// How long a single expected watch response may take.
const WAIT: Duration = Duration::from_secs(15);
const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
const STREAMS: &str = "etcd_debugging_mvcc_watch_stream_total";

/// The server under test: MetaStore, or etcd with `METASTORE_IT_AGAINST=etcd`,
/// as soon as it listens.
pub(crate) fn fresh_server(extra: &[&str]) -> ServerProcess {
    match std::env::var("METASTORE_IT_AGAINST").as_deref() {
        Ok("etcd") => ServerProcess::etcd(extra),
        _ => metastore(extra),
    }
}

/// The server under test once `/health` reports it healthy (a leader and a
/// linearizable read through), so that tests of other things do not race
/// its first election (see `lease::requests_right_after_start_are_served`).
pub(crate) fn server(extra: &[&str]) -> ServerProcess {
    let s = fresh_server(extra);
    let mut last = None;
    let healthy = wait_until(Duration::from_secs(20), || {
        last = Some(testkit::http_get(&s, "/health"));
        matches!(&last, Some(Ok((200, body))) if body.contains("\"health\":\"true\""))
    });
    assert!(healthy, "{:?} never became healthy: {last:?}; log:\n{}", s.kind, s.log_text());
    s
}

// ------------------------------------------------------------------ helpers

/// One event as the tests compare it. Delete events carry the key and the
/// delete revision only; `prev` is the previous value when the watcher asked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ev {
    pub rev: i64,
    pub put: bool,
    pub key: String,
    pub value: String,
    pub prev: Option<String>,
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn evs(r: &WatchResponse) -> Vec<Ev> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event has a kv");
            Ev {
                rev: kv.mod_revision(),
                put: e.event_type() == EventType::Put,
                key: s(kv.key()),
                value: s(kv.value()),
                prev: e.prev_kv().map(|p| s(p.value())),
            }
        })
        .collect()
}

/// The next response on `ws`, or a panic naming what was awaited.
pub(crate) async fn next(ws: &mut WatchStream, what: &str) -> WatchResponse {
    match tokio::time::timeout(WAIT, ws.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("watch stream ended while waiting for {what}"),
        Ok(Err(e)) => panic!("watch stream failed while waiting for {what}: {e}"),
        Err(_) => panic!("no watch response within {WAIT:?} while waiting for {what}"),
    }
}

/// Reads a successful created response; returns its watch ID.
pub(crate) async fn created(ws: &mut WatchStream) -> i64 {
    let r = next(ws, "a created response").await;
    assert!(
        r.created() && !r.canceled() && r.events().is_empty() && r.watch_id() >= 0,
        "expected a created response: {r:?}"
    );
    r.watch_id()
}

/// Is this a response etcd's fragmentation marked as "more follows"? The
/// typed client has no accessor for the field, so read it from the message's
/// Debug form (prost prints every field by name).
fn is_fragment(r: &WatchResponse) -> bool {
    format!("{r:?}").contains("fragment: true")
}

/// What a watcher watches, and the client options that ask for it.
#[derive(Clone, Debug)]
enum Spec {
    Key(String),
    Prefix(String),
    Range(String, String),
    FromKey(String),
    All,
}

impl Spec {
    fn matches(&self, key: &str) -> bool {
        match self {
            Spec::Key(k) => key == k,
            Spec::Prefix(p) => key.starts_with(p.as_str()),
            Spec::Range(a, b) => key >= a.as_str() && key < b.as_str(),
            Spec::FromKey(k) => key >= k.as_str(),
            Spec::All => true,
        }
    }

    fn request(&self) -> (String, WatchOptions) {
        let o = WatchOptions::new();
        match self {
            Spec::Key(k) => (k.clone(), o),
            Spec::Prefix(p) => (p.clone(), o.with_prefix()),
            Spec::Range(a, b) => (a.clone(), o.with_range(b.clone())),
            Spec::FromKey(k) => (k.clone(), o.with_from_key()),
            Spec::All => (String::new(), o.with_all_keys()),
        }
    }
}

/// The events the test's writes produced, in revision order, with prev
/// values (a watcher without prev_kv compares with `prev` cleared).
#[derive(Default)]
struct Model {
    log: Vec<Ev>,
    live: BTreeMap<String, String>,
}

impl Model {
    async fn put(&mut self, c: &mut Client, key: &str, value: &str) -> i64 {
        let r = c.put(key, value, None).await.expect("put");
        let rev = r.header().expect("put header").revision();
        self.record_put(rev, key, value);
        rev
    }

    fn record_put(&mut self, rev: i64, key: &str, value: &str) {
        let prev = self.live.insert(key.to_string(), value.to_string());
        self.log.push(Ev { rev, put: true, key: key.to_string(), value: value.to_string(), prev });
    }

    /// Deletes `key` (with `prefix`, every key under it); the server's
    /// prev_kvs must agree with the model.
    async fn delete(&mut self, c: &mut Client, key: &str, prefix: bool) -> i64 {
        let mut o = DeleteOptions::new().with_prev_key();
        if prefix {
            o = o.with_prefix();
        }
        let r = c.delete(key, Some(o)).await.expect("delete");
        let rev = r.header().expect("delete header").revision();
        let deleted: Vec<String> = r.prev_kvs().iter().map(|kv| s(kv.key())).collect();
        let expected: Vec<String> =
            self.live.keys().filter(|k| if prefix { k.starts_with(key) } else { k.as_str() == key }).cloned().collect();
        assert_eq!(deleted, expected, "delete {key} (prefix {prefix})");
        self.record_deletes(rev, &deleted);
        rev
    }

    fn record_deletes(&mut self, rev: i64, keys: &[String]) {
        for k in keys {
            let prev = self.live.remove(k);
            self.log.push(Ev { rev, put: false, key: k.clone(), value: String::new(), prev });
        }
    }

    /// What a watcher of `spec` from `start` sees, with or without prev values.
    fn expect(&self, spec: &Spec, start: i64, prev_kv: bool) -> Vec<Ev> {
        self.log
            .iter()
            .filter(|e| e.rev >= start && spec.matches(&e.key))
            .map(|e| Ev { prev: if prev_kv { e.prev.clone() } else { None }, ..e.clone() })
            .collect()
    }
}

/// Reads responses until every watcher in `want` has received exactly its
/// expected events (a response for another ID, a cancel, or an event beyond
/// the expected count fails), then compares the lists.
async fn expect_events(ws: &mut WatchStream, want: &BTreeMap<i64, Vec<Ev>>) {
    let mut got: BTreeMap<i64, Vec<Ev>> = want.keys().map(|id| (*id, Vec::new())).collect();
    let done = |got: &BTreeMap<i64, Vec<Ev>>| want.iter().all(|(id, w)| got[id].len() >= w.len());
    while !done(&got) {
        let r = next(ws, "expected events").await;
        let id = r.watch_id();
        assert!(!r.canceled() && !r.created(), "unexpected control response while waiting for events: {r:?}");
        let Some(list) = got.get_mut(&id) else {
            panic!("response for unexpected watch ID {id}: {r:?}");
        };
        list.extend(evs(&r));
        assert!(
            list.len() <= want[&id].len(),
            "watcher {id} got more events than expected:\n got {list:#?}\nwant {:#?}",
            want[&id]
        );
    }
    for (id, w) in want {
        assert_eq!(&got[id], w, "events of watcher {id}");
    }
}

/// Waits until the metric equals `value` (deadline 15 s).
#[track_caller]
fn wait_metric(s: &ServerProcess, name: &str, value: i64) {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(15), || {
        last = testkit::try_metric(s, name);
        last == Some(value)
    });
    assert!(ok, "{name} should reach {value}, last seen {last:?}");
}

async fn revision(c: &mut Client) -> i64 {
    c.get("__revision_probe__", None).await.expect("revision probe").header().expect("header").revision()
}

// ---------------------------------------------------------------- semantics

#[tokio::test]
async fn key_prefix_range_from_key_and_all_keys() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let specs = [
        Spec::Key("a".into()),
        Spec::Prefix("p/".into()),
        Spec::Range("r1".into(), "r5".into()),
        Spec::FromKey("m".into()),
        Spec::All,
    ];
    let (k0, o0) = specs[0].request();
    let mut ws = c.watch(k0, Some(o0)).await.expect("watch");
    let mut ids = vec![created(&mut ws).await];
    for spec in &specs[1..] {
        let (k, o) = spec.request();
        ws.watch(k, Some(o)).await.expect("add watcher");
        ids.push(created(&mut ws).await);
    }
    assert_eq!(ids, vec![0, 1, 2, 3, 4], "auto watch IDs count from 0");

    let mut m = Model::default();
    for k in ["a", "ab", "p/1", "p", "p0", "p/2/x", "r1", "r4", "r5", "r0", "m", "l", "z"] {
        m.put(&mut c, k, &format!("v-{k}")).await;
    }
    m.delete(&mut c, "a", false).await;
    m.delete(&mut c, "p/1", false).await;
    m.put(&mut c, "a", "again").await;
    m.put(&mut c, "a", "and again").await;
    // One revision deleting r0, r1, r4, r5: the range watcher sees r1 and r4.
    m.delete(&mut c, "r", true).await;
    // A final write every watcher matches.
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("a", "end", None),
            TxnOp::put("p/end", "end", None),
            TxnOp::put("r2", "end", None),
            TxnOp::put("zz", "end", None),
        ]))
        .await
        .expect("txn");
    let rev = r.header().unwrap().revision();
    for k in ["a", "p/end", "r2", "zz"] {
        m.record_put(rev, k, "end");
    }
    let want: BTreeMap<i64, Vec<Ev>> =
        ids.iter().zip(&specs).map(|(id, spec)| (*id, m.expect(spec, 0, false))).collect();
    assert_eq!(want[&0].len(), 5, "key watcher: 3 puts and 1 delete of a, +end");
    expect_events(&mut ws, &want).await;
}

#[tokio::test]
async fn start_revision_replays_history_across_chunks() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    // 1,200 puts (more than two of MetaStore's 512-revision history chunks)
    // from 8 concurrent writers; the model is rebuilt from their revisions.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..150 {
                let key = format!("h/{:02}", (w * 150 + i) % 37);
                let value = format!("w{w}-{i}");
                let r = c.put(key.clone(), value.clone(), None).await.expect("put");
                out.push((r.header().unwrap().revision(), key, value));
            }
            out
        }));
    }
    let mut writes = Vec::new();
    for t in tasks {
        writes.extend(t.await.expect("writer"));
    }
    writes.sort();
    let mut m = Model::default();
    for (rev, key, value) in &writes {
        m.record_put(*rev, key, value);
    }
    let revs: Vec<i64> = writes.iter().map(|w| w.0).collect();
    assert_eq!(revs, (2..1202).collect::<Vec<_>>(), "one revision per put");
    m.delete(&mut c, "h/07", false).await;
    m.delete(&mut c, "h/1", true).await;
    let current = revision(&mut c).await;
    assert_eq!(current, 1203);

    let all = Spec::Prefix("h/".into());
    let one = Spec::Key("h/05".into());
    let cases: Vec<(Spec, i64, bool)> = vec![
        (all.clone(), 1, false),
        (all.clone(), 2, true),
        (one.clone(), 600, true),
        (all.clone(), current, false),
        // Start exactly at the next revision, and beyond it: live events only.
        (all.clone(), current + 1, false),
        (all.clone(), current + 3, true),
    ];
    let mut ws: Option<WatchStream> = None;
    let mut ids = Vec::new();
    for (spec, start, prev) in &cases {
        let (k, mut o) = spec.request();
        o = o.with_start_revision(*start);
        if *prev {
            o = o.with_prev_key();
        }
        match ws.as_mut() {
            None => ws = Some(c.watch(k, Some(o)).await.expect("watch")),
            Some(ws) => ws.watch(k, Some(o)).await.expect("add watcher"),
        }
        // Replays may start before the created response of the next
        // watcher is read, so read created responses after all creates.
    }
    let mut ws = ws.unwrap();
    // Created responses come in request order, interleaved with history.
    let mut early: BTreeMap<i64, Vec<Ev>> = BTreeMap::new();
    while ids.len() < cases.len() {
        let r = next(&mut ws, "created responses").await;
        if r.created() {
            assert!(!r.canceled(), "{r:?}");
            ids.push(r.watch_id());
        } else {
            early.entry(r.watch_id()).or_default().extend(evs(&r));
        }
    }
    assert_eq!(ids, (0..cases.len() as i64).collect::<Vec<_>>());
    // Live writes after the watchers exist.
    for i in 0..5 {
        m.put(&mut c, &format!("h/{:02}", i), &format!("live-{i}")).await;
    }
    m.put(&mut c, "h/05", "end").await;
    let want: BTreeMap<i64, Vec<Ev>> = ids
        .iter()
        .zip(&cases)
        .map(|(id, (spec, start, prev))| {
            let mut w = m.expect(spec, *start, *prev);
            // What arrived before the last created response was already read.
            let got_early = early.remove(id).unwrap_or_default();
            assert_eq!(got_early[..], w[..got_early.len()], "early events of {id}");
            w.drain(..got_early.len());
            (*id, w)
        })
        .collect();
    assert!(early.is_empty(), "events for unknown watchers: {early:?}");
    assert_eq!(m.expect(&all, 1, false).len(), 1200 + 11 + 6);
    expect_events(&mut ws, &want).await;
}

#[tokio::test]
async fn prev_kv_on_puts_and_deletes_live_and_replayed() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let spec = Spec::Prefix("k".into());
    let (k, o) = spec.request();
    let mut ws = c.watch(k.clone(), Some(o.clone().with_prev_key())).await.unwrap();
    let with_prev = created(&mut ws).await;
    ws.watch(k.clone(), Some(o.clone())).await.unwrap();
    let without = created(&mut ws).await;

    let mut m = Model::default();
    m.put(&mut c, "k1", "a").await;
    m.put(&mut c, "k1", "b").await;
    m.put(&mut c, "k2", "x").await;
    m.delete(&mut c, "k1", false).await;
    m.put(&mut c, "k1", "c").await;
    m.delete(&mut c, "k", true).await;
    m.put(&mut c, "k3", "end").await;
    let want_prev = m.expect(&spec, 0, true);
    let prevs: Vec<Option<&str>> = want_prev.iter().map(|e| e.prev.as_deref()).collect();
    assert_eq!(prevs, vec![None, Some("a"), None, Some("b"), None, Some("c"), Some("x"), None]);
    let want = BTreeMap::from([(with_prev, want_prev.clone()), (without, m.expect(&spec, 0, false))]);
    expect_events(&mut ws, &want).await;

    // The same from history: prev_kv of replayed events.
    let mut ws2 = c.watch(k, Some(o.with_prev_key().with_start_revision(1))).await.unwrap();
    let id = created(&mut ws2).await;
    expect_events(&mut ws2, &BTreeMap::from([(id, want_prev)])).await;
}

#[tokio::test]
async fn noput_and_nodelete_filters() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let spec = Spec::Prefix("f/".into());
    let (k, o) = spec.request();
    let mut ws = c.watch(k.clone(), Some(o.clone().with_filters([WatchFilterType::NoPut]))).await.unwrap();
    let no_put = created(&mut ws).await;
    ws.watch(k.clone(), Some(o.clone().with_filters([WatchFilterType::NoDelete]))).await.unwrap();
    let no_delete = created(&mut ws).await;
    ws.watch(k.clone(), Some(o.with_filters([WatchFilterType::NoPut, WatchFilterType::NoDelete]))).await.unwrap();
    let _nothing = created(&mut ws).await;

    let mut m = Model::default();
    m.put(&mut c, "f/1", "a").await;
    m.put(&mut c, "f/2", "b").await;
    m.delete(&mut c, "f/1", false).await;
    m.put(&mut c, "f/1", "c").await;
    m.delete(&mut c, "f/", true).await;
    let all = m.expect(&spec, 0, false);
    let deletes: Vec<Ev> = all.iter().filter(|e| !e.put).cloned().collect();
    let puts: Vec<Ev> = all.iter().filter(|e| e.put).cloned().collect();
    assert_eq!((deletes.len(), puts.len()), (3, 3));
    let want = BTreeMap::from([(no_put, deletes), (no_delete, puts)]);
    expect_events(&mut ws, &want).await;
    // The watcher filtering both saw nothing: a progress response (sent
    // only once every watcher is synced, so after all their events) comes
    // next, with nothing for it before.
    ws.request_progress().await.unwrap();
    let r = next(&mut ws, "progress response").await;
    assert_eq!(r.watch_id(), -1, "expected the progress response, got {r:?}");
    assert!(r.events().is_empty());
}

#[tokio::test]
async fn cancel_answers_canceled_and_stops_events() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("a", None).await.unwrap();
    let a = created(&mut ws).await;
    ws.watch("b", None).await.unwrap();
    let b = created(&mut ws).await;
    wait_metric(&srv, WATCHERS, 2);
    let rev = c.put("x", "1", None).await.unwrap().header().unwrap().revision();

    ws.cancel(a).await.unwrap();
    let r = next(&mut ws, "canceled response").await;
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.watch_id(), a);
    assert!(r.events().is_empty());
    assert_eq!(r.compact_revision(), 0);
    assert_eq!(r.header().unwrap().revision(), rev, "header has the current revision");
    wait_metric(&srv, WATCHERS, 1);

    // "a" changes first, but only b's watcher is left to hear of anything.
    let ra = c.put("a", "1", None).await.unwrap().header().unwrap().revision();
    let rb = c.put("b", "1", None).await.unwrap().header().unwrap().revision();
    assert_eq!(rb, ra + 1);
    let r = next(&mut ws, "b's event").await;
    assert_eq!(r.watch_id(), b, "{r:?}");
    assert_eq!(evs(&r), vec![Ev { rev: rb, put: true, key: "b".into(), value: "1".into(), prev: None }]);

    // Canceling an unknown or already canceled ID answers nothing: the next
    // response is the created response of a new watcher.
    ws.cancel(a).await.unwrap();
    ws.cancel(4242).await.unwrap();
    ws.watch("c", None).await.unwrap();
    let id = created(&mut ws).await;
    assert_eq!(id, 2, "auto IDs keep counting after a cancel");
}

#[tokio::test]
async fn client_chosen_and_duplicate_watch_ids() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("k", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
    assert_eq!(created(&mut ws).await, 7);
    let current = revision(&mut c).await;

    ws.watch("other", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
    let r = next(&mut ws, "duplicate ID response").await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(r.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
    assert_eq!(r.header().unwrap().revision(), current);
    wait_metric(&srv, WATCHERS, 1);

    // Auto IDs skip IDs in use: 0, 1, then 2 is taken, so 3.
    ws.watch("k", None).await.unwrap();
    assert_eq!(created(&mut ws).await, 0);
    ws.watch("k", None).await.unwrap();
    assert_eq!(created(&mut ws).await, 1);
    ws.watch("k", Some(WatchOptions::new().with_watch_id(2))).await.unwrap();
    assert_eq!(created(&mut ws).await, 2);
    ws.watch("k", None).await.unwrap();
    assert_eq!(created(&mut ws).await, 3);

    // The first watcher 7 still works, and only "k" watchers hear of "k".
    let rev = c.put("k", "v", None).await.unwrap().header().unwrap().revision();
    let e = vec![Ev { rev, put: true, key: "k".into(), value: "v".into(), prev: None }];
    let want: BTreeMap<i64, Vec<Ev>> = [7, 0, 1, 2, 3].iter().map(|id| (*id, e.clone())).collect();
    expect_events(&mut ws, &want).await;
}

#[tokio::test]
async fn progress_request() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("p", None).await.unwrap();
    let id = created(&mut ws).await;
    c.put("unwatched", "1", None).await.unwrap();
    let rev = c.put("p", "2", None).await.unwrap().header().unwrap().revision();
    // Once its event arrived the watcher is synced for sure (the race right
    // after a write is `progress_request_right_after_a_write_is_answered`).
    let r = next(&mut ws, "the event").await;
    assert_eq!(evs(&r)[0].rev, rev);

    // Every watcher synced: one response with the invalid watch ID and the
    // current revision, no events.
    ws.request_progress().await.unwrap();
    let r = next(&mut ws, "progress response").await;
    assert_eq!(r.watch_id(), -1, "{r:?}");
    assert!(!r.created() && !r.canceled() && r.events().is_empty(), "{r:?}");
    assert_eq!(r.header().unwrap().revision(), rev);

    // With no watcher on the stream, etcd 3.5 answers nothing: the next
    // response is the created response of a new watcher.
    ws.cancel(id).await.unwrap();
    assert!(next(&mut ws, "canceled").await.canceled());
    ws.request_progress().await.unwrap();
    ws.watch("q", None).await.unwrap();
    let r = next(&mut ws, "created after an unanswered progress request").await;
    assert!(r.created(), "a progress request on a stream without watchers was answered: {r:?}");
}

/// In etcd a synced watcher stays synced across writes (`notify` hands it
/// each event as the write commits), so a progress request is answered even
/// while other keys are being written, with a revision at least as new as
/// the last write the client saw. MetaStore
/// counts a watcher as synced only once its stream task has caught up with
/// the newest revision, and drops (does not defer) a progress request that
/// arrives before that: the client waits forever.
#[tokio::test]
async fn progress_request_right_after_a_write_is_answered() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut ws = c.watch("p", None).await.unwrap();
    created(&mut ws).await;
    // Writers keep committing revisions the watcher does not care about.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (mut c, stop) = (c.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.put(format!("unwatched/{w}"), format!("{i}"), None).await.expect("put");
                i += 1;
            }
        }));
    }
    let mut answered = 0;
    for i in 0..100 {
        let before = revision(&mut c).await;
        ws.request_progress().await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.message()).await {
            Ok(Ok(Some(r))) => {
                assert_eq!(r.watch_id(), -1, "{r:?}");
                assert!(r.header().unwrap().revision() >= before, "progress {i} behind: {r:?}");
                answered += 1;
            }
            other => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("progress request {i} (after {answered} answered) while writes commit: {other:?}")
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
}

#[tokio::test]
async fn compacted_start_revision_cancels_with_compact_revision() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    let mut m = Model::default();
    for i in 0..10 {
        m.put(&mut c, &format!("c/{i}"), "v").await;
    }
    // Revisions 2..=11; keep history from 6 on.
    c.compact(6, None).await.expect("compact");

    let mut ws = c.watch("c/", Some(WatchOptions::new().with_prefix().with_start_revision(3))).await.unwrap();
    // The watcher is created, then canceled because its history is gone.
    let id = created(&mut ws).await;
    let r = next(&mut ws, "compacted cancel").await;
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.watch_id(), id);
    assert_eq!(r.compact_revision(), 6);
    assert!(r.events().is_empty());
    // etcd keeps the canceled watcher registered until the client cancels it
    // (see `compacted_watcher_keeps_its_id_until_the_client_cancels_it`).
    ws.cancel(id).await.unwrap();
    let r = next(&mut ws, "the cancel of the compacted watcher").await;
    assert!(r.canceled() && !r.created() && r.watch_id() == id, "{r:?}");
    wait_metric(&srv, WATCHERS, 0);

    // Starting at the compaction revision itself is allowed.
    ws.watch("c/", Some(WatchOptions::new().with_prefix().with_start_revision(6))).await.unwrap();
    let r = next(&mut ws, "created at the compaction revision").await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    let id = r.watch_id();
    m.put(&mut c, "c/end", "v").await;
    let want = BTreeMap::from([(id, m.expect(&Spec::Prefix("c/".into()), 6, false))]);
    expect_events(&mut ws, &want).await;

    // A negative start revision and an empty range are refused at creation.
    let current = revision(&mut c).await;
    ws.watch("c/", Some(WatchOptions::new().with_start_revision(-1))).await.unwrap();
    let r = next(&mut ws, "negative start refused").await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(r.cancel_reason(), "etcdserver: mvcc: required revision has been compacted");
    assert_eq!(r.header().unwrap().revision(), current);
    ws.watch("b", Some(WatchOptions::new().with_range("a"))).await.unwrap();
    let r = next(&mut ws, "empty range refused").await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(r.cancel_reason(), "mvcc: watcher range is empty");
}

/// etcd (`mvcc/watchable_store.go` `chooseAll`, `cancelWatcher`) sends the
/// compacted response but keeps the watcher in the stream until the client
/// cancels it: the ID stays taken (a create with it is a duplicate), a cancel
/// request for it is answered with canceled=true, and the watcher gauge
/// counts it until then. (MetaStore once dropped it at once.)
#[tokio::test]
async fn compacted_watcher_keeps_its_id_until_the_client_cancels_it() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    for i in 0..5 {
        c.put(format!("c/{i}"), "v", None).await.unwrap();
    }
    c.compact(4, None).await.expect("compact");
    let mut ws =
        c.watch("c/", Some(WatchOptions::new().with_prefix().with_start_revision(2).with_watch_id(5))).await.unwrap();
    assert_eq!(created(&mut ws).await, 5);
    let r = next(&mut ws, "compacted cancel").await;
    assert!(r.canceled() && r.compact_revision() == 4, "{r:?}");

    ws.watch("d", Some(WatchOptions::new().with_watch_id(5))).await.unwrap();
    let r = next(&mut ws, "create with the compacted watcher's ID").await;
    assert!(
        r.created() && r.canceled() && r.watch_id() == -1,
        "the ID of a compacted watcher is still taken in etcd: {r:?}"
    );
    assert_eq!(r.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
    assert_eq!(metric(&srv, WATCHERS), 1, "etcd still counts the watcher");

    ws.cancel(5).await.unwrap();
    let r = next(&mut ws, "the cancel of the compacted watcher").await;
    assert!(r.canceled() && !r.created() && r.watch_id() == 5, "{r:?}");
    wait_metric(&srv, WATCHERS, 0);
    ws.watch("d", Some(WatchOptions::new().with_watch_id(5))).await.unwrap();
    assert_eq!(created(&mut ws).await, 5, "free again after the cancel");
}

#[tokio::test]
async fn txn_events_arrive_in_one_response_with_one_revision() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    c.put("t/gone", "x", None).await.unwrap();
    let mut ws = c.watch("t/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
    let id = created(&mut ws).await;
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("t/b", "2", None),
            TxnOp::put("t/a", "1", None),
            TxnOp::delete("t/gone", None),
            TxnOp::put("t/c", "3", None),
        ]))
        .await
        .unwrap();
    let rev = r.header().unwrap().revision();
    let resp = next(&mut ws, "the txn's events").await;
    assert_eq!(resp.watch_id(), id);
    assert_eq!(resp.header().unwrap().revision(), rev);
    let got = evs(&resp);
    let ev = |put: bool, key: &str, value: &str, prev: Option<&str>| Ev {
        rev,
        put,
        key: key.into(),
        value: value.into(),
        prev: prev.map(String::from),
    };
    // In the order the txn applied its operations.
    assert_eq!(
        got,
        vec![
            ev(true, "t/b", "2", None),
            ev(true, "t/a", "1", None),
            ev(false, "t/gone", "", Some("x")),
            ev(true, "t/c", "3", None),
        ]
    );
}

#[tokio::test]
async fn cancel_in_the_middle_of_a_replay_stops_its_events() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    for i in 0..1500 {
        c.put(format!("cr/{}", i % 10), format!("{i}"), None).await.unwrap();
    }
    let mut ws = c.watch("cr/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
    let replay = created(&mut ws).await;
    ws.cancel(replay).await.unwrap();
    ws.watch("sentinel", None).await.unwrap();
    // Some or all replayed events may come before the canceled response;
    // none after it.
    let mut replayed = 0;
    loop {
        let r = next(&mut ws, "the canceled response").await;
        assert_eq!(r.watch_id(), replay, "{r:?}");
        if r.canceled() {
            break;
        }
        let e = evs(&r);
        assert_eq!(e.first().map(|e| e.rev), Some(2 + replayed as i64), "replay in order, no gaps");
        replayed += e.len();
    }
    assert!(replayed <= 1500);
    let sentinel = created(&mut ws).await;
    let rev = c.put("sentinel", "x", None).await.unwrap().header().unwrap().revision();
    let r = next(&mut ws, "the sentinel's event").await;
    assert_eq!((r.watch_id(), evs(&r)[0].rev), (sentinel, rev), "nothing else after the cancel: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_while_writing_hands_over_to_live_events_without_gaps() {
    let srv = server(&[]);
    let mut c = client(&srv).await;
    // A writer keeps writing (one revision per put) while watchers start at
    // various points of the history and must catch up and go live.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i64, String, String)>(4096);
    let mut wc = c.clone();
    let writer = tokio::spawn(async move {
        for i in 0..2000 {
            let key = format!("hw/{}", i % 13);
            let value = format!("{i}");
            let r = wc.put(key.clone(), value.clone(), None).await.expect("put");
            tx.send((r.header().unwrap().revision(), key, value)).await.expect("log");
        }
    });
    while revision(&mut c).await < 600 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spec = Spec::Prefix("hw/".into());
    let starts = [1, 100, 450, 0];
    let mut ws: Option<WatchStream> = None;
    for start in starts {
        let (k, o) = spec.request();
        let o = o.with_start_revision(start);
        match ws.as_mut() {
            None => ws = Some(c.watch(k, Some(o)).await.unwrap()),
            Some(ws) => ws.watch(k, Some(o)).await.unwrap(),
        }
    }
    let mut ws = ws.unwrap();
    writer.await.expect("writer");
    let mut m = Model::default();
    while let Ok((rev, key, value)) = rx.try_recv() {
        m.record_put(rev, &key, &value);
    }
    m.log.sort();
    assert_eq!(m.log.len(), 2000);
    let last = m.log.last().unwrap().rev;
    // Read until every watcher reached the last write.
    let mut got: BTreeMap<i64, Vec<Ev>> = BTreeMap::new();
    let mut created_rev: BTreeMap<i64, i64> = BTreeMap::new();
    while created_rev.len() < starts.len()
        || got.len() < starts.len()
        || got.values().any(|g| g.last().unwrap().rev < last)
    {
        let r = next(&mut ws, "catch-up and live events").await;
        assert!(!r.canceled(), "{r:?}");
        if r.created() {
            created_rev.insert(r.watch_id(), r.header().unwrap().revision());
        } else {
            got.entry(r.watch_id()).or_default().extend(evs(&r));
        }
    }
    for (id, start) in starts.iter().enumerate() {
        let g = &got[&(id as i64)];
        let from = if *start == 0 {
            // "Now": right after the revision its created response names.
            assert!(g[0].rev > created_rev[&(id as i64)], "watcher from now got an old event");
            g[0].rev
        } else {
            *start
        };
        assert_eq!(g, &m.expect(&spec, from, false), "watcher {id} from revision {start}");
    }
}

/// 40 puts of 15,000-byte values under `fr/`; returns the model.
async fn big_history(c: &mut Client) -> Model {
    let mut m = Model::default();
    let value = "v".repeat(15_000);
    for i in 0..40 {
        m.put(c, &format!("fr/{i:02}"), &value).await;
    }
    m
}

/// Reads one (possibly fragmented) logical response of watcher `id`:
/// returns the event count of each piece, checking that every piece but
/// the last is marked fragment.
async fn read_fragments(ws: &mut WatchStream, id: i64, want: usize) -> (Vec<usize>, Vec<Ev>) {
    let mut pieces = Vec::new();
    let mut all = Vec::new();
    loop {
        let r = next(ws, "fragments").await;
        assert_eq!(r.watch_id(), id, "{r:?}");
        pieces.push(r.events().len());
        all.extend(evs(&r));
        if !is_fragment(&r) {
            break;
        }
        assert!(all.len() < want, "fragment flag on the last piece");
    }
    (pieces, all)
}

#[tokio::test]
async fn fragment_splits_large_responses() {
    // etcd splits a response of more than one event at --max-request-bytes
    // plus its 512 KiB gRPC allowance; 40 events of 15 KB (600 KB) are above
    // that for a 16 KiB limit, whichever of the two a server applies.
    let srv = server(&["--max-request-bytes", "16384"]);
    let mut c = client(&srv).await;
    let m = big_history(&mut c).await;
    let spec = Spec::Prefix("fr/".into());
    let want = m.expect(&spec, 1, false);

    let mut ws =
        c.watch("fr/", Some(WatchOptions::new().with_prefix().with_start_revision(1).with_fragment())).await.unwrap();
    let id = created(&mut ws).await;
    let (pieces, got) = read_fragments(&mut ws, id, want.len()).await;
    assert!(pieces.len() > 1, "a 600 KB replay was not fragmented: {pieces:?}");
    assert_eq!(got, want, "all events, in order, across the fragments");
    println!("fragment pieces (events each): {pieces:?}");

    // Without fragment=true the same replay is one response.
    let mut ws = c.watch("fr/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
    let id = created(&mut ws).await;
    let r = next(&mut ws, "unfragmented replay").await;
    assert_eq!(r.watch_id(), id);
    assert!(!is_fragment(&r));
    assert_eq!(evs(&r), want);

    // A single large revision (a prefix delete with prev_kv: 600 KB) is
    // fragmented for a synced watcher too.
    let mut ws = c.watch("fr/", Some(WatchOptions::new().with_prefix().with_prev_key().with_fragment())).await.unwrap();
    let id = created(&mut ws).await;
    let mut m = m;
    let rev = m.delete(&mut c, "fr/", true).await;
    let want = m.expect(&spec, rev, true);
    let (pieces, got) = read_fragments(&mut ws, id, want.len()).await;
    assert!(pieces.len() > 1, "a 600 KB revision was not fragmented: {pieces:?}");
    assert_eq!(got, want);
}

/// etcd cuts fragments at `--max-request-bytes` plus its 512 KiB gRPC
/// allowance (`MaxRequestBytesWithOverhead()` in `v3rpc/watch.go`), so with
/// a 16 KiB limit a 40 x 15 KB replay comes in pieces of 35 and 5 events
/// (checked against Debian's etcd with `METASTORE_IT_AGAINST=etcd`).
/// (MetaStore once cut at `--max-request-bytes` alone: 40 pieces of one.)
#[tokio::test]
async fn fragment_size_limit_includes_the_grpc_allowance() {
    let srv = server(&["--max-request-bytes", "16384"]);
    let mut c = client(&srv).await;
    let m = big_history(&mut c).await;
    let want = m.expect(&Spec::Prefix("fr/".into()), 1, false);
    let mut ws =
        c.watch("fr/", Some(WatchOptions::new().with_prefix().with_start_revision(1).with_fragment())).await.unwrap();
    let id = created(&mut ws).await;
    let (pieces, got) = read_fragments(&mut ws, id, want.len()).await;
    assert_eq!(got, want);
    assert_eq!(pieces, vec![35, 5], "events per fragment");
}

// --------------------------------------------------------------------- load

/// `k{a:02}/{b:02}`, a in 0..20, b in 0..50.
fn load_key(a: usize, b: usize) -> String {
    format!("k{a:02}/{b:02}")
}

/// The watcher `n` of 10,000: exact keys, prefixes of 50 and of 10 keys,
/// 5-key ranges, and a few from-key and all-key watchers, so that every
/// key is watched exactly and the sets overlap.
fn load_spec(n: usize) -> Spec {
    let m = n / 5;
    let (a, b) = (m % 20, (m / 20) % 50);
    match n % 5 {
        0 => Spec::Key(load_key(a, b)),
        1 => Spec::Prefix(format!("k{a:02}/")),
        2 => Spec::Range(load_key(a, b), load_key(a, (b + 5).min(50))),
        3 => Spec::Prefix(format!("k{a:02}/{}", b % 5)),
        _ if m.is_multiple_of(200) => Spec::All,
        _ if m.is_multiple_of(2) => Spec::FromKey(load_key(17 + m % 3, b)),
        _ => Spec::Range("k05/".into(), "k07/".into()),
    }
}

/// 1,000 writes in a fixed order: puts, and deletes of keys that exist, one
/// revision each (revision 2 + i on a fresh server).
fn load_writes() -> Vec<(bool, String)> {
    let mut live = std::collections::BTreeSet::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..1000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = load_key((x % 20) as usize, ((x >> 8) % 50) as usize);
            if i % 4 == 0 && live.contains(&key) {
                live.remove(&key);
                (false, key)
            } else {
                live.insert(key.clone());
                (true, key)
            }
        })
        .collect()
}

const LOAD_STREAMS: usize = 100;
const LOAD_PER_STREAM: usize = 100;

/// Owns one stream: reads its created responses, reports ready, then reads
/// events until every watcher has its expected count, and ends with a
/// progress request whose response must come next (nothing extra before).
async fn load_reader(
    mut ws: WatchStream,
    want: BTreeMap<i64, Vec<Ev>>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<(), String> {
    let mut ids = Vec::new();
    while ids.len() < want.len() {
        let r = ws.message().await.map_err(|e| e.to_string())?.ok_or("ended")?;
        if !r.created() || r.canceled() {
            return Err(format!("expected created, got {r:?}"));
        }
        ids.push(r.watch_id());
    }
    if ids != want.keys().copied().collect::<Vec<_>>() {
        return Err(format!("created IDs {ids:?}"));
    }
    let _ = ready.send(());
    let total: usize = want.values().map(Vec::len).sum();
    let mut got: BTreeMap<i64, Vec<Ev>> = BTreeMap::new();
    let mut n = 0;
    while n < total {
        let r = ws.message().await.map_err(|e| e.to_string())?.ok_or("ended")?;
        let e = evs(&r);
        if e.is_empty() || r.canceled() || !want.contains_key(&r.watch_id()) {
            return Err(format!("unexpected response {r:?}"));
        }
        n += e.len();
        got.entry(r.watch_id()).or_default().extend(e);
    }
    ws.request_progress().await.map_err(|e| e.to_string())?;
    let r = ws.message().await.map_err(|e| e.to_string())?.ok_or("ended")?;
    if r.watch_id() != -1 || !r.events().is_empty() {
        return Err(format!("extra response after all events: {r:?}"));
    }
    for (id, w) in &want {
        let g = got.get(id).map(Vec::as_slice).unwrap_or(&[]);
        if g != w.as_slice() {
            return Err(format!(
                "watcher {id}: got {} events, want {}; first difference at {:?}",
                g.len(),
                w.len(),
                g.iter().zip(w).position(|(a, b)| a != b)
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_watchers_on_a_hundred_streams_see_every_event_in_order() {
    let srv = server(&[]);
    let mut writer = client(&srv).await;
    let t0 = Instant::now();

    // The model: the writes are fixed, each makes one revision.
    let writes = load_writes();
    let mut m = Model::default();
    for (i, (put, key)) in writes.iter().enumerate() {
        let rev = 2 + i as i64;
        if *put {
            m.record_put(rev, key, &format!("v{i}"));
        } else {
            m.record_deletes(rev, std::slice::from_ref(key));
        }
    }
    let specs: Vec<Spec> = (0..LOAD_STREAMS * LOAD_PER_STREAM).map(load_spec).collect();
    let mut covered = std::collections::BTreeSet::new();
    for e in &m.log {
        assert!(specs.iter().any(|s| matches!(s, Spec::Key(_)) && s.matches(&e.key)), "{} has no exact watcher", e.key);
        covered.insert(e.key.clone());
    }
    let deliveries: usize = specs.iter().map(|s| m.expect(s, 0, false).len()).sum();
    println!("{} watchers, {} keys written, {deliveries} event deliveries expected", specs.len(), covered.len());

    // 100 streams over 4 connections, 100 watchers each with IDs 1..=100.
    let clients: Vec<Client> = connect_n(&srv, 4).await;
    let mut readers = Vec::new();
    let mut readies = Vec::new();
    for st in 0..LOAD_STREAMS {
        let mut c = clients[st % clients.len()].clone();
        let mut want = BTreeMap::new();
        let mut ws: Option<WatchStream> = None;
        for j in 0..LOAD_PER_STREAM {
            let spec = &specs[st * LOAD_PER_STREAM + j];
            let id = j as i64 + 1;
            want.insert(id, m.expect(spec, 0, false));
            let (k, o) = spec.request();
            let o = o.with_watch_id(id);
            match ws.as_mut() {
                None => ws = Some(c.watch(k, Some(o)).await.expect("watch")),
                Some(ws) => ws.watch(k, Some(o)).await.expect("add watcher"),
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        readies.push(rx);
        readers.push(tokio::spawn(load_reader(ws.unwrap(), want, tx)));
    }
    for rx in readies {
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("all watchers created within 60 s")
            .expect("a reader failed before its watchers were created");
    }
    let t_created = t0.elapsed();
    let (watchers, streams) = (metric(&srv, WATCHERS), metric(&srv, STREAMS));
    assert_eq!((watchers, streams), (10_000, 100), "gauges with everything open");

    let t1 = Instant::now();
    for (i, (put, key)) in writes.iter().enumerate() {
        let rev = if *put {
            writer.put(key.as_str(), format!("v{i}"), None).await.expect("put").header().unwrap().revision()
        } else {
            let r = writer.delete(key.as_str(), None).await.expect("delete");
            assert_eq!(r.deleted(), 1, "delete of {key}");
            r.header().unwrap().revision()
        };
        assert_eq!(rev, 2 + i as i64, "write {i} of {key}");
    }
    let t_written = t1.elapsed();
    let mut failures = Vec::new();
    for (st, r) in readers.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(60), r).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(format!("stream {st}: {e}")),
            Ok(Err(e)) => failures.push(format!("stream {st}: reader panicked: {e}")),
            Err(_) => failures.push(format!("stream {st}: not every event within 60 s")),
        }
    }
    println!(
        "10k watchers: created in {t_created:?}, 1,000 writes in {t_written:?}, \
         all delivered {:?} after the first write; total {:?}",
        t1.elapsed(),
        t0.elapsed()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

async fn connect_n(srv: &ServerProcess, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client(srv).await);
    }
    out
}

/// `n` puts of `value_len` bytes under `prefix` from `writers` concurrent
/// clients; every put must finish within etcd's request timeout (7 s with
/// the default election timeout). Returns the wall time.
async fn timed_puts(c: &Client, prefix: &str, n: usize, value_len: usize) -> Duration {
    const WRITERS: usize = 8;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = c.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let value = vec![b'x'; value_len];
            for i in (w..n).step_by(WRITERS) {
                let key = format!("{prefix}{:03}", i % 200);
                let put = c.put(key, value.clone(), None);
                match tokio::time::timeout(Duration::from_secs(7), put).await {
                    Ok(r) => {
                        r.expect("put");
                    }
                    Err(_) => panic!("put {i} took longer than the request timeout"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_neither_delays_writers_nor_grows_memory() {
    const PUTS: usize = 2000;
    const VALUE: usize = 16 * 1024;
    const STUCK: usize = 6;
    // Each phase writes PUTS x VALUE = 31 MiB.
    const PHASE_MIB: u64 = (PUTS * VALUE / (1024 * 1024)) as u64;
    let srv = server(&[]);
    let c = client(&srv).await;
    // Warm up (connections, allocator arenas, first raft segments).
    timed_puts(&c, "warm/", 200, VALUE).await;

    // Phase A: nobody watches.
    let rss0 = rss_kib(&srv).expect("server RSS");
    let free = timed_puts(&c, "a/", PUTS, VALUE).await;
    let rss1 = rss_kib(&srv).expect("server RSS");

    // Phase B: STUCK clients, each on its own connection (so their unread
    // HTTP/2 windows cannot stall the writers' connection), each watching
    // the written prefix and never reading a byte, not even the created
    // response.
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        let mut sc = client(&srv).await;
        let ws = sc.watch("b/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        stuck.push((sc, ws));
    }
    wait_metric(&srv, WATCHERS, STUCK as i64);
    let with_stuck = timed_puts(&c, "b/", PUTS, VALUE).await;
    let rss2 = rss_kib(&srv).expect("server RSS");
    let growth_a = rss1.saturating_sub(rss0) / 1024;
    let growth_b = rss2.saturating_sub(rss1) / 1024;
    println!(
        "{PUTS} puts of {VALUE} B: {free:?} without watchers, {with_stuck:?} with {STUCK} \
         stuck streams; RSS {rss0} -> {rss1} -> {rss2} KiB (growth {growth_a} MiB, {growth_b} MiB)"
    );
    // Throughput: generous, the point is "not stalled behind the watchers"
    // (and every put already finished within the request timeout).
    assert!(
        with_stuck <= free * 5 + Duration::from_secs(5),
        "writers slowed from {free:?} to {with_stuck:?} by clients that do not read"
    );
    // Memory. Phase B wrote PHASE_MIB (31 MiB) that every stuck watcher
    // matches. Had the server queued each event for each stuck watcher, it
    // would grow by at least STUCK x 31 = 186 MiB more than phase A did.
    // A stuck stream should hold a bounded amount instead (MetaStore: its
    // 64-response queue, one history chunk and the HTTP/2 send buffer; etcd:
    // its 128-response channel, then the watcher is parked as a victim).
    // Phase B's own growth is phase A's (history kept until compaction, raft
    // log, allocator), so the bound is phase A's growth plus half of the
    // buffered-everything figure.
    let bound = growth_a + STUCK as u64 * PHASE_MIB / 2;
    assert!(
        growth_b <= bound,
        "server RSS grew {growth_b} MiB while {STUCK} clients did not read (bound {bound} MiB, \
         phase A grew {growth_a} MiB): events are buffered per stuck watcher"
    );

    // The server still serves, and dropping the stuck clients frees their
    // watchers and streams.
    drop(stuck);
    wait_metric(&srv, WATCHERS, 0);
    wait_metric(&srv, STREAMS, 0);
    let mut c = c;
    c.get("b/000", None).await.expect("get after the stuck clients left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_watch_disconnect_cycles_leave_nothing_behind() {
    let srv = server(&[]);
    // The gauges count what is open.
    let mut open = Vec::new();
    for i in 0..10 {
        let mut c = client(&srv).await;
        let mut ws = c.watch(format!("o/{i}"), None).await.expect("watch");
        created(&mut ws).await;
        open.push((c, ws));
    }
    wait_metric(&srv, WATCHERS, 10);
    wait_metric(&srv, STREAMS, 10);
    drop(open);
    wait_metric(&srv, WATCHERS, 0);
    wait_metric(&srv, STREAMS, 0);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let url = srv.url();
        tasks.push(tokio::spawn(async move {
            for i in (t..1000).step_by(8) {
                let mut c = Client::connect([url.as_str()], None).await.expect("connect");
                let mut ws = c.watch(format!("cyc/{i}"), Some(WatchOptions::new().with_prefix())).await.expect("watch");
                match i % 4 {
                    // Read the created response, then hang up.
                    0 => {
                        created(&mut ws).await;
                    }
                    // Hang up without reading anything.
                    1 => {}
                    // Cancel first.
                    2 => {
                        let id = created(&mut ws).await;
                        ws.cancel(id).await.expect("cancel");
                        assert!(next(&mut ws, "canceled").await.canceled());
                    }
                    // Two watchers, one replaying history.
                    _ => {
                        ws.watch("cyc/", Some(WatchOptions::new().with_prefix().with_start_revision(1)))
                            .await
                            .expect("second watcher");
                        created(&mut ws).await;
                        created(&mut ws).await;
                    }
                }
                drop(ws);
                drop(c);
            }
        }));
    }
    for t in tasks {
        t.await.expect("cycle task");
    }
    println!("1,000 connect/watch/disconnect cycles in {:?}", start.elapsed());
    wait_metric(&srv, WATCHERS, 0);
    wait_metric(&srv, STREAMS, 0);
    // And the server still watches.
    let mut c = client(&srv).await;
    let mut ws = c.watch("after", None).await.unwrap();
    created(&mut ws).await;
    let rev = c.put("after", "1", None).await.unwrap().header().unwrap().revision();
    let r = next(&mut ws, "event after the churn").await;
    assert_eq!(evs(&r)[0].rev, rev);
}

/// A client that vanishes without closing its connection (a cut network:
/// here a proxy that stops delivering) is found out by the server's HTTP/2
/// pings (`--grpc-keepalive-interval`, `--grpc-keepalive-timeout`) and its
/// watch stream is freed; without them it would be held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_is_dropped_by_keepalive_pings() {
    let s = metastore(&["--grpc-keepalive-interval=1s", "--grpc-keepalive-timeout=1s"]);
    let target = s.endpoint().parse().unwrap();
    let proxy = tokio::task::block_in_place(|| testkit::FaultProxy::start(target)).unwrap();
    let mut c = etcd_client::Client::connect([format!("http://{}", proxy.addr())], None).await.unwrap();
    let _stream = c.watch("vanish", None).await.unwrap();
    let streams = || testkit::metric(&s, "etcd_debugging_mvcc_watch_stream_total");
    let opened = tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), || streams() == 1));
    assert!(opened, "the watch stream opened");
    // Nothing gets through for 6 s: the ping is unanswered after 1 + 1 s.
    proxy.delay(Duration::from_secs(6));
    let freed = tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), || streams() == 0));
    assert!(freed, "the silent client's watch stream is still held");
    tokio::task::block_in_place(|| drop(proxy));
}

/// Fragments of one response must reach the client once each, in order and
/// back to back, even when client requests keep arriving while the stream
/// waits for a slow reader in the middle of a fragmented response. (The
/// stream's catch-up was once cancelled there by each incoming request and
/// started over, sending the fragments already sent again.)
///
/// Eight fragmenting watchers replay 500 events of 15 KB (about 15 fragments
/// each, ~60 MB in all, more than the stream's queue and the transport's
/// windows hold), the client reads slowly at first, and a second task sends
/// a progress request every few milliseconds and, now and then, creates
/// another watcher, until every replay has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_are_sent_once_while_requests_interrupt_a_slow_reader() {
    const WATCHERS: i64 = 8;
    const FIRST_ID: i64 = 100;
    const EVENTS: usize = 500;
    /// Responses read with a pause before each, so that the server's queue
    /// is full while requests arrive.
    const SLOW_READS: usize = 150;
    let srv = server(&["--max-request-bytes", "16384"]);
    let mut c = client(&srv).await;
    let mut m = Model::default();
    let value = "v".repeat(15_000);
    for i in 0..EVENTS {
        m.put(&mut c, &format!("fr/{i:03}"), &value).await;
    }
    let want = m.expect(&Spec::Prefix("fr/".into()), 1, false);
    assert_eq!(want.len(), EVENTS);

    let opts = |id| WatchOptions::new().with_prefix().with_start_revision(1).with_fragment().with_watch_id(id);
    let mut ws = c.watch("fr/", Some(opts(FIRST_ID))).await.unwrap();
    for id in FIRST_ID + 1..FIRST_ID + WATCHERS {
        ws.watch("fr/", Some(opts(id))).await.unwrap();
    }
    let (mut tx, mut rx) = ws.split();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requester = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut extra = 0;
            let end = Instant::now() + Duration::from_secs(60);
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > end {
                    break;
                }
                // Sends fail only once the reader gave up (and panicked).
                if tx.request_progress().await.is_err() {
                    break;
                }
                if i % 10 == 0 {
                    if tx.watch(format!("other/{i}"), None).await.is_err() {
                        break;
                    }
                    extra += 1;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (tx, extra)
        }
    });

    let big = FIRST_ID..FIRST_ID + WATCHERS;
    let mut got: BTreeMap<i64, Vec<Ev>> = big.clone().map(|id| (id, Vec::new())).collect();
    let mut created_ids = Vec::new();
    // The watcher whose fragmented response is under way: its next piece
    // must come next.
    let mut in_fragment: Option<i64> = None;
    let mut reads = 0;
    while got.values().any(|evs| evs.len() < want.len()) {
        if reads < SLOW_READS {
            // A slow reader: the server's queue fills while requests arrive.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reads += 1;
        let r = match tokio::time::timeout(WAIT, rx.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("watch stream ended or stalled after {reads} responses: {other:?}"),
        };
        let id = r.watch_id();
        if let Some(f) = in_fragment {
            assert_eq!(id, f, "watcher {f}'s fragmented response was interrupted by {r:?}");
        }
        assert!(!r.canceled(), "unexpected cancel: {r:?}");
        if r.created() {
            created_ids.push(id);
            continue;
        }
        let Some(list) = got.get_mut(&id) else {
            // A progress response (ID -1), with no events.
            assert!(id == -1 && r.events().is_empty(), "unexpected response: {r:?}");
            continue;
        };
        let at = list.len();
        list.extend(evs(&r));
        assert!(
            list.len() <= want.len() && list[..] == want[..list.len()],
            "watcher {id}: events {at}.. are not the next ones expected (sent twice?): got {:?}..{:?}",
            list.get(at).map(|e| (e.rev, &e.key)),
            list.last().map(|e| (e.rev, &e.key)),
        );
        in_fragment = is_fragment(&r).then_some(id);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_tx, extra) = requester.await.expect("requester task");
    for (id, evs) in &got {
        assert_eq!(evs.len(), want.len(), "watcher {id}");
        assert!(evs == &want, "watcher {id}: events differ from the writes");
    }
    assert!(reads > SLOW_READS, "{reads} responses read");
    println!("{reads} responses, {extra} extra watchers created, {} created responses", created_ids.len());
    for id in big {
        assert!(created_ids.contains(&id), "no created response for watcher {id}");
    }
}

/// A member that shuts down cleanly ends its watch streams with etcd's
/// Unavailable "server stopped", so etcd's clients reconnect and go on (a
/// stream ended with OK made `etcdctl watch` print "watch was canceled
/// (EOF)" and `etcdctl make-mirror` exit).
#[tokio::test]
async fn a_watch_goes_on_across_a_graceful_restart_of_its_member() {
    let mut s = metastore(&[]);
    let mut w = testkit::etcdctl_background(&s.endpoint(), &["watch", "wk"]);
    let put = |s: &ServerProcess, v: &str| {
        let (ok, out, err) = etcdctl(&s.endpoint(), &["put", "wk", v]);
        assert!(ok, "{out}{err}");
    };
    // The watch is in place once an event arrives.
    assert!(
        wait_until(Duration::from_secs(10), || {
            put(&s, "before");
            std::thread::sleep(Duration::from_millis(100));
            w.stdout().contains("before")
        }),
        "{}",
        w.stdout()
    );
    s.restart_gracefully();
    put(&s, "after");
    let arrived = wait_until(Duration::from_secs(20), || w.stdout().contains("after") || w.exited());
    let out = w.stop();
    assert!(arrived && out.stdout.contains("after"), "the watch ended: {out:?}");
}
