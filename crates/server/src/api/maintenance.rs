//! etcd's Maintenance service: Status (what `etcdctl endpoint status` shows),
//! alarms, defragment, hashes and leader moves as far as a single member goes.

use std::pin::Pin;

use api::pb::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_server::Maintenance, AlarmRequest, AlarmResponse, AlarmType,
    DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::EtcdError;
use storage::MvccStore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::call::Call;
use super::Ctx;
use crate::apply::ApplyResponse;

/// Snapshot download chunk (etcd's `snapshotSendBufferSize`).
const SNAPSHOT_CHUNK: usize = 32 << 10;
/// Chunks read ahead of the client.
const SNAPSHOT_READ_AHEAD: usize = 8;
/// A client that takes no chunk for this long is given up on.
const SNAPSHOT_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The download's channel, fed from a blocking thread with a bound on how
/// long one chunk may wait for the client.
struct SnapshotSender {
    tx: tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
    rt: tokio::runtime::Handle,
}

impl SnapshotSender {
    /// False when the client is gone or stalled.
    fn send(&self, msg: Result<SnapshotResponse, Status>) -> bool {
        self.rt.block_on(self.tx.send_timeout(msg, SNAPSHOT_STALL)).is_ok()
    }
}

/// Sends `backup`'s data in chunks, then its digest, into `tx`; stops when
/// the client is gone or stalls (the file goes with `backup`). As etcd 3.4:
/// no header, `remaining_bytes` counts the data still to come (0 on the last
/// chunk and on the digest).
fn stream_backup(backup: crate::maintenance::backup::BackupFile, tx: SnapshotSender) {
    use std::io::Read;
    let mut file = match std::fs::File::open(&backup.path) {
        Ok(f) => f,
        Err(e) => {
            tx.send(Err(Status::internal(format!("open {}: {e}", backup.path.display()))));
            return;
        }
    };
    let mut sent = 0u64;
    while sent < backup.data_len {
        let want = (backup.data_len - sent).min(SNAPSHOT_CHUNK as u64) as usize;
        let mut blob = vec![0u8; want];
        if let Err(e) = file.read_exact(&mut blob) {
            tx.send(Err(Status::internal(format!("read {}: {e}", backup.path.display()))));
            return;
        }
        sent += want as u64;
        let msg = SnapshotResponse { header: None, remaining_bytes: backup.data_len - sent, blob };
        if !tx.send(Ok(msg)) {
            return;
        }
    }
    let last = SnapshotResponse { header: None, remaining_bytes: 0, blob: backup.digest.to_vec() };
    tx.send(Ok(last));
}

/// A name part for temporary files that no other download shares.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}

/// How often MoveLeader looks whether the transfer finished.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

pub struct MaintenanceService {
    ctx: Ctx,
}

impl MaintenanceService {
    pub fn new(ctx: Ctx) -> Self {
        MaintenanceService { ctx }
    }
}

/// CRC32 over every stored revision as stored, key and value: the whole
/// history, so callers run it on a blocking thread.
fn hash_stored(mvcc: &MvccStore) -> Result<u32, EtcdError> {
    let mut h = crc32fast::Hasher::new();
    mvcc.scan_stored(&mut |k, v| {
        h.update(k);
        h.update(v);
    })
    .map_err(crate::errors::from_mvcc)?;
    Ok(h.finalize())
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// This member's HashKV at `revision` (0: the current one), computed on a
/// blocking thread as it reads the whole key history; with the revision
/// hashed (the header carries the current one, as etcd's). As etcd's
/// `HashByRev`: a revision at or below the compacted one is compacted, and
/// a store never compacted reports `compact_revision` -1. The hash is the
/// same whether or not this member finished deleting the compacted history
/// (`crate::maintenance::hashkv`).
pub async fn hash_kv_here(ctx: &Ctx, revision: i64) -> Result<(HashKvResponse, i64), EtcdError> {
    let mvcc = ctx.node.mvcc.clone();
    let current = mvcc.current_revision();
    if revision > 0 && revision <= mvcc.compact_revision() {
        return Err(EtcdError::Compacted);
    }
    if revision > current {
        return Err(EtcdError::FutureRev);
    }
    let rev = if revision <= 0 { current } else { revision };
    let start = std::time::Instant::now();
    let (hash, compact) =
        crate::maintenance::hashkv::run_scan(move || crate::maintenance::hashkv::hash_kv(&mvcc, rev)).await?;
    crate::metrics::get().mvcc.hash_rev.observe(crate::metrics::since(start));
    let compact_revision = if compact <= 0 { -1 } else { compact };
    Ok((HashKvResponse { header: ctx.header(None), hash, compact_revision }, rev))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// GET lists this member's view of the replicated alarms (all, or those
    /// of the type asked for); ACTIVATE and DEACTIVATE go through raft, as
    /// in etcd. As etcd 3.4's, the answer carries no header (`etcdctl alarm
    /// list -w json` prints `{}` when no alarm is up).
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let call = Call::of(&request)?;
        let deadline = call.deadline;
        // etcd 3.5: listing needs a user, changing the root role.
        let sender = if request.get_ref().action == AlarmAction::Get as i32 {
            call.user(&self.ctx).await?
        } else {
            call.admin(&self.ctx).await?
        };
        let r = request.into_inner();
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                let mut alarms = self.ctx.node.alarms.list();
                if r.alarm != AlarmType::None as i32 {
                    alarms.retain(|a| a.alarm == r.alarm);
                }
                Ok(Response::new(AlarmResponse { header: None, alarms }))
            }
            Ok(AlarmAction::Activate) | Ok(AlarmAction::Deactivate) => {
                match self.ctx.node.propose_as(Internal::Alarm(r), &sender, deadline).await? {
                    ApplyResponse::Alarm(mut resp) => {
                        resp.header = None;
                        Ok(Response::new(resp))
                    }
                    _ => Err(crate::errors::unexpected_response("an alarm").into()),
                }
            }
            Err(_) => Err(Status::invalid_argument(format!("unknown alarm action {}", r.action))),
        }
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Call::of(&request)?;
        let node = &self.ctx.node;
        let engine = node.mvcc.engine();
        let (size, in_use) = (engine.size_bytes() as i64, engine.size_in_use_bytes() as i64);
        Ok(Response::new(StatusResponse {
            header: self.ctx.header(None),
            version: api::ETCD_VERSION.to_string(),
            db_size: size,
            leader: node.state.leader(),
            raft_index: node.state.commit_index(),
            raft_term: node.state.term(),
            raft_applied_index: node.state.applied_index(),
            errors: node.alarms.list().iter().map(crate::apply::alarms::describe).collect(),
            db_size_in_use: in_use,
            is_learner: node.is_learner(),
        }))
    }

    /// RocksDB compacts every table fully, off the async threads, as etcd
    /// rewrites its bbolt file; the memory engine has no files to rewrite.
    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Call::of(&request)?;
        let engine = self.ctx.node.mvcc.engine().clone();
        // Measured on the blocking thread: a client that gives up does not
        // stop the defragmentation.
        tokio::task::spawn_blocking(move || {
            let disk = &crate::metrics::get().disk;
            let _inflight = crate::metrics::Inflight::new(disk.defrag_inflight.clone());
            let start = std::time::Instant::now();
            let done = engine.defragment();
            disk.backend_defrag.observe(crate::metrics::since(start));
            done
        })
        .await
        .map_err(crate::errors::from_join)?
        .map_err(crate::errors::from_engine)?;
        Ok(Response::new(DefragmentResponse { header: self.ctx.header(None) }))
    }

    /// The whole history is read on a blocking thread (bounded, as HashKV's):
    /// inline it held an async worker for the whole scan, and a few
    /// concurrent calls held them all (keep-alives and every other request
    /// waited).
    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Call::of(&request)?;
        let mvcc = self.ctx.node.mvcc.clone();
        let start = std::time::Instant::now();
        let hash = crate::maintenance::hashkv::run_scan(move || hash_stored(&mvcc)).await?;
        crate::metrics::get().mvcc.hash.observe(crate::metrics::since(start));
        Ok(Response::new(HashResponse { header: self.ctx.header(None), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Call::of(&request)?;
        Ok(Response::new(hash_kv_here(&self.ctx, request.into_inner().revision).await?.0))
    }

    type SnapshotStream = SnapshotStream;

    /// etcd's Snapshot: the whole store as of now, in chunks with the bytes
    /// still to come, then a last message with the SHA-256 of the data
    /// (`crate::maintenance::backup`). The dump goes to a temporary file first, so a slow
    /// client holds no engine resource; the file is removed when the stream
    /// ends or is dropped.
    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        Call::of(&request)?;
        let mvcc = self.ctx.node.mvcc.clone();
        let name = format!("download-{:016x}.snap.tmp", rand_suffix());
        let path = self.ctx.node.snapshots.dir().join(name);
        let start = std::time::Instant::now();
        let backup = tokio::task::spawn_blocking(move || crate::maintenance::backup::write_backup(&mvcc, path))
            .await
            .inspect(|_| crate::metrics::get().disk.backend_snapshot.observe(crate::metrics::since(start)))
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_READ_AHEAD);
        let send = SnapshotSender { tx, rt: tokio::runtime::Handle::current() };
        tokio::task::spawn_blocking(move || stream_backup(backup, send));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    /// etcd's MoveLeader: the leader hands over to a voting member and the
    /// call returns once that member leads, or fails after the deadline.
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let deadline = Call::of(&request)?.deadline;
        let r = request.into_inner();
        let node = &self.ctx.node;
        if node.members.get(r.target_id).is_none_or(|m| m.is_learner) {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        if node.state.leader() != self.ctx.cfg.member_id {
            return Err(EtcdError::NotLeader.into());
        }
        node.transfer_leader(r.target_id, deadline).await?;
        let moved = deadline
            .run(async {
                while node.state.leader() != r.target_id {
                    tokio::time::sleep(LEADER_POLL).await;
                }
            })
            .await;
        if moved.is_err() {
            return Err(EtcdError::TimeoutLeaderTransfer.into());
        }
        Ok(Response::new(MoveLeaderResponse { header: self.ctx.header(None) }))
    }
}
