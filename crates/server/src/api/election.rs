//! etcd's Election service (v3election), as etcd's `concurrency.Election`:
//! candidates for election N put `N/<lease hex>` = their value; the key
//! created first is the leader. Campaign waits (as long as the client lets
//! it) until every older candidate is gone; Proclaim and Resign act only
//! while the caller's key still has the creation revision it was elected
//! with. Observe streams the leader's value each time it changes.

use std::pin::Pin;

use api::pb::etcdserverpb::{RangeRequest, ResponseHeader, TxnRequest};
use api::pb::mvccpb::KeyValue;
use api::pb::v3electionpb::{
    election_server::Election, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse,
    ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use storage::mvcc::{Event, EventKind, MvccError};

use crate::apply::range::to_pb_kv;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::call::Call;
use super::local::{
    created_at, delete_op, first_created, get_op, prefix_end, put_op, range_kvs, session_key, within_client_deadline,
    Cleanup, Local,
};
use super::Ctx;

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// Leader updates buffered per Observe stream; a client that stops reading
/// holds the stream's task, not a growing queue.
const OBSERVE_QUEUE: usize = 16;
/// Revisions of history read per step while following a leader's key.
const HISTORY_CHUNK: i64 = 1000;

pub struct ElectionService {
    ctx: Ctx,
}

impl ElectionService {
    pub fn new(ctx: Ctx) -> Self {
        ElectionService { ctx }
    }
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// Puts `value` on the leader's key while it is still the one elected.
async fn proclaim(local: &Local, leader: &LeaderKey, value: Vec<u8>) -> Result<Option<ResponseHeader>, Status> {
    let txn = TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![put_op(&leader.key, value, leader.lease)],
        failure: vec![],
    };
    let resp = local.txn(txn).await?;
    if !resp.succeeded {
        return Err(Status::unknown(NOT_LEADER));
    }
    Ok(resp.header)
}

async fn campaign(local: Local, r: CampaignRequest) -> Result<CampaignResponse, Status> {
    let lease = local.session_lease(r.lease).await?;
    let prefix = prefix_of(&r.name);
    let key = session_key(&prefix, lease);
    let txn = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![put_op(&key, r.value.clone(), lease)],
        failure: vec![get_op(RangeRequest { key: key.clone(), ..Default::default() })],
    };
    let resp = local.txn(txn).await?;
    let mut leader = LeaderKey { name: r.name, key, rev: resp.header.as_ref().map_or(0, |h| h.revision), lease };
    // This session may be a candidate already: it keeps its place in line,
    // and its value only if unchanged.
    let mine = if resp.succeeded { None } else { range_kvs(&resp, 0).first() };
    if let Some(mine) = mine {
        leader.rev = mine.create_revision;
    }
    let mut cleanup = Cleanup::new(&local, &leader.key, leader.rev);
    if mine.is_some_and(|m| m.value != r.value) {
        proclaim(&local, &leader, r.value).await?;
    }
    local.wait_deletes(&prefix, leader.rev - 1).await?;
    cleanup.disarm();
    Ok(CampaignResponse { header: resp.header, leader: Some(leader) })
}

type Observer = mpsc::Sender<Result<LeaderResponse, Status>>;

/// How long a stopping member waits for room to tell an observer so.
const STOPPED_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends `kv` as the leader (or its new value) at `revision`; false once the
/// observer is gone.
async fn send(ctx: &Ctx, tx: &Observer, kv: KeyValue, revision: i64) -> bool {
    let header = ctx.header(Some(ResponseHeader { revision, ..Default::default() }));
    tx.send(Ok(LeaderResponse { header, kv: Some(kv) })).await.is_ok()
}

/// What reading history forward found.
enum Step {
    Events(Vec<Event>),
    /// The history asked for was compacted away.
    Compacted,
    /// The observer went away, or the member is stopping.
    Closed,
}

/// This member's history of one key (`end` None) or of `[key, end)`, read
/// forward from a revision a chunk at a time, waiting for new revisions.
struct History<'a> {
    ctx: &'a Ctx,
    tx: &'a Observer,
    key: Vec<u8>,
    end: Option<Vec<u8>>,
    from: i64,
}

impl<'a> History<'a> {
    /// A reader of the history the caller may read, as etcd's embedded
    /// client's watch would be checked when created; None when it may not
    /// (the Observe stream then ends, as etcd's does when its watch fails).
    async fn open(local: &'a Local, tx: &'a Observer, key: Vec<u8>, end: Option<Vec<u8>>, from: i64) -> Option<Self> {
        if !local.may_read(&key, end.as_deref().unwrap_or_default()).await {
            return None;
        }
        Some(History { ctx: local.ctx(), tx, key, end, from })
    }

    fn covers(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key,
            Some(end) => k >= self.key.as_slice() && (end.as_slice() == [0] || k < end.as_slice()),
        }
    }

    async fn next(&mut self) -> Step {
        let mut revision = self.ctx.node.revision.clone();
        loop {
            let current = *revision.borrow_and_update();
            if current >= self.from {
                let to = current.min(self.from + HISTORY_CHUNK - 1);
                let events = match self.ctx.node.mvcc.events_between(self.from, to, false) {
                    Ok(events) => events,
                    Err(MvccError::Compacted) => return Step::Compacted,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading history for an election observer failed");
                        return Step::Closed;
                    }
                };
                self.from = to + 1;
                let mine: Vec<Event> = events.into_iter().filter(|ev| self.covers(&ev.kv.key)).collect();
                if !mine.is_empty() {
                    return Step::Events(mine);
                }
                continue;
            }
            tokio::select! {
                _ = self.tx.closed() => return Step::Closed,
                changed = revision.changed() => if changed.is_err() {
                    // The member stopped: etcd's clients see Unavailable,
                    // as from a stopping etcd, not a clean end.
                    let stopped = Err(Status::from(api::EtcdError::Stopped));
                    let _ = tokio::time::timeout(STOPPED_SEND, self.tx.send(stopped)).await;
                    return Step::Closed;
                },
            }
        }
    }
}

/// The leader of the election under `prefix`, waiting for one when there is
/// none; with the revision to report it at. None when the observer left.
async fn next_leader(local: &Local, tx: &Observer, prefix: &[u8]) -> Option<(KeyValue, i64)> {
    loop {
        let got = tokio::select! {
            _ = tx.closed() => return None,
            got = local.range(first_created(prefix)) => got,
        };
        // As etcd, the stream ends when its reads fail.
        let resp = got.ok()?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if let Some(kv) = resp.kvs.into_iter().next() {
            return Some((kv, revision));
        }
        // No candidate: the first put under the prefix is the leader.
        let end = prefix_end(prefix);
        let mut history = History::open(local, tx, prefix.to_vec(), Some(end), revision + 1).await?;
        loop {
            match history.next().await {
                Step::Events(events) => {
                    if let Some(ev) = events.into_iter().find(|ev| ev.kind == EventKind::Put) {
                        let rev = ev.kv.mod_revision;
                        return Some((to_pb_kv(ev.kv), rev));
                    }
                }
                // Look at the current state again.
                Step::Compacted => break,
                Step::Closed => return None,
            }
        }
    }
}

/// The Observe stream's task: the leader, then each new value it proclaims,
/// then the next leader, and so on until the client goes away.
async fn observe(local: Local, name: Vec<u8>, tx: Observer) {
    let ctx = local.ctx().clone();
    let _gauge = ctx.watch.observer();
    let prefix = prefix_of(&name);
    while let Some((leader, revision)) = next_leader(&local, &tx, &prefix).await {
        let key = leader.key.clone();
        if !send(&ctx, &tx, leader, revision).await {
            return;
        }
        let Some(mut history) = History::open(&local, &tx, key, None, revision + 1).await else {
            return;
        };
        'following: loop {
            match history.next().await {
                Step::Events(events) => {
                    for ev in events {
                        if ev.kind == EventKind::Delete {
                            break 'following;
                        }
                        let rev = ev.kv.mod_revision;
                        if !send(&ctx, &tx, to_pb_kv(ev.kv), rev).await {
                            return;
                        }
                    }
                }
                Step::Compacted => break 'following,
                Step::Closed => return,
            }
        }
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let call = Call::of(&request)?;
        within_client_deadline(&call, campaign(local, request.into_inner())).await.map(Response::new)
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let r = request.into_inner();
        let leader = r.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let header = proclaim(&local, &leader, r.value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let prefix = prefix_of(&request.into_inner().name);
        let resp = local.range(first_created(&prefix)).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(LeaderResponse { header: resp.header, kv: Some(kv) }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        tokio::spawn(observe(local, request.into_inner().name, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let leader = request.into_inner().leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let txn = TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![delete_op(&leader.key)],
            failure: vec![],
        };
        let resp = local.txn(txn).await?;
        Ok(Response::new(ResignResponse { header: resp.header }))
    }
}
