//! MetaStore server: the raft node, apply, and the etcd v3 gRPC services.
//! `run` takes already-bound listeners and a shutdown future.
//!
//! The modules by role (each module's doc states its invariants):
//! - `apply`: the deterministic state machine (apply, txn, range, lessor,
//!   members, alarms) over `storage::MvccStore`;
//! - `node`: the raft thread, the WAL and apply threads, bootstrap, the
//!   state they publish, and the member's identity and engine on disk;
//! - `api`: what clients talk to: etcd's gRPC services, watch, the JSON
//!   gateway, `/metrics`, `/health`, `/version`;
//! - `transport`: listeners, TLS, and the raft peer transport;
//! - `maintenance`: backups, HashKV and corruption checks, auto-compaction,
//!   lease expiry;
//! - `server`: wiring only.
//!
//! Everything is private to the crate except what the binary needs, so the
//! compiler reports public items nobody uses.

mod api;
mod apply;
mod config;
mod deadline;
mod der;
mod errors;
pub mod ids;
mod maintenance;
mod metrics;
mod node;
mod server;
mod transport;

pub use apply::alarms::DEFAULT_QUOTA_BYTES;
pub use apply::auth::jwt::{JwtConfigError, JwtKeys, DEFAULT_TTL as JWT_DEFAULT_TTL};
pub use config::{
    bcrypt_cost_or_default, Http2Settings, Member, ServerConfig, StorageConfig, DEFAULT_AUTH_TOKEN_TTL_SECS,
    DEFAULT_BCRYPT_COST, DEFAULT_PROGRESS_NOTIFY_INTERVAL, DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
};
pub use maintenance::auto_compaction::AutoCompaction;
pub use maintenance::etcd_import::{status as snapshot_status, ImportError as SnapshotError, Status as SnapshotStatus};
pub use server::{restore_offline, run, Listeners, ServerError};
pub use storage::KeyIndexKind;
pub use transport::tls::TlsFiles;
