//! Wiring: open the engine and the raft node, serve gRPC on the given
//! listeners until the shutdown future resolves (or the node fails), then
//! let in-flight requests finish and stop the node, which syncs the WAL.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use api::pb::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, LeaseRevokeRequest,
};
use api::pb::metastorepb::internal_request::Request as Internal;
use api::pb::v3electionpb::election_server::ElectionServer;
use api::pb::v3lockpb::lock_server::LockServer;
use axum::serve::ListenerExt;
use storage::{Engine, MemoryEngine};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ServerConfig, StorageConfig, GRPC_OVERHEAD_BYTES};
use crate::deadline::Deadline;
use crate::node::NodeHandle;
use crate::node::{self, NodeError};
use crate::peer::client::Dialer;
use crate::peer::leader::LeaderLink;
use crate::peer::sender::PeerTransport;
use crate::peer::service::PeerService;
use crate::service::{
    cluster::ClusterService, election::ElectionService, kv::KvService, lease::LeaseService, lock::LockService,
    maintenance::MaintenanceService, Ctx,
};
use crate::watch::WatchService;
use api::pb::metastorepb::{peer_server::PeerServer, MemberAttrRequest};

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("data dir {path} was written by the {found} engine; this server runs the {wanted} engine")]
    EngineMismatch { path: String, found: String, wanted: String },
    #[error("serving clients: {0}")]
    Serve(#[from] std::io::Error),
    #[error("the raft node stopped unexpectedly; see the log")]
    NodeFailed,
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
    #[error("opening the {kind} engine: {source}")]
    Engine { kind: &'static str, source: storage::EngineError },
    #[error("this binary was built without the {0} engine; rebuild with `--features rocksdb`")]
    EngineUnavailable(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Corrupt(String),
}

/// Opens the engine `--storage` names, after checking the data dir's marker.
fn open_engine(cfg: &ServerConfig) -> Result<Arc<dyn Engine>, ServerError> {
    let kind = cfg.storage.kind();
    if !StorageConfig::available().contains(&kind) {
        return Err(ServerError::EngineUnavailable(kind));
    }
    check_engine_marker(&cfg.member_dir(), kind)?;
    match &cfg.storage {
        StorageConfig::Memory => Ok(Arc::new(MemoryEngine::new())),
        #[cfg(feature = "rocksdb")]
        StorageConfig::Rocksdb { block_cache_bytes, write_buffer_bytes } => {
            let opts = storage_rocks::RocksOptions {
                block_cache_bytes: *block_cache_bytes,
                write_buffer_bytes: *write_buffer_bytes,
            };
            let engine = storage_rocks::RocksEngine::open(&cfg.member_dir().join("rocksdb"), &opts)
                .map_err(|source| ServerError::Engine { kind, source })?;
            Ok(Arc::new(engine))
        }
        #[cfg(not(feature = "rocksdb"))]
        StorageConfig::Rocksdb { .. } => Err(ServerError::EngineUnavailable(kind)),
    }
}

/// Already-bound sockets, so callers (and tests) choose ports, port 0
/// included; each with whether its URL is https (TLS from the config's
/// `client_tls` / `peer_tls`).
pub struct Listeners {
    pub client: Vec<(TcpListener, bool)>,
    pub peer: Vec<(TcpListener, bool)>,
    /// `--listen-metrics-urls`: /metrics, /health and /version only (TLS
    /// with the client certificate).
    pub metrics: Vec<(TcpListener, bool)>,
}

/// The TLS settings an https listener of `side` serves with.
fn tls_for(
    https: bool,
    files: &Option<crate::tls::TlsFiles>,
    side: &str,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ServerError> {
    if !https {
        return Ok(None);
    }
    let files =
        files.as_ref().ok_or_else(|| ServerError::Tls(format!("an https {side} URL without a cert and key")))?;
    files.server_config().map(Some).map_err(ServerError::Tls)
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `stop`.
async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    app: axum::Router,
    http2: crate::config::Http2Settings,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    match tls {
        Some(config) => serve_on(crate::tls::TlsListener::new(listener, config)?, app, http2, stop).await,
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            serve_on(listener, app, http2, stop).await
        }
    }
}

/// The accept loop: every connection is served (HTTP/1.1 or HTTP/2, the
/// latter with Go clients' URL-shaped `:authority` made valid first, see
/// `crate::authority`) with
/// `http2`'s keepalive pings, so a client that vanished without closing its
/// connection is dropped with all it held, and its stream limit. On `stop`,
/// accepting ends and open connections are asked to finish (GOAWAY); the
/// caller bounds how long they may take.
async fn serve_on<L: axum::serve::Listener>(
    mut listener: L,
    app: axum::Router,
    http2: crate::config::Http2Settings,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(http2.keepalive_interval)
        .keep_alive_timeout(http2.keepalive_timeout)
        .max_concurrent_streams(http2.max_concurrent_streams);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            _ = stop.wait_for(|s| *s) => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(crate::authority::AuthorityFix::new(io)), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Records which engine owns the data dir; refuses to open another's.
fn check_engine_marker(member_dir: &Path, wanted: &str) -> Result<(), ServerError> {
    let io = |source| ServerError::DataDir { path: member_dir.display().to_string(), source };
    std::fs::create_dir_all(member_dir).map_err(io)?;
    let marker = member_dir.join("engine");
    match std::fs::read_to_string(&marker) {
        Ok(found) if found.trim() == wanted => Ok(()),
        Ok(found) => Err(ServerError::EngineMismatch {
            path: member_dir.display().to_string(),
            found: found.trim().to_string(),
            wanted: wanted.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::write(&marker, wanted).map_err(io),
        Err(e) => Err(io(e)),
    }
}

pub async fn run(
    mut cfg: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    // Bad certificate files stop the start before anything else happens.
    let client_tls: Vec<_> = listeners
        .client
        .iter()
        .map(|(_, https)| tls_for(*https, &cfg.client_tls, "client"))
        .collect::<Result<_, _>>()?;
    let peer_tls: Vec<_> =
        listeners.peer.iter().map(|(_, https)| tls_for(*https, &cfg.peer_tls, "peer")).collect::<Result<_, _>>()?;
    let metrics_tls: Vec<_> = listeners
        .metrics
        .iter()
        .map(|(_, https)| tls_for(*https, &cfg.client_tls, "metrics"))
        .collect::<Result<_, _>>()?;
    let engine = open_engine(&cfg)?;
    crate::identity::resolve(&mut cfg).await?;
    let cfg = Arc::new(cfg);
    let start_cfg = cfg.clone();
    let rt = tokio::runtime::Handle::current();
    let dialer = Dialer::new(&cfg).map_err(ServerError::Tls)?;
    let peer_dialer = dialer.clone();
    let transport: node::TransportFactory = Box::new(move |node| Box::new(PeerTransport::new(rt, peer_dialer, &node)));
    let node = tokio::task::spawn_blocking(move || node::start(&start_cfg, engine, transport))
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))??;
    tracing::info!(
        name = %cfg.name,
        member_id = %format!("{:x}", cfg.member_id),
        cluster_id = %format!("{:x}", cfg.cluster_id),
        "metastore member started"
    );
    let ctx = Ctx {
        node: node.clone(),
        cfg: cfg.clone(),
        watch: Default::default(),
        leader: Arc::new(LeaderLink::new(dialer)),
    };
    let max_recv = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for ((listener, _), tls) in listeners.client.into_iter().zip(client_tls) {
        let grpc =
            tonic::service::Routes::new(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(
                    MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(max_recv),
                )
                .add_service(ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(WatchServer::new(WatchService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(LockServer::new(LockService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(
                    ElectionServer::new(ElectionService::new(ctx.clone())).max_decoding_message_size(max_recv),
                );
        // gRPC and plain HTTP share the client port, as in etcd.
        let grpc = grpc.into_axum_router().layer(axum::middleware::map_response(crate::http::etcd_grpc_errors));
        let app = grpc.merge(crate::http::router(ctx.clone())).merge(crate::gateway::router(ctx.clone()));
        let (stop, http2) = (stop_rx.clone(), cfg.http2);
        let mut early_stop = stop_rx.clone();
        let mut ready = ready_rx.clone();
        servers.push(tokio::spawn(async move {
            // Like etcd, clients are served once this member has published
            // itself through raft, i.e. caught up with the cluster.
            tokio::select! {
                _ = ready.wait_for(|r| *r) => {}
                _ = early_stop.wait_for(|s| *s) => return Ok(()),
            }
            serve(listener, tls, app, http2, stop).await
        }));
    }
    for ((listener, _), tls) in listeners.metrics.into_iter().zip(metrics_tls) {
        servers.push(tokio::spawn(serve(listener, tls, crate::http::router(ctx.clone()), cfg.http2, stop_rx.clone())));
    }
    for ((listener, _), tls) in listeners.peer.into_iter().zip(peer_tls) {
        let routes = tonic::service::Routes::new(
            PeerServer::new(PeerService::new(ctx.clone()))
                .max_decoding_message_size(crate::peer::message_limit(cfg.max_request_bytes))
                .max_encoding_message_size(crate::peer::message_limit(cfg.max_request_bytes)),
        );
        let stop = stop_rx.clone();
        servers.push(tokio::spawn(serve(listener, tls, routes.into_axum_router(), cfg.http2, stop)));
    }
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<String>(1);
    let publish = tokio::spawn({
        let (node, cfg, ctx) = (node.clone(), cfg.clone(), ctx.clone());
        async move {
            publish_attributes(node, cfg.clone()).await;
            if cfg.initial_corrupt_check {
                if let Err(e) = crate::corrupt::initial_check(&ctx).await {
                    tracing::error!(error = %e, "initial corruption check failed");
                    let _ = fatal_tx.send(e).await;
                    return;
                }
            }
            tracing::info!("ready to serve client requests");
            let _ = ready_tx.send(true);
        }
    });
    let corrupt_check =
        cfg.corrupt_check_interval.map(|every| tokio::spawn(crate::corrupt::periodic(ctx.clone(), every)));
    let expiry = tokio::spawn(revoke_expired_leases(node.clone(), cfg.request_timeout()));
    let compactor =
        cfg.auto_compaction.map(|mode| tokio::spawn(crate::compactor::run(node.clone(), mode, cfg.request_timeout())));

    let mut fatal = None;
    let node_failed = tokio::select! {
        _ = shutdown => false,
        _ = node.state.wait_stopped() => true,
        Some(e) = fatal_rx.recv() => {
            fatal = Some(e);
            false
        }
    };
    if !node_failed {
        hand_over_leadership(&node, &cfg).await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
    expiry.abort();
    for task in [compactor, corrupt_check].into_iter().flatten() {
        task.abort();
    }
    publish.abort();
    let _ = stop_tx.send(true);
    // Idle client connections may stay open after GOAWAY; in-flight requests
    // get a bounded grace period, then the rest is closed.
    let grace_end = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for mut s in servers {
        match tokio::time::timeout_at(grace_end, &mut s).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => tracing::error!(error = %e, "client server task failed"),
            Err(_) => {
                tracing::warn!("client connections still open after the grace period; closing them");
                s.abort();
            }
        }
    }
    let stop_node = node.clone();
    tokio::task::spawn_blocking(move || stop_node.stop())
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))??;
    tracing::info!("stopped");
    if node.state.is_removed() || node.members.is_removed(cfg.member_id) {
        return Err(ServerError::Removed);
    }
    if node_failed {
        return Err(ServerError::NodeFailed);
    }
    if let Some(e) = fatal {
        return Err(ServerError::Corrupt(e));
    }
    Ok(())
}

/// How often the leader looks for expired leases (etcd checks every 500 ms).
const EXPIRY_CHECK: std::time::Duration = std::time::Duration::from_millis(500);
/// Revokes proposed per check at most, like etcd's lease revoke rate limit.
const REVOKES_PER_CHECK: usize = 500;

/// The leader proposes a revoke for every expired lease; apply deletes its
/// keys. Each revoke is its own bounded request.
async fn revoke_expired_leases(node: Arc<NodeHandle>, timeout: std::time::Duration) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    loop {
        tick.tick().await;
        let expired = node.lessor.take_expired(REVOKES_PER_CHECK);
        if expired.is_empty() {
            continue;
        }
        // As etcd (issue 15247): expire only as a confirmed leader. Those
        // taken are pushed back and come again while this member leads.
        if let Err(e) = node.confirm_leadership(Deadline::new(timeout, None)).await {
            tracing::debug!(error = %e, "not revoking expired leases: leadership not confirmed");
            continue;
        }
        for id in expired {
            let node = node.clone();
            tokio::spawn(async move {
                let deadline = Deadline::new(timeout, None);
                match node.propose(Internal::LeaseRevoke(LeaseRevokeRequest { id }), deadline).await {
                    Ok(_) | Err(api::EtcdError::LeaseNotFound) => {
                        tracing::debug!(lease = id, "expired lease revoked")
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            });
        }
    }
}

/// How often a member retries publishing its attributes until it succeeds.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// etcd's publish: once running, a member records its name and client URLs
/// through raft, so every member lists them. It returns once the entry is
/// applied here, which also means this member has caught up to it.
async fn publish_attributes(node: Arc<NodeHandle>, cfg: Arc<ServerConfig>) {
    let attrs =
        MemberAttrRequest { id: cfg.member_id, name: cfg.name.clone(), client_urls: cfg.advertise_client_urls.clone() };
    loop {
        if node.state.is_stopped() {
            return;
        }
        let deadline = Deadline::new(cfg.request_timeout(), None);
        match node.propose(Internal::MemberAttr(attrs.clone()), deadline).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

/// Like etcd on graceful shutdown: a leader with peers hands leadership to
/// the most caught-up voter first, so the cluster need not wait an election
/// timeout. Bounded by the request timeout; failing it only costs that wait.
async fn hand_over_leadership(node: &NodeHandle, cfg: &ServerConfig) {
    if node.state.leader() != cfg.member_id || node.members.list().len() < 2 {
        return;
    }
    let deadline = Deadline::new(cfg.request_timeout(), None);
    if let Err(e) = node.transfer_leader(0, deadline).await {
        tracing::warn!(error = %e, "could not hand over leadership before stopping");
        return;
    }
    let moved = deadline
        .run(async {
            while node.state.leader() == cfg.member_id {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
    match moved {
        Ok(()) => tracing::info!(leader = %format!("{:x}", node.state.leader()), "handed over leadership"),
        Err(_) => tracing::warn!("leadership did not move before stopping"),
    }
}
