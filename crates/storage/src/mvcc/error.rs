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
    /// A whole-history read (HashKV) found the store changed under it every
    /// time it tried (compactions applied, snapshots installed).
    #[error("the store changed {attempts} times while hashing it; try again")]
    StoreChanged { attempts: usize },
}
