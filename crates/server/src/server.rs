//! Wiring: open the engine and the raft node, serve clients, peers and
//! metrics on the given listeners until the shutdown future resolves (or the
//! node fails), then let in-flight requests finish and stop the node, which
//! syncs the WAL. What each part does lives in its module; this file only
//! connects them, as etcd's `embed/etcd.go` does.

use std::future::Future;
use std::sync::Arc;

use api::pb::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use api::pb::metastorepb::peer_server::PeerServer;
use api::pb::v3electionpb::election_server::ElectionServer;
use api::pb::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

use crate::api::watch::WatchService;
use crate::api::{
    auth::AuthService, cluster::ClusterService, election::ElectionService, kv::KvService, lease::LeaseService,
    lock::LockService, maintenance::MaintenanceService, Ctx,
};
use crate::config::{ServerConfig, GRPC_OVERHEAD_BYTES};
use crate::maintenance::{auto_compaction, corrupt, lease_expiry};
use crate::node::{self, engine, lifecycle, NodeError};
use crate::transport::listen::serve;
use crate::transport::peer::client::Dialer;
use crate::transport::peer::leader::LeaderLink;
use crate::transport::peer::sender::PeerTransport;
use crate::transport::peer::service::PeerService;
use crate::transport::tls::{TlsError, TlsFiles};

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Engine(#[from] engine::OpenError),
    #[error("serving clients: {0}")]
    Serve(#[from] std::io::Error),
    #[error("the raft node stopped unexpectedly; see the log")]
    NodeFailed,
    #[error("{0}")]
    Identity(#[from] crate::node::identity::IdentityError),
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("{0}")]
    Corrupt(#[from] corrupt::CorruptError),
    #[error("data dir {} already holds a member", .0.display())]
    Exists(std::path::PathBuf),
    #[error("a snapshot restore starts a new cluster: --initial-cluster-state must be new")]
    JoinRestore,
}

impl ServerError {
    /// True for a usage error (exit code 2): a snapshot file to restore
    /// that is unusable, a data dir an offline restore cannot take; not a
    /// failure of the member.
    pub fn is_usage_error(&self) -> bool {
        matches!(self, ServerError::Node(NodeError::Backup(_)) | ServerError::Exists(_))
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

/// A listener with the TLS settings it serves with (None: plain TCP).
type Bound = (TcpListener, Option<Arc<rustls::ServerConfig>>);

/// The TLS settings an https listener of `side` serves with.
fn tls_for(
    https: bool,
    files: &Option<TlsFiles>,
    side: &'static str,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    if !https {
        return Ok(None);
    }
    let files = files.as_ref().ok_or(TlsError::NoFiles(side))?;
    Ok(Some(files.server_config()?))
}

/// Pairs each listener with its TLS settings, so bad certificate files stop
/// the start before anything else happens.
fn with_tls(
    listeners: Vec<(TcpListener, bool)>,
    files: &Option<TlsFiles>,
    side: &'static str,
) -> Result<Vec<Bound>, ServerError> {
    listeners.into_iter().map(|(l, https)| Ok((l, tls_for(https, files, side)?))).collect()
}

/// `metastore snapshot restore`: bootstraps the data dir of `cfg` from
/// `cfg.restore_snapshot` as a first start would, and stops (etcdutl's
/// `snapshot restore`). A data dir that already holds a member is refused.
pub async fn restore_offline(mut cfg: ServerConfig) -> Result<(), ServerError> {
    if cfg.member_dir().join("wal").is_dir() {
        return Err(ServerError::Exists(cfg.member_dir()));
    }
    if cfg.join_existing {
        return Err(ServerError::JoinRestore);
    }
    let restore = check_restore(&cfg).await?;
    let engine = engine::open(&cfg)?;
    crate::node::identity::resolve(&mut cfg).await?;
    tokio::task::spawn_blocking(move || node::bootstrap::open(&cfg, engine, restore).map(drop))
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))??;
    Ok(())
}

/// `node::bootstrap::check_restore` off the async workers (it reads the
/// whole file twice).
async fn check_restore(cfg: &ServerConfig) -> Result<Option<crate::maintenance::backup::RestoreSource>, ServerError> {
    let cfg = cfg.clone();
    Ok(tokio::task::spawn_blocking(move || node::bootstrap::check_restore(&cfg))
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))??)
}

/// What the serving tasks share: the stop signal, and whether this member
/// is ready for clients.
struct Serving {
    stop: watch::Receiver<bool>,
    ready: watch::Receiver<bool>,
}

pub async fn run(
    mut cfg: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let client = with_tls(listeners.client, &cfg.client_tls, "client")?;
    let peer = with_tls(listeners.peer, &cfg.peer_tls, "peer")?;
    let metrics = with_tls(listeners.metrics, &cfg.client_tls, "metrics")?;
    crate::metrics::init(cfg.metrics_extensive);
    let restore = check_restore(&cfg).await?;
    let engine = engine::open(&cfg)?;
    crate::node::identity::resolve(&mut cfg).await?;
    let cfg = Arc::new(cfg);
    let start_cfg = cfg.clone();
    let rt = tokio::runtime::Handle::current();
    let dialer = Dialer::new(&cfg)?;
    let peer_dialer = dialer.clone();
    let heartbeat = cfg.heartbeat;
    let transport: node::TransportFactory =
        Box::new(move |node| Box::new(PeerTransport::new(rt, peer_dialer, &node, heartbeat)));
    let node = tokio::task::spawn_blocking(move || node::start(&start_cfg, engine, restore, transport))
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

    let (stop_tx, stop) = watch::channel(false);
    let (ready_tx, ready) = watch::channel(false);
    let serving = Serving { stop, ready };
    let mut servers = serve_clients(&ctx, client, &serving);
    servers.extend(serve_metrics(&ctx, metrics, &serving));
    servers.extend(serve_peers(&ctx, peer, &serving));

    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<corrupt::CorruptError>(1);
    let publish = tokio::spawn({
        let (node, cfg, ctx) = (node.clone(), cfg.clone(), ctx.clone());
        async move {
            lifecycle::publish_attributes(node, cfg.clone()).await;
            if cfg.initial_corrupt_check {
                if let Err(e) = corrupt::initial_check(&ctx).await {
                    tracing::error!(error = %e, "initial corruption check failed");
                    let _ = fatal_tx.send(e).await;
                    return;
                }
            }
            tracing::info!("ready to serve client requests");
            let _ = ready_tx.send(true);
        }
    });
    let corrupt_check = cfg.corrupt_check_interval.map(|every| tokio::spawn(corrupt::periodic(ctx.clone(), every)));
    let expiry = tokio::spawn(lease_expiry::revoke_expired_leases(node.clone(), cfg.request_timeout()));
    let compactor =
        cfg.auto_compaction.map(|mode| tokio::spawn(auto_compaction::run(node.clone(), mode, cfg.request_timeout())));

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
        lifecycle::hand_over_leadership(&node, &cfg).await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
    expiry.abort();
    for task in [compactor, corrupt_check].into_iter().flatten() {
        task.abort();
    }
    publish.abort();
    let _ = stop_tx.send(true);
    finish_serving(servers).await?;
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

/// The client port: etcd's gRPC services, plain HTTP and the JSON gateway
/// side by side, as in etcd. Like etcd, clients are served only once this
/// member has published itself through raft, i.e. caught up with the
/// cluster.
fn serve_clients(ctx: &Ctx, listeners: Vec<Bound>, serving: &Serving) -> Vec<JoinHandle<std::io::Result<()>>> {
    let max_recv = ctx.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut servers = Vec::new();
    for (listener, tls) in listeners {
        let grpc =
            tonic::service::Routes::new(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(
                    MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(max_recv),
                )
                .add_service(ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(WatchServer::new(WatchService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(LockServer::new(LockService::new(ctx.clone())).max_decoding_message_size(max_recv))
                .add_service(
                    ElectionServer::new(ElectionService::new(ctx.clone())).max_decoding_message_size(max_recv),
                );
        let range = crate::api::kv::RangeRoute::new(Arc::new(KvService::new(ctx.clone())), max_recv);
        let grpc = grpc
            .into_axum_router()
            .route_service(crate::api::kv::RANGE_PATH, range)
            .layer(axum::middleware::from_fn_with_state(ctx.clone(), crate::api::call::grpc_layer))
            .layer(axum::middleware::map_response(crate::api::http::etcd_grpc_errors));
        let app = grpc.merge(crate::api::http::router(ctx.clone())).merge(crate::api::gateway::router(ctx.clone()));
        let (stop, http2) = (serving.stop.clone(), ctx.cfg.http2);
        let mut early_stop = serving.stop.clone();
        let mut ready = serving.ready.clone();
        servers.push(tokio::spawn(async move {
            tokio::select! {
                _ = ready.wait_for(|r| *r) => {}
                _ = early_stop.wait_for(|s| *s) => return Ok(()),
            }
            serve(listener, tls, app, http2, stop).await
        }));
    }
    servers
}

/// `--listen-metrics-urls`: /metrics, /health and /version, from the start.
fn serve_metrics(ctx: &Ctx, listeners: Vec<Bound>, serving: &Serving) -> Vec<JoinHandle<std::io::Result<()>>> {
    listeners
        .into_iter()
        .map(|(listener, tls)| {
            let app = crate::api::http::router(ctx.clone());
            tokio::spawn(serve(listener, tls, app, ctx.cfg.http2, serving.stop.clone()))
        })
        .collect()
}

/// The peer port: raft messages, snapshots and membership, from the start
/// (a member must take part in raft before it can catch up).
fn serve_peers(ctx: &Ctx, listeners: Vec<Bound>, serving: &Serving) -> Vec<JoinHandle<std::io::Result<()>>> {
    let limit = crate::transport::peer::message_limit(ctx.cfg.max_request_bytes);
    listeners
        .into_iter()
        .map(|(listener, tls)| {
            let routes = tonic::service::Routes::new(
                PeerServer::new(PeerService::new(ctx.clone()))
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            );
            tokio::spawn(serve(listener, tls, routes.into_axum_router(), ctx.cfg.http2, serving.stop.clone()))
        })
        .collect()
}

/// Waits for the serving tasks after the stop signal. Idle client
/// connections may stay open after GOAWAY; in-flight requests get a bounded
/// grace period, then the rest is closed.
async fn finish_serving(servers: Vec<JoinHandle<std::io::Result<()>>>) -> Result<(), ServerError> {
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
    Ok(())
}
