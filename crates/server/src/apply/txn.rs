//! Txn evaluation with etcd's semantics (etcd `txn/txn.go`): every compare,
//! nested ones included, is evaluated against the state before the txn and
//! recorded as a path of booleans; the chosen branches are then checked
//! (revisions, leases, ignore_* flags) before anything is written, so a txn
//! either applies whole under one revision or fails without a trace.

use std::cmp::Ordering;

use api::pb::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response,
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RequestOp, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};
use api::EtcdError;
use storage::{KeyRange, KeyValue, RangeOptions};

use crate::apply::range::{execute_range, to_pb_kv, ReadView, TxnWrite};
use crate::errors::from_mvcc;

/// Answers whether a lease exists; the lessor plugs in here.
pub type LeaseCheck<'a> = &'a dyn Fn(i64) -> bool;

pub fn is_txn_readonly(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// True when every op of a read-only txn asks for a serializable range.
pub fn is_txn_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| matches!(&op.request, Some(Request::RequestRange(r)) if r.serializable))
}

fn branch(t: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &t.success
    } else {
        &t.failure
    }
}

/// Which branch each (nested) txn takes. A compare that cannot read the
/// store is an error, not a false compare: as etcd (which stops when it
/// cannot read a revision), a member whose engine fails must not take a
/// branch the others did not.
pub fn compare_to_path(view: &dyn ReadView, t: &TxnRequest) -> Result<Vec<bool>, EtcdError> {
    let mut ok = true;
    for c in &t.compare {
        if !apply_compare(view, c)? {
            ok = false;
            break;
        }
    }
    let mut path = vec![ok];
    for op in branch(t, ok) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            path.extend(compare_to_path(view, nested)?);
        }
    }
    Ok(path)
}

fn apply_compare(view: &dyn ReadView, c: &Compare) -> Result<bool, EtcdError> {
    let range = KeyRange::from_etcd(&c.key, &c.range_end);
    let rr = view.range(&range, RangeOptions::default()).map_err(from_mvcc)?;
    if rr.kvs.is_empty() {
        // A missing key has no value to compare; etcd fails such compares.
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int_target = |want: Option<i64>, have: i64| have.cmp(&want.unwrap_or(0));
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Create) => int_target(
            match c.target_union {
                Some(TargetUnion::CreateRevision(r)) => Some(r),
                _ => None,
            },
            kv.create_revision,
        ),
        Ok(CompareTarget::Mod) => int_target(
            match c.target_union {
                Some(TargetUnion::ModRevision(r)) => Some(r),
                _ => None,
            },
            kv.mod_revision,
        ),
        Ok(CompareTarget::Version) => int_target(
            match c.target_union {
                Some(TargetUnion::Version(r)) => Some(r),
                _ => None,
            },
            kv.version,
        ),
        Ok(CompareTarget::Lease) => int_target(
            match c.target_union {
                Some(TargetUnion::Lease(r)) => Some(r),
                _ => None,
            },
            kv.lease,
        ),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// etcd `checkRange`: only an explicit revision can be out of bounds.
pub fn check_range_rev(view: &dyn ReadView, r: &RangeRequest) -> Result<(), EtcdError> {
    if r.revision == 0 {
        Ok(())
    } else if r.revision > view.rev() {
        Err(EtcdError::FutureRev)
    } else if r.revision < view.first_rev() {
        Err(EtcdError::Compacted)
    } else {
        Ok(())
    }
}

/// etcd's checks of a Put request (`applierV3backend.Put`): the lease must
/// exist, then ignore_value/ignore_lease need an existing key to take them
/// from.
pub fn check_put(view: &dyn ReadView, p: &PutRequest, lease_exists: LeaseCheck) -> Result<(), EtcdError> {
    check_lease(p, lease_exists)?;
    check_ignore_flags(view, p)
}

fn check_lease(p: &PutRequest, lease_exists: LeaseCheck) -> Result<(), EtcdError> {
    if p.lease != 0 && !lease_exists(p.lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    Ok(())
}

fn check_ignore_flags(view: &dyn ReadView, p: &PutRequest) -> Result<(), EtcdError> {
    if (p.ignore_value || p.ignore_lease) && prev_kv(view, &p.key)?.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    Ok(())
}

/// etcd's checks of a txn's chosen branches, in etcd's order, so the same
/// request fails with the same error: every put first (ignore flags, then
/// lease: `checkRequestPut`), then every range's revision
/// (`checkRequestRange`), each pass in op order through nested txns.
pub fn check_requests(
    view: &dyn ReadView,
    t: &TxnRequest,
    path: &[bool],
    lease_exists: LeaseCheck,
) -> Result<(), EtcdError> {
    each_chosen_op(t, path, &mut |op| match op {
        Request::RequestPut(p) => check_ignore_flags(view, p).and_then(|()| check_lease(p, lease_exists)),
        _ => Ok(()),
    })?;
    each_chosen_op(t, path, &mut |op| match op {
        Request::RequestRange(r) => check_range_rev(view, r),
        _ => Ok(()),
    })?;
    Ok(())
}

/// Calls `f` on every op of the branches `path` chose, depth first, nested
/// txns' ops in place of the txn op; returns how many path entries it
/// consumed.
fn each_chosen_op(
    t: &TxnRequest,
    path: &[bool],
    f: &mut dyn FnMut(&Request) -> Result<(), EtcdError>,
) -> Result<usize, EtcdError> {
    let mut used = 1;
    for op in branch(t, path[0]) {
        match &op.request {
            Some(Request::RequestTxn(nested)) => used += each_chosen_op(nested, &path[used..], f)?,
            Some(other) => f(other)?,
            None => {}
        }
    }
    Ok(used)
}

fn prev_kv(view: &dyn ReadView, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
    let rr = view.range(&KeyRange::Single(key.to_vec()), RangeOptions::default()).map_err(from_mvcc)?;
    Ok(rr.kvs.into_iter().next())
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Writes a put that `check_put` accepted.
pub fn put(tw: &mut TxnWrite<'_>, p: &PutRequest) -> Result<PutResponse, EtcdError> {
    let mvcc = &crate::metrics::get().mvcc;
    mvcc.put.inc();
    mvcc.put_size.add((p.key.len() + p.value.len()) as i64);
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv { prev_kv(tw, &p.key)? } else { None };
    let mut value: &[u8] = &p.value;
    let mut lease = p.lease;
    if p.ignore_value || p.ignore_lease {
        let prev = prev.as_ref().ok_or(EtcdError::KeyNotFound)?;
        if p.ignore_value {
            value = &prev.value;
        }
        if p.ignore_lease {
            lease = prev.lease;
        }
    }
    let value = value.to_vec();
    tw.txn.put(&p.key, &value, lease);
    let revision = tw.txn.begin_revision() + 1;
    Ok(PutResponse { header: header(revision), prev_kv: if p.prev_kv { prev.map(to_pb_kv) } else { None } })
}

pub fn delete_range(tw: &mut TxnWrite<'_>, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
    crate::metrics::get().mvcc.delete.inc();
    let deleted = tw.txn.delete_range(&KeyRange::from_etcd(&d.key, &d.range_end)).map_err(from_mvcc)?;
    Ok(DeleteRangeResponse {
        header: header(tw.rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted.into_iter().map(to_pb_kv).collect() } else { Vec::new() },
    })
}

/// Runs the branches chosen by `path` on a write txn; returns the response
/// (header revision only) and the path entries consumed.
pub fn execute_txn(tw: &mut TxnWrite<'_>, t: &TxnRequest, path: &[bool]) -> Result<(TxnResponse, usize), EtcdError> {
    let succeeded = path[0];
    let mut used = 1;
    let mut responses = Vec::new();
    for op in branch(t, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(execute_range(tw, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(put(tw, p)?),
            Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(delete_range(tw, d)?),
            Some(Request::RequestTxn(nested)) => {
                let (mut resp, n) = execute_txn(tw, nested, &path[used..])?;
                used += n;
                // etcd leaves a nested txn's header empty.
                resp.header = Some(ResponseHeader::default());
                Response::ResponseTxn(resp)
            }
            None => continue,
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok((TxnResponse { header: header(tw.rev()), succeeded, responses }, used))
}

/// Ranges, puts and deletes a txn's response shows it ran, nested txns'
/// included.
pub fn operations(resp: &TxnResponse) -> usize {
    resp.responses
        .iter()
        .map(|r| match &r.response {
            Some(Response::ResponseTxn(nested)) => operations(nested),
            Some(_) => 1,
            None => 0,
        })
        .sum()
}

/// A read-only txn (only ranges) evaluated on a pinned view, outside raft.
pub fn execute_readonly_txn(view: &dyn ReadView, t: &TxnRequest) -> Result<TxnResponse, EtcdError> {
    let path = compare_to_path(view, t)?;
    check_requests(view, t, &path, &|_| true)?;
    Ok(readonly_branch(view, t, &path)?.0)
}

fn readonly_branch(view: &dyn ReadView, t: &TxnRequest, path: &[bool]) -> Result<(TxnResponse, usize), EtcdError> {
    let succeeded = path[0];
    let mut used = 1;
    let mut responses = Vec::new();
    for op in branch(t, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(execute_range(view, r)?),
            Some(Request::RequestTxn(nested)) => {
                let (mut resp, n) = readonly_branch(view, nested, &path[used..])?;
                used += n;
                resp.header = Some(ResponseHeader::default());
                Response::ResponseTxn(resp)
            }
            _ => continue,
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok((TxnResponse { header: header(view.rev()), succeeded, responses }, used))
}
