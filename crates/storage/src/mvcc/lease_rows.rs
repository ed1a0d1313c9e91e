//! The lease rows: which keys each lease holds now, stored beside the
//! stored key index ([`Table::Index`]), so that recovering leases on a
//! restart reads one row per leased key instead of every revision.
//!
//! Without them the lessor learns its keys from a pass over the whole of
//! [`Table::Key`], values included: 12 s at 10 M revisions, where the
//! stored key index itself opens in well under a second.
//!
//! Layout (see `schema`): a row is `2 + slot` (the area of the index slot it
//! belongs to), the lease ID (i64, big-endian), then the key; its value is
//! empty. [`INDEX_LEASES`] names the slot whose rows are complete.
//!
//! Invariants:
//! - A slot's rows hold exactly the keys that exist at the store's current
//!   revision and have a lease, under that lease. A txn's batch carries the
//!   rows its changes move ([`stage`]), in the same batch as the revisions.
//! - The rows are derived: never dumped, emptied with their slot
//!   (`StoredIndex::clear_slot`), built with it (`StoredBuilder`), and
//!   trusted only while [`INDEX_LEASES`] equals the slot in use. A data
//!   dir written before the rows existed has no marker, and is given its
//!   rows once, on open ([`backfill`]).
//! - Only a binary that keeps the rows may write a data dir that has the
//!   marker: an older one would move leases without moving rows. No
//!   release was made without them, so no supported downgrade does that.
//! - Compaction never touches them: it keeps the latest revision of every
//!   existing key, and a deleted key's row went with its delete.

use std::collections::{BTreeMap, HashMap};

use crate::engine::{Engine, WriteBatch};
use crate::schema::{Table, INDEX_LEASES};

use super::error::MvccError;
use super::kv::{decode_header, KvHeader};
use super::rebuild::try_scan;
use super::revision::RevisionKey;
use super::stored_index::IndexChange;

/// The rows of slot `s` start with byte `AREA_BASE + s`, after every
/// history (slot bytes 0 and 1) and before the `\xff` names.
const AREA_BASE: u8 = 2;

/// Rows are written to the engine in batches of about this many bytes.
const BATCH_BYTES: usize = 4 << 20;

/// Keys attached to a lease, by lease.
pub type LeasedKeys = HashMap<i64, Vec<Vec<u8>>>;

fn area(slot: u8) -> u8 {
    AREA_BASE + slot
}

fn row_key(slot: u8, lease: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(area(slot));
    k.extend_from_slice(&lease.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The lease and the key of a row; None if `k` is not one.
fn decode_row(k: &[u8]) -> Option<(i64, &[u8])> {
    let (lease, key) = k.get(1..)?.split_at_checked(8)?;
    Some((i64::from_be_bytes(lease.try_into().ok()?), key))
}

/// Adds to `batch` the rows a txn's `changes` move: per key, from the
/// lease it had before the txn to the one it has after.
pub(super) fn stage(slot: u8, changes: &[IndexChange<'_>], batch: &mut WriteBatch) {
    let mut moved: BTreeMap<&[u8], (i64, i64)> = BTreeMap::new();
    for c in changes {
        moved.entry(c.key).or_insert((c.prev_lease, 0)).1 = c.lease;
    }
    for (key, (before, after)) in moved {
        if before == after {
            continue;
        }
        if before != 0 {
            batch.delete(Table::Index, row_key(slot, before, key));
        }
        if after != 0 {
            batch.put(Table::Index, row_key(slot, after, key), Vec::new());
        }
    }
}

/// The rows of `slot`, by lease.
pub(super) fn read(engine: &dyn Engine, slot: u8) -> Result<LeasedKeys, MvccError> {
    let mut by_lease = LeasedKeys::new();
    let start = [area(slot)];
    let end = [area(slot) + 1];
    let mut bad = None;
    engine.scan(Table::Index, &start, Some(&end), &mut |k, _| match decode_row(k) {
        Some((lease, key)) => {
            by_lease.entry(lease).or_default().push(key.to_vec());
            true
        }
        None => {
            bad = Some(k.len());
            false
        }
    })?;
    match bad {
        Some(len) => Err(MvccError::Corrupt(format!("malformed lease row of {len} bytes"))),
        None => Ok(by_lease),
    }
}

/// True when the rows of `slot` are complete.
pub(super) fn complete(engine: &dyn Engine, slot: u8) -> Result<bool, MvccError> {
    Ok(engine.get(Table::Index, INDEX_LEASES)?.as_deref() == Some(&[slot][..]))
}

/// Adds to `batch` the op that marks the rows of `slot` complete.
pub(super) fn mark(slot: u8, batch: &mut WriteBatch) {
    batch.put(Table::Index, INDEX_LEASES.to_vec(), vec![slot]);
}

/// Removes every row of `slot`.
pub(super) fn clear(engine: &dyn Engine, slot: u8) -> Result<(), MvccError> {
    engine.delete_range(Table::Index, &[area(slot)], &[area(slot) + 1])?;
    Ok(())
}

/// The lease of every key that has one, followed through revisions given
/// in ascending order: memory grows with the leased keys only.
#[derive(Default)]
pub(super) struct LiveLeases {
    by_key: HashMap<Vec<u8>, i64>,
}

impl LiveLeases {
    /// Follows one stored revision: the latest revision of a key decides.
    pub(super) fn add(&mut self, rk: &RevisionKey, h: &KvHeader<'_>) {
        if rk.tombstone || h.lease == 0 {
            self.by_key.remove(h.key);
        } else if let Some(lease) = self.by_key.get_mut(h.key) {
            *lease = h.lease;
        } else {
            self.by_key.insert(h.key.to_vec(), h.lease);
        }
    }

    /// One pass over the whole of [`Table::Key`], headers only.
    pub(super) fn scan(engine: &dyn Engine) -> Result<LiveLeases, MvccError> {
        let mut live = LiveLeases::default();
        try_scan(engine, Table::Key, None, &mut |k, v| {
            live.add(&RevisionKey::decode(k)?, &decode_header(v)?);
            Ok(())
        })?;
        Ok(live)
    }

    /// Writes the rows of `slot` (which must hold none), in bounded batches;
    /// the caller marks them complete.
    pub(super) fn write_rows(&self, engine: &dyn Engine, slot: u8) -> Result<(), MvccError> {
        let mut batch = WriteBatch::default();
        let mut bytes = 0;
        for (key, &lease) in &self.by_key {
            let row = row_key(slot, lease, key);
            bytes += row.len();
            batch.put(Table::Index, row, Vec::new());
            if bytes >= BATCH_BYTES {
                engine.write(std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            engine.write(batch)?;
        }
        Ok(())
    }

    pub(super) fn by_lease(self) -> LeasedKeys {
        let mut by_lease = LeasedKeys::new();
        for (key, lease) in self.by_key {
            by_lease.entry(lease).or_default().push(key);
        }
        by_lease
    }
}

/// Gives `slot` (the complete stored index in use) its rows from one pass
/// over [`Table::Key`] and marks them complete: once, for a data dir
/// written before the rows existed.
pub(super) fn backfill(engine: &dyn Engine, slot: u8) -> Result<(), MvccError> {
    clear(engine, slot)?;
    LiveLeases::scan(engine)?.write_rows(engine, slot)?;
    let mut batch = WriteBatch::default();
    mark(slot, &mut batch);
    engine.write(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_stay_in_their_area() {
        for (slot, lease, key) in [(0, 1, &b""[..]), (1, -1, b"/registry/pods/a"), (0, i64::MAX, b"\xff\x00")] {
            let k = row_key(slot, lease, key);
            assert_eq!(decode_row(&k), Some((lease, key)));
            assert_eq!(k[0], area(slot));
            assert!(k.as_slice() > &[1u8, 0xff, 0xff][..], "after every history");
            assert!(k.as_slice() < INDEX_LEASES, "before the names");
        }
        assert_eq!(decode_row(&[2, 0, 0, 0]), None);
        assert_eq!(decode_row(&[]), None);
    }
}
