//! Conversions from lower layers' errors into the etcd error table.
//!
//! Errors stay typed inside the server (`EtcdError` for what a client may
//! see, a module's own error enum for what stops a member or a background
//! task) and become a gRPC status once, where a service returns:
//! `impl From<EtcdError> for tonic::Status` in the `api` crate is the table
//! of codes and messages, as etcd's `v3rpc/util.go`. `EtcdError::Internal`
//! is for this member failing, never for a request's fault; it is built
//! here or with the context only its caller has.

use api::EtcdError;
use storage::{EngineError, MvccError};

pub fn from_mvcc(e: MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRevision => EtcdError::FutureRev,
        other => EtcdError::Internal(other.to_string()),
    }
}

/// Apply answered a request with a response of another kind: a bug, the
/// request's outcome unknown to the caller.
pub fn unexpected_response(what: &'static str) -> EtcdError {
    EtcdError::Internal(format!("apply returned a response of another kind for {what}"))
}

/// The engine failed under a read or write: this member's failure.
pub fn from_engine(e: EngineError) -> EtcdError {
    EtcdError::Internal(e.to_string())
}

/// A blocking task ended without an answer (it panicked, or the runtime is
/// shutting down).
pub fn from_join(e: tokio::task::JoinError) -> EtcdError {
    EtcdError::Internal(format!("a blocking task failed: {e}"))
}
