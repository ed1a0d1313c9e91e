//! [`KeyIndex`]: the revision history of one key, as etcd's `keyIndex`.
//!
//! The history is a list of *generations*. A generation starts with the put
//! that (re)creates the key and, unless it is the last generation, ends with
//! the tombstone (delete) revision. Deleting appends the tombstone to the
//! current generation and opens a new, empty one.
//!
//! Example: put(1.0); put(2.0); delete(3.0); put(4.0); delete(5.0) on "foo":
//!
//! ```text
//! {1.0, 2.0, 3.0(t)}   created 1.0, ver 3
//! {4.0, 5.0(t)}        created 4.0, ver 2
//! {}                   current (empty: the key does not exist now)
//! ```
//!
//! Compaction at `rev` (etcd ≥ 3.5.14 semantics) finds the first generation
//! whose tombstone is `>= rev` (or the current one), keeps in it the latest
//! revision `<= rev` and everything after, and drops everything before —
//! including whole generations that ended before `rev`. A tombstone exactly at
//! `rev` is kept (so a watch from `rev` still sees the delete) until a later
//! compaction. On the example: compact(2) leaves `{2.0, 3.0(t)} {4.0, 5.0(t)}
//! {}`; compact(4) leaves `{4.0, 5.0(t)} {}`; compact(5) leaves `{5.0(t)} {}`;
//! compact(6) leaves `{}` — the key must then be removed from the index.
//!
//! Invariants:
//! - there is always at least one generation; only the last may be empty;
//! - revisions strictly increase across the whole history (`put` panics
//!   otherwise: callers only append newer revisions);
//! - the last revision of every non-last generation is a tombstone;
//! - `ver` counts all puts of a generation, including compacted ones, so
//!   versions stay right after compaction.

use smallvec::{smallvec, SmallVec};

use super::error::MvccError;
use super::revision::{Revision, RevisionKey};

/// A generation's revisions: inline while there is one (most keys), so a
/// key's whole history costs no allocation of its own.
pub type Revs = SmallVec<[Revision; 1]>;

/// One life of a key, from the put that created it to its tombstone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Number of puts in this generation (a tombstone counts too, as etcd).
    pub ver: i64,
    /// Revision of the put that created this generation.
    pub created: Revision,
    /// Revisions still held, ascending.
    pub revs: Revs,
}

impl Generation {
    fn tombstone(&self) -> Revision {
        *self.revs.last().expect("key index invariant broken: a closed generation is empty")
    }
}

/// What a key looked like at some revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    /// Revision of the version visible at the read revision.
    pub modified: Revision,
    /// Revision that created the key's generation.
    pub created: Revision,
    /// Version (1 for the creating put).
    pub version: i64,
}

/// The history of one key. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    /// Inline for the usual single generation (see [`Revs`]).
    generations: SmallVec<[Generation; 1]>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyIndex {
    /// A key with no history.
    pub fn new() -> Self {
        KeyIndex { generations: smallvec![Generation::default()] }
    }

    /// The last revision appended and not compacted away (the default
    /// revision when none is held). Derived rather than stored: it is one
    /// more revision per key of index memory, and only the writer asks.
    pub fn modified(&self) -> Revision {
        self.generations.iter().rev().find_map(|g| g.revs.last().copied()).unwrap_or_default()
    }

    #[cfg(test)]
    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// True when no revision is held: the key can be dropped from the index.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    fn current(&mut self) -> &mut Generation {
        self.generations.last_mut().expect("key index invariant broken: no generation")
    }

    /// Appends a put at `rev`. Panics if `rev` is not after the last revision.
    pub fn put(&mut self, rev: Revision) {
        let modified = self.modified();
        assert!(rev > modified, "key index invariant broken: put at {rev} after {modified}");
        let g = self.current();
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Appends a tombstone at `rev` and opens a new generation. Returns false
    /// (changing nothing) when the key does not currently exist.
    #[must_use]
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.current().revs.is_empty() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// Starts the history of a fresh index from a stored put whose earlier
    /// revisions were compacted away (restart after compaction).
    pub fn restore(&mut self, created: Revision, modified: Revision, ver: i64) {
        assert!(self.is_empty(), "key index invariant broken: restore on a non-empty index");
        self.generations = smallvec![Generation { ver, created, revs: smallvec![modified] }];
    }

    /// Starts the history of a fresh index from a lone stored tombstone (its
    /// generation's puts were compacted away; the creating revision is unknown).
    pub fn restore_tombstone(&mut self, rev: Revision) {
        self.restore(Revision::default(), rev, 1);
        self.generations.push(Generation::default());
    }

    /// The generation holding the key's version at `at_rev`, None if the key
    /// did not exist then.
    fn find_generation(&self, at_rev: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else {
                continue;
            };
            if i != last && g.tombstone().main <= at_rev {
                return None;
            }
            if first.main <= at_rev {
                return Some(g);
            }
        }
        None
    }

    /// The key's version at main revision `at_rev`, None if it did not exist.
    pub fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(at_rev)?;
        let n = g.revs.iter().rposition(|r| r.main <= at_rev)?;
        Some(KeyAt { modified: g.revs[n], created: g.created, version: g.ver - (g.revs.len() - n - 1) as i64 })
    }

    /// The revision just before `rev` in the same generation (the version a
    /// change at `rev` replaced), None if `rev` started its generation or is
    /// not held.
    pub fn prev_in_generation(&self, rev: Revision) -> Option<Revision> {
        self.generations.iter().find_map(|g| match g.revs.binary_search(&rev) {
            Ok(i) if i > 0 => Some(Some(g.revs[i - 1])),
            Ok(_) => Some(None),
            Err(_) => None,
        })?
    }

    /// Where compaction at `at_rev` cuts: the generation index and the
    /// position of the revision kept in it.
    ///
    /// etcd walks to the first generation whose tombstone is `>= at_rev`. That
    /// is only right when a key changes at most once per main revision (etcd's
    /// txn validation guarantees it); here one txn may delete and re-create a
    /// key, giving several generations within one main revision. So: take the
    /// last generation that starts at or before `at_rev` (it holds the latest
    /// revision `<= at_rev`), and step past it when it ended before `at_rev`.
    /// For histories etcd can produce this picks the same generation.
    fn plan_compact(&self, at_rev: i64) -> (usize, Option<usize>) {
        let last = self.generations.len() - 1;
        let mut gi =
            self.generations.iter().rposition(|g| g.revs.first().is_some_and(|r| r.main <= at_rev)).unwrap_or(0);
        if gi < last && self.generations[gi].tombstone().main < at_rev {
            gi += 1;
        }
        let kept = self.generations[gi].revs.iter().rposition(|r| r.main <= at_rev);
        (gi, kept)
    }

    /// The revision `compact(at_rev)` would keep among those `<= at_rev`, if
    /// any; does not change the index.
    #[cfg(test)]
    pub fn compact_keep(&self, at_rev: i64) -> Option<Revision> {
        let (gi, kept) = self.plan_compact(at_rev);
        kept.map(|i| self.generations[gi].revs[i])
    }

    /// Every revision `compact(at_rev)` would remove, ascending, as stored
    /// (a closed generation's last revision is its tombstone); does not
    /// change the index. Always a prefix of the history: what compaction
    /// drops is older than anything it keeps.
    pub fn compact_drops(&self, at_rev: i64) -> Vec<RevisionKey> {
        let (gi, kept) = self.plan_compact(at_rev);
        let mut out = Vec::new();
        // Every generation before `gi` is closed: its last revision is its
        // tombstone.
        for g in &self.generations[..gi] {
            let n = g.revs.len();
            out.extend(g.revs.iter().enumerate().map(|(j, r)| RevisionKey::new(*r, j + 1 == n)));
        }
        if let Some(i) = kept {
            // The kept revision is the last dropped one's successor, so no
            // dropped revision of this generation is its tombstone.
            out.extend(self.generations[gi].revs[..i].iter().map(|r| RevisionKey::new(*r, false)));
        }
        out
    }

    /// True when a revision after `rev` with the same main revision is held.
    pub fn modified_after_within(&self, rev: Revision) -> bool {
        self.generations.iter().flat_map(|g| g.revs.iter()).any(|r| r.main == rev.main && *r > rev)
    }

    /// True when `rev` is held.
    pub fn contains(&self, rev: Revision) -> bool {
        self.generations.iter().any(|g| g.revs.binary_search(&rev).is_ok())
    }

    /// Compacts at `at_rev` (see the module docs); returns the revision kept
    /// among those `<= at_rev`, if any. Check [`KeyIndex::is_empty`] after.
    pub fn compact(&mut self, at_rev: i64) -> Option<Revision> {
        let (gi, kept) = self.plan_compact(at_rev);
        let rev = kept.map(|i| {
            let g = &mut self.generations[gi];
            g.revs.drain(..i);
            g.revs[0]
        });
        self.generations.drain(..gi);
        rev
    }
}

/// Format byte of [`KeyIndex::encode`].
const ENCODING_V1: u8 = 1;

impl KeyIndex {
    /// The stored form (the stored key index's values): a format byte, then
    /// LEB128 varints: the number of generations, and per generation its
    /// version, created revision (main, sub), number of revisions and the
    /// revisions (main, sub). A key put once takes about 14 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(ENCODING_V1);
        put_varint(out, self.generations.len() as u64);
        for g in &self.generations {
            put_varint(out, g.ver as u64);
            put_rev(out, g.created);
            put_varint(out, g.revs.len() as u64);
            for r in &g.revs {
                put_rev(out, *r);
            }
        }
    }

    /// Reads [`KeyIndex::encode`]'s form, checking every invariant of the
    /// module docs: bytes this crate did not write are an error, not a panic.
    pub fn decode(bytes: &[u8]) -> Result<KeyIndex, MvccError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != ENCODING_V1 {
            return Err(corrupt("unknown key index format"));
        }
        let n = r.count()?;
        if n == 0 {
            return Err(corrupt("key index without a generation"));
        }
        let mut generations = SmallVec::with_capacity(n);
        let mut last = None;
        for i in 0..n {
            let ver = r.int()?;
            let created = r.rev()?;
            let len = r.count()?;
            let mut revs = Revs::with_capacity(len);
            for _ in 0..len {
                let rev = r.rev()?;
                if last.is_some_and(|l| rev <= l) {
                    return Err(corrupt("key index revisions out of order"));
                }
                last = Some(rev);
                revs.push(rev);
            }
            if i + 1 < n && revs.is_empty() {
                return Err(corrupt("key index with an empty closed generation"));
            }
            if (ver as usize) < revs.len() {
                return Err(corrupt("key index version below its revision count"));
            }
            generations.push(Generation { ver, created, revs });
        }
        if r.pos != bytes.len() {
            return Err(corrupt("trailing bytes after a key index"));
        }
        Ok(KeyIndex { generations })
    }
}

fn corrupt(what: &str) -> MvccError {
    MvccError::Corrupt(what.to_string())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_rev(out: &mut Vec<u8>, r: Revision) {
    put_varint(out, r.main as u64);
    put_varint(out, r.sub as u64);
}

/// A cursor over an encoded key index.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, MvccError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| corrupt("truncated key index"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, MvccError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("key index varint too long"))
    }

    /// A non-negative i64.
    fn int(&mut self) -> Result<i64, MvccError> {
        i64::try_from(self.varint()?).map_err(|_| corrupt("key index number out of range"))
    }

    /// A count bounded by the bytes left (each item takes at least one byte),
    /// so a corrupt count cannot make the decoder allocate without bound.
    fn count(&mut self) -> Result<usize, MvccError> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err(corrupt("key index count beyond its bytes"));
        }
        Ok(n as usize)
    }

    fn rev(&mut self) -> Result<Revision, MvccError> {
        Ok(Revision::new(self.int()?, self.int()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn a_fresh_or_single_put_history_lives_inline() {
        // The index holds one KeyIndex per key: its size is per-key memory.
        assert_eq!(std::mem::size_of::<Revs>(), 24, "as small as a Vec");
        assert!(std::mem::size_of::<KeyIndex>() <= 56);
        let mut ki = KeyIndex::new();
        assert!(!ki.generations.spilled());
        ki.put(r(2));
        assert!(!ki.generations.spilled() && !ki.generations[0].revs.spilled());
        ki.put(r(3));
        assert!(ki.generations[0].revs.spilled(), "a second revision moves to the heap");
        ki.compact(3);
        assert_eq!(ki.generations[0].revs.as_slice(), [r(3)]);
    }

    fn g(created: i64, ver: i64, revs: &[Revision]) -> Generation {
        Generation { ver, created: r(created), revs: Revs::from_slice(revs) }
    }

    /// etcd's newTestKeyIndex: put 2, 4; delete 6; put 8, 10; delete 12;
    /// put 14, 15.1; delete 16.
    fn test_index() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        ki.put(r(10));
        assert!(ki.tombstone(r(12)));
        ki.put(r(14));
        ki.put(Revision::new(15, 1));
        assert!(ki.tombstone(r(16)));
        ki
    }

    #[test]
    fn get_after_compact_matches_etcd() {
        let mut ki = test_index();
        ki.compact(4);
        let found = |m: i64, c: i64, v: i64| Some((r(m), r(c), v));
        type Want = Option<(Revision, Revision, i64)>;
        let cases: Vec<(i64, Want)> = vec![
            (17, None),
            (16, None),
            (15, Some((Revision::new(15, 1), r(14), 2))),
            (14, found(14, 14, 1)),
            (13, None),
            (12, None),
            (11, found(10, 8, 2)),
            (10, found(10, 8, 2)),
            (9, found(8, 8, 1)),
            (8, found(8, 8, 1)),
            (7, None),
            (6, None),
            (5, found(4, 2, 2)),
            (4, found(4, 2, 2)),
            (3, None),
            (2, None),
            (1, None),
            (0, None),
        ];
        for (at, want) in cases {
            let got = ki.get(at).map(|k| (k.modified, k.created, k.version));
            assert_eq!(got, want, "get({at})");
        }
    }

    #[test]
    fn find_generation_matches_etcd() {
        let ki = test_index();
        let gens = ki.generations();
        let cases: [(i64, Option<usize>); 14] = [
            (0, None),
            (1, None),
            (2, Some(0)),
            (3, Some(0)),
            (4, Some(0)),
            (5, Some(0)),
            (6, None),
            (7, None),
            (8, Some(1)),
            (9, Some(1)),
            (10, Some(1)),
            (11, Some(1)),
            (12, None),
            (13, None),
        ];
        for (at, want) in cases {
            let got = ki.find_generation(at);
            assert_eq!(got, want.map(|i| &gens[i]), "find_generation({at})");
        }
    }

    /// etcd's TestKeyIndexCompactAndKeep table (3.5.33): the index after
    /// compact(n) and the revision kept.
    fn compact_table() -> Vec<(i64, Vec<Generation>, Option<Revision>)> {
        let g1 = |revs: &[Revision]| g(2, 3, revs);
        let g2 = |revs: &[Revision]| g(8, 3, revs);
        let g3 = |revs: &[Revision]| g(14, 3, revs);
        let r151 = Revision::new(15, 1);
        let full1 = g1(&[r(2), r(4), r(6)]);
        let full2 = g2(&[r(8), r(10), r(12)]);
        let full3 = g3(&[r(14), r151, r(16)]);
        let empty = Generation::default();
        vec![
            (1, vec![full1.clone(), full2.clone(), full3.clone(), empty.clone()], None),
            (2, vec![full1.clone(), full2.clone(), full3.clone(), empty.clone()], Some(r(2))),
            (3, vec![full1.clone(), full2.clone(), full3.clone(), empty.clone()], Some(r(2))),
            (4, vec![g1(&[r(4), r(6)]), full2.clone(), full3.clone(), empty.clone()], Some(r(4))),
            (5, vec![g1(&[r(4), r(6)]), full2.clone(), full3.clone(), empty.clone()], Some(r(4))),
            (6, vec![g1(&[r(6)]), full2.clone(), full3.clone(), empty.clone()], Some(r(6))),
            (7, vec![full2.clone(), full3.clone(), empty.clone()], None),
            (8, vec![full2.clone(), full3.clone(), empty.clone()], Some(r(8))),
            (9, vec![full2.clone(), full3.clone(), empty.clone()], Some(r(8))),
            (10, vec![g2(&[r(10), r(12)]), full3.clone(), empty.clone()], Some(r(10))),
            (11, vec![g2(&[r(10), r(12)]), full3.clone(), empty.clone()], Some(r(10))),
            (12, vec![g2(&[r(12)]), full3.clone(), empty.clone()], Some(r(12))),
            (13, vec![full3.clone(), empty.clone()], None),
            (14, vec![full3.clone(), empty.clone()], Some(r(14))),
            (15, vec![g3(&[r151, r(16)]), empty.clone()], Some(r151)),
            (16, vec![g3(&[r(16)]), empty.clone()], Some(r(16))),
            (17, vec![empty], None),
        ]
    }

    #[test]
    fn continuous_compaction_matches_etcd() {
        let mut ki = test_index();
        for (at, want_gens, want_kept) in compact_table() {
            let before = ki.clone();
            assert_eq!(ki.compact_keep(at), want_kept, "compact_keep({at})");
            assert_eq!(ki, before, "compact_keep must not change the index");
            assert_eq!(ki.compact(at), want_kept, "compact({at}) kept");
            assert_eq!(ki.generations(), &want_gens[..], "compact({at}) generations");
            if !ki.is_empty() {
                assert_eq!(ki.modified(), r(16));
            }
        }
        assert!(ki.is_empty());
    }

    #[test]
    fn one_shot_compaction_matches_etcd() {
        for (at, want_gens, want_kept) in compact_table() {
            let mut ki = test_index();
            let all: Vec<Revision> = ki.generations().iter().flat_map(|g| g.revs.iter().copied()).collect();
            let left: Vec<Revision> = want_gens.iter().flat_map(|g| g.revs.iter().copied()).collect();
            let drops = ki.compact_drops(at);
            let revs: Vec<Revision> = drops.iter().map(|d| d.rev).collect();
            assert_eq!(revs, all[..all.len() - left.len()], "compact_drops({at}) is the dropped prefix");
            // Tombstones of etcd's test index: 6, 12 and 16.
            assert!(drops.iter().all(|d| d.tombstone == [6, 12, 16].contains(&d.rev.main)), "{drops:?}");
            assert!(revs.iter().all(|r| ki.contains(*r)) && left.iter().all(|r| ki.contains(*r)));
            assert_eq!(ki.compact(at), want_kept, "compact({at}) kept");
            assert_eq!(ki.generations(), &want_gens[..], "compact({at})");
            assert_eq!(ki.is_empty(), at == 17);
        }
    }

    #[test]
    fn compact_on_further_rev() {
        let mut ki = KeyIndex::new();
        ki.put(r(1));
        ki.put(r(2));
        assert_eq!(ki.compact(3), Some(r(2)));
        assert_eq!(ki.generations(), &[g(1, 2, &[r(2)])]);
        assert_eq!(ki.get(3).map(|k| k.version), Some(2));
    }

    #[test]
    fn restore_tombstone_matches_etcd() {
        let mut ki = KeyIndex::new();
        ki.restore_tombstone(r(16));
        for at in 16..=20 {
            assert_eq!(ki.get(at), None);
        }
        assert_eq!(ki.compact_keep(16), Some(r(16)));
        ki.put(r(17));
        ki.put(r(18));
        assert_eq!(ki.get(18).map(|k| (k.created, k.version)), Some((r(17), 2)));
        assert_eq!(ki.compact(17), Some(r(17)));
        assert_eq!(ki.generations().len(), 1);
        assert_eq!(ki.generations()[0].revs.as_slice(), [r(17), r(18)]);
    }

    #[test]
    fn restore_keeps_version_and_created() {
        let mut ki = KeyIndex::new();
        ki.restore(r(3), r(9), 5);
        ki.put(r(10));
        let at = ki.get(10).unwrap();
        assert_eq!((at.created, at.version), (r(3), 6));
        assert_eq!(ki.get(9).unwrap().version, 5);
        assert_eq!(ki.get(8), None);
    }

    #[test]
    fn tombstone_on_missing_key_is_refused() {
        let mut ki = KeyIndex::new();
        assert!(!ki.tombstone(r(1)));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        assert!(!ki.tombstone(r(4)));
        assert_eq!(ki.modified(), r(3));
        assert_eq!(ki.generations().len(), 2);
    }

    #[test]
    #[should_panic(expected = "key index invariant broken")]
    fn put_must_advance() {
        let mut ki = KeyIndex::new();
        ki.put(r(5));
        ki.put(r(5));
    }

    #[test]
    fn new_generation_version_restarts() {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(3));
        assert!(ki.tombstone(r(4)));
        ki.put(r(5));
        let at = ki.get(5).unwrap();
        assert_eq!((at.created, at.version), (r(5), 1));
        assert_eq!(ki.get(3).unwrap().version, 2);
    }

    #[test]
    fn same_txn_changes_use_highest_sub() {
        let mut ki = KeyIndex::new();
        ki.put(Revision::new(5, 0));
        ki.put(Revision::new(5, 1));
        assert_eq!(ki.get(5).unwrap().modified, Revision::new(5, 1));
        assert_eq!(ki.get(5).unwrap().version, 2);
        assert!(ki.tombstone(Revision::new(5, 2)));
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(4), None);
    }

    #[test]
    fn compaction_with_several_generations_in_one_txn() {
        let rv = Revision::new;
        // Txn 2: put, delete, put; compaction at 2 keeps the final put.
        let mut ki = KeyIndex::new();
        ki.put(rv(2, 0));
        assert!(ki.tombstone(rv(2, 1)));
        ki.put(rv(2, 2));
        assert_eq!(ki.compact_keep(2), Some(rv(2, 2)));
        assert_eq!(ki.compact(2), Some(rv(2, 2)));
        assert_eq!(ki.generations(), &[Generation { ver: 1, created: rv(2, 2), revs: smallvec![rv(2, 2)] }]);
        // Txn 3: delete, put, delete; the final tombstone at 3 is kept, then
        // dropped by the next compaction.
        assert!(ki.tombstone(rv(3, 0)));
        ki.put(rv(3, 1));
        assert!(ki.tombstone(rv(3, 2)));
        assert_eq!(ki.compact(3), Some(rv(3, 2)));
        assert_eq!(ki.generations().len(), 2);
        assert_eq!(ki.generations()[0].revs.as_slice(), [rv(3, 2)]);
        assert_eq!(ki.get(3), None);
        ki.compact(4);
        assert!(ki.is_empty());
    }

    #[test]
    fn prev_in_generation() {
        let ki = test_index();
        assert_eq!(ki.prev_in_generation(r(2)), None);
        assert_eq!(ki.prev_in_generation(r(4)), Some(r(2)));
        assert_eq!(ki.prev_in_generation(r(6)), Some(r(4)));
        assert_eq!(ki.prev_in_generation(r(8)), None);
        assert_eq!(ki.prev_in_generation(r(16)), Some(Revision::new(15, 1)));
        assert_eq!(ki.prev_in_generation(r(3)), None);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut fresh = KeyIndex::new();
        let mut one = KeyIndex::new();
        one.put(Revision::new(300, 2));
        let mut restored = KeyIndex::new();
        restored.restore_tombstone(r(9));
        for ki in [test_index(), fresh.clone(), one.clone(), restored] {
            let mut bytes = Vec::new();
            ki.encode(&mut bytes);
            assert_eq!(KeyIndex::decode(&bytes).unwrap(), ki);
            // Every strict prefix and every one-byte change is either an
            // error or decodes to a history that keeps the invariants.
            for cut in 0..bytes.len() {
                assert!(KeyIndex::decode(&bytes[..cut]).is_err(), "prefix {cut} of {ki:?}");
            }
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = bytes.clone();
                    bad[i] ^= flip;
                    if let Ok(mut k) = KeyIndex::decode(&bad) {
                        let m = k.modified();
                        k.put(Revision::new(m.main + 1, 0));
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        one.encode(&mut bytes);
        assert!(bytes.len() <= 14, "a key put once takes {} bytes", bytes.len());
        fresh.put(r(2));
        assert!(KeyIndex::decode(&[1, 0]).is_err());
        assert!(KeyIndex::decode(&[2, 1, 0, 0, 0, 0]).is_err());
        assert!(KeyIndex::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        // Revisions out of order, and an empty closed generation.
        assert!(KeyIndex::decode(&[1, 1, 2, 0, 0, 2, 5, 0, 4, 0]).is_err());
        assert!(KeyIndex::decode(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
