//! Background compaction: what applying a compaction costs, what a crash
//! half-way leaves, superseding compactions, readers in flight, failures,
//! and that nothing readable depends on how far the deletion got.

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::memory::MemoryEngine;
use crate::schema::Table;

use super::test_engine::FaultyEngine;
use super::tests_model::normalized_index;
use super::*;

pub(super) fn applied(index: u64) -> AppliedIndex {
    AppliedIndex { index, term: 1 }
}

pub(super) fn manual(batch_revisions: usize) -> CompactionConfig {
    CompactionConfig { batch_revisions, background: false, ..CompactionConfig::default() }
}

pub(super) fn all() -> KeyRange {
    KeyRange::FromKey(Vec::new())
}

/// `txns` txns over `keys` keys: mostly puts, every 7th deletes a key, some
/// txns change one key twice; revision n+1 is txn n.
pub(super) fn fill(s: &MvccStore, keys: usize, txns: usize) {
    for n in 0..txns {
        let mut t = s.write_txn();
        let k = format!("k{:04}", (n * 7919) % keys);
        if n % 7 == 3 {
            t.delete_range(&KeyRange::Single(k.clone().into_bytes())).unwrap();
        }
        t.put(k.as_bytes(), format!("v{n}").as_bytes(), (n % 3) as i64);
        if n % 11 == 5 {
            t.put(k.as_bytes(), format!("w{n}").as_bytes(), 0);
        }
        t.commit(applied(n as u64 + 1)).unwrap();
    }
}

/// Every revision's full range at and above `from`.
pub(super) fn ranges(s: &MvccStore, from: i64) -> Vec<String> {
    (from..=s.current_revision())
        .map(|rev| format!("{rev}: {:?}", s.range(&all(), RangeOptions { rev, ..Default::default() }).unwrap().kvs))
        .collect()
}

/// Everything readable at and above `from`: [`ranges`], and the event replay
/// from `from` with and without prev_kv (which changes when a compaction at
/// `from` is applied: the replay then answers as compacted).
pub(super) fn answers(s: &MvccStore, from: i64) -> Vec<String> {
    let mut out = ranges(s, from);
    out.push(format!("{:?}", s.events_between(from, i64::MAX, true).unwrap()));
    out.push(format!("{:?}", s.events_between(from, i64::MAX, false).unwrap()));
    out
}

/// Asserts equal answers, showing only the first difference.
#[track_caller]
pub(super) fn same(got: &[String], want: &[String], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of answers");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: answer {i} differs:\n got: {}\nwant: {}", got[i], want[i]);
    }
}

/// What HashKV hashes at `rev` (see `hash.rs`).
fn hash_input(s: &MvccStore, rev: i64) -> (Vec<(Vec<u8>, KeyValue)>, i64) {
    let scan = s.hash_scan(rev, Vec::new, |v: &mut Vec<_>, k, kv| v.push((k.to_vec(), kv))).unwrap();
    (scan.hasher, scan.compact_revision)
}

#[test]
fn applying_a_compaction_scans_nothing_and_writes_one_small_batch() {
    let engine = Arc::new(FaultyEngine::default());
    let s = MvccStore::open_with(engine.clone(), manual(1000)).unwrap();
    fill(&s, 500, 20_000);
    let stored = engine.inner.table_len(Table::Key);
    let at = s.current_revision() - 100;
    let uncompacted = ranges(&s, at);
    engine.reset_counts();
    s.compact(at, applied(1_000_000)).unwrap();
    // The old code scanned all of Table::Key below the revision and wrote
    // one batch deleting most of it, all on the apply loop.
    assert_eq!(engine.scans.load(SeqCst), 0, "apply scanned the history");
    assert_eq!(engine.written_ops.load(SeqCst), 3, "scheduledCompactRev + applied index (2 keys)");
    assert_eq!(engine.inner.table_len(Table::Key), stored, "apply deleted history itself");
    // Published at once: reads below fail, reads at it work.
    assert_eq!(s.compact_revision(), at);
    assert_eq!(s.applied_index(), applied(1_000_000));
    let below = s.range(&all(), RangeOptions { rev: at - 1, ..Default::default() });
    assert!(matches!(below, Err(MvccError::Compacted)));
    assert!(matches!(s.events_between(at - 1, at, false), Err(MvccError::Compacted)));
    let before = answers(&s, at);
    same(&ranges(&s, at), &uncompacted, "reads at and above C once C is applied");
    // The physical half: bounded batches, each its own write.
    engine.reset_counts();
    let mut batches = 0;
    while s.compact_step().unwrap() {
        batches += 1;
    }
    assert!(batches >= 10, "{batches} batches for ~19k revisions");
    assert!(engine.inner.table_len(Table::Key) < stored / 10);
    assert_eq!(s.finished_compact_revision(), at);
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), Some(at));
    same(&answers(&s, at), &before, "answers");
}

#[test]
fn a_crash_half_way_resumes_and_reads_never_change() {
    let engine = Arc::new(MemoryEngine::new());
    let at;
    let before;
    {
        let s = MvccStore::open_with(engine.clone(), manual(7)).unwrap();
        fill(&s, 40, 600);
        at = s.current_revision() - 20;
        let uncompacted = ranges(&s, at);
        s.compact(at, applied(10_000)).unwrap();
        before = answers(&s, at);
        same(&ranges(&s, at), &uncompacted, "reads at and above C once C is applied");
        for _ in 0..5 {
            assert!(s.compact_step().unwrap());
            same(&answers(&s, at), &before, "half-way");
        }
        // "Crash": the store goes, the engine keeps what was written.
    }
    assert_eq!(meta::load_scheduled_compact(engine.as_ref()).unwrap(), Some(at));
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), None, "not finished");
    let s = MvccStore::open_with(engine.clone(), manual(7)).unwrap();
    assert_eq!(s.compact_revision(), at, "the scheduled compaction holds at once");
    assert_eq!(s.finished_compact_revision(), 0);
    assert!(matches!(s.range(&all(), RangeOptions { rev: at - 1, ..Default::default() }), Err(MvccError::Compacted)));
    same(&answers(&s, at), &before, "after the restart");
    assert_eq!(s.applied_index(), applied(10_000));
    s.finish_compaction().unwrap();
    assert_eq!(s.finished_compact_revision(), at);
    same(&answers(&s, at), &before, "finished");

    // The same history compacted in one go stores exactly the same.
    let reference_engine = Arc::new(MemoryEngine::new());
    let reference = MvccStore::open_with(reference_engine.clone(), manual(1_000_000)).unwrap();
    fill(&reference, 40, 600);
    reference.compact(at, applied(10_000)).unwrap();
    reference.finish_compaction().unwrap();
    assert_eq!(normalized_index(&reference), normalized_index(&s));
    assert_eq!(reference_engine.size_bytes(), engine.size_bytes());
    // And a restart of the finished state has nothing left to do.
    drop(s);
    let s = MvccStore::open_with(engine, manual(7)).unwrap();
    assert_eq!(s.finished_compact_revision(), at);
    assert!(!s.compact_step().unwrap());
}

#[test]
fn a_later_compaction_supersedes_the_running_one() {
    let engine = Arc::new(MemoryEngine::new());
    let s = MvccStore::open_with(engine.clone(), manual(5)).unwrap();
    fill(&s, 30, 400);
    let (first, second) = (150, 300);
    s.compact(first, applied(5000)).unwrap();
    for _ in 0..3 {
        s.compact_step().unwrap();
    }
    s.compact(second, applied(5001)).unwrap();
    let before = answers(&s, second);
    assert_eq!(s.compact_revision(), second);
    assert!(matches!(s.compact(second - 1, applied(5002)), Err(MvccError::Compacted)));
    // The running pass finishes at the revision it started with...
    while s.finished_compact_revision() < first {
        assert!(s.compact_step().unwrap());
    }
    assert_eq!(s.finished_compact_revision(), first);
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), Some(first));
    assert!(s.wait_compacted(first, Duration::ZERO).unwrap());
    assert!(!s.wait_compacted(second, Duration::ZERO).unwrap());
    // ...and another pass finishes the later one.
    s.finish_compaction().unwrap();
    assert_eq!(s.finished_compact_revision(), second);
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), Some(second));
    same(&answers(&s, second), &before, "answers");
    let reference = MvccStore::open_with(Arc::new(MemoryEngine::new()), manual(1000)).unwrap();
    fill(&reference, 30, 400);
    reference.compact(second, applied(5001)).unwrap();
    reference.finish_compaction().unwrap();
    assert_eq!(normalized_index(&reference), normalized_index(&s));
}

#[test]
fn deletion_waits_for_readers_that_started_before_the_compaction() {
    let engine = Arc::new(MemoryEngine::new());
    let s = Arc::new(MvccStore::open(engine.clone()).unwrap());
    fill(&s, 20, 200);
    let stored = engine.table_len(Table::Key);
    // A reader that checked its revision before the compaction is applied
    // and is still reading.
    let reader = s.shared.gate.enter();
    let at = s.current_revision();
    s.compact(at, applied(1000)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(engine.table_len(Table::Key), stored, "deleted under a reader in flight");
    assert_eq!(s.finished_compact_revision(), 0);
    // Readers arriving now are not held up by the compactor's wait.
    assert_eq!(s.range(&all(), RangeOptions { rev: at, ..Default::default() }).unwrap().count, 20);
    drop(reader);
    assert!(s.wait_compacted(at, Duration::from_secs(30)).unwrap());
    assert_eq!(engine.table_len(Table::Key), 20);
}

#[test]
fn hashkv_input_is_the_same_before_during_and_after() {
    let s = MvccStore::open_with(Arc::new(MemoryEngine::new()), manual(3)).unwrap();
    fill(&s, 25, 300);
    let at = 200;
    s.compact(at, applied(5000)).unwrap();
    let revs = [at, at + 1, 250, s.current_revision()];
    let want: Vec<_> = revs.iter().map(|&r| hash_input(&s, r)).collect();
    let mut steps = 0;
    while s.compact_step().unwrap() {
        steps += 1;
        if steps % 4 == 0 {
            for (r, w) in revs.iter().zip(&want) {
                assert_eq!(&hash_input(&s, *r), w, "hash input at {r} after {steps} batches");
            }
        }
    }
    for (r, w) in revs.iter().zip(&want) {
        assert_eq!(&hash_input(&s, *r), w, "hash input at {r} when finished");
    }
    let (keep, compact) = s.hash_keep(at).unwrap();
    assert_eq!(compact, at);
    assert_eq!(keep.len(), 25, "every key exists at {at}, last changed at or before it");
    assert!(keep.iter().all(|r| r.main <= at));
    // At the current revision every key changed after the compaction.
    assert!(s.hash_keep(0).unwrap().0.is_empty());
    assert!(matches!(s.hash_keep(at - 1), Err(MvccError::Compacted)));
    assert!(matches!(s.hash_keep(s.current_revision() + 1), Err(MvccError::FutureRevision)));
}

#[test]
fn a_failed_batch_changes_nothing_and_is_retried() {
    let engine = Arc::new(FaultyEngine::default());
    let s = MvccStore::open_with(engine.clone(), manual(4)).unwrap();
    fill(&s, 10, 100);
    let at = 80;
    s.compact(at, applied(500)).unwrap();
    let before = answers(&s, at);
    s.compact_step().unwrap();
    engine.fail_write.store(true, SeqCst);
    let index = s.index_snapshot();
    assert!(matches!(s.compact_step(), Err(MvccError::Engine(_))));
    assert_eq!(s.index_snapshot(), index, "a failed batch left the index alone");
    same(&answers(&s, at), &before, "answers");
    engine.fail_write.store(false, SeqCst);
    s.finish_compaction().unwrap();
    assert_eq!(s.finished_compact_revision(), at);
    same(&answers(&s, at), &before, "answers");
}

#[test]
fn the_background_thread_reports_failures_to_waiters_and_recovers() {
    let engine = Arc::new(FaultyEngine::default());
    let config = CompactionConfig { batch_revisions: 2, batch_pause: Duration::ZERO, background: true };
    let s = MvccStore::open_with(engine.clone(), config).unwrap();
    fill(&s, 10, 100);
    let at = s.current_revision();
    // The schedule is written; the compactor's deletes are refused.
    engine.fail_key_deletes.store(true, SeqCst);
    s.compact(at, applied(200)).unwrap();
    assert!(s.wait_compacted(at, Duration::from_secs(30)).is_err(), "a waiter hears of the failure");
    assert_eq!(s.compact_revision(), at);
    engine.fail_key_deletes.store(false, SeqCst);
    // The thread retries by itself (after a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(s.wait_compacted(at, Duration::from_millis(100)), Ok(true)) {
        assert!(std::time::Instant::now() < deadline, "the compactor never recovered");
    }
    assert_eq!(engine.inner.table_len(Table::Key), 10);
}

#[test]
fn a_snapshot_cut_half_way_installs_and_finishes() {
    let src = MvccStore::open_with(Arc::new(MemoryEngine::new()), manual(6)).unwrap();
    fill(&src, 30, 300);
    let at = 250;
    src.compact(at, applied(4000)).unwrap();
    let before = answers(&src, at);
    for _ in 0..4 {
        src.compact_step().unwrap();
    }
    let mut dump = Vec::new();
    src.engine().dump(&mut dump).unwrap();
    let dst = MvccStore::open_with(Arc::new(MemoryEngine::new()), manual(6)).unwrap();
    fill(&dst, 5, 10);
    dst.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!((dst.compact_revision(), dst.finished_compact_revision()), (at, 0));
    same(&answers(&dst, at), &before, "answers");
    dst.finish_compaction().unwrap();
    src.finish_compaction().unwrap();
    same(&answers(&dst, at), &before, "answers");
    assert_eq!(normalized_index(&dst), normalized_index(&src));
    assert_eq!(dst.engine().size_bytes(), src.engine().size_bytes());
}

#[test]
fn dropping_the_store_mid_compaction_stops_its_thread() {
    let engine = Arc::new(MemoryEngine::new());
    let config = CompactionConfig { batch_revisions: 1, batch_pause: Duration::from_millis(50), background: true };
    let s = MvccStore::open_with(engine.clone(), config).unwrap();
    fill(&s, 50, 500);
    s.compact(400, applied(1000)).unwrap();
    let started = std::time::Instant::now();
    drop(s);
    // A generous bound: the thread stops at its next batch or pause.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(Arc::strong_count(&engine), 1, "the compactor thread let go of the engine");
    let reopened = MvccStore::open_with(engine, manual(1000)).unwrap();
    assert_eq!(reopened.compact_revision(), 400);
    reopened.finish_compaction().unwrap();
    let keys: HashSet<Vec<u8>> = reopened.index_snapshot().into_iter().map(|(k, _)| k).collect();
    assert!(keys.len() <= 50);
}
