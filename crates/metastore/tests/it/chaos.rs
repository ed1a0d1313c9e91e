//! Chaos soak (issue 12): a 3- or 5-member cluster runs a mixed workload
//! while a seeded nemesis injects faults one after another; at the end the
//! cluster is healed and everything that was recorded is checked.
//!
//! Faults (`nemesis.rs`), each healed after 0.5-3 s: `kill -9` + restart,
//! SIGSTOP/SIGCONT stalls, partitions through the peer proxies (one member
//! isolated, or a 2|3 split of five), leader transfers (MoveLeader), graceful
//! member restarts (SIGTERM), and a full disk (one member's data dir on a
//! small tmpfs that a filler file fills; skipped with a note when the tmpfs
//! cannot be mounted, e.g. not root). The schedule (fault kinds, targets,
//! durations, gaps) comes from one seeded RNG: the seed is printed, and
//! `CHAOS_SEED` replays the schedule (what a fault meets still depends on
//! timing).
//!
//! Workload (`workload.rs`): per member two KV clients doing puts of unique
//! values, linearizable gets and compare-and-swap txns on a small rotating
//! key set, every op recorded in a `testkit::linearizability::History` (an
//! op without an answer is `Unknown`: it may have happened at any time
//! after its invoke; only a refused connection counts as not sent); one
//! locker per member taking the Lock API with a lease kept alive, writing a
//! lock-guarded key while it holds the lock; one watcher per member over the
//! whole prefix from revision 1, resuming from its last revision + 1 after
//! any failure.
//!
//! Checks (`checks.rs`), after a final heal, a final put at revision F and a
//! reference event history (a watch from revision 1 to F, itself checked
//! against a range of the prefix at F):
//! - every member's HashKV at F is equal (convergence);
//! - every key's history is linearizable (WGL checker; the keys rotate
//!   every few seconds so each history stays small enough to decide), with
//!   a final read of every key appended;
//! - no acknowledged write is lost: each acked put or txn is in the
//!   reference at the revision it was acknowledged with, with its value;
//! - every watch stream equals the reference up to F: ordered, no gap, no
//!   duplicate, same content (etcd's robustness watch guarantees);
//! - lock holders never overlap, judged on revisions, not clocks: every
//!   guarded write happened at a revision where its writer's lock key was
//!   the oldest key under the lock prefix (the owner), and no holder's
//!   writes interleave with another's;
//! - no member exits on its own (a crash is reported with its log tail).
//!
//! `CHAOS_SEED` replays a run's schedule; `CHAOS_MEMBERS` and
//! `CHAOS_DURATION` (`90s`, `30m`, seconds) set up the ignored `soak` test
//! that `scripts/chaos.sh` runs.

mod checks;
mod driver;
mod nemesis;
mod rng;
mod watchers;
mod workload;

use std::time::Duration;

use driver::Config;

/// Workload length of each CI run: two runs take about two minutes.
const CI_DURATION: Duration = Duration::from_secs(45);

async fn run_and_assert(cfg: Config) {
    let report = driver::run(cfg).await;
    println!("{report}");
    assert!(report.violations.is_empty(), "chaos found {} violation(s):\n{report}", report.violations.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_stay_correct_under_chaos() {
    run_and_assert(Config::ci(3, CI_DURATION)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_stay_correct_under_chaos() {
    run_and_assert(Config::ci(5, CI_DURATION)).await;
}

/// The long soak `scripts/chaos.sh` runs (`CHAOS_*` set it up).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long: run by scripts/chaos.sh"]
async fn soak() {
    run_and_assert(Config::soak()).await;
}
