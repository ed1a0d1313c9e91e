//! [`MvccError`]: every way an MVCC operation can fail.
//!
//! The `Display` strings of `Compacted` and `FutureRevision` are etcd's
//! (`mvcc.ErrCompacted`, `mvcc.ErrFutureRev`); the gRPC layer prefixes them with
//! `etcdserver: ` exactly as etcd does, so keep them byte-identical.

use crate::engine::EngineError;

#[derive(thiserror::Error, Debug)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("mvcc: corrupt data: {0}")]
    Corrupt(String),
}
