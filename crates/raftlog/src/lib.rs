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
//!   and the marker is durable before WAL segments are released.
//! - Corruption is reported, never skipped; only a torn tail of the last
//!   segment (a crash in the middle of a write) is repaired on open.

mod fsutil;
mod raft_storage;
pub mod snapfile;
pub mod store;
pub mod wal;

pub use raft_storage::RaftStorage;
pub use snapfile::{SendHold, SnapshotError, SnapshotStore};
pub use store::{LogStore, LogStoreError, LogStoreOptions, Recovered};
pub use wal::{Wal, WalContents, WalError, WalOptions};
