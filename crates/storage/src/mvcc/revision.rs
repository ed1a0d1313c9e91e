//! Revisions and their byte encoding in [`Table::Key`](crate::Table::Key)
//! (the whole on-disk layout is in [`crate::schema`]).
//!
//! A revision is `(main, sub)`: `main` is the store revision of a write txn,
//! `sub` numbers the changes inside that txn from 0. Revisions order by `main`
//! then `sub`.
//!
//! Encoding (etcd's bucket-key layout): 8-byte big-endian `main`, `b'_'`, 8-byte
//! big-endian `sub`, plus a trailing `b't'` when the revision is a tombstone
//! (a delete). Because both halves are big-endian and never negative, byte
//! order equals revision order, so an engine scan walks history in revision
//! order. Example: `(2, 1)` encodes as `00 00 00 00 00 00 00 02 5f 00 00 00 00
//! 00 00 00 01`; a deletion at `(3, 0)` as `..03 5f ..00 74`.
//!
//! Invariant: only non-negative revisions are encoded; decoding rejects
//! anything that is not exactly this layout with [`MvccError::Corrupt`].

use std::fmt;

use super::error::MvccError;

/// Length of an encoded revision without the tombstone mark.
pub(crate) const REVISION_BYTES: usize = 17;
/// Length of an encoded tombstone revision.
pub(crate) const TOMBSTONE_REVISION_BYTES: usize = 18;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history: `main` is the txn revision, `sub` the
/// change number inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The 17-byte encoding (no tombstone mark). Negative parts are clamped to 0,
    /// which only matters for scan bounds built from caller input.
    pub(crate) fn to_bytes(self) -> [u8; REVISION_BYTES] {
        let mut b = [0u8; REVISION_BYTES];
        b[..8].copy_from_slice(&(self.main.max(0) as u64).to_be_bytes());
        b[8] = SEPARATOR;
        b[9..].copy_from_slice(&(self.sub.max(0) as u64).to_be_bytes());
        b
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// A key of [`Table::Key`](crate::Table::Key): a revision plus whether it is a
/// tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RevisionKey {
    pub rev: Revision,
    pub tombstone: bool,
}

impl RevisionKey {
    pub fn new(rev: Revision, tombstone: bool) -> Self {
        RevisionKey { rev, tombstone }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOMBSTONE_REVISION_BYTES);
        v.extend_from_slice(&self.rev.to_bytes());
        if self.tombstone {
            v.push(TOMBSTONE_MARK);
        }
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Result<RevisionKey, MvccError> {
        let bad = || MvccError::Corrupt(format!("invalid revision key {b:02x?}"));
        let tombstone = match b.len() {
            REVISION_BYTES => false,
            TOMBSTONE_REVISION_BYTES if b[REVISION_BYTES] == TOMBSTONE_MARK => true,
            _ => return Err(bad()),
        };
        if b[8] != SEPARATOR {
            return Err(bad());
        }
        let part = |s: &[u8]| -> Result<i64, MvccError> {
            let arr: [u8; 8] = s.try_into().map_err(|_| bad())?;
            i64::try_from(u64::from_be_bytes(arr)).map_err(|_| bad())
        };
        Ok(RevisionKey { rev: Revision::new(part(&b[..8])?, part(&b[9..17])?), tombstone })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_etcd() {
        let k = RevisionKey::new(Revision::new(2, 1), false).encode();
        assert_eq!(k, [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1].to_vec());
        let t = RevisionKey::new(Revision::new(3, 0), true).encode();
        assert_eq!(t.len(), 18);
        assert_eq!(t[17], b't');
    }

    #[test]
    fn round_trip_and_order() {
        let revs = [
            (0, 0),
            (1, 0),
            (1, 1),
            (1, 255),
            (1, 256),
            (2, 0),
            (255, 7),
            (256, 0),
            (1 << 40, 3),
            (i64::MAX, i64::MAX),
        ];
        let mut prev: Option<Vec<u8>> = None;
        for (i, &(m, s)) in revs.iter().enumerate() {
            for tomb in [false, true] {
                let rk = RevisionKey::new(Revision::new(m, s), tomb);
                assert_eq!(RevisionKey::decode(&rk.encode()).unwrap(), rk);
            }
            let enc = RevisionKey::new(Revision::new(m, s), i % 2 == 0).encode();
            if let Some(p) = prev {
                assert!(p < enc, "byte order must follow revision order at {m}.{s}");
            }
            prev = Some(enc);
        }
    }

    #[test]
    fn ord_is_main_then_sub() {
        assert!(Revision::new(1, 9) < Revision::new(2, 0));
        assert!(Revision::new(2, 0) < Revision::new(2, 1));
    }

    #[test]
    fn decode_rejects_garbage() {
        let good = RevisionKey::new(Revision::new(5, 1), false).encode();
        let mut bad_sep = good.clone();
        bad_sep[8] = b'-';
        let mut bad_mark = good.clone();
        bad_mark.push(b'x');
        let mut negative = good.clone();
        negative[0] = 0x80;
        for b in [&b""[..], &good[..16], &bad_sep, &bad_mark, &negative] {
            assert!(matches!(RevisionKey::decode(b), Err(MvccError::Corrupt(_))));
        }
    }
}
