//! gRPC connections: `--conns` HTTP/2 connections spread round-robin over the
//! endpoints. Worker `w` uses connection `w % conns`, so 1000 clients over
//! 100 connections is ten concurrent streams per connection, as with etcd's
//! tool.
//!
//! A [`Conn`] is a bare hyper HTTP/2 client connection, not a tonic
//! `Channel`: a `Channel` queues every request through a buffer task of its
//! own (one more task hop and two channel operations per request) and would
//! reconnect behind our back. The load generator shares the machine with the
//! server it measures, so what it spends per request is taken from the
//! server; and a broken connection should show as errors, not be healed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use api::pb::etcdserverpb::auth_client::AuthClient;
use api::pb::etcdserverpb::kv_client::KvClient;
use api::pb::etcdserverpb::lease_client::LeaseClient;
use api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use api::pb::etcdserverpb::watch_client::WatchClient;
use api::pb::etcdserverpb::{AuthenticateRequest, StatusRequest};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response, Uri};

/// One HTTP/2 connection; clones share it (each request is a new stream).
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Body>,
    /// `http://host:port`, which tonic's clients put in front of each path.
    origin: Uri,
    /// The auth token sent with every request (`--user`), as etcd's
    /// clients send it: the `token` metadata.
    token: Option<HeaderValue>,
}

impl Conn {
    pub fn kv(&self) -> KvClient<Conn> {
        KvClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn lease(&self) -> LeaseClient<Conn> {
        LeaseClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn watch(&self) -> WatchClient<Conn> {
        WatchClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn maintenance(&self) -> MaintenanceClient<Conn> {
        MaintenanceClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn auth(&self) -> AuthClient<Conn> {
        AuthClient::with_origin(self.clone(), self.origin.clone())
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

impl tower_service::Service<Request<Body>> for Conn {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Some(token) = &self.token {
            req.headers_mut().insert("token", token.clone());
        }
        Box::pin(self.send.send_request(req))
    }
}

pub struct Pool {
    conns: Vec<Conn>,
}

impl Pool {
    /// Dials `conns` connections (concurrently), connection `i` to endpoint `i % endpoints.len()`.
    pub async fn connect(endpoints: &[String], conns: usize, dial_timeout: Duration) -> Result<Pool, String> {
        let mut set = JoinSet::new();
        for i in 0..conns {
            let ep = endpoints[i % endpoints.len()].clone();
            set.spawn(async move { (i, dial(&ep, dial_timeout).await) });
        }
        let mut dialed: Vec<Option<Conn>> = vec![None; conns];
        while let Some(r) = set.join_next().await {
            let (i, conn) = r.map_err(|e| format!("dial task failed: {e}"))?;
            dialed[i] = Some(conn?);
        }
        Ok(Pool { conns: dialed.into_iter().flatten().collect() })
    }

    /// `--user name:password`: the token ([`authenticate`], once) goes
    /// with every request from then on (a simple token lives as long as it
    /// is used; a run outliving a JWT token's TTL sees its requests fail).
    pub fn set_token(&mut self, token: &HeaderValue) {
        for c in &mut self.conns {
            c.token = Some(token.clone());
        }
    }

    /// The connection worker (or stream) `i` uses.
    pub fn conn(&self, i: usize) -> &Conn {
        &self.conns[i % self.conns.len()]
    }
}

/// A token for `user` (`name:password`), authenticated through `ep`.
pub async fn authenticate(
    ep: &str,
    user: &str,
    dial_timeout: Duration,
    request_timeout: Duration,
) -> Result<HeaderValue, String> {
    let (name, password) = user.split_once(':').ok_or("--user takes name:password")?;
    let mut req = tonic::Request::new(AuthenticateRequest { name: name.to_string(), password: password.to_string() });
    req.set_timeout(request_timeout);
    let conn = dial(ep, dial_timeout).await?;
    let resp = conn.auth().authenticate(req).await.map_err(|e| format!("authenticate as {name}: {e}"))?;
    HeaderValue::from_str(&resp.into_inner().token).map_err(|e| format!("token: {e}"))
}

/// One new HTTP/2 connection to `ep` (`http://host:port`).
pub async fn dial(ep: &str, dial_timeout: Duration) -> Result<Conn, String> {
    let origin: Uri = ep.parse().map_err(|e| format!("bad endpoint {ep:?}: {e}"))?;
    let addr = origin.authority().map(|a| a.as_str().to_string()).ok_or_else(|| format!("bad endpoint {ep:?}"))?;
    let connect = async {
        let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        // The connection's I/O runs until the last clone of `send` is gone
        // (or the server closes it).
        tokio::spawn(conn);
        Ok::<_, String>(send)
    };
    match tokio::time::timeout(dial_timeout, connect).await {
        Ok(Ok(send)) => Ok(Conn { send, origin, token: None }),
        Ok(Err(err)) => Err(format!("cannot connect to {ep}: {err}")),
        Err(_) => Err(format!("cannot connect to {ep}: timed out after {dial_timeout:?}")),
    }
}

/// The endpoints whose member is the leader (Maintenance.Status: member_id == leader).
pub async fn leader_endpoints(
    endpoints: &[String],
    dial_timeout: Duration,
    request_timeout: Duration,
    token: Option<&HeaderValue>,
) -> Result<Vec<String>, String> {
    let mut leaders = Vec::new();
    let mut problems = Vec::new();
    for ep in endpoints {
        let status = async {
            let mut ch = dial(ep, dial_timeout).await?;
            // With auth on, Status needs a user.
            ch.token = token.cloned();
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(request_timeout);
            let resp = ch.maintenance().status(req).await.map_err(|s| format!("{ep}: {}", s.message()))?;
            Ok::<_, String>(resp.into_inner())
        };
        match status.await {
            Ok(s) => {
                let member = s.header.map(|h| h.member_id).unwrap_or(0);
                if member != 0 && member == s.leader {
                    leaders.push(ep.clone());
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if leaders.is_empty() {
        return Err(format!("--target-leader: no endpoint reports itself as leader ({})", problems.join("; ")));
    }
    Ok(leaders)
}
