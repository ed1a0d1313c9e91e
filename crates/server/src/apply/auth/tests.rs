//! The auth store over a memory engine: etcd's rules, revisions, and the
//! state surviving a reload from the engine.

use std::time::Duration;

use api::pb::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use api::pb::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use api::pb::metastorepb::{internal_request::Request, InternalAuthenticateRequest};
use api::EtcdError;
use base64::Engine as _;
use storage::{Engine, MemoryEngine};

use super::*;

struct Fixture {
    engine: MemoryEngine,
    store: AuthStore,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        Fixture { engine: MemoryEngine::new(), store: AuthStore::new(Duration::from_secs(300), None), index: 1 }
    }

    fn apply(&mut self, req: Request) -> Result<AuthApplied, EtcdError> {
        self.index += 1;
        let engine = &self.engine;
        self.store.apply(req, self.index, |b| engine.write(b).map_err(crate::errors::from_engine))
    }

    fn ok(&mut self, req: Request) {
        self.apply(req).unwrap();
    }

    fn err(&mut self, req: Request) -> EtcdError {
        let rev = self.store.revision();
        let e = self.apply(req).unwrap_err();
        assert_eq!(self.store.revision(), rev, "a failed request keeps the revision ({e})");
        e
    }
}

fn user_add(name: &str, hash: &str) -> Request {
    Request::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: base64::engine::general_purpose::STANDARD.encode(hash),
        ..Default::default()
    })
}

fn grant_role(user: &str, role: &str) -> Request {
    Request::AuthUserGrantRole(AuthUserGrantRoleRequest { user: user.into(), role: role.into() })
}

fn role_add(name: &str) -> Request {
    Request::AuthRoleAdd(AuthRoleAddRequest { name: name.into() })
}

fn grant_perm(role: &str, t: PermType, key: &[u8], end: &[u8]) -> Request {
    Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission { perm_type: t as i32, key: key.to_vec(), range_end: end.to_vec() }),
    })
}

#[test]
fn every_change_moves_the_revision_and_failures_do_not() {
    let mut f = Fixture::new();
    assert_eq!(f.store.revision(), 1, "a new store is at revision 1, as etcd's");
    f.ok(user_add("alice", "h1"));
    assert_eq!(f.store.revision(), 2);
    assert_eq!(f.err(user_add("alice", "h2")), EtcdError::UserAlreadyExist);
    assert_eq!(f.err(user_add("", "h")), EtcdError::UserEmpty);
    f.ok(role_add("r"));
    assert_eq!(f.err(role_add("r")), EtcdError::RoleAlreadyExist);
    assert_eq!(f.err(role_add("")), EtcdError::RoleEmpty);
    f.ok(grant_role("alice", "r"));
    assert_eq!(f.store.revision(), 4);
    f.ok(grant_role("alice", "r"));
    assert_eq!(f.store.revision(), 4, "granting a role again changes nothing");
    assert_eq!(f.err(grant_role("alice", "nope")), EtcdError::RoleNotFound);
    assert_eq!(f.err(grant_role("bob", "r")), EtcdError::UserNotFound);
    f.ok(grant_perm("r", PermType::Read, b"a", b""));
    f.ok(grant_perm("r", PermType::Write, b"a", b""));
    assert_eq!(f.store.revision(), 6, "re-granting the same range is a change");
    assert_eq!(f.err(grant_perm("r", PermType::Read, b"b", b"a")), EtcdError::InvalidAuthMgmt);
    assert_eq!(f.err(grant_perm("nope", PermType::Read, b"a", b"")), EtcdError::RoleNotFound);
    let no_perm = Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest { name: "r".into(), perm: None });
    assert_eq!(f.err(no_perm), EtcdError::PermissionNotGiven);
    let revoke = |key: &[u8], end: &[u8]| {
        Request::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: key.to_vec(),
            range_end: end.to_vec(),
        })
    };
    assert_eq!(f.err(revoke(b"a", b"b")), EtcdError::PermissionNotGranted);
    f.ok(revoke(b"a", b""));
    let revoke_role =
        |role: &str| Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest { name: "alice".into(), role: role.into() });
    f.ok(revoke_role("r"));
    assert_eq!(f.err(revoke_role("r")), EtcdError::RoleNotGranted);
    let change = Request::AuthUserChangePassword(AuthUserChangePasswordRequest {
        name: "alice".into(),
        hashed_password: base64::engine::general_purpose::STANDARD.encode("h3"),
        ..Default::default()
    });
    f.ok(change);
    assert_eq!(f.store.password_of("alice"), Err(EtcdError::AuthNotEnabled));
    assert_eq!(f.store.revision(), 9);
}

#[test]
fn root_rules_and_enable() {
    let mut f = Fixture::new();
    assert_eq!(f.err(Request::AuthEnable(AuthEnableRequest {})), EtcdError::RootUserNotExist);
    f.ok(user_add("root", "h"));
    assert_eq!(f.err(Request::AuthEnable(AuthEnableRequest {})), EtcdError::RootRoleNotExist);
    // The root role may be granted without existing.
    f.ok(grant_role("root", "root"));
    let rev = f.store.revision();
    f.ok(Request::AuthEnable(AuthEnableRequest {}));
    assert!(f.store.is_enabled());
    assert_eq!(f.store.revision(), rev, "enabling does not commit a revision (etcd)");
    f.ok(Request::AuthEnable(AuthEnableRequest {}));
    let del_root = Request::AuthUserDelete(AuthUserDeleteRequest { name: "root".into() });
    assert_eq!(f.err(del_root.clone()), EtcdError::InvalidAuthMgmt);
    let revoke = Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest { name: "root".into(), role: "root".into() });
    assert_eq!(f.err(revoke.clone()), EtcdError::InvalidAuthMgmt);
    let del_role = Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "root".into() });
    // Refused while enabled even though the role was only granted, never added.
    assert_eq!(f.err(del_role.clone()), EtcdError::InvalidAuthMgmt);

    // Admin rights: root yes, others no, nobody: user empty.
    f.ok(user_add("alice", "h"));
    let info = |u: &str| AuthInfo { user: u.into(), revision: 1 };
    assert_eq!(f.store.check_admin(Some(&info("root"))), Ok(()));
    assert_eq!(f.store.check_admin(Some(&info("alice"))), Err(EtcdError::PermissionDenied));
    assert_eq!(f.store.check_admin(Some(&info("ghost"))), Err(EtcdError::UserNotFound));
    assert_eq!(f.store.check_admin(None), Err(EtcdError::UserEmpty));
    let read = PermType::Read;
    assert_eq!(f.store.check_op(&info("alice"), b"k", b"", read), Err(EtcdError::AuthOldRevision));
    let now = |u: &str| AuthInfo { user: u.into(), revision: f.store.revision() };
    assert_eq!(f.store.check_op(&now("root"), b"k", b"", read), Ok(()));
    assert_eq!(f.store.check_op(&now("alice"), b"k", b"", read), Err(EtcdError::PermissionDenied));
    assert_eq!(f.store.check_op(&now("ghost"), b"k", b"", read), Err(EtcdError::PermissionDenied));
    assert_eq!(f.store.check_op(&AuthInfo::default(), b"k", b"", read), Err(EtcdError::UserEmpty));

    // Tokens: assigned at apply with the index; dropped per user and on disable.
    let auth = |name: &str| {
        Request::Authenticate(InternalAuthenticateRequest { name: name.into(), simple_token: "abc".into() })
    };
    let t = f.apply(auth("alice")).unwrap().token;
    assert_eq!(t, format!("abc.{}", f.index));
    assert_eq!(f.store.auth_info(&t).unwrap().unwrap().user, "alice");
    assert_eq!(f.err(auth("ghost")), EtcdError::AuthFailed);
    f.ok(Request::AuthUserDelete(AuthUserDeleteRequest { name: "alice".into() }));
    assert_eq!(f.store.auth_info(&t), Err(EtcdError::InvalidAuthToken));
    let t = f.apply(auth("root")).unwrap().token;
    f.ok(Request::AuthDisable(AuthDisableRequest {}));
    assert_eq!(f.store.auth_info(&t), Ok(None), "auth off: no info");
    assert_eq!(f.err(auth("root")), EtcdError::AuthNotEnabled);
    // Disabled, root may go.
    f.ok(revoke);
    f.ok(role_add("root"));
    f.ok(del_role);
    f.ok(del_root);
}

#[test]
fn no_password_users_and_role_views() {
    let mut f = Fixture::new();
    let add = Request::AuthUserAdd(AuthUserAddRequest {
        name: "np".into(),
        options: Some(UserAddOptions { no_password: true }),
        ..Default::default()
    });
    f.ok(add);
    f.ok(user_add("root", "h"));
    f.ok(grant_role("root", "root"));
    f.ok(Request::AuthEnable(AuthEnableRequest {}));
    assert_eq!(f.store.password_of("np"), Err(EtcdError::NoPasswordUser));
    assert_eq!(f.store.password_of("nobody"), Err(EtcdError::AuthFailed));
    assert_eq!(f.store.password_of("root").unwrap().0, b"h");
    let auth = Request::Authenticate(InternalAuthenticateRequest { name: "np".into(), simple_token: "x".into() });
    assert_eq!(f.err(auth), EtcdError::AuthFailed);
    f.ok(role_add("root"));
    f.store.with_state(|st| {
        assert_eq!(st.role_permissions("root").unwrap(), vec![state::root_permission()]);
        assert_eq!(st.role_permissions("x"), Err(EtcdError::RoleNotFound));
    });
}

#[test]
fn permissions_are_sorted_by_key_and_deleting_a_role_takes_it_from_users() {
    let mut f = Fixture::new();
    f.ok(role_add("r"));
    f.ok(role_add("s"));
    f.ok(user_add("u", "h"));
    f.ok(grant_role("u", "s"));
    f.ok(grant_role("u", "r"));
    for (k, e) in [(&b"m"[..], &b""[..]), (b"c", b"d"), (b"c", b"\0"), (b"a", b"")] {
        f.ok(grant_perm("r", PermType::Read, k, e));
    }
    f.store.with_state(|st| {
        let keys: Vec<_> = st.roles["r"].key_permission.iter().map(|p| (p.key.clone(), p.range_end.clone())).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"a".into(), b"".into()),
            (b"c".into(), b"d".into()),
            (b"c".into(), b"\0".into()),
            (b"m".into(), b"".into()),
        ];
        assert_eq!(keys, want);
        assert_eq!(st.user_roles("u").unwrap(), ["r", "s"], "roles sorted");
    });
    f.ok(Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "r".into() }));
    f.store.with_state(|st| assert_eq!(st.user_roles("u").unwrap(), ["s"]));
}

/// The state the engine holds reloads to the same state (and so do
/// snapshots, which are engine dumps).
#[test]
fn the_state_reloads_from_the_engine() {
    let mut f = Fixture::new();
    f.ok(user_add("root", "h"));
    f.ok(grant_role("root", "root"));
    f.ok(role_add("r"));
    f.ok(grant_perm("r", PermType::Readwrite, b"k", b"\0"));
    f.ok(Request::AuthEnable(AuthEnableRequest {}));
    let fresh = AuthStore::new(Duration::from_secs(1), None);
    fresh.load(&f.engine).unwrap();
    let want = f.store.with_state(Clone::clone);
    fresh.with_state(|st| assert_eq!(*st, want));
    assert!(fresh.is_enabled());

    let mut dump = Vec::new();
    f.engine.dump(&mut dump).unwrap();
    let restored = MemoryEngine::new();
    restored.restore(&mut dump.as_slice()).unwrap();
    let again = AuthStore::new(Duration::from_secs(1), None);
    again.load(&restored).unwrap();
    again.with_state(|st| assert_eq!(*st, want));
}

/// The per-user permission cache follows every change: a grant, a
/// revoke, a role taken away, a role deleted and re-added empty.
#[test]
fn cached_permissions_follow_every_change() {
    let mut f = Fixture::new();
    f.ok(user_add("root", "h"));
    f.ok(grant_role("root", "root"));
    f.ok(user_add("alice", "h"));
    f.ok(role_add("r"));
    f.ok(grant_role("alice", "r"));
    f.ok(Request::AuthEnable(AuthEnableRequest {}));
    let (read, write) = (PermType::Read, PermType::Write);
    let check = |f: &Fixture, key: &[u8], end: &[u8], t| {
        let info = AuthInfo { user: "alice".into(), revision: f.store.revision() };
        f.store.check_op(&info, key, end, t).is_ok()
    };
    assert!(!check(&f, b"a", b"", read));
    f.ok(grant_perm("r", PermType::Readwrite, b"a", b"m"));
    assert!(check(&f, b"a", b"", read) && check(&f, b"b", b"c", write));
    f.ok(grant_perm("r", read, b"m", b"\0"));
    assert!(check(&f, b"a", b"\0", read), "[a, m) and [m, ..) join");
    assert!(!check(&f, b"a", b"\0", write));
    let revoke = |key: &[u8], end: &[u8]| {
        Request::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: key.to_vec(),
            range_end: end.to_vec(),
        })
    };
    f.ok(revoke(b"m", b"\0"));
    assert!(!check(&f, b"a", b"\0", read) && check(&f, b"a", b"m", read));
    f.ok(Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest { name: "alice".into(), role: "r".into() }));
    assert!(!check(&f, b"a", b"", read));
    f.ok(grant_role("alice", "r"));
    assert!(check(&f, b"a", b"", read));
    f.ok(Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "r".into() }));
    f.ok(role_add("r"));
    f.ok(grant_role("alice", "r"));
    assert!(!check(&f, b"a", b"", read), "a role added again starts empty");
}
