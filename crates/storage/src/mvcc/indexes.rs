//! [`Index`]: the key index a store uses, either in memory ([`TreeIndex`],
//! the memory engine's) or stored in the engine ([`StoredIndex`], the
//! default over a persistent engine); [`KeyIndexKind`] chooses.
//!
//! Both answer every read the same way (the MVCC test suite runs over
//! both). They differ in where a history lives and so in how a write
//! reaches it: the in-memory index is changed after the engine batch is
//! written, the stored one inside that batch.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use crate::engine::{Engine, WriteBatch};

use super::error::MvccError;
use super::index::{CompactSlice, TreeIndex};
use super::key_index::KeyAt;
use super::range::KeyRange;
use super::revision::Revision;
use super::stored_index::{IndexChange, StoredIndex};

/// Which key index a store keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyIndexKind {
    /// Stored over a persistent engine (RocksDB), in memory otherwise.
    #[default]
    Auto,
    /// In memory, rebuilt from the engine on open (about 120 bytes per key).
    Memory,
    /// In the engine, with the engine's bounded caches. The engine's scans
    /// must see each key as of one moment (RocksDB's iterators do; the
    /// memory engine's may miss a key overwritten while they pass it).
    Stored,
}

impl KeyIndexKind {
    /// [`KeyIndexKind::Auto`] made concrete for `engine`.
    pub fn resolve(self, engine: &dyn Engine) -> KeyIndexKind {
        match self {
            KeyIndexKind::Auto if engine.persistent() => KeyIndexKind::Stored,
            KeyIndexKind::Auto => KeyIndexKind::Memory,
            k => k,
        }
    }
}

impl FromStr for KeyIndexKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(KeyIndexKind::Auto),
            "memory" => Ok(KeyIndexKind::Memory),
            "stored" => Ok(KeyIndexKind::Stored),
            _ => Err(format!("unknown key index {s:?} (auto, memory or stored)")),
        }
    }
}

impl fmt::Display for KeyIndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyIndexKind::Auto => "auto",
            KeyIndexKind::Memory => "memory",
            KeyIndexKind::Stored => "stored",
        })
    }
}

/// The key index of a store. See the module docs.
// One per store, behind its lock: boxing the larger variant would only add
// a pointer chase to every read of the in-memory index.
#[allow(clippy::large_enum_variant)]
pub enum Index {
    Memory(TreeIndex),
    Stored(StoredIndex),
}

impl Index {
    /// Number of keys held (including keys that only have history).
    pub fn len(&self) -> usize {
        match self {
            Index::Memory(i) => i.len(),
            Index::Stored(i) => i.len(),
        }
    }

    /// The key's version at `at_rev`, None if it did not exist then.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Result<Option<KeyAt>, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.get(key, at_rev)),
            Index::Stored(i) => i.get(key, at_rev),
        }
    }

    /// Calls `visit` for each key in `range` that exists at `at_rev`, in
    /// ascending key order, until `visit` returns false.
    pub fn visit(
        &self,
        range: &KeyRange,
        at_rev: i64,
        visit: impl FnMut(&[u8], KeyAt) -> bool,
    ) -> Result<(), MvccError> {
        match self {
            Index::Memory(i) => {
                i.visit(range, at_rev, visit);
                Ok(())
            }
            Index::Stored(i) => i.visit(range, at_rev, visit),
        }
    }

    /// The revision before `rev` in the same generation of `key`.
    pub fn prev_in_generation(&self, key: &[u8], rev: Revision) -> Result<Option<Revision>, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.prev_in_generation(key, rev)),
            Index::Stored(i) => i.prev_in_generation(key, rev),
        }
    }

    /// True when `key` changed again after `rev` within the same main revision.
    pub fn superseded_at(&self, key: &[u8], rev: Revision) -> Result<bool, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.superseded_at(key, rev)),
            Index::Stored(i) => i.superseded_at(key, rev),
        }
    }

    /// True when `key`'s history holds `rev`.
    pub fn contains(&self, key: &[u8], rev: Revision) -> Result<bool, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.contains(key, rev)),
            Index::Stored(i) => i.contains(key, rev),
        }
    }

    /// HashKV's keep set (see `TreeIndex::hash_keep`).
    pub fn hash_keep(&self, rev: i64, compact: i64) -> Result<HashSet<Revision>, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.hash_keep(rev, compact)),
            Index::Stored(i) => i.hash_keep(rev, compact),
        }
    }

    /// The next slice of a compaction (see `TreeIndex::compact_slice`).
    pub fn compact_slice(
        &self,
        after: Option<&[u8]>,
        at_rev: i64,
        max_keys: usize,
        max_revs: usize,
    ) -> Result<CompactSlice, MvccError> {
        match self {
            Index::Memory(i) => Ok(i.compact_slice(after, at_rev, max_keys, max_revs)),
            Index::Stored(i) => i.compact_slice(after, at_rev, max_keys, max_revs),
        }
    }

    /// Writer only: writes `batch` (a txn's revisions and applied index) to
    /// `engine` and records `changes` in the index: within the batch for the
    /// stored index, after it for the in-memory one.
    pub fn write_changes(
        &self,
        engine: &dyn Engine,
        mut batch: WriteBatch,
        changes: &[IndexChange<'_>],
    ) -> Result<(), MvccError> {
        match self {
            Index::Memory(i) => {
                engine.write(batch)?;
                for c in changes {
                    if c.tombstone {
                        assert!(
                            i.tombstone(c.key, c.rev),
                            "mvcc invariant broken: txn deleted key {:?} that the index says is absent",
                            String::from_utf8_lossy(c.key)
                        );
                    } else {
                        i.put(c.key, c.rev);
                    }
                }
            }
            Index::Stored(i) => {
                let staged = i.stage_changes(changes, &mut batch)?;
                engine.write(batch)?;
                i.applied(staged);
            }
        }
        Ok(())
    }

    /// Writer only (the compactor holding the writer mutex): writes `batch`
    /// and compacts `slice`'s keys at `at_rev`, whose dropped revisions
    /// already left the engine.
    pub fn write_compaction(
        &self,
        engine: &dyn Engine,
        mut batch: WriteBatch,
        slice: &CompactSlice,
        at_rev: i64,
    ) -> Result<(), MvccError> {
        match self {
            Index::Memory(i) => {
                if !batch.is_empty() {
                    engine.write(batch)?;
                }
                i.compact_keys(&slice.keys, at_rev);
            }
            Index::Stored(i) => {
                let staged = i.stage_compaction(slice, at_rev, &mut batch)?;
                if !batch.is_empty() {
                    engine.write(batch)?;
                }
                i.applied(staged);
            }
        }
        Ok(())
    }

    /// A copy of every key's history, in key order (tests).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(Vec<u8>, super::key_index::KeyIndex)> {
        match self {
            Index::Memory(i) => i.snapshot(),
            Index::Stored(i) => i.snapshot().expect("read the stored index"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryEngine;

    #[test]
    fn kinds_parse_print_and_resolve() {
        for k in [KeyIndexKind::Auto, KeyIndexKind::Memory, KeyIndexKind::Stored] {
            assert_eq!(k.to_string().parse::<KeyIndexKind>(), Ok(k));
        }
        assert!("rocks".parse::<KeyIndexKind>().is_err());
        let e = MemoryEngine::new();
        assert_eq!(KeyIndexKind::Auto.resolve(&e), KeyIndexKind::Memory);
        assert_eq!(KeyIndexKind::Stored.resolve(&e), KeyIndexKind::Stored);
    }
}
