//! Durable raft log for MetaStore: a segmented write-ahead log ([`Wal`]),
//! snapshot files ([`SnapshotStore`]) and the glue that keeps raft-rs's
//! in-memory [`MemStorage`](raft::storage::MemStorage) in step with them
//! ([`LogStore`], [`RaftStorage`]).
//!
//! Layout under a member directory:
//!
//! ```text
//! <data-dir>/member/wal/0000000000000000-0000000000000001.wal   segments
//! <data-dir>/member/wal/LOCK                                     one writer per dir
//! <data-dir>/member/snap/0000000000000002-0000000000002710.snap  {term}-{index}
//! ```
//!
//! Invariants kept by this crate:
//! - Nothing reaches the in-memory raft storage before it is in the WAL
//!   (fsynced when the caller asks for `sync`).
//! - A snapshot file is durable before the WAL marker naming it is written,
//!   and the marker is durable before WAL segments are released. The file
//!   the latest durable marker names is never removed.
//! - Durability of names: the member, `wal/` and `snap/` directories, and
//!   every file created, renamed or removed in them, are fsynced (the file,
//!   then its parent directory) before the write they carry is acknowledged
//!   or named by a marker.
//! - Corruption is reported, never skipped; only a torn write in the
//!   unsynced tail of the last segment (a crash or power loss in the middle
//!   of a write) is repaired on open, and never data a later record proves
//!   was synced (`wal/segment.rs` says what counts as torn).
//! - On open raft gets the newest conf state that was persisted: each conf
//!   state record carries the raft index it belongs to.
//!
//! Tests simulate power loss at every fsync, rename and unlink (`crashsim`,
//! test builds only) and reopen every possible outcome.

#[cfg(test)]
mod crashsim;
mod fsutil;
mod raft_storage;
pub mod snapfile;
pub mod store;
pub mod wal;

pub use raft_storage::RaftStorage;
pub use snapfile::{Incoming, SendHold, SnapshotError, SnapshotStore, Unverified};
pub use store::{LogStore, LogStoreError, LogStoreOptions, Recovered, WalWriter};
pub use wal::{Wal, WalContents, WalError, WalOptions};

/// Durable file operations for a member's other small files (engine and
/// bootstrap markers, identity), with the same care as the WAL's own.
pub mod durable {
    pub use crate::fsutil::{create_dir_all, remove_file_durably, write_file};
}
