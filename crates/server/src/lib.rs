//! MetaStore server: the raft node, apply, and the etcd v3 gRPC services.
//! `run` takes already-bound listeners and a shutdown future.

pub mod alarms;
pub mod apply;
mod authority;
pub mod backup;
pub mod compactor;
pub mod config;
pub mod corrupt;
pub mod deadline;
pub mod errors;
pub mod gateway;
pub mod hashkv;
pub mod http;
pub mod identity;
pub mod ids;
pub mod lessor;
pub mod members;
pub mod node;
pub mod peer;
mod raft_logger;
pub mod range;
pub mod server;
pub mod service;
pub mod state;
pub mod tls;
pub mod txn;
pub mod waiters;
pub mod watch;

pub use config::{Member, ServerConfig, StorageConfig};
pub use server::{run, Listeners, ServerError};
