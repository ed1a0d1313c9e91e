//! The stored key index: what a failed write or a crash between its writes
//! leaves, rebuilding in bounded memory, switching index kinds, snapshot
//! installs into the unused slot, and corrupt entries. The model test
//! (`tests_model.rs`) runs every operation over both kinds besides.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use crate::engine::{Engine, WriteBatch};
use crate::memory::MemoryEngine;
use crate::schema::{Table, INDEX_LEASES, INDEX_SLOT};

use super::stored_index::StoredBuilder;
use super::test_engine::ConsistentEngine;
use super::test_engine::FaultyEngine;
use super::tests_compaction::{all, answers, applied, fill, manual, same};
use super::tests_model::{normalized_index, sorted_leases};
use super::*;

fn open(engine: Arc<dyn Engine>, kind: KeyIndexKind) -> MvccStore {
    MvccStore::open_with_index(engine, manual(7), kind).unwrap()
}

/// A store with the in-memory index over a copy of `engine`'s contents.
fn reference_of(engine: &dyn Engine) -> MvccStore {
    let mut dump = Vec::new();
    engine.dump(&mut dump).unwrap();
    let copy = Arc::new(MemoryEngine::new());
    copy.restore(&mut &dump[..]).unwrap();
    open(copy, KeyIndexKind::Memory)
}

fn leases(s: &MvccStore) -> Vec<(i64, Vec<Vec<u8>>)> {
    sorted_leases(s.leased_keys().unwrap())
}

/// Entries whose first byte is `slot`: a slot's histories for 0 and 1, its
/// lease rows for 2 + the slot.
fn entries_in_slot(engine: &dyn Engine, slot: u8) -> usize {
    let mut n = 0;
    engine
        .scan(Table::Index, &[slot], Some(&[slot + 1]), &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[test]
fn auto_stores_the_index_only_in_a_persistent_engine() {
    let s = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
    assert_eq!(s.key_index_kind(), KeyIndexKind::Memory);
    let s = open(Arc::new(MemoryEngine::new()), KeyIndexKind::Stored);
    assert_eq!(s.key_index_kind(), KeyIndexKind::Stored);
}

#[test]
fn a_failed_index_write_changes_nothing() {
    let engine = Arc::new(FaultyEngine::default());
    let s = open(engine.clone(), KeyIndexKind::Stored);
    fill(&s, 20, 60);
    let before = answers(&s, 1);
    let leased = leases(&s);
    assert!(!leased.is_empty());
    engine.fail_index_writes.store(true, SeqCst);
    let mut t = s.write_txn();
    t.put(b"k0001", b"lost", 9);
    t.put(b"new", b"lost", 9);
    assert!(t.commit(applied(1000)).is_err());
    engine.fail_index_writes.store(false, SeqCst);
    same(&answers(&s, 1), &before, "after a failed commit");
    assert_eq!(leases(&s), leased);
    // The same holds for a store opened afresh over what the engine holds.
    drop(s);
    let reopened = open(engine.clone(), KeyIndexKind::Stored);
    same(&answers(&reopened, 1), &before, "reopened");
    assert_eq!(leases(&reopened), leased);
    assert_eq!(normalized_index(&reopened), normalized_index(&reference_of(engine.as_ref())));
    assert_eq!(reopened.keys_total(), 20);
}

#[test]
fn a_crash_between_compaction_writes_resumes_the_pass() {
    let engine = Arc::new(FaultyEngine::default());
    // One batch holds the whole pass: the failing step is the last one.
    let s = MvccStore::open_with_index(engine.clone(), manual(1000), KeyIndexKind::Stored).unwrap();
    fill(&s, 12, 80);
    let reference = reference_of(engine.as_ref());
    let at = 60;
    s.compact(at, applied(500)).unwrap();
    reference.compact(at, applied(500)).unwrap();
    reference.finish_compaction().unwrap();
    let want = answers(&reference, at);
    // Revisions go, the histories naming them stay: the "crash" point.
    engine.fail_index_writes.store(true, SeqCst);
    assert!(s.compact_step().is_err());
    same(&answers(&s, at), &want, "with histories naming deleted revisions");
    assert!(s.finished_compact_revision() < at);
    drop(s);
    engine.fail_index_writes.store(false, SeqCst);
    let reopened = open(engine.clone(), KeyIndexKind::Stored);
    assert!(reopened.finished_compact_revision() < at, "the pass is not recorded as finished");
    same(&answers(&reopened, at), &want, "reopened before the pass resumed");
    reopened.finish_compaction().unwrap();
    assert_eq!(reopened.finished_compact_revision(), at);
    same(&answers(&reopened, at), &want, "after the pass");
    assert_eq!(normalized_index(&reopened), normalized_index(&reference));
    assert_eq!(reopened.keys_total(), reference.keys_total());
}

#[test]
fn a_rebuild_holding_few_histories_matches_the_memory_index() {
    let engine = Arc::new(MemoryEngine::new());
    let s = open(engine.clone(), KeyIndexKind::Memory);
    // Many keys, each changed again long after its first revision, so a
    // three-history overlay writes and reads most of them back.
    fill(&s, 40, 300);
    s.compact(120, applied(400)).unwrap();
    s.finish_compaction().unwrap();
    let want = normalized_index(&s);
    let keys = s.keys_total();
    drop(s);
    let built = StoredBuilder::rebuild_with(engine.clone(), 0, 3).unwrap();
    assert_eq!(built.index.len(), keys);
    let stored = open(engine.clone(), KeyIndexKind::Stored);
    assert_eq!(normalized_index(&stored), want);
    assert_eq!(stored.keys_total(), keys);
}

#[test]
fn switching_kinds_rebuilds_what_the_other_kind_did_not_keep() {
    let engine = Arc::new(MemoryEngine::new());
    let s = open(engine.clone(), KeyIndexKind::Stored);
    fill(&s, 10, 30);
    drop(s);
    let m = open(engine.clone(), KeyIndexKind::Memory);
    assert_eq!(engine.get(Table::Index, INDEX_SLOT).unwrap(), None, "the stored index is marked stale");
    let mut t = m.write_txn();
    t.delete_range(&all()).unwrap();
    t.put(b"only", b"1", 4);
    t.commit(applied(100)).unwrap();
    let want = answers(&m, 1);
    drop(m);
    let s = open(engine.clone(), KeyIndexKind::Stored);
    same(&answers(&s, 1), &want, "stored after memory");
    assert_eq!(leases(&s), vec![(4, vec![b"only".to_vec()])], "lease rows rebuilt, none left from before");
    assert_eq!(s.keys_total(), 11);
}

#[test]
fn a_snapshot_install_builds_in_the_other_slot() {
    let leader = open(Arc::new(MemoryEngine::new()), KeyIndexKind::Memory);
    fill(&leader, 30, 90);
    leader.compact(40, applied(200)).unwrap();
    let mut dump = Vec::new();
    leader.engine().dump(&mut dump).unwrap();
    let want = answers(&leader, 40);
    let leased = leases(&leader);
    assert!(!leased.is_empty());

    let engine = Arc::new(MemoryEngine::new());
    let member = open(engine.clone(), KeyIndexKind::Stored);
    fill(&member, 7, 20);
    let mut t = member.write_txn();
    t.put(b"member-only", b"x", 5);
    t.commit(applied(21)).unwrap();
    assert_eq!(engine.get(Table::Index, INDEX_SLOT).unwrap(), Some(vec![0]));
    member.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(engine.get(Table::Index, INDEX_SLOT).unwrap(), Some(vec![1]));
    assert_eq!(engine.get(Table::Index, INDEX_LEASES).unwrap(), Some(vec![1]));
    assert_eq!(entries_in_slot(engine.as_ref(), 0), 0, "the old slot is emptied");
    assert_eq!(entries_in_slot(engine.as_ref(), 2), 0, "and its lease rows");
    same(&answers(&member, 40), &want, "installed");
    assert_eq!(member.keys_total(), leader.keys_total());
    assert_eq!(leases(&member), leased, "installed");
    drop(member);
    let reopened = open(engine.clone(), KeyIndexKind::Stored);
    same(&answers(&reopened, 40), &want, "reopened");
    assert_eq!(leases(&reopened), leased, "reopened");
    // And back into slot 0 on the next install.
    reopened.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(engine.get(Table::Index, INDEX_SLOT).unwrap(), Some(vec![0]));
    assert_eq!(engine.get(Table::Index, INDEX_LEASES).unwrap(), Some(vec![0]));
    assert_eq!(entries_in_slot(engine.as_ref(), 1), 0);
    assert_eq!(entries_in_slot(engine.as_ref(), 3), 0);
    same(&answers(&reopened, 40), &want, "installed again");
    assert_eq!(leases(&reopened), leased, "installed again");
}

/// A data dir written before lease rows existed has a stored index and no
/// [`INDEX_LEASES`]: its first open gives it the rows, later ones read them.
#[test]
fn a_stored_index_without_lease_rows_gets_them_once() {
    let engine = Arc::new(MemoryEngine::new());
    let s = open(engine.clone(), KeyIndexKind::Stored);
    fill(&s, 30, 90);
    let want = leases(&s);
    assert!(!want.is_empty());
    assert_eq!(want, leases(&reference_of(engine.as_ref())));
    drop(s);
    let mut b = WriteBatch::default();
    b.delete(Table::Index, INDEX_LEASES.to_vec());
    engine.write(b).unwrap();
    engine.delete_range(Table::Index, &[2], &[3]).unwrap();
    // A stale row the backfill must not keep.
    let mut b = WriteBatch::default();
    b.put(Table::Index, [&[2u8][..], &7i64.to_be_bytes(), b"gone"].concat(), Vec::new());
    engine.write(b).unwrap();

    let scanned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = open(Arc::new(ConsistentEngine::over(engine.clone(), scanned.clone())), KeyIndexKind::Stored);
    assert!(scanned.load(SeqCst) > 0, "the first open reads the revisions");
    assert_eq!(leases(&s), want);
    assert_eq!(engine.get(Table::Index, INDEX_LEASES).unwrap(), Some(vec![0]));
    drop(s);
    scanned.store(0, SeqCst);
    let s = open(Arc::new(ConsistentEngine::over(engine.clone(), scanned.clone())), KeyIndexKind::Stored);
    assert_eq!(leases(&s), want);
    assert_eq!(scanned.load(SeqCst), 0, "later opens read only the rows");
}

#[test]
fn a_corrupt_history_is_an_error_not_a_panic() {
    let engine = Arc::new(MemoryEngine::new());
    let s = open(engine.clone(), KeyIndexKind::Stored);
    fill(&s, 5, 10);
    drop(s);
    let mut b = WriteBatch::default();
    b.put(Table::Index, [&[0u8][..], b"k0001"].concat(), vec![1, 7, 7]);
    engine.write(b).unwrap();
    // Opened afresh: nothing cached from before the damage.
    let s = open(engine.clone(), KeyIndexKind::Stored);
    let one = KeyRange::Single(b"k0001".to_vec());
    assert!(matches!(s.range(&one, RangeOptions::default()), Err(MvccError::Corrupt(_))));
    assert!(matches!(s.range(&all(), RangeOptions::default()), Err(MvccError::Corrupt(_))));
    let mut t = s.write_txn();
    t.put(b"k0001", b"x", 0);
    assert!(t.commit(applied(100)).is_err());
    // Keys whose history is intact still answer.
    let other = KeyRange::Single(b"k0002".to_vec());
    assert_eq!(s.range(&other, RangeOptions::default()).unwrap().kvs.len(), 1);
}

/// A compaction batch plans from histories it reads without the writer
/// mutex; a txn that commits before the batch takes the mutex must keep its
/// revisions (the batch reads that key again), with few late keys and with
/// more than the watch names one by one.
#[test]
fn a_write_while_a_compaction_batch_plans_is_kept() {
    for late_keys in [1usize, 20_000] {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let s = open(engine.clone(), KeyIndexKind::Stored);
        fill(&s, 12, 80);
        let at = s.current_revision();
        s.compact(at, applied(500)).unwrap();
        let shared = s.shared.clone();
        let slice = shared.index.read().compact_slice(None, at, 1000, 1000).unwrap();
        assert!(slice.next.is_none() && slice.keys.len() > 2, "one slice covers every key: {:?}", slice.keys);
        let hot = slice.keys[1].clone();
        let mut t = s.write_txn();
        t.put(&hot, b"late", 0);
        for i in 1..late_keys {
            t.put(format!("late{i:06}").as_bytes(), b"x", 0);
        }
        t.commit(applied(501)).unwrap();
        // The rest of the batch, as `compact_step` does it.
        let mut deletes = WriteBatch::default();
        for d in &slice.drops {
            deletes.delete(Table::Key, d.encode());
        }
        engine.write(deletes).unwrap();
        {
            let _writer = shared.writer.lock();
            shared.index.read().write_compaction(engine.as_ref(), WriteBatch::default(), &slice, at).unwrap();
        }
        let got = s.range(&KeyRange::Single(hot.clone()), RangeOptions::default()).unwrap();
        assert_eq!(got.kvs.len(), 1);
        assert_eq!(got.kvs[0].value, b"late", "{late_keys} late keys: the late put was lost");
        assert_eq!(got.kvs[0].mod_revision, at + 1);
        drop(s);
        let reopened = open(engine.clone(), KeyIndexKind::Stored);
        reopened.finish_compaction().unwrap();
        let reference = reference_of(engine.as_ref());
        reference.finish_compaction().unwrap();
        assert_eq!(normalized_index(&reopened), normalized_index(&reference), "{late_keys} late keys");
        assert_eq!(reopened.keys_total(), reference.keys_total());
    }
}
