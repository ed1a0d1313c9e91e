//! Applying committed raft entries to the MVCC store. Apply is deterministic:
//! the same entries in the same order give the same state on every member,
//! with no clock, randomness or I/O besides the engine. Every entry, even one
//! that fails with an etcd error, records its raft index as applied.

use std::sync::Arc;

use api::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};
use api::pb::metastorepb::internal_request::Request;
use api::EtcdError;
use storage::{AppliedIndex, MvccStore};

use crate::errors::from_mvcc;
use crate::range::TxnWrite;
use crate::txn::{self, LeaseCheck};

#[derive(Debug, Clone)]
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
}

pub type ApplyResult = Result<ApplyResponse, EtcdError>;

pub struct Applier {
    mvcc: Arc<MvccStore>,
}

impl Applier {
    pub fn new(mvcc: Arc<MvccStore>) -> Self {
        Applier { mvcc }
    }

    pub fn mvcc(&self) -> &Arc<MvccStore> {
        &self.mvcc
    }

    /// Applies one request. On error nothing of it is written, but the index
    /// is still recorded so a restart does not apply it again.
    pub fn apply(&self, req: Request, applied: AppliedIndex) -> ApplyResult {
        let no_leases: LeaseCheck = &|_| false;
        let result = match req {
            Request::Put(p) => self.put(p, applied, no_leases).map(ApplyResponse::Put),
            Request::DeleteRange(d) => self.delete_range(d, applied).map(ApplyResponse::DeleteRange),
            Request::Txn(t) => self.txn(t, applied, no_leases).map(ApplyResponse::Txn),
            Request::Compaction(c) => self.compact(c, applied).map(ApplyResponse::Compaction),
        };
        if result.is_err() {
            self.mark_applied(applied)?;
        }
        result
    }

    /// Records an index whose entry changes no key (empty or config entries).
    pub fn mark_applied(&self, applied: AppliedIndex) -> Result<(), EtcdError> {
        self.mvcc.set_applied(applied).map_err(from_mvcc)
    }

    fn commit(tw: TxnWrite<'_>, applied: AppliedIndex) -> Result<(), EtcdError> {
        tw.txn.commit(applied).map(|_events| ()).map_err(from_mvcc)
    }

    fn put(&self, p: PutRequest, applied: AppliedIndex, leases: LeaseCheck) -> Result<PutResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        txn::check_put(&tw, &p, leases)?;
        let resp = txn::put(&mut tw, &p)?;
        Self::commit(tw, applied)?;
        Ok(resp)
    }

    fn delete_range(&self, d: DeleteRangeRequest, applied: AppliedIndex) -> Result<DeleteRangeResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        let resp = txn::delete_range(&mut tw, &d)?;
        Self::commit(tw, applied)?;
        Ok(resp)
    }

    fn txn(&self, t: TxnRequest, applied: AppliedIndex, leases: LeaseCheck) -> Result<TxnResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        let path = txn::compare_to_path(&tw, &t);
        txn::check_requests(&tw, &t, &path, leases)?;
        let (resp, _) = txn::execute_txn(&mut tw, &t, &path)?;
        Self::commit(tw, applied)?;
        Ok(resp)
    }

    fn compact(&self, c: CompactionRequest, applied: AppliedIndex) -> Result<CompactionResponse, EtcdError> {
        self.mvcc.compact(c.revision, applied).map_err(from_mvcc)?;
        let revision = self.mvcc.current_revision();
        Ok(CompactionResponse { header: Some(ResponseHeader { revision, ..Default::default() }) })
    }
}
