//! The WAL's error type.
//!
//! Invariant: [`WalError::Corrupt`] always names the segment file and the byte
//! offset of the offending record, so an operator can inspect it; a torn
//! write in the unsynced tail of the last segment is repaired instead and
//! never surfaces as an error.

use std::io;
use std::path::PathBuf;

/// Errors raised by [`Wal`](super::Wal).
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system level I/O failure on `path`.
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record that cannot be a torn tail failed its checks. The WAL refuses
    /// to open rather than silently dropping acknowledged data.
    #[error("corrupt WAL segment {file} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file (or the WAL directory for whole-log problems).
        file: PathBuf,
        /// Byte offset of the record inside `file`.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A single record would exceed [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES);
    /// nothing was buffered.
    #[error("WAL record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Encoded payload size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Protobuf encoding of a record failed.
    #[error("encoding a WAL record: {0}")]
    Encode(#[source] protobuf::ProtobufError),
    /// Another process (or another `Wal` in this process) holds the directory.
    #[error("WAL directory {0} is locked by another writer")]
    Locked(PathBuf),
    /// `mark_snapshot` was asked to move the snapshot marker backwards.
    #[error("snapshot marker ({index}, {term}) does not follow the current marker ({current_index}, {current_term})")]
    MarkerRegression {
        /// Requested index.
        index: u64,
        /// Requested term.
        term: u64,
        /// Index of the marker already recorded.
        current_index: u64,
        /// Term of the marker already recorded.
        current_term: u64,
    },
    /// An earlier write or fsync failed; after a failed fsync the kernel may
    /// have dropped dirty pages, so the only safe recovery is to reopen
    /// (which re-reads what actually reached the disk).
    #[error("WAL is unusable after an earlier write or sync failure; reopen to recover")]
    Poisoned,
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        WalError::Corrupt { file: file.into(), offset, reason: reason.into() }
    }
}
