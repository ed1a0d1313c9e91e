//! One chaos run: start the cluster, run workload, watchers and nemesis for
//! the configured time, heal, converge, check, and report the figures.
//!
//! Every wait is bounded: a cluster that does not recover within the
//! bounds is itself a violation (reported with the members' log tails), not
//! a hang.

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use testkit::linearizability::{History, Op, Outcome};
use testkit::Cluster;

use super::checks;
use super::nemesis::{tail, Nemesis, Tmpfs};
use super::watchers::{self, WatchLog, WatchStop, PREFIX};
use super::workload;

/// Entries between snapshots: frequent in short runs, so restarted members
/// also catch up from a snapshot and the WAL is released under load; less
/// frequent in long soaks, where the state (every revision is kept: no
/// auto-compaction, the checks read the event history from revision 1)
/// grows to tens of MiB and a snapshot every few hundred entries would
/// be most of the servers' work.
fn snapshot_count(duration: Duration) -> &'static str {
    if duration > Duration::from_secs(300) {
        "10000"
    } else {
        "500"
    }
}
/// Per-call deadline of the workload's clients.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// KV clients per member.
const KV_CLIENTS_PER_MEMBER: usize = 2;
/// Bound on each recovery step after the final heal.
const RECOVERY: Duration = Duration::from_secs(60);
const FINAL_KEY: &str = "chaos/final";

pub struct Config {
    pub members: usize,
    pub duration: Duration,
    pub seed: u64,
}

impl Config {
    /// A CI run: `CHAOS_SEED` if set, else a fresh seed.
    pub fn ci(members: usize, duration: Duration) -> Config {
        Config { members, duration, seed: env_seed() }
    }

    /// The soak: `CHAOS_MEMBERS` (3), `CHAOS_DURATION` (2m), `CHAOS_SEED`.
    pub fn soak() -> Config {
        let members = std::env::var("CHAOS_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let duration = std::env::var("CHAOS_DURATION")
            .ok()
            .map(|v| parse_duration(&v).unwrap_or_else(|| panic!("CHAOS_DURATION={v}: use 90s, 30m, 1h or seconds")))
            .unwrap_or(Duration::from_secs(120));
        Config { members, duration, seed: env_seed() }
    }
}

fn env_seed() -> u64 {
    if let Some(s) = std::env::var("CHAOS_SEED").ok().and_then(|v| v.parse().ok()) {
        return s;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_000
}

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// One acknowledged write: the revision its response header carried.
pub struct Acked {
    pub key: String,
    pub value: String,
    pub rev: i64,
}

#[derive(Default)]
pub struct Counts {
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub cases: AtomicU64,
    pub unknown: AtomicU64,
    pub refused: AtomicU64,
    pub lock_cycles: AtomicU64,
    pub locks_taken: AtomicU64,
    pub guarded_writes: AtomicU64,
    /// Guarded writes refused because the lock key was gone (lease expired).
    pub guard_failed: AtomicU64,
    pub keepalives: AtomicU64,
}

/// What the workload tasks share.
pub struct Shared {
    pub start: Instant,
    pub history: History,
    pub acked: Mutex<Vec<Acked>>,
    pub stop: AtomicBool,
    pub counts: Counts,
    /// Errors the workload met, by call and message (for the figures).
    pub errors: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Shared {
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Counts an error of `call` by its message (ids and numbers vary
    /// between occurrences: the first 100 characters of the message key it).
    pub fn error(&self, call: &str, e: &etcd_client::Error) {
        let text = match e {
            etcd_client::Error::GRpcStatus(st) => format!("{:?}: {}", st.code(), st.message()),
            e => e.to_string(),
        };
        let text: String = text.chars().take(100).collect();
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(format!("{call}: {text}")).or_default() += 1;
    }
}

/// A client for workload calls on `url` (each call bounded by
/// `OP_TIMEOUT`); retried until it connects or the run stops.
pub async fn connect_ops(url: &str, s: &Shared) -> Option<Client> {
    while !s.stopped() {
        if let Some(c) = connect_bounded(&[url.to_string()]).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A client for `urls` with the workload's deadlines; None if it cannot
/// connect within `OP_TIMEOUT`.
pub async fn connect_bounded(urls: &[String]) -> Option<Client> {
    let opts = ConnectOptions::new().with_timeout(OP_TIMEOUT).with_connect_timeout(CONNECT_TIMEOUT);
    tokio::time::timeout(OP_TIMEOUT, Client::connect(urls, Some(opts))).await.ok()?.ok()
}

/// The result of a run.
pub struct Report {
    pub lines: Vec<String>,
    pub violations: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            writeln!(f, "VIOLATION: {v}")?;
        }
        for l in &self.lines {
            writeln!(f, "chaos: {l}")?;
        }
        write!(f, "chaos: violations: {}", self.violations.len())
    }
}

pub async fn run(cfg: Config) -> Report {
    let t0 = Instant::now();
    let n = cfg.members;
    println!(
        "chaos: {n} members, workload {:?}, seed {} (CHAOS_SEED={} replays this schedule)",
        cfg.duration, cfg.seed, cfg.seed
    );
    let mut report = Report { lines: vec![], violations: vec![] };
    let binary = Path::new(env!("CARGO_BIN_EXE_metastore"));
    let flags = ["--snapshot-count", snapshot_count(cfg.duration)];
    let mut c = tokio::task::block_in_place(|| Cluster::prepare(binary, n, &flags));
    // The last member's data dir sits on a small tmpfs for the disk fault.
    let disk = match Tmpfs::mount(&c, n - 1) {
        Ok(t) => Some(t),
        Err(why) => {
            println!("chaos: note: the disk-full fault is skipped: {why}");
            None
        }
    };
    tokio::task::block_in_place(|| c.start_all());
    let Some(ids) = member_ids(&c).await else {
        report.violations.push(format!("the new cluster did not answer MemberList\n{}", log_tails(&c)));
        return report;
    };
    let shared = Arc::new(Shared {
        start: Instant::now(),
        history: History::new(),
        acked: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        counts: Counts::default(),
        errors: Mutex::default(),
    });

    let stop_watch = Arc::new(WatchStop::default());
    let watch_logs: Vec<Arc<Mutex<WatchLog>>> = (0..n).map(|_| Arc::default()).collect();
    let watchers: Vec<_> = (0..n)
        .map(|i| tokio::spawn(watchers::watcher(c.member(i).client_url(), stop_watch.clone(), watch_logs[i].clone())))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = c.member(i).client_url();
        for j in 0..KV_CLIENTS_PER_MEMBER {
            let id = i * KV_CLIENTS_PER_MEMBER + j;
            tasks.push(tokio::spawn(workload::kv_client(id, url.clone(), cfg.seed, shared.clone())));
        }
        tasks.push(tokio::spawn(workload::locker(i, url, c.endpoints(), cfg.seed, shared.clone())));
    }

    let until = Instant::now() + cfg.duration;
    let mut nemesis = Nemesis::new(cfg.seed, c, disk, ids, shared.start);
    let mut nemesis = tokio::task::spawn_blocking(move || {
        nemesis.run(until);
        nemesis
    })
    .await
    .expect("the nemesis thread panicked");
    shared.stop.store(true, Relaxed);
    for t in tasks {
        // Every call is bounded by OP_TIMEOUT; this bound only guards the test.
        let _ = tokio::time::timeout(RECOVERY, t).await;
    }
    let workload_secs = shared.start.elapsed().as_secs_f64();
    tokio::task::block_in_place(|| nemesis.heal_all());
    report.violations.append(&mut nemesis.log.problems);

    // Converge: a leader, a final write at F, equal HashKV at F everywhere.
    let c = &nemesis.c;
    let leader = tokio::task::block_in_place(|| c.wait_leader(RECOVERY));
    let Some(leader) = leader else {
        report.violations.push(format!("no leader {RECOVERY:?} after the final heal\n{}", log_tails(c)));
        return report;
    };
    let Some(final_rev) = final_put(&c.endpoints()).await else {
        report.violations.push(format!("the healed cluster took no write within {RECOVERY:?}\n{}", log_tails(c)));
        return report;
    };
    let hashes = hashes_at(c, final_rev).await;
    let distinct: std::collections::BTreeSet<Option<u32>> = hashes.iter().copied().collect();
    if distinct.len() != 1 || distinct.contains(&None) {
        report.violations.push(format!("members differ (or do not answer) HashKV at revision {final_rev}: {hashes:?}"));
    }

    // The reference history, and the watchers caught up to F.
    stop_watch.target.store(final_rev, Relaxed);
    let ref_stop = Arc::new(WatchStop::default());
    ref_stop.target.store(final_rev, Relaxed);
    let ref_log: Arc<Mutex<WatchLog>> = Arc::default();
    let ref_task = tokio::spawn(watchers::watcher(c.member(leader).client_url(), ref_stop.clone(), ref_log.clone()));
    if tokio::time::timeout(RECOVERY * 2, ref_task).await.is_err() {
        ref_stop.abort.store(true, Relaxed);
    }
    for w in watchers {
        if tokio::time::timeout(RECOVERY, w).await.is_err() {
            stop_watch.abort.store(true, Relaxed);
        }
    }
    stop_watch.abort.store(true, Relaxed);
    let reference: Vec<watchers::Ev> =
        watchers::lock(&ref_log).events.iter().filter(|e| e.rev <= final_rev).cloned().collect();
    let ref_last = reference.last().map_or(0, |e| e.rev);
    if ref_last != final_rev {
        report.violations.push(format!("the reference watch reached revision {ref_last}, not {final_rev}"));
    }
    report.violations.extend(watchers::lock(&ref_log).problems.iter().map(|p| format!("reference {p}")));
    match range_at(&c.endpoints(), final_rev).await {
        Some(kvs) => report.violations.extend(checks::reference_matches_range(&reference, &kvs)),
        None => report.violations.push(format!("no range of the prefix at revision {final_rev}")),
    }

    // Final reads of every key, appended to the history: what was
    // acknowledged must still be there.
    final_reads(&c.endpoints(), &shared).await;

    // Checks.
    let entries = shared.history.entries();
    let kv_ops = entries.len();
    let (keys, mut lin) = tokio::task::spawn_blocking(move || checks::linearizability(entries))
        .await
        .expect("the linearizability check panicked");
    report.violations.append(&mut lin);
    let acked = std::mem::take(&mut *shared.acked.lock().unwrap_or_else(|p| p.into_inner()));
    let (acked_checked, mut lost) = checks::acked_writes(&reference, &acked, final_rev);
    report.violations.append(&mut lost);
    let mut events_received = 0;
    let mut watches = 0;
    for (i, l) in watch_logs.iter().enumerate() {
        let l = watchers::lock(l);
        events_received += l.events.len();
        watches += l.watches;
        report.violations.extend(l.problems.iter().map(|p| format!("watcher m{i}: {p}")));
        report.violations.extend(checks::watch_stream(&format!("m{i}"), &l.events, &reference, final_rev));
    }
    let (holders, guarded, mut lock_v) = checks::locks(&reference);
    report.violations.append(&mut lock_v);

    // Figures.
    let k = &shared.counts;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let log = &nemesis.log;
    let faults: u64 = log.injected.values().sum();
    let by_kind: Vec<String> = log.injected.iter().map(|(f, c)| format!("{} {c}", f.name())).collect();
    report.lines = vec![
        format!(
            "{n} members, seed {}, workload {workload_secs:.1} s, run {:.1} s, final revision {final_rev}",
            cfg.seed,
            t0.elapsed().as_secs_f64()
        ),
        format!(
            "operations: {} (kv {kv_ops}: puts {}, gets {}, cas txns {}, unknown outcome {}, refused {}; \
             lock cycles {}, locks taken {}, guarded writes {} (refused: lock lost {}), lease keep-alives {}; \
             watch events received {events_received} over {watches} watches)",
            kv_ops as u64 + get(&k.lock_cycles) + get(&k.guarded_writes) + get(&k.keepalives),
            get(&k.puts),
            get(&k.gets),
            get(&k.cases),
            get(&k.unknown),
            get(&k.refused),
            get(&k.lock_cycles),
            get(&k.locks_taken),
            get(&k.guarded_writes),
            get(&k.guard_failed),
            get(&k.keepalives),
        ),
        format!(
            "faults injected: {faults} ({}); skipped {}; disk-full stops {}",
            by_kind.join(", "),
            log.skipped,
            log.disk_stops
        ),
        format!(
            "histories checked: {} ({keys} key histories linearizable over {kv_ops} ops, {n} watch streams \
             against {} reference events, 1 lock history with {holders} holders and {guarded} guarded writes, \
             {acked_checked} acknowledged writes present, {n} member hashes equal)",
            keys + n + 1,
            reference.len()
        ),
    ];
    let errors = shared.errors.lock().unwrap_or_else(|p| p.into_inner());
    let mut errors: Vec<(&String, &u64)> = errors.iter().collect();
    errors.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for (what, count) in errors.iter().take(12) {
        report.lines.push(format!("workload error x{count}: {what}"));
    }
    report
}

async fn member_ids(c: &Cluster) -> Option<Vec<u64>> {
    let end = Instant::now() + RECOVERY;
    while Instant::now() < end {
        if let Some(mut client) = connect_bounded(&c.endpoints()).await {
            if let Ok(r) = client.member_list().await {
                let ids: Option<Vec<u64>> = (0..c.len())
                    .map(|i| r.members().iter().find(|m| m.name() == c.member(i).name()).map(|m| m.id()))
                    .collect();
                if ids.is_some() {
                    return ids;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn final_put(urls: &[String]) -> Option<i64> {
    let end = Instant::now() + RECOVERY;
    while Instant::now() < end {
        if let Some(mut c) = connect_bounded(urls).await {
            if let Ok(r) = c.put(FINAL_KEY, "done", None).await {
                return r.header().map(|h| h.revision());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// HashKV at `rev` of every member (None: no answer within `RECOVERY`).
async fn hashes_at(c: &Cluster, rev: i64) -> Vec<Option<u32>> {
    let mut out = Vec::new();
    for i in 0..c.len() {
        let end = Instant::now() + RECOVERY;
        let mut got = None;
        while got.is_none() && Instant::now() < end {
            if let Some(mut client) = connect_bounded(&[c.member(i).client_url()]).await {
                got = client.hash_kv(rev).await.ok().map(|r| r.hash());
            }
            if got.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        out.push(got);
    }
    out
}

async fn range_at(urls: &[String], rev: i64) -> Option<Vec<checks::RangeKv>> {
    let end = Instant::now() + RECOVERY;
    while Instant::now() < end {
        if let Some(mut c) = connect_bounded(urls).await {
            if let Ok(r) = c.get(PREFIX, Some(GetOptions::new().with_prefix().with_revision(rev))).await {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let kvs = r.kvs().iter();
                return Some(
                    kvs.map(|kv| (text(kv.key()), text(kv.value()), kv.mod_revision(), kv.create_revision())).collect(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A linearizable read of every key in the history, recorded in it.
async fn final_reads(urls: &[String], s: &Shared) {
    let keys: std::collections::BTreeSet<String> = s.history.entries().iter().map(|e| e.op.key().to_string()).collect();
    let Some(mut c) = connect_bounded(urls).await else { return };
    const READER: usize = usize::MAX;
    for key in keys {
        let op = s.history.invoke(READER, Op::get(&key));
        let outcome = match c.get(key.as_str(), None).await {
            Ok(r) => Outcome::Got(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Err(_) => Outcome::Unknown,
        };
        s.history.complete(op, outcome);
    }
}

fn log_tails(c: &Cluster) -> String {
    c.members().iter().map(|m| format!("--- {} log tail:\n{}\n", m.name(), tail(&m.log_text(), 30))).collect()
}
