//! The auth state (etcd's `authStore` minus tokens): the switch, the auth
//! revision, users and roles, and the changes etcd's auth requests make to
//! it, each written to a `WriteBatch` as well.
//!
//! Invariants (as etcd's `server/auth/store.go`):
//! - every change that reaches the engine increments the revision, except
//!   enabling auth (etcd reads the revision back without committing one);
//!   a request that fails or changes nothing (granting a role the user
//!   has, enabling twice) writes nothing and keeps the revision;
//! - a user's roles are sorted; a role's permissions are sorted by key
//!   (stably, so equal keys stay in grant order, as Go's insertion sort);
//! - the root user and the root role cannot be deleted, nor root's root
//!   role revoked, while auth is enabled;
//! - deciding never fails on bad input: every malformed request is an
//!   etcd error (apply is deterministic and never panics).
//!
//! Example: `role add r` then `role grant-permission r read a` moves the
//! revision 1 -> 2 -> 3; `role grant-permission r read a` again rewrites
//! the same permission and moves it to 4 (etcd commits even then).

use std::collections::BTreeMap;

use api::pb::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use api::pb::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use api::EtcdError;
use base64::Engine as _;
use prost::Message;
use storage::schema::{AuthKey, AUTH_ROLE_END, AUTH_ROLE_PREFIX, AUTH_USER_END, AUTH_USER_PREFIX};
use storage::{Engine, Table, WriteBatch};

use super::perms::is_valid_permission_range;

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// The auth revision of a store that never recorded one: etcd commits
/// revision 1 when it creates its auth store.
const INITIAL_REVISION: u64 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct AuthState {
    pub enabled: bool,
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState { enabled: false, revision: INITIAL_REVISION, users: BTreeMap::new(), roles: BTreeMap::new() }
    }
}

fn corrupt(what: &str, key: &[u8]) -> EtcdError {
    EtcdError::Internal(format!("auth table: undecodable {what} at key {:?}", String::from_utf8_lossy(key)))
}

/// Decodes every record of the auth table in `[from, to)` as `M`; the
/// first undecodable one stops the scan with its key.
fn scan_decoded<M: Message + Default>(
    engine: &dyn Engine,
    what: &str,
    from: &[u8],
    to: &[u8],
    mut each: impl FnMut(M),
) -> Result<(), EtcdError> {
    let mut bad = None;
    engine
        .scan(Table::Auth, from, Some(to), &mut |k, v| match M::decode(v) {
            Ok(m) => {
                each(m);
                true
            }
            Err(_) => {
                bad = Some(corrupt(what, k));
                false
            }
        })
        .map_err(crate::errors::from_engine)?;
    bad.map_or(Ok(()), Err)
}

fn name_of(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Whether `user` has the root role (etcd's `hasRootRole`).
pub fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT_ROLE)
}

/// etcd's root role view: read-write on every key.
pub fn root_permission() -> Permission {
    Permission { perm_type: PermType::Readwrite as i32, key: Vec::new(), range_end: vec![0] }
}

impl AuthState {
    /// Reads the state from the engine's auth table.
    pub fn load(engine: &dyn Engine) -> Result<AuthState, EtcdError> {
        let mut st = AuthState::default();
        let get = |k: AuthKey| engine.get(Table::Auth, &k.encode()).map_err(crate::errors::from_engine);
        st.enabled = get(AuthKey::Enabled)?.is_some_and(|v| v.first() == Some(&1));
        if let Some(v) = get(AuthKey::Revision)? {
            let bytes: [u8; 8] =
                v.as_slice().try_into().map_err(|_| corrupt("revision", &AuthKey::Revision.encode()))?;
            st.revision = u64::from_be_bytes(bytes);
        }
        scan_decoded(engine, "user", AUTH_USER_PREFIX, AUTH_USER_END, |u: User| {
            st.users.insert(name_of(&u.name), u);
        })?;
        scan_decoded(engine, "role", AUTH_ROLE_PREFIX, AUTH_ROLE_END, |r: Role| {
            st.roles.insert(name_of(&r.name), r);
        })?;
        Ok(st)
    }

    fn commit_revision(&mut self, b: &mut WriteBatch) {
        self.revision += 1;
        b.put(Table::Auth, AuthKey::Revision.encode(), self.revision.to_be_bytes().to_vec());
    }

    fn put_user(&mut self, user: User, b: &mut WriteBatch) {
        b.put(Table::Auth, AuthKey::User(user.name.clone()).encode(), user.encode_to_vec());
        self.users.insert(name_of(&user.name), user);
    }

    fn put_role(&mut self, role: Role, b: &mut WriteBatch) {
        b.put(Table::Auth, AuthKey::Role(role.name.clone()).encode(), role.encode_to_vec());
        self.roles.insert(name_of(&role.name), role);
    }

    fn user(&self, name: &str) -> Result<&User, EtcdError> {
        self.users.get(name).ok_or(EtcdError::UserNotFound)
    }

    fn role(&self, name: &str) -> Result<&Role, EtcdError> {
        self.roles.get(name).ok_or(EtcdError::RoleNotFound)
    }

    pub fn enable(&mut self, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.enabled = true;
        b.put(Table::Auth, AuthKey::Enabled.encode(), vec![1]);
        Ok(())
    }

    pub fn disable(&mut self, b: &mut WriteBatch) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        b.put(Table::Auth, AuthKey::Enabled.encode(), vec![0]);
        self.commit_revision(b);
    }

    pub fn user_add(&mut self, r: AuthUserAddRequest, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password { Vec::new() } else { decode_hash(&r.hashed_password)? };
        let user = User { name: r.name.into_bytes(), password, roles: Vec::new(), options: Some(options) };
        self.put_user(user, b);
        self.commit_revision(b);
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT_USER {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let user = self.users.remove(name).ok_or(EtcdError::UserNotFound)?;
        b.delete(Table::Auth, AuthKey::User(user.name).encode());
        self.commit_revision(b);
        Ok(())
    }

    pub fn user_change_password(
        &mut self,
        r: AuthUserChangePasswordRequest,
        b: &mut WriteBatch,
    ) -> Result<(), EtcdError> {
        let mut user = self.user(&r.name)?.clone();
        // A user added with --no-password keeps none (etcd's check).
        if !user.options.as_ref().is_some_and(|o| o.no_password) {
            user.password = decode_hash(&r.hashed_password)?;
        }
        self.put_user(user, b);
        self.commit_revision(b);
        Ok(())
    }

    pub fn user_grant_role(&mut self, r: AuthUserGrantRoleRequest, b: &mut WriteBatch) -> Result<(), EtcdError> {
        let mut user = self.user(&r.user)?.clone();
        // etcd grants the root role without the role existing.
        if r.role != ROOT_ROLE {
            self.role(&r.role)?;
        }
        let Err(at) = user.roles.binary_search(&r.role) else {
            return Ok(()); // granted already: nothing written, as etcd
        };
        user.roles.insert(at, r.role);
        self.put_user(user, b);
        self.commit_revision(b);
        Ok(())
    }

    pub fn user_revoke_role(&mut self, r: AuthUserRevokeRoleRequest, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut user = self.user(&r.name)?.clone();
        let before = user.roles.len();
        user.roles.retain(|role| *role != r.role);
        if user.roles.len() == before {
            return Err(EtcdError::RoleNotGranted);
        }
        self.put_user(user, b);
        self.commit_revision(b);
        Ok(())
    }

    pub fn role_add(&mut self, name: String, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        if self.roles.contains_key(&name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        self.put_role(Role { name: name.into_bytes(), key_permission: Vec::new() }, b);
        self.commit_revision(b);
        Ok(())
    }

    /// Deletes the role and takes it from every user that had it.
    pub fn role_delete(&mut self, name: &str, b: &mut WriteBatch) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let role = self.roles.remove(name).ok_or(EtcdError::RoleNotFound)?;
        b.delete(Table::Auth, AuthKey::Role(role.name).encode());
        let holders: Vec<User> = self.users.values().filter(|u| u.roles.iter().any(|r| r == name)).cloned().collect();
        for mut user in holders {
            user.roles.retain(|r| r != name);
            self.put_user(user, b);
        }
        self.commit_revision(b);
        Ok(())
    }

    pub fn role_grant_permission(
        &mut self,
        r: AuthRoleGrantPermissionRequest,
        b: &mut WriteBatch,
    ) -> Result<(), EtcdError> {
        let perm = r.perm.ok_or(EtcdError::PermissionNotGiven)?;
        if !is_valid_permission_range(&perm.key, &perm.range_end) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut role = self.role(&r.name)?.clone();
        // etcd compares only with the first permission whose key is not
        // below the new one's: equal keys with other ends are added.
        let at = role.key_permission.partition_point(|p| p.key < perm.key);
        match role.key_permission.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => p.perm_type = perm.perm_type,
            _ => {
                role.key_permission.push(perm);
                role.key_permission.sort_by(|x, y| x.key.cmp(&y.key));
            }
        }
        self.put_role(role, b);
        self.commit_revision(b);
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        r: AuthRoleRevokePermissionRequest,
        b: &mut WriteBatch,
    ) -> Result<(), EtcdError> {
        let mut role = self.role(&r.role)?.clone();
        let before = role.key_permission.len();
        role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(EtcdError::PermissionNotGranted);
        }
        self.put_role(role, b);
        self.commit_revision(b);
        Ok(())
    }

    /// etcd's Authenticate at apply: may `name` get a token?
    pub fn check_authenticate(&self, name: &str) -> Result<(), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(EtcdError::AuthFailed);
        }
        Ok(())
    }

    /// The permissions RoleGet shows: etcd's fixed view for root.
    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        let role = self.role(name)?;
        Ok(if name == ROOT_ROLE { vec![root_permission()] } else { role.key_permission.clone() })
    }

    pub fn user_roles(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        Ok(self.user(name)?.roles.clone())
    }

    /// etcd's `IsAdminPermitted`: with auth on, only a user with the root
    /// role may manage auth.
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|u| !u.is_empty()).ok_or(EtcdError::UserEmpty)?;
        if !has_root_role(self.user(name)?) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's `HasRole`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}

/// The stored hash from a request's base64 `hashedPassword` (etcd's
/// `selectPassword`; empty stays empty, as etcd's decode of "").
fn decode_hash(hashed: &str) -> Result<Vec<u8>, EtcdError> {
    base64::engine::general_purpose::STANDARD.decode(hashed).map_err(|_| EtcdError::NoPasswordUser)
}
