//! Txn evaluation (`txn.rs`) through the applier, with etcd 3.5's rules
//! (etcd `server/etcdserver/apply.go`: `Txn`, `compareToPath`,
//! `applyCompare`, `checkRequests`, `applyTxn`).

use api::pb::etcdserverpb::compare::{
    CompareResult::{self, Equal, Greater, Less, NotEqual},
    CompareTarget,
};
use api::pb::etcdserverpb::{Compare, PutRequest, RangeRequest};
use api::EtcdError;
use storage::EventKind;

use super::range::PinnedView;
use super::test_harness::*;
use super::txn::{execute_readonly_txn, is_txn_readonly, is_txn_serializable};

/// How the stored field relates to the compare's operand.
#[derive(Clone, Copy, Debug)]
enum Rel {
    /// The operand is below the stored field.
    Lower,
    Equal,
    /// The operand is above the stored field.
    Higher,
}

fn holds(rel: Rel, result: CompareResult) -> bool {
    match (rel, result) {
        (Rel::Equal, Equal) => true,
        (Rel::Equal, _) => false,
        (_, NotEqual) => true,
        (Rel::Lower, Greater) | (Rel::Higher, Less) => true,
        _ => false,
    }
}

/// For `k` = value "b", create 2, mod 3, version 2, lease 7: one compare per
/// target whose operand stands in `rel` to the stored field.
fn compares_for(rel: Rel, result: CompareResult) -> Vec<(&'static str, Compare)> {
    let pick = |lo: i64, eq: i64, hi: i64| match rel {
        Rel::Lower => lo,
        Rel::Equal => eq,
        Rel::Higher => hi,
    };
    let value = match rel {
        Rel::Lower => "a",
        Rel::Equal => "b",
        Rel::Higher => "bb",
    };
    vec![
        ("value", cmp_value("k", result, value)),
        ("version", cmp_version("k", result, pick(1, 2, 3))),
        ("create", cmp_create("k", result, pick(1, 2, 3))),
        ("mod", cmp_mod("k", result, pick(2, 3, 4))),
        ("lease", cmp_lease("k", result, pick(6, 7, 8))),
    ]
}

/// `when [c] then put out=then else put out=else`.
fn then_else(c: Compare) -> api::pb::etcdserverpb::TxnRequest {
    txn(vec![c], vec![op::put("out", "then")], vec![op::put("out", "else")])
}

/// Runs `t` as a write txn and reports which branch it took, checking that
/// it made exactly one revision.
fn took_then(h: &Harness, c: Compare) -> bool {
    let before = h.rev();
    let r = h.txn(then_else(c.clone())).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert_eq!(rev_of(&r.header), before + 1, "either branch writes: {c:?}");
    assert_eq!(values(&h.get("out", "")), [if r.succeeded { "then" } else { "else" }], "{c:?}");
    r.succeeded
}

const RESULTS: [CompareResult; 4] = [Equal, NotEqual, Greater, Less];

#[test]
fn every_compare_target_with_every_result() {
    let h = Harness::new();
    h.grant(7, 10).unwrap();
    h.put("k", "x");
    h.put_req(PutRequest { lease: 7, ..put("k", "b") }).unwrap();
    assert_eq!(h.get("k", ""), [api::pb::mvccpb::KeyValue { lease: 7, ..kv("k", "b", 2, 3, 2) }]);
    for rel in [Rel::Lower, Rel::Equal, Rel::Higher] {
        for result in RESULTS {
            for (target, c) in compares_for(rel, result) {
                let want = holds(rel, result);
                let what = format!("{target} {result:?} with the operand {rel:?}");
                // A read-only txn decides the same way on a pinned view.
                let ro = txn(vec![c.clone()], vec![op::get("k")], vec![]);
                let r = execute_readonly_txn(&PinnedView::new(h.mvcc()), &ro).unwrap();
                assert_eq!(r.succeeded, want, "read-only: {what}");
                assert_eq!(took_then(&h, c), want, "write: {what}");
            }
        }
    }
}

#[test]
fn compare_on_a_missing_or_deleted_key() {
    let h = Harness::new();
    h.put("present", "v");
    h.put("gone", "g");
    h.delete("gone", "");
    let rev = h.rev();
    for key in ["missing", "gone"] {
        let cases = [
            // A missing key has no value: every value compare fails.
            (cmp_value(key, Equal, ""), false),
            (cmp_value(key, NotEqual, "x"), false),
            (cmp_value(key, Greater, ""), false),
            (cmp_value(key, Less, "z"), false),
            // The other targets compare a zero.
            (cmp_version(key, Equal, 0), true),
            (cmp_version(key, NotEqual, 0), false),
            (cmp_version(key, Greater, 0), false),
            (cmp_version(key, Less, 1), true),
            (cmp_create(key, Equal, 0), true),
            (cmp_create(key, Less, 2), true),
            (cmp_mod(key, Equal, 0), true),
            (cmp_mod(key, Greater, -1), true),
            (cmp_lease(key, Equal, 0), true),
            (cmp_lease(key, NotEqual, 0), false),
            // The same for a range with no key in it.
            (ranged(cmp_value(key, Equal, ""), &format!("{key}0")), false),
            (ranged(cmp_version(key, Equal, 0), &format!("{key}0")), true),
            (ranged(cmp_create("n", Equal, 0), "a"), true),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            let r = h.txn(txn(vec![c.clone()], vec![], vec![])).unwrap();
            assert_eq!(r.succeeded, want, "{key} case {i}: {c:?}");
            assert_eq!(rev_of(&r.header), rev, "no op, no revision");
        }
    }
    // The usual "create if absent" idiom.
    let create = |v: &str| txn(vec![cmp_version("new", Equal, 0)], vec![op::put("new", v)], vec![op::get("new")]);
    assert!(h.txn(create("first")).unwrap().succeeded);
    let r = h.txn(create("second")).unwrap();
    assert!(!r.succeeded);
    assert_eq!(range_of(&r.responses[0]).kvs, [kv("new", "first", rev + 1, rev + 1, 1)]);
}

#[test]
fn compare_with_a_range_end_needs_every_key_to_match() {
    let h = Harness::new();
    h.put("r/a", "x"); // 2
    h.put("r/b", "x"); // 3
    h.put("r/b", "x"); // 4: r/b at version 2
    h.put("s", "y"); // 5
    let cases = [
        (ranged(cmp_value("r/", Equal, "x"), "r0"), true),
        (ranged(cmp_value("r/", NotEqual, "x"), "r0"), false),
        (ranged(cmp_version("r/", Greater, 0), "r0"), true),
        (ranged(cmp_version("r/", Equal, 1), "r0"), false),
        (ranged(cmp_version("r/", Less, 2), "r0"), false),
        (ranged(cmp_version("r/", Less, 3), "r0"), true),
        (ranged(cmp_mod("r/", Less, 4), "r0"), false),
        (ranged(cmp_mod("r/", Less, 5), "r0"), true),
        (ranged(cmp_create("r/", Greater, 1), "r0"), true),
        (ranged(cmp_create("r/", Equal, 2), "r0"), false),
        (ranged(cmp_lease("r/", Equal, 0), "r0"), true),
        // [r/b, s): r/b only.
        (ranged(cmp_version("r/b", Equal, 2), "s"), true),
        // [r/a, t): s is in it and its value differs.
        (ranged(cmp_value("r/a", Equal, "x"), "t"), false),
        // From a key on (range_end "\0").
        (ranged(cmp_version("r/b", Greater, 0), "\0"), true),
        (ranged(cmp_value("r/b", Equal, "x"), "\0"), false),
        (ranged(cmp_value("r/a", Less, "y"), "s"), true),
    ];
    for (i, (c, want)) in cases.into_iter().enumerate() {
        let r = h.txn(txn(vec![c.clone()], vec![], vec![])).unwrap();
        assert_eq!(r.succeeded, want, "case {i}: {c:?}");
        assert_eq!(rev_of(&r.header), 5);
    }
}

#[test]
fn every_compare_must_hold() {
    let h = Harness::new();
    h.put("a", "1");
    h.put("b", "2");
    let yes_a = cmp_value("a", Equal, "1");
    let yes_b = cmp_mod("b", Equal, 3);
    let no = cmp_version("b", Greater, 1);
    for (cmps, want) in [
        (vec![], true),
        (vec![yes_a.clone()], true),
        (vec![yes_a.clone(), yes_b.clone()], true),
        (vec![yes_a.clone(), no.clone()], false),
        (vec![no.clone(), yes_b.clone()], false),
        (vec![yes_a, yes_b, no], false),
    ] {
        let n = cmps.len();
        assert_eq!(h.txn(txn(cmps, vec![], vec![])).unwrap().succeeded, want, "{n} compares");
    }
}

/// etcd's `compareKV`: an unknown target compares as equal, an unknown
/// result holds, and a missing or mismatched operand is the zero value.
#[test]
fn unknown_targets_results_and_operands_like_etcd() {
    let h = Harness::new();
    h.put("k", "b");
    h.put("empty", "");
    let with = |c: Compare, f: fn(&mut Compare)| {
        let mut c = c;
        f(&mut c);
        c
    };
    let cases = [
        (with(cmp_value("k", Equal, "x"), |c| c.target = 99), true),
        (with(cmp_value("k", NotEqual, "b"), |c| c.target = 99), false),
        (with(cmp_value("missing", Equal, "x"), |c| c.target = 99), true),
        (with(cmp_value("k", Equal, "x"), |c| c.result = 99), true),
        (with(cmp_value("missing", Equal, "x"), |c| c.result = 99), false),
        (with(cmp_value("empty", Equal, "x"), |c| c.target_union = None), true),
        (with(cmp_value("k", Greater, "x"), |c| c.target_union = None), true),
        (with(cmp_version("k", Greater, 5), |c| c.target_union = None), true),
        // A VALUE compare carrying a version operand compares the value with "".
        (with(cmp_version("k", Greater, 5), |c| c.target = CompareTarget::Value as i32), true),
        (with(cmp_version("empty", Equal, 5), |c| c.target = CompareTarget::Value as i32), true),
    ];
    for (i, (c, want)) in cases.into_iter().enumerate() {
        assert_eq!(h.txn(txn(vec![c.clone()], vec![], vec![])).unwrap().succeeded, want, "case {i}: {c:?}");
    }
}

#[test]
fn success_and_failure_branches() {
    let h = Harness::new();
    h.put("k", "v"); // 2
    h.put("gone", "g"); // 3
    let branch = |expect: &str, failure| {
        txn(
            vec![cmp_value("k", Equal, expect)],
            vec![op::put_req(PutRequest { prev_kv: true, ..put("k", "then") }), op::get("k"), op::del_prev("gone", "")],
            failure,
        )
    };
    // Failure: the else ops, and only they, run, and answer in order.
    let r = h.txn(branch("nope", vec![op::get("k"), op::put("else", "e")])).unwrap();
    assert!(!r.succeeded);
    assert_eq!(rev_of(&r.header), 4);
    assert_eq!(r.responses.len(), 2);
    assert_eq!(range_of(&r.responses[0]).kvs, [kv("k", "v", 2, 2, 1)]);
    assert_eq!(rev_of(&range_of(&r.responses[0]).header), 3, "read before the txn's first write");
    assert_eq!(rev_of(&put_of(&r.responses[1]).header), 4);
    assert_eq!(h.get("k", ""), [kv("k", "v", 2, 2, 1)]);
    assert_eq!(h.get("else", ""), [kv("else", "e", 4, 4, 1)]);

    // Success.
    let r = h.txn(branch("v", vec![op::put("else", "e2")])).unwrap();
    assert!(r.succeeded);
    assert_eq!(rev_of(&r.header), 5);
    assert_eq!(r.responses.len(), 3);
    let p = put_of(&r.responses[0]);
    assert_eq!((rev_of(&p.header), p.prev_kv.clone()), (5, Some(kv("k", "v", 2, 2, 1))));
    assert_eq!(range_of(&r.responses[1]).kvs, [kv("k", "then", 2, 5, 2)]);
    let d = del_of(&r.responses[2]);
    assert_eq!((rev_of(&d.header), d.deleted, d.prev_kvs.clone()), (5, 1, vec![kv("gone", "g", 3, 3, 1)]));
    assert_eq!(values(&h.get("else", "")), ["e"], "the else branch did not run");
    assert!(h.get("gone", "").is_empty());

    // A failed compare with an empty else branch changes nothing.
    let r = h.txn(branch("nope", vec![])).unwrap();
    assert!(!r.succeeded);
    assert!(r.responses.is_empty());
    assert_eq!((rev_of(&r.header), h.rev()), (5, 5));
}

#[test]
fn nested_compares_see_the_state_before_the_txn() {
    let h = Harness::new();
    h.put("k", "old"); // 2
    let outer = txn(
        vec![cmp_version("k", Equal, 1)],
        vec![
            op::put("k", "new"),
            op::txn(txn(
                vec![cmp_value("k", Equal, "old")],
                vec![op::put("n", "then"), op::get("k")],
                vec![op::put("n", "else")],
            )),
            op::txn(txn(
                vec![cmp_version("k", Equal, 0)],
                vec![op::put("m", "then")],
                vec![op::put("m", "else"), op::txn(txn(vec![], vec![op::put("deep", "d")], vec![]))],
            )),
            op::get("deep"),
        ],
        vec![],
    );
    let r = h.txn(outer).unwrap();
    assert!(r.succeeded);
    assert_eq!(rev_of(&r.header), 3);
    assert_eq!(r.responses.len(), 4);
    let n1 = txn_of(&r.responses[1]);
    assert!(n1.succeeded, "the nested compare sees k=old although the txn put k=new before it");
    // ...but nested ranges see the writes made before them.
    assert_eq!(range_of(&n1.responses[1]).kvs, [kv("k", "new", 2, 3, 2)]);
    let n2 = txn_of(&r.responses[2]);
    assert!(!n2.succeeded);
    assert!(txn_of(&n2.responses[1]).succeeded, "a txn without compares succeeds");
    assert_eq!(range_of(&r.responses[3]).kvs, [kv("deep", "d", 3, 3, 1)]);
    assert_eq!(
        h.all(),
        [kv("deep", "d", 3, 3, 1), kv("k", "new", 2, 3, 2), kv("m", "else", 3, 3, 1), kv("n", "then", 3, 3, 1)]
    );

    // A failing outer compare skips the nested txns of the success branch
    // and runs those of the failure branch.
    let r = h
        .txn(txn(
            vec![cmp_value("k", Equal, "old")],
            vec![op::txn(txn(vec![], vec![op::put("no", "1")], vec![]))],
            vec![op::txn(txn(vec![cmp_value("k", Equal, "new")], vec![op::put("yes", "1")], vec![]))],
        ))
        .unwrap();
    assert!(!r.succeeded);
    assert!(h.get("no", "").is_empty());
    assert_eq!(h.get("yes", ""), [kv("yes", "1", 4, 4, 1)]);
}

/// The path of compare outcomes is consumed depth first: a sibling after a
/// txn that has nested txns of its own reads its own outcome, in the checks
/// as in the execution.
#[test]
fn nested_outcomes_stay_aligned_across_siblings() {
    let h = Harness::new();
    h.put("k", "v"); // 2
    let yes = || cmp_value("k", Equal, "v");
    let no = || cmp_value("k", Equal, "nope");
    // Path: [outer yes, A yes, A1 no, B yes].
    let t = |b_then: Vec<_>| {
        txn(
            vec![yes()],
            vec![
                op::txn(txn(
                    vec![yes()],
                    vec![op::txn(txn(vec![no()], vec![op::put("a1", "then")], vec![op::put("a1", "else")]))],
                    vec![op::put("a", "else")],
                )),
                op::txn(txn(vec![yes()], b_then, vec![op::put("b", "else")])),
            ],
            vec![],
        )
    };
    let r = h.txn(t(vec![op::put("b", "then")])).unwrap();
    let a = txn_of(&r.responses[0]);
    assert!(a.succeeded);
    assert!(!txn_of(&a.responses[0]).succeeded);
    assert!(txn_of(&r.responses[1]).succeeded, "B reads its own outcome, not A1's");
    assert_eq!(values(&h.get("a1", "")), ["else"]);
    assert_eq!(values(&h.get("b", "")), ["then"]);
    assert!(h.get("a", "").is_empty());
    // The checks follow the same path: B's then branch is checked.
    let bad = op::put_req(PutRequest { ignore_value: true, ..put("missing", "") });
    assert_eq!(h.txn(t(vec![bad])), Err(EtcdError::KeyNotFound));
}

/// etcd 3.5 fills only the top-level header of a txn response: a nested
/// txn's header is present but all zero (etcd `newTxnResp`).
#[test]
fn nested_txn_response_header_is_empty() {
    let h = Harness::new();
    let r = h.txn(txn(vec![], vec![op::txn(txn(vec![], vec![op::put("a", "1")], vec![]))], vec![])).unwrap();
    assert_eq!(rev_of(&r.header), 2);
    let n = txn_of(&r.responses[0]);
    assert_eq!(n.header, Some(Default::default()));
    assert_eq!(rev_of(&put_of(&n.responses[0]).header), 2, "ops inside keep their headers");
}

#[test]
fn a_txn_is_one_revision() {
    let h = Harness::new();
    h.put("old", "o"); // 2
    h.put("dead", "d"); // 3
    let r = h
        .txn(txn(
            vec![cmp_create("old", Equal, 2)],
            vec![op::put("a", "1"), op::put("b", "2"), op::put("old", "o2"), op::del("dead", "")],
            vec![],
        ))
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(rev_of(&r.header), 4);
    assert_eq!(h.rev(), 4);
    for (i, resp) in r.responses.iter().enumerate().take(3) {
        assert_eq!(rev_of(&put_of(resp).header), 4, "op {i}");
    }
    assert_eq!((rev_of(&del_of(&r.responses[3]).header), del_of(&r.responses[3]).deleted), (4, 1));
    assert_eq!(h.all(), [kv("a", "1", 4, 4, 1), kv("b", "2", 4, 4, 1), kv("old", "o2", 2, 4, 2)]);
    // One main revision, one sub revision per change, in op order.
    let events = h.mvcc().events_between(4, 4, false).unwrap();
    let got: Vec<_> = events.iter().map(|e| (String::from_utf8_lossy(&e.kv.key).into_owned(), e.kind)).collect();
    let want = [("a", EventKind::Put), ("b", EventKind::Put), ("old", EventKind::Put), ("dead", EventKind::Delete)];
    assert_eq!(got, want.map(|(k, e)| (k.to_string(), e)));
    // Nothing of it is visible at the revision before.
    assert_eq!(keys(&h.range(&RangeRequest { revision: 3, ..range("\0", "\0") }).unwrap().kvs), ["dead", "old"]);
    assert_eq!(rev_of(&h.put("after", "x").header), 5);
}

#[test]
fn ranges_in_a_txn_see_its_earlier_writes() {
    let h = Harness::new();
    h.put("k", "v1"); // 2
    h.put("d", "x"); // 3
    let count_all = RangeRequest { count_only: true, ..range("\0", "\0") };
    let r = h
        .txn(txn(
            vec![],
            vec![
                op::get("k"),
                op::put("k", "v2"),
                op::get("k"),
                op::put("new", "n"),
                op::range(count_all),
                op::del("d", ""),
                op::get("d"),
                op::range(RangeRequest { revision: 2, ..range("k", "") }),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(rev_of(&r.header), 4);
    // Before any write the txn reads at its begin revision...
    let before = range_of(&r.responses[0]);
    assert_eq!((before.kvs.clone(), rev_of(&before.header)), (vec![kv("k", "v1", 2, 2, 1)], 3));
    // ...and after one at the revision it is making.
    let after = range_of(&r.responses[2]);
    assert_eq!((after.kvs.clone(), rev_of(&after.header)), (vec![kv("k", "v2", 2, 4, 2)], 4));
    assert_eq!(range_of(&r.responses[4]).count, 3);
    let gone = range_of(&r.responses[6]);
    assert_eq!((gone.kvs.len(), gone.count, rev_of(&gone.header)), (0, 0, 4));
    // A historic range inside a write txn reads that revision.
    let old = range_of(&r.responses[7]);
    assert_eq!((old.kvs.clone(), rev_of(&old.header)), (vec![kv("k", "v1", 2, 2, 1)], 4));
}

/// etcd `checkRange`: a txn's ranges are checked against the store before
/// the txn, even though the txn makes the next revision.
#[test]
fn range_revisions_in_a_txn_are_checked_before_it_runs() {
    let h = Harness::new();
    for i in 0..4 {
        h.put("k", &format!("v{i}")); // 2..=5
    }
    let with_range =
        |revision| txn(vec![], vec![op::put("w", "x"), op::range(RangeRequest { revision, ..range("k", "") })], vec![]);
    assert_eq!(h.txn(with_range(6)), Err(EtcdError::FutureRev), "the txn's own revision is in the future");
    assert_eq!(h.txn(with_range(i64::MAX)), Err(EtcdError::FutureRev));
    // Before any compaction etcd's compacted revision is -1: revision -1
    // reads the current revision, -2 is "compacted".
    let r = h.txn(with_range(-1)).unwrap();
    assert_eq!(values(&range_of(&r.responses[1]).kvs), ["v3"]);
    assert_eq!(h.txn(with_range(-2)), Err(EtcdError::Compacted));
    h.compact(4).unwrap();
    for old in [3, 1, -1] {
        assert_eq!(h.txn(with_range(old)), Err(EtcdError::Compacted), "revision {old}");
    }
    let r = h.txn(with_range(4)).unwrap();
    assert_eq!(values(&range_of(&r.responses[1]).kvs), ["v2"], "the compacted revision itself is readable");
    assert_eq!(h.get("w", ""), [kv("w", "x", 6, 7, 2)], "only the two txns that passed their checks wrote");
}

#[test]
fn ignore_value_and_ignore_lease_need_an_existing_key() {
    let h = Harness::new();
    h.put("k", "v");
    h.put("deleted", "v");
    h.delete("deleted", "");
    let rev = h.rev();
    let ignore_value = |key: &str| PutRequest { ignore_value: true, ..put(key, "") };
    let ignore_lease = |key: &str| PutRequest { ignore_lease: true, ..put(key, "v") };
    for key in ["missing", "deleted"] {
        assert_eq!(h.put_req(ignore_value(key)), Err(EtcdError::KeyNotFound), "put {key}");
        assert_eq!(h.put_req(ignore_lease(key)), Err(EtcdError::KeyNotFound), "put {key}");
        let t = txn(vec![], vec![op::put("other", "x"), op::put_req(ignore_value(key))], vec![]);
        assert_eq!(h.txn(t), Err(EtcdError::KeyNotFound), "txn {key}");
        let nested = txn(vec![], vec![op::put_req(ignore_lease(key))], vec![]);
        let t = txn(vec![cmp_version("k", Equal, 0)], vec![op::put("other", "x")], vec![op::txn(nested)]);
        assert_eq!(h.txn(t), Err(EtcdError::KeyNotFound), "nested txn {key}");
    }
    assert!(h.get("other", "").is_empty(), "a failed txn writes nothing");
    assert_eq!(h.rev(), rev);
    // In a branch not taken nothing is checked.
    let t = txn(vec![cmp_version("k", Equal, 0)], vec![op::put_req(ignore_value("missing"))], vec![op::put("o", "x")]);
    assert!(!h.txn(t).unwrap().succeeded);
    assert_eq!(h.rev(), rev + 1);
}

#[test]
fn ignore_value_and_ignore_lease_keep_what_the_key_has() {
    let h = Harness::new();
    h.grant(7, 10).unwrap();
    h.put_req(PutRequest { lease: 7, ..put("k", "v1") }).unwrap(); // 2
    let leased = |kv| api::pb::mvccpb::KeyValue { lease: 7, ..kv };
    // ignore_lease: the new value, the old lease.
    let p = h.put_req(PutRequest { ignore_lease: true, prev_kv: true, ..put("k", "v2") }).unwrap();
    assert_eq!(p.prev_kv, Some(leased(kv("k", "v1", 2, 2, 1))));
    assert_eq!(h.get("k", ""), [leased(kv("k", "v2", 2, 3, 2))]);
    // ignore_value in a txn: the old value, a new revision and version.
    let t = txn(vec![], vec![op::put_req(PutRequest { ignore_value: true, ..put("k", "") })], vec![]);
    assert_eq!(rev_of(&h.txn(t).unwrap().header), 4);
    assert_eq!(h.get("k", ""), [kv("k", "v2", 2, 4, 3)], "no lease given: the lease is dropped");
    assert!(h.lessor().keys_of(7).unwrap().is_empty(), "and the key left the lease");
    // Both: a pure touch.
    h.put_req(PutRequest { ignore_value: true, ignore_lease: true, ..put("k", "") }).unwrap();
    assert_eq!(h.get("k", ""), [kv("k", "v2", 2, 5, 4)]);
}

#[test]
fn put_with_a_lease_that_does_not_exist() {
    let h = Harness::new();
    h.put("k", "v");
    assert_eq!(h.put_req(PutRequest { lease: 0x1234, ..put("k", "v2") }), Err(EtcdError::LeaseNotFound));
    assert_eq!(h.put_req(PutRequest { lease: -5, ..put("new", "v") }), Err(EtcdError::LeaseNotFound));
    let bad = op::put_req(PutRequest { lease: 99, ..put("b", "v") });
    assert_eq!(h.txn(txn(vec![], vec![op::put("a", "v"), bad.clone()], vec![])), Err(EtcdError::LeaseNotFound));
    assert!(h.get("a", "").is_empty(), "the failed txn wrote nothing");
    assert_eq!((values(&h.get("k", "")), h.rev()), (vec!["v".to_string()], 2));
    // Not checked in a branch not taken.
    let r = h.txn(txn(vec![cmp_value("k", Equal, "nope")], vec![bad], vec![])).unwrap();
    assert!(!r.succeeded);
    assert_eq!(h.rev(), 2);
}

/// etcd's txn checks a put's ignore flags before its lease
/// (`checkRequestPut`, 3.4 and 3.5), while a plain Put checks the lease
/// first. Seen on Debian's etcd 3.4.23: `etcdctl txn` with
/// `put missing --ignore-value --lease=99` answers "key not found".
#[test]
fn txn_put_checks_its_ignore_flags_before_its_lease() {
    let h = Harness::new();
    let both = PutRequest { ignore_value: true, lease: 99, ..put("missing", "") };
    assert_eq!(h.put_req(both.clone()), Err(EtcdError::LeaseNotFound), "plain put: lease first, as etcd");
    assert_eq!(h.txn(txn(vec![], vec![op::put_req(both)], vec![])), Err(EtcdError::KeyNotFound));
}

/// etcd's `Txn` runs `checkRequests` twice: every put of the chosen
/// branches first, then every range; the first error of that order wins.
/// Seen on Debian's etcd 3.4.23: `etcdctl txn` with `get k --rev=100` then
/// `put missing --ignore-value` answers "key not found".
#[test]
fn txn_checks_every_put_before_any_range() {
    let h = Harness::new();
    let t = txn(
        vec![],
        vec![
            op::range(RangeRequest { revision: 100, ..range("k", "") }),
            op::put_req(PutRequest { ignore_value: true, ..put("missing", "") }),
        ],
        vec![],
    );
    assert_eq!(h.txn(t), Err(EtcdError::KeyNotFound));
}

#[test]
fn prev_kv_of_puts_and_deletes() {
    let h = Harness::new();
    let with_prev = |k: &str, v: &str| PutRequest { prev_kv: true, ..put(k, v) };
    assert_eq!(h.put_req(with_prev("k", "v1")).unwrap().prev_kv, None, "a new key has none");
    assert_eq!(h.put("k", "v2").prev_kv, None, "not asked for");
    assert_eq!(h.put_req(with_prev("k", "v3")).unwrap().prev_kv, Some(kv("k", "v2", 2, 3, 2)));
    h.put("p/1", "a"); // 5
    h.put("p/2", "b"); // 6
    let d = h.delete("p/", "p0");
    assert_eq!((d.deleted, d.prev_kvs.len()), (2, 0), "no prev_kvs unless asked");
    h.put("p/1", "a2"); // 8
    let r = h.txn(txn(vec![], vec![op::del_prev("\0", "\0")], vec![])).unwrap();
    let d = del_of(&r.responses[0]);
    assert_eq!(d.deleted, 2);
    assert_eq!(d.prev_kvs, [kv("k", "v3", 2, 4, 3), kv("p/1", "a2", 8, 8, 1)]);
}

#[test]
fn deletes_that_delete_nothing_make_no_revision() {
    let h = Harness::new();
    h.put("a", "1"); // 2
    for (key, end) in [("missing", ""), ("x", "y"), ("b", "a"), ("zz", "\0")] {
        let d = h.delete(key, end);
        assert_eq!((d.deleted, rev_of(&d.header)), (0, 2), "delete [{key}, {end})");
    }
    let r = h.txn(txn(vec![], vec![op::del("nope", "")], vec![])).unwrap();
    assert_eq!((rev_of(&r.header), rev_of(&del_of(&r.responses[0]).header)), (2, 2));
    // In a txn that writes: before its first change a delete of nothing
    // answers the begin revision, after it the txn's (etcd `DeleteRange`).
    let r = h.txn(txn(vec![], vec![op::del("nope", ""), op::put("b", "1"), op::del("nope", "")], vec![])).unwrap();
    assert_eq!(rev_of(&r.header), 3);
    assert_eq!(rev_of(&del_of(&r.responses[0]).header), 2);
    assert_eq!(rev_of(&del_of(&r.responses[2]).header), 3);
    assert_eq!(rev_of(&h.put("a", "2").header), 4, "the next write is the next revision");
    assert_eq!(rev_of(&h.delete("a", "").header), 5);
    assert_eq!(rev_of(&h.delete("a", "").header), 5);
}

/// Overlapping writes are refused by the KV service before proposing (etcd
/// `v3rpc` `checkIntervals`); apply, as etcd's, does not check again.
#[test]
fn duplicate_keys_are_refused_before_apply_and_apply_takes_them_in_order() {
    let rejected = [
        txn(vec![], vec![op::put("a", "1"), op::put("a", "2")], vec![]),
        txn(vec![], vec![], vec![op::put("a", "1"), op::put("a", "2")]),
        txn(vec![], vec![op::del("a", ""), op::put("a", "1")], vec![]),
        txn(vec![], vec![op::del("a", "c"), op::put("b", "1")], vec![]),
        txn(vec![], vec![op::put("a", "1"), op::txn(txn(vec![], vec![op::put("a", "2")], vec![]))], vec![]),
    ];
    for (i, t) in rejected.iter().enumerate() {
        assert_eq!(api::validate::check_txn_full(t, 128), Err(EtcdError::DuplicateKey), "case {i}");
    }
    let allowed = txn(vec![], vec![op::put("a", "1")], vec![op::put("a", "2")]);
    assert_eq!(api::validate::check_txn_full(&allowed, 128), Ok(()));

    // Committed anyway (by a member of another version): applied in order.
    let h = Harness::new();
    let r = h.txn(rejected[0].clone()).unwrap();
    assert_eq!(rev_of(&r.header), 2);
    assert_eq!(h.get("a", ""), [kv("a", "2", 2, 2, 2)], "the later put wins, both count as versions");
}

/// The op limit is the proposing member's `--max-txn-ops` (etcd checks it
/// in `v3rpc`); apply has none, or members with different flags would
/// disagree on a committed entry.
#[test]
fn too_many_ops_are_refused_before_apply_never_by_it() {
    let puts: Vec<_> = (0..129).map(|i| op::put(&format!("k{i:03}"), "v")).collect();
    let big = txn(vec![], puts, vec![]);
    assert_eq!(api::validate::check_txn_full(&big, 128), Err(EtcdError::TooManyOps));
    assert_eq!(api::validate::check_txn_full(&big, 129), Ok(()));
    let h = Harness::new();
    assert_eq!(rev_of(&h.txn(big).unwrap().header), 2);
    let all = h.range(&RangeRequest { count_only: true, ..range("k", "l") }).unwrap();
    assert_eq!((all.count, h.rev()), (129, 2));
}

#[test]
fn read_only_txns_on_a_pinned_view() {
    let h = Harness::new();
    h.put("a", "1"); // 2
    h.put("a", "2"); // 3
    let t = txn(
        vec![cmp_version("a", Equal, 2)],
        vec![
            op::get("a"),
            op::range(RangeRequest { revision: 2, ..range("a", "") }),
            op::range(RangeRequest { serializable: true, keys_only: true, ..range("a", "") }),
        ],
        vec![op::range(RangeRequest { count_only: true, ..range("\0", "\0") })],
    );
    assert!(is_txn_readonly(&t));
    assert!(!is_txn_serializable(&t), "one range is linearizable");
    let view = PinnedView::new(h.mvcc());
    let r = execute_readonly_txn(&view, &t).unwrap();
    assert!(r.succeeded);
    assert_eq!(rev_of(&r.header), 3);
    assert_eq!(values(&range_of(&r.responses[0]).kvs), ["2"]);
    assert_eq!(values(&range_of(&r.responses[1]).kvs), ["1"]);
    assert_eq!(range_of(&r.responses[2]).kvs, [kv("a", "", 2, 3, 2)]);
    let failed =
        execute_readonly_txn(&view, &txn(vec![cmp_version("a", Equal, 1)], vec![], t.failure.clone())).unwrap();
    assert_eq!((failed.succeeded, range_of(&failed.responses[0]).count), (false, 1));
    // A write after the view was pinned is not seen by it.
    h.put("a", "3");
    let again = execute_readonly_txn(&view, &t).unwrap();
    assert_eq!((values(&range_of(&again.responses[0]).kvs), rev_of(&again.header)), (vec!["2".to_string()], 3));
    // Range revisions are checked as in a write txn.
    let future = txn(vec![], vec![op::range(RangeRequest { revision: 4, ..range("a", "") })], vec![]);
    assert_eq!(execute_readonly_txn(&view, &future).unwrap_err(), EtcdError::FutureRev);
    assert!(!is_txn_readonly(&txn(vec![], vec![op::get("a")], vec![op::del("a", "")])));
    // etcd `isTxnReadonly`: a nested txn makes it a write txn, even of ranges only.
    assert!(!is_txn_readonly(&txn(vec![], vec![op::txn(txn(vec![], vec![op::get("a")], vec![]))], vec![])));
    let serializable = txn(vec![], vec![op::range(RangeRequest { serializable: true, ..range("a", "") })], vec![]);
    assert!(is_txn_serializable(&serializable));
}
