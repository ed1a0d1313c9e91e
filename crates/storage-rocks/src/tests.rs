use std::sync::Arc;

use std::time::Duration;

use storage::mvcc::meta;
use storage::{conformance, AppliedIndex, CompactionConfig, KeyRange, MvccStore, RangeOptions};

use super::*;

fn open(dir: &Path) -> RocksEngine {
    RocksEngine::open(dir, &RocksOptions::default()).expect("open rocksdb")
}

#[test]
fn passes_the_engine_conformance_checks() {
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(&mut || {
        n += 1;
        Box::new(open(&root.path().join(n.to_string())))
    });
}

#[test]
fn contents_and_applied_index_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = MvccStore::open(Arc::new(open(dir.path()))).unwrap();
        for i in 0..100u64 {
            let mut txn = store.write_txn();
            txn.put(format!("k{i:03}").as_bytes(), b"v", 0);
            txn.commit(AppliedIndex { index: 10 + i, term: 2 }).unwrap();
        }
        store.compact(50, AppliedIndex { index: 110, term: 2 }).unwrap();
        assert!(store.wait_compacted(50, Duration::from_secs(60)).unwrap());
    }
    let engine = Arc::new(open(dir.path()));
    assert!(engine.persistent());
    let store = MvccStore::open(engine.clone()).unwrap();
    assert_eq!(store.applied_index(), AppliedIndex { index: 110, term: 2 });
    assert_eq!(store.current_revision(), 101);
    assert_eq!(store.compact_revision(), 50);
    let r = store.range(&KeyRange::FromKey(b"k".to_vec()), RangeOptions::default()).unwrap();
    assert_eq!(r.kvs.len(), 100);
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), Some(50));
}

/// The compactor only deletes; RocksDB drops the deleted revisions in its
/// own compactions, and defragment gives the space back at once.
#[test]
fn mvcc_compaction_frees_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let store = MvccStore::open(engine.clone()).unwrap();
    let value = vec![7u8; 1024];
    for i in 0..5000u64 {
        let mut txn = store.write_txn();
        txn.put(b"hot", &value, 0);
        txn.commit(AppliedIndex { index: i + 1, term: 1 }).unwrap();
    }
    assert_eq!(count_keys(&engine, Table::Key).unwrap(), 5000);
    store.compact(5000, AppliedIndex { index: 5001, term: 1 }).unwrap();
    assert!(store.wait_compacted(5000, Duration::from_secs(60)).unwrap());
    assert_eq!(count_keys(&engine, Table::Key).unwrap(), 2);
    engine.defragment().unwrap();
    let live = engine.property_sum("rocksdb.estimate-live-data-size");
    assert!(live < 256 * 1024, "compacted history still holds {live} bytes");
}

#[test]
fn defragment_returns_the_space_of_deleted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for round in 0..4u32 {
        let mut b = WriteBatch::default();
        for i in 0..2_000u32 {
            b.put(Table::Lease, [round.to_be_bytes(), i.to_be_bytes()].concat(), vec![round as u8; 1000]);
        }
        engine.write(b).unwrap();
        engine.db.flush().unwrap();
    }
    let mut b = WriteBatch::default();
    engine
        .scan(Table::Lease, b"", None, &mut |k, _| {
            b.delete(Table::Lease, k.to_vec());
            true
        })
        .unwrap();
    engine.write(b).unwrap();
    engine.db.flush().unwrap();
    let before = engine.property_sum("rocksdb.total-sst-files-size");
    engine.defragment().unwrap();
    let after = engine.property_sum("rocksdb.total-sst-files-size");
    assert!(before > 1_000_000 && after < before / 10, "sst bytes {before} -> {after}");
    assert_eq!(count_keys(&engine, Table::Lease).unwrap(), 0);
}

#[test]
fn dump_is_a_consistent_view_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let mut b = WriteBatch::default();
    for i in 0..20_000u32 {
        b.put(Table::Key, i.to_be_bytes().to_vec(), vec![1]);
    }
    engine.write(b).unwrap();
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for i in 20_000..40_000u32 {
                let mut b = WriteBatch::default();
                b.put(Table::Key, i.to_be_bytes().to_vec(), vec![2]);
                engine.write(b).unwrap();
            }
        })
    };
    let mut dump = Vec::new();
    engine.dump(&mut dump).unwrap();
    writer.join().unwrap();
    let restored = storage::MemoryEngine::new();
    restored.restore(&mut &dump[..]).unwrap();
    let n = conformance::all_pairs(&restored, Table::Key).len();
    assert!((20_000..=40_000).contains(&n), "{n}");
}

#[test]
fn a_restore_cut_short_leaves_no_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let source = storage::MemoryEngine::new();
    let mut b = WriteBatch::default();
    for i in 0..10_000u32 {
        b.put(Table::Key, i.to_be_bytes().to_vec(), vec![0; 1000]);
    }
    meta::put_applied(&mut b, AppliedIndex { index: 77, term: 3 });
    source.write(b).unwrap();
    let mut dump = Vec::new();
    source.dump(&mut dump).unwrap();
    {
        let engine = open(dir.path());
        let mut b = WriteBatch::default();
        meta::put_applied(&mut b, AppliedIndex { index: 5, term: 1 });
        engine.write(b).unwrap();
        let cut = dump.len() * 3 / 4;
        assert!(engine.restore(&mut &dump[..cut]).is_err());
    }
    let engine = open(dir.path());
    assert_eq!(meta::load_applied(&engine).unwrap(), AppliedIndex::default());
    engine.restore(&mut &dump[..]).unwrap();
    assert_eq!(meta::load_applied(&engine).unwrap(), AppliedIndex { index: 77, term: 3 });
    assert_eq!(count_keys(&engine, Table::Key).unwrap(), 10_000);
}

/// Every table's contents, for comparing states.
fn state(engine: &dyn Engine) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    Table::all().iter().map(|&t| conformance::all_pairs(engine, t)).collect()
}

#[test]
fn a_deferred_dump_writes_the_state_it_was_taken_at() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let mut b = WriteBatch::default();
    // Enough to need many chunks (about 5 MB).
    for i in 0..20_000u32 {
        b.put(Table::Key, i.to_be_bytes().to_vec(), vec![1; 256]);
    }
    b.put(Table::Lease, b"l1".to_vec(), b"lease".to_vec());
    meta::put_applied(&mut b, AppliedIndex { index: 9, term: 2 });
    engine.write(b).unwrap();
    let expected = state(engine.as_ref());

    let job = engine.clone().deferred_dump(vec![0xff]).unwrap().expect("RocksDB defers");
    // Later writes, below and above the bound, in every table, never wait
    // and never show in the dump.
    let mut b = WriteBatch::default();
    b.delete(Table::Key, 5u32.to_be_bytes().to_vec());
    b.put(Table::Key, 20_000u32.to_be_bytes().to_vec(), vec![2]);
    b.delete(Table::Lease, b"l1".to_vec());
    meta::put_applied(&mut b, AppliedIndex { index: 10, term: 2 });
    engine.write(b).unwrap();

    let mut dump = Vec::new();
    let writer = std::thread::spawn(move || {
        job(&mut dump).unwrap();
        dump
    });
    let dump = writer.join().unwrap();
    let restored = storage::MemoryEngine::new();
    restored.restore(&mut &dump[..]).unwrap();
    assert_eq!(state(&restored), expected);
    assert_ne!(state(engine.as_ref()), expected, "the later writes are in the engine");
}

#[test]
fn a_deferred_dump_dropped_unrun_or_cut_off_lets_the_database_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Arc::new(open(dir.path()));
        let mut b = WriteBatch::default();
        for i in 0..20_000u32 {
            b.put(Table::Key, i.to_be_bytes().to_vec(), vec![1; 256]);
        }
        engine.write(b).unwrap();
        let unrun = engine.clone().deferred_dump(vec![0xff]).unwrap().unwrap();
        drop(unrun);
        // A reader that fails part-way: the job reports it and returns.
        struct Failing(usize);
        impl io::Write for Failing {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                if self.0 < data.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= data.len();
                Ok(data.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let cut = engine.clone().deferred_dump(vec![0xff]).unwrap().unwrap();
        let err = cut(&mut Failing(1 << 20)).expect_err("the write failed");
        assert!(err.to_string().contains("disk full"), "{err}");
    }
    // The producers let go of the database: it opens again (RocksDB's lock
    // file refuses a second open while the first is held). The unrun job's
    // producer exits on its own, so allow it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match RocksEngine::open(dir.path(), &RocksOptions::default()) {
            Ok(e) => {
                assert_eq!(count_keys(&e, Table::Key).unwrap(), 20_000);
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("the database stayed open: {e}"),
        }
    }
}

#[test]
fn size_is_fresh_the_hint_is_reused_briefly_and_read_afresh_after_defragment() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let before = engine.size_bytes_hint();
    let mut b = WriteBatch::default();
    for i in 0..2000u32 {
        b.put(Table::Key, i.to_be_bytes().to_vec(), vec![7; 1000]);
    }
    engine.write(b).unwrap();
    // Status reads the size now; the quota's hint may lag a moment.
    assert!(engine.size_bytes() > before + 1_000_000, "2 MB of writes show in the size at once");
    let full = engine.size_bytes();
    let grown = wait_for(|| engine.size_bytes_hint() >= full);
    assert!(grown, "the hint never caught up with 2 MB of writes");
    let mut b = WriteBatch::default();
    for i in 0..2000u32 {
        b.delete(Table::Key, i.to_be_bytes().to_vec());
    }
    engine.write(b).unwrap();
    engine.defragment().unwrap();
    assert!(engine.size_bytes_hint() < full, "defragment makes the next hint fresh");
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Every revision's full range from `from` on, and the replay from it.
fn answers(store: &MvccStore, from: i64) -> Vec<String> {
    let all = KeyRange::FromKey(Vec::new());
    let mut out: Vec<String> = (from..=store.current_revision())
        .map(|rev| format!("{:?}", store.range(&all, RangeOptions { rev, ..Default::default() }).unwrap()))
        .collect();
    out.push(format!("{:?}", store.events_between(from, i64::MAX, true).unwrap()));
    out
}

#[test]
fn a_compaction_cut_by_a_crash_resumes_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let manual = CompactionConfig { batch_revisions: 50, background: false, ..CompactionConfig::default() };
    let (at, before, stored) = {
        let engine = Arc::new(open(dir.path()));
        let store = MvccStore::open_with(engine.clone(), manual).unwrap();
        for i in 0..3000u64 {
            let mut txn = store.write_txn();
            let key = format!("k{:02}", i % 60);
            if i % 9 == 4 {
                txn.delete_range(&KeyRange::Single(key.clone().into_bytes())).unwrap();
            }
            txn.put(key.as_bytes(), format!("v{i}").as_bytes(), 0);
            txn.commit(AppliedIndex { index: i + 1, term: 1 }).unwrap();
        }
        let at = store.current_revision() - 100;
        store.compact(at, AppliedIndex { index: 5000, term: 1 }).unwrap();
        let before = answers(&store, at);
        for _ in 0..10 {
            assert!(store.compact_step().unwrap());
        }
        assert_eq!(answers(&store, at), before);
        let stored = count_keys(&engine, Table::Key).unwrap();
        (at, before, stored)
        // The store and the database close here, half-way: a crash as far
        // as the engine can tell (every batch was its own atomic write).
    };
    assert!(stored < 3000 + 3000 / 9, "some batches were written");
    let engine = Arc::new(open(dir.path()));
    assert_eq!(meta::load_scheduled_compact(engine.as_ref()).unwrap(), Some(at));
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), None);
    // The default store resumes in the background.
    let store = MvccStore::open(engine.clone()).unwrap();
    assert_eq!(store.compact_revision(), at);
    assert_eq!(store.applied_index(), AppliedIndex { index: 5000, term: 1 });
    assert!(store.range(&KeyRange::FromKey(Vec::new()), RangeOptions { rev: at - 1, ..Default::default() }).is_err());
    assert!(store.wait_compacted(at, Duration::from_secs(60)).unwrap());
    assert_eq!(answers(&store, at), before);
    assert_eq!(meta::load_finished_compact(engine.as_ref()).unwrap(), Some(at));
    // Left: each key's revision at `at` (or its tombstone there) and the 100 after.
    assert!(count_keys(&engine, Table::Key).unwrap() <= 60 + 100 + 100 / 9 + 1);
}

/// A large range reads its values in revision order and in batches
/// (`MvccStore::read_kvs`); the answer must still come in key order, equal
/// to the memory engine's, with values in flushed files and in memtables.
#[test]
fn large_ranges_answer_in_key_order_as_the_memory_engine() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = Arc::new(open(dir.path()));
    let stores =
        [MvccStore::open(rocks.clone()).unwrap(), MvccStore::open(Arc::new(storage::MemoryEngine::new())).unwrap()];
    // Revisions far from key order: keys go in by a stride, half are written
    // again after a flush, so one range reads files and memtables both.
    let n = 3000u64;
    let mut applied = 0;
    let put = |store: &MvccStore, i: u64, round: u8, applied: u64| {
        let mut txn = store.write_txn();
        txn.put(format!("k{:05}", (i * 7919) % n).as_bytes(), &[round; 300], 0);
        txn.commit(AppliedIndex { index: applied, term: 1 }).unwrap();
    };
    for i in 0..n {
        applied += 1;
        stores.iter().for_each(|s| put(s, i, 1, applied));
    }
    rocks.defragment().unwrap();
    for i in (0..n).step_by(2) {
        applied += 1;
        stores.iter().for_each(|s| put(s, i, 2, applied));
    }
    let all = KeyRange::FromKey(b"k".to_vec());
    for opts in [
        RangeOptions::default(),
        RangeOptions { limit: 1500, ..Default::default() },
        RangeOptions { rev: n as i64, ..Default::default() },
    ] {
        let [r, m] = stores.each_ref().map(|s| s.range(&all, opts).unwrap());
        assert_eq!(r.count, m.count);
        assert!(r.kvs.len() > 1000, "a bulk read: {}", r.kvs.len());
        assert!(r.kvs.windows(2).all(|w| w[0].key < w[1].key), "key order");
        assert_eq!(r.kvs, m.kvs, "{opts:?}");
    }
}
