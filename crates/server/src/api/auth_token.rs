//! From a request's token to who sent it (etcd's `AuthInfoFromCtx`): the
//! one function the Auth service uses today and the permission checks on
//! the other services will use next.
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

/// The token a request carries, if any.
pub fn token_of(md: &MetadataMap) -> Option<String> {
    TOKEN_KEYS.iter().find_map(|k| md.get(*k)).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The sender of a request, from its `token` metadata.
pub async fn auth_info(ctx: &Ctx, md: &MetadataMap, deadline: Deadline) -> Result<Option<AuthInfo>, EtcdError> {
    let auth = &ctx.node.auth;
    if !auth.is_enabled() {
        return Ok(None);
    }
    let Some(token) = token_of(md) else {
        return Ok(None);
    };
    if let Some(index) = auth.token_index(&token)? {
        let mut applied = ctx.node.state.subscribe_applied();
        match deadline.run(applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(EtcdError::Stopped),
            Err(_) => return Err(EtcdError::InvalidAuthToken),
        };
    }
    auth.auth_info(&token)
}

/// The sender, checked against the auth revision as etcd checks a request
/// at apply: the enforcement layer's entry point.
#[expect(dead_code, reason = "the permission checks on the other services (issue 14, part 2) call it")]
pub async fn checked_auth_info(ctx: &Ctx, md: &MetadataMap, deadline: Deadline) -> Result<Option<AuthInfo>, EtcdError> {
    let info = auth_info(ctx, md, deadline).await?;
    ctx.node.auth.check_revision(info.as_ref())?;
    Ok(info)
}
