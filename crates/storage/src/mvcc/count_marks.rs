//! Count marks: what a large range's count learned, kept by position, so
//! the pages of a paginated list cost about their page instead of the
//! whole range.
//!
//! etcd answers every range with `count`, the number of keys in the whole
//! range, however small its `limit`. A Kubernetes LIST pages with `limit`
//! 500 and a start just past the previous page, at the revision of its
//! first page: without marks every page counts the rest of the range, so a
//! LIST of a million pods walks some 10^9 histories.
//!
//! Why a count can be kept: whether a key exists at a published revision
//! R never changes. Later writes make later revisions; a compaction at
//! C <= R keeps each key's revision at R; reads below C fail before they
//! count. So "the keys in [p, end) at R" is a fixed number, a *mark* at p.
//! A count that walks past [`MARK_EVERY`] keys records a mark every
//! [`MARK_EVERY`] keys; a later count at the same end and revision, once its
//! page is full, stops at the first mark ahead and adds it.
//!
//! Invariants:
//! - Marks are made and used only at revisions the store has published (a
//!   txn reading its own view at begin + 1 may still fail and another txn
//!   commit that revision), and per history epoch (a snapshot install
//!   changes what this member holds at a revision; the store also clears
//!   them then).
//! - Bounded: at most [`MAX_MARKS`] marks and [`MAX_MARK_BYTES`] of their
//!   keys in all (a key may be as large as a request); the scope (end, revision)
//!   used least recently goes first.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use parking_lot::Mutex;

use super::range::KeyRange;

/// A count records a mark every this many keys it walks, and a page
/// looks for one once it is full and has walked this many.
pub(super) const MARK_EVERY: i64 = 1024;

/// Marks kept in all (about 150 bytes each with a Kubernetes-sized key).
const MAX_MARKS: usize = 1 << 15;

/// Bytes of marks kept in all, counted as [`mark_bytes`].
const MAX_MARK_BYTES: usize = 16 << 20;

/// What a mark costs: its key and about what a B-tree entry adds.
fn mark_bytes(key: &[u8]) -> usize {
    key.len() + 64
}

/// What a mark counts to: a range's end (None: no end), at a revision, in
/// a history epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Scope {
    end: Option<Vec<u8>>,
    rev: i64,
    epoch: u64,
}

impl Scope {
    /// The scope of `range` at `rev`; None for a single key (nothing to
    /// page) or an empty range.
    pub(super) fn of(range: &KeyRange, rev: i64, epoch: u64) -> Option<Scope> {
        let end = match range {
            KeyRange::Single(_) => return None,
            KeyRange::Range { start, end } if start < end => Some(end.clone()),
            KeyRange::Range { .. } => return None,
            KeyRange::FromKey(_) => None,
        };
        Some(Scope { end, rev, epoch })
    }
}

struct Marks {
    /// Mark key -> keys in [mark key, end) at the scope's revision.
    at: BTreeMap<Vec<u8>, i64>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    scopes: HashMap<Scope, Marks>,
    total: usize,
    bytes: usize,
    clock: u64,
}

/// The marks of one store. See the module docs.
pub(super) struct CountMarks {
    inner: Mutex<Inner>,
    every: std::sync::atomic::AtomicI64,
}

impl Default for CountMarks {
    fn default() -> Self {
        CountMarks { inner: Mutex::default(), every: MARK_EVERY.into() }
    }
}

impl CountMarks {
    /// The first mark strictly after `key` in `scope`: its key and count.
    fn after(&self, scope: &Scope, key: &[u8]) -> Option<(Vec<u8>, i64)> {
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let marks = inner.scopes.get_mut(scope)?;
        marks.used = now;
        let (k, n) = marks.at.range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded)).next()?;
        Some((k.clone(), *n))
    }

    /// Adds marks to `scope`, making room by forgetting the scopes used
    /// least recently (and, for one scope alone over the bound, its own
    /// older marks).
    fn record(&self, scope: Scope, mut new: Vec<(Vec<u8>, i64)>) {
        let mut inner = self.inner.lock();
        if let Some(marks) = inner.scopes.get(&scope) {
            new.retain(|(k, _)| !marks.at.contains_key(k));
        }
        if new.is_empty() {
            return;
        }
        let sum = |new: &[(Vec<u8>, i64)]| new.iter().map(|(k, _)| mark_bytes(k)).sum::<usize>();
        let mut new_bytes = sum(&new);
        if new.len() > MAX_MARKS || new_bytes > MAX_MARK_BYTES {
            let step = new.len().div_ceil(MAX_MARKS).max(new_bytes.div_ceil(MAX_MARK_BYTES)).max(2);
            new = new.into_iter().step_by(step).collect();
            new_bytes = sum(&new);
            if new_bytes > MAX_MARK_BYTES {
                return;
            }
        }
        while inner.total + new.len() > MAX_MARKS || inner.bytes + new_bytes > MAX_MARK_BYTES {
            let victim = inner
                .scopes
                .iter()
                .filter(|(s, _)| **s != scope)
                .min_by_key(|(_, m)| m.used)
                .map_or_else(|| scope.clone(), |(s, _)| s.clone());
            match inner.scopes.remove(&victim) {
                Some(m) => {
                    inner.total -= m.at.len();
                    inner.bytes -= m.bytes;
                }
                None => {
                    inner.total = 0;
                    inner.bytes = 0;
                    break;
                }
            }
        }
        inner.clock += 1;
        let now = inner.clock;
        inner.total += new.len();
        inner.bytes += new_bytes;
        let marks = inner.scopes.entry(scope).or_insert_with(|| Marks { at: BTreeMap::new(), bytes: 0, used: now });
        marks.used = now;
        marks.bytes += new_bytes;
        marks.at.extend(new);
    }

    /// Forgets every mark (a new state was loaded or installed).
    pub(super) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.scopes.clear();
        inner.total = 0;
        inner.bytes = 0;
    }

    /// Marks kept in all.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner.lock().total
    }

    /// Bytes of marks kept in all.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Spacing of marks (tests make it small to reach marks with few keys).
    #[cfg(test)]
    pub(super) fn set_every(&self, every: i64) {
        self.every.store(every.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// A walk over `scope` (None: counted without marks).
    pub(super) fn walk(&self, scope: Option<Scope>) -> CountWalk<'_> {
        let every = self.every.load(std::sync::atomic::Ordering::Relaxed);
        CountWalk { marks: self, scope, every, until_mark: every, walked: 0, ahead: None, tail: None, seen: Vec::new() }
    }
}

/// One count's walk over a range, key by key in ascending order.
pub(super) struct CountWalk<'a> {
    marks: &'a CountMarks,
    scope: Option<Scope>,
    every: i64,
    /// Keys to count before the next mark.
    until_mark: i64,
    /// Keys counted so far.
    walked: i64,
    /// The mark to stop at.
    ahead: Option<(Vec<u8>, i64)>,
    /// The count of the mark it stopped at.
    tail: Option<i64>,
    /// Marks to record: a key and the keys walked before it.
    seen: Vec<(Vec<u8>, i64)>,
}

impl CountWalk<'_> {
    /// Counts `key`, the next key of the range; false when a mark ahead
    /// already counts it and every key after it (stop walking).
    pub(super) fn count(&mut self, key: &[u8]) -> bool {
        if let Some((mark, n)) = &self.ahead {
            if key >= mark.as_slice() {
                self.tail = Some(*n);
                return false;
            }
        }
        self.walked += 1;
        true
    }

    /// After [`Self::count`] said true: `full` when the page needs no more
    /// keys, so the rest may come from a mark.
    pub(super) fn counted(&mut self, key: &[u8], full: bool) {
        let Some(scope) = &self.scope else {
            return;
        };
        self.until_mark -= 1;
        if self.until_mark > 0 {
            return;
        }
        self.until_mark = self.every;
        self.seen.push((key.to_vec(), self.walked - 1));
        if full && self.ahead.is_none() {
            self.ahead = self.marks.after(scope, key);
        }
    }

    /// The count of the whole range; records what the walk learned.
    pub(super) fn finish(self) -> i64 {
        let total = self.walked + self.tail.unwrap_or(0);
        if let Some(scope) = self.scope {
            let marks = self.seen.into_iter().map(|(k, before)| (k, total - before)).collect();
            self.marks.record(scope, marks);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Vec<u8> {
        format!("k{i:06}").into_bytes()
    }

    /// Counts keys `from..n` (all existing) as a page of `limit` would.
    fn count(m: &CountMarks, scope: &Scope, from: usize, n: usize, limit: usize) -> (i64, usize) {
        let mut walk = m.walk(Some(scope.clone()));
        let mut visited = 0;
        for i in from..n {
            visited += 1;
            if !walk.count(&key(i)) {
                break;
            }
            walk.counted(&key(i), i + 1 - from >= limit);
        }
        (walk.finish(), visited)
    }

    #[test]
    fn pages_after_the_first_count_walk_about_their_page() {
        let m = CountMarks::default();
        m.set_every(10);
        let scope = Scope::of(&KeyRange::FromKey(key(0)), 5, 0).unwrap();
        let n = 1000;
        assert_eq!(count(&m, &scope, 0, n, 5), (1000, 1000), "the first walks everything");
        assert_eq!(m.len(), 100);
        for from in [0, 1, 5, 9, 10, 11, 500, 989, 990, 991, 999] {
            let (total, visited) = count(&m, &scope, from, n, 5);
            assert_eq!(total, (n - from) as i64, "from {from}");
            assert!(visited <= 21, "from {from}: visited {visited}");
        }
        // A page that wants more keys than the marks skip walks them all.
        assert_eq!(count(&m, &scope, 0, n, 2000), (1000, 1000));
        // Another revision or end knows nothing.
        let other = Scope::of(&KeyRange::FromKey(key(0)), 6, 0).unwrap();
        assert_eq!(count(&m, &other, 500, n, 5), (500, 500));
    }

    #[test]
    fn single_keys_and_empty_ranges_have_no_scope() {
        assert_eq!(Scope::of(&KeyRange::Single(b"a".to_vec()), 1, 0), None);
        let empty = KeyRange::Range { start: b"b".to_vec(), end: b"a".to_vec() };
        assert_eq!(Scope::of(&empty, 1, 0), None);
        assert!(Scope::of(&KeyRange::Range { start: b"a".to_vec(), end: b"b".to_vec() }, 1, 0).is_some());
    }

    #[test]
    fn marks_stay_bounded_and_the_least_used_scope_goes_first() {
        let m = CountMarks::default();
        m.set_every(1);
        let scope = |rev| Scope::of(&KeyRange::FromKey(Vec::new()), rev, 0).unwrap();
        let per = MAX_MARKS / 4;
        for rev in 0..4 {
            count(&m, &scope(rev), 0, per, 1);
        }
        assert_eq!(m.len(), MAX_MARKS);
        // Scope 0 used again (it stops at the mark after its first key):
        // scope 1 is now the oldest and goes first.
        assert_eq!(count(&m, &scope(0), 10, per, 1).1, 2);
        assert_eq!(m.len(), MAX_MARKS, "nothing new to record");
        count(&m, &scope(9), 0, per, 1);
        assert_eq!(m.len(), MAX_MARKS);
        assert_eq!(count(&m, &scope(0), 10, per, 1).1, 2, "kept");
        assert_eq!(count(&m, &scope(1), 10, per, 1).1, per - 10, "forgotten");
        m.clear();
        assert_eq!(m.len(), 0);
    }

    /// Keys as large as a request: the bytes bound, not the count.
    #[test]
    fn large_keys_are_bounded_by_bytes() {
        let m = CountMarks::default();
        m.set_every(1);
        let big = |i: usize| [format!("k{i:06}").as_bytes(), &[b'x'; 100_000][..]].concat();
        let scope = |rev| Scope::of(&KeyRange::FromKey(Vec::new()), rev, 0).unwrap();
        for rev in 0..4 {
            let mut walk = m.walk(Some(scope(rev)));
            for i in 0..200 {
                assert!(walk.count(&big(i)));
                walk.counted(&big(i), false);
            }
            assert_eq!(walk.finish(), 200);
            assert!(m.bytes() <= MAX_MARK_BYTES, "{} bytes", m.bytes());
            assert!(m.len() > 0 && m.len() <= MAX_MARK_BYTES / 100_000);
        }
    }
}
