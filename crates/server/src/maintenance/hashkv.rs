//! etcd's HashKV: CRC-32C over the bucket name `key`, then every counted
//! (revision key, marshaled mvccpb.KeyValue) up to a revision. Which
//! revisions count (the compaction's keep set) and the retries when the
//! store changes under the scan are `storage::mvcc::hash`'s; this module
//! only does etcd's encoding and the CRC. Members with the same history
//! give the same hash as etcd, which is what `etcdctl endpoint hashkv` and
//! corruption checks compare.
//!
//! Invariants:
//! - The hash does not depend on how far the physical deletion of the last
//!   compaction got (`MvccStore::hash_scan`'s inputs do not), so a member
//!   still compacting hashes as one that finished.
//! - Whole-history scans (this hash and Maintenance.Hash) never run on an
//!   async worker: [`run_scan`] runs them on blocking threads, at most
//!   [`scan_slots`] at once, so a burst of them neither blocks the workers
//!   that answer keep-alives nor takes every core from them.

use prost::Message;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

use api::EtcdError;
use storage::MvccStore;

use crate::apply::range::to_pb_kv;
use crate::errors::from_mvcc;

/// etcd's name of the bucket of revisions, which its HashKV hashes first.
const ETCD_KEY_BUCKET: &[u8] = b"key";

/// Whole-history scans allowed at once: half the cores (at least one), so the
/// async workers always keep cores of their own however many clients ask.
/// Process-wide (a process runs one member; in-process test clusters share
/// it, which only makes them wait longer).
pub fn scan_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

static SCANS: OnceLock<Semaphore> = OnceLock::new();

/// Runs `scan` (a read of the whole history) on a blocking thread once one of
/// the [`scan_slots`] is free, waiting for it without holding a worker. The
/// slot moves into the blocking task, so a caller that gives up (client
/// deadline) does not free it before its scan really ends.
pub async fn run_scan<T: Send + 'static>(
    scan: impl FnOnce() -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, EtcdError> {
    run_limited(&SCANS, scan).await
}

/// Runs CPU-heavy `work` on a blocking thread once one of the
/// [`scan_slots`] of `slots` is free (see [`run_scan`]): for each kind of
/// such work (history scans, bcrypt), a bounded number at once, however
/// many clients ask and however soon they give up.
pub async fn run_limited<T: Send + 'static>(
    slots: &'static OnceLock<Semaphore>,
    work: impl FnOnce() -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, EtcdError> {
    let slots = slots.get_or_init(|| Semaphore::new(scan_slots()));
    let permit = slots.acquire().await.map_err(|e| EtcdError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        work()
    })
    .await
    .map_err(crate::errors::from_join)?
}

/// CRC-32C (Castagnoli), reflected, as Go's `crc32.MakeTable(crc32.Castagnoli)`.
pub struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        Crc32c { table, crc: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.crc = self.table[((self.crc ^ b as u32) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }
    pub fn finish(&self) -> u32 {
        !self.crc
    }
}

/// The HashKV of `mvcc` at `rev` (a revision it holds: 0 < rev <= current)
/// and the compact revision it was computed against (-1 when never
/// compacted). Reads the whole history: call it on a blocking thread.
pub fn hash_kv(mvcc: &MvccStore, rev: i64) -> Result<(u32, i64), EtcdError> {
    let start = || {
        let mut h = Crc32c::default();
        h.update(ETCD_KEY_BUCKET);
        h
    };
    let scan = mvcc
        .hash_scan(rev, start, |h, revision_key, kv| {
            h.update(revision_key);
            h.update(&to_pb_kv(kv).encode_to_vec());
        })
        .map_err(from_mvcc)?;
    Ok((scan.hasher.finish(), scan.compact_revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use storage::{AppliedIndex, MemoryEngine};

    /// The bytes hashed are etcd's: the bucket name, then each revision's
    /// bucket key and marshaled mvccpb.KeyValue, spelled out here by hand.
    /// Which revisions count is `storage::mvcc::hash`'s (tested there).
    #[test]
    fn hashes_etcds_bytes() {
        let s = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
        let mut t = s.write_txn();
        t.put(b"foo", b"bar", 0);
        t.commit(AppliedIndex { index: 1, term: 1 }).unwrap();
        let mut want = Crc32c::default();
        want.update(b"key");
        want.update(&[0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 0]);
        // key "foo", create_revision 2, mod_revision 2, version 1, value "bar"
        want.update(&[0x0a, 3, b'f', b'o', b'o', 0x10, 2, 0x18, 2, 0x20, 1, 0x2a, 3, b'b', b'a', b'r']);
        assert_eq!(hash_kv(&s, 2).unwrap(), (want.finish(), -1));

        let mut t = s.write_txn();
        t.put(b"foo", b"baz", 0);
        t.commit(AppliedIndex { index: 2, term: 1 }).unwrap();
        s.compact(3, AppliedIndex { index: 3, term: 1 }).unwrap();
        assert_eq!(hash_kv(&s, 3).unwrap().1, 3);
        assert!(matches!(hash_kv(&s, 2), Err(EtcdError::Compacted)));
        assert!(matches!(hash_kv(&s, 4), Err(EtcdError::FutureRev)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scans_run_a_bounded_number_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                tokio::spawn(run_scan(move || {
                    peak.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, SeqCst);
                    Ok(())
                }))
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert!(peak.load(SeqCst) <= scan_slots(), "{} scans at once", peak.load(SeqCst));
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        let mut h = Crc32c::default();
        h.update(b"123456789");
        assert_eq!(h.finish(), 0xE306_9283);
    }
}
