//! The counters and histograms, grouped as etcd's packages define them,
//! with etcd's names, help texts, label names and buckets.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Registers what `make` builds; a name registered twice is a bug in this
/// file, caught by the unit test that renders every family.
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "registering a metric failed");
    }
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// etcd's `prometheus.ExponentialBuckets(start, factor, count)`.
fn exp(start: f64, factor: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, factor, count).expect("valid buckets")
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    reg(r, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"))
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    reg(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric"))
}

/// `etcd_server_*` (etcdserver/metrics.go) that count events; the gauges
/// of live state are read at scrape time (`scrape.rs`).
pub struct Server {
    pub leader_changes: IntCounter,
    pub proposals_failed: IntCounter,
    pub heartbeat_send_failures: IntCounter,
    pub slow_apply: IntCounter,
    pub slow_read_indexes: IntCounter,
    pub read_indexes_failed: IntCounter,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub learner_promote_successes: IntCounter,
    pub snapshot_apply_in_progress: IntGauge,
    pub lease_expired: IntCounter,
}

impl Server {
    fn new(r: &Registry) -> Self {
        Server {
            leader_changes: counter(r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_failed: counter(
                r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            heartbeat_send_failures: counter(
                r,
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            slow_apply: counter(
                r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            slow_read_indexes: counter(
                r,
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            ),
            read_indexes_failed: counter(
                r,
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            ),
            health_success: counter(r, "etcd_server_health_success", "The total number of successful health checks"),
            health_failures: counter(r, "etcd_server_health_failures", "The total number of failed health checks"),
            learner_promote_successes: counter(
                r,
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            ),
            snapshot_apply_in_progress: gauge(
                r,
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            ),
            lease_expired: counter(
                r,
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            ),
        }
    }
}

/// `etcd_disk_*` and the snapshot files' (wal, backend, snap packages).
pub struct Disk {
    pub wal_fsync: Histogram,
    pub wal_write_bytes: IntGauge,
    pub backend_commit: Histogram,
    pub backend_snapshot: Histogram,
    pub backend_defrag: Histogram,
    pub defrag_inflight: IntGauge,
    pub snap_save: Histogram,
}

impl Disk {
    fn new(r: &Registry) -> Self {
        Disk {
            wal_fsync: histogram(
                r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                exp(0.001, 2.0, 14),
            ),
            // A gauge in etcd too.
            wal_write_bytes: gauge(r, "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL."),
            backend_commit: histogram(
                r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                exp(0.001, 2.0, 14),
            ),
            backend_snapshot: histogram(
                r,
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                exp(0.01, 2.0, 17),
            ),
            backend_defrag: histogram(
                r,
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                exp(0.1, 2.0, 13),
            ),
            defrag_inflight: gauge(
                r,
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            ),
            snap_save: histogram(
                r,
                "etcd_debugging_snap_save_total_duration_seconds",
                "The total latency distributions of save called by snapshot.",
                exp(0.001, 2.0, 14),
            ),
        }
    }
}

/// `etcd_network_*` (rafthttp and v3rpc): per peer by its hex ID.
pub struct Network {
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_sent_failures: IntCounterVec,
    pub peer_received_failures: IntCounterVec,
    pub peer_rtt: HistogramVec,
    pub active_peers: IntGaugeVec,
    pub disconnected_peers: IntCounterVec,
    pub snapshot_send_success: IntCounterVec,
    pub snapshot_send_failures: IntCounterVec,
    pub snapshot_send_inflights: IntGaugeVec,
    pub snapshot_send_duration: HistogramVec,
    pub snapshot_receive_success: IntCounterVec,
    pub snapshot_receive_failures: IntCounterVec,
    pub snapshot_receive_inflights: IntGaugeVec,
    pub snapshot_receive_duration: HistogramVec,
    pub client_grpc_sent_bytes: IntCounter,
    pub client_grpc_received_bytes: IntCounter,
}

impl Network {
    fn new(r: &Registry) -> Self {
        let snap = || exp(0.1, 2.0, 10);
        Network {
            peer_sent_bytes: counter_vec(
                r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received_bytes: counter_vec(
                r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            peer_sent_failures: counter_vec(
                r,
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            peer_received_failures: counter_vec(
                r,
                "etcd_network_peer_received_failures_total",
                "The total number of receive failures from peers.",
                &["From"],
            ),
            peer_rtt: histogram_vec(
                r,
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
                &["To"],
                exp(0.0001, 2.0, 16),
            ),
            active_peers: gauge_vec(
                r,
                "etcd_network_active_peers",
                "The current number of active peer connections.",
                &["Local", "Remote"],
            ),
            disconnected_peers: counter_vec(
                r,
                "etcd_network_disconnected_peers_total",
                "The total number of disconnected peers.",
                &["Local", "Remote"],
            ),
            snapshot_send_success: counter_vec(
                r,
                "etcd_network_snapshot_send_success",
                "Total number of successful snapshot sends",
                &["To"],
            ),
            snapshot_send_failures: counter_vec(
                r,
                "etcd_network_snapshot_send_failures",
                "Total number of snapshot send failures",
                &["To"],
            ),
            snapshot_send_inflights: gauge_vec(
                r,
                "etcd_network_snapshot_send_inflights_total",
                "Total number of inflight snapshot sends",
                &["To"],
            ),
            snapshot_send_duration: histogram_vec(
                r,
                "etcd_network_snapshot_send_total_duration_seconds",
                "Total latency distributions of v3 snapshot sends",
                &["To"],
                snap(),
            ),
            snapshot_receive_success: counter_vec(
                r,
                "etcd_network_snapshot_receive_success",
                "Total number of successful snapshot receives",
                &["From"],
            ),
            snapshot_receive_failures: counter_vec(
                r,
                "etcd_network_snapshot_receive_failures",
                "Total number of snapshot receive failures",
                &["From"],
            ),
            snapshot_receive_inflights: gauge_vec(
                r,
                "etcd_network_snapshot_receive_inflights_total",
                "Total number of inflight snapshot receives",
                &["From"],
            ),
            snapshot_receive_duration: histogram_vec(
                r,
                "etcd_network_snapshot_receive_total_duration_seconds",
                "Total latency distributions of v3 snapshot receives",
                &["From"],
                snap(),
            ),
            client_grpc_sent_bytes: counter(
                r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            client_grpc_received_bytes: counter(
                r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
        }
    }
}

/// `etcd_mvcc_*` and `etcd_debugging_mvcc_*` that count events (etcd
/// serves most of the counts under both prefixes: one counter each here,
/// rendered twice).
pub struct Mvcc {
    pub put: IntCounter,
    pub delete: IntCounter,
    pub range: IntCounter,
    pub txn: IntCounter,
    pub events: IntCounter,
    /// A gauge in etcd.
    pub put_size: IntGauge,
    pub hash: Histogram,
    pub hash_rev: Histogram,
    pub compaction_pause: Histogram,
    pub compaction_total: Histogram,
    pub compaction_keys: IntCounter,
    pub index_compaction_pause: Histogram,
}

impl Mvcc {
    fn new(r: &Registry) -> Self {
        Mvcc {
            put: counter(r, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            delete: counter(r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            range: counter(r, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            txn: counter(r, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            events: counter(r, "etcd_debugging_mvcc_events_total", "Total number of events sent by this member."),
            compaction_total: histogram(
                r,
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                exp(100.0, 2.0, 14),
            ),
            compaction_keys: counter(
                r,
                "etcd_debugging_mvcc_db_compaction_keys_total",
                "Total number of db keys compacted.",
            ),
            index_compaction_pause: histogram(
                r,
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration.",
                exp(0.5, 2.0, 14),
            ),
            put_size: gauge(
                r,
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            ),
            hash: histogram(
                r,
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                exp(0.01, 2.0, 15),
            ),
            hash_rev: histogram(
                r,
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                exp(0.01, 2.0, 15),
            ),
            compaction_pause: histogram(
                r,
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                exp(1.0, 2.0, 13),
            ),
        }
    }
}

/// `etcd_debugging_lease_*`.
pub struct Lease {
    pub granted: IntCounter,
    pub revoked: IntCounter,
    pub renewed: IntCounter,
    pub ttl: Histogram,
}

impl Lease {
    fn new(r: &Registry) -> Self {
        Lease {
            granted: counter(r, "etcd_debugging_lease_granted_total", "The total number of granted leases."),
            revoked: counter(r, "etcd_debugging_lease_revoked_total", "The total number of revoked leases."),
            renewed: counter(
                r,
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            ttl: histogram(r, "etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs.", exp(1.0, 2.0, 24)),
        }
    }
}

/// Every process-wide family, registered in one registry.
pub struct Families {
    pub server: Server,
    pub disk: Disk,
    pub net: Network,
    pub mvcc: Mvcc,
    pub lease: Lease,
}

impl Families {
    pub fn new(r: &Registry) -> Self {
        Families {
            server: Server::new(r),
            disk: Disk::new(r),
            net: Network::new(r),
            mvcc: Mvcc::new(r),
            lease: Lease::new(r),
        }
    }
}
