//! etcd's Prometheus metrics, under etcd's names, types, labels and
//! buckets, so etcd's alerts and dashboards work unchanged
//! (`deploy/prometheus/`, docs/operations.md "Monitoring").
//!
//! Invariants:
//! - Counters and histograms are process-wide, as etcd's are: one member
//!   per process. They live in one registry, created together at the first
//!   use ([`get`]; the server calls [`init`] at start), so every family
//!   shows from the first scrape, at zero.
//! - Gauges of live state (leader, revisions, sizes, watchers, process)
//!   are read when scraped ([`render`]): nothing on the request path pays
//!   for them.
//! - The request path touches atomics only: a gRPC method's counters are
//!   resolved once, in a fixed table ([`grpc`]); per-peer counters are
//!   resolved when the peer's task starts.
//! - Nothing here can fail a request: a metric that cannot be registered
//!   is logged and left out.

mod families;
pub mod grpc;
mod process;
mod scrape;

use std::sync::LazyLock;
use std::time::Instant;

pub use families::Families;
use prometheus::Registry;
pub use scrape::render;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families::new(&REGISTRY));

/// The process-wide counters and histograms.
pub fn get() -> &'static Families {
    &FAMILIES
}

/// Registers every family (so each shows from the first scrape) and the
/// gRPC method table; `extensive` is `--metrics extensive` (adds
/// `grpc_server_handling_seconds`).
pub fn init(extensive: bool) {
    LazyLock::force(&FAMILIES);
    grpc::init(&REGISTRY, extensive);
    storage::mvcc::on_compaction_finished(compaction_finished);
}

/// The compactor thread's report of a finished compaction.
fn compaction_finished(stats: &storage::mvcc::CompactionStats) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let m = &get().mvcc;
    m.compaction_total.observe(ms(stats.duration));
    m.compaction_keys.inc_by(stats.revisions_deleted);
    m.index_compaction_pause.observe(ms(stats.index_pause));
}

/// A gauge held up while something is in flight, and down again when
/// dropped, a cancelled future's included.
pub struct Inflight(prometheus::IntGauge);

impl Inflight {
    pub fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Seconds since `start`, for a histogram.
pub fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// A member or peer ID as etcd writes it in labels.
pub fn id_label(id: u64) -> String {
    format!("{id:x}")
}
