//! Range execution with etcd's rules (etcd `txn/range.go`): fetch one extra key
//! to compute `more`, fetch everything when sorting or filtering by revision,
//! filter, sort (stable), truncate, clear values for keys_only.
//!
//! Invariant: the client's numbers (limit, revision, revision filters) go
//! only into comparisons and saturating arithmetic, so every i64 a request
//! can carry answers as etcd does instead of overflowing: in a write Txn
//! this code runs in every member's apply, where a panic stops them all.

use api::pb::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    RangeRequest, RangeResponse, ResponseHeader,
};
use api::pb::mvccpb;
use api::EtcdError;
use storage::{KeyRange, KeyValue, KvSink, MvccError, MvccStore, RangeOptions, RangeResult, RangeTotals, WriteTxn};

use crate::errors::from_mvcc;

/// A consistent view of the store at one revision: the store itself pinned at
/// a revision (read-only txns, plain ranges) or a write txn in progress.
pub trait ReadView {
    fn range(&self, r: &KeyRange, o: RangeOptions) -> Result<RangeResult, MvccError>;
    /// The revision this view reads at.
    fn rev(&self) -> i64;
    /// The compacted revision: requests below it fail. Before any
    /// compaction etcd's `compactMainRev` is -1, not 0, so a txn's range at
    /// revision -1 reads the current revision there (see [`first_rev_of`]).
    fn first_rev(&self) -> i64;
}

/// The store's compacted revision as etcd's `checkRange` compares with it:
/// -1 when never compacted (the store reports 0 then).
fn first_rev_of(store: &MvccStore) -> i64 {
    match store.compact_revision() {
        0 => -1,
        rev => rev,
    }
}

/// The store read at a fixed revision, so several ranges (a read-only txn)
/// see the same data while writes go on.
pub struct PinnedView<'a> {
    store: &'a MvccStore,
    rev: i64,
}

impl<'a> PinnedView<'a> {
    pub fn new(store: &'a MvccStore) -> Self {
        PinnedView { store, rev: store.current_revision() }
    }
}

impl PinnedView<'_> {
    /// [`ReadView::range`], handing the key-values to `sink` as they are read.
    pub fn range_into(
        &self,
        r: &KeyRange,
        mut o: RangeOptions,
        sink: &mut dyn KvSink,
    ) -> Result<RangeTotals, MvccError> {
        if o.rev <= 0 {
            o.rev = self.rev;
        } else if o.rev > self.rev {
            return Err(MvccError::FutureRevision);
        }
        let totals = self.store.range_into(r, o, sink)?;
        Ok(RangeTotals { rev: self.rev, ..totals })
    }
}

impl ReadView for PinnedView<'_> {
    fn range(&self, r: &KeyRange, o: RangeOptions) -> Result<RangeResult, MvccError> {
        let mut kvs = Vec::new();
        let totals = self.range_into(r, o, &mut kvs)?;
        Ok(RangeResult { kvs, count: totals.count, rev: totals.rev })
    }
    fn rev(&self) -> i64 {
        self.rev
    }
    fn first_rev(&self) -> i64 {
        first_rev_of(self.store)
    }
}

/// A write txn plus the compacted revision at its start (apply is the only
/// writer and compaction runs in apply, so it cannot move during the txn).
pub struct TxnWrite<'a> {
    pub txn: WriteTxn<'a>,
    first_rev: i64,
}

impl<'a> TxnWrite<'a> {
    pub fn new(store: &'a MvccStore) -> Self {
        TxnWrite { first_rev: first_rev_of(store), txn: store.write_txn() }
    }
}

impl ReadView for TxnWrite<'_> {
    fn range(&self, r: &KeyRange, o: RangeOptions) -> Result<RangeResult, MvccError> {
        let mut res = self.txn.range(r, o)?;
        res.rev = self.rev();
        Ok(res)
    }
    /// etcd: a write txn reads at begin+1 once it has changes, so its own
    /// earlier writes are visible to its later ranges.
    fn rev(&self) -> i64 {
        self.txn.begin_revision() + i64::from(!self.txn.changes().is_empty())
    }
    fn first_rev(&self) -> i64 {
        self.first_rev
    }
}

pub fn to_pb_kv(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// The inverse of [`to_pb_kv`] (a key-value from etcd's own store).
pub fn from_pb_kv(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub(crate) fn has_revision_filters(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0
}

/// etcd fetches `limit + 1` keys to learn `more`, and everything when the
/// result is re-sorted or filtered afterwards. The limit is the client's:
/// at `i64::MAX` the extra key saturates (etcd's Go addition wraps to a
/// negative limit, i.e. "everything": the same answer), never overflows,
/// since a panic here would be one in every member's apply inside a Txn.
pub(crate) fn range_limit(r: &RangeRequest) -> i64 {
    if r.sort_order != SortOrder::None as i32 || has_revision_filters(r) {
        return 0;
    }
    if r.limit > 0 {
        r.limit.saturating_add(1)
    } else {
        r.limit
    }
}

pub fn execute_range(view: &dyn ReadView, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    crate::metrics::get().mvcc.range.inc();
    let range = KeyRange::from_etcd(&r.key, &r.range_end);
    let opts = RangeOptions { limit: range_limit(r), rev: r.revision, count_only: r.count_only };
    let rr = view.range(&range, opts).map_err(from_mvcc)?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    sort_kvs(&mut kvs, r);
    let mut more = false;
    // A positive i64 fits a usize on the 64-bit targets this builds for;
    // were it not to, no result could be longer than it anyway.
    let limit = usize::try_from(r.limit).unwrap_or(usize::MAX);
    if r.limit > 0 && kvs.len() > limit {
        kvs.truncate(limit);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|mut kv| {
            if r.keys_only {
                kv.value = Vec::new();
            }
            to_pb_kv(kv)
        })
        .collect();
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: rr.rev, ..Default::default() }),
        kvs,
        more,
        count: rr.count,
    })
}

/// Results come from the store in ascending key order; etcd sorts again only
/// when asked for another order or target (ascending by default then).
fn sort_kvs(kvs: &mut [KeyValue], r: &RangeRequest) {
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order == SortOrder::None {
        return;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ => kvs.sort_by(cmp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_limit_saturates_at_the_extremes() {
        let req = |limit| RangeRequest { limit, ..Default::default() };
        assert_eq!(range_limit(&req(i64::MAX)), i64::MAX);
        assert_eq!(range_limit(&req(i64::MAX - 1)), i64::MAX);
        assert_eq!(range_limit(&req(3)), 4);
        assert_eq!(range_limit(&req(0)), 0);
        assert_eq!(range_limit(&req(i64::MIN)), i64::MIN, "a negative limit is no limit downstream");
        let sorted = RangeRequest { limit: i64::MAX, sort_order: SortOrder::Descend as i32, ..Default::default() };
        assert_eq!(range_limit(&sorted), 0, "sorted: everything is fetched");
    }
}
