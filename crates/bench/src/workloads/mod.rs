//! The workloads, one file per family, and `execute`, which connects, runs
//! the chosen one within the hard deadline and builds the report.

mod kv;
mod lease;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::args::{Command, Options};
use crate::conn::{authenticate, leader_endpoints, Pool};
use crate::report::Report;
use crate::runner::{self, Plan, Workload};

/// Extra time past `--timeout` allowed for teardown before giving up outright.
const LAST_RESORT_GRACE: Duration = Duration::from_secs(5);

/// Runs the workload of `opts` and reports on it.
pub async fn execute(opts: Options) -> Result<Report, String> {
    let hard_deadline = Instant::now() + opts.timeout;
    let cpu0 = crate::cpu::process_cpu_seconds();
    let run = execute_inner(opts, hard_deadline);
    let mut report = match tokio::time::timeout_at((hard_deadline + LAST_RESORT_GRACE).into(), run).await {
        Ok(r) => r?,
        Err(_) => return Err("the run did not end within --timeout".into()),
    };
    report.client_cpu_s = cpu0.zip(crate::cpu::process_cpu_seconds()).map(|(a, b)| b - a);
    Ok(report)
}

async fn execute_inner(opts: Options, hard_deadline: Instant) -> Result<Report, String> {
    let token = match (&opts.user, opts.endpoints.first()) {
        (Some(user), Some(ep)) => Some(authenticate(ep, user, opts.dial_timeout, opts.request_timeout).await?),
        _ => None,
    };
    let endpoints = if opts.target_leader {
        leader_endpoints(&opts.endpoints, opts.dial_timeout, opts.request_timeout, token.as_ref()).await?
    } else {
        opts.endpoints.clone()
    };
    let mut pool = Pool::connect(&endpoints, opts.conns, opts.dial_timeout).await?;
    if let Some(token) = &token {
        pool.set_token(token);
    }
    let pool = Arc::new(pool);
    let plan = Plan {
        label: String::new(),
        clients: opts.clients,
        total: opts.total,
        duration: opts.duration,
        hard_deadline,
        request_timeout: opts.request_timeout,
    };
    let base = |workload: &str, params: Value| Report {
        workload: workload.to_string(),
        endpoints: endpoints.clone(),
        conns: opts.conns,
        clients: opts.clients,
        params,
        ok: 0,
        errors: Default::default(),
        elapsed: Duration::ZERO,
        timed_out: false,
        latency: Default::default(),
        extra: Vec::new(),
        info: Vec::new(),
        client_cpu_s: None,
    };
    match &opts.command {
        Command::Put(a) => {
            let (w, params) = kv::Put::new(pool, a);
            closed_loop(w, plan, base("put", params)).await
        }
        Command::Range(a) => {
            let (w, params) = kv::Range::new(pool, a);
            closed_loop(w, plan, base("range", params)).await
        }
        Command::TxnPut(a) => {
            let (w, params) = kv::TxnPut::new(pool, a);
            closed_loop(w, plan, base("txn-put", params)).await
        }
        Command::LeaseKeepalive(a) => {
            let (w, params) = lease::KeepAlive::new(pool, a);
            closed_loop(w, plan, base("lease-keepalive", params)).await
        }
        Command::WatchLatency(a) => {
            watch::run(
                pool,
                a,
                opts.conns,
                hard_deadline,
                opts.request_timeout,
                base("watch-latency", watch::params(a)),
            )
            .await
        }
    }
}

async fn closed_loop<W: Workload>(w: W, mut plan: Plan, mut report: Report) -> Result<Report, String> {
    plan.label = report.workload.clone();
    let o = runner::run(Arc::new(w), &plan).await?;
    report.ok = o.ok;
    report.errors = o.errors;
    report.elapsed = o.elapsed;
    report.timed_out = o.timed_out;
    report.latency = o.latencies.summary();
    Ok(report)
}
