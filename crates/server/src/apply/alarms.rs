//! etcd's alarms: replicated (member, alarm type) pairs. A NOSPACE alarm,
//! raised when a member's store would outgrow `--quota-backend-bytes`, makes
//! every member refuse writes that add data until an operator disarms it
//! (`etcdctl alarm disarm`), as etcd's "capped" applier does. A CORRUPT
//! alarm (raised by the corruption check, `crate::maintenance::corrupt`, or a client)
//! makes every member refuse every write, as etcd's "corrupt" applier;
//! reads go on.
//!
//! Invariants: the set changes only when an Alarm entry is applied, in the
//! same engine batch as its applied index (`Table::Meta`, keys
//! `storage::schema::alarm_key`), so snapshots and restarts carry it and
//! every member holds the same set; the in-memory copy is reloaded whenever
//! the engine is replaced by a snapshot.

use std::collections::BTreeSet;

use api::pb::etcdserverpb::{AlarmMember, AlarmType, PutRequest, RequestOp, TxnRequest};
use api::EtcdError;
use parking_lot::RwLock;
use storage::schema::{alarm_key, decode_alarm_key, ALARM_END, ALARM_PREFIX};
use storage::{Engine, Table, WriteBatch};

/// etcd's `DefaultQuotaBytes` (2 GiB): the quota when the flag is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// etcd's per-key overhead in a quota estimate (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// etcd's per-lease overhead in a quota estimate (`leaseOverhead`).
const LEASE_OVERHEAD: u64 = 64;

#[derive(Default)]
pub struct Alarms {
    set: RwLock<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    /// Replaces the in-memory set with the engine's.
    pub fn load(&self, engine: &dyn Engine) -> Result<(), EtcdError> {
        let mut set = BTreeSet::new();
        engine
            .scan(Table::Meta, ALARM_PREFIX, Some(ALARM_END), &mut |k, _| {
                set.extend(decode_alarm_key(k));
                true
            })
            .map_err(crate::errors::from_engine)?;
        *self.set.write() = set;
        Ok(())
    }

    /// Every active alarm, in member order.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.set.read().iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect()
    }

    /// Whether `alarm` is active for `member`.
    pub fn is_active(&self, member: u64, alarm: i32) -> bool {
        self.set.read().contains(&(member, alarm))
    }

    /// Whether a NOSPACE alarm is active on any member.
    pub fn no_space(&self) -> bool {
        self.set.read().iter().any(|&(_, a)| a == AlarmType::Nospace as i32)
    }

    /// Whether a CORRUPT alarm is active on any member.
    pub fn corrupt(&self) -> bool {
        self.set.read().iter().any(|&(_, a)| a == AlarmType::Corrupt as i32)
    }

    /// Adds the write that activates an alarm to `batch`; None when it is
    /// active already (etcd answers such an activation with no alarm).
    pub fn activate(&self, member: u64, alarm: i32, batch: &mut WriteBatch) -> Option<AlarmMember> {
        if self.set.read().contains(&(member, alarm)) {
            return None;
        }
        batch.put(Table::Meta, alarm_key(member, alarm), Vec::new());
        Some(AlarmMember { member_id: member, alarm })
    }

    /// Adds the write that clears an alarm to `batch`; None when it is not
    /// active.
    pub fn deactivate(&self, member: u64, alarm: i32, batch: &mut WriteBatch) -> Option<AlarmMember> {
        if !self.set.read().contains(&(member, alarm)) {
            return None;
        }
        batch.delete(Table::Meta, alarm_key(member, alarm));
        Some(AlarmMember { member_id: member, alarm })
    }

    /// Records in memory what an applied batch changed.
    pub fn set_active(&self, member: u64, alarm: i32, active: bool) {
        let mut set = self.set.write();
        if active {
            set.insert((member, alarm));
        } else {
            set.remove(&(member, alarm));
        }
    }
}

/// Adds the deletion of every stored alarm to `batch` (a new cluster made
/// from a backup).
pub fn clear_all(engine: &dyn Engine, batch: &mut WriteBatch) -> Result<(), EtcdError> {
    engine
        .scan(Table::Meta, ALARM_PREFIX, Some(ALARM_END), &mut |k, _| {
            batch.delete(Table::Meta, k.to_vec());
            true
        })
        .map_err(crate::errors::from_engine)
}

/// etcd's quota cost of a put: what it may add to the store.
pub fn put_cost(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// etcd's quota cost of a txn: the puts of its costlier branch (nested txns
/// count nothing, as in etcd).
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .filter_map(|op| match &op.request {
                Some(api::pb::etcdserverpb::request_op::Request::RequestPut(p)) => Some(put_cost(p)),
                _ => None,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// etcd's quota cost of a lease grant.
pub fn lease_cost() -> u64 {
    LEASE_OVERHEAD
}

/// The text etcd prints for an alarm (`AlarmMember.String()`), as in the
/// Status errors and `etcdctl endpoint status`.
pub fn describe(a: &AlarmMember) -> String {
    let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN".to_string(), |t| t.as_str_name().to_string());
    format!("memberID:{} alarm:{} ", a.member_id, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::MemoryEngine;

    #[test]
    fn alarms_persist_with_their_batch_and_reload() {
        let engine = MemoryEngine::new();
        let alarms = Alarms::default();
        let nospace = AlarmType::Nospace as i32;
        let mut b = WriteBatch::default();
        assert!(alarms.activate(7, nospace, &mut b).is_some());
        engine.write(b).unwrap();
        alarms.set_active(7, nospace, true);
        assert!(alarms.no_space());
        let mut b = WriteBatch::default();
        assert!(alarms.activate(7, nospace, &mut b).is_none(), "already active");
        assert!(alarms.deactivate(8, nospace, &mut b).is_none(), "not active");

        let reloaded = Alarms::default();
        reloaded.load(&engine).unwrap();
        assert_eq!(reloaded.list(), vec![AlarmMember { member_id: 7, alarm: nospace }]);
        let mut b = WriteBatch::default();
        assert!(reloaded.deactivate(7, nospace, &mut b).is_some());
        engine.write(b).unwrap();
        reloaded.load(&engine).unwrap();
        assert!(!reloaded.no_space());
        assert_eq!(describe(&AlarmMember { member_id: 7, alarm: nospace }), "memberID:7 alarm:NOSPACE ");
    }
}
