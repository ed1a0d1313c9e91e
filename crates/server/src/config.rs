//! Server configuration: what the binary's flags resolve to. Validation of
//! user input happens in the binary; this struct is already consistent.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// etcd's `SnapshotCatchUpEntries`.
pub const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: u64 = raftlog::store::DEFAULT_CATCHUP_ENTRIES;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Every member of the initial cluster, this one included.
    pub members: Vec<Member>,
    pub snapshot_count: u64,
    /// Raft log entries kept below a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// `--initial-cluster-state existing`: join a running cluster instead of
    /// bootstrapping one (only matters on the first start).
    pub join_existing: bool,
    pub initial_cluster_token: String,
    /// This member's advertised URLs.
    pub advertise_peer_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    /// Source address for outgoing peer connections: the IP this member
    /// listens on for peers, when it names one.
    pub peer_source_ip: Option<std::net::IpAddr>,
    /// `--auto-compaction-mode` / `--auto-compaction-retention`; None = off.
    pub auto_compaction: Option<crate::maintenance::auto_compaction::AutoCompaction>,
    /// `--storage` and its engine's settings.
    pub storage: StorageConfig,
    /// `--key-index`: where the MVCC key index lives (`auto`: stored in
    /// RocksDB, in memory with the memory engine).
    pub key_index: storage::KeyIndexKind,
    /// `--restore-snapshot`: a backup (`crate::maintenance::backup`: an
    /// etcd snapshot or MetaStore's earlier format) to bootstrap a new
    /// cluster from on the first start.
    pub restore_snapshot: Option<PathBuf>,
    /// `--skip-hash-check`: restore a snapshot without its SHA-256 trailer
    /// (a copied `member/snap/db`), as etcdutl's flag.
    pub skip_hash_check: bool,
    /// `--quota-backend-bytes`: the store size at which a write raises the
    /// NOSPACE alarm; None = no quota.
    pub quota_bytes: Option<u64>,
    /// `--cert-file` and the rest: TLS for the https client URLs.
    pub client_tls: Option<crate::transport::tls::TlsFiles>,
    /// `--peer-cert-file` and the rest: TLS for https peer URLs, served
    /// and dialed.
    pub peer_tls: Option<crate::transport::tls::TlsFiles>,
    /// `--experimental-watch-progress-notify-interval`: how often a watch
    /// stream tells its synced watchers the current revision.
    pub watch_progress_notify_interval: Duration,
    /// `--experimental-initial-corrupt-check`: compare hashes with the peers
    /// before serving clients.
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`: how often the leader compares
    /// hashes with its peers; None = never.
    pub corrupt_check_interval: Option<Duration>,
    /// `--strict-reconfig-check`: refuse membership changes that would
    /// leave too few started members for a quorum.
    pub strict_reconfig_check: bool,
    /// HTTP/2 settings of the client and peer ports.
    pub http2: Http2Settings,
    /// `--auth-token-ttl`: a simple token's life after its last use.
    pub auth_token_ttl: Duration,
    /// `--auth-token jwt,...`: JWT tokens with these keys instead of
    /// simple ones.
    pub auth_jwt: Option<crate::apply::auth::jwt::JwtKeys>,
    /// `--metrics extensive`: also `grpc_server_handling_seconds`.
    pub metrics_extensive: bool,
    /// `--bcrypt-cost`, already in bcrypt's range.
    pub bcrypt_cost: u32,
}

/// etcd's `--auth-token-ttl` default, in seconds.
pub const DEFAULT_AUTH_TOKEN_TTL_SECS: u64 = 300;
/// etcd's `--bcrypt-cost` default (Go's `bcrypt.DefaultCost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// etcd's treatment of `--bcrypt-cost`: a cost outside bcrypt's 4..=31 is
/// not refused but replaced by the default, with a warning.
pub fn bcrypt_cost_or_default(cost: u32) -> u32 {
    if (4..=31).contains(&cost) {
        return cost;
    }
    tracing::warn!(
        min_cost = 4,
        max_cost = 31,
        default_cost = DEFAULT_BCRYPT_COST,
        given_cost = cost,
        "use default bcrypt cost instead of the invalid given cost"
    );
    DEFAULT_BCRYPT_COST
}

/// etcd's `--grpc-keepalive-interval`, `--grpc-keepalive-timeout` and
/// `--max-concurrent-streams`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    /// How long a connection may be silent before the server pings it.
    pub keepalive_interval: Duration,
    /// How long the server waits for the ping's answer before closing.
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
}

impl Default for Http2Settings {
    /// etcd's defaults: ping after 2 h of silence, wait 20 s, no stream limit.
    fn default() -> Self {
        Http2Settings {
            keepalive_interval: Duration::from_secs(2 * 3600),
            keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: u32::MAX,
        }
    }
}

/// etcd's default watch progress notification interval.
pub const DEFAULT_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// Which engine holds the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// Everything in memory; the raft WAL and snapshots make it durable.
    Memory,
    /// RocksDB in `<data-dir>/member/rocksdb` (needs the `rocksdb` feature).
    Rocksdb { block_cache_bytes: usize, write_buffer_bytes: usize },
}

impl StorageConfig {
    /// The engine's name, as in `--storage` and the data dir's marker file.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Memory => "memory",
            StorageConfig::Rocksdb { .. } => "rocksdb",
        }
    }

    /// Engines this binary was built with.
    pub fn available() -> &'static [&'static str] {
        if cfg!(feature = "rocksdb") {
            &["memory", "rocksdb"]
        } else {
            &["memory"]
        }
    }
}

/// etcd's gRPC allowance on top of `--max-request-bytes` for framing.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl ServerConfig {
    pub fn member_dir(&self) -> PathBuf {
        self.data_dir.join("member")
    }

    /// etcd's `ReqTimeout`: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }

    /// Election timeout in heartbeat ticks, at least 2 as raft requires.
    pub fn election_ticks(&self) -> usize {
        let hb = self.heartbeat.as_millis().max(1);
        ((self.election_timeout.as_millis() / hb) as usize).max(2)
    }
}
