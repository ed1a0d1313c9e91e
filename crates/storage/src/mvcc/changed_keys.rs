//! [`ChangedKeys`]: the keys the writer changed while a compaction batch of
//! the stored key index read their histories without the writer mutex.
//!
//! A compaction batch rewrites up to a thousand histories. Reading them
//! again under the writer mutex held every put back for as long as those
//! reads took, and the compactor runs at nice +10: preempted while holding
//! the mutex, it holds the writer behind it. So the compactor keeps the
//! histories its slice scan read, and under the mutex reads again only the
//! keys the writer changed since the scan began. (At 2 M keys on three
//! members the compactor held or waited for the mutex 4-6 s of a 13-16 s
//! pass; the held part alone is now 0.4-1.0 s. docs/benchmarks.md, Scale.)
//!
//! Invariant: a change the writer did not report was in the engine before
//! the scan began. The writer reports after its engine write (and its cache
//! update); the compactor opens the watch before it starts the scan; both
//! take the same mutex, so either the report comes after the opening and is
//! kept, or the write happened before the scan and the scan read it.
//!
//! Bounded: past [`MAX_KEYS`] reports or [`MAX_BYTES`] of keys (a key may be
//! as large as a request) the watch forgets them and answers that every key
//! changed, which only costs the batch its reads under the mutex.

use std::collections::HashSet;

use parking_lot::Mutex;

/// Reports kept per batch before the watch gives up on naming them.
const MAX_KEYS: usize = 16_384;
/// The same bound on the bytes of the keys kept.
const MAX_BYTES: usize = 4 << 20;

#[derive(Default)]
struct Watch {
    open: bool,
    overflow: bool,
    keys: HashSet<Vec<u8>>,
    bytes: usize,
}

/// See the module docs.
#[derive(Default)]
pub struct ChangedKeys {
    watch: Mutex<Watch>,
}

/// What changed between [`ChangedKeys::open`] and [`ChangedKeys::close`].
pub enum Changed {
    /// Exactly these keys.
    Keys(HashSet<Vec<u8>>),
    /// Any key may have: too many reports, or the watch was not open.
    All,
}

impl Changed {
    /// True when `key`'s history must be read again.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Changed::Keys(keys) => keys.contains(key),
            Changed::All => true,
        }
    }
}

impl ChangedKeys {
    /// Starts watching, forgetting any earlier reports. Call before the scan.
    pub fn open(&self) {
        let mut w = self.watch.lock();
        w.open = true;
        w.overflow = false;
        w.keys.clear();
        w.bytes = 0;
    }

    /// Writer only, after its engine write and cache update: it changed
    /// `keys`. Nothing is kept while no watch is open.
    pub fn record<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let mut w = self.watch.lock();
        if !w.open || w.overflow {
            return;
        }
        for key in keys {
            if w.keys.len() >= MAX_KEYS || w.bytes + key.len() > MAX_BYTES {
                w.overflow = true;
                w.keys = HashSet::new();
                w.bytes = 0;
                return;
            }
            if w.keys.insert(key.to_vec()) {
                w.bytes += key.len();
            }
        }
    }

    /// Ends the watch and says what changed during it: complete only while
    /// the caller holds the writer mutex (a scan that read nothing to
    /// rewrite just drops the answer).
    pub fn close(&self) -> Changed {
        let mut w = self.watch.lock();
        let was_open = std::mem::replace(&mut w.open, false);
        let keys = std::mem::take(&mut w.keys);
        w.bytes = 0;
        if !was_open || w.overflow {
            return Changed::All;
        }
        Changed::Keys(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reports_made_while_open_are_kept() {
        let c = ChangedKeys::default();
        c.record([&b"before"[..]]);
        c.open();
        c.record([&b"a"[..], &b"b"[..]]);
        let changed = c.close();
        assert!(changed.contains(b"a") && changed.contains(b"b"));
        assert!(!changed.contains(b"before") && !changed.contains(b"c"));
        c.record([&b"after"[..]]);
        c.open();
        assert!(!c.close().contains(b"after"), "a new watch forgets what came between");
    }

    #[test]
    fn a_closed_or_overflowing_watch_names_every_key() {
        let c = ChangedKeys::default();
        assert!(c.close().contains(b"any"), "never opened");
        c.open();
        let many: Vec<Vec<u8>> = (0..=MAX_KEYS).map(|i| i.to_be_bytes().to_vec()).collect();
        c.record(many.iter().map(Vec::as_slice));
        c.record([&b"late"[..]]);
        assert!(c.close().contains(b"unrelated"));
        c.open();
        c.record([&b"x"[..]]);
        assert!(!c.close().contains(b"unrelated"), "the next watch starts exact again");
        c.open();
        let big = vec![7u8; MAX_BYTES / 2 + 1];
        c.record([&big[..], &[8u8; 3][..]]);
        assert!(!c.close().contains(b"unrelated"), "one large key fits");
        c.open();
        c.record([&big[..]]);
        c.record([&[9u8; MAX_BYTES / 2][..]]);
        assert!(c.close().contains(b"unrelated"), "two do not");
    }
}
