//! Read requests and results: [`KeyRange`], [`RangeOptions`], [`RangeResult`],
//! and [`KvSink`] for reads handed over as they are read.
//!
//! `KeyRange` follows etcd's `(key, range_end)` convention (see
//! [`KeyRange::from_etcd`]): e.g. `("a", "")` is the single key `a`,
//! `("a", "\0")` is every key `>= a`, `("a", "c")` is `[a, c)`, and
//! `("c", "a")` is empty.

use std::ops::Bound;

use super::error::MvccError;
use super::kv::KeyValue;

/// Borrowed range bounds over byte keys, as ordered maps take them.
pub type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a read or delete applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// `[start, end)`; empty when `end <= start`.
    Range { start: Vec<u8>, end: Vec<u8> },
    /// Every key `>= start`.
    FromKey(Vec<u8>),
}

impl KeyRange {
    /// etcd's convention: range_end empty = single key; range_end == [0] = every
    /// key >= key; else [key, range_end). (If range_end <= key in the Range case
    /// the range is empty.)
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::FromKey(key.to_vec()),
            end => KeyRange::Range { start: key.to_vec(), end: end.to_vec() },
        }
    }

    /// True when `k` is in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key.as_slice() == k,
            KeyRange::Range { start, end } => start.as_slice() <= k && k < end.as_slice(),
            KeyRange::FromKey(start) => start.as_slice() <= k,
        }
    }

    /// The range as bounds for ordered-map range queries; `None` when empty.
    /// The returned bounds never have start > end, so `BTreeMap::range` and
    /// skip-list ranges accept them.
    pub fn bounds(&self) -> Option<ByteBounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::Range { start, end } if start < end => Some((Bound::Included(start), Bound::Excluded(end))),
            KeyRange::Range { .. } => None,
            KeyRange::FromKey(start) => Some((Bound::Included(start), Bound::Unbounded)),
        }
    }
}

/// Options of a read.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeOptions {
    /// Maximum number of kvs returned; 0 = no limit.
    pub limit: i64,
    /// Revision to read at; <= 0 = current.
    pub rev: i64,
    /// Return only `count`, no kvs.
    pub count_only: bool,
}

/// The answer to a read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeResult {
    /// Matching kvs in ascending key order, at most `limit`.
    pub kvs: Vec<KeyValue>,
    /// Keys in range at the read revision, ignoring limit (etcd's `count`;
    /// `more` = `count > kvs.len()`).
    pub count: i64,
    /// The store's current revision (NOT the requested one), as etcd.
    pub rev: i64,
}

/// Receives a read's key-values one at a time, in ascending key order
/// ([`crate::MvccStore::range_into`]), so a large answer can be turned into
/// its reply as it is read instead of being held whole first.
pub trait KvSink {
    /// Called once, before the first key-value: how many follow.
    fn start(&mut self, values: usize);
    /// The next key-value. An error stops the read and is returned by it.
    fn kv(&mut self, kv: KeyValue) -> Result<(), MvccError>;
}

impl KvSink for Vec<KeyValue> {
    fn start(&mut self, values: usize) {
        self.reserve_exact(values);
    }
    fn kv(&mut self, kv: KeyValue) -> Result<(), MvccError> {
        self.push(kv);
        Ok(())
    }
}

/// What a read answers besides its key-values (see [`RangeResult`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeTotals {
    pub count: i64,
    pub rev: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_etcd_conventions() {
        assert_eq!(KeyRange::from_etcd(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::from_etcd(b"a", b"\0"), KeyRange::FromKey(b"a".to_vec()));
        assert_eq!(KeyRange::from_etcd(b"a", b"c"), KeyRange::Range { start: b"a".to_vec(), end: b"c".to_vec() });
    }

    #[test]
    fn contains_and_bounds() {
        let single = KeyRange::from_etcd(b"b", b"");
        assert!(single.contains(b"b") && !single.contains(b"ba") && !single.contains(b"a"));
        let range = KeyRange::from_etcd(b"b", b"d");
        assert!(range.contains(b"b") && range.contains(b"cz") && !range.contains(b"d"));
        assert!(!range.contains(b"a"));
        let from = KeyRange::from_etcd(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"\xff\xff") && !from.contains(b"a"));
        let inverted = KeyRange::from_etcd(b"d", b"b");
        assert!(!inverted.contains(b"c") && !inverted.contains(b"d"));
        assert!(inverted.bounds().is_none());
        assert!(KeyRange::from_etcd(b"b", b"b").bounds().is_none());
        assert!(range.bounds().is_some() && single.bounds().is_some());
    }
}
