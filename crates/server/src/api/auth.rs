//! etcd's Auth service. Changes go through raft (`apply::auth`); reads
//! (UserGet/List, RoleGet/List, AuthStatus) are answered from this member
//! after a ReadIndex barrier, so they are linearizable as etcd's (which
//! sends them through raft).
//!
//! Invariants:
//! - passwords never enter the raft log: this member hashes them (bcrypt,
//!   `--bcrypt-cost`) on the blocking pool before proposing, and checks
//!   an Authenticate's password there too (a verify takes ~50-100 ms at
//!   cost 10: never on the async workers);
//! - with auth on, every call but Authenticate needs a token of a user
//!   with the root role (etcd's `IsAdminPermitted`), except that a user
//!   may get itself and the roles it has (etcd's `authApplierV3`); changes
//!   are checked here first, then again at apply with the sender the entry
//!   carries (as etcd's `needAdminPermission`), so a root role revoked
//!   meanwhile refuses them on every member alike.

use api::pb::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGetRequest,
    AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListRequest,
    AuthUserListResponse, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest,
    AuthenticateResponse,
};
use api::pb::metastorepb::{internal_request::Request as Internal, InternalAuthenticateRequest};
use api::EtcdError;
use base64::Engine as _;
use tonic::{Request, Response, Status};

use super::call::Call;
use super::Ctx;
use crate::apply::auth::tokens::SimpleTokens;
use crate::apply::auth::AuthInfo;
use crate::apply::ApplyResponse;
use crate::deadline::Deadline;

pub struct AuthService {
    ctx: Ctx,
    dummy: std::sync::OnceLock<Vec<u8>>,
}

impl AuthService {
    pub fn new(ctx: Ctx) -> Self {
        AuthService { ctx, dummy: std::sync::OnceLock::new() }
    }

    /// The caller, an admin (or auth is off: the request layer checked).
    async fn admin<T>(&self, req: &Request<T>) -> Result<(AuthInfo, Deadline), EtcdError> {
        let call = Call::of(req)?;
        Ok((call.sender(&self.ctx).await?, call.deadline))
    }

    /// Proposes an auth change as an admin; answers its header.
    async fn change<T>(&self, req: Request<T>, make: impl FnOnce(T) -> Internal) -> Result<Header, Status> {
        let (info, deadline) = self.admin(&req).await?;
        self.propose(make(req.into_inner()), Some(&info), deadline).await?;
        Ok(self.ctx.header(None))
    }

    /// Proposes as `sender` (apply checks it is an admin), or as this
    /// member (an Authenticate, whose password was checked here).
    async fn propose(&self, req: Internal, sender: Option<&AuthInfo>, deadline: Deadline) -> Result<String, EtcdError> {
        let node = &self.ctx.node;
        let applied = match sender {
            Some(s) => node.propose_as(req, s, deadline).await?,
            None => node.propose(req, deadline).await?,
        };
        match applied {
            ApplyResponse::Auth(a) => Ok(a.token),
            _ => Err(crate::errors::unexpected_response("auth")),
        }
    }

    /// A read as an admin (checked by the request layer), after a
    /// ReadIndex barrier.
    async fn read(&self, call: &Call) -> Result<(), EtcdError> {
        self.ctx.node.read_barrier(call.deadline).await
    }

    /// A read as an admin or, when `allowed` says so, as the caller, after
    /// a ReadIndex barrier.
    async fn read_as(&self, call: &Call, allowed: impl FnOnce(&str) -> bool) -> Result<(), EtcdError> {
        let info = call.caller(&self.ctx).await?;
        self.ctx.node.read_barrier(call.deadline).await?;
        match self.ctx.node.auth.check_admin(info.as_ref()) {
            Err(_) if info.as_ref().is_some_and(|i| allowed(&i.user)) => Ok(()),
            r => r,
        }
    }

    /// A bcrypt hash at this member's cost of a password nobody knows,
    /// made once: what an Authenticate of an unknown user verifies against.
    async fn dummy_hash(&self) -> Result<Vec<u8>, EtcdError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let secret = SimpleTokens::gen_prefix();
        let cost = self.ctx.cfg.bcrypt_cost;
        let hashed = bcrypt_work(move || bcrypt::hash(secret, cost).map_err(hashing)).await?;
        Ok(self.dummy.get_or_init(|| hashed.into_bytes()).clone())
    }

    /// bcrypt; base64 as etcd's `hashedPassword`.
    async fn hash(&self, password: String) -> Result<String, EtcdError> {
        let cost = self.ctx.cfg.bcrypt_cost;
        let hashed = bcrypt_work(move || bcrypt::hash_with_result(password, cost).map_err(hashing)).await?;
        // Go's bcrypt writes version 2a; keep hashes alike.
        let text = hashed.format_for_version(bcrypt::Version::TwoA);
        Ok(base64::engine::general_purpose::STANDARD.encode(text))
    }
}

fn hashing(e: bcrypt::BcryptError) -> EtcdError {
    EtcdError::Internal(format!("hashing a password: {e}"))
}

/// bcrypt runs at once (a check takes ~50-100 ms at cost 10).
static BCRYPT_SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// bcrypt work off the async workers, a bounded number at once: callers
/// wait for a slot within their deadline, and a caller that gives up
/// leaves its running check holding the slot until it ends, so clients
/// that time out at once cannot pile up work.
async fn bcrypt_work<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EtcdError> + Send + 'static,
) -> Result<T, EtcdError> {
    crate::maintenance::hashkv::run_limited(&BCRYPT_SLOTS, work).await
}

type Header = Option<api::pb::etcdserverpb::ResponseHeader>;

/// Whether `password` matches a stored hash.
async fn verify(password: String, hash: Vec<u8>) -> Result<bool, EtcdError> {
    bcrypt_work(move || {
        Ok(std::str::from_utf8(&hash).ok().is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false)))
    })
    .await
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, r: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.change(r, Internal::AuthEnable).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(&self, r: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.change(r, Internal::AuthDisable).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, r: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.read(&Call::of(&r)?).await?;
        let (enabled, auth_revision) = self.ctx.node.auth.with_state(|s| (s.enabled, s.revision));
        Ok(Response::new(AuthStatusResponse { header: self.ctx.header(None), enabled, auth_revision }))
    }

    /// etcd's Authenticate: check the password here, then propose so every
    /// member learns the token; if the auth store moved between the check
    /// and the apply (a password changed meanwhile), check again.
    async fn authenticate(&self, r: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let deadline = Call::of(&r)?.deadline;
        let r = r.into_inner();
        let auth = &self.ctx.node.auth;
        self.ctx.node.read_barrier(deadline).await?;
        loop {
            let (hash, checked) = match auth.password_of(&r.name) {
                Ok(found) => found,
                Err(EtcdError::AuthFailed) => {
                    // No such user: spend what a password check costs, so
                    // the answer's time does not tell which names exist.
                    let check = async { verify(r.password.clone(), self.dummy_hash().await?).await };
                    let _ = deadline.run(check).await?;
                    tracing::info!(user = %r.name, "authentication of an unknown user");
                    return Err(EtcdError::AuthFailed.into());
                }
                Err(e) => return Err(e.into()),
            };
            if !deadline.run(verify(r.password.clone(), hash)).await?? {
                tracing::info!(user = %r.name, "invalid password");
                return Err(EtcdError::AuthFailed.into());
            }
            let req = InternalAuthenticateRequest { name: r.name.clone(), simple_token: SimpleTokens::gen_prefix() };
            let token = self.propose(Internal::Authenticate(req), None, deadline).await?;
            if auth.revision() == checked {
                return Ok(Response::new(AuthenticateResponse { header: self.ctx.header(None), token }));
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    async fn user_add(&self, r: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let (info, deadline) = self.admin(&r).await?;
        let mut r = r.into_inner();
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = deadline.run(self.hash(std::mem::take(&mut r.password))).await??;
        }
        r.password.clear();
        self.propose(Internal::AuthUserAdd(r), Some(&info), deadline).await?;
        Ok(Response::new(AuthUserAddResponse { header: self.ctx.header(None) }))
    }

    async fn user_get(&self, r: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let name = r.get_ref().name.clone();
        self.read_as(&Call::of(&r)?, |me| me == name).await?;
        let roles = self.ctx.node.auth.with_state(|s| s.user_roles(&name))?;
        Ok(Response::new(AuthUserGetResponse { header: self.ctx.header(None), roles }))
    }

    async fn user_list(&self, r: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        self.read(&Call::of(&r)?).await?;
        let users = self.ctx.node.auth.with_state(|s| s.users.keys().cloned().collect());
        Ok(Response::new(AuthUserListResponse { header: self.ctx.header(None), users }))
    }

    async fn user_delete(&self, r: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let header = self.change(r, Internal::AuthUserDelete).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let (info, deadline) = self.admin(&r).await?;
        let mut r = r.into_inner();
        r.hashed_password = deadline.run(self.hash(std::mem::take(&mut r.password))).await??;
        self.propose(Internal::AuthUserChangePassword(r), Some(&info), deadline).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header: self.ctx.header(None) }))
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let header = self.change(r, Internal::AuthUserGrantRole).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let header = self.change(r, Internal::AuthUserRevokeRole).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, r: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let header = self.change(r, Internal::AuthRoleAdd).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, r: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let role = r.get_ref().role.clone();
        let auth = &self.ctx.node.auth;
        self.read_as(&Call::of(&r)?, |me| auth.with_state(|s| s.has_role(me, &role))).await?;
        let perm = auth.with_state(|s| s.role_permissions(&role))?;
        Ok(Response::new(AuthRoleGetResponse { header: self.ctx.header(None), perm }))
    }

    async fn role_list(&self, r: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        self.read(&Call::of(&r)?).await?;
        let roles = self.ctx.node.auth.with_state(|s| s.roles.keys().cloned().collect());
        Ok(Response::new(AuthRoleListResponse { header: self.ctx.header(None), roles }))
    }

    async fn role_delete(&self, r: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let header = self.change(r, Internal::AuthRoleDelete).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let header = self.change(r, Internal::AuthRoleGrantPermission).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let header = self.change(r, Internal::AuthRoleRevokePermission).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
