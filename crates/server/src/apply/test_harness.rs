//! What the apply tests share: an [`Applier`] over a fresh MVCC store on the
//! memory engine, fed requests as consecutive raft entries, on an engine
//! whose reads or writes a test can make fail; and terse builders for the
//! requests and the key-values they expect.
//!
//! The store runs without its background compactor, so the engine holds
//! exactly what apply wrote (two harnesses fed the same entries have equal
//! dumps) until a test calls `finish_compaction`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use api::pb::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, response_op, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    TxnRequest, TxnResponse,
};
use api::pb::metastorepb::internal_request::Request as Entry;
use api::pb::mvccpb::KeyValue;
use api::EtcdError;
use storage::{AppliedIndex, CompactionConfig, Engine, EngineError, MemoryEngine, MvccStore, Table, WriteBatch};

use super::alarms::Alarms;
use super::lessor::Lessor;
use super::members::Membership;
use super::range::{execute_range, PinnedView};
use super::{Applier, ApplyResponse, ApplyResult};

/// The term every entry is applied at.
pub const TERM: u64 = 1;

/// A memory engine whose reads (`get`) or writes can be made to fail, as a
/// failing disk would.
#[derive(Default)]
pub struct FaultyEngine {
    inner: MemoryEngine,
    pub fail_get: AtomicBool,
    pub fail_write: AtomicBool,
}

fn injected() -> EngineError {
    EngineError::Io(std::io::Error::other("injected failure"))
}

impl Engine for FaultyEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if self.fail_get.load(SeqCst) {
            return Err(injected());
        }
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        self.inner.scan(table, start, end, visit)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        if self.fail_write.load(SeqCst) {
            return Err(injected());
        }
        self.inner.write(batch)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn kind(&self) -> &'static str {
        "faulty"
    }

    fn dump(&self, out: &mut dyn std::io::Write) -> Result<(), EngineError> {
        self.inner.dump(out)
    }

    fn restore(&self, input: &mut dyn std::io::Read) -> Result<(), EngineError> {
        self.inner.restore(input)
    }
}

/// An applier over its own store, applying entries at raft indexes 1, 2, ...
pub struct Harness {
    pub engine: Arc<FaultyEngine>,
    pub applier: Applier,
    /// The raft index the next entry is applied at.
    next: Cell<u64>,
}

/// The lessor's minimum TTL in the tests, in seconds.
pub const MIN_TTL: i64 = 1;

impl Harness {
    pub fn new() -> Harness {
        Harness::open(Arc::new(FaultyEngine::default()), 1)
    }

    /// An applier over what `engine` holds, as a member builds one when it
    /// starts (store reopened, leases, members and alarms reloaded).
    fn open(engine: Arc<FaultyEngine>, next: u64) -> Harness {
        let config = CompactionConfig { background: false, ..Default::default() };
        let mvcc = Arc::new(MvccStore::open_with(engine.clone(), config).expect("open the store"));
        let lessor = Arc::new(Lessor::new(MIN_TTL));
        lessor.recover(&mvcc).expect("recover leases");
        let members = Arc::new(Membership::default());
        members.load(engine.as_ref()).expect("load members");
        let alarms = Arc::new(Alarms::default());
        alarms.load(engine.as_ref()).expect("load alarms");
        let auth = Arc::new(crate::apply::auth::AuthStore::new(std::time::Duration::from_secs(300), None));
        auth.load(engine.as_ref()).expect("load auth");
        Harness { engine, applier: Applier::new(mvcc, lessor, members, alarms, auth), next: Cell::new(next) }
    }

    /// This member restarted: a new applier over the same engine, resuming
    /// after the applied index the engine recorded (as raft would replay).
    pub fn restart(self) -> Harness {
        let engine = self.engine.clone();
        drop(self);
        let h = Harness::open(engine, 0);
        h.next.set(h.applied().index + 1);
        h
    }

    /// Applies `req` as the next raft entry. As in the apply thread, an
    /// entry that failed with `EtcdError::Internal` was not applied, so the
    /// next call applies at the same index again.
    pub fn apply(&self, req: Entry) -> ApplyResult {
        self.apply_as(req, None)
    }

    /// Applies `req` as sent by `sender` (`None`: the member's own entry).
    pub fn apply_as(&self, req: Entry, sender: Option<&crate::apply::auth::AuthInfo>) -> ApplyResult {
        let applied = AppliedIndex { index: self.next.get(), term: TERM };
        let result = self.applier.apply(req, sender, applied);
        if !matches!(result, Err(EtcdError::Internal(_))) {
            self.next.set(applied.index + 1);
        }
        result
    }

    /// The index of the last entry this harness applied.
    pub fn last_index(&self) -> u64 {
        self.next.get() - 1
    }

    pub fn mvcc(&self) -> &MvccStore {
        self.applier.mvcc()
    }

    pub fn lessor(&self) -> &Lessor {
        self.applier.lessor()
    }

    pub fn rev(&self) -> i64 {
        self.mvcc().current_revision()
    }

    pub fn applied(&self) -> AppliedIndex {
        self.mvcc().applied_index()
    }

    /// The applied index as stored in the engine (what a restart reads),
    /// read past any injected fault.
    pub fn stored_applied(&self) -> AppliedIndex {
        storage::mvcc::meta::load_applied(&self.engine.inner).expect("read the applied index")
    }

    /// The engine's whole contents in the dump format.
    pub fn dump(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.engine.dump(&mut out).expect("dump");
        out
    }

    pub fn put(&self, key: &str, value: &str) -> PutResponse {
        self.put_req(put(key, value)).unwrap_or_else(|e| panic!("put {key}: {e}"))
    }

    pub fn put_req(&self, p: PutRequest) -> Result<PutResponse, EtcdError> {
        match self.apply(Entry::Put(p))? {
            ApplyResponse::Put(r) => Ok(r),
            other => panic!("a put answered {other:?}"),
        }
    }

    pub fn delete(&self, key: &str, range_end: &str) -> DeleteRangeResponse {
        let d = DeleteRangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() };
        self.delete_req(d).unwrap_or_else(|e| panic!("delete {key}: {e}"))
    }

    pub fn delete_req(&self, d: DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        match self.apply(Entry::DeleteRange(d))? {
            ApplyResponse::DeleteRange(r) => Ok(r),
            other => panic!("a delete answered {other:?}"),
        }
    }

    pub fn txn(&self, t: TxnRequest) -> Result<TxnResponse, EtcdError> {
        match self.apply(Entry::Txn(t))? {
            ApplyResponse::Txn(r) => Ok(r),
            other => panic!("a txn answered {other:?}"),
        }
    }

    pub fn compact(&self, revision: i64) -> Result<CompactionResponse, EtcdError> {
        match self.apply(Entry::Compaction(CompactionRequest { revision, physical: false }))? {
            ApplyResponse::Compaction(r) => Ok(r),
            other => panic!("a compaction answered {other:?}"),
        }
    }

    /// Grants lease `id`; returns the TTL granted.
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64, EtcdError> {
        match self.apply(Entry::LeaseGrant(LeaseGrantRequest { ttl, id }))? {
            ApplyResponse::LeaseGrant(r) => {
                assert_eq!(r.id, id, "the granted id");
                assert_eq!(r.header.expect("header").revision, self.rev(), "a grant answers the current revision");
                Ok(r.ttl)
            }
            other => panic!("a lease grant answered {other:?}"),
        }
    }

    /// Revokes lease `id`; returns the header revision.
    pub fn revoke(&self, id: i64) -> Result<i64, EtcdError> {
        match self.apply(Entry::LeaseRevoke(LeaseRevokeRequest { id }))? {
            ApplyResponse::LeaseRevoke(r) => Ok(r.header.expect("header").revision),
            other => panic!("a lease revoke answered {other:?}"),
        }
    }

    /// A plain Range as the KV service serves it (outside raft, on the
    /// store pinned at its current revision).
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        execute_range(&PinnedView::new(self.mvcc()), r)
    }

    /// The key-values of a Range over `[key, range_end)` (etcd's convention).
    pub fn get(&self, key: &str, range_end: &str) -> Vec<KeyValue> {
        self.range(&range(key, range_end)).unwrap_or_else(|e| panic!("range {key}: {e}")).kvs
    }

    /// Every live key-value.
    pub fn all(&self) -> Vec<KeyValue> {
        self.get("\0", "\0")
    }
}

// ------------------------------------------------------------ builders

/// The key-value etcd would answer, with no lease.
pub fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64, version: i64) -> KeyValue {
    KeyValue { key: key.into(), value: value.into(), create_revision, mod_revision, version, lease: 0 }
}

pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

pub fn values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()).collect()
}

pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

/// A RangeRequest over `[key, range_end)`; empty `range_end` = one key.
pub fn range(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }
}

pub fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { compare, success, failure }
}

/// Ops of a txn branch.
pub mod op {
    use super::*;

    fn op(r: request_op::Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    pub fn put(key: &str, value: &str) -> RequestOp {
        op(request_op::Request::RequestPut(super::put(key, value)))
    }

    pub fn put_req(p: PutRequest) -> RequestOp {
        op(request_op::Request::RequestPut(p))
    }

    pub fn get(key: &str) -> RequestOp {
        op(request_op::Request::RequestRange(super::range(key, "")))
    }

    pub fn range(r: RangeRequest) -> RequestOp {
        op(request_op::Request::RequestRange(r))
    }

    pub fn del(key: &str, range_end: &str) -> RequestOp {
        op(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        }))
    }

    pub fn del_prev(key: &str, range_end: &str) -> RequestOp {
        op(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: true,
        }))
    }

    pub fn txn(t: TxnRequest) -> RequestOp {
        op(request_op::Request::RequestTxn(t))
    }
}

/// A compare of `target` on `key` with `result`; `value` goes in the union
/// field of that target.
pub fn cmp(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(union),
        range_end: vec![],
    }
}

pub fn cmp_value(key: &str, result: CompareResult, value: &str) -> Compare {
    cmp(key, CompareTarget::Value, result, TargetUnion::Value(value.into()))
}

pub fn cmp_version(key: &str, result: CompareResult, version: i64) -> Compare {
    cmp(key, CompareTarget::Version, result, TargetUnion::Version(version))
}

pub fn cmp_create(key: &str, result: CompareResult, rev: i64) -> Compare {
    cmp(key, CompareTarget::Create, result, TargetUnion::CreateRevision(rev))
}

pub fn cmp_mod(key: &str, result: CompareResult, rev: i64) -> Compare {
    cmp(key, CompareTarget::Mod, result, TargetUnion::ModRevision(rev))
}

pub fn cmp_lease(key: &str, result: CompareResult, lease: i64) -> Compare {
    cmp(key, CompareTarget::Lease, result, TargetUnion::Lease(lease))
}

/// `c` over `[c.key, range_end)` instead of its one key.
pub fn ranged(mut c: Compare, range_end: &str) -> Compare {
    c.range_end = range_end.into();
    c
}

// ------------------------------------------------------------ responses

pub fn range_of(r: &ResponseOp) -> &RangeResponse {
    match &r.response {
        Some(response_op::Response::ResponseRange(g)) => g,
        other => panic!("expected a range response, got {other:?}"),
    }
}

pub fn put_of(r: &ResponseOp) -> &PutResponse {
    match &r.response {
        Some(response_op::Response::ResponsePut(p)) => p,
        other => panic!("expected a put response, got {other:?}"),
    }
}

pub fn del_of(r: &ResponseOp) -> &DeleteRangeResponse {
    match &r.response {
        Some(response_op::Response::ResponseDeleteRange(d)) => d,
        other => panic!("expected a delete response, got {other:?}"),
    }
}

pub fn txn_of(r: &ResponseOp) -> &TxnResponse {
    match &r.response {
        Some(response_op::Response::ResponseTxn(t)) => t,
        other => panic!("expected a txn response, got {other:?}"),
    }
}

/// The revision in a response header.
pub fn rev_of(h: &Option<api::pb::etcdserverpb::ResponseHeader>) -> i64 {
    h.as_ref().expect("a response header").revision
}
