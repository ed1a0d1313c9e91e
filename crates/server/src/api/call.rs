//! The request layer: the one place every client request passes before its
//! handler runs, over gRPC and the JSON gateway alike, and the calls the
//! Lock and Election services make on the caller's behalf (etcd's
//! `v3rpc/interceptor.go`, plus the auth checks its handlers share).
//!
//! For each RPC, [`rule`] says whether a learner serves it and who may
//! call it; [`admit`] applies that and hands the handler a [`Call`]: the
//! request's deadline and its sender. Handlers take their deadline and
//! sender from the `Call` alone ([`Call::of`]), and only this module makes
//! one, so a request that skipped the layer fails instead of running
//! unchecked, and a new RPC is refused until it has a rule (a unit test
//! holds the table against the `.proto` files).
//!
//! Order, as etcd's: a stopped member refuses everything but Status; then
//! a learner refuses what etcd's learner refuses; then `hasleader`
//! (`clientv3.WithRequireLeader`) without a leader fails; then the auth
//! check the rule names. With auth off, no token is copied and no sender
//! resolved: the checks cost a few loads.
//!
//! Credentials: a token (`token` metadata, or the gateway's Authorization
//! header) or, with `--client-cert-auth` and no token, the Common Name of
//! the client's verified certificate (etcd's `AuthInfoFromTLS`); never for
//! a gateway request, as etcd ignores it there.

use std::sync::Arc;

use api::EtcdError;
use axum::http::HeaderMap;
use tokio::time::Instant;
use tonic::Status;

use super::auth_token::{auth_info_of, untranslated};
use super::Ctx;
use crate::apply::auth::AuthInfo;
use crate::deadline::{client_timeout_of, Deadline};

/// Who may call an RPC (when auth is on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no sender resolved (Authenticate).
    Anyone,
    /// Any sender, resolved by the handler after it validated the request
    /// (etcd's order: a bad request is refused as such whatever its token
    /// says), which then checks its rights on keys.
    Sender,
    /// A user, any user (etcd's `requireAuthInfo`).
    User,
    /// A user with the root role (etcd's `isAuthenticated`).
    Admin,
    /// As `Admin`, with the auth package's untranslated error (etcd's
    /// Defragment, Snapshot, Hash, HashKV).
    AdminUntranslated,
    /// Decided by the handler from the request's content, or per message
    /// of a stream: the credential is kept, nothing is resolved here.
    InHandler,
}

/// Whether a learner serves an RPC (etcd's `isRPCSupportedForLearner` and
/// its stream interceptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learner {
    Serves,
    Refused,
    /// Only serializable: the handler asks [`Call::linearizable`].
    IfSerializable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub learner: Learner,
    /// Served by a member whose raft node stopped (a fatal error): only
    /// Status, which reports it; its data may be behind a failed write.
    pub when_stopped: bool,
}

const fn r(access: Access, learner: Learner) -> Option<Rule> {
    Some(Rule { access, learner, when_stopped: false })
}

/// The rule of an RPC, by its gRPC path; None for a path that has none.
pub fn rule(method: &str) -> Option<Rule> {
    use Access::*;
    use Learner::*;
    let (service, name) = method.strip_prefix('/')?.split_once('/')?;
    match (service, name) {
        ("etcdserverpb.KV", "Range") => r(Sender, IfSerializable),
        ("etcdserverpb.KV", "Put" | "DeleteRange" | "Txn") => r(Sender, Refused),
        ("etcdserverpb.KV", "Compact") => r(Admin, Refused),
        ("etcdserverpb.Watch", "Watch") => r(InHandler, Refused),
        ("etcdserverpb.Lease", "LeaseGrant" | "LeaseRevoke" | "LeaseTimeToLive" | "LeaseLeases") => r(User, Refused),
        ("etcdserverpb.Lease", "LeaseKeepAlive") => r(InHandler, Refused),
        // Add validates its URLs before the admin check (etcd's
        // ClusterServer.MemberAdd); Update checks the admin first.
        ("etcdserverpb.Cluster", "MemberAdd") => r(InHandler, Refused),
        ("etcdserverpb.Cluster", "MemberRemove" | "MemberPromote" | "MemberUpdate") => r(Admin, Refused),
        ("etcdserverpb.Cluster", "MemberList") => r(User, Refused),
        // Listing alarms needs a user, changing them the root role.
        ("etcdserverpb.Maintenance", "Alarm") => r(InHandler, Refused),
        ("etcdserverpb.Maintenance", "Status") => Some(Rule { access: User, learner: Serves, when_stopped: true }),
        ("etcdserverpb.Maintenance", "Defragment" | "Hash" | "HashKV") => r(AdminUntranslated, Refused),
        ("etcdserverpb.Maintenance", "Snapshot") => r(AdminUntranslated, Serves),
        ("etcdserverpb.Maintenance", "MoveLeader") => r(Admin, Refused),
        ("etcdserverpb.Auth", "Authenticate") => r(Anyone, Refused),
        // A user may get itself and its roles.
        ("etcdserverpb.Auth", "UserGet" | "RoleGet") => r(InHandler, Refused),
        (
            "etcdserverpb.Auth",
            "AuthEnable"
            | "AuthDisable"
            | "AuthStatus"
            | "UserAdd"
            | "UserList"
            | "UserDelete"
            | "UserChangePassword"
            | "UserGrantRole"
            | "UserRevokeRole"
            | "RoleAdd"
            | "RoleList"
            | "RoleDelete"
            | "RoleGrantPermission"
            | "RoleRevokePermission",
        ) => r(Admin, Refused),
        // Their reads and writes run as the caller, each admitted in turn.
        ("v3lockpb.Lock", "Lock" | "Unlock") => r(InHandler, Refused),
        ("v3electionpb.Election", "Campaign" | "Proclaim" | "Leader" | "Resign" | "Observe") => r(InHandler, Refused),
        _ => None,
    }
}

/// What the client presented to say who it is (kept only while auth is on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credential {
    #[default]
    None,
    Token(String),
    /// The Common Name of its verified client certificate.
    CommonName(Arc<str>),
}

impl Credential {
    /// The sender this credential names now: no user (the default) when
    /// none was presented or auth is off; a token is looked up (and waited
    /// for, within `deadline`, when it was issued through another member).
    pub async fn sender(&self, ctx: &Ctx, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
        Ok(self.resolve(ctx, deadline).await?.unwrap_or_default())
    }

    /// The sender, or None when no credential was presented or auth is off.
    pub async fn resolve(&self, ctx: &Ctx, deadline: Deadline) -> Result<Option<AuthInfo>, EtcdError> {
        if !ctx.node.auth.is_enabled() {
            return Ok(None);
        }
        match self {
            Credential::None => Ok(None),
            Credential::Token(t) => auth_info_of(ctx, Some(t), deadline).await,
            Credential::CommonName(cn) => {
                Ok(Some(AuthInfo { user: cn.to_string(), revision: ctx.node.auth.revision() }))
            }
        }
    }

    /// Whether the sender may read `[key, range_end)` now (a stream's
    /// later message, or a read made on its behalf): resolved within a
    /// fresh request timeout, as the stream's own deadline is long gone.
    pub async fn check_read(&self, ctx: &Ctx, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        let deadline = Deadline::new(ctx.request_timeout(), None);
        let info = self.sender(ctx, deadline).await?;
        crate::apply::auth::check::check_range(&ctx.node.auth, &info, key, range_end)
    }

    /// etcd's `requireAuthInfo`: with auth on, a user, any user.
    pub async fn user(&self, ctx: &Ctx, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
        match self.resolve(ctx, deadline).await? {
            None if ctx.node.auth.is_enabled() => Err(EtcdError::UserEmpty),
            info => Ok(info.unwrap_or_default()),
        }
    }

    /// etcd's `isAuthenticated`: with auth on, a user with the root role.
    pub async fn admin(&self, ctx: &Ctx, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
        let info = self.resolve(ctx, deadline).await?;
        ctx.node.auth.check_admin(info.as_ref())?;
        Ok(info.unwrap_or_default())
    }
}

/// The verified client certificate's Common Name of a TLS connection,
/// which the accept loop puts on each of its requests (with
/// `--client-cert-auth` only: without it no certificate is asked for).
#[derive(Clone, Debug)]
pub struct ClientCert(pub Arc<str>);

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Grpc,
    Gateway,
}

/// A request past the layer: its deadline and its sender.
#[derive(Clone, Debug)]
pub struct Call {
    pub deadline: Deadline,
    /// The client's own deadline, if it set one: Lock and Campaign wait as
    /// long as it allows, beyond the server's request timeout.
    pub client_deadline: Option<Instant>,
    credential: Credential,
    /// The sender, when the rule resolved it here (`User`, `Admin`).
    sender: Option<AuthInfo>,
}

/// The error of a request that did not pass the layer: a bug, loudly.
fn unadmitted() -> EtcdError {
    EtcdError::Internal("request did not pass the request layer".into())
}

impl Call {
    /// The call a request was admitted as.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Call, EtcdError> {
        req.extensions().get::<Call>().cloned().ok_or_else(unadmitted)
    }

    /// The sender: the one the rule resolved, else resolved now (no user
    /// when no credential came or auth is off).
    pub async fn sender(&self, ctx: &Ctx) -> Result<AuthInfo, EtcdError> {
        match &self.sender {
            Some(s) => Ok(s.clone()),
            None => self.credential.sender(ctx, self.deadline).await,
        }
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// This call without the client's deadline, for work that outlives
    /// the client's wait (removing an abandoned lock key).
    pub fn detached(&self) -> Call {
        Call { client_deadline: None, ..self.clone() }
    }

    /// What is left of the client's own deadline, if it set one.
    pub fn client_timeout(&self) -> Option<std::time::Duration> {
        self.client_deadline.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Before a linearizable read (an `IfSerializable` RPC; the others
    /// reaching here were refused to learners already): a learner refuses
    /// it, others wait for the ReadIndex barrier.
    pub async fn linearizable(&self, ctx: &Ctx) -> Result<(), EtcdError> {
        if ctx.node.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        ctx.node.read_barrier(self.deadline).await
    }

    /// `InHandler`: the sender, which must be a user.
    pub async fn user(&self, ctx: &Ctx) -> Result<AuthInfo, EtcdError> {
        self.credential.user(ctx, self.deadline).await
    }

    /// `InHandler`: the sender, which must have the root role.
    pub async fn admin(&self, ctx: &Ctx) -> Result<AuthInfo, EtcdError> {
        self.credential.admin(ctx, self.deadline).await
    }

    /// `InHandler`: the sender, whoever it is (None: no credential, or
    /// auth is off).
    pub async fn caller(&self, ctx: &Ctx) -> Result<Option<AuthInfo>, EtcdError> {
        self.credential.resolve(ctx, self.deadline).await
    }

    /// A request made on this call's behalf (Lock's and Election's reads
    /// and writes), admitted as `method` with this call's credential and
    /// the server's timeout within the client's deadline.
    pub async fn on_behalf(&self, ctx: &Ctx, method: &str) -> Result<Call, Status> {
        let rule = rule(method).ok_or_else(unadmitted)?;
        let deadline = Deadline::new(ctx.request_timeout(), self.client_timeout());
        check(ctx, rule, self.credential.clone(), deadline, self.client_deadline, false).await
    }
}

/// The token of a request: `token` metadata, or (gateway) the
/// Authorization header without its `Bearer ` (etcd's
/// `TokenFieldNameGRPC` and `TokenFieldNameSwagger`).
pub fn token_of(headers: &HeaderMap, via: Via) -> Option<String> {
    // grpc-gateway hands on only the Authorization header as metadata.
    let keys: &[&str] = match via {
        Via::Grpc => &["token", "authorization"],
        Via::Gateway => &["authorization"],
    };
    let v = keys.iter().find_map(|k| headers.get(*k)).and_then(|v| v.to_str().ok())?;
    Some(v.strip_prefix("Bearer ").unwrap_or(v).to_string())
}

/// Admits a request for `method` with `headers` (gRPC metadata are HTTP/2
/// headers) from a connection with `cert`.
pub async fn admit(
    ctx: &Ctx,
    method: &str,
    headers: &HeaderMap,
    cert: Option<&ClientCert>,
    via: Via,
) -> Result<Call, Status> {
    match rule(method) {
        Some(rule) => admit_as(ctx, rule, headers, cert, via).await,
        None => Err(Status::unimplemented(format!("unknown method {method}"))),
    }
}

async fn admit_as(
    ctx: &Ctx,
    rule: Rule,
    headers: &HeaderMap,
    cert: Option<&ClientCert>,
    via: Via,
) -> Result<Call, Status> {
    let client_timeout = client_timeout_of(headers);
    let deadline = Deadline::new(ctx.request_timeout(), client_timeout);
    let client_deadline = client_timeout.map(|t| Instant::now() + t);
    let credential = if !ctx.node.auth.is_enabled() {
        Credential::None
    } else if let Some(t) = token_of(headers, via) {
        Credential::Token(t)
    } else {
        match cert {
            Some(c) if via == Via::Grpc => Credential::CommonName(c.0.clone()),
            _ => Credential::None,
        }
    };
    // etcd's `MetadataRequireLeaderKey` with `MetadataHasLeader`.
    let require_leader = headers.get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
    check(ctx, rule, credential, deadline, client_deadline, require_leader).await
}

async fn check(
    ctx: &Ctx,
    rule: Rule,
    credential: Credential,
    deadline: Deadline,
    client_deadline: Option<Instant>,
    require_leader: bool,
) -> Result<Call, Status> {
    let node = &ctx.node;
    if node.state.is_stopped() && !rule.when_stopped {
        return Err(EtcdError::Stopped.into());
    }
    if rule.learner == Learner::Refused && node.is_learner() {
        return Err(EtcdError::NotSupportedForLearner.into());
    }
    if require_leader && node.state.leader() == 0 {
        return Err(EtcdError::NoLeader.into());
    }
    let sender = match rule.access {
        Access::Anyone | Access::InHandler | Access::Sender => None,
        Access::User => Some(credential.user(ctx, deadline).await?),
        Access::Admin => Some(credential.admin(ctx, deadline).await?),
        Access::AdminUntranslated => {
            Some(credential.admin(ctx, deadline).await.map_err(|e| match untranslated(&e) {
                Some(text) => Status::unknown(text),
                None => Status::from(e),
            })?)
        }
    };
    Ok(Call { deadline, client_deadline, credential, sender })
}

/// The layer over the gRPC services: counts each call (`metrics::grpc`),
/// admits each request whose path has a
/// rule and hands its [`Call`] on in the request's extensions; answers a
/// refused one with its gRPC status.
pub async fn grpc_layer(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    crate::metrics::grpc::observe(req, |mut req| async move {
        let Some(rule) = rule(req.uri().path()) else {
            // Not ours to judge: tonic answers Unimplemented.
            return next.run(req).await;
        };
        let cert = req.extensions().get::<ClientCert>().cloned();
        match admit_as(&ctx, rule, req.headers(), cert.as_ref(), Via::Grpc).await {
            Ok(call) => {
                req.extensions_mut().insert(call);
                next.run(req).await
            }
            Err(status) => status.into_http(),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RPC of every client service in the .proto files has a rule,
    /// and nothing else has one (`metrics::grpc::METHODS` is checked
    /// against the .proto files).
    #[test]
    fn every_client_rpc_has_a_rule() {
        let methods = crate::metrics::grpc::METHODS;
        assert_eq!(methods.len(), 47, "{methods:?}");
        for (service, method, _) in methods {
            assert!(rule(&format!("/{service}/{method}")).is_some(), "/{service}/{method} has no rule");
        }
        assert_eq!(rule("/metastorepb.Peer/Raft"), None);
        assert_eq!(rule("/etcdserverpb.KV/Nope"), None);
        assert_eq!(rule("nonsense"), None);
    }

    #[test]
    fn learners_serve_what_etcds_serve() {
        let serves: Vec<&str> = [
            "/etcdserverpb.KV/Range",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.Maintenance/Status",
            "/etcdserverpb.Maintenance/Snapshot",
            "/etcdserverpb.Cluster/MemberList",
            "/etcdserverpb.Watch/Watch",
        ]
        .into_iter()
        .filter(|m| rule(m).is_some_and(|r| r.learner != Learner::Refused))
        .collect();
        assert_eq!(
            serves,
            ["/etcdserverpb.KV/Range", "/etcdserverpb.Maintenance/Status", "/etcdserverpb.Maintenance/Snapshot"]
        );
    }

    #[test]
    fn tokens_from_metadata_or_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h, Via::Grpc), None);
        h.insert("authorization", "Bearer abc.12".parse().unwrap());
        assert_eq!(token_of(&h, Via::Grpc).as_deref(), Some("abc.12"));
        h.insert("token", "xyz.3".parse().unwrap());
        assert_eq!(token_of(&h, Via::Grpc).as_deref(), Some("xyz.3"));
        assert_eq!(token_of(&h, Via::Gateway).as_deref(), Some("abc.12"), "the gateway forwards no `token` header");
    }
}
