//! etcd's auth store, replicated: users, roles, the auth switch and the
//! auth revision live in the engine's `auth` table (`storage::schema`), so
//! snapshots, backups and restarts carry them; simple tokens live in memory
//! (`tokens`). `check` holds etcd's permission rules per request kind,
//! used at apply for writes and by the services for reads; the services
//! resolve a request's token with [`AuthStore::auth_info`].
//!
//! Invariants:
//! - the state changes only when an auth entry is applied, in the same
//!   engine batch as its applied index; the in-memory copy is swapped in
//!   after that batch is written, and reloaded ([`AuthStore::load`])
//!   whenever the engine is replaced by a snapshot;
//! - apply is deterministic: passwords arrive hashed (the receiving member
//!   hashes them), token prefixes arrive chosen; applying reads no clock
//!   for the replicated state;
//! - `state` holds the rules (`state`), `perms` the range rules;
//! - [`AuthStore::is_enabled`] is one atomic load, always equal to the
//!   state's `enabled` outside a swap, so the no-auth path costs nothing
//!   more.

pub mod check;
pub mod jwt;
pub mod perms;
pub mod state;
pub mod tokens;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api::pb::authpb::permission::Type as PermType;
use api::pb::metastorepb::internal_request::Request;
use api::EtcdError;
use parking_lot::RwLock;
use storage::{Engine, WriteBatch};

pub use state::AuthState;
use tokens::{SimpleTokens, Tokens};

/// etcd's `AuthInfo`: who a token belongs to, and the auth revision when
/// it was checked. The default (user "", revision 0) is a request sent
/// without a token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// What applying an auth entry answers (besides success): the token of an
/// Authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthApplied {
    pub token: String,
}

/// What an applied change does to the tokens once it is written.
enum TokenEffect {
    None,
    Clear,
    InvalidateUser(String),
}

pub struct AuthStore {
    state: RwLock<AuthState>,
    /// `state.enabled`, readable without the lock (the hot path's check).
    enabled: AtomicBool,
    tokens: Tokens,
    /// Each user's merged permissions (etcd's `rangePermCache`), derived
    /// from `state` and rebuilt with it: replaced only under the state's
    /// write lock and read under its read lock, so the two always agree.
    coverage: RwLock<HashMap<String, UserCoverage>>,
}

/// A user's READ and WRITE coverage (READWRITE counts as both).
#[derive(Debug)]
struct UserCoverage {
    read: perms::Coverage,
    write: perms::Coverage,
}

/// Every user's coverage in `st` (root's is never looked at).
fn coverage_of(st: &AuthState) -> HashMap<String, UserCoverage> {
    st.users
        .iter()
        .map(|(name, user)| {
            let perms = || user.roles.iter().filter_map(|r| st.roles.get(r)).flat_map(|r| &r.key_permission);
            let c = UserCoverage {
                read: perms::Coverage::new(perms(), PermType::Read),
                write: perms::Coverage::new(perms(), PermType::Write),
            };
            (name.clone(), c)
        })
        .collect()
}

impl AuthStore {
    /// Simple tokens living `token_ttl` after their last use, or JWT
    /// tokens with `jwt`'s keys.
    pub fn new(token_ttl: Duration, jwt: Option<jwt::JwtKeys>) -> Self {
        let tokens = match jwt {
            Some(keys) => Tokens::Jwt(Box::new(keys)),
            None => Tokens::Simple(SimpleTokens::new(token_ttl)),
        };
        AuthStore {
            state: RwLock::new(AuthState::default()),
            enabled: AtomicBool::new(false),
            tokens,
            coverage: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces the in-memory state with the engine's; tokens of users
    /// that no longer exist (or all, with auth now off) are dropped.
    pub fn load(&self, engine: &dyn Engine) -> Result<(), EtcdError> {
        let st = AuthState::load(engine)?;
        if st.enabled {
            self.tokens.retain_users(|u| st.users.contains_key(u));
        } else {
            self.tokens.clear();
        }
        self.swap(st);
        Ok(())
    }

    /// Reads the state (a short read lock).
    pub fn with_state<T>(&self, f: impl FnOnce(&AuthState) -> T) -> T {
        f(&self.state.read())
    }

    /// Installs a new state, keeping the atomic switch and the coverage
    /// in step (computed before the lock: auth changes are rare).
    fn swap(&self, st: AuthState) {
        let coverage = coverage_of(&st);
        let mut cur = self.state.write();
        self.enabled.store(st.enabled, Ordering::Release);
        *cur = st;
        *self.coverage.write() = coverage;
    }

    /// Whether auth is on: one atomic load.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// Applies an auth entry at raft `index`. `commit` writes the batch
    /// with the applied index; the memory copy changes only after it
    /// succeeded. On an etcd error nothing is written (the caller records
    /// the index).
    pub fn apply(
        &self,
        req: Request,
        index: u64,
        commit: impl FnOnce(WriteBatch) -> Result<(), EtcdError>,
    ) -> Result<AuthApplied, EtcdError> {
        if let Request::Authenticate(a) = req {
            let revision = {
                let st = self.state.read();
                st.check_authenticate(&a.name)?;
                st.revision
            };
            let token = self.tokens.assign(&a.simple_token, index, a.name, revision)?;
            commit(WriteBatch::default())?;
            return Ok(AuthApplied { token });
        }
        let mut next = self.state.read().clone();
        let mut b = WriteBatch::default();
        let effect = match req {
            Request::AuthEnable(_) => next.enable(&mut b).map(|()| TokenEffect::None),
            Request::AuthDisable(_) => {
                next.disable(&mut b);
                Ok(TokenEffect::Clear)
            }
            Request::AuthUserAdd(r) => next.user_add(r, &mut b).map(|()| TokenEffect::None),
            Request::AuthUserDelete(r) => {
                next.user_delete(&r.name, &mut b).map(|()| TokenEffect::InvalidateUser(r.name))
            }
            Request::AuthUserChangePassword(r) => {
                let name = r.name.clone();
                next.user_change_password(r, &mut b).map(|()| TokenEffect::InvalidateUser(name))
            }
            Request::AuthUserGrantRole(r) => next.user_grant_role(r, &mut b).map(|()| TokenEffect::None),
            Request::AuthUserRevokeRole(r) => next.user_revoke_role(r, &mut b).map(|()| TokenEffect::None),
            Request::AuthRoleAdd(r) => next.role_add(r.name, &mut b).map(|()| TokenEffect::None),
            Request::AuthRoleDelete(r) => next.role_delete(&r.role, &mut b).map(|()| TokenEffect::None),
            Request::AuthRoleGrantPermission(r) => next.role_grant_permission(r, &mut b).map(|()| TokenEffect::None),
            Request::AuthRoleRevokePermission(r) => next.role_revoke_permission(r, &mut b).map(|()| TokenEffect::None),
            _ => return Err(EtcdError::Internal("the auth store was handed a non-auth entry".into())),
        }?;
        commit(b)?;
        self.swap(next);
        match effect {
            TokenEffect::None => {}
            TokenEffect::Clear => self.tokens.clear(),
            TokenEffect::InvalidateUser(u) => self.tokens.invalidate_user(&u),
        }
        Ok(AuthApplied::default())
    }

    /// etcd's `CheckPassword` before proposing an Authenticate: the stored
    /// hash to verify against (off the async workers) and the revision it
    /// was read at, so the caller can retry if the store moved meanwhile.
    pub fn password_of(&self, name: &str) -> Result<(Vec<u8>, u64), EtcdError> {
        let st = self.state.read();
        if !st.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let user = st.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(EtcdError::NoPasswordUser);
        }
        Ok((user.password.clone(), st.revision))
    }

    /// See [`Tokens::index_to_wait_for`].
    pub fn token_index(&self, token: &str) -> Result<Option<u64>, EtcdError> {
        self.tokens.index_to_wait_for(token)
    }

    /// The user of a token: a simple one this member has applied (the
    /// caller waits for [`Self::token_index`] first), or a valid JWT one:
    /// etcd's `info`, which extends a simple token's life. None with auth off; an unknown or expired
    /// token is `InvalidAuthToken`.
    pub fn auth_info(&self, token: &str) -> Result<Option<AuthInfo>, EtcdError> {
        let st = self.state.read();
        if !st.enabled {
            return Ok(None);
        }
        self.tokens.info(token, st.revision).map(Some).ok_or(EtcdError::InvalidAuthToken)
    }

    /// etcd's `isOpPermitted`: may the sender `info` do `wanted` on `key`
    /// (or `[key, range_end)`)? No user (revision 0) is `UserEmpty`, an
    /// info older than the store is `AuthOldRevision`, an unknown user is
    /// `PermissionDenied`; root may do anything.
    pub fn check_op(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        wanted: api::pb::authpb::permission::Type,
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let st = self.state.read();
        if !st.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if info.revision < st.revision {
            tracing::warn!(
                current = st.revision,
                request = info.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(EtcdError::AuthOldRevision);
        }
        let user = st.users.get(&info.user).ok_or(EtcdError::PermissionDenied)?;
        if state::has_root_role(user) {
            return Ok(());
        }
        let all = self.coverage.read();
        let Some(coverage) = all.get(&info.user) else {
            return Err(EtcdError::PermissionDenied);
        };
        let covered = match wanted {
            PermType::Read => coverage.read.permits(key, range_end),
            PermType::Write => coverage.write.permits(key, range_end),
            PermType::Readwrite => coverage.read.permits(key, range_end) && coverage.write.permits(key, range_end),
        };
        if covered {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`.
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<(), EtcdError> {
        self.state.read().check_admin(info.map(|i| i.user.as_str()))
    }
}
