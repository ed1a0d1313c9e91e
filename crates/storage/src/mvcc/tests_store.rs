//! Scenario tests of [`MvccStore`] and [`WriteTxn`] against etcd's documented
//! behaviour (revision numbering, generations, txn reads, compaction, events,
//! restart and snapshot install).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use crate::engine::{Engine, EngineError};
use crate::memory::MemoryEngine;
use crate::schema::Table;

use super::test_engine::FaultyEngine;
use super::*;

fn applied(index: u64) -> AppliedIndex {
    AppliedIndex { index, term: 1 }
}

fn open() -> MvccStore {
    MvccStore::open(Arc::new(MemoryEngine::new())).unwrap()
}

fn single(k: &str) -> KeyRange {
    KeyRange::Single(k.as_bytes().to_vec())
}

fn all() -> KeyRange {
    KeyRange::from_etcd(b"\0", b"\0")
}

fn put(s: &MvccStore, k: &str, v: &str) -> Vec<Event> {
    let mut t = s.write_txn();
    t.put(k.as_bytes(), v.as_bytes(), 0);
    t.commit(applied(0)).unwrap()
}

fn del(s: &MvccStore, r: &KeyRange) -> Vec<Event> {
    let mut t = s.write_txn();
    t.delete_range(r).unwrap();
    t.commit(applied(0)).unwrap()
}

/// Applies a compaction and waits for its physical deletion.
fn compact_fully(s: &MvccStore, rev: i64, index: u64) {
    s.compact(rev, applied(index)).unwrap();
    assert!(s.wait_compacted(rev, std::time::Duration::from_secs(30)).unwrap(), "compaction at {rev} never finished");
    assert_eq!(s.finished_compact_revision(), rev);
}

fn get(s: &MvccStore, k: &str, rev: i64) -> Option<KeyValue> {
    let r = s.range(&single(k), RangeOptions { rev, ..Default::default() }).unwrap();
    assert!(r.kvs.len() <= 1);
    r.kvs.into_iter().next()
}

fn kv(k: &str, v: &str, create: i64, modr: i64, ver: i64) -> KeyValue {
    KeyValue {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modr,
        version: ver,
        lease: 0,
    }
}

#[test]
fn revisions_versions_and_generations() {
    let s = open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    put(&s, "a", "1"); // rev 2
    put(&s, "a", "2"); // rev 3
    assert_eq!(get(&s, "a", 0), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(get(&s, "a", 2), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(get(&s, "a", 1), None);
    let evs = del(&s, &single("a")); // rev 4
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EventKind::Delete);
    assert_eq!(evs[0].kv, KeyValue { key: b"a".to_vec(), mod_revision: 4, ..Default::default() });
    assert_eq!(evs[0].prev_kv, Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(get(&s, "a", 0), None);
    put(&s, "a", "3"); // rev 5: new generation
    assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 5, 5, 1)));
    assert_eq!(s.current_revision(), 5);
    let r = s.range(&all(), RangeOptions::default()).unwrap();
    assert_eq!((r.count, r.rev), (1, 5));
}

#[test]
fn empty_txn_and_empty_delete_do_not_bump_revision() {
    let s = open();
    put(&s, "a", "1");
    let t = s.write_txn();
    assert!(t.commit(applied(7)).unwrap().is_empty());
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.applied_index(), applied(7));
    assert!(del(&s, &single("zz")).is_empty());
    assert_eq!(s.current_revision(), 2);
    s.set_applied(applied(9)).unwrap();
    assert_eq!(s.applied_index(), applied(9));
    let reopened = MvccStore::open(s.engine().clone()).unwrap();
    assert_eq!(reopened.applied_index(), applied(9));
}

#[test]
fn txn_reads_its_own_writes_at_begin_plus_one() {
    let s = open();
    put(&s, "a", "old"); // rev 2
    put(&s, "c", "c"); // rev 3
    let mut t = s.write_txn();
    assert_eq!(t.begin_revision(), 3);
    let r = t.range(&all(), RangeOptions::default()).unwrap();
    assert_eq!((r.count, r.rev), (2, 3));
    t.put(b"b", b"new", 5);
    t.put(b"a", b"newer", 0);
    let r = t.range(&all(), RangeOptions::default()).unwrap();
    assert_eq!(r.rev, 4);
    assert_eq!(
        r.kvs,
        vec![kv("a", "newer", 2, 4, 2), KeyValue { lease: 5, ..kv("b", "new", 4, 4, 1) }, kv("c", "c", 3, 3, 1)]
    );
    // Old revisions inside the txn still read history; the future is refused.
    let old = t.range(&all(), RangeOptions { rev: 2, ..Default::default() }).unwrap();
    assert_eq!((old.count, old.rev), (1, 4));
    assert!(matches!(t.range(&all(), RangeOptions { rev: 5, ..Default::default() }), Err(MvccError::FutureRevision)));
    let limited = t.range(&all(), RangeOptions { limit: 2, ..Default::default() }).unwrap();
    assert_eq!((limited.kvs.len(), limited.count), (2, 3));
    let counted = t.range(&all(), RangeOptions { count_only: true, ..Default::default() }).unwrap();
    assert_eq!((counted.kvs.len(), counted.count), (0, 3));
    // Store readers see nothing yet.
    assert_eq!(s.range(&all(), RangeOptions::default()).unwrap().count, 2);
    // Delete sees the txn's own put; a later put starts a new generation.
    let deleted = t.delete_range(&KeyRange::from_etcd(b"a", b"c")).unwrap();
    assert_eq!(deleted.len(), 2);
    t.put(b"a", b"again", 0);
    assert_eq!(t.changes().len(), 5);
    let subs: Vec<_> = t.changes().iter().map(|e| (e.kind, e.kv.key.clone())).collect();
    assert_eq!(
        subs,
        vec![
            (EventKind::Put, b"b".to_vec()),
            (EventKind::Put, b"a".to_vec()),
            (EventKind::Delete, b"a".to_vec()),
            (EventKind::Delete, b"b".to_vec()),
            (EventKind::Put, b"a".to_vec()),
        ]
    );
    assert_eq!(t.changes()[4].prev_kv, None);
    let evs = t.commit(applied(3)).unwrap();
    assert_eq!(evs.len(), 5);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(get(&s, "a", 0), Some(kv("a", "again", 4, 4, 1)));
    assert_eq!(get(&s, "b", 0), None);
    assert_eq!(get(&s, "a", 3), Some(kv("a", "old", 2, 2, 1)));
    // Index and engine agree after a restart.
    let reopened = MvccStore::open(s.engine().clone()).unwrap();
    assert_eq!(reopened.index_snapshot(), s.index_snapshot());
    assert_eq!(reopened.current_revision(), 4);
}

#[test]
fn dropped_txn_changes_nothing() {
    let s = open();
    {
        let mut t = s.write_txn();
        t.put(b"a", b"1", 0);
    }
    assert_eq!(s.current_revision(), 1);
    assert_eq!(get(&s, "a", 0), None);
    assert_eq!(s.engine().size_bytes(), 0);
}

#[test]
fn range_errors_and_limits() {
    let s = open();
    for k in ["a", "b", "c", "d"] {
        put(&s, k, k); // revs 2..=5
    }
    let r = s.range(&all(), RangeOptions { limit: 3, ..Default::default() }).unwrap();
    assert_eq!(r.kvs.len(), 3);
    assert_eq!(r.count, 4);
    let r = s.range(&KeyRange::from_etcd(b"b", b"d"), RangeOptions { rev: 3, ..Default::default() }).unwrap();
    assert_eq!(r.kvs, vec![kv("b", "b", 3, 3, 1)]);
    assert_eq!(r.rev, 5, "rev is the current revision, not the requested one");
    assert!(s.range(&KeyRange::from_etcd(b"d", b"b"), RangeOptions::default()).unwrap().kvs.is_empty());
    assert!(matches!(s.range(&all(), RangeOptions { rev: 6, ..Default::default() }), Err(MvccError::FutureRevision)));
    s.compact(3, applied(1)).unwrap();
    assert!(matches!(s.range(&all(), RangeOptions { rev: 2, ..Default::default() }), Err(MvccError::Compacted)));
    assert_eq!(s.range(&all(), RangeOptions { rev: 3, ..Default::default() }).unwrap().count, 2);
    assert_eq!(s.range(&all(), RangeOptions { rev: -4, ..Default::default() }).unwrap().count, 4);
}

#[test]
fn compaction_frees_engine_space_and_keeps_answers() {
    let engine = Arc::new(MemoryEngine::new());
    let s = MvccStore::open(engine.clone()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    del(&s, &single("b")); // 5
    put(&s, "c", "1"); // 6
    del(&s, &single("c")); // 7
    put(&s, "a", "3"); // 8
    assert_eq!(engine.table_len(Table::Key), 7);
    assert!(matches!(s.compact(9, applied(1)), Err(MvccError::FutureRevision)));
    compact_fully(&s, 7, 11);
    // Kept: a@3 (latest <= 7), c's tombstone at 7 (exactly the compact rev), a@8.
    // Dropped: a@2, b@4, b@5(t), c@6.
    assert_eq!(engine.table_len(Table::Key), 3);
    assert_eq!(s.compact_revision(), 7);
    assert_eq!(s.applied_index(), applied(11));
    assert_eq!(get(&s, "a", 7), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 2, 8, 3)));
    assert_eq!(get(&s, "c", 7), None);
    assert!(matches!(s.compact(7, applied(12)), Err(MvccError::Compacted)));
    assert!(matches!(s.compact(6, applied(12)), Err(MvccError::Compacted)));
    // A watch from the compact revision still sees the delete at 7.
    let evs = s.events_between(7, 100, true).unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| (e.kind, e.kv.mod_revision)).collect();
    assert_eq!(kinds, vec![(EventKind::Delete, 7), (EventKind::Put, 8)]);
    assert_eq!(evs[0].prev_kv, None, "c@6 was compacted, as etcd's watch");
    assert_eq!(evs[1].prev_kv, Some(kv("a", "2", 2, 3, 2)));
    assert!(matches!(s.events_between(6, 100, false), Err(MvccError::Compacted)));
    // The next compaction drops the tombstone and the now-dead key "c".
    put(&s, "d", "1"); // 9
    compact_fully(&s, 8, 13);
    assert_eq!(engine.table_len(Table::Key), 2);
    let keys: Vec<_> = s.index_snapshot().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"d".to_vec()]);
    // Restart: compact revision, current revision and history survive.
    let r = MvccStore::open(engine.clone()).unwrap();
    assert_eq!((r.compact_revision(), r.current_revision()), (8, 9));
    assert_eq!(r.applied_index(), applied(13));
    assert_eq!(get(&r, "a", 8), Some(kv("a", "3", 2, 8, 3)));
}

#[test]
fn compact_at_zero_on_fresh_store_is_allowed_like_etcd() {
    let s = open();
    s.compact(0, applied(1)).unwrap();
    assert_eq!(s.compact_revision(), 0);
    assert!(matches!(s.compact(0, applied(2)), Err(MvccError::Compacted)));
    s.compact(1, applied(3)).unwrap();
    assert!(matches!(s.compact(2, applied(4)), Err(MvccError::FutureRevision)));
}

#[test]
fn current_revision_survives_compaction_of_trailing_deletes() {
    let engine = Arc::new(MemoryEngine::new());
    let s = MvccStore::open(engine.clone()).unwrap();
    put(&s, "a", "1"); // 2
    del(&s, &single("a")); // 3
    put(&s, "b", "1"); // 4
    del(&s, &single("b")); // 5
    compact_fully(&s, 5, 1);
    assert!(matches!(s.compact(5, applied(1)), Err(MvccError::Compacted)));
    // Only b's tombstone at 5 is left; it still carries the revision.
    assert_eq!(engine.table_len(Table::Key), 1);
    let r = MvccStore::open(engine.clone()).unwrap();
    assert_eq!(r.current_revision(), 5);
    put(&s, "c", "1"); // 6
    del(&s, &single("c")); // 7
    compact_fully(&s, 7, 2);
    put(&s, "z", "1"); // 8
    del(&s, &single("z")); // 9
    compact_fully(&s, 9, 3);
    let left = engine.table_len(Table::Key);
    assert_eq!(left, 1, "only z's tombstone at 9 remains");
    let r = MvccStore::open(engine.clone()).unwrap();
    assert_eq!((r.current_revision(), r.compact_revision()), (9, 9));
    let mut t = r.write_txn();
    t.put(b"z", b"2", 0);
    let evs = t.commit(applied(4)).unwrap();
    assert_eq!(evs[0].kv, kv("z", "2", 10, 10, 1));

    // With an empty Table::Key the finished compact revision is the floor.
    let bare = Arc::new(MemoryEngine::new());
    let mut b = crate::WriteBatch::default();
    meta::put_finished_compact(&mut b, 10);
    bare.write(b).unwrap();
    let r = MvccStore::open(bare).unwrap();
    assert_eq!((r.current_revision(), r.compact_revision()), (10, 10));
}

#[test]
fn events_between_replays_history() {
    let s = open();
    let mut t = s.write_txn();
    t.put(b"a", b"1", 0);
    t.put(b"b", b"1", 0);
    t.commit(applied(1)).unwrap(); // 2
    put(&s, "a", "2"); // 3
    del(&s, &all()); // 4: deletes a (4.0) and b (4.1)
    let evs = s.events_between(2, 4, true).unwrap();
    let summary: Vec<_> = evs
        .iter()
        .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision, e.prev_kv.as_ref().map(|p| p.mod_revision)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, b"a".to_vec(), 2, None),
            (EventKind::Put, b"b".to_vec(), 2, None),
            (EventKind::Put, b"a".to_vec(), 3, Some(2)),
            (EventKind::Delete, b"a".to_vec(), 4, Some(3)),
            (EventKind::Delete, b"b".to_vec(), 4, Some(2)),
        ]
    );
    assert_eq!(evs[3].kv, KeyValue { key: b"a".to_vec(), mod_revision: 4, ..Default::default() });
    assert!(s.events_between(3, 3, false).unwrap()[0].prev_kv.is_none());
    assert_eq!(s.events_between(3, 100, false).unwrap().len(), 3);
    assert!(s.events_between(5, 9, false).unwrap().is_empty());
    assert_eq!(s.events_between(0, 2, false).unwrap().len(), 2);
}

#[test]
fn snapshot_install_replaces_everything() {
    let src = open();
    put(&src, "a", "1");
    put(&src, "b", "2");
    compact_fully(&src, 2, 5);
    let mut dump = Vec::new();
    src.engine().dump(&mut dump).unwrap();

    let dst = open();
    put(&dst, "stale", "x");
    put(&dst, "stale", "y");
    put(&dst, "stale", "z");
    dst.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(dst.current_revision(), 3);
    assert_eq!(dst.compact_revision(), 2);
    assert_eq!(dst.applied_index(), applied(5));
    assert_eq!(get(&dst, "stale", 0), None);
    assert_eq!(dst.index_snapshot(), src.index_snapshot());
    assert_eq!(
        dst.range(&all(), RangeOptions::default()).unwrap(),
        src.range(&all(), RangeOptions::default()).unwrap()
    );

    // Engine::restore + reload is the two-step form.
    let other = open();
    other.engine().restore(&mut &dump[..]).unwrap();
    other.reload().unwrap();
    assert_eq!(other.index_snapshot(), src.index_snapshot());

    // A corrupt snapshot is refused and leaves the store as it was.
    let before = dst.range(&all(), RangeOptions::default()).unwrap();
    let err = dst.restore_snapshot(&mut &dump[..dump.len() / 2]).unwrap_err();
    assert!(matches!(err, MvccError::Engine(EngineError::Corrupt(_))), "{err:?}");
    assert_eq!(dst.range(&all(), RangeOptions::default()).unwrap(), before);
}

#[test]
fn a_deferred_dump_installs_as_the_state_it_was_taken_at() {
    let src = open();
    put(&src, "a", "1");
    put(&src, "b", "2");
    del(&src, &single("a"));
    let at = src.range(&all(), RangeOptions::default()).unwrap();
    let job = src.deferred_dump().unwrap().expect("the memory engine defers");
    // Applies go on while the dump waits to be written.
    put(&src, "a", "3");
    put(&src, "c", "4");
    let mut dump = Vec::new();
    job(&mut dump).unwrap();

    let dst = open();
    dst.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(dst.current_revision(), 4);
    assert_eq!(dst.range(&all(), RangeOptions::default()).unwrap(), at);
    assert_eq!(get(&dst, "a", 2).map(|kv| kv.value), Some(b"1".to_vec()), "history before it is kept");
    // Compaction, the one writer below the dump's bound, runs once it is done.
    compact_fully(&src, 4, 9);
    assert_eq!(src.compact_revision(), 4);
}

#[test]
fn open_rejects_corrupt_key_table() {
    let engine = Arc::new(MemoryEngine::new());
    let mut b = crate::WriteBatch::default();
    b.put(Table::Key, b"not a revision".to_vec(), b"x".to_vec());
    engine.write(b).unwrap();
    assert!(matches!(MvccStore::open(engine), Err(MvccError::Corrupt(_))));
}

#[test]
fn error_strings_match_etcd() {
    assert_eq!(MvccError::Compacted.to_string(), "mvcc: required revision has been compacted");
    assert_eq!(MvccError::FutureRevision.to_string(), "mvcc: required revision is a future revision");
}

#[test]
fn engine_failures_leave_the_store_unchanged() {
    let engine = Arc::new(FaultyEngine::default());
    let s = MvccStore::open(engine.clone()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3

    // A failed commit publishes nothing and releases the writer.
    engine.fail_get.store(false, SeqCst);
    engine.fail_write.store(true, SeqCst);
    let mut t = s.write_txn();
    t.put(b"a", b"2", 0);
    t.delete_range(&single("b")).unwrap();
    assert!(matches!(t.commit(applied(9)), Err(MvccError::Engine(_))));
    assert!(matches!(s.set_applied(applied(9)), Err(MvccError::Engine(_))));
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.applied_index(), applied(0));

    // A failed compaction keeps the old compact revision.
    assert!(matches!(s.compact(2, applied(9)), Err(MvccError::Engine(_))));
    assert_eq!(s.compact_revision(), 0);
    engine.fail_get.store(false, SeqCst);
    engine.fail_write.store(false, SeqCst);
    assert_eq!(get(&s, "a", 2), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(get(&s, "b", 0), Some(kv("b", "1", 3, 3, 1)));

    // A put that cannot read the previous version poisons the txn.
    let mut t = s.write_txn();
    engine.fail_get.store(true, SeqCst);
    engine.fail_write.store(false, SeqCst);
    t.put(b"a", b"3", 0);
    engine.fail_get.store(false, SeqCst);
    engine.fail_write.store(false, SeqCst);
    t.put(b"c", b"1", 0);
    assert!(matches!(t.commit(applied(9)), Err(MvccError::Engine(_))));
    assert_eq!(s.current_revision(), 3);
    assert_eq!(get(&s, "c", 0), None);

    // Reads report engine errors instead of panicking.
    engine.fail_get.store(true, SeqCst);
    engine.fail_write.store(false, SeqCst);
    assert!(matches!(s.range(&all(), RangeOptions::default()), Err(MvccError::Engine(_))));
    engine.fail_get.store(false, SeqCst);
    engine.fail_write.store(false, SeqCst);

    // Everything still works afterwards, and a restart agrees.
    put(&s, "a", "4"); // 4
    assert_eq!(get(&s, "a", 0), Some(kv("a", "4", 2, 4, 2)));
    let r = MvccStore::open(engine.clone()).unwrap();
    assert_eq!(r.index_snapshot(), s.index_snapshot());
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MvccStore>();
    check::<MemoryEngine>();
}

#[test]
fn leased_keys_follow_the_latest_revision_of_each_key() {
    let s = open();
    let mut index = 10;
    let mut txn_put = |k: &str, lease: i64| {
        let mut t = s.write_txn();
        t.put(k.as_bytes(), b"v", lease);
        index += 1;
        t.commit(applied(index)).unwrap();
    };
    txn_put("a", 7);
    txn_put("b", 7);
    txn_put("c", 8);
    txn_put("b", 0); // detached by a put without a lease
    txn_put("d", 7);
    txn_put("e", 9);
    del(&s, &single("d"));
    del(&s, &single("c"));
    txn_put("c", 9); // recreated under another lease
    s.compact(s.current_revision() - 1, applied(100)).unwrap();
    let mut got: Vec<(i64, Vec<Vec<u8>>)> = s.leased_keys().unwrap().into_iter().collect();
    for (_, keys) in &mut got {
        keys.sort();
    }
    got.sort();
    assert_eq!(got, vec![(7, vec![b"a".to_vec()]), (9, vec![b"c".to_vec(), b"e".to_vec()])]);
}
