//! The applier (`mod.rs`): determinism, the applied index recorded with each
//! entry's batch (also for etcd-error outcomes), nothing recorded when the
//! engine fails, leases, compaction and alarms (etcd
//! `server/etcdserver/apply.go`, `capped.go`/`corrupt.go` appliers).

use std::sync::atomic::Ordering::SeqCst;

use api::pb::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, MemberUpdateRequest, PutRequest, RangeRequest, RequestOp,
};
use api::pb::etcdserverpb::{compare::CompareResult, Compare};
use api::pb::metastorepb::{internal_request::Request as Entry, MemberAttrRequest};
use api::pb::mvccpb::KeyValue;
use api::EtcdError;
use storage::{AppliedIndex, Engine, EventKind, Table};

use super::lessor::MAX_LEASE_TTL;
use super::test_harness::*;
use super::ApplyResponse;

/// A small xorshift generator: the same seed, the same entries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn key(&mut self) -> String {
        format!("k{}", self.below(8))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn random_compare(rng: &mut Rng) -> Compare {
    let key = rng.key();
    let result = [CompareResult::Equal, CompareResult::NotEqual, CompareResult::Greater, CompareResult::Less]
        [rng.below(4) as usize];
    let n = rng.below(40) as i64;
    match rng.below(5) {
        0 => cmp_value(&key, result, &format!("v{}", rng.below(20))),
        1 => cmp_version(&key, result, n % 4),
        2 => cmp_create(&key, result, n),
        3 => cmp_mod(&key, result, n),
        _ => cmp_lease(&key, result, n % 4),
    }
}

fn random_put(rng: &mut Rng) -> PutRequest {
    let mut p = put(&rng.key(), &format!("v{}", rng.below(20)));
    // Lease 9 is never granted; 1 to 3 come and go.
    p.lease = [0, 0, 0, 1, 2, 3, 9][rng.below(7) as usize];
    p.prev_kv = rng.chance(30);
    if rng.chance(10) {
        p.ignore_value = true;
        p.value.clear();
    }
    p
}

fn random_ops(rng: &mut Rng, depth: u32) -> Vec<RequestOp> {
    (0..rng.below(4))
        .map(|_| match rng.below(10) {
            0..=3 => op::put_req(random_put(rng)),
            4..=5 => op::del_prev(&rng.key(), if rng.chance(30) { "k5" } else { "" }),
            6..=7 => {
                op::range(RangeRequest { revision: rng.below(8) as i64, limit: rng.below(3) as i64, ..range("k", "l") })
            }
            _ if depth < 2 => op::txn(random_txn(rng, depth + 1)),
            _ => op::get(&rng.key()),
        })
        .collect()
}

fn random_txn(rng: &mut Rng, depth: u32) -> api::pb::etcdserverpb::TxnRequest {
    let compares = (0..rng.below(3)).map(|_| random_compare(rng)).collect();
    txn(compares, random_ops(rng, depth), random_ops(rng, depth))
}

/// `n` entries of every kind, outcomes of every kind among them (errors
/// included), from `seed`.
fn random_entries(seed: u64, n: usize) -> Vec<Entry> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| match rng.below(100) {
            0..=29 => Entry::Put(random_put(&mut rng)),
            30..=44 => Entry::DeleteRange(DeleteRangeRequest {
                key: rng.key().into(),
                range_end: if rng.chance(30) { rng.key().into() } else { vec![] },
                prev_kv: rng.chance(50),
            }),
            45..=74 => Entry::Txn(random_txn(&mut rng, 0)),
            75..=82 => Entry::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 1 + rng.below(3) as i64 }),
            83..=89 => Entry::LeaseRevoke(LeaseRevokeRequest { id: 1 + rng.below(4) as i64 }),
            _ => Entry::Compaction(api::pb::etcdserverpb::CompactionRequest {
                revision: rng.below(i as u64 / 2 + 2) as i64,
                physical: false,
            }),
        })
        .collect()
}

/// Applies `entries` and describes each outcome.
fn apply_all(h: &Harness, entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| format!("{:?}", h.apply(e.clone()))).collect()
}

#[test]
fn the_same_entries_give_the_same_state() {
    let entries = random_entries(0x5eed_1234_abcd, 400);
    let (a, b) = (Harness::new(), Harness::new());
    let outcomes = apply_all(&a, &entries);
    assert_eq!(apply_all(&b, &entries), outcomes, "the same entries, the same answers");
    // The mix exercised what it should.
    let count = |s: &str| outcomes.iter().filter(|o| o.contains(s)).count();
    for what in
        ["Ok(Put", "Ok(Txn", "succeeded: false", "Ok(LeaseRevoke", "Ok(Compaction", "LeaseNotFound", "Compacted"]
    {
        assert!(count(what) > 0, "no outcome {what} among {} entries", entries.len());
    }
    assert!(a.rev() > 100, "revision {}", a.rev());

    // A member restarted every 50 entries ends in the same state too: each
    // batch carried its applied index and the leases it changed.
    let mut c = Harness::new();
    let mut restarted = Vec::new();
    for chunk in entries.chunks(50) {
        restarted.extend(apply_all(&c, chunk));
        c = c.restart();
    }
    assert_eq!(restarted, outcomes, "a restarted member answers the same");

    for h in [&a, &b, &c] {
        h.mvcc().finish_compaction().unwrap();
    }
    let dump = a.dump();
    assert_eq!(b.dump(), dump, "the same entries, the same engine contents");
    assert_eq!(c.dump(), dump, "restarts change nothing");
    assert_eq!((b.rev(), c.rev()), (a.rev(), a.rev()));
    assert_eq!((a.applied().index, c.applied().index), (entries.len() as u64, entries.len() as u64));
    for id in 1..=3 {
        assert_eq!(c.lessor().keys_of(id), a.lessor().keys_of(id), "keys of lease {id}");
    }
}

/// Every entry, whatever its outcome, records its index in its own batch:
/// a restart never applies it again.
#[test]
fn every_outcome_records_its_index() {
    let h = Harness::new();
    h.grant(1, 10).unwrap();
    h.put("k", "v");
    let ignore_value = PutRequest { ignore_value: true, ..put("missing", "") };
    let member_update = MemberUpdateRequest { id: 42, peer_ur_ls: vec!["http://10.0.0.1:2380".into()] };
    let cases: Vec<(&str, Entry, Result<(), EtcdError>)> = vec![
        ("put", Entry::Put(put("a", "1")), Ok(())),
        (
            "put with an unknown lease",
            Entry::Put(PutRequest { lease: 9, ..put("a", "2") }),
            Err(EtcdError::LeaseNotFound),
        ),
        ("put with ignore_value on a missing key", Entry::Put(ignore_value.clone()), Err(EtcdError::KeyNotFound)),
        ("delete of nothing", Entry::DeleteRange(DeleteRangeRequest { key: "x".into(), ..Default::default() }), Ok(())),
        (
            "txn with a failed compare",
            Entry::Txn(txn(vec![cmp_value("k", CompareResult::Equal, "no")], vec![], vec![])),
            Ok(()),
        ),
        ("txn refused", Entry::Txn(txn(vec![], vec![op::put_req(ignore_value)], vec![])), Err(EtcdError::KeyNotFound)),
        ("compaction", Entry::Compaction(compaction(2)), Ok(())),
        ("compaction again", Entry::Compaction(compaction(2)), Err(EtcdError::Compacted)),
        ("compaction in the future", Entry::Compaction(compaction(100)), Err(EtcdError::FutureRev)),
        ("lease grant", Entry::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 2 }), Ok(())),
        (
            "lease grant of an existing lease",
            Entry::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 2 }),
            Err(EtcdError::LeaseExist),
        ),
        (
            "lease grant too long",
            Entry::LeaseGrant(LeaseGrantRequest { ttl: MAX_LEASE_TTL + 1, id: 3 }),
            Err(EtcdError::LeaseTtlTooLarge),
        ),
        ("lease revoke", Entry::LeaseRevoke(LeaseRevokeRequest { id: 2 }), Ok(())),
        (
            "lease revoke of an unknown lease",
            Entry::LeaseRevoke(LeaseRevokeRequest { id: 2 }),
            Err(EtcdError::LeaseNotFound),
        ),
        ("alarm NONE", Entry::Alarm(alarm(AlarmAction::Activate, AlarmType::None)), Ok(())),
        (
            "member attributes of an unknown member",
            Entry::MemberAttr(MemberAttrRequest { id: 42, ..Default::default() }),
            Ok(()),
        ),
        ("member update of an unknown member", Entry::MemberUpdate(member_update), Err(EtcdError::MemberNotFound)),
    ];
    for (what, entry, want) in cases {
        let rev = h.rev();
        let result = h.apply(entry);
        assert_eq!(result.as_ref().map(|_| ()).map_err(Clone::clone), want, "{what}: {result:?}");
        let applied = AppliedIndex { index: h.last_index(), term: TERM };
        assert_eq!(h.applied(), applied, "{what}: the index in memory");
        assert_eq!(h.stored_applied(), applied, "{what}: the index in the engine");
        if want.is_err() {
            assert_eq!(h.rev(), rev, "{what}: a refused entry makes no revision");
        }
    }
    // An empty entry (or a conf change) is recorded alone.
    let rev = h.rev();
    let empty = AppliedIndex { index: h.last_index() + 1, term: 2 };
    h.applier.mark_applied(empty).unwrap();
    assert_eq!((h.stored_applied(), h.rev()), (empty, rev));
}

fn compaction(revision: i64) -> api::pb::etcdserverpb::CompactionRequest {
    api::pb::etcdserverpb::CompactionRequest { revision, physical: false }
}

fn alarm(action: AlarmAction, alarm: AlarmType) -> AlarmRequest {
    AlarmRequest { action: action as i32, member_id: 1, alarm: alarm as i32 }
}

/// A compare that fails is the txn's outcome on every member: its index is
/// recorded, no revision is made, and a restart resumes after it.
#[test]
fn a_failed_compare_is_an_outcome() {
    let h = Harness::new();
    h.put("k", "v");
    let t = txn(vec![cmp_value("k", CompareResult::Equal, "other")], vec![op::put("k", "then")], vec![]);
    let r = h.txn(t).unwrap();
    assert!(!r.succeeded);
    assert!(r.responses.is_empty());
    assert_eq!((rev_of(&r.header), h.rev()), (2, 2));
    assert_eq!(h.stored_applied().index, 2);
    let h = h.restart();
    assert_eq!(h.last_index(), 2, "the restart resumes after the failed txn");
    assert_eq!(h.get("k", ""), [kv("k", "v", 2, 2, 1)]);
}

/// Each kind of entry, with what the engine refuses to write: the member
/// fails (`Internal`) and records nothing, neither the entry's effects nor
/// its index; restarted, it applies the entry again as a healthy member did.
#[test]
fn an_engine_that_refuses_writes_records_nothing() {
    let setup = |h: &Harness| {
        h.grant(1, 10).unwrap();
        h.put_req(PutRequest { lease: 1, ..put("leased", "l") }).unwrap();
        h.put("k", "v");
        h.put("k", "v2");
    };
    let entries = [
        Entry::Put(put("k", "v3")),
        Entry::Put(PutRequest { lease: 9, ..put("k", "v3") }),
        Entry::DeleteRange(DeleteRangeRequest { key: "k".into(), ..Default::default() }),
        Entry::DeleteRange(DeleteRangeRequest { key: "nothing".into(), ..Default::default() }),
        Entry::Txn(txn(vec![cmp_value("k", CompareResult::Equal, "v2")], vec![op::put("t", "1")], vec![])),
        Entry::Txn(txn(vec![cmp_value("k", CompareResult::Equal, "no")], vec![op::put("t", "1")], vec![])),
        Entry::Compaction(compaction(3)),
        Entry::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 2 }),
        Entry::LeaseRevoke(LeaseRevokeRequest { id: 1 }),
        Entry::Alarm(alarm(AlarmAction::Activate, AlarmType::Nospace)),
    ];
    for entry in entries {
        let healthy = Harness::new();
        setup(&healthy);
        let want = format!("{:?}", healthy.apply(entry.clone()));

        let h = Harness::new();
        setup(&h);
        let (dump, rev, applied) = (h.dump(), h.rev(), h.applied());
        h.engine.fail_write.store(true, SeqCst);
        let got = h.apply(entry.clone());
        assert!(matches!(got, Err(EtcdError::Internal(_))), "{entry:?}: {got:?}");
        assert_eq!((h.rev(), h.applied()), (rev, applied), "{entry:?}: nothing published");
        h.engine.fail_write.store(false, SeqCst);
        assert_eq!(h.dump(), dump, "{entry:?}: nothing written");

        // The member stops; restarted, it applies the entry again.
        let h = h.restart();
        assert_eq!(h.last_index(), applied.index);
        assert_eq!(format!("{:?}", h.apply(entry.clone())), want, "{entry:?}");
        assert_eq!(h.dump(), healthy.dump(), "{entry:?}");
    }
}

/// A read the engine fails inside a write is the member failing too, never
/// an outcome (etcd `TestWriteTxnPanicWithoutApply`: nothing is written).
#[test]
fn an_engine_read_failure_in_a_write_records_nothing() {
    let h = Harness::new();
    h.put("a", "1");
    h.put("b", "2");
    let (dump, applied) = (h.dump(), h.applied());
    h.engine.fail_get.store(true, SeqCst);
    let entries = [
        Entry::Txn(txn(vec![], vec![op::put("new", "x"), op::get("a")], vec![])),
        Entry::Put(PutRequest { prev_kv: true, ..put("a", "2") }),
        Entry::Put(put("a", "2")),
        Entry::Put(PutRequest { ignore_value: true, ..put("b", "") }),
        Entry::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }),
    ];
    for entry in entries {
        let got = h.apply(entry.clone());
        assert!(matches!(got, Err(EtcdError::Internal(_))), "{entry:?}: {got:?}");
        assert_eq!((h.rev(), h.applied(), h.stored_applied()), (3, applied, applied), "{entry:?}");
    }
    h.engine.fail_get.store(false, SeqCst);
    assert_eq!(h.dump(), dump);
}

/// etcd reads a compare's keys from its backend or stops (`rangeKeys`
/// calls `lg.Fatal` on a revision it cannot read); a compare must never
/// read as "false" because this member's disk failed, or the members take
/// different branches of one committed txn. Here `apply_compare` turns
/// any range error into `false`.
#[test]
fn an_engine_read_failure_in_a_compare_records_nothing() {
    let h = Harness::new();
    h.put("k", "v");
    let applied = h.applied();
    h.engine.fail_get.store(true, SeqCst);
    let t =
        txn(vec![cmp_value("k", CompareResult::Equal, "v")], vec![op::put("then", "1")], vec![op::put("else", "1")]);
    let got = h.txn(t);
    h.engine.fail_get.store(false, SeqCst);
    assert!(matches!(got, Err(EtcdError::Internal(_))), "{got:?}");
    assert_eq!((h.rev(), h.stored_applied()), (2, applied));
    assert!(h.get("else", "").is_empty());
}

#[test]
fn revoke_deletes_the_attached_keys_in_one_revision() {
    let h = Harness::new();
    assert_eq!(h.grant(1, 10), Ok(10));
    for k in ["c", "a", "b"] {
        h.put_req(PutRequest { lease: 1, ..put(k, "v") }).unwrap(); // 2, 3, 4
    }
    h.put("x", "unleased"); // 5
    assert_eq!(h.lessor().keys_of(1).unwrap(), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(h.revoke(1), Ok(6), "the header has the revision of the deletes");
    assert_eq!(h.rev(), 6);
    assert_eq!(h.all(), [kv("x", "unleased", 5, 5, 1)]);
    let events = h.mvcc().events_between(6, 6, false).unwrap();
    let deleted: Vec<_> = events.iter().map(|e| (e.kind, e.kv.key.clone())).collect();
    let want: Vec<_> = ["a", "b", "c"].iter().map(|k| (EventKind::Delete, k.as_bytes().to_vec())).collect();
    assert_eq!(deleted, want, "one revision, in key order on every member");
    assert!(!h.lessor().exists(1));
    // Gone from the engine too, in the same batch.
    let mut leases = 0;
    h.engine
        .scan(Table::Lease, &[], None, &mut |_, _| {
            leases += 1;
            true
        })
        .unwrap();
    assert_eq!(leases, 0);
    let h = h.restart();
    assert!(!h.lessor().exists(1));
    assert_eq!(h.revoke(1), Err(EtcdError::LeaseNotFound));
}

#[test]
fn revoking_a_lease_without_keys_makes_no_revision() {
    let h = Harness::new();
    h.put("k", "v");
    h.grant(1, 10).unwrap();
    assert_eq!(h.revoke(1), Ok(2));
    assert_eq!(h.rev(), 2);
    assert_eq!(h.revoke(1), Err(EtcdError::LeaseNotFound));
    assert_eq!(h.stored_applied().index, h.last_index());
}

/// A key leaves its lease when a put gives it another (or none) or when it
/// is deleted, so the revoke leaves it alone; a refused txn attaches nothing.
#[test]
fn keys_follow_their_latest_lease() {
    let h = Harness::new();
    h.grant(1, 10).unwrap();
    h.grant(2, 10).unwrap();
    let leased = |k: &str, lease| PutRequest { lease, ..put(k, "v") };
    for k in ["a", "b", "c", "m"] {
        h.put_req(leased(k, 1)).unwrap();
    }
    h.put("a", "plain"); // detached
    h.delete("b", ""); // detached
    h.put_req(leased("m", 2)).unwrap(); // moved
    h.txn(txn(vec![], vec![op::put_req(leased("d", 1))], vec![])).unwrap();
    let refused = txn(vec![], vec![op::put_req(leased("e", 1)), op::put_req(leased("f", 9))], vec![]);
    assert_eq!(h.txn(refused), Err(EtcdError::LeaseNotFound));
    assert_eq!(h.lessor().keys_of(1).unwrap(), [b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(h.lessor().keys_of(2).unwrap(), [b"m".to_vec()]);
    // The same attachments after a restart (rebuilt from the keys).
    let h = h.restart();
    assert_eq!(h.lessor().keys_of(1).unwrap(), [b"c".to_vec(), b"d".to_vec()]);
    h.revoke(1).unwrap();
    assert_eq!(keys(&h.all()), ["a", "m"]);
    assert_eq!(h.get("m", "")[0].lease, 2);
}

#[test]
fn lease_grant_is_recorded_with_its_index() {
    let h = Harness::new();
    assert_eq!(h.grant(5, 10), Ok(10));
    assert_eq!(h.grant(6, 0), Ok(MIN_TTL), "raised to the minimum TTL");
    assert_eq!(h.rev(), 1, "a lease is no revision");
    assert_eq!(h.grant(5, 20), Err(EtcdError::LeaseExist));
    assert_eq!(h.grant(0, 10), Err(EtcdError::LeaseNotFound), "id 0 is no lease (the service picks one)");
    assert_eq!(h.grant(7, MAX_LEASE_TTL + 1), Err(EtcdError::LeaseTtlTooLarge));
    assert_eq!(h.grant(7, MAX_LEASE_TTL), Ok(MAX_LEASE_TTL));
    let h = h.restart();
    assert_eq!(h.last_index(), 6);
    for (id, ttl) in [(5, 10), (6, MIN_TTL), (7, MAX_LEASE_TTL)] {
        assert_eq!(h.lessor().time_to_live(id, false).map(|l| l.granted), Some(ttl), "lease {id}");
    }
    assert!(!h.lessor().exists(0));
}

#[test]
fn compaction_at_or_below_the_current_revision() {
    let h = Harness::new();
    // Before any compaction etcd's compacted revision is -1: 0 is allowed.
    assert_eq!(rev_of(&h.compact(0).unwrap().header), 1);
    assert_eq!(h.compact(0), Err(EtcdError::Compacted));
    for i in 0..6 {
        h.put("k", &format!("v{i}")); // 2..=7
    }
    let r = h.compact(5).unwrap();
    assert_eq!((rev_of(&r.header), h.rev()), (7, 7), "compaction is no revision");
    assert_eq!(h.mvcc().compact_revision(), 5);
    for (rev, err) in [(5, EtcdError::Compacted), (3, EtcdError::Compacted), (8, EtcdError::FutureRev)] {
        assert_eq!(h.compact(rev), Err(err), "compact {rev}");
        assert_eq!(h.stored_applied().index, h.last_index(), "compact {rev} recorded");
    }
    assert_eq!(h.compact(7).map(|r| rev_of(&r.header)), Ok(7), "up to the current revision");
    assert_eq!(h.put("k", "after").header.unwrap().revision, 8);
    assert_eq!(h.get("k", ""), [kv("k", "after", 2, 8, 7)]);
    // Recorded: a restart reads the compacted revision back.
    let h = h.restart();
    assert_eq!(h.mvcc().compact_revision(), 7);
    assert_eq!(h.range(&RangeRequest { revision: 6, ..range("k", "") }), Err(EtcdError::Compacted));
    assert_eq!(h.compact(7), Err(EtcdError::Compacted));
}

#[test]
fn compaction_keeps_the_state_at_its_revision() {
    let h = Harness::new();
    h.put("live", "1"); // 2
    h.put("dead", "1"); // 3
    h.delete("dead", ""); // 4
    h.put("live", "2"); // 5
    h.compact(4).unwrap();
    h.mvcc().finish_compaction().unwrap();
    let at4 = h.range(&RangeRequest { revision: 4, ..range("\0", "\0") }).unwrap();
    assert_eq!((at4.kvs, rev_of(&at4.header)), (vec![kv("live", "1", 2, 2, 1)], 5));
    assert_eq!(h.all(), [kv("live", "2", 2, 5, 2)]);
    // The deleted key's history is gone; put again, it starts a generation.
    h.put("dead", "again");
    assert_eq!(h.get("dead", ""), [kv("dead", "again", 6, 6, 1)]);
    assert_eq!(h.range(&RangeRequest { revision: 3, ..range("\0", "\0") }), Err(EtcdError::Compacted));
}

fn alarm_members(r: &Result<ApplyResponse, EtcdError>) -> Vec<AlarmMember> {
    match r {
        Ok(ApplyResponse::Alarm(a)) => a.alarms.clone(),
        other => panic!("an alarm answered {other:?}"),
    }
}

/// etcd's capped applier: with NOSPACE raised, what adds data is refused
/// (and recorded as that outcome); what frees space still applies.
#[test]
fn nospace_refuses_only_what_adds_data() {
    let h = Harness::new();
    h.grant(1, 10).unwrap();
    h.put_req(PutRequest { lease: 1, ..put("a", "1") }).unwrap();
    h.put("b", "1");
    let nospace = AlarmMember { member_id: 1, alarm: AlarmType::Nospace as i32 };
    assert_eq!(alarm_members(&h.apply(Entry::Alarm(alarm(AlarmAction::Activate, AlarmType::Nospace)))), [nospace]);
    assert!(alarm_members(&h.apply(Entry::Alarm(alarm(AlarmAction::Activate, AlarmType::Nospace)))).is_empty());
    let rev = h.rev();
    assert_eq!(h.put_req(put("c", "1")), Err(EtcdError::NoSpace));
    assert_eq!(h.grant(2, 10), Err(EtcdError::NoSpace));
    let puts_in_else = txn(vec![], vec![op::get("a")], vec![op::put("c", "1")]);
    assert_eq!(h.txn(puts_in_else), Err(EtcdError::NoSpace), "either branch counts");
    assert_eq!((h.rev(), h.stored_applied().index), (rev, h.last_index()));
    // Deletes, txns without puts, revokes and compactions go on.
    let r = h.txn(txn(vec![], vec![op::del("b", ""), op::get("a")], vec![])).unwrap();
    assert_eq!(rev_of(&r.header), rev + 1);
    assert_eq!(h.revoke(1), Ok(rev + 2));
    assert!(h.compact(rev).is_ok());
    // Still raised after a restart; disarmed, writes go again.
    let h = h.restart();
    assert_eq!(h.put_req(put("c", "1")), Err(EtcdError::NoSpace));
    assert_eq!(alarm_members(&h.apply(Entry::Alarm(alarm(AlarmAction::Deactivate, AlarmType::Nospace)))), [nospace]);
    assert_eq!(rev_of(&h.put("c", "1").header), rev + 3);
}

/// etcd's corrupt applier: with CORRUPT raised, no write applies; alarms
/// still do.
#[test]
fn corrupt_refuses_every_write() {
    let h = Harness::new();
    h.grant(1, 10).unwrap();
    h.put("a", "1");
    h.apply(Entry::Alarm(alarm(AlarmAction::Activate, AlarmType::Corrupt))).unwrap();
    let refused = [
        Entry::Put(put("b", "1")),
        Entry::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }),
        Entry::Txn(txn(vec![], vec![op::get("a")], vec![])),
        Entry::Compaction(compaction(1)),
        Entry::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 2 }),
        Entry::LeaseRevoke(LeaseRevokeRequest { id: 1 }),
    ];
    for entry in refused {
        assert_eq!(h.apply(entry.clone()).map(|_| ()), Err(EtcdError::Corrupt), "{entry:?}");
        assert_eq!(h.stored_applied().index, h.last_index(), "{entry:?} recorded");
    }
    assert_eq!((h.rev(), h.all()), (2, vec![kv("a", "1", 2, 2, 1)]));
    assert!(h.lessor().exists(1));
    let cleared = h.apply(Entry::Alarm(alarm(AlarmAction::Deactivate, AlarmType::Corrupt)));
    assert_eq!(alarm_members(&cleared), [AlarmMember { member_id: 1, alarm: AlarmType::Corrupt as i32 }]);
    assert_eq!(rev_of(&h.put("b", "1").header), 3);
}

/// A put's answer: the revision it made and, if asked, what it replaced.
#[test]
fn put_answers_its_revision_and_previous_pair() {
    let h = Harness::new();
    h.grant(3, 10).unwrap();
    let r = h.put_req(PutRequest { lease: 3, prev_kv: true, ..put("k", "v1") }).unwrap();
    assert_eq!((rev_of(&r.header), r.prev_kv), (2, None));
    let r = h.put_req(PutRequest { prev_kv: true, ..put("k", "") }).unwrap();
    assert_eq!(rev_of(&r.header), 3);
    assert_eq!(r.prev_kv, Some(KeyValue { lease: 3, ..kv("k", "v1", 2, 2, 1) }));
    assert_eq!(h.get("k", ""), [kv("k", "", 2, 3, 2)], "an empty value is a value");
}
