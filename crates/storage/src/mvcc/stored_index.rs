//! [`StoredIndex`]: the key index kept in the engine ([`Table::Index`]), so
//! that a store's memory does not grow with its number of keys and a restart
//! does not rebuild the index by reading every revision.
//!
//! The in-memory [`TreeIndex`](super::index::TreeIndex) costs about 120
//! bytes per key (1.2 GiB at 10 M keys) and is rebuilt from [`Table::Key`]
//! on every open. The stored index holds the same [`KeyIndex`] per key,
//! encoded ([`KeyIndex::encode`]), under `slot byte ++ key`; what it keeps in
//! memory is the engine's own bounded caches (RocksDB's block cache and
//! memtables), a bounded cache of decoded histories for the keys read and
//! written one at a time ([`HistoryCache`]), and a key count.
//!
//! Layout (see `schema`): two slots, `0` and `1`. [`INDEX_SLOT`] names the
//! one that holds the complete index, [`INDEX_KEYS`] its number of keys. A
//! snapshot install builds the new index in the other slot while readers go
//! on reading the old one, and the swap batch flips [`INDEX_SLOT`]; the old
//! slot is deleted afterwards with one range delete.
//!
//! Invariants:
//! - Every engine batch that writes revisions to [`Table::Key`] also writes
//!   the histories they change (txn commit: [`StoredIndex::stage_changes`]),
//!   so after a crash the index matches the revisions it points at.
//! - Compaction deletes revisions before it rewrites the histories that
//!   name them (`compactor.rs`): a history may name a revision that is gone
//!   only below the compact revision, where no read looks, and the pass
//!   that left it so resumes on restart (its `finishedCompactRev` is written
//!   with the last histories).
//! - [`INDEX_SLOT`] is present only while its slot matches [`Table::Key`]: it
//!   is written last by a build, a restore empties the table, and a store
//!   opened with the in-memory index (which does not maintain this one)
//!   removes it first. Without it the store rebuilds the index on open.
//! - Only the writer (holding `MvccStore`'s writer mutex) writes histories;
//!   readers read at an explicit revision and ignore later revisions, so a
//!   history written for a txn not yet published changes no answer.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::{Engine, WriteBatch};
use crate::schema::{Table, INDEX_KEYS, INDEX_LEASES, INDEX_SLOT};

use super::changed_keys::ChangedKeys;
use super::error::MvccError;
use super::history_cache::{HistoryCache, CAPACITY};
use super::index::CompactSlice;
use super::key_index::{KeyAt, KeyIndex};
use super::kv::decode_header;
use super::lease_rows::{self, LeasedKeys, LiveLeases};
use super::range::KeyRange;
use super::rebuild::{add_to, try_scan};
use super::revision::{Revision, RevisionKey};

/// A build keeps at most this many histories in memory before writing them
/// to the engine (about 150 bytes each): the bound on its memory.
const BUILD_OVERLAY_KEYS: usize = 100_000;

/// A visitor of stored histories that may stop (false) or fail.
type HistoryVisit<'a> = dyn FnMut(&[u8], KeyIndex) -> Result<bool, MvccError> + 'a;

/// One change of a committing txn, in sub-revision order.
pub struct IndexChange<'a> {
    pub key: &'a [u8],
    pub rev: Revision,
    pub tombstone: bool,
    /// The key's lease after the change (0: none, or deleted).
    pub lease: i64,
    /// The key's lease before it (0: none, or it did not exist).
    pub prev_lease: i64,
}

/// The stored key index of one slot. See the module docs.
pub struct StoredIndex {
    engine: Arc<dyn Engine>,
    slot: u8,
    /// Keys in the slot (etcd's `keys_total`), kept by the writer and the
    /// compactor under the writer mutex and stored as [`INDEX_KEYS`].
    keys: AtomicU64,
    /// Histories of keys read or written one at a time (scans bypass it).
    cache: HistoryCache,
    /// Keys written while a compaction batch plans without the writer mutex.
    changed: ChangedKeys,
}

/// What a writer staged in a batch, applied by [`StoredIndex::applied`]
/// once the batch is written.
pub struct Staged {
    keys: u64,
    /// New histories; None: the key's history was removed.
    histories: Vec<(Vec<u8>, Option<KeyIndex>)>,
}

fn slot_key(slot: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(slot);
    k.extend_from_slice(key);
    k
}

fn encoded(ki: &KeyIndex) -> Vec<u8> {
    let mut value = Vec::new();
    ki.encode(&mut value);
    value
}

fn read_u64(engine: &dyn Engine, key: &[u8]) -> Result<Option<u64>, MvccError> {
    match engine.get(Table::Index, key)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| corrupt_entry(key))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

fn corrupt_entry(key: &[u8]) -> MvccError {
    MvccError::Corrupt(format!("stored key index entry {:?} is malformed", String::from_utf8_lossy(key)))
}

impl StoredIndex {
    /// The complete index the engine holds, None when it holds none (a new
    /// data dir, one written by the in-memory index, or a restore). An index
    /// stored before lease rows existed is given them first (one pass over
    /// the revisions, once).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Option<StoredIndex>, MvccError> {
        let slot = match engine.get(Table::Index, INDEX_SLOT)?.as_deref() {
            None => return Ok(None),
            Some([s @ (0 | 1)]) => *s,
            Some(_) => return Err(corrupt_entry(INDEX_SLOT)),
        };
        let keys = read_u64(engine.as_ref(), INDEX_KEYS)?.ok_or_else(|| corrupt_entry(INDEX_KEYS))?;
        if !lease_rows::complete(engine.as_ref(), slot)? {
            lease_rows::backfill(engine.as_ref(), slot)?;
        }
        Ok(Some(StoredIndex::new(engine, slot, keys)))
    }

    /// Forgets any stored index (before the in-memory index takes over, which
    /// does not keep this one up to date).
    pub fn invalidate(engine: &dyn Engine) -> Result<(), MvccError> {
        if engine.get(Table::Index, INDEX_SLOT)?.is_some() {
            let mut b = WriteBatch::default();
            b.delete(Table::Index, INDEX_SLOT.to_vec());
            b.delete(Table::Index, INDEX_LEASES.to_vec());
            engine.write(b)?;
        }
        Ok(())
    }

    fn new(engine: Arc<dyn Engine>, slot: u8, keys: u64) -> StoredIndex {
        StoredIndex {
            engine,
            slot,
            keys: AtomicU64::new(keys),
            cache: HistoryCache::new(CAPACITY),
            changed: ChangedKeys::default(),
        }
    }

    /// The slot this index reads.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// Number of keys held (including keys that only have history).
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Acquire) as usize
    }

    /// The history of `key`: cached, or read from the engine and cached.
    /// A key without one is cached as an empty history (a put of a new key
    /// asks twice: for its previous version, then to append).
    fn entry(&self, key: &[u8]) -> Result<Option<KeyIndex>, MvccError> {
        if let Some(ki) = self.cache.get(key) {
            return Ok((!ki.is_empty()).then_some(ki));
        }
        let ticket = self.cache.ticket(key);
        match self.engine.get(Table::Index, &slot_key(self.slot, key))? {
            Some(v) => {
                let ki = KeyIndex::decode(&v)?;
                self.cache.fill(ticket, key, &ki);
                Ok(Some(ki))
            }
            None => {
                self.cache.fill(ticket, key, &KeyIndex::new());
                Ok(None)
            }
        }
    }

    /// The key's version at `at_rev`, None if it did not exist then.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Result<Option<KeyAt>, MvccError> {
        Ok(self.entry(key)?.and_then(|ki| ki.get(at_rev)))
    }

    /// Visits every stored history of the slot from `start` (inclusive) to
    /// `end` (exclusive; None: the slot's end) in key order, until `visit`
    /// returns false.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut HistoryVisit<'_>) -> Result<(), MvccError> {
        let from = slot_key(self.slot, start);
        let to = match end {
            Some(e) => slot_key(self.slot, e),
            None => vec![self.slot + 1],
        };
        let mut failure = None;
        self.engine.scan(Table::Index, &from, Some(&to), &mut |k, v| match KeyIndex::decode(v)
            .and_then(|ki| visit(&k[1..], ki))
        {
            Ok(go_on) => go_on,
            Err(e) => {
                failure = Some(e);
                false
            }
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Calls `visit` for each key in `range` that exists at `at_rev`, in
    /// ascending key order, until `visit` returns false.
    pub fn visit(
        &self,
        range: &KeyRange,
        at_rev: i64,
        mut visit: impl FnMut(&[u8], KeyAt) -> bool,
    ) -> Result<(), MvccError> {
        if let KeyRange::Single(k) = range {
            if let Some(at) = self.get(k, at_rev)? {
                visit(k, at);
            }
            return Ok(());
        }
        let (start, end) = match range {
            KeyRange::Range { start, end } if start < end => (start, Some(end.as_slice())),
            KeyRange::FromKey(start) => (start, None),
            _ => return Ok(()),
        };
        self.scan(start, end, &mut |k, ki| Ok(ki.get(at_rev).is_none_or(|at| visit(k, at))))
    }

    /// Every existing key attached to a lease, by lease (the lease rows).
    pub fn leased_keys(&self) -> Result<LeasedKeys, MvccError> {
        lease_rows::read(self.engine.as_ref(), self.slot)
    }

    /// See [`KeyIndex::prev_in_generation`].
    pub fn prev_in_generation(&self, key: &[u8], rev: Revision) -> Result<Option<Revision>, MvccError> {
        Ok(self.entry(key)?.and_then(|ki| ki.prev_in_generation(rev)))
    }

    /// See `TreeIndex::superseded_at`.
    pub fn superseded_at(&self, key: &[u8], rev: Revision) -> Result<bool, MvccError> {
        Ok(self.entry(key)?.is_some_and(|ki| ki.modified_after_within(rev)))
    }

    /// True when `key`'s history holds `rev`.
    pub fn contains(&self, key: &[u8], rev: Revision) -> Result<bool, MvccError> {
        Ok(self.entry(key)?.is_some_and(|ki| ki.contains(rev)))
    }

    /// See `TreeIndex::hash_keep`.
    pub fn hash_keep(&self, rev: i64, compact: i64) -> Result<HashSet<Revision>, MvccError> {
        let mut keep = HashSet::new();
        self.scan(&[], None, &mut |_, ki| {
            if let Some(at) = ki.get(rev).filter(|at| at.modified.main <= compact) {
                keep.insert(at.modified);
            }
            Ok(true)
        })?;
        Ok(keep)
    }

    /// See `TreeIndex::compact_slice`.
    pub fn compact_slice(
        &self,
        after: Option<&[u8]>,
        at_rev: i64,
        max_keys: usize,
        max_revs: usize,
    ) -> Result<CompactSlice, MvccError> {
        let mut slice = CompactSlice::default();
        let start = after.map_or_else(Vec::new, |k| [k, &[0]].concat());
        let mut visited = 0;
        let mut last = None;
        self.changed.open();
        let scanned = self.scan(&start, None, &mut |k, ki| {
            let drops = ki.compact_drops(at_rev);
            if !drops.is_empty() {
                slice.keys.push(k.to_vec());
                slice.drops.extend(drops);
                slice.histories.push(ki);
            }
            visited += 1;
            if visited >= max_keys || slice.drops.len() >= max_revs {
                last = Some(k.to_vec());
                return Ok(false);
            }
            Ok(true)
        });
        if scanned.is_err() || slice.keys.is_empty() {
            // Nothing read will be rewritten: stop the writer's reports.
            let _ = self.changed.close();
        }
        scanned?;
        slice.next = last;
        Ok(slice)
    }

    /// Writer only: adds to `batch` the histories `changes` give (and the
    /// new key count), for [`Self::applied`] once the batch is written.
    pub fn stage_changes(&self, changes: &[IndexChange<'_>], batch: &mut WriteBatch) -> Result<Staged, MvccError> {
        let mut touched: BTreeMap<&[u8], KeyIndex> = BTreeMap::new();
        let mut keys = self.keys.load(Ordering::Acquire);
        for c in changes {
            if !touched.contains_key(c.key) {
                let ki = match self.entry(c.key)? {
                    Some(ki) => ki,
                    None => {
                        keys += 1;
                        KeyIndex::new()
                    }
                };
                touched.insert(c.key, ki);
            }
            let ki = touched.get_mut(c.key).expect("inserted above");
            if c.tombstone {
                assert!(
                    ki.tombstone(c.rev),
                    "mvcc invariant broken: txn deleted key {:?} that the index says is absent",
                    String::from_utf8_lossy(c.key)
                );
            } else {
                ki.put(c.rev);
            }
        }
        let mut histories = Vec::with_capacity(touched.len());
        for (key, ki) in touched {
            batch.put(Table::Index, slot_key(self.slot, key), encoded(&ki));
            histories.push((key.to_vec(), Some(ki)));
        }
        if keys != self.keys.load(Ordering::Acquire) {
            batch.put(Table::Index, INDEX_KEYS.to_vec(), keys.to_be_bytes().to_vec());
        }
        lease_rows::stage(self.slot, changes, batch);
        Ok(Staged { keys, histories })
    }

    /// Writer only: adds to `batch` the histories of `slice`'s keys
    /// compacted at `at_rev` (removing those left empty) and the new key
    /// count, for [`Self::applied`] once the batch is written. Each starts
    /// from the history the slice's scan read or, for a key written since
    /// the scan began (`changed_keys`), from the current one.
    pub fn stage_compaction(
        &self,
        slice: &CompactSlice,
        at_rev: i64,
        batch: &mut WriteBatch,
    ) -> Result<Staged, MvccError> {
        let changed = self.changed.close();
        let mut count = self.keys.load(Ordering::Acquire);
        let mut histories = Vec::with_capacity(slice.keys.len());
        for (i, key) in slice.keys.iter().enumerate() {
            let read = slice.histories.get(i).filter(|_| !changed.contains(key));
            let mut ki = match read {
                Some(ki) => ki.clone(),
                None => match self.entry(key)? {
                    Some(ki) => ki,
                    None => continue,
                },
            };
            ki.compact(at_rev);
            if ki.is_empty() {
                batch.delete(Table::Index, slot_key(self.slot, key));
                // A count that disagrees with the histories (damaged on
                // disk) must not wrap around.
                count = count.saturating_sub(1);
                histories.push((key.clone(), None));
            } else {
                batch.put(Table::Index, slot_key(self.slot, key), encoded(&ki));
                histories.push((key.clone(), Some(ki)));
            }
        }
        if count != self.keys.load(Ordering::Acquire) {
            batch.put(Table::Index, INDEX_KEYS.to_vec(), count.to_be_bytes().to_vec());
        }
        Ok(Staged { keys: count, histories })
    }

    /// Writer only: what `staged` wrote is in the engine; the key count and
    /// the cache follow.
    pub fn applied(&self, staged: Staged) {
        for (key, history) in &staged.histories {
            match history {
                Some(ki) => self.cache.put(key, ki),
                None => self.cache.remove(key),
            }
        }
        self.keys.store(staged.keys, Ordering::Release);
        self.changed.record(staged.histories.iter().map(|(key, _)| key.as_slice()));
    }

    /// Removes every entry of `slot` (the one not in use), its lease rows
    /// included.
    pub fn clear_slot(engine: &dyn Engine, slot: u8) -> Result<(), MvccError> {
        engine.delete_range(Table::Index, &[slot], &[slot + 1])?;
        lease_rows::clear(engine, slot)
    }

    /// A copy of every key's history, in key order (tests).
    #[cfg(test)]
    pub fn snapshot(&self) -> Result<Vec<(Vec<u8>, KeyIndex)>, MvccError> {
        let mut out = Vec::new();
        self.scan(&[], None, &mut |k, ki| {
            out.push((k.to_vec(), ki));
            Ok(true)
        })?;
        Ok(out)
    }
}

/// Builds a stored index into a slot from revisions given in ascending
/// order (open without a stored index, snapshot install), in bounded
/// memory: at most [`BUILD_OVERLAY_KEYS`] histories are held before they
/// are written to the slot, and a key met again after that is read back.
pub struct StoredBuilder {
    engine: Arc<dyn Engine>,
    slot: u8,
    overlay: BTreeMap<Vec<u8>, KeyIndex>,
    /// [`BUILD_OVERLAY_KEYS`]; smaller in tests.
    overlay_limit: usize,
    keys: u64,
    /// The slot's lease rows, written by [`Self::finish`].
    leases: LiveLeases,
    /// The highest main revision added (0 if none).
    pub max_main: i64,
}

impl StoredBuilder {
    /// Starts a build into `slot`, emptying it first.
    pub fn new(engine: Arc<dyn Engine>, slot: u8) -> Result<StoredBuilder, MvccError> {
        StoredIndex::clear_slot(engine.as_ref(), slot)?;
        Ok(StoredBuilder {
            engine,
            slot,
            overlay: BTreeMap::new(),
            overlay_limit: BUILD_OVERLAY_KEYS,
            keys: 0,
            leases: LiveLeases::default(),
            max_main: 0,
        })
    }

    /// Adds one stored revision (`Table::Key`'s key and value); see
    /// `rebuild::add_to` for what is corruption.
    pub fn add(&mut self, k: &[u8], v: &[u8]) -> Result<(), MvccError> {
        let rk = RevisionKey::decode(k)?;
        let h = decode_header(v)?;
        if !self.overlay.contains_key(h.key) {
            match self.engine.get(Table::Index, &slot_key(self.slot, h.key))? {
                Some(stored) => {
                    self.overlay.insert(h.key.to_vec(), KeyIndex::decode(&stored)?);
                }
                None => self.keys += 1,
            }
        }
        add_to(&mut self.overlay, rk, &h)?;
        self.leases.add(&rk, &h);
        self.max_main = self.max_main.max(rk.rev.main);
        if self.overlay.len() >= self.overlay_limit {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MvccError> {
        let mut batch = WriteBatch::default();
        for (key, ki) in std::mem::take(&mut self.overlay) {
            batch.put(Table::Index, slot_key(self.slot, &key), encoded(&ki));
        }
        if !batch.is_empty() {
            self.engine.write(batch)?;
        }
        Ok(())
    }

    /// Writes what is left. The slot is complete, but not yet the one in
    /// use: add [`StoredBuilt::mark`]'s ops to a batch to make it so.
    pub fn finish(mut self) -> Result<StoredBuilt, MvccError> {
        self.flush()?;
        self.leases.write_rows(self.engine.as_ref(), self.slot)?;
        let index = StoredIndex::new(self.engine, self.slot, self.keys);
        Ok(StoredBuilt { index, max_main: self.max_main })
    }

    /// Builds into `slot` from the whole of [`Table::Key`] and marks it in
    /// use (open without a stored index).
    pub fn rebuild(engine: Arc<dyn Engine>, slot: u8) -> Result<StoredBuilt, MvccError> {
        Self::rebuild_with(engine, slot, BUILD_OVERLAY_KEYS)
    }

    /// [`Self::rebuild`] holding at most `overlay_limit` histories at once.
    pub fn rebuild_with(engine: Arc<dyn Engine>, slot: u8, overlay_limit: usize) -> Result<StoredBuilt, MvccError> {
        let mut b = StoredBuilder::new(engine.clone(), slot)?;
        b.overlay_limit = overlay_limit.max(1);
        try_scan(engine.as_ref(), Table::Key, None, &mut |k, v| b.add(k, v))?;
        let built = b.finish()?;
        let mut batch = WriteBatch::default();
        built.mark(&mut batch);
        engine.write(batch)?;
        Ok(built)
    }
}

/// A finished build.
pub struct StoredBuilt {
    pub index: StoredIndex,
    pub max_main: i64,
}

impl StoredBuilt {
    /// The ops that make the built slot the one in use.
    pub fn mark(&self, batch: &mut WriteBatch) {
        batch.put(Table::Index, INDEX_KEYS.to_vec(), (self.index.len() as u64).to_be_bytes().to_vec());
        batch.put(Table::Index, INDEX_SLOT.to_vec(), vec![self.index.slot]);
        lease_rows::mark(self.index.slot, batch);
    }
}
