//! KV workloads: `put`, `range` and `txn-put`, one unary RPC per operation.

use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use api::pb::etcdserverpb::kv_client::KvClient;
use api::pb::etcdserverpb::request_op::Request as Op;
use api::pb::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use serde_json::{json, Value};

use crate::args::{Consistency, PutArgs, RangeArgs, TxnPutArgs};
use crate::conn::Pool;
use crate::keys::{value, KeyGen, Rng};
use crate::runner::Workload;
use crate::stats::status_message;

/// A worker: its client (on connection `worker % conns`), its key chooser
/// and, when paging, where its list goes on.
pub struct Client {
    kv: KvClient<Conn>,
    rng: Rng,
    /// The next page's start and the list's revision (`range --paginate`).
    page: Option<(Vec<u8>, i64)>,
}

fn client(pool: &Pool, worker: usize) -> Client {
    Client { kv: pool.conn(worker).kv(), rng: Rng::seeded(worker as u64), page: None }
}

fn request<T>(msg: T, limit: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(limit);
    r
}

pub struct Put {
    pool: Arc<Pool>,
    keys: KeyGen,
    value: Vec<u8>,
    /// Every this many puts, this value instead.
    large: Option<(u64, Vec<u8>)>,
}

impl Put {
    pub fn new(pool: Arc<Pool>, a: &PutArgs) -> (Put, Value) {
        let keys = KeyGen {
            key_size: a.keys.key_size,
            key_space_size: a.keys.key_space_size,
            sequential: a.keys.sequential_keys,
            k8s: a.keys.k8s_keys,
            offset: a.keys.key_offset,
        };
        let params = json!({"key_size": a.keys.key_size, "val_size": a.val_size,
            "key_space_size": a.keys.key_space_size, "sequential_keys": a.keys.sequential_keys,
            "k8s_keys": a.keys.k8s_keys, "large_val_every": a.large_val_every, "large_val_size": a.large_val_size});
        let mut rng = Rng::seeded(0);
        let large = (a.large_val_every > 0).then(|| (a.large_val_every, value(a.large_val_size, &mut rng)));
        (Put { pool, keys, value: value(a.val_size, &mut rng), large }, params)
    }
}

impl Workload for Put {
    type Worker = Client;
    async fn setup(&self, worker: usize) -> Result<Client, String> {
        Ok(client(&self.pool, worker))
    }
    async fn op(&self, c: &mut Client, i: u64, limit: Duration) -> Result<(), String> {
        let value = match &self.large {
            Some((every, large)) if i % every == every - 1 => large.clone(),
            _ => self.value.clone(),
        };
        let req = PutRequest { key: self.keys.key(i, &mut c.rng), value, ..Default::default() };
        c.kv.put(request(req, limit)).await.map(drop).map_err(|s| status_message(&s))
    }
}

pub struct Range {
    pool: Arc<Pool>,
    /// Random keys of this space, or None to read `key`..`end`.
    keys: Option<KeyGen>,
    key: Vec<u8>,
    end: Vec<u8>,
    serializable: bool,
    limit: i64,
    count_only: bool,
    keys_only: bool,
    paginate: bool,
}

impl Range {
    pub fn new(pool: Arc<Pool>, a: &RangeArgs) -> (Range, Value) {
        let keys = (a.key_space_size > 0).then_some(KeyGen {
            key_size: a.key_size,
            key_space_size: a.key_space_size,
            sequential: false,
            k8s: a.k8s_keys,
            offset: 0,
        });
        let params = json!({"key": a.key, "end": a.end, "consistency": if a.consistency == Consistency::S { "s" } else { "l" },
            "key_space_size": a.key_space_size, "key_size": a.key_size, "limit": a.limit, "k8s_keys": a.k8s_keys,
            "count_only": a.count_only, "keys_only": a.keys_only, "paginate": a.paginate});
        let r = Range {
            pool,
            keys,
            key: a.key.clone().unwrap_or_default().into_bytes(),
            end: a.end.clone().unwrap_or_default().into_bytes(),
            serializable: a.consistency == Consistency::S,
            limit: a.limit,
            count_only: a.count_only,
            keys_only: a.keys_only,
            paginate: a.paginate,
        };
        (r, params)
    }
}

impl Workload for Range {
    type Worker = Client;
    async fn setup(&self, worker: usize) -> Result<Client, String> {
        Ok(client(&self.pool, worker))
    }
    async fn op(&self, c: &mut Client, i: u64, limit: Duration) -> Result<(), String> {
        let (key, range_end, revision) = match (&self.keys, c.page.take()) {
            (Some(g), _) => (g.key(i, &mut c.rng), Vec::new(), 0),
            (None, Some((start, rev))) => (start, self.end.clone(), rev),
            (None, None) => (self.key.clone(), self.end.clone(), 0),
        };
        let req = RangeRequest {
            key,
            range_end,
            serializable: self.serializable,
            limit: self.limit,
            count_only: self.count_only,
            keys_only: self.keys_only,
            revision,
            ..Default::default()
        };
        let resp = c.kv.range(request(req, limit)).await.map_err(|s| status_message(&s))?.into_inner();
        if self.paginate {
            // Kubernetes' continue: the last key plus a zero byte, at the
            // first page's revision; a failed page starts the list over.
            c.page = match (resp.more, resp.kvs.last()) {
                (true, Some(last)) => {
                    let rev = if revision > 0 { revision } else { resp.header.map_or(0, |h| h.revision) };
                    Some(([&last.key[..], &[0]].concat(), rev))
                }
                _ => None,
            };
        }
        Ok(())
    }
}

pub struct TxnPut {
    pool: Arc<Pool>,
    keys: KeyGen,
    value: Vec<u8>,
    ops: usize,
}

impl TxnPut {
    pub fn new(pool: Arc<Pool>, a: &TxnPutArgs) -> (TxnPut, Value) {
        let keys = KeyGen {
            key_size: a.keys.key_size,
            key_space_size: a.keys.key_space_size,
            sequential: a.keys.sequential_keys,
            k8s: a.keys.k8s_keys,
            offset: a.keys.key_offset,
        };
        let params = json!({"key_size": a.keys.key_size, "val_size": a.val_size, "txn_ops": a.txn_ops,
            "key_space_size": a.keys.key_space_size, "sequential_keys": a.keys.sequential_keys});
        (TxnPut { pool, keys, value: value(a.val_size, &mut Rng::seeded(0)), ops: a.txn_ops }, params)
    }
}

impl Workload for TxnPut {
    type Worker = Client;
    async fn setup(&self, worker: usize) -> Result<Client, String> {
        Ok(client(&self.pool, worker))
    }
    async fn op(&self, c: &mut Client, i: u64, limit: Duration) -> Result<(), String> {
        // Operation i puts keys i*ops .. i*ops+ops-1 (sequential) or random ones;
        // etcd rejects a txn that puts the same key twice, so with a small key
        // space the puts may collide: that is counted as an error, as in etcd's tool.
        let success = (0..self.ops as u64)
            .map(|j| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: self.keys.key(i * self.ops as u64 + j, &mut c.rng),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        let req = TxnRequest { compare: Vec::new(), success, failure: Vec::new() };
        c.kv.txn(request(req, limit)).await.map(drop).map_err(|s| status_message(&s))
    }
}
