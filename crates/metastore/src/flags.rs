//! Command-line flags with etcd's names (and etcd's `ETCD_*` environment
//! variables), resolved into a `ServerConfig` plus the addresses to bind.
//! Flags with a fixed set of values are `clap::ValueEnum`s, so clap rejects
//! a bad value while parsing (its message lists the possible values) and
//! `--help` shows them. Other bad or contradictory flags are a `FlagError`,
//! which main turns into a message on stderr; both exit with code 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use server::TlsFiles;
use server::{ids, Member, ServerConfig, StorageConfig};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "metastore",
    about = "MetaStore: a distributed metadata store speaking the etcd v3 API",
    disable_version_flag = true
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ./<name>.metastore).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (default: <name>=<initial-advertise-peer-urls>).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", value_enum, default_value_t = ClusterState::New)]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to
    /// low space quota; negative disables it).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0, allow_hyphen_values = true)]
    pub quota_backend_bytes: i64,
    /// Number of entries for a slow follower to catch up after compacting the
    /// raft storage entries.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = server::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u64,
    /// Auth token type and options: 'simple', or 'jwt,sign-method=RS256,pub-key=FILE,priv-key=FILE,ttl=5m'.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Time (in seconds) a simple token lives after its last use (0: 300).
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost factor for hashing auth passwords, between 4 and 31 (another value: 10, as etcd).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = server::DEFAULT_BCRYPT_COST)]
    pub bcrypt_cost: u32,
    /// Log level.
    #[arg(long, env = "ETCD_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// How to interpret 'auto-compaction-retention'.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", value_enum, default_value_t = AutoCompactionMode::Periodic)]
    pub auto_compaction_mode: AutoCompactionMode,
    /// Auto compaction retention: a duration like '1h' or a number of hours (periodic), or a
    /// revision count (revision). 0 disables auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Storage engine.
    #[arg(long, env = "METASTORE_STORAGE", value_enum, default_value_t = Storage::Memory)]
    pub storage: Storage,
    /// Where the key index (key -> revisions) lives: auto (stored in RocksDB with
    /// --storage rocksdb, memory otherwise), memory (rebuilt on every start, about
    /// 120 bytes per key) or stored (in RocksDB, in bounded memory; needs --storage rocksdb).
    #[arg(long, env = "METASTORE_KEY_INDEX", default_value = "auto", value_parser = parse_key_index)]
    pub key_index: server::KeyIndexKind,
    /// RocksDB engine: block cache shared by all tables, in bytes.
    #[arg(long, env = "METASTORE_ROCKSDB_BLOCK_CACHE_BYTES", default_value_t = 64 << 20)]
    pub rocksdb_block_cache_bytes: u64,
    /// RocksDB engine: memtable size of the key history, in bytes.
    #[arg(long, env = "METASTORE_ROCKSDB_WRITE_BUFFER_BYTES", default_value_t = 16 << 20)]
    pub rocksdb_write_buffer_bytes: u64,
    /// Bootstrap the new cluster (first start, --initial-cluster-state new) with
    /// the contents of a file saved by `etcdctl snapshot save` from etcd 3.4/3.5
    /// or MetaStore; ignored once the data dir holds a member.
    #[arg(long, env = "METASTORE_RESTORE_SNAPSHOT")]
    pub restore_snapshot: Option<PathBuf>,
    /// Restore a snapshot file that has no SHA-256 trailer (e.g. a copied
    /// member/snap/db), as etcdutl snapshot restore --skip-hash-check.
    #[arg(long, env = "METASTORE_SKIP_HASH_CHECK")]
    pub skip_hash_check: bool,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Duration of periodic watch progress notifications.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub client_cert_auth: bool,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub peer_client_cert_auth: bool,
    /// Check data corruption (compare hashes with the peers) before serving
    /// client traffic.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub experimental_initial_corrupt_check: bool,
    /// Duration between the leader's corruption checks (0: none).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s")]
    pub experimental_corrupt_check_time: String,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
    pub strict_reconfig_check: bool,
    /// Logger ('capnslog', etcd's deprecated one, is taken as 'zap').
    #[arg(long, env = "ETCD_LOGGER", value_enum, default_value_t = Logger::Zap)]
    pub logger: Logger,
    /// Where logs go: 'default' (stderr), 'stderr', 'stdout', or file paths, comma-separated.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    /// Configures log format. Only supports json, console. Default is 'json'.
    #[arg(long, env = "ETCD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Serve the v2 API (not available: MetaStore serves the v3 API only).
    #[arg(long, env = "ETCD_ENABLE_V2", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_v2: bool,
    /// Metrics detail (the same set is exported either way).
    #[arg(long, env = "ETCD_METRICS", value_enum, default_value_t = Metrics::Basic)]
    pub metrics: Metrics,
    /// Frequency duration of server-to-client pings to check if a connection is alive.
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h")]
    pub grpc_keepalive_interval: String,
    /// Additional duration of wait before closing a non-responsive connection.
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s")]
    pub grpc_keepalive_timeout: String,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
}

/// `--initial-cluster-state`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster with the members of --initial-cluster.
    New,
    /// Join a running cluster that already has this member (`etcdctl member add`).
    Existing,
}

/// `--log-level`, etcd's (zap's) levels. tracing has nothing above error,
/// so the three above it log errors only.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Dpanic,
    Panic,
    Fatal,
}

impl LogLevel {
    fn tracing(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Dpanic | LogLevel::Panic | LogLevel::Fatal => tracing::Level::ERROR,
        }
    }
}

/// `--auto-compaction-mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompactionMode {
    /// The retention is a duration ('1h30m'), or a number of hours.
    Periodic,
    /// The retention is a number of revisions to keep.
    Revision,
}

/// `--storage`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// State in memory, rebuilt from snapshots and the raft WAL on restart.
    Memory,
    /// State in RocksDB (when built with the `rocksdb` feature).
    Rocksdb,
}

/// `--log-format`: etcd's (zap's) JSON lines, or text for a terminal.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: level, ts, caller, msg, then the fields.
    Json,
    /// Human-readable text.
    Console,
}

/// `--logger`: etcd's choice of logging library; MetaStore has one.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logger {
    #[value(alias = "capnslog")]
    Zap,
}

/// `--metrics`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metrics {
    Basic,
    Extensive,
}

/// A value's spelling on the command line.
fn spelling(v: &impl ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_owned()).unwrap_or_default()
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct FlagError(pub String, pub i32);

/// The exit code of a bad command line, as etcd's flag parsing.
pub const EXIT_USAGE: i32 = 2;

impl FlagError {
    /// A bad flag: exit [`EXIT_USAGE`].
    pub fn new(msg: String) -> Self {
        FlagError(msg, EXIT_USAGE)
    }

    /// A flag etcd accepts but fails on when it creates the server
    /// (`--auth-token`'s options): exit 1, as etcd.
    fn at_server_creation(self) -> Self {
        FlagError(self.0, 1)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, FlagError> {
    Err(FlagError::new(msg.into()))
}

pub struct Resolved {
    pub config: ServerConfig,
    /// `--log-outputs`: where the log goes.
    pub log_outputs: Vec<LogOutput>,
    /// Each address to listen on, and whether its URL is https.
    pub client_addrs: Vec<(SocketAddr, bool)>,
    pub peer_addrs: Vec<(SocketAddr, bool)>,
    /// `--listen-metrics-urls`: /metrics and /health only.
    pub metrics_addrs: Vec<(SocketAddr, bool)>,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

fn split_urls(flag: &str, value: &str) -> Result<Vec<String>, FlagError> {
    let urls: Vec<String> = value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if urls.is_empty() {
        return err(format!("--{flag} must not be empty"));
    }
    for u in &urls {
        parse_url(flag, u)?;
    }
    Ok(urls)
}

/// Accepts `http://host:port` and `https://host:port`; unix sockets are
/// not served yet.
fn parse_key_index(value: &str) -> Result<server::KeyIndexKind, String> {
    value.parse()
}

fn parse_url(flag: &str, url: &str) -> Result<(String, u16), FlagError> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        if url.starts_with("unix") {
            return err(format!("--{flag}: {url:?}: unix socket URLs are not supported yet; use http(s)://host:port"));
        }
        return err(format!("--{flag}: URL scheme must be http or https (got {url:?})"));
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return err(format!("--{flag}: {url:?} has no port"));
    };
    let port: u16 = port.parse().map_err(|_| FlagError::new(format!("--{flag}: {url:?} has an invalid port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return err(format!("--{flag}: {url:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// `localhost` binds the IPv4 loopback, as a single address keeps ports
/// predictable; other names resolve normally.
fn bind_addrs(flag: &str, urls: &[String]) -> Result<Vec<(SocketAddr, bool)>, FlagError> {
    let mut out = Vec::new();
    for u in urls {
        let (host, port) = parse_url(flag, u)?;
        let https = u.starts_with("https://");
        let host = if host == "localhost" { "127.0.0.1".to_string() } else { host };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| FlagError::new(format!("--{flag}: cannot resolve {u:?}: {e}")))?
            .next()
            .ok_or_else(|| FlagError::new(format!("--{flag}: {u:?} resolves to no address")))?;
        out.push((addr, https));
    }
    Ok(out)
}

/// One side's TLS files: None without a cert and key; an https URL needs
/// them (etcd's message).
fn tls_files(
    side: &str,
    prefix: &str,
    urls: &[String],
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    trusted_ca: &Option<PathBuf>,
    client_cert_auth: bool,
) -> Result<Option<TlsFiles>, FlagError> {
    let files = match (cert, key) {
        (Some(cert), Some(key)) => {
            Some(TlsFiles { cert: cert.clone(), key: key.clone(), trusted_ca: trusted_ca.clone(), client_cert_auth })
        }
        (None, None) => None,
        _ => return err(format!("--{prefix}cert-file and --{prefix}key-file must be given together")),
    };
    if files.is_none() {
        if let Some(u) = urls.iter().find(|u| u.starts_with("https://")) {
            return err(format!(
                "TLS key/cert (--{prefix}cert-file, --{prefix}key-file) must be provided for {side} url {u} with HTTPS scheme"
            ));
        }
    }
    if files.as_ref().is_some_and(|f| f.client_cert_auth && f.trusted_ca.is_none()) {
        return err(format!("--{prefix}client-cert-auth needs --{prefix}trusted-ca-file"));
    }
    Ok(files)
}

/// One destination of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// etcd's `--log-outputs`: `default` is stderr.
fn log_outputs(value: &str) -> Result<Vec<LogOutput>, FlagError> {
    let mut out = Vec::new();
    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let o = match v {
            "default" | "stderr" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            path => LogOutput::File(PathBuf::from(path)),
        };
        if !out.contains(&o) {
            out.push(o);
        }
    }
    if out.is_empty() {
        return err("--log-outputs must not be empty");
    }
    Ok(out)
}

fn parse_cluster(value: &str) -> Result<Vec<(String, Vec<String>)>, FlagError> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return err(format!("--initial-cluster: {part:?} is not name=url"));
        };
        parse_url("initial-cluster", url)?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if members.is_empty() {
        return err("--initial-cluster must not be empty");
    }
    Ok(members)
}

/// Go's `time.ParseDuration` for the units etcd users write: "1h30m",
/// "90s", "1.5h", "500ms".
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(Duration::from_secs_f64(total))
}

impl Flags {
    fn auto_compaction(&self) -> Result<Option<server::AutoCompaction>, FlagError> {
        use server::AutoCompaction;
        let r = self.auto_compaction_retention.trim();
        let bad = || {
            FlagError::new(format!(
                "--auto-compaction-retention: {r:?} is not valid for --auto-compaction-mode={}",
                spelling(&self.auto_compaction_mode)
            ))
        };
        match self.auto_compaction_mode {
            AutoCompactionMode::Periodic => {
                // A bare number is hours, as in etcd.
                let d = match r.parse::<u64>() {
                    Ok(h) => Duration::from_secs(h * 3600),
                    Err(_) => parse_go_duration(r).ok_or_else(bad)?,
                };
                Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
            }
            AutoCompactionMode::Revision => {
                let n: i64 = r.parse().map_err(|_| bad())?;
                if n < 0 {
                    return Err(bad());
                }
                Ok((n > 0).then_some(AutoCompaction::Revision(n)))
            }
        }
    }

    /// `--auth-token`: etcd's `type,option=value,...`: `simple`, or
    /// `jwt,sign-method=...,pub-key=FILE,priv-key=FILE,ttl=DURATION`
    /// (etcd's options; the key files are read here, so a bad one stops
    /// the start with a message instead of failing the first Authenticate).
    fn auth_jwt(&self) -> Result<Option<server::JwtKeys>, FlagError> {
        let invalid = || FlagError::new(format!("--auth-token {:?}: auth: invalid auth options", self.auth_token));
        let mut parts = self.auth_token.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut opts = std::collections::HashMap::new();
        for opt in parts {
            let (k, v) = opt.split_once('=').filter(|(_, v)| !v.contains('=')).ok_or_else(invalid)?;
            if opts.insert(k, v).is_some() {
                return Err(invalid());
            }
        }
        match kind {
            "simple" => return Ok(None),
            "jwt" => {}
            _ => return Err(invalid()),
        }
        let read = |name: &str| -> Result<Option<Vec<u8>>, FlagError> {
            match opts.get(name).filter(|f| !f.is_empty()) {
                None => Ok(None),
                Some(file) => std::fs::read(file)
                    .map(Some)
                    .map_err(|e| FlagError::new(format!("--auth-token: reading {name} {file}: {e}"))),
            }
        };
        let ttl = match opts.get("ttl").filter(|t| !t.is_empty()) {
            None => server::JWT_DEFAULT_TTL,
            Some(t) => {
                parse_go_duration(t).ok_or_else(|| FlagError::new(format!("--auth-token: invalid ttl {t:?}")))?
            }
        };
        let (public, private) = (read("pub-key")?, read("priv-key")?);
        let method = opts.get("sign-method").copied().unwrap_or_default();
        server::JwtKeys::new(method, public.as_deref(), private.as_deref(), ttl)
            .map(Some)
            .map_err(|e| FlagError::new(format!("--auth-token: {e}")))
    }

    pub fn resolve(&self) -> Result<Resolved, FlagError> {
        let log_level = self.log_level.tracing();
        let storage = match self.storage {
            Storage::Memory => StorageConfig::Memory,
            Storage::Rocksdb => StorageConfig::Rocksdb {
                block_cache_bytes: self.rocksdb_block_cache_bytes as usize,
                write_buffer_bytes: (self.rocksdb_write_buffer_bytes as usize).max(1 << 20),
            },
        };
        if !StorageConfig::available().contains(&storage.kind()) {
            return err(format!(
                "--storage: this binary was built without the {} engine; rebuild with `--features rocksdb`",
                storage.kind()
            ));
        }
        if self.key_index == server::KeyIndexKind::Stored && storage == StorageConfig::Memory {
            // The memory engine's scans may miss a key overwritten while
            // they pass it; stored histories are overwritten all the time.
            return err("--key-index stored needs --storage rocksdb");
        }
        if self.heartbeat_interval == 0 || self.election_timeout == 0 {
            return err("--heartbeat-interval and --election-timeout must be positive");
        }
        if 5 * self.heartbeat_interval > self.election_timeout {
            return err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.snapshot_count == 0 {
            return err("--snapshot-count must be at least 1");
        }
        if self.restore_snapshot.is_some() && self.initial_cluster_state == ClusterState::Existing {
            return err("--restore-snapshot bootstraps a new cluster: it needs --initial-cluster-state new");
        }
        if self.max_txn_ops == 0 {
            return err("--max-txn-ops must be at least 1");
        }
        if self.max_request_bytes == 0 || self.max_request_bytes > 1 << 30 {
            return err("--max-request-bytes must be between 1 and 1073741824");
        }
        let auth_jwt = self.auth_jwt().map_err(FlagError::at_server_creation)?;
        let client_urls = split_urls("listen-client-urls", &self.listen_client_urls)?;
        let advertise_client = split_urls("advertise-client-urls", &self.advertise_client_urls)?;
        let peer_urls = split_urls("listen-peer-urls", &self.listen_peer_urls)?;
        let advertise_peer = split_urls("initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;
        let cluster_text = match &self.initial_cluster {
            Some(c) => c.clone(),
            None => advertise_peer.iter().map(|u| format!("{}={u}", self.name)).collect::<Vec<_>>().join(","),
        };
        let cluster = parse_cluster(&cluster_text)?;
        let Some((_, my_urls)) = cluster.iter().find(|(n, _)| *n == self.name) else {
            return err(format!("couldn't find local name {:?} in the initial cluster configuration", self.name));
        };
        let mut a = advertise_peer.clone();
        let mut b = my_urls.clone();
        a.sort();
        b.sort();
        if a != b {
            return err(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                self.name,
                my_urls.join(","),
                advertise_peer.join(",")
            ));
        }
        let members: Vec<Member> = cluster
            .iter()
            .map(|(name, urls)| Member {
                name: name.clone(),
                id: ids::member_id(urls, &self.initial_cluster_token),
                peer_urls: urls.clone(),
                client_urls: if *name == self.name { advertise_client.clone() } else { vec![] },
            })
            .collect();
        let member_id = ids::member_id(my_urls, &self.initial_cluster_token);
        let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
        let config = ServerConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.metastore", self.name))),
            member_id,
            cluster_id,
            members,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            join_existing: self.initial_cluster_state == ClusterState::Existing,
            initial_cluster_token: self.initial_cluster_token.clone(),
            advertise_peer_urls: advertise_peer.clone(),
            advertise_client_urls: advertise_client.clone(),
            peer_source_ip: None,
            auto_compaction: self.auto_compaction()?,
            restore_snapshot: self.restore_snapshot.clone(),
            skip_hash_check: self.skip_hash_check,
            quota_bytes: match self.quota_backend_bytes {
                q if q < 0 => None,
                0 => Some(server::DEFAULT_QUOTA_BYTES),
                q => Some(q as u64),
            },
            storage,
            key_index: self.key_index,
            client_tls: None,
            peer_tls: None,
            watch_progress_notify_interval: server::DEFAULT_PROGRESS_NOTIFY_INTERVAL,
            initial_corrupt_check: false,
            corrupt_check_interval: None,
            strict_reconfig_check: true,
            http2: Default::default(),
            auth_token_ttl: Duration::from_secs(match self.auth_token_ttl {
                0 => server::DEFAULT_AUTH_TOKEN_TTL_SECS,
                ttl => ttl,
            }),
            bcrypt_cost: server::bcrypt_cost_or_default(self.bcrypt_cost),
            auth_jwt,
            metrics_extensive: self.metrics == Metrics::Extensive,
        };
        let peer_addrs = bind_addrs("listen-peer-urls", &peer_urls)?;
        let mut config = config;
        // Outgoing peer connections leave from the address peers listen on,
        // when it is a specific one.
        config.peer_source_ip = peer_addrs.first().map(|a| a.0.ip()).filter(|ip| !ip.is_unspecified());
        config.client_tls = tls_files(
            "client",
            "",
            &client_urls,
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )?;
        let all_peer_urls: Vec<String> = cluster.iter().flat_map(|(_, urls)| urls.clone()).chain(peer_urls).collect();
        config.peer_tls = tls_files(
            "peer",
            "peer-",
            &all_peer_urls,
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )?;
        let metrics_urls = match &self.listen_metrics_urls {
            Some(v) if !v.trim().is_empty() => split_urls("listen-metrics-urls", v)?,
            _ => Vec::new(),
        };
        if config.client_tls.is_none() {
            if let Some(u) = metrics_urls.iter().find(|u| u.starts_with("https://")) {
                return err(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for metrics url {u} with HTTPS scheme"
                ));
            }
        }
        let interval = &self.experimental_watch_progress_notify_interval;
        config.watch_progress_notify_interval =
            parse_go_duration(interval).filter(|d| !d.is_zero()).ok_or_else(|| {
                FlagError::new(format!("--experimental-watch-progress-notify-interval: {interval:?} is not a duration"))
            })?;
        config.initial_corrupt_check = self.experimental_initial_corrupt_check;
        config.strict_reconfig_check = self.strict_reconfig_check;
        let duration = |flag: &str, v: &str| {
            parse_go_duration(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| FlagError::new(format!("--{flag}: {v:?} is not a positive duration")))
        };
        config.http2 = server::Http2Settings {
            keepalive_interval: duration("grpc-keepalive-interval", &self.grpc_keepalive_interval)?,
            keepalive_timeout: duration("grpc-keepalive-timeout", &self.grpc_keepalive_timeout)?,
            max_concurrent_streams: self.max_concurrent_streams.max(1),
        };
        if self.enable_v2 {
            return err("--enable-v2: the v2 API is not served; MetaStore speaks the etcd v3 API only");
        }
        let check = &self.experimental_corrupt_check_time;
        config.corrupt_check_interval = parse_go_duration(check)
            .ok_or_else(|| FlagError::new(format!("--experimental-corrupt-check-time: {check:?} is not a duration")))
            .map(|d| Some(d).filter(|d| !d.is_zero()))?;
        Ok(Resolved {
            config,
            client_addrs: bind_addrs("listen-client-urls", &client_urls)?,
            peer_addrs,
            metrics_addrs: bind_addrs("listen-metrics-urls", &metrics_urls)?,
            log_outputs: log_outputs(&self.log_outputs)?,
            log_level,
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["metastore"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_match_etcd() {
        let r = flags(&[]).resolve().unwrap();
        assert_eq!(r.config.data_dir, PathBuf::from("default.metastore"));
        assert_eq!(format!("{:x}", r.config.member_id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", r.config.cluster_id), "cdf818194e3a8c32");
        assert_eq!(r.client_addrs, vec![("127.0.0.1:2379".parse::<SocketAddr>().unwrap(), false)]);
        assert!(r.config.client_tls.is_none() && r.config.peer_tls.is_none());
        assert_eq!(r.config.max_txn_ops, 128);
        assert_eq!(r.config.election_ticks(), 10);
        assert_eq!(r.config.snapshot_count, 100_000);
        assert_eq!(r.config.snapshot_catchup_entries, 5000);
        let r = flags(&["--experimental-snapshot-catchup-entries", "50"]).resolve().unwrap();
        assert_eq!(r.config.snapshot_catchup_entries, 50);
    }

    #[test]
    fn compatibility_flags() {
        let r = flags(&["--log-outputs", "stdout,/tmp/x.log,stdout", "--logger=zap", "--metrics=extensive"]).resolve();
        let r = r.unwrap();
        assert_eq!(r.log_outputs, vec![LogOutput::Stdout, LogOutput::File("/tmp/x.log".into())]);
        assert_eq!(flags(&[]).resolve().unwrap().log_outputs, vec![LogOutput::Stderr]);
        assert!(flags(&[]).resolve().unwrap().config.strict_reconfig_check);
        assert!(!flags(&["--strict-reconfig-check=false"]).resolve().unwrap().config.strict_reconfig_check);
        assert!(flags(&["--client-cert-auth=false"]).resolve().is_ok());
        assert!(flags(&["--enable-v2=false"]).resolve().is_ok());
        let e = flags(&["--enable-v2"]).resolve().err().unwrap();
        assert!(e.0.contains("v2 API is not served"), "{e}");
        assert_eq!(flags(&["--logger=capnslog"]).logger, Logger::Zap);
        assert_eq!(flags(&[]).resolve().unwrap().config.http2, server::Http2Settings::default());
        let r = flags(&["--grpc-keepalive-interval=5s", "--grpc-keepalive-timeout=1s", "--max-concurrent-streams=10"]);
        let h = r.resolve().unwrap().config.http2;
        assert_eq!(
            (h.keepalive_interval, h.keepalive_timeout, h.max_concurrent_streams),
            (Duration::from_secs(5), Duration::from_secs(1), 10)
        );
        assert!(flags(&["--grpc-keepalive-timeout=0s"]).resolve().is_err());
        let r = flags(&["--experimental-corrupt-check-time", "2m", "--experimental-initial-corrupt-check"]).resolve();
        let c = r.unwrap().config;
        assert_eq!((c.corrupt_check_interval, c.initial_corrupt_check), (Some(Duration::from_secs(120)), true));
    }

    #[test]
    fn tls_flags() {
        let https =
            ["--listen-client-urls", "https://127.0.0.1:2379", "--advertise-client-urls", "https://127.0.0.1:2379"];
        let e = flags(&https).resolve().err().unwrap();
        assert_eq!(
            e.0,
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
        );
        let mut args = https.to_vec();
        args.extend(["--cert-file", "s.crt", "--key-file", "s.key"]);
        let r = flags(&args).resolve().unwrap();
        assert_eq!(r.client_addrs, vec![("127.0.0.1:2379".parse::<SocketAddr>().unwrap(), true)]);
        let tls = r.config.client_tls.unwrap();
        assert_eq!((tls.cert, tls.key, tls.client_cert_auth), ("s.crt".into(), "s.key".into(), false));
        args.push("--client-cert-auth");
        assert_eq!(flags(&args).resolve().err().unwrap().0, "--client-cert-auth needs --trusted-ca-file");
        let e = flags(&["--cert-file", "s.crt"]).resolve().err().unwrap();
        assert_eq!(e.0, "--cert-file and --key-file must be given together");
        let peers =
            ["--listen-peer-urls", "https://127.0.0.1:2380", "--initial-advertise-peer-urls", "https://127.0.0.1:2380"];
        let e = flags(&peers).resolve().err().unwrap();
        assert!(
            e.0.starts_with("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url"),
            "{e}"
        );
    }

    #[test]
    fn auto_compaction_flags() {
        use server::AutoCompaction;
        let ac = |args: &[&str]| flags(args).resolve().map(|r| r.config.auto_compaction);
        assert_eq!(ac(&[]), Ok(None));
        assert_eq!(
            ac(&["--auto-compaction-retention", "1"]),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            ac(&["--auto-compaction-retention", "1h30m"]),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            ac(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"]),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        assert!(ac(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"]).is_err());
        assert!(ac(&["--auto-compaction-retention", "soon"]).is_err());
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    }

    #[test]
    fn contradictions_are_errors() {
        let e = flags(&["--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"]).resolve().err().unwrap();
        assert_eq!(e.0, "couldn't find local name \"a\" in the initial cluster configuration");
        let e = flags(&["--heartbeat-interval", "300"]).resolve().err().unwrap();
        assert!(e.0.contains("should be at least as 5 times"), "{e}");
        assert!(flags(&["--listen-client-urls", "127.0.0.1:2379"]).resolve().is_err());
        let mismatch = [
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:9999",
            "--initial-cluster",
            "default=http://localhost:2380",
        ];
        let e = flags(&mismatch).resolve().err().unwrap();
        assert!(e.0.contains("missing from --initial-advertise-peer-urls"), "{e}");
        assert!(Flags::try_parse_from(["metastore", "--snapshot-count", "x"]).is_err());
    }

    #[test]
    fn auth_flags() {
        let c = flags(&[]).resolve().unwrap().config;
        assert_eq!((c.auth_token_ttl, c.bcrypt_cost), (Duration::from_secs(300), 10));
        let c = flags(&["--auth-token", "simple", "--auth-token-ttl", "5", "--bcrypt-cost", "4"]).resolve().unwrap();
        assert_eq!((c.config.auth_token_ttl, c.config.bcrypt_cost), (Duration::from_secs(5), 4));
        // etcd: a cost outside 4..=31 falls back to 10; a TTL of 0 to 300 s.
        for cost in ["3", "32"] {
            assert_eq!(flags(&["--bcrypt-cost", cost]).resolve().unwrap().config.bcrypt_cost, 10);
        }
        assert_eq!(flags(&["--auth-token-ttl", "0"]).resolve().unwrap().config.auth_token_ttl.as_secs(), 300);
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/testdata/jwt");
        let jwt = format!("jwt,pub-key={keys}/rsa.pub.pem,priv-key={keys}/rsa.pem,sign-method=RS256,ttl=90s");
        let c = flags(&["--auth-token", &jwt]).resolve().unwrap().config;
        assert_eq!(c.auth_jwt.map(|k| k.ttl()), Some(Duration::from_secs(90)));
        let no_ttl = format!("jwt,pub-key={keys}/ec256.pub.pem,sign-method=ES256");
        let c = flags(&["--auth-token", &no_ttl]).resolve().unwrap().config;
        assert_eq!(c.auth_jwt.map(|k| k.ttl()), Some(Duration::from_secs(300)));
        let refused = [
            ("magic", "auth: invalid auth options"),
            ("jwt,ttl", "auth: invalid auth options"),
            ("jwt,ttl=1m,ttl=2m", "auth: invalid auth options"),
            ("jwt,sign-method=RS256,pub-key=/nonexistent/key", "reading pub-key /nonexistent/key"),
            ("jwt,sign-method=XX1", "auth: invalid auth signature method"),
            ("jwt,sign-method=HS256", "auth: missing key data"),
            ("jwt,sign-method=RS256", "auth: missing key data"),
            ("jwt,sign-method=HS256,priv-key=/dev/null,ttl=soon", "invalid ttl"),
        ];
        for (flag, want) in refused {
            let e = flags(&["--auth-token", flag]).resolve().err().unwrap();
            assert!(e.0.contains(want), "{flag}: {e}");
            assert_eq!(e.1, 1, "etcd exits 1 when it cannot make the token provider: {flag}");
        }
    }

    #[test]
    fn key_index_flag() {
        assert_eq!(flags(&[]).resolve().unwrap().config.key_index, server::KeyIndexKind::Auto);
        let r = flags(&["--key-index", "memory"]).resolve().unwrap();
        assert_eq!(r.config.key_index, server::KeyIndexKind::Memory);
        let e = flags(&["--key-index", "stored"]).resolve().err().expect("refused").to_string();
        assert!(e.contains("--key-index stored needs --storage rocksdb"), "{e}");
        assert!(Flags::try_parse_from(["metastore", "--key-index", "disk"]).is_err());
    }

    #[test]
    fn enumerated_flags() {
        let f = flags(&[]);
        assert_eq!(
            (f.initial_cluster_state, f.log_level, f.auto_compaction_mode, f.storage, f.logger, f.metrics),
            (
                ClusterState::New,
                LogLevel::Info,
                AutoCompactionMode::Periodic,
                Storage::Memory,
                Logger::Zap,
                Metrics::Basic
            )
        );
        assert!(!f.resolve().unwrap().config.join_existing);
        let r = flags(&["--initial-cluster-state", "existing", "--log-level=fatal"]).resolve().unwrap();
        assert_eq!((r.config.join_existing, r.log_level), (true, tracing::Level::ERROR));
        assert_eq!(flags(&["--log-level", "debug"]).resolve().unwrap().log_level, tracing::Level::DEBUG);
        // A bad value is clap's usage error: a message naming the flag and
        // the possible values, exit code 2.
        for (flag, bad) in [
            ("--storage", "floppy"),
            ("--initial-cluster-state", "sideways"),
            ("--log-level", "chatty"),
            ("--auto-compaction-mode", "daily"),
            ("--logger", "glog"),
            ("--metrics", "all"),
            // etcd's spellings are lowercase only.
            ("--storage", "Memory"),
        ] {
            let e = Flags::try_parse_from(["metastore", flag, bad]).err().unwrap();
            assert_eq!((e.kind(), e.exit_code()), (clap::error::ErrorKind::InvalidValue, 2), "{flag} {bad}");
            let text = e.to_string();
            assert!(text.contains(&format!("invalid value '{bad}' for '{flag}")), "{text}");
            assert!(text.contains("possible values"), "{text}");
        }
    }
}
