//! Storage for MetaStore: the [`Engine`] boundary, the in-memory engine, the
//! engine-independent dump format, MVCC with etcd 3.5 semantics, and the
//! on-disk layout of every table ([`schema`]).
//!
//! docs/architecture.md (the `storage` crate, and Durability and restart)
//! has the picture; the invariants live in each module's docs.

pub mod conformance;
pub mod dump;
pub mod engine;
pub mod memory;
pub mod mvcc;
pub mod schema;
pub mod thread_priority;

pub use engine::{BatchOp, DeferredDump, Engine, EngineError, WriteBatch};
pub use memory::MemoryEngine;
pub use mvcc::{
    AppliedIndex, CompactionConfig, Event, EventKind, KeyIndexKind, KeyRange, KeyValue, KvSink, MvccError, MvccStore,
    RangeOptions, RangeResult, RangeTotals, Revision, WriteTxn,
};
pub use schema::Table;
