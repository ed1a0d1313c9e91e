//! Range execution (`range.rs`) with etcd 3.5's rules (etcd
//! `server/etcdserver/apply.go` `Range`, `mvcc/kvstore_txn.go` `rangeKeys`),
//! on a pinned view as the KV service serves it and inside write txns.

use api::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::pb::etcdserverpb::RangeRequest;
use api::EtcdError;

use super::test_harness::*;

/// Four keys whose key, create, mod, version and value orders all differ,
/// and `t` outside their prefix; the store ends at revision 12.
///
/// | key | value | create | mod | version |
/// |-----|-------|--------|-----|---------|
/// | s/a | q     | 3      | 11  | 3       |
/// | s/b | z     | 5      | 5   | 1       |
/// | s/c | a     | 2      | 10  | 4       |
/// | s/d | m     | 4      | 6   | 2       |
fn sort_fixture() -> Harness {
    let h = Harness::new();
    let seq = [
        ("s/c", "c1"),
        ("s/a", "a1"),
        ("s/d", "d1"),
        ("s/b", "z"),
        ("s/d", "m"),
        ("s/c", "c2"),
        ("s/c", "c3"),
        ("s/a", "a2"),
        ("s/c", "a"),
        ("s/a", "q"),
        ("t", "outside the prefix"),
    ];
    for (k, v) in seq {
        h.put(k, v);
    }
    assert_eq!(h.rev(), 12);
    h
}

fn prefix_s() -> RangeRequest {
    range("s/", "s0")
}

#[test]
fn one_key_and_a_missing_key() {
    let h = Harness::new();
    h.put("a", "1");
    let r = h.range(&range("a", "")).unwrap();
    assert_eq!((r.kvs, r.count, r.more, rev_of(&r.header)), (vec![kv("a", "1", 2, 2, 1)], 1, false, 2));
    let r = h.range(&range("b", "")).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more, rev_of(&r.header)), (0, 0, false, 2));
    // Keys and values are bytes, not text.
    h.put_req(api::pb::etcdserverpb::PutRequest {
        key: b"\xff\x00k".to_vec(),
        value: b"\xfe\x00".to_vec(),
        ..Default::default()
    })
    .unwrap();
    let r = h.range(&RangeRequest { key: b"\xff\x00k".to_vec(), ..Default::default() }).unwrap();
    assert_eq!(r.kvs[0].value, b"\xfe\x00");
}

#[test]
fn intervals_prefix_from_key_and_all_keys() {
    let h = Harness::new();
    for k in ["a", "b", "b/1", "b/2", "c", "d"] {
        h.put(k, "v");
    }
    let got = |key: &str, end: &str| {
        let r = h.range(&range(key, end)).unwrap();
        assert_eq!(r.count, r.kvs.len() as i64, "count of [{key}, {end})");
        keys(&r.kvs)
    };
    assert_eq!(got("a", "c"), ["a", "b", "b/1", "b/2"]);
    assert_eq!(got("b/1", "b/2"), ["b/1"]);
    assert!(got("c", "a").is_empty(), "an end below the key is an empty range");
    assert!(got("c", "c").is_empty());
    assert_eq!(got("b", "c"), ["b", "b/1", "b/2"], "prefix b");
    assert_eq!(got("b/", "b0"), ["b/1", "b/2"], "prefix b/");
    assert_eq!(got("b/2", "\0"), ["b/2", "c", "d"], "from a key");
    assert!(got("e", "\0").is_empty());
    assert_eq!(got("\0", "\0"), ["a", "b", "b/1", "b/2", "c", "d"], "all keys");
}

#[test]
fn limit_more_and_count() {
    let h = Harness::new();
    for i in 0..5 {
        h.put(&format!("p/{i}"), "v");
    }
    let all: Vec<String> = (0..5).map(|i| format!("p/{i}")).collect();
    for limit in [-1, 0, 1, 2, 4, 5, 6, i64::MIN, i64::MAX - 1, i64::MAX] {
        let r = h.range(&RangeRequest { limit, ..range("p/", "p0") }).unwrap();
        let n = if limit > 0 { (limit as usize).min(5) } else { 5 };
        assert_eq!(keys(&r.kvs), all[..n], "limit {limit}");
        assert_eq!(r.more, limit > 0 && limit < 5, "more with limit {limit}");
        assert_eq!(r.count, 5, "count ignores limit {limit}");
    }
}

#[test]
fn keys_only_and_count_only() {
    let h = Harness::new();
    for i in 0..5 {
        h.put(&format!("p/{i}"), &format!("value {i}"));
    }
    let r = h.range(&RangeRequest { keys_only: true, limit: 2, ..range("p/", "p0") }).unwrap();
    assert_eq!(r.kvs, [kv("p/0", "", 2, 2, 1), kv("p/1", "", 3, 3, 1)], "everything but the value");
    assert_eq!((r.more, r.count), (true, 5));
    for limit in [0, 2, 10] {
        let r = h.range(&RangeRequest { count_only: true, limit, ..range("p/", "p0") }).unwrap();
        assert!(r.kvs.is_empty(), "count_only returns no kvs (limit {limit})");
        assert_eq!((r.count, r.more), (5, false), "count_only with limit {limit} has no `more`");
    }
    let r = h.range(&RangeRequest { count_only: true, ..range("x", "") }).unwrap();
    assert_eq!(r.count, 0);
}

#[test]
fn sort_by_every_target_in_every_order() {
    let h = sort_fixture();
    assert_eq!(
        h.range(&prefix_s()).unwrap().kvs,
        [kv("s/a", "q", 3, 11, 3), kv("s/b", "z", 5, 5, 1), kv("s/c", "a", 2, 10, 4), kv("s/d", "m", 4, 6, 2)]
    );
    let ascending = |t: SortTarget| -> Vec<&str> {
        match t {
            SortTarget::Key => vec!["s/a", "s/b", "s/c", "s/d"],
            SortTarget::Create => vec!["s/c", "s/a", "s/d", "s/b"],
            SortTarget::Mod => vec!["s/b", "s/d", "s/c", "s/a"],
            SortTarget::Version => vec!["s/b", "s/d", "s/a", "s/c"],
            SortTarget::Value => vec!["s/c", "s/d", "s/a", "s/b"],
        }
    };
    for target in [SortTarget::Key, SortTarget::Version, SortTarget::Create, SortTarget::Mod, SortTarget::Value] {
        for order in [SortOrder::None, SortOrder::Ascend, SortOrder::Descend] {
            // etcd: order NONE is ascending for any target but KEY, and key
            // order (ascending too) for KEY.
            let mut want = ascending(target);
            if order == SortOrder::Descend {
                want.reverse();
            }
            let what = format!("sort {target:?} {order:?}");
            let req = RangeRequest { sort_target: target as i32, sort_order: order as i32, ..prefix_s() };
            let r = h.range(&req).unwrap();
            assert_eq!(keys(&r.kvs), want, "{what}");
            assert_eq!((r.count, r.more, rev_of(&r.header)), (4, false, 12), "{what}");

            // With an explicit order etcd sorts everything, then applies the
            // limit. With order NONE it fetches only limit + 1 keys in key
            // order and sorts those (the implied ASCEND is decided after the
            // fetch): a quirk clients can observe.
            let limited: Vec<&str> = if order == SortOrder::None {
                want.iter().copied().filter(|k| ["s/a", "s/b", "s/c"].contains(k)).take(2).collect()
            } else {
                want[..2].to_vec()
            };
            let r = h.range(&RangeRequest { limit: 2, ..req.clone() }).unwrap();
            assert_eq!(keys(&r.kvs), limited, "{what} limit 2");
            assert_eq!((r.count, r.more), (4, true), "{what} limit 2");

            // keys_only still sorts by the value it leaves out.
            let r = h.range(&RangeRequest { keys_only: true, ..req }).unwrap();
            assert_eq!(keys(&r.kvs), want, "keys_only {what}");
            assert!(r.kvs.iter().all(|kv| kv.value.is_empty()), "keys_only {what}");
        }
    }
}

/// Keys that tie on the sort target stay in key order, either way (etcd's
/// `sort.Sort` is an insertion sort, so stable, on results this short).
#[test]
fn sort_ties_keep_key_order() {
    let h = Harness::new();
    for k in ["b", "a", "c"] {
        h.put(k, "same");
    }
    h.put("d", "other");
    for (order, want) in [(SortOrder::Ascend, ["d", "a", "b", "c"]), (SortOrder::Descend, ["a", "b", "c", "d"])] {
        let req = RangeRequest { sort_target: SortTarget::Value as i32, sort_order: order as i32, ..range("\0", "\0") };
        assert_eq!(keys(&h.range(&req).unwrap().kvs), want, "{order:?}");
    }
    let by_version = RangeRequest {
        sort_target: SortTarget::Version as i32,
        sort_order: SortOrder::Descend as i32,
        ..range("\0", "\0")
    };
    assert_eq!(keys(&h.range(&by_version).unwrap().kvs), ["a", "b", "c", "d"]);
}

#[test]
fn revision_filters() {
    let h = sort_fixture();
    let filtered = |min_mod, max_mod, min_create, max_create| RangeRequest {
        min_mod_revision: min_mod,
        max_mod_revision: max_mod,
        min_create_revision: min_create,
        max_create_revision: max_create,
        ..prefix_s()
    };
    let cases = [
        (filtered(6, 0, 0, 0), vec!["s/a", "s/c", "s/d"]),
        (filtered(0, 6, 0, 0), vec!["s/b", "s/d"]),
        (filtered(6, 10, 0, 0), vec!["s/c", "s/d"]),
        (filtered(0, 0, 4, 0), vec!["s/b", "s/d"]),
        (filtered(0, 0, 0, 3), vec!["s/a", "s/c"]),
        (filtered(0, 0, 3, 4), vec!["s/a", "s/d"]),
        (filtered(12, 0, 0, 0), vec![]),
        (filtered(0, 10, 3, 0), vec!["s/b", "s/d"]),
        (filtered(i64::MIN, i64::MAX, 0, 0), vec!["s/a", "s/b", "s/c", "s/d"]),
        (filtered(0, 0, i64::MAX, i64::MAX), vec![]),
        (filtered(0, 0, i64::MIN, i64::MIN), vec![]),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let r = h.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), want, "case {i}");
        // etcd counts the keys in the range before filtering.
        assert_eq!((r.count, r.more), (4, false), "case {i}");
    }
    // Filters apply before the limit; `more` says whether filtered keys remain.
    let r = h.range(&RangeRequest { limit: 1, ..filtered(6, 0, 0, 0) }).unwrap();
    assert_eq!((keys(&r.kvs), r.more, r.count), (vec!["s/a".to_string()], true, 4));
    let r = h.range(&RangeRequest { limit: 3, ..filtered(6, 0, 0, 0) }).unwrap();
    assert_eq!((keys(&r.kvs).len(), r.more), (3, false));
    // With a sort, and at a historic revision (mod revisions as of then).
    let sorted = RangeRequest {
        sort_target: SortTarget::Mod as i32,
        sort_order: SortOrder::Descend as i32,
        ..filtered(6, 0, 0, 0)
    };
    assert_eq!(keys(&h.range(&sorted).unwrap().kvs), ["s/a", "s/c", "s/d"]);
    let r = h.range(&RangeRequest { revision: 6, ..filtered(5, 0, 0, 0) }).unwrap();
    assert_eq!((keys(&r.kvs), r.count, rev_of(&r.header)), (vec!["s/b".to_string(), "s/d".to_string()], 4, 12));
}

#[test]
fn historic_revisions_across_put_delete_put() {
    let h = Harness::new();
    h.put("k", "v1"); // 2
    h.put("k", "v2"); // 3
    h.put("other", "o"); // 4
    assert_eq!(h.delete("k", "").deleted, 1); // 5
    h.put("k", "v3"); // 6
    h.put("k", "v4"); // 7
    let at = |revision: i64| {
        let r = h.range(&RangeRequest { revision, ..range("k", "") }).unwrap();
        assert_eq!(rev_of(&r.header), 7, "the header has the current revision, not the one read");
        assert_eq!(r.count, r.kvs.len() as i64);
        r.kvs
    };
    assert_eq!(at(1), []);
    assert_eq!(at(2), [kv("k", "v1", 2, 2, 1)]);
    assert_eq!(at(3), [kv("k", "v2", 2, 3, 2)]);
    assert_eq!(at(4), [kv("k", "v2", 2, 3, 2)]);
    assert_eq!(at(5), []);
    assert_eq!(at(6), [kv("k", "v3", 6, 6, 1)], "a new generation");
    assert_eq!(at(7), [kv("k", "v4", 6, 7, 2)]);
    assert_eq!(at(0), [kv("k", "v4", 6, 7, 2)]);
    let r = h.range(&RangeRequest { revision: 4, ..range("\0", "\0") }).unwrap();
    assert_eq!(r.kvs, [kv("k", "v2", 2, 3, 2), kv("other", "o", 4, 4, 1)]);
    let r = h.range(&RangeRequest { revision: 5, count_only: true, ..range("\0", "\0") }).unwrap();
    assert_eq!(r.count, 1, "only `other` exists at revision 5");
    let r = h.range(&RangeRequest { revision: 3, limit: 1, ..range("\0", "\0") }).unwrap();
    assert_eq!((keys(&r.kvs), r.more), (vec!["k".to_string()], false), "only k exists at revision 3");
}

#[test]
fn future_revisions_fail() {
    let h = Harness::new();
    h.put("k", "v1");
    h.put("k", "v2"); // 3
    for revision in [4, 100, i64::MAX] {
        for req in [
            RangeRequest { revision, ..range("k", "") },
            RangeRequest { revision, count_only: true, ..range("k", "l") },
            RangeRequest { revision, limit: i64::MAX, ..range("\0", "\0") },
        ] {
            assert_eq!(h.range(&req), Err(EtcdError::FutureRev), "{req:?}");
        }
    }
    let r = h.range(&RangeRequest { revision: 3, ..range("k", "") }).unwrap();
    assert_eq!(values(&r.kvs), ["v2"], "the current revision itself is fine");
}

#[test]
fn compacted_revisions_fail() {
    let h = Harness::new();
    for i in 0..5 {
        h.put("k", &format!("v{i}")); // 2..=6
    }
    h.compact(4).unwrap();
    let at = |revision: i64| h.range(&RangeRequest { revision, ..range("k", "") }).map(|r| values(&r.kvs));
    for old in [1, 2, 3] {
        assert_eq!(at(old), Err(EtcdError::Compacted), "revision {old}");
        let count = RangeRequest { revision: old, count_only: true, ..range("k", "l") };
        assert_eq!(h.range(&count), Err(EtcdError::Compacted), "count_only at {old}");
    }
    // Whether or not the old revisions are gone from the engine yet.
    for physical in [false, true] {
        if physical {
            h.mvcc().finish_compaction().unwrap();
            assert_eq!(h.mvcc().finished_compact_revision(), 4);
        }
        assert_eq!(at(4), Ok(vec!["v2".to_string()]), "the compacted revision itself (physical {physical})");
        assert_eq!(at(5), Ok(vec!["v3".to_string()]));
        assert_eq!(at(0), Ok(vec!["v4".to_string()]));
        assert_eq!(at(3), Err(EtcdError::Compacted));
    }
}

/// etcd `rangeKeys`: a revision at or below 0 in a plain Range reads the
/// current revision, compacted or not (a txn's ranges differ, see
/// `tests_txn`).
#[test]
fn revisions_at_or_below_zero_read_the_current_revision() {
    let h = Harness::new();
    h.put("k", "v1");
    h.put("k", "v2");
    for compacted in [false, true] {
        if compacted {
            h.compact(3).unwrap();
        }
        for revision in [0, -1, -2, i64::MIN] {
            let r = h.range(&RangeRequest { revision, ..range("k", "") }).unwrap();
            assert_eq!((values(&r.kvs), rev_of(&r.header)), (vec!["v2".to_string()], 3), "{revision}");
        }
    }
}

#[test]
fn serializable_does_not_change_the_answer() {
    let h = sort_fixture();
    h.delete("s/b", "");
    for req in [
        prefix_s(),
        RangeRequest { revision: 6, ..prefix_s() },
        RangeRequest { limit: 2, sort_target: SortTarget::Value as i32, ..prefix_s() },
        RangeRequest { count_only: true, ..range("\0", "\0") },
    ] {
        let linearizable = h.range(&req).unwrap();
        let serializable = h.range(&RangeRequest { serializable: true, ..req.clone() }).unwrap();
        assert_eq!(linearizable, serializable, "{req:?}");
    }
}

/// A write txn's ranges take the same limit, sort and count rules, over
/// the store merged with the txn's own changes so far.
#[test]
fn ranges_in_a_write_txn_sort_and_count_its_own_changes() {
    let h = sort_fixture();
    let by_value = RangeRequest {
        sort_target: SortTarget::Value as i32,
        sort_order: SortOrder::Ascend as i32,
        limit: 2,
        ..prefix_s()
    };
    let r = h
        .txn(txn(
            vec![],
            vec![
                op::put("s/e", "b"),
                op::range(by_value),
                op::del("s/a", ""),
                op::range(RangeRequest { count_only: true, ..prefix_s() }),
                op::range(RangeRequest { limit: 1, keys_only: true, ..prefix_s() }),
                op::range(RangeRequest { min_create_revision: 13, ..prefix_s() }),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(rev_of(&r.header), 13);
    let sorted = range_of(&r.responses[1]);
    assert_eq!(keys(&sorted.kvs), ["s/c", "s/e"], "values a < b < m < q < z");
    assert_eq!((sorted.more, sorted.count, rev_of(&sorted.header)), (true, 5, 13));
    assert_eq!(range_of(&r.responses[3]).count, 4, "s/a deleted, s/e added");
    let first = range_of(&r.responses[4]);
    assert_eq!((first.kvs.clone(), first.more, first.count), (vec![kv("s/b", "", 5, 5, 1)], true, 4));
    assert_eq!(range_of(&r.responses[5]).kvs, [kv("s/e", "b", 13, 13, 1)]);
}
