//! Installing a raft snapshot into a running store without holding readers
//! up for the install (they run on the async runtime's worker threads).
//!
//! The snapshot replaces everything, as [`Engine::restore`] would, but it is
//! merged in so that readers keep reading the old state until a short swap:
//! 1. **Stream** (readers go on, on the old state): every [`Table::Key`] entry
//!    of the dump feeds a new key index built aside; entries above the old
//!    current revision `R` are written straight away (no old reader looks
//!    above `R`), entries at or below `R` are compared with ours — equal ones
//!    (raft gives members one history: nearly all) are left alone, missing
//!    ones (our compaction removed them) are written too (the old index
//!    never points at them), and different ones are held back. The other
//!    tables are collected (they are small).
//! 2. **Swap** (index lock exclusive: waits for the reads in flight, then
//!    microseconds plus one batch): one batch writes the held-back entries
//!    and replaces the other tables, the new index goes in, the revisions
//!    are published.
//! 3. **Sweep** (readers go on, on the new state): our revisions the new
//!    index does not hold (only at or below `R` can there be any) are
//!    deleted in bounded batches; then the dump's applied index is written.
//!
//! Invariants:
//! - A reader sees the old state or the new one, never a mix: before the
//!   swap nothing the old index points at changed; after it nothing the new
//!   index points at changes.
//! - Until the sweep ends the engine holds no applied index (the swap
//!   batch removes it), so a crash in between makes a persistent engine's
//!   node restore the snapshot afresh instead of trusting a half-swept state.
//! - A corrupt dump (checked to its end before the swap) or a failed write
//!   before the swap leaves the store as it was: what the stream wrote is
//!   removed again.
//! - The compactor is paused throughout and starts over on the new state,
//!   which may itself carry an unfinished compaction.

use std::io::Read;
use std::mem;

use crate::dump::read_dump_with;
use crate::engine::{EngineError, WriteBatch};
use crate::schema::{self, Table};

use super::error::MvccError;
use super::index::TreeIndex;
use super::indexes::Index;
use super::kv::decode_header;
use super::meta::{self, AppliedIndex};
use super::rebuild::{add_revision, try_scan, Loaded};
use super::revision::{Revision, RevisionKey};
use super::store::{MvccStore, NEVER_COMPACTED};
use super::stored_index::{StoredBuilder, StoredIndex};

/// Stream and sweep writes go to the engine in batches of about this many
/// bytes.
const BATCH_BYTES: usize = 4 << 20;
/// The sweep deletes at most this many revisions per engine batch.
const SWEEP_BATCH: usize = 10_000;

/// The new key index being built from the dump, of the kind the store keeps.
enum Building {
    Memory(Loaded),
    /// Into the slot the store's stored index does not use.
    Stored(StoredBuilder),
}

impl Building {
    fn add(&mut self, k: &[u8], v: &[u8]) -> Result<(), MvccError> {
        match self {
            Building::Memory(loaded) => add_revision(loaded, k, v),
            Building::Stored(b) => b.add(k, v),
        }
    }
}

/// What the stream phase gathered.
struct Staged {
    building: Option<Building>,
    /// Key entries at or below the old current revision that differ from ours.
    held_back: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every other table's entries.
    others: Vec<(Table, Vec<u8>, Vec<u8>)>,
    /// The dump's applied index, written last.
    applied: Vec<(Vec<u8>, Vec<u8>)>,
    /// Key entries at or below the old current revision that we lacked and
    /// wrote during the stream (removed again if the install fails).
    filled_in: Vec<Vec<u8>>,
}

impl Staged {
    fn new(building: Building) -> Staged {
        Staged {
            building: Some(building),
            held_back: Vec::new(),
            others: Vec::new(),
            applied: Vec::new(),
            filled_in: Vec::new(),
        }
    }

    /// The dump's applied index entries, as Meta entries.
    fn applied_entries(&self) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        self.applied.iter().map(|(k, v)| (Table::Meta, k.clone(), v.clone())).collect()
    }
}

/// The 8-byte Meta value under `key` among staged entries.
fn staged_meta(entries: &[(Table, Vec<u8>, Vec<u8>)], key: &[u8]) -> Result<Option<i64>, MvccError> {
    entries
        .iter()
        .find(|(t, k, _)| *t == Table::Meta && k == key)
        .map(|(_, k, v)| meta::decode_u64(k, v).map(|n| n as i64))
        .transpose()
}

impl MvccStore {
    /// Replaces the whole store with a snapshot (the stream of
    /// [`Engine::dump`](crate::Engine::dump)); see the module docs. Reads go on
    /// meanwhile and see the old state until a short swap; writers wait. On a
    /// corrupt snapshot or an engine error before the swap, the store is
    /// unchanged. An engine error after it (in the sweep) leaves the new
    /// state readable but no applied index stored: the caller must stop and
    /// restore again, as after a crash.
    pub fn restore_snapshot(&self, input: &mut dyn Read) -> Result<(), MvccError> {
        let _job = self.shared.compaction.pause();
        let _writer = self.shared.writer.lock();
        let old_current = self.current_revision();
        let building = match &*self.index() {
            Index::Memory(_) => Building::Memory(Loaded::default()),
            Index::Stored(old) => Building::Stored(StoredBuilder::new(self.shared.engine.clone(), 1 - old.slot())?),
        };
        let mut staged = Staged::new(building);
        let streamed = self.stream(input, old_current, &mut staged);
        let swapped = streamed.and_then(|()| self.swap(&mut staged));
        let old_slot = match swapped {
            Ok(old_slot) => old_slot,
            Err(e) => {
                // Best effort: on an engine that fails writes this fails too,
                // and the leftovers are unreferenced revisions (and histories
                // in the unused slot, which the next build empties).
                let _ = self.unstream(old_current, &staged.filled_in);
                return Err(e);
            }
        };
        self.sweep(old_current)?;
        if let Some(slot) = old_slot {
            StoredIndex::clear_slot(self.shared.engine.as_ref(), slot)?;
        }
        let mut batch = WriteBatch::default();
        for (k, v) in staged.applied {
            batch.put(Table::Meta, k, v);
        }
        self.shared.engine.write(batch)?;
        self.kick_compactor();
        Ok(())
    }

    /// Phase 1: reads the whole dump (see the module docs).
    fn stream(&self, input: &mut dyn Read, old_current: i64, staged: &mut Staged) -> Result<(), MvccError> {
        let engine = &*self.shared.engine;
        let mut batch = WriteBatch::default();
        let mut bytes = 0usize;
        let mut failure: Option<MvccError> = None;
        let read = read_dump_with(input, &mut |table, k, v| {
            if schema::is_applied_index(table, &k) {
                staged.applied.push((k, v));
                return Ok(());
            }
            if table != Table::Key {
                staged.others.push((table, k, v));
                return Ok(());
            }
            let building = staged.building.as_mut().expect("a build runs while the dump streams");
            let rk = match building.add(&k, &v).and_then(|()| RevisionKey::decode(&k)) {
                Ok(rk) => rk,
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    return Err(EngineError::Corrupt(msg));
                }
            };
            if rk.rev.main <= old_current {
                match engine.get(Table::Key, &k)? {
                    Some(ours) if ours == v => return Ok(()),
                    Some(_) => {
                        staged.held_back.push((k, v));
                        return Ok(());
                    }
                    None => staged.filled_in.push(k.clone()),
                }
            }
            bytes += k.len() + v.len();
            batch.put(Table::Key, k, v);
            if bytes >= BATCH_BYTES {
                engine.write(mem::take(&mut batch))?;
                bytes = 0;
            }
            Ok(())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        read?;
        engine.write(batch)?;
        Ok(())
    }

    /// Phase 2: the new index and tables go in under the exclusive lock.
    /// Returns the slot the old stored index used, for the caller to empty.
    fn swap(&self, staged: &mut Staged) -> Result<Option<u8>, MvccError> {
        let engine = &*self.shared.engine;
        let mut batch = WriteBatch::default();
        for (k, v) in staged.held_back.drain(..) {
            batch.put(Table::Key, k, v);
        }
        for &table in Table::dumped().iter().filter(|&&t| t != Table::Key) {
            try_scan(engine, table, None, &mut |k, _| {
                batch.delete(table, k.to_vec());
                Ok(())
            })?;
        }
        let finished = staged_meta(&staged.others, schema::META_FINISHED_COMPACT)?.unwrap_or(NEVER_COMPACTED);
        let scheduled = staged_meta(&staged.others, schema::META_SCHEDULED_COMPACT)?.unwrap_or(NEVER_COMPACTED);
        let scheduled = scheduled.max(finished);
        let applied = AppliedIndex {
            index: staged_meta(&staged.applied_entries(), schema::META_CONSISTENT_INDEX)?.unwrap_or(0) as u64,
            term: staged_meta(&staged.applied_entries(), schema::META_TERM)?.unwrap_or(0) as u64,
        };
        for (table, k, v) in staged.others.drain(..) {
            batch.put(table, k, v);
        }
        let (index, max_main) = match staged.building.take().expect("the stream built an index") {
            Building::Memory(loaded) => (Index::Memory(TreeIndex::from_keys(loaded.keys)), loaded.max_main),
            Building::Stored(b) => {
                // The histories are written before the swap; the swap batch
                // makes their slot the one in use.
                let built = b.finish()?;
                built.mark(&mut batch);
                (Index::Stored(built.index), built.max_main)
            }
        };
        let current = max_main.max(scheduled).max(1);

        let mut guard = self.shared.index.write();
        engine.write(batch)?;
        let old = mem::replace(&mut *guard, index);
        self.publish_loaded(current, scheduled, finished, applied);
        drop(guard);
        let old_slot = match &old {
            Index::Stored(s) => Some(s.slot()),
            Index::Memory(_) => None,
        };
        // Freeing a big index takes a while: not under the lock.
        drop(old);
        Ok(old_slot)
    }

    /// Phase 3: deletes every stored revision the new index does not hold.
    /// Only revisions at or below `old_current` can be such: every one above
    /// it came from the dump, whose every revision the new index holds (so
    /// a member that had nothing sweeps nothing).
    fn sweep(&self, old_current: i64) -> Result<(), MvccError> {
        let engine = &*self.shared.engine;
        let end = Revision::new(old_current + 1, 0).to_bytes();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut stale = Vec::new();
            let mut last = None;
            let start = after.as_deref().map_or_else(Vec::new, |k| [k, &[0]].concat());
            let index = self.index();
            let mut failure = None;
            engine.scan(Table::Key, &start, Some(&end), &mut |k, v| {
                let held =
                    RevisionKey::decode(k).and_then(|rk| decode_header(v).and_then(|h| index.contains(h.key, rk.rev)));
                match held {
                    Ok(true) => {}
                    Ok(false) => stale.push(k.to_vec()),
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                }
                last = Some(k.to_vec());
                stale.len() < SWEEP_BATCH
            })?;
            drop(index);
            if let Some(e) = failure {
                return Err(e);
            }
            let done = stale.len() < SWEEP_BATCH;
            if !stale.is_empty() {
                let mut batch = WriteBatch::default();
                for k in stale {
                    batch.delete(Table::Key, k);
                }
                engine.write(batch)?;
            }
            if done {
                return Ok(());
            }
            after = last;
        }
    }

    /// Removes what [`Self::stream`] wrote: everything above `old_current`
    /// and the revisions it filled in.
    fn unstream(&self, old_current: i64, filled_in: &[Vec<u8>]) -> Result<(), MvccError> {
        let engine = &*self.shared.engine;
        let mut batch = WriteBatch::default();
        let start = Revision::new(old_current + 1, 0).to_bytes();
        engine.scan(Table::Key, &start, None, &mut |k, _| {
            batch.delete(Table::Key, k.to_vec());
            true
        })?;
        for k in filled_in {
            batch.delete(Table::Key, k.clone());
        }
        engine.write(batch)?;
        Ok(())
    }
}
