//! Counts of paginated ranges with count marks (`count_marks.rs`): every
//! page's count is the whole rest of the range, whatever marks earlier
//! counts left, over both key index kinds; marks never outlive the state
//! they counted (a txn that did not commit, a snapshot install).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::memory::MemoryEngine;

use super::tests_compaction::manual;
use super::*;

fn applied(index: u64) -> AppliedIndex {
    AppliedIndex { index, term: 1 }
}

fn open(kind: KeyIndexKind) -> MvccStore {
    let s = MvccStore::open_with_index(Arc::new(MemoryEngine::new()), manual(100), kind).unwrap();
    s.counts.set_every(16);
    s
}

fn key(i: usize) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Pages through `range` at `rev` with `limit`, as Kubernetes does (each
/// page starts just past the last key of the one before); checks each
/// page's count against `live` and returns the keys read.
fn paginate(s: &MvccStore, range: KeyRange, rev: i64, limit: i64, live: &BTreeSet<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut range = range;
    loop {
        let r = s.range(&range, RangeOptions { rev, limit, ..Default::default() }).unwrap();
        let want = live.iter().filter(|k| range.contains(k)).count() as i64;
        assert_eq!(r.count, want, "count of {range:?} at {rev}");
        let Some(last) = r.kvs.last() else {
            return got;
        };
        got.extend(r.kvs.iter().map(|kv| kv.key.clone()));
        let next = [&last.key[..], &[0]].concat();
        range = match range {
            KeyRange::Range { end, .. } => KeyRange::Range { start: next, end },
            _ => KeyRange::FromKey(next),
        };
    }
}

#[test]
fn every_page_counts_the_rest_of_the_range() {
    for kind in [KeyIndexKind::Memory, KeyIndexKind::Stored] {
        let s = open(kind);
        let mut live = BTreeSet::new();
        let mut index = 0;
        for batch in 0..20 {
            let mut t = s.write_txn();
            for i in 0..50 {
                let k = key(batch * 50 + i);
                t.put(&k, b"v", 0);
                live.insert(k);
            }
            if batch % 3 == 2 {
                let gone = key(batch * 40);
                t.delete_range(&KeyRange::Single(gone.clone())).unwrap();
                live.remove(&gone);
            }
            index += 1;
            t.commit(applied(index)).unwrap();
        }
        let rev = s.current_revision();
        let all = KeyRange::FromKey(key(0));
        let part = KeyRange::Range { start: key(100), end: key(700) };
        let want_all: Vec<Vec<u8>> = live.iter().cloned().collect();
        assert_eq!(paginate(&s, all.clone(), rev, 7, &live), want_all, "{kind:?}");
        assert!(s.counts.len() > 0, "the first page left marks");
        // Again with other page sizes: the marks of the first walk serve.
        assert_eq!(paginate(&s, all.clone(), rev, 23, &live), want_all);
        paginate(&s, part.clone(), rev, 5, &live);

        // Later writes change nothing at `rev`, and make their own counts.
        let mut later = live.clone();
        let mut t = s.write_txn();
        t.delete_range(&KeyRange::Range { start: key(300), end: key(400) }).unwrap();
        t.put(b"k0300x", b"v", 0);
        t.commit(applied(100)).unwrap();
        later.retain(|k| !(key(300)..key(400)).contains(k));
        later.insert(b"k0300x".to_vec());
        assert_eq!(paginate(&s, all.clone(), rev, 7, &live), want_all);
        paginate(&s, all.clone(), s.current_revision(), 11, &later);
        paginate(&s, part.clone(), s.current_revision(), 3, &later);
        let count_only = RangeOptions { count_only: true, ..Default::default() };
        assert_eq!(s.range(&part, count_only).unwrap().count, later.iter().filter(|k| part.contains(k)).count() as i64);
    }
}

/// A txn reads its own view at begin + 1; it may then fail, and another
/// txn commit that revision with other keys.
#[test]
fn a_txn_that_did_not_commit_leaves_no_marks() {
    let s = open(KeyIndexKind::Memory);
    s.counts.set_every(4);
    let mut t = s.write_txn();
    for i in 0..100 {
        t.put(&key(i), b"v", 0);
    }
    t.commit(applied(1)).unwrap();
    let range = KeyRange::Range { start: key(0), end: key(9999) };
    let one = RangeOptions { limit: 1, ..Default::default() };

    let mut dropped = s.write_txn();
    dropped.put(b"z", b"outside the range", 0);
    assert_eq!(dropped.range(&range, one).unwrap().count, 100);
    drop(dropped);

    let mut t = s.write_txn();
    for i in 100..110 {
        t.put(&key(i), b"v", 0);
    }
    t.commit(applied(2)).unwrap();
    let r = s.range(&range, one).unwrap();
    assert_eq!((r.rev, r.count), (3, 110));
}

#[test]
fn a_snapshot_install_forgets_the_marks() {
    let fill = |s: &MvccStore, prefix: &str, n: usize| {
        let mut t = s.write_txn();
        for i in 0..n {
            t.put(format!("{prefix}{i:04}").as_bytes(), b"v", 0);
        }
        t.commit(applied(1)).unwrap();
    };
    let leader = open(KeyIndexKind::Memory);
    fill(&leader, "k", 300);
    let mut dump = Vec::new();
    leader.engine().dump(&mut dump).unwrap();

    for kind in [KeyIndexKind::Memory, KeyIndexKind::Stored] {
        let member = open(kind);
        fill(&member, "k", 100);
        let all = KeyRange::FromKey(Vec::new());
        let page = RangeOptions { rev: 2, limit: 1, ..Default::default() };
        assert_eq!(member.range(&all, page).unwrap().count, 100);
        member.restore_snapshot(&mut &dump[..]).unwrap();
        assert_eq!(member.counts.len(), 0);
        assert_eq!(member.range(&all, page).unwrap().count, 300, "{kind:?}");
    }
}
