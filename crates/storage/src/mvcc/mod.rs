//! Multi-version concurrency control over an [`Engine`](crate::Engine), with
//! etcd v3.5's semantics (server/mvcc).
//!
//! Every change gets a revision `(main, sub)`; history is kept in
//! [`Table::Key`](crate::Table::Key) (revision -> key-value) until
//! compaction, and an in-memory key index maps each key to its revisions,
//! grouped in generations (see `key_index.rs`).
//!
//! Invariants of the whole module:
//! - the engine is the source of truth; the index is rebuilt from it on open;
//! - one writer at a time (the raft apply loop); readers are concurrent and
//!   see only whole, published txns (see `store.rs`);
//! - every engine batch that changes keys also carries the applied raft index.
//!
//! ```
//! use std::sync::Arc;
//! use storage::{AppliedIndex, KeyRange, MemoryEngine, MvccStore, RangeOptions};
//!
//! let store = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
//! let mut txn = store.write_txn();
//! txn.put(b"foo", b"bar", 0);
//! txn.commit(AppliedIndex { index: 1, term: 1 }).unwrap();
//! let r = store.range(&KeyRange::Single(b"foo".to_vec()), RangeOptions::default()).unwrap();
//! assert_eq!((r.rev, r.kvs[0].version, r.kvs[0].create_revision), (2, 1, 2));
//! ```

mod compact;
pub mod error;
mod index;
mod key_index;
pub mod kv;
pub mod meta;
pub mod range;
mod rebuild;
pub mod revision;
pub mod store;
pub mod txn;

#[cfg(test)]
mod tests_concurrency;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_store;

pub use error::MvccError;
pub use kv::{Event, EventKind, KeyValue};
pub use meta::AppliedIndex;
pub use range::{KeyRange, RangeOptions, RangeResult};
pub use revision::Revision;
pub use store::MvccStore;
pub use txn::WriteTxn;
