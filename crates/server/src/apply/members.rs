//! Cluster membership: the members (ID, name, URLs, learner flag), the IDs
//! removed for good, and the cluster ID. Replicated state, changed only in
//! apply and stored in `Table::Members` in the same batch as the applied
//! index; readers (services, the peer transport) take a cheap copy.
//!
//! Keys in `Table::Members`: `storage::schema::MembersKey` (a member's
//! `MemberRecord`, an ID removed for good, the cluster ID).

use std::collections::{BTreeMap, BTreeSet};

use api::pb::etcdserverpb::Member;
use api::pb::metastorepb::MemberRecord;
use api::EtcdError;
use parking_lot::RwLock;
use prost::Message;
use storage::schema::MembersKey;
use storage::{Engine, Table, WriteBatch};

/// etcd's default `--max-learners`.
pub const MAX_LEARNERS: usize = 1;

#[derive(Default, Clone)]
struct State {
    cluster_id: u64,
    members: BTreeMap<u64, MemberRecord>,
    removed: BTreeSet<u64>,
}

#[derive(Default)]
pub struct Membership {
    state: RwLock<State>,
    /// Bumped on every change, so the peer transport knows when to re-read.
    version: std::sync::atomic::AtomicU64,
}

pub fn to_pb(m: &MemberRecord) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

impl Membership {
    /// Reads membership from the engine (after open or snapshot install).
    pub fn load(&self, engine: &dyn Engine) -> Result<(), EtcdError> {
        let mut st = State::default();
        let mut bad = None;
        engine
            .scan(Table::Members, &[], None, &mut |k, v| {
                match MembersKey::decode(k) {
                    Some(MembersKey::ClusterId) => match <[u8; 8]>::try_from(v) {
                        Ok(b) => st.cluster_id = u64::from_be_bytes(b),
                        Err(_) => bad = Some("cluster id record".to_string()),
                    },
                    Some(MembersKey::Member(id)) => match MemberRecord::decode(v) {
                        Ok(m) => {
                            st.members.insert(id, m);
                        }
                        Err(e) => bad = Some(format!("member record {id:x}: {e}")),
                    },
                    Some(MembersKey::Removed(id)) => {
                        st.removed.insert(id);
                    }
                    None => bad = Some(format!("unknown members key {k:?}")),
                }
                true
            })
            .map_err(crate::errors::from_engine)?;
        if let Some(b) = bad {
            return Err(EtcdError::Internal(format!("corrupt membership: {b}")));
        }
        *self.state.write() = st;
        self.changed();
        Ok(())
    }

    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn cluster_id(&self) -> u64 {
        self.state.read().cluster_id
    }

    pub fn list(&self) -> Vec<MemberRecord> {
        self.state.read().members.values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<MemberRecord> {
        self.state.read().members.get(&id).cloned()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.state.read().removed.contains(&id)
    }

    pub fn is_learner(&self, id: u64) -> bool {
        self.get(id).is_some_and(|m| m.is_learner)
    }

    /// The first start of a new cluster: every member writes the same records.
    pub fn bootstrap(&self, cluster_id: u64, members: Vec<MemberRecord>, batch: &mut WriteBatch) {
        let mut st = self.state.write();
        st.cluster_id = cluster_id;
        batch.put(Table::Members, MembersKey::ClusterId.encode(), cluster_id.to_be_bytes().to_vec());
        for m in members {
            batch.put(Table::Members, MembersKey::Member(m.id).encode(), m.encode_to_vec());
            st.members.insert(m.id, m);
        }
        drop(st);
        self.changed();
    }

    /// etcd's `ValidateConfigurationChange` for adding a member.
    pub fn check_add(&self, m: &MemberRecord) -> Result<(), EtcdError> {
        let st = self.state.read();
        if st.removed.contains(&m.id) || st.members.contains_key(&m.id) {
            return Err(EtcdError::MemberExist);
        }
        let taken = st.members.values().any(|o| o.peer_urls.iter().any(|u| m.peer_urls.contains(u)));
        if taken {
            return Err(EtcdError::PeerUrlExist);
        }
        if m.is_learner && st.members.values().filter(|o| o.is_learner).count() >= MAX_LEARNERS {
            return Err(EtcdError::TooManyLearners);
        }
        Ok(())
    }

    pub fn check_remove(&self, id: u64) -> Result<(), EtcdError> {
        let st = self.state.read();
        if st.removed.contains(&id) {
            return Err(EtcdError::MemberNotFound);
        }
        if !st.members.contains_key(&id) {
            return Err(EtcdError::MemberNotFound);
        }
        Ok(())
    }

    pub fn check_promote(&self, id: u64) -> Result<(), EtcdError> {
        match self.state.read().members.get(&id) {
            None => Err(EtcdError::MemberNotFound),
            Some(m) if !m.is_learner => Err(EtcdError::MemberNotLearner),
            Some(_) => Ok(()),
        }
    }

    pub fn add(&self, m: MemberRecord, batch: &mut WriteBatch) {
        batch.put(Table::Members, MembersKey::Member(m.id).encode(), m.encode_to_vec());
        self.state.write().members.insert(m.id, m);
        self.changed();
    }

    pub fn remove(&self, id: u64, batch: &mut WriteBatch) {
        let mut st = self.state.write();
        st.members.remove(&id);
        st.removed.insert(id);
        batch.delete(Table::Members, MembersKey::Member(id).encode());
        batch.put(Table::Members, MembersKey::Removed(id).encode(), Vec::new());
        drop(st);
        self.changed();
    }

    /// Applies `f` to a member and records it; false if there is no such member.
    pub fn update(&self, id: u64, batch: &mut WriteBatch, f: impl FnOnce(&mut MemberRecord)) -> bool {
        let mut st = self.state.write();
        let Some(m) = st.members.get_mut(&id) else {
            return false;
        };
        f(m);
        batch.put(Table::Members, MembersKey::Member(id).encode(), m.encode_to_vec());
        drop(st);
        self.changed();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::MemoryEngine;

    fn rec(id: u64, url: &str, learner: bool) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![url.into()],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn persist_and_validate() {
        let engine = MemoryEngine::new();
        let m = Membership::default();
        let mut b = WriteBatch::default();
        m.bootstrap(77, vec![rec(1, "http://a", false), rec(2, "http://b", false)], &mut b);
        m.add(rec(3, "http://c", true), &mut b);
        m.remove(2, &mut b);
        engine.write(b).unwrap();

        let loaded = Membership::default();
        loaded.load(&engine).unwrap();
        assert_eq!(loaded.cluster_id(), 77);
        assert_eq!(loaded.list().iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 3]);
        assert!(loaded.is_removed(2));
        assert!(loaded.is_learner(3));
        assert_eq!(loaded.check_add(&rec(2, "http://z", false)), Err(EtcdError::MemberExist));
        assert_eq!(loaded.check_add(&rec(9, "http://a", false)), Err(EtcdError::PeerUrlExist));
        assert_eq!(loaded.check_add(&rec(9, "http://y", true)), Err(EtcdError::TooManyLearners));
        assert_eq!(loaded.check_add(&rec(9, "http://y", false)), Ok(()));
        assert_eq!(loaded.check_promote(1), Err(EtcdError::MemberNotLearner));
        assert_eq!(loaded.check_promote(3), Ok(()));
        assert_eq!(loaded.check_remove(2), Err(EtcdError::MemberNotFound));
    }
}
