//! Conversions from lower layers' errors into the etcd error table.

use api::EtcdError;
use storage::MvccError;

pub fn from_mvcc(e: MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRevision => EtcdError::FutureRev,
        other => EtcdError::Internal(other.to_string()),
    }
}
