//! The `/metrics` page: the process-wide families, plus gauges read from
//! the member's live state now, in Prometheus's text format.

use prometheus::core::Collector;
use prometheus::{Counter, Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::api::Ctx;

struct Page(Registry);

impl Page {
    fn add<C: Collector + 'static>(&self, c: C) {
        if let Err(e) = self.0.register(Box::new(c)) {
            tracing::error!(error = %e, "registering a scraped metric failed");
        }
    }

    fn gauge(&self, name: &str, help: &str, value: i64) {
        if let Ok(g) = IntGauge::new(name, help) {
            g.set(value);
            self.add(g);
        }
    }

    fn float(&self, name: &str, help: &str, value: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(value);
            self.add(g);
        }
    }

    /// A counter read elsewhere (the process's CPU time).
    fn total(&self, name: &str, help: &str, value: f64) {
        if let Ok(c) = Counter::new(name, help) {
            c.inc_by(value);
            self.add(c);
        }
    }

    /// A gauge at 1 whose label carries the value (etcd's version and ID).
    fn info(&self, name: &str, help: &str, label: &str, value: &str) {
        if let Ok(g) = IntGaugeVec::new(Opts::new(name, help), &[label]) {
            g.with_label_values(&[value]).set(1);
            self.add(g);
        }
    }

    /// etcd serves some counts under two names: the second one here.
    fn counter_copy(&self, name: &str, help: &str, of: &IntCounter) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(of.get());
            self.add(c);
        }
    }
}

/// Renders every metric this member serves.
pub fn render(ctx: &Ctx) -> String {
    let page = Page(Registry::new());
    server_gauges(&page, ctx);
    mvcc_gauges(&page, ctx);
    process_gauges(&page);
    let mut families = page.0.gather();
    families.extend(super::REGISTRY.gather());
    families.sort_by(|a, b| a.get_name().cmp(b.get_name()));
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn server_gauges(page: &Page, ctx: &Ctx) {
    let node = &ctx.node;
    let me = ctx.cfg.member_id;
    let leader = node.state.leader();
    page.gauge(
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        (leader != 0).into(),
    );
    page.gauge(
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        (leader == me && me != 0).into(),
    );
    page.gauge(
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        node.members.is_learner(me).into(),
    );
    page.gauge(
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        node.state.commit_index() as i64,
    );
    page.gauge(
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        node.state.applied_index() as i64,
    );
    page.gauge(
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        node.waiters.len() as i64,
    );
    // etcd reports the flag's value, negative when the quota is off (the
    // config keeps no value then: -1) and the default for 0.
    page.gauge(
        "etcd_server_quota_backend_bytes",
        "Current backend storage quota size in bytes.",
        ctx.cfg.quota_bytes.map_or(-1, |q| q as i64),
    );
    page.info(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        "server_id",
        &super::id_label(me),
    );
    page.info(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        "server_version",
        api::ETCD_VERSION,
    );
    page.info(
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        "cluster_version",
        api::ETCD_CLUSTER_VERSION,
    );
    page.gauge("etcd_debugging_auth_revision", "The current revision of auth store.", node.auth.revision() as i64);
}

fn mvcc_gauges(page: &Page, ctx: &Ctx) {
    let node = &ctx.node;
    let engine = node.mvcc.engine();
    let (size, in_use) = (engine.size_bytes() as i64, engine.size_in_use_bytes() as i64);
    let physical = "Total size of the underlying database physically allocated in bytes.";
    page.gauge("etcd_mvcc_db_total_size_in_bytes", physical, size);
    page.gauge("etcd_debugging_mvcc_db_total_size_in_bytes", physical, size);
    page.gauge(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        in_use,
    );
    page.gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", node.mvcc.current_revision());
    page.gauge(
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        node.mvcc.compact_revision(),
    );
    page.gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", node.mvcc.keys_total() as i64);
    page.gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", ctx.watch.watchers());
    page.gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", ctx.watch.streams());
    let m = &super::get().mvcc;
    page.counter_copy("etcd_debugging_mvcc_put_total", "Total number of puts seen by this member.", &m.put);
    page.counter_copy("etcd_debugging_mvcc_delete_total", "Total number of deletes seen by this member.", &m.delete);
    page.counter_copy("etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member.", &m.range);
    page.counter_copy("etcd_debugging_mvcc_txn_total", "Total number of txns seen by this member.", &m.txn);
}

fn process_gauges(page: &Page) {
    let p = super::process::read();
    page.total("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", p.cpu_seconds);
    page.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes as i64);
    page.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes as i64);
    page.float(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        p.max_virtual_bytes.map_or(u64::MAX as f64, |v| v as f64),
    );
    page.float(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    page.gauge("process_open_fds", "Number of open file descriptors.", p.open_fds as i64);
    let max_fds = p.max_fds.map_or(-1, |v| v as i64);
    page.gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds);
    page.gauge("os_fd_used", "The number of used file descriptors.", p.open_fds as i64);
    page.gauge("os_fd_limit", "The file descriptor limit.", max_fds);
}
