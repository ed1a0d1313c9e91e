//! Readers running while the writer commits and compacts (the background
//! compactor deleting in tiny batches meanwhile) must only ever see whole
//! txns, and must never fail at a revision at or above the compaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::memory::MemoryEngine;

use super::test_engine::ConsistentEngine;

use super::*;

const KEYS_PER_TXN: usize = 8;
const TXNS: i64 = 400;

fn key(i: usize) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// Txn n (at revision n+1 for n >= 1) deletes everything and re-puts every key
/// with value n, so any consistent snapshot has all keys with one value and
/// one mod_revision.
fn write_generation(store: &MvccStore, n: i64) {
    let mut t = store.write_txn();
    t.delete_range(&KeyRange::FromKey(Vec::new())).unwrap();
    for i in 0..KEYS_PER_TXN {
        t.put(&key(i), n.to_string().as_bytes(), 0);
    }
    t.commit(AppliedIndex { index: n as u64, term: 1 }).unwrap();
}

fn check_snapshot(r: &RangeResult, at: i64) {
    if at == 1 {
        assert!(r.kvs.is_empty());
        return;
    }
    assert_eq!(r.kvs.len(), KEYS_PER_TXN, "half-applied txn seen at {at}");
    assert_eq!(r.count, KEYS_PER_TXN as i64);
    let want = (at - 1).to_string().into_bytes();
    for kv in &r.kvs {
        assert_eq!(kv.value, want, "mixed txns seen at {at}");
        assert_eq!(kv.mod_revision, at);
        assert_eq!(kv.version, 1);
        assert_eq!(kv.create_revision, at);
    }
}

#[test]
fn readers_never_see_half_a_txn_or_lose_a_compacted_race() {
    race(KeyIndexKind::Memory);
}

/// The same with the stored index, whose cache readers fill while the
/// writer changes the same histories.
#[test]
fn readers_of_a_stored_index_never_see_half_a_txn_or_a_stale_history() {
    race(KeyIndexKind::Stored);
}

fn race(kind: KeyIndexKind) {
    // Tiny batches without pauses: the compactor deletes while readers read.
    let config = CompactionConfig { batch_revisions: 3, batch_pause: Duration::ZERO, background: true };
    let engine: Arc<dyn Engine> = match kind {
        KeyIndexKind::Stored => Arc::new(ConsistentEngine::default()),
        _ => Arc::new(MemoryEngine::new()),
    };
    let store = Arc::new(MvccStore::open_with_index(engine, config, kind).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);

    let mut readers = Vec::new();
    for reader in 0..2 {
        let store = store.clone();
        let done = done.clone();
        readers.push(thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0u64;
            // At least one pass each, even when the writer (never held up by
            // compaction now) is through before this thread first runs.
            let mut first = true;
            while first || !done.load(Ordering::Acquire) {
                first = false;
                assert!(Instant::now() < deadline, "writer did not finish in time");
                // Latest state: always a whole txn, revisions never go back.
                let r = store.range(&KeyRange::FromKey(Vec::new()), RangeOptions::default()).unwrap();
                assert!(r.rev >= last, "revision went backwards");
                last = r.rev;
                check_snapshot(&r, r.rev);
                // One key at the latest revision (the stored index's cache):
                // every txn rewrote it, so it carries that revision.
                let one = store.range(&KeyRange::Single(key(reads as usize % KEYS_PER_TXN)), RangeOptions::default());
                let one = one.unwrap();
                if one.rev > 1 {
                    assert_eq!(one.kvs.len(), 1);
                    assert_eq!(one.kvs[0].mod_revision, one.rev, "a stale history at {}", one.rev);
                }
                // An older revision: a whole txn, or Compacted — never partial.
                let rev = (r.rev - (reads as i64 % 7)).max(1);
                match store.range(&KeyRange::FromKey(Vec::new()), RangeOptions { rev, ..Default::default() }) {
                    Ok(old) => check_snapshot(&old, rev),
                    Err(MvccError::Compacted) => assert!(rev < store.compact_revision()),
                    Err(e) => panic!("reader {reader}: unexpected {e:?}"),
                }
                // Replaying the newest txn gives all of its events.
                if r.rev > 1 {
                    match store.events_between(r.rev, r.rev, true) {
                        // The first txn has no deletes; compaction at a txn's
                        // revision keeps only its last change per key.
                        Ok(evs) if evs.len() == KEYS_PER_TXN => {
                            assert!(r.rev == 2 || r.rev <= store.compact_revision())
                        }
                        Ok(evs) => assert_eq!(evs.len(), 2 * KEYS_PER_TXN),
                        Err(MvccError::Compacted) => {}
                        Err(e) => panic!("reader {reader}: unexpected {e:?}"),
                    }
                }
                reads += 1;
            }
            reads
        }));
    }

    for n in 1..=TXNS {
        write_generation(&store, n);
        if n % 10 == 0 {
            let cur = store.current_revision();
            store.compact(cur - 3, AppliedIndex { index: n as u64, term: 1 }).unwrap();
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let reads = r.join().expect("reader panicked");
        assert!(reads > 0);
    }
    assert_eq!(store.current_revision(), TXNS + 1);
}
