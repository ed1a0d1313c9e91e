//! etcd's permission rules per request kind (`apply_auth.go`'s
//! `authApplierV3`, `checkTxnAuth`, `checkLeasePuts`): what a sender needs
//! before a request runs. Writes are checked here at apply, on every member
//! alike (the entry carries its sender); reads by the services after their
//! read barrier, with the same functions.
//!
//! Rules (READ and WRITE as `perms` grants them; root passes all):
//! - Put: WRITE on the key; READ on it too with `prev_kv`; and when the put
//!   names a lease that exists, WRITE on every key already attached to it
//!   (a user who could not revoke the lease must not attach to it);
//! - DeleteRange: WRITE on the range, READ on it too with `prev_kv`;
//! - Range: READ on the range;
//! - Txn: READ on every compare's range and every range op, a put or
//!   delete as above, nested txns alike, both branches whatever the
//!   compares give;
//! - LeaseRevoke: WRITE on every key attached to the lease;
//! - auth changes, compaction, alarms and member updates: the root role.
//!
//! Every check is a no-op while auth is off: one atomic load. Checks are
//! made in etcd's order, so the first failure is etcd's error.
//!
//! Example: a user with READWRITE on `[a, m)` may put `b`, but not put `b`
//! with lease 7 once lease 7 holds key `x`.

use api::pb::authpb::permission::Type as PermType;
use api::pb::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use api::pb::metastorepb::internal_request::Request;
use api::EtcdError;

use super::{AuthInfo, AuthStore};

/// The keys attached to a lease, `None` when it does not exist (the
/// lessor's `keys_of`).
pub type LeaseKeys<'a> = &'a dyn Fn(i64) -> Option<Vec<Vec<u8>>>;

/// The check `authApplierV3` makes before applying `req` sent by `info`.
pub fn check_entry(store: &AuthStore, leases: LeaseKeys<'_>, info: &AuthInfo, req: &Request) -> Result<(), EtcdError> {
    if !store.is_enabled() {
        return Ok(());
    }
    match req {
        Request::Put(p) => check_put(store, leases, info, p),
        Request::DeleteRange(d) => check_delete(store, info, d),
        Request::Txn(t) => check_txn(store, leases, info, t),
        Request::LeaseRevoke(r) => check_lease_puts(store, leases, info, r.id),
        // Granting needs only a user, checked by the service as etcd's.
        Request::LeaseGrant(_) | Request::Authenticate(_) | Request::MemberAttr(_) => Ok(()),
        Request::Compaction(_)
        | Request::Alarm(_)
        | Request::MemberUpdate(_)
        | Request::AuthEnable(_)
        | Request::AuthDisable(_)
        | Request::AuthUserAdd(_)
        | Request::AuthUserDelete(_)
        | Request::AuthUserChangePassword(_)
        | Request::AuthUserGrantRole(_)
        | Request::AuthUserRevokeRole(_)
        | Request::AuthRoleAdd(_)
        | Request::AuthRoleDelete(_)
        | Request::AuthRoleGrantPermission(_)
        | Request::AuthRoleRevokePermission(_) => store.check_admin(Some(info)),
    }
}

/// etcd's `IsRangePermitted`.
pub fn check_range(store: &AuthStore, info: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
    store.check_op(info, key, range_end, PermType::Read)
}

/// etcd's `checkPutAuth`.
pub fn check_put(store: &AuthStore, leases: LeaseKeys<'_>, info: &AuthInfo, p: &PutRequest) -> Result<(), EtcdError> {
    store.check_op(info, &p.key, &[], PermType::Write)?;
    check_lease_puts(store, leases, info, p.lease)?;
    if p.prev_kv {
        check_range(store, info, &p.key, &[])?;
    }
    Ok(())
}

/// etcd's `IsDeleteRangePermitted`, with READ for `prev_kv`.
pub fn check_delete(store: &AuthStore, info: &AuthInfo, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    store.check_op(info, &d.key, &d.range_end, PermType::Write)?;
    if d.prev_kv {
        check_range(store, info, &d.key, &d.range_end)?;
    }
    Ok(())
}

/// etcd's `checkTxnPermission`: compares, then the success ops, then the
/// failure ops.
pub fn check_txn(store: &AuthStore, leases: LeaseKeys<'_>, info: &AuthInfo, t: &TxnRequest) -> Result<(), EtcdError> {
    for c in &t.compare {
        check_range(store, info, &c.key, &c.range_end)?;
    }
    check_ops(store, leases, info, &t.success)?;
    check_ops(store, leases, info, &t.failure)
}

fn check_ops(store: &AuthStore, leases: LeaseKeys<'_>, info: &AuthInfo, ops: &[RequestOp]) -> Result<(), EtcdError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(store, info, &r.key, &r.range_end)?,
            Some(request_op::Request::RequestPut(p)) => check_put(store, leases, info, p)?,
            // etcd checks READ before WRITE here (the opposite of a plain
            // DeleteRange): the first error differs when both are missing.
            Some(request_op::Request::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    check_range(store, info, &d.key, &d.range_end)?;
                }
                store.check_op(info, &d.key, &d.range_end, PermType::Write)?;
            }
            Some(request_op::Request::RequestTxn(t)) => check_txn(store, leases, info, t)?,
            None => {}
        }
    }
    Ok(())
}

/// etcd's `checkLeasePuts`: an existing lease's keys must all be writable
/// (root passes at once; a lease that does not exist is left to apply).
pub fn check_lease_puts(store: &AuthStore, leases: LeaseKeys<'_>, info: &AuthInfo, id: i64) -> Result<(), EtcdError> {
    // Root first: no copy of the lease's keys for it.
    if store.check_admin(Some(info)).is_ok() {
        return Ok(());
    }
    let Some(keys) = leases(id) else {
        return Ok(());
    };
    keys.iter().try_for_each(|k| store.check_op(info, k, &[], PermType::Write))
}

/// etcd's `checkLeaseTimeToLive` and `checkLeaseLeases`: READ on every
/// key of the leases (root passes at once).
pub fn check_lease_reads<'k>(
    store: &AuthStore,
    info: &AuthInfo,
    keys: impl IntoIterator<Item = &'k [u8]>,
) -> Result<(), EtcdError> {
    if store.check_admin(Some(info)).is_ok() {
        return Ok(());
    }
    keys.into_iter().try_for_each(|k| check_range(store, info, k, &[]))
}
