//! From a request's token to who sent it (etcd's `AuthInfoFromCtx`), and
//! etcd's texts for auth refusals that leave untranslated; the checks
//! themselves run in the request layer (`super::call`), and after a read
//! in [`still_current`] (etcd's `doSerialize`).
//!
//! Invariants: with auth off, or no token sent, there is no auth info
//! (`Ok(None)`); a token sent with auth on is either a live token this
//! member has applied (its raft index, after the `.`, is waited for, so a
//! token issued through another member works here as soon as this member
//! catches up), or `InvalidAuthToken`. The wait is bounded by the request's
//! deadline, as etcd's (a token naming an index never reached fails then).

use api::EtcdError;

use super::Ctx;
use crate::apply::auth::AuthInfo;
use crate::deadline::Deadline;

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

/// etcd's `doSerialize` after a read: a user's answer read while the auth
/// store moved past its revision is not sent (its rights may have gone).
pub fn still_current(ctx: &Ctx, info: &AuthInfo) -> Result<(), EtcdError> {
    if info.revision != 0 && ctx.node.auth.is_enabled() && info.revision != ctx.node.auth.revision() {
        return Err(EtcdError::AuthOldRevision);
    }
    Ok(())
}

/// The auth package's text of an error, where etcd's code can send it.
pub fn untranslated(e: &EtcdError) -> Option<&'static str> {
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
