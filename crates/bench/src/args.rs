//! Command line: global flags (endpoints, connections, clients, how long) and
//! one subcommand per workload. `Cli::validate` turns the raw flags into an
//! `Options` whose every run is bounded: by `--total` and/or `--duration`, and
//! always by the hard `--timeout`.
//!
//! Example: `metastore-bench --endpoints 127.0.0.1:2379 --conns 100 --clients 1000
//! --total 100000 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000`

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Runs that give neither `--total` nor `--duration` do this many operations.
pub const DEFAULT_TOTAL: u64 = 10_000;

#[derive(Debug, Parser)]
#[command(name = "metastore-bench", version, about = "Load generator for etcd v3 API endpoints (MetaStore or etcd)")]
pub struct Cli {
    /// Comma-separated gRPC endpoints, `host:port` or `http://host:port`.
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Number of gRPC (HTTP/2) connections, spread round-robin over the endpoints.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent workers, spread round-robin over the connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Operations to run (default 10000 when --duration is not given).
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Run for this long (e.g. `30s`, `500ms`, `2m`); with --total, stop at whichever comes first.
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Hard limit on the whole run; work still in flight then is abandoned and counted as errors.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "300s")]
    pub timeout: Duration,
    /// Client-side limit on each request (also sent as the gRPC deadline).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// Limit on establishing each connection.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "5s")]
    pub dial_timeout: Duration,
    /// Send requests only to the leader (found with Maintenance.Status on each endpoint).
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// `name:password`, as etcdctl's --user: authenticate once, then send
    /// the token with every request (servers with auth enabled).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Print the result as one line of JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Put keys (one Put RPC per operation).
    Put(PutArgs),
    /// Range over a key or a range, or over random keys of a key space.
    Range(RangeArgs),
    /// Txn with --txn-ops puts in its success branch and no compares.
    TxnPut(TxnPutArgs),
    /// Latency from a put's acknowledgement to the event's arrival at every watcher.
    WatchLatency(WatchArgs),
    /// Keep-alive round trips on one LeaseKeepAlive stream per client.
    LeaseKeepalive(LeaseArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key size in bytes; keys are the key number in zero-padded decimal.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Key number = operation number modulo the key space (else uniform random).
    #[arg(long)]
    pub sequential_keys: bool,
    /// Keys shaped like Kubernetes' (`/registry/<resource>/<namespace>/<name>`,
    /// 40-80 B, a tenth under `/registry/pods/`) instead of --key-size digits.
    #[arg(long)]
    pub k8s_keys: bool,
    /// With --sequential-keys, operation i writes key number
    /// (offset + i) modulo the key space: loads in several runs.
    #[arg(long, default_value_t = 0)]
    pub key_offset: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Every Nth put (by operation number) carries a value of --large-val-size
    /// bytes instead; 0 = none.
    #[arg(long, default_value_t = 0)]
    pub large_val_every: u64,
    /// Size of those large values, in bytes.
    #[arg(long, default_value_t = 100 * 1024)]
    pub large_val_size: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Puts per txn (each to a different key of the key space).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable (ReadIndex through the leader).
    L,
    /// Serializable (local read on the member).
    S,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    /// Key to read (ignored when --key-space-size > 0).
    pub key: Option<String>,
    /// Range end (exclusive), for a range read of [key, end).
    pub end: Option<String>,
    /// Read consistency.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Read a uniformly random key of this key space (as written by `put`); 0 = read KEY.
    #[arg(long, default_value_t = 0)]
    pub key_space_size: u64,
    /// Key size of the key space (as given to `put`).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Maximum keys returned per range (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Random keys of the key space are shaped like Kubernetes' (as `put --k8s-keys`).
    #[arg(long)]
    pub k8s_keys: bool,
    /// Ask only for the count.
    #[arg(long)]
    pub count_only: bool,
    /// Ask for keys without values.
    #[arg(long)]
    pub keys_only: bool,
    /// Page through KEY..END as Kubernetes lists: each operation reads the
    /// next page (--limit keys) at the revision of its list's first page,
    /// from just past the last key of the page before; after the last page
    /// the worker starts a new list at the current revision.
    #[arg(long)]
    pub paginate: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Total watchers, all watching the same key, spread over the streams.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Watch streams (gRPC bidi streams), spread round-robin over the connections.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Puts to the watched key.
    #[arg(long, default_value_t = 100)]
    pub put_total: u64,
    /// Puts per second (one putter, paced).
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// The watched key.
    #[arg(long, default_value = "watch-latency-key")]
    pub key: String,
    /// Value size in bytes (at least 8: the value carries the put's sequence number).
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// TTL of each client's lease, in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
}

/// Validated options shared by every workload.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub dial_timeout: Duration,
    pub target_leader: bool,
    pub user: Option<String>,
    pub command: Command,
}

impl Cli {
    /// Checks what clap cannot and fills defaults that depend on other flags.
    pub fn validate(&self) -> Result<Options, String> {
        let endpoints: Vec<String> =
            self.endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).map(normalize_endpoint).collect();
        if endpoints.is_empty() {
            return Err("--endpoints: at least one endpoint is required".into());
        }
        if self.conns == 0 {
            return Err("--conns must be at least 1".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.total == Some(0) {
            return Err("--total must be at least 1".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) || self.timeout.is_zero() || self.request_timeout.is_zero() {
            return Err("--duration, --timeout and --request-timeout must be positive".into());
        }
        let total = match (self.total, self.duration) {
            (None, None) => Some(DEFAULT_TOTAL),
            (t, _) => t,
        };
        match &self.command {
            Command::Put(a) => {
                check_keys(&a.keys)?;
            }
            Command::TxnPut(a) => {
                check_keys(&a.keys)?;
                if a.txn_ops == 0 {
                    return Err("--txn-ops must be at least 1".into());
                }
            }
            Command::Range(a) => {
                if a.key_space_size > 0 {
                    check_key_space(if a.k8s_keys { 20 } else { a.key_size }, a.key_space_size)?;
                } else if a.key.is_none() {
                    return Err("range: give a KEY or --key-space-size".into());
                }
                if a.limit < 0 {
                    return Err("--limit must not be negative".into());
                }
                if a.paginate && (a.limit == 0 || a.key_space_size > 0 || a.count_only) {
                    return Err(
                        "--paginate pages KEY..END with a --limit (not --key-space-size, not --count-only)".into()
                    );
                }
            }
            Command::WatchLatency(a) => {
                if a.watchers == 0 || a.streams == 0 || a.put_total == 0 || a.put_rate == 0 {
                    return Err("--watchers, --streams, --put-total and --put-rate must be at least 1".into());
                }
                if a.streams > a.watchers {
                    return Err("--streams must not exceed --watchers".into());
                }
                if a.val_size < crate::keys::SEQ_DIGITS {
                    return Err(format!("--val-size must be at least {}", crate::keys::SEQ_DIGITS));
                }
                if a.put_total >= 10u64.pow(crate::keys::SEQ_DIGITS as u32) {
                    return Err("--put-total is too large".into());
                }
            }
            Command::LeaseKeepalive(a) => {
                if a.ttl <= 0 {
                    return Err("--ttl must be positive".into());
                }
            }
        }
        Ok(Options {
            endpoints,
            conns: self.conns,
            clients: self.clients,
            total,
            duration: self.duration,
            timeout: self.timeout,
            request_timeout: self.request_timeout,
            dial_timeout: self.dial_timeout,
            target_leader: self.target_leader,
            user: self.user.clone(),
            command: self.command.clone(),
        })
    }
}

fn check_keys(k: &KeyArgs) -> Result<(), String> {
    if k.k8s_keys {
        return check_key_space(20, k.key_space_size);
    }
    check_key_space(k.key_size, k.key_space_size)
}

fn check_key_space(key_size: usize, key_space_size: u64) -> Result<(), String> {
    if key_space_size == 0 {
        return Err("--key-space-size must be at least 1".into());
    }
    let need = crate::keys::digits(key_space_size - 1);
    if key_size < need {
        return Err(format!("--key-size {key_size} cannot hold {key_space_size} distinct keys (needs {need} bytes)"));
    }
    Ok(())
}

/// `host:port` -> `http://host:port`; URLs with a scheme are kept.
pub fn normalize_endpoint(e: &str) -> String {
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// Parses `250ms`, `30s`, `2m`, `1h` or a bare number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("invalid duration {s:?} (examples: 500ms, 30s, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let mut v = vec!["metastore-bench"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults() {
        let o = parse(&["put"]).unwrap();
        assert_eq!(o.endpoints, vec!["http://127.0.0.1:2379"]);
        assert_eq!((o.conns, o.clients), (1, 1));
        assert_eq!(o.total, Some(DEFAULT_TOTAL));
        assert_eq!(o.duration, None);
        assert_eq!(o.timeout, Duration::from_secs(300));
        match o.command {
            Command::Put(p) => {
                assert_eq!((p.keys.key_size, p.val_size, p.keys.key_space_size), (8, 8, 1));
                assert!(!p.keys.sequential_keys);
            }
            c => panic!("unexpected {c:?}"),
        }
    }

    #[test]
    fn global_flags_anywhere_and_endpoint_lists() {
        let o = parse(&[
            "--endpoints",
            "127.0.0.1:1,http://127.0.0.1:2",
            "put",
            "--conns",
            "100",
            "--clients=1000",
            "--key-size",
            "8",
            "--val-size",
            "256",
            "--sequential-keys",
            "--key-space-size",
            "100000",
            "--duration",
            "10s",
            "--json",
        ])
        .unwrap();
        assert_eq!(o.endpoints, vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!((o.conns, o.clients), (100, 1000));
        // --duration alone means no op count limit.
        assert_eq!(o.total, None);
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        match o.command {
            Command::Put(p) => {
                assert_eq!((p.val_size, p.keys.key_space_size), (256, 100_000));
                assert!(p.keys.sequential_keys);
            }
            c => panic!("unexpected {c:?}"),
        }
    }

    #[test]
    fn range_flags() {
        let o = parse(&["range", "foo", "--consistency", "s", "--total", "5"]).unwrap();
        assert_eq!(o.total, Some(5));
        match o.command {
            Command::Range(r) => {
                assert_eq!(r.key.as_deref(), Some("foo"));
                assert_eq!(r.end, None);
                assert_eq!(r.consistency, Consistency::S);
            }
            c => panic!("unexpected {c:?}"),
        }
        assert!(parse(&["range"]).is_err(), "a key or a key space is required");
        assert!(parse(&["range", "--key-space-size", "1000"]).is_ok());
        assert!(parse(&["range", "a", "--consistency", "x"]).is_err());
        assert!(parse(&["range", "a", "b", "--limit", "5", "--paginate"]).is_ok());
        assert!(parse(&["range", "a", "b", "--paginate"]).is_err(), "pages need a limit");
        assert!(parse(&["range", "--key-space-size", "10", "--limit", "5", "--paginate"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--conns", "0", "put"]).is_err());
        assert!(parse(&["--clients", "0", "put"]).is_err());
        assert!(parse(&["--total", "0", "put"]).is_err());
        assert!(parse(&["--endpoints", "", "put"]).is_err());
        assert!(parse(&["put", "--key-size", "3", "--key-space-size", "10000"]).is_err());
        assert!(parse(&["put", "--key-size", "4", "--key-space-size", "10000"]).is_ok());
        assert!(parse(&["put", "--key-space-size", "0"]).is_err());
        assert!(parse(&["txn-put", "--txn-ops", "0"]).is_err());
        assert!(parse(&["watch-latency", "--streams", "5", "--watchers", "2"]).is_err());
        assert!(parse(&["watch-latency", "--val-size", "4"]).is_err());
        assert!(parse(&["lease-keepalive", "--ttl", "0"]).is_err());
        assert!(parse(&["--timeout", "0s", "put"]).is_err());
        assert!(parse(&["bogus"]).is_err());
    }

    #[test]
    fn watch_and_lease_flags() {
        let o =
            parse(&["watch-latency", "--watchers", "1000", "--streams", "10", "--put-total", "50", "--put-rate", "20"])
                .unwrap();
        match o.command {
            Command::WatchLatency(w) => {
                assert_eq!((w.watchers, w.streams, w.put_total, w.put_rate), (1000, 10, 50, 20))
            }
            c => panic!("unexpected {c:?}"),
        }
        let o = parse(&["lease-keepalive", "--clients", "10", "--duration", "5s", "--total", "100"]).unwrap();
        assert_eq!((o.clients, o.total, o.duration), (10, Some(100), Some(Duration::from_secs(5))));
    }
}
