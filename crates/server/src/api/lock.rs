//! etcd's Lock service (v3lock): a distributed mutex over keys, as etcd's
//! `concurrency.Mutex`. A lock named N is a set of keys `N/<lease hex>`, one
//! per session lease; the key created first holds the lock, the others wait
//! for every older key to go. A key lives as long as its lease, so a holder
//! that dies releases the lock when its lease expires.
//!
//! A Lock call waits as long as the client lets it (its deadline, or until
//! it cancels or goes away), as in etcd. A call that ends without the lock
//! removes its waiting key, so it never blocks the waiters behind it.

use api::pb::etcdserverpb::{RangeRequest, TxnRequest};
use api::pb::v3lockpb::{lock_server::Lock, LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::call::Call;
use super::local::{
    created_at, first_created, get_op, put_op, range_kvs, session_key, within_client_deadline, Cleanup, Local,
};
use super::Ctx;

pub struct LockService {
    ctx: Ctx,
}

impl LockService {
    pub fn new(ctx: Ctx) -> Self {
        LockService { ctx }
    }
}

async fn acquire(local: Local, r: LockRequest) -> Result<LockResponse, Status> {
    let lease = local.session_lease(r.lease).await?;
    let mut prefix = r.name;
    prefix.push(b'/');
    let key = session_key(&prefix, lease);
    // Join the line (or find this session's place in it) and read who is
    // first, in one round.
    let txn = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![put_op(&key, Vec::new(), lease), get_op(first_created(&prefix))],
        failure: vec![get_op(RangeRequest { key: key.clone(), ..Default::default() }), get_op(first_created(&prefix))],
    };
    let resp = local.txn(txn).await?;
    let my_rev = if resp.succeeded {
        resp.header.as_ref().map_or(0, |h| h.revision)
    } else {
        let mine = range_kvs(&resp, 0).first().ok_or_else(|| Status::internal("lock key vanished inside a txn"))?;
        mine.create_revision
    };
    let owner = range_kvs(&resp, 1).first();
    if owner.is_none_or(|o| o.create_revision == my_rev) {
        return Ok(LockResponse { header: resp.header, key });
    }
    let mut cleanup = Cleanup::new(&local, &key, my_rev);
    local.wait_deletes(&prefix, my_rev - 1).await?;
    // The key may have gone with its lease while waiting.
    let got = local.range(RangeRequest { key: key.clone(), ..Default::default() }).await?;
    cleanup.disarm();
    if got.kvs.is_empty() {
        return Err(Status::unknown("mutex: session is expired"));
    }
    Ok(LockResponse { header: got.header, key })
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let call = Call::of(&request)?;
        let fut = acquire(local, request.into_inner());
        within_client_deadline(&call, fut).await.map(Response::new)
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let local = Local::as_caller(self.ctx.clone(), &request)?;
        let resp = local.delete(request.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header: resp.header }))
    }
}
