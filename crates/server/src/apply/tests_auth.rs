//! Permissions enforced at apply (`auth::check` through `Applier::apply`):
//! each request kind as root, as users with READ, WRITE or READWRITE on a
//! key, a range, a prefix or from a key on, with no user, with a stale
//! auth revision, and as the member itself (unchecked).

use api::pb::authpb::{permission::Type as PermType, Permission};
use api::pb::etcdserverpb::compare::CompareResult;
use api::pb::etcdserverpb::{
    AlarmRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
};
use api::pb::metastorepb::internal_request::Request as Entry;
use api::EtcdError;

use super::auth::check;
use super::auth::AuthInfo;
use super::test_harness::{cmp_value, op, put, txn, Harness};
use super::ApplyResult;

const DENIED: Result<(), EtcdError> = Err(EtcdError::PermissionDenied);

/// A store with auth on and users:
/// - `root`;
/// - `reader`: READ on the prefix `p/` (`[p/, p0)`);
/// - `writer`: WRITE on the range `[w/a, w/m)`;
/// - `rw`: READWRITE on the key `k` and on every key from `z` on.
fn fixture() -> Harness {
    let h = Harness::new();
    let ok = |e: Entry| {
        h.apply(e).unwrap();
    };
    let user = |name: &str, role: &str| {
        ok(Entry::AuthUserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: "aA==".into(),
            ..Default::default()
        }));
        if role != "root" {
            ok(Entry::AuthRoleAdd(AuthRoleAddRequest { name: role.into() }));
        }
        ok(Entry::AuthUserGrantRole(AuthUserGrantRoleRequest { user: name.into(), role: role.into() }));
    };
    let grant = |role: &str, t: PermType, key: &[u8], end: &[u8]| {
        let perm = Permission { perm_type: t as i32, key: key.to_vec(), range_end: end.to_vec() };
        ok(Entry::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) }));
    };
    user("root", "root");
    user("reader", "r");
    user("writer", "w");
    user("rw", "rw");
    grant("r", PermType::Read, b"p/", b"p0");
    grant("w", PermType::Write, b"w/a", b"w/m");
    grant("rw", PermType::Readwrite, b"k", b"");
    grant("rw", PermType::Readwrite, b"z", b"\0");
    ok(Entry::AuthEnable(AuthEnableRequest {}));
    h
}

fn who(h: &Harness, user: &str) -> AuthInfo {
    AuthInfo { user: user.into(), revision: h.applier.auth().revision() }
}

fn unit(r: ApplyResult) -> Result<(), EtcdError> {
    r.map(|_| ())
}

fn put_as(h: &Harness, user: &str, p: PutRequest) -> Result<(), EtcdError> {
    unit(h.apply_as(Entry::Put(p), Some(&who(h, user))))
}

fn del(key: &str, end: &[u8], prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest { key: key.into(), range_end: end.to_vec(), prev_kv }
}

fn del_as(h: &Harness, user: &str, d: DeleteRangeRequest) -> Result<(), EtcdError> {
    unit(h.apply_as(Entry::DeleteRange(d), Some(&who(h, user))))
}

#[test]
fn puts_need_write_and_read_for_prev_kv() {
    let h = fixture();
    assert_eq!(put_as(&h, "writer", put("w/b", "v")), Ok(()));
    assert_eq!(put_as(&h, "writer", put("w/m", "v")), DENIED, "the range end is excluded");
    let prev = PutRequest { prev_kv: true, ..put("w/b", "v") };
    assert_eq!(put_as(&h, "writer", prev), DENIED, "prev_kv needs READ too");
    assert_eq!(put_as(&h, "reader", put("p/x", "v")), DENIED, "READ is not WRITE");
    assert_eq!(put_as(&h, "rw", PutRequest { prev_kv: true, ..put("k", "v") }), Ok(()));
    assert_eq!(put_as(&h, "rw", put("k2", "v")), DENIED, "a single key is only itself");
    assert_eq!(put_as(&h, "rw", put("zzz", "v")), Ok(()), "from z on");
    assert_eq!(put_as(&h, "root", put("anything", "v")), Ok(()));
    assert_eq!(put_as(&h, "ghost", put("k", "v")), DENIED, "an unknown user");
    let nobody = AuthInfo::default();
    assert_eq!(unit(h.apply_as(Entry::Put(put("k", "v")), Some(&nobody))), Err(EtcdError::UserEmpty));
    let stale = AuthInfo { user: "rw".into(), revision: h.applier.auth().revision() - 1 };
    assert_eq!(unit(h.apply_as(Entry::Put(put("k", "v")), Some(&stale))), Err(EtcdError::AuthOldRevision));
    // The member's own entries carry no sender and are not checked.
    assert_eq!(unit(h.apply(Entry::Put(put("anything", "v")))), Ok(()));
    assert_eq!(h.get("w/b", "").len(), 1, "the permitted put was applied");
    assert!(h.get("k2", "").is_empty(), "a refused put changes nothing");
}

#[test]
fn deletes_need_write_on_the_whole_range() {
    let h = fixture();
    assert_eq!(del_as(&h, "writer", del("w/a", b"w/c", false)), Ok(()));
    assert_eq!(del_as(&h, "writer", del("w/a", b"w/z", false)), DENIED, "past the permission");
    assert_eq!(del_as(&h, "writer", del("w/b", b"", true)), DENIED, "prev_kv needs READ");
    assert_eq!(del_as(&h, "rw", del("z", b"\0", true)), Ok(()), "from-key, READWRITE");
    assert_eq!(del_as(&h, "rw", del("y", b"\0", false)), DENIED, "from y is more than from z");
    assert_eq!(del_as(&h, "reader", del("p/", b"p0", false)), DENIED, "a prefix READ is not WRITE");
}

#[test]
fn txns_check_compares_both_branches_and_nested_txns() {
    let h = fixture();
    let as_user = |user: &str, t| unit(h.apply_as(Entry::Txn(t), Some(&who(&h, user))));
    let compare_k = || vec![cmp_value("k", CompareResult::Equal, "v")];
    // rw: compare k, put k, else a nested txn putting z1.
    let nested = txn(vec![], vec![op::put("z1", "v")], vec![]);
    assert_eq!(as_user("rw", txn(compare_k(), vec![op::put("k", "v")], vec![op::txn(nested)])), Ok(()));
    // The failure branch is checked even when the compare will succeed.
    let bad_nested = txn(vec![], vec![op::put("w/b", "v")], vec![]);
    assert_eq!(as_user("rw", txn(vec![], vec![op::put("k", "v")], vec![op::txn(bad_nested)])), DENIED);
    // A compare needs READ: the writer may not compare its own keys.
    let w_cmp = vec![cmp_value("w/b", CompareResult::Equal, "v")];
    assert_eq!(as_user("writer", txn(w_cmp, vec![op::put("w/b", "v")], vec![])), DENIED);
    assert_eq!(as_user("writer", txn(vec![], vec![op::put("w/b", "v"), op::del("w/c", "w/d")], vec![])), Ok(()));
    assert_eq!(as_user("writer", txn(vec![], vec![op::get("w/b")], vec![])), DENIED, "a range op needs READ");
    assert_eq!(as_user("writer", txn(vec![], vec![op::del_prev("w/b", "")], vec![])), DENIED);
    // The reader reads its prefix in a txn, deeply nested too.
    let deep = txn(
        vec![],
        vec![op::txn(txn(vec![], vec![op::range(super::test_harness::range("p/", "p0"))], vec![]))],
        vec![],
    );
    assert_eq!(as_user("reader", deep), Ok(()));
    let deep_put = txn(vec![], vec![op::txn(txn(vec![], vec![], vec![op::put("p/a", "v")]))], vec![]);
    assert_eq!(as_user("reader", deep_put), DENIED);
}

#[test]
fn leases_need_write_on_their_keys() {
    let h = fixture();
    h.apply(Entry::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 })).unwrap();
    assert_eq!(put_as(&h, "rw", PutRequest { lease: 7, ..put("k", "v") }), Ok(()));
    // The writer may write w/b, but not attach it to a lease holding k.
    assert_eq!(put_as(&h, "writer", PutRequest { lease: 7, ..put("w/b", "v") }), DENIED);
    let revoke = |user: &str| unit(h.apply_as(Entry::LeaseRevoke(LeaseRevokeRequest { id: 7 }), Some(&who(&h, user))));
    assert_eq!(revoke("writer"), DENIED);
    assert_eq!(h.get("k", "").len(), 1, "a refused revoke deletes nothing");
    assert_eq!(revoke("rw"), Ok(()));
    assert!(h.get("k", "").is_empty());
    // A lease that does not exist is apply's error, not a permission one.
    assert_eq!(revoke("writer"), Err(EtcdError::LeaseNotFound));
}

#[test]
fn admin_entries_need_the_root_role() {
    let h = fixture();
    let as_user = |user: &str, e: Entry| unit(h.apply_as(e, Some(&who(&h, user))));
    let compact = || Entry::Compaction(CompactionRequest { revision: 1, physical: false });
    assert_eq!(as_user("rw", compact()), DENIED);
    assert_eq!(as_user("root", compact()), Ok(()));
    assert_eq!(as_user("rw", Entry::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() })), DENIED);
    let nobody = AuthInfo::default();
    let add = Entry::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() });
    assert_eq!(unit(h.apply_as(add, Some(&nobody))), Err(EtcdError::UserEmpty));
    assert_eq!(as_user("root", Entry::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() })), Ok(()));
    assert_eq!(as_user("ghost", Entry::Alarm(AlarmRequest::default())), Err(EtcdError::UserNotFound));
}

#[test]
fn nothing_is_checked_with_auth_off() {
    let h = Harness::new();
    let nobody = AuthInfo::default();
    assert_eq!(unit(h.apply_as(Entry::Put(put("k", "v")), Some(&nobody))), Ok(()));
    let store = h.applier.auth();
    assert_eq!(check::check_range(store, &nobody, b"a", b"\0"), Ok(()));
    assert_eq!(store.check_op(&nobody, b"a", b"", PermType::Write), Ok(()));
}

#[test]
fn reads_follow_the_same_rules() {
    let h = fixture();
    let store = h.applier.auth();
    let reader = who(&h, "reader");
    assert_eq!(check::check_range(store, &reader, b"p/x", b""), Ok(()));
    assert_eq!(check::check_range(store, &reader, b"p/", b"p0"), Ok(()), "the prefix");
    assert_eq!(check::check_range(store, &reader, b"p/", b"\0"), DENIED, "from-key is more than the prefix");
    assert_eq!(check::check_range(store, &reader, b"p", b""), DENIED);
    let leases = |_| Some(vec![b"p/a".to_vec(), b"q".to_vec()]);
    assert_eq!(check::check_lease_reads(store, &reader, [&b"p/a"[..]]), Ok(()));
    assert_eq!(check::check_lease_reads(store, &reader, [&b"p/a"[..], &b"q"[..]]), DENIED);
    assert_eq!(check::check_lease_puts(store, &leases, &who(&h, "root"), 1), Ok(()));
    assert_eq!(check::check_lease_puts(store, &leases, &reader, 1), DENIED);
}
