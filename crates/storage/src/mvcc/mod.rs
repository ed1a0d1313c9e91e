//! Multi-version concurrency control over an [`Engine`](crate::Engine), with
//! etcd v3.5's semantics (etcd's `server/mvcc` package).
//!
//! Every change gets a revision `(main, sub)`; history is kept in
//! [`Table::Key`](crate::Table::Key) (revision -> key-value) until
//! compaction, and a key index maps each key to its revisions, grouped in
//! generations (see `key_index.rs`): in memory (`index.rs`) or stored in the
//! engine (`stored_index.rs`), as `indexes.rs` chooses.
//!
//! Invariants of the whole module:
//! - the engine is the source of truth; the index is rebuilt from it on open
//!   unless the engine stores it;
//! - one writer at a time (the raft apply loop); readers are concurrent and
//!   see only whole, published txns (see `store.rs`);
//! - compaction is applied in O(1) (the compact revision is published and
//!   recorded) and deleted physically by a background thread in small
//!   batches; no read at or above the compact revision can tell how far it
//!   got (see `compact.rs`, `compactor.rs`);
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

mod changed_keys;
mod compact;
mod compactor;
mod count_marks;
pub mod error;
mod gate;
pub mod hash;
mod history_cache;
mod index;
mod indexes;
mod key_index;
pub mod kv;
mod lease_rows;
pub mod meta;
pub mod range;
mod rebuild;
mod restore;
pub mod revision;
pub mod store;
mod stored_index;
pub mod txn;

#[cfg(test)]
mod test_engine;
#[cfg(test)]
mod tests_compaction;
#[cfg(test)]
mod tests_concurrency;
#[cfg(test)]
mod tests_count_marks;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_restore;
#[cfg(test)]
mod tests_store;
#[cfg(test)]
mod tests_stored_index;

pub use compactor::{on_compaction_finished, CompactionConfig, CompactionStats, DEFAULT_BATCH_REVISIONS};
pub use error::MvccError;
pub use hash::HashScan;
pub use indexes::KeyIndexKind;
pub use kv::{Event, EventKind, KeyValue};
pub use meta::AppliedIndex;
pub use range::{KeyRange, KvSink, RangeOptions, RangeResult, RangeTotals};
pub use revision::Revision;
pub use store::{IndexLoad, MvccStore};
pub use txn::WriteTxn;
