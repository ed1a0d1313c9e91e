//! The closed-loop runner: `clients` workers, each sending one request at a
//! time and the next as soon as the previous answers, until `total`
//! operations have been claimed, `duration` has passed, or the hard deadline.
//!
//! Bounds: each operation waits at most `request_timeout` and never past the
//! hard deadline, so every worker ends by the deadline; setup (dialing a
//! stream, granting a lease) is bounded the same way, and teardown by
//! `TEARDOWN_LIMIT`. Setup is not measured: the clock starts when every
//! worker is ready.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::progress::{Counters, Progress};
use crate::stats::{ErrorCounts, Samples};

/// How long teardown (closing streams, revoking leases) may take in all.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(3);
/// Samples preallocated per worker at most (the vector grows past it if needed).
const PREALLOC_PER_WORKER: u64 = 1 << 20;

/// One kind of operation. `setup` makes a worker's state (a client, a
/// stream), `op` runs operation number `i` with a time limit.
pub trait Workload: Send + Sync + 'static {
    type Worker: Send + 'static;
    fn setup(&self, worker: usize) -> impl Future<Output = Result<Self::Worker, String>> + Send;
    fn op(&self, w: &mut Self::Worker, i: u64, limit: Duration) -> impl Future<Output = Result<(), String>> + Send;
    fn teardown(&self, _w: Self::Worker) -> impl Future<Output = ()> + Send {
        async {}
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub label: String,
    pub clients: usize,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub hard_deadline: Instant,
    pub request_timeout: Duration,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: u64,
    pub latencies: Samples,
    pub errors: ErrorCounts,
    pub elapsed: Duration,
    pub timed_out: bool,
}

pub const HARD_TIMEOUT: &str = "client: stopped by --timeout";
pub const REQUEST_TIMEOUT: &str = "client: no answer within --request-timeout";

/// Sets up every worker, then runs them until the plan's bounds, and merges their results.
pub async fn run<W: Workload>(w: Arc<W>, plan: &Plan) -> Result<Outcome, String> {
    let mut out = Outcome::default();

    // Setup, concurrently, within the hard deadline.
    let mut set = JoinSet::new();
    for i in 0..plan.clients {
        let w = w.clone();
        let deadline = plan.hard_deadline;
        set.spawn(async move {
            match tokio::time::timeout_at(deadline.into(), w.setup(i)).await {
                Ok(r) => r,
                Err(_) => Err(format!("setup: {HARD_TIMEOUT}")),
            }
        });
    }
    let mut workers = Vec::with_capacity(plan.clients);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(worker)) => workers.push(worker),
            Ok(Err(e)) => out.errors.add(e),
            Err(e) => out.errors.add(format!("setup task failed: {e}")),
        }
    }
    if workers.is_empty() {
        let errs: Vec<String> = out.errors.sorted().iter().map(|(m, n)| format!("{n} x {m}")).collect();
        return Err(format!("no worker could start: {}", errs.join("; ")));
    }

    // Run.
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(plan.label.clone(), plan.total, plan.duration, counters.clone());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let run_end = plan.duration.map(|d| start + d);
    let prealloc = plan.total.map_or(1024, |t| (t / workers.len() as u64 + 1).min(PREALLOC_PER_WORKER)) as usize;
    let mut set = JoinSet::new();
    for mut worker in workers {
        let (w, next, counters, plan) = (w.clone(), next.clone(), counters.clone(), plan.clone());
        set.spawn(async move {
            let mut lat = Samples::with_capacity(prealloc);
            let mut errors = ErrorCounts::default();
            let mut timed_out = false;
            loop {
                let now = Instant::now();
                if run_end.is_some_and(|e| now >= e) {
                    break;
                }
                if now >= plan.hard_deadline {
                    timed_out = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if plan.total.is_some_and(|t| i >= t) {
                    break;
                }
                let limit = plan.request_timeout.min(plan.hard_deadline - now);
                let t0 = Instant::now();
                match tokio::time::timeout(limit, w.op(&mut worker, i, limit)).await {
                    Ok(Ok(())) => {
                        lat.push(t0.elapsed());
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        errors.add(e);
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        let hard = Instant::now() >= plan.hard_deadline;
                        errors.add(if hard { HARD_TIMEOUT } else { REQUEST_TIMEOUT });
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        timed_out |= hard;
                    }
                }
            }
            (lat, errors, timed_out, Instant::now(), worker)
        });
    }
    let mut finished = Vec::new();
    let mut last_end = start;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((lat, errors, timed_out, end, worker)) => {
                out.ok += lat.len() as u64;
                out.latencies.merge(lat);
                out.errors.merge(errors);
                out.timed_out |= timed_out;
                last_end = last_end.max(end);
                finished.push(worker);
            }
            Err(e) => out.errors.add(format!("worker task failed: {e}")),
        }
    }
    out.elapsed = last_end - start;
    progress.finish().await;

    // Teardown, bounded, not measured.
    let mut set = JoinSet::new();
    for worker in finished {
        let w = w.clone();
        set.spawn(async move { w.teardown(worker).await });
    }
    let _ = tokio::time::timeout(TEARDOWN_LIMIT, async { while set.join_next().await.is_some() {} }).await;
    set.abort_all();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Succeeds except every third op; sleeps 1 ms per op.
    struct Fake;
    impl Workload for Fake {
        type Worker = u64;
        async fn setup(&self, _worker: usize) -> Result<u64, String> {
            Ok(0)
        }
        async fn op(&self, w: &mut u64, i: u64, _limit: Duration) -> Result<(), String> {
            *w += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if i % 3 == 2 {
                Err("boom".into())
            } else {
                Ok(())
            }
        }
    }

    struct Hang;
    impl Workload for Hang {
        type Worker = ();
        async fn setup(&self, _worker: usize) -> Result<(), String> {
            Ok(())
        }
        async fn op(&self, _w: &mut (), _i: u64, _limit: Duration) -> Result<(), String> {
            std::future::pending().await
        }
    }

    fn plan(total: Option<u64>, duration: Option<Duration>, hard: Duration, req: Duration) -> Plan {
        Plan {
            label: "t".into(),
            clients: 4,
            total,
            duration,
            hard_deadline: Instant::now() + hard,
            request_timeout: req,
        }
    }

    #[tokio::test]
    async fn total_bounds_the_op_count() {
        let p = plan(Some(30), None, Duration::from_secs(10), Duration::from_secs(1));
        let o = run(Arc::new(Fake), &p).await.unwrap();
        assert_eq!(o.ok, 20);
        assert_eq!(o.errors.sorted(), vec![("boom", 10)]);
        assert!(!o.timed_out);
    }

    #[tokio::test]
    async fn duration_bounds_the_run() {
        let p = plan(None, Some(Duration::from_millis(100)), Duration::from_secs(10), Duration::from_secs(1));
        let t = Instant::now();
        let o = run(Arc::new(Fake), &p).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(o.ok > 0);
        assert!(!o.timed_out);
    }

    #[tokio::test]
    async fn hung_requests_end_at_the_deadlines() {
        let p = plan(Some(1_000_000), None, Duration::from_millis(300), Duration::from_millis(100));
        let t = Instant::now();
        let o = run(Arc::new(Hang), &p).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(o.ok, 0);
        assert!(o.timed_out);
        let errs = o.errors.sorted();
        assert!(errs.iter().any(|(m, _)| *m == REQUEST_TIMEOUT), "{errs:?}");
    }
}
