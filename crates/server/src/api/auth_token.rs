//! From a request's token to who sent it (etcd's `AuthInfoFromCtx`), and
//! the checks the services make with it before a request runs (etcd's
//! `requireAuthInfo`, `isAuthenticated`, `doSerialize`).
//!
//! Invariants: with auth off, or no token sent, there is no auth info
//! (`Ok(None)`); a token sent with auth on is either a live token this
//! member has applied (its raft index, after the `.`, is waited for, so a
//! token issued through another member works here as soon as this member
//! catches up), or `InvalidAuthToken`. The wait is bounded by the request's
//! deadline, as etcd's (a token naming an index never reached fails then).

use api::EtcdError;
use tonic::metadata::MetadataMap;

use super::Ctx;
use crate::apply::auth::AuthInfo;
use crate::deadline::Deadline;

/// etcd's `TokenFieldNameGRPC` and `TokenFieldNameSwagger` (the gateway's
/// Authorization header).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// The token a request carries, if any (etcd drops a `Bearer ` prefix).
pub fn token_of(md: &MetadataMap) -> Option<String> {
    let v = TOKEN_KEYS.iter().find_map(|k| md.get(*k)).and_then(|v| v.to_str().ok())?;
    Some(v.strip_prefix("Bearer ").unwrap_or(v).to_string())
}

/// The token of a request when auth is on (a stream keeps it for its
/// later requests); nothing is copied while auth is off.
pub fn token_if_enabled(ctx: &Ctx, md: &MetadataMap) -> Option<String> {
    if ctx.node.auth.is_enabled() {
        token_of(md)
    } else {
        None
    }
}

/// The sender of a request, from its `token` metadata.
pub async fn auth_info(ctx: &Ctx, md: &MetadataMap, deadline: Deadline) -> Result<Option<AuthInfo>, EtcdError> {
    if !ctx.node.auth.is_enabled() {
        return Ok(None);
    }
    auth_info_of(ctx, token_of(md).as_deref(), deadline).await
}

/// The sender of a request that carried `token`.
pub async fn auth_info_of(ctx: &Ctx, token: Option<&str>, deadline: Deadline) -> Result<Option<AuthInfo>, EtcdError> {
    let auth = &ctx.node.auth;
    if !auth.is_enabled() {
        return Ok(None);
    }
    let Some(token) = token else {
        return Ok(None);
    };
    if let Some(index) = auth.token_index(token)?.filter(|i| *i > ctx.node.state.applied_index()) {
        let mut applied = ctx.node.state.subscribe_applied();
        match deadline.run(applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(EtcdError::Stopped),
            Err(_) => return Err(EtcdError::InvalidAuthToken),
        };
    }
    auth.auth_info(token)
}

/// The sender as the permission checks take it: no user (the default)
/// when no token came or auth is off.
pub async fn sender(ctx: &Ctx, token: Option<&str>, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
    Ok(auth_info_of(ctx, token, deadline).await?.unwrap_or_default())
}

/// etcd's `requireAuthInfo`: with auth on, a call needs a user, any user.
pub async fn require_user(ctx: &Ctx, token: Option<&str>, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
    let info = auth_info_of(ctx, token, deadline).await?;
    match info {
        None if ctx.node.auth.is_enabled() => Err(EtcdError::UserEmpty),
        info => Ok(info.unwrap_or_default()),
    }
}

/// etcd's `isAuthenticated` (`IsAdminPermitted`): with auth on, a call
/// needs a user with the root role.
pub async fn require_admin(ctx: &Ctx, token: Option<&str>, deadline: Deadline) -> Result<AuthInfo, EtcdError> {
    let info = auth_info_of(ctx, token, deadline).await?;
    ctx.node.auth.check_admin(info.as_ref())?;
    Ok(info.unwrap_or_default())
}

/// etcd's `doSerialize` after a read: a user's answer read while the auth
/// store moved past its revision is not sent (its rights may have gone).
pub fn still_current(ctx: &Ctx, info: &AuthInfo) -> Result<(), EtcdError> {
    if info.revision != 0 && ctx.node.auth.is_enabled() && info.revision != ctx.node.auth.revision() {
        return Err(EtcdError::AuthOldRevision);
    }
    Ok(())
}

/// [`require_admin`] for a unary call, within its deadline.
pub async fn admin_call<T>(ctx: &Ctx, req: &tonic::Request<T>) -> Result<AuthInfo, EtcdError> {
    if !ctx.node.auth.is_enabled() {
        return Ok(AuthInfo::default());
    }
    let deadline = Deadline::from_request(req, ctx.request_timeout());
    require_admin(ctx, token_of(req.metadata()).as_deref(), deadline).await
}

/// [`require_user`] for a unary call, within its deadline.
pub async fn user_call<T>(ctx: &Ctx, req: &tonic::Request<T>) -> Result<AuthInfo, EtcdError> {
    if !ctx.node.auth.is_enabled() {
        return Ok(AuthInfo::default());
    }
    let deadline = Deadline::from_request(req, ctx.request_timeout());
    require_user(ctx, token_of(req.metadata()).as_deref(), deadline).await
}

/// [`admin_call`] as etcd's Defragment, Snapshot, Hash and HashKV answer
/// it: their auth check's error leaves without etcd's gRPC translation,
/// so the client gets code Unknown and the auth package's own text
/// ("auth: permission denied"), as etcd 3.4 and 3.5 send.
pub async fn admin_call_untranslated<T>(ctx: &Ctx, req: &tonic::Request<T>) -> Result<AuthInfo, tonic::Status> {
    admin_call(ctx, req).await.map_err(|e| match untranslated(&e) {
        Some(text) => tonic::Status::unknown(text),
        None => e.into(),
    })
}

/// The auth package's text of an error, where etcd's code can send it.
fn untranslated(e: &EtcdError) -> Option<&'static str> {
    Some(match e {
        EtcdError::UserEmpty => "auth: user name is empty",
        EtcdError::UserNotFound => "auth: user not found",
        EtcdError::PermissionDenied => "auth: permission denied",
        EtcdError::InvalidAuthToken => "auth: invalid auth token",
        EtcdError::AuthOldRevision => "auth: revision in header is old",
        _ => return None,
    })
}

/// A watch refusal's cancel reason: etcd puts the Go text of its gRPC
/// error there, code and all.
pub fn watch_cancel_reason(e: &EtcdError) -> String {
    let (code, e) = match e {
        EtcdError::InvalidAuthToken => ("Unauthenticated", e),
        EtcdError::AuthOldRevision | EtcdError::UserEmpty => ("InvalidArgument", e),
        _ => ("PermissionDenied", &EtcdError::PermissionDenied),
    };
    format!("rpc error: code = {code} desc = {e}")
}
