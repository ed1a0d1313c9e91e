//! Storage for MetaStore: the [`Engine`] boundary, the in-memory engine, the
//! engine-independent dump format, and MVCC with etcd 3.5 semantics.
//!
//! See DESIGN.md §3. Invariants live in each module's docs.

pub mod conformance;
pub mod dump;
pub mod engine;
pub mod memory;
pub mod mvcc;

pub use engine::{BatchOp, DeferredDump, Engine, EngineError, Table, WriteBatch};
pub use memory::MemoryEngine;
pub use mvcc::{
    AppliedIndex, Event, EventKind, KeyRange, KeyValue, MvccError, MvccStore, RangeOptions, RangeResult, Revision,
    WriteTxn,
};
