//! Membership changes on the raft thread: checks that need the leader's view
//! of followers (etcd's strict reconfiguration check, learner readiness),
//! proposing, and applying committed conf change entries to raft, the
//! membership table and the peer transport.

use api::pb::metastorepb::ConfChangeContext;
use api::EtcdError;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry};
use raft::StateRole;
use std::time::{Duration, Instant};
use storage::{AppliedIndex, WriteBatch};

use super::runner::Runner;
use super::{ConfCheck, NodeError};
use crate::apply::ApplyResponse;

/// etcd's `readyPercent`: a learner may be promoted once its log reaches 90%
/// of the leader's.
const LEARNER_READY_PERCENT: f64 = 0.9;
/// etcd's `HealthInterval`: a peer counts toward a healthy quorum for the
/// strict reconfiguration check once it has been connected this long.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl Runner {
    pub(super) fn propose_conf_change(&mut self, id: u64, cc: ConfChange, check: ConfCheck) {
        let result = self.check_conf_change(&cc, check).and_then(|()| {
            if self.raw.raft.has_pending_conf() {
                // raft-rs would silently turn a second pending change into a no-op.
                return Err(EtcdError::Unhealthy);
            }
            self.raw.propose_conf_change(vec![], cc).map_err(|e| self.proposal_error(e))
        });
        if let Err(e) = result {
            self.waiters.complete(id, Err(e));
        }
    }

    fn check_conf_change(&self, cc: &ConfChange, check: ConfCheck) -> Result<(), EtcdError> {
        let leader = self.raw.raft.state == StateRole::Leader;
        let prs = self.raw.raft.prs();
        let voters: Vec<u64> = prs.conf().voters().ids().iter().collect();
        let me = self.state.member_id;
        // As etcd: "started" members have published their name (those of the
        // initial cluster have it from the start); a peer is "connected"
        // while its messages keep arriving (no gap over an election
        // timeout), and counts toward a healthy quorum once connected for
        // HEALTH_INTERVAL.
        let started = |id: &u64| self.members.get(*id).is_some_and(|m| !m.name.is_empty());
        let now = Instant::now();
        let contact =
            |id: &u64| self.heard.get(id).filter(|(_, last)| now.duration_since(*last) <= self.election_timeout);
        let connected = |id: &u64| *id == me || contact(id).is_some();
        let healthy =
            |id: &u64| *id == me || contact(id).is_some_and(|(since, _)| now.duration_since(*since) >= HEALTH_INTERVAL);
        match check {
            ConfCheck::Promote => {
                if !leader {
                    return Err(EtcdError::NotLeader);
                }
                let me = prs.get(self.state.member_id).map_or(0, |p| p.matched);
                let learner = prs.get(cc.node_id).map_or(0, |p| p.matched);
                if (learner as f64) < (me as f64) * LEARNER_READY_PERCENT {
                    return Err(EtcdError::LearnerNotReady);
                }
                Ok(())
            }
            ConfCheck::Unchecked => Ok(()),
            // Only the leader hears from every voter, so only it can check
            // (`service::cluster` sends strictly checked changes there); a
            // follower that gets one lost the leadership meanwhile, and the
            // request is sent on to the new leader.
            ConfCheck::Strict if !leader => Err(EtcdError::NotLeader),
            ConfCheck::Strict => match cc.get_change_type() {
                ConfChangeType::AddNode => {
                    // etcd's IsReadyToAddVotingMember, then isConnectedFullySince.
                    let members = voters.len() + 1;
                    let n_started = voters.iter().filter(|id| started(id)).count();
                    let restoring_one_member = n_started == 1 && members == 2;
                    if !restoring_one_member && n_started < quorum(members) {
                        return Err(EtcdError::MemberNotEnoughStarted);
                    }
                    if !voters.iter().all(healthy) {
                        return Err(EtcdError::Unhealthy);
                    }
                    Ok(())
                }
                ConfChangeType::RemoveNode => {
                    if !voters.contains(&cc.node_id) {
                        return Ok(());
                    }
                    // etcd's IsReadyToRemoveVotingMember, then the active
                    // quorum check of mayRemoveMember.
                    let remaining: Vec<&u64> = voters.iter().filter(|id| **id != cc.node_id).collect();
                    let n_started = remaining.iter().filter(|id| started(id)).count();
                    if n_started < quorum(remaining.len()) {
                        return Err(EtcdError::MemberNotEnoughStarted);
                    }
                    if cc.node_id != me && !connected(&cc.node_id) {
                        // A member that is down is not part of the active quorum.
                        return Ok(());
                    }
                    let active = voters.iter().filter(|id| healthy(id)).count();
                    if active.saturating_sub(1) < quorum(voters.len() - 1) {
                        return Err(EtcdError::Unhealthy);
                    }
                    Ok(())
                }
                ConfChangeType::AddLearnerNode => Ok(()),
            },
        }
    }

    /// Applies a committed conf change. Validation runs here, on replicated
    /// state, so every member reaches the same verdict; a refused change
    /// leaves raft's configuration alone.
    pub(super) fn apply_conf_change_entry(&mut self, e: &Entry) -> Result<(), NodeError> {
        let applied = AppliedIndex { index: e.index, term: e.term };
        let cc = ConfChange::parse_from_bytes(&e.data)
            .unwrap_or_else(|err| panic!("committed conf change at index {} undecodable: {err}", e.index));
        let ctx = ConfChangeContext::decode(cc.get_context()).unwrap_or_default();
        let mut member = ctx.member.unwrap_or_default();
        member.id = cc.node_id;
        let promoting = cc.get_change_type() == ConfChangeType::AddNode && self.members.is_learner(cc.node_id);
        let verdict = match cc.get_change_type() {
            ConfChangeType::AddNode if promoting => Ok(()),
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                member.is_learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                self.members.check_add(&member)
            }
            ConfChangeType::RemoveNode => self.members.check_remove(cc.node_id),
        };
        if let Err(err) = verdict {
            self.mark_applied(applied)?;
            if ctx.request_id != 0 {
                self.waiters.complete(ctx.request_id, Err(err));
            }
            return Ok(());
        }
        let cs = self.raw.apply_conf_change(&cc)?;
        // Durable before the engine records this entry as applied: a restart
        // starts raft with the newest configuration, whether the engine
        // resumes past this entry (RocksDB) or replays it (memory; until
        // then raft must not, say, campaign as the lone voter it once was).
        self.log.persist_conf_state(e.index, &cs)?;
        let mut batch = WriteBatch::default();
        match cc.get_change_type() {
            ConfChangeType::AddNode if promoting => {
                self.members.update(cc.node_id, &mut batch, |m| m.is_learner = false);
            }
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => self.members.add(member, &mut batch),
            ConfChangeType::RemoveNode => self.members.remove(cc.node_id, &mut batch),
        }
        self.mvcc.set_applied_with(applied, batch)?;
        self.refresh_peers_from_members();
        tracing::info!(change = ?cc.get_change_type(), member = %format!("{:x}", cc.node_id), "membership changed");
        if ctx.request_id != 0 {
            self.waiters.complete(ctx.request_id, Ok(ApplyResponse::Members(self.members.list())));
        }
        if cc.get_change_type() == ConfChangeType::RemoveNode && cc.node_id == self.state.member_id {
            tracing::warn!("this member has been removed from the cluster; stopping");
            self.removed = true;
        }
        Ok(())
    }
}
