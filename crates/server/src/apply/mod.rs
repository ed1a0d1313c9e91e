//! Applying committed raft entries to the MVCC store. Apply is deterministic:
//! the same entries in the same order give the same state on every member,
//! with no clock, randomness or I/O besides the engine. Every entry that
//! fails with an etcd error (a compare that fails, a lease not found...)
//! records its raft index as applied: that failure is its outcome on every
//! member. An `EtcdError::Internal` is not an outcome but this member failing
//! to apply (the engine refused a write: disk full, I/O error, corruption):
//! nothing is recorded, and the caller must stop the member (fail-stop, as
//! etcd and TiKV do), so the entry is applied again after a restart rather
//! than skipped here and applied on the other members.

//!
//! The submodules are the state machine's parts: `txn` and `range` execute
//! KV requests against the MVCC store, `lessor` keeps leases, `members` the
//! membership, `alarms` the replicated alarm set, `auth` users, roles
//! and tokens.

pub mod alarms;
pub mod auth;
pub mod lessor;
pub mod members;
pub mod range;
pub mod txn;

#[cfg(test)]
pub(crate) mod test_harness;
#[cfg(test)]
mod tests_apply;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_range;
#[cfg(test)]
mod tests_txn;

use std::sync::Arc;

use api::pb::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmResponse, AlarmType, MemberUpdateRequest};
use api::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use api::pb::metastorepb::{internal_request::Request, MemberAttrRequest, MemberRecord};
use api::EtcdError;
use storage::{AppliedIndex, Event, EventKind, KeyRange, MvccStore, WriteBatch};

use crate::errors::from_mvcc;
use alarms::Alarms;
use auth::AuthStore;
use lessor::Lessor;
use members::Membership;
use range::{ReadView, TxnWrite};

#[derive(Debug, Clone)]
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// The membership after a change.
    Members(Vec<MemberRecord>),
    Alarm(AlarmResponse),
    /// An auth change applied (with the token of an Authenticate).
    Auth(auth::AuthApplied),
}

pub type ApplyResult = Result<ApplyResponse, EtcdError>;

pub struct Applier {
    mvcc: Arc<MvccStore>,
    lessor: Arc<Lessor>,
    members: Arc<Membership>,
    alarms: Arc<Alarms>,
    auth: Arc<AuthStore>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Applier {
    pub fn new(
        mvcc: Arc<MvccStore>,
        lessor: Arc<Lessor>,
        members: Arc<Membership>,
        alarms: Arc<Alarms>,
        auth: Arc<AuthStore>,
    ) -> Self {
        Applier { mvcc, lessor, members, alarms, auth }
    }

    pub fn auth(&self) -> &Arc<AuthStore> {
        &self.auth
    }

    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.alarms
    }

    pub fn mvcc(&self) -> &Arc<MvccStore> {
        &self.mvcc
    }

    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// Applies one request sent by `sender` (`None`: this member's own
    /// entry, applied unchecked as etcd's root-context requests). On an
    /// etcd error nothing of it is written, but the index is still recorded
    /// so a restart does not apply it again; on `EtcdError::Internal` (the
    /// member failed) nothing at all is recorded.
    pub fn apply(&self, req: Request, sender: Option<&auth::AuthInfo>, applied: AppliedIndex) -> ApplyResult {
        // etcd's capped applier: with NOSPACE raised anywhere, nothing that
        // adds data is applied until the alarm is disarmed.
        let capped = self.alarms.no_space()
            && match &req {
                Request::Put(_) | Request::LeaseGrant(_) => true,
                Request::Txn(t) => alarms::txn_cost(t) > 0,
                _ => false,
            };
        // etcd's corrupt applier: with CORRUPT raised anywhere, no write
        // is applied (alarms and membership still are).
        let corrupt = self.alarms.corrupt()
            && matches!(
                req,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            );
        // etcd's authApplierV3, inside the corrupt and capped appliers.
        let refused = if corrupt {
            Some(EtcdError::Corrupt)
        } else if capped {
            Some(EtcdError::NoSpace)
        } else {
            sender.and_then(|info| self.denied(info, &req))
        };
        let result = match req {
            _ if let Some(e) = refused => Err(e),
            Request::Put(p) => self.put(p, applied).map(ApplyResponse::Put),
            Request::DeleteRange(d) => self.delete_range(d, applied).map(ApplyResponse::DeleteRange),
            Request::Txn(t) => self.txn(t, applied).map(ApplyResponse::Txn),
            Request::Compaction(c) => self.compact(c, applied).map(ApplyResponse::Compaction),
            Request::LeaseGrant(g) => self.lease_grant(g, applied).map(ApplyResponse::LeaseGrant),
            Request::LeaseRevoke(r) => self.lease_revoke(r, applied).map(ApplyResponse::LeaseRevoke),
            Request::MemberAttr(a) => self.member_attr(a, applied).map(ApplyResponse::Members),
            Request::MemberUpdate(u) => self.member_update(u, applied).map(ApplyResponse::Members),
            Request::Alarm(a) => self.alarm(a, applied).map(ApplyResponse::Alarm),
            auth @ (Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::Authenticate(_)
            | Request::AuthUserAdd(_)
            | Request::AuthUserDelete(_)
            | Request::AuthUserChangePassword(_)
            | Request::AuthUserGrantRole(_)
            | Request::AuthUserRevokeRole(_)
            | Request::AuthRoleAdd(_)
            | Request::AuthRoleDelete(_)
            | Request::AuthRoleGrantPermission(_)
            | Request::AuthRoleRevokePermission(_)) => self
                .auth
                .apply(auth, applied.index, |batch| self.mvcc.set_applied_with(applied, batch).map_err(from_mvcc))
                .map(ApplyResponse::Auth),
        };
        match &result {
            Err(EtcdError::Internal(_)) => {}
            Err(_) => self.mark_applied(applied)?,
            Ok(_) => {}
        }
        result
    }

    /// Why `sender` may not have `req` applied, if auth is on and it may not.
    fn denied(&self, sender: &auth::AuthInfo, req: &Request) -> Option<EtcdError> {
        if !self.auth.is_enabled() {
            return None;
        }
        auth::check::check_entry(&self.auth, &|id| self.lessor.keys_of(id), sender, req).err()
    }

    /// Records an index whose entry changes no key (empty or config entries).
    pub fn mark_applied(&self, applied: AppliedIndex) -> Result<(), EtcdError> {
        self.mvcc.set_applied(applied).map_err(from_mvcc)
    }

    /// Commits the txn (with `extra` in the same batch) and keeps lease
    /// attachments in step with the keys that changed.
    fn commit(&self, tw: TxnWrite<'_>, applied: AppliedIndex, extra: WriteBatch) -> Result<Vec<Event>, EtcdError> {
        let events = tw.txn.commit_with(applied, extra).map_err(from_mvcc)?;
        for ev in &events {
            let old = ev.prev_kv.as_ref().map_or(0, |kv| kv.lease);
            let new = if ev.kind == EventKind::Put { ev.kv.lease } else { 0 };
            self.lessor.reattach(&ev.kv.key, old, new);
        }
        Ok(events)
    }

    fn put(&self, p: PutRequest, applied: AppliedIndex) -> Result<PutResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        txn::check_put(&tw, &p, &|id| self.lessor.exists(id))?;
        let resp = txn::put(&mut tw, &p)?;
        self.commit(tw, applied, WriteBatch::default())?;
        Ok(resp)
    }

    fn delete_range(&self, d: DeleteRangeRequest, applied: AppliedIndex) -> Result<DeleteRangeResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        let resp = txn::delete_range(&mut tw, &d)?;
        self.commit(tw, applied, WriteBatch::default())?;
        Ok(resp)
    }

    fn txn(&self, t: TxnRequest, applied: AppliedIndex) -> Result<TxnResponse, EtcdError> {
        let mut tw = TxnWrite::new(&self.mvcc);
        let path = txn::compare_to_path(&tw, &t)?;
        txn::check_requests(&tw, &t, &path, &|id| self.lessor.exists(id))?;
        let (resp, _) = txn::execute_txn(&mut tw, &t, &path)?;
        self.commit(tw, applied, WriteBatch::default())?;
        // etcd reads each compare as a range, and counts a txn that did
        // more than one operation in all.
        let mvcc = &crate::metrics::get().mvcc;
        mvcc.range.inc_by(t.compare.len() as u64);
        if t.compare.len() + txn::operations(&resp) > 1 {
            mvcc.txn.inc();
        }
        Ok(resp)
    }

    /// Records and publishes the compaction (reads below it fail from now
    /// on) in O(1); the store's background compactor deletes the old
    /// revisions in small batches off this thread. `physical` is never
    /// waited for here (that would stall the raft loop for the whole
    /// deletion): the member that proposed it waits after apply answered
    /// (`compactor::wait_physical`), as etcd's server does.
    fn compact(&self, c: CompactionRequest, applied: AppliedIndex) -> Result<CompactionResponse, EtcdError> {
        let start = std::time::Instant::now();
        self.mvcc.compact(c.revision, applied).map_err(from_mvcc)?;
        // The pause writers see: the deletion runs later, off the apply.
        crate::metrics::get().mvcc.compaction_pause.observe(start.elapsed().as_secs_f64() * 1000.0);
        let revision = self.mvcc.current_revision();
        Ok(CompactionResponse { header: header(revision) })
    }

    /// etcd's applyV3 Alarm: the response lists the alarm that changed (none
    /// when it already was as asked). GET is answered by the service from
    /// the member's state and never proposed.
    fn alarm(&self, a: AlarmRequest, applied: AppliedIndex) -> Result<AlarmResponse, EtcdError> {
        let mut batch = WriteBatch::default();
        let changed = match AlarmAction::try_from(a.action) {
            // As etcd, activating NONE does nothing.
            Ok(AlarmAction::Activate) if a.alarm != AlarmType::None as i32 => {
                self.alarms.activate(a.member_id, a.alarm, &mut batch).map(|m| (m, true))
            }
            Ok(AlarmAction::Deactivate) => self.alarms.deactivate(a.member_id, a.alarm, &mut batch).map(|m| (m, false)),
            _ => None,
        };
        self.mvcc.set_applied_with(applied, batch).map_err(from_mvcc)?;
        let alarms = match changed {
            Some((m, active)) => {
                self.alarms.set_active(m.member_id, m.alarm, active);
                tracing::warn!(member = %format!("{:x}", m.member_id), alarm = m.alarm, active, "alarm changed");
                vec![m]
            }
            None => Vec::new(),
        };
        Ok(AlarmResponse { header: header(self.mvcc.current_revision()), alarms })
    }

    fn lease_grant(&self, g: LeaseGrantRequest, applied: AppliedIndex) -> Result<LeaseGrantResponse, EtcdError> {
        let mut batch = WriteBatch::default();
        let ttl = self.lessor.grant(g.id, g.ttl, &mut batch)?;
        let lease = &crate::metrics::get().lease;
        lease.granted.inc();
        lease.ttl.observe(ttl as f64);
        self.mvcc.set_applied_with(applied, batch).map_err(from_mvcc)?;
        Ok(LeaseGrantResponse { header: header(self.mvcc.current_revision()), id: g.id, ttl, error: String::new() })
    }

    /// Deletes every attached key under one revision, then the lease.
    fn lease_revoke(&self, r: LeaseRevokeRequest, applied: AppliedIndex) -> Result<LeaseRevokeResponse, EtcdError> {
        let keys = self.lessor.keys_of(r.id).ok_or(EtcdError::LeaseNotFound)?;
        crate::metrics::get().mvcc.delete.inc_by(keys.len() as u64);
        let mut tw = TxnWrite::new(&self.mvcc);
        for key in keys {
            tw.txn.delete_range(&KeyRange::Single(key)).map_err(from_mvcc)?;
        }
        let revision = tw.rev();
        let mut batch = WriteBatch::default();
        self.lessor.remove(r.id, &mut batch);
        self.commit(tw, applied, batch)?;
        crate::metrics::get().lease.revoked.inc();
        Ok(LeaseRevokeResponse { header: header(revision) })
    }

    /// A member publishing its name and client URLs; unknown members (removed
    /// meanwhile) are ignored, as in etcd.
    fn member_attr(&self, a: MemberAttrRequest, applied: AppliedIndex) -> Result<Vec<MemberRecord>, EtcdError> {
        let mut batch = WriteBatch::default();
        self.members.update(a.id, &mut batch, |m| {
            m.name = a.name;
            m.client_urls = a.client_urls;
        });
        self.mvcc.set_applied_with(applied, batch).map_err(from_mvcc)?;
        Ok(self.members.list())
    }

    fn member_update(&self, u: MemberUpdateRequest, applied: AppliedIndex) -> Result<Vec<MemberRecord>, EtcdError> {
        let taken =
            self.members.list().iter().any(|m| m.id != u.id && m.peer_urls.iter().any(|p| u.peer_ur_ls.contains(p)));
        if taken {
            return Err(EtcdError::PeerUrlExist);
        }
        let mut batch = WriteBatch::default();
        if !self.members.update(u.id, &mut batch, |m| m.peer_urls = u.peer_ur_ls) {
            return Err(EtcdError::MemberNotFound);
        }
        self.mvcc.set_applied_with(applied, batch).map_err(from_mvcc)?;
        Ok(self.members.list())
    }
}
