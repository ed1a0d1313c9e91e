//! Request checks done by the gRPC layer before a request is proposed, with
//! etcd's rules and errors (etcd `v3rpc/key.go`): empty keys, sort options,
//! put flags, txn size, and put/delete overlaps inside one txn.

use std::cmp::Ordering;

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Everything etcd's Txn handler checks: sizes and fields recursively, then
/// overlapping writes in each branch.
pub fn check_txn_full(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn(r, max_txn_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn(r: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(r)) => check_txn(r, max_txn_ops),
        // etcd answers an empty op with "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A key interval `[begin, end)` where an empty `end` means "to infinity",
/// compared the way etcd's `adt.StringAffineComparable` does.
#[derive(Clone, Debug)]
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

fn affine_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

impl Interval {
    fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval { begin: key.to_vec(), end }
    }

    fn intersects(&self, other: &Interval) -> bool {
        affine_cmp(&self.begin, &other.end) == Ordering::Less && affine_cmp(&other.begin, &self.end) == Ordering::Less
    }
}

type PutSet = std::collections::HashSet<Vec<u8>>;

/// Rejects a branch where two puts name the same key or a put falls inside a
/// delete range, looking into nested txns (whose then/else may share keys,
/// being exclusive).
fn check_intervals(reqs: &[RequestOp]) -> Result<(PutSet, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(if d.range_end.is_empty() {
                Interval::point(&d.key)
            } else {
                Interval { begin: d.key.clone(), end: d.range_end.clone() }
            }),
            _ => None,
        })
        .collect();
    let hits = |dels: &[Interval], k: &[u8]| {
        let p = Interval::point(k);
        dels.iter().any(|d| d.intersects(&p))
    };

    let mut puts = PutSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    #[test]
    fn empty_keys_and_flags() {
        assert_eq!(check_range(&RangeRequest::default()), Err(EtcdError::EmptyKey));
        let bad_sort = RangeRequest { key: b"a".to_vec(), sort_order: 7, ..Default::default() };
        assert_eq!(check_range(&bad_sort), Err(EtcdError::InvalidSortOption));
        let p = PutRequest { key: b"a".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(EtcdError::ValueProvided));
        let p = PutRequest { key: b"a".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(EtcdError::LeaseProvided));
        assert_eq!(check_delete(&DeleteRangeRequest::default()), Err(EtcdError::EmptyKey));
    }

    #[test]
    fn too_many_ops_and_empty_compare_key() {
        let t = txn((0..129).map(|i| put(&format!("k{i}"))).collect(), vec![]);
        assert_eq!(check_txn_full(&t, 128), Err(EtcdError::TooManyOps));
        let t = txn((0..128).map(|i| put(&format!("k{i}"))).collect(), vec![]);
        assert_eq!(check_txn_full(&t, 128), Ok(()));
        let mut t = txn(vec![], vec![]);
        t.compare.push(Compare::default());
        assert_eq!(check_txn_full(&t, 128), Err(EtcdError::EmptyKey));
        let t = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(check_txn_full(&t, 128), Err(EtcdError::KeyNotFound));
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(check_txn_full(&txn(vec![put("a"), put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn_full(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        assert_eq!(check_txn_full(&txn(vec![del("a", "c"), put("b")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn_full(&txn(vec![del("a", "c"), put("c")], vec![]), 128), Ok(()));
        assert_eq!(check_txn_full(&txn(vec![del("a", ""), put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
        // etcd quirk: a from-key delete ("\0" end) does not conflict with puts.
        assert_eq!(check_txn_full(&txn(vec![del("a", "\0"), put("b")], vec![]), 128), Ok(()));
        // nested: then/else may share a key, but not with the outer level.
        let nested = RequestOp { request: Some(Request::RequestTxn(txn(vec![put("x")], vec![put("x")]))) };
        assert_eq!(check_txn_full(&txn(vec![nested.clone()], vec![]), 128), Ok(()));
        assert_eq!(check_txn_full(&txn(vec![nested, put("x")], vec![]), 128), Err(EtcdError::DuplicateKey));
    }
}
