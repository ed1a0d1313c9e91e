//! The accept loop every listener runs: client, peer and metrics URLs alike.

use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::call::ClientCert;
use crate::config::Http2Settings;

/// Serves `app` on `listener`, over TLS when `tls` is given, until `stop`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    app: axum::Router,
    http2: Http2Settings,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            let listener = crate::transport::tls::TlsListener::new(listener, config)?;
            serve_on(listener, app, http2, stop, client_cert).await
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            serve_on(listener, app, http2, stop, |_| None).await
        }
    }
}

/// The Common Name of the certificate a TLS client presented. rustls asks
/// for one only with `--client-cert-auth` (`--peer-client-cert-auth` on
/// the peer port, where nothing reads it) and hands it on only once
/// verified.
fn client_cert(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Option<ClientCert> {
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    // A certificate without a Common Name names the user "", as etcd's
    // `AuthInfoFromTLS` does.
    Some(ClientCert(crate::transport::cert_name::common_name(cert.as_ref()).unwrap_or_default().into()))
}

/// The accept loop: every connection is served (HTTP/1.1 or HTTP/2, the
/// latter with Go clients' URL-shaped `:authority` made valid first, see
/// `crate::transport::authority`) with
/// `http2`'s keepalive pings, so a client that vanished without closing its
/// connection is dropped with all it held, and its stream limit. On `stop`,
/// accepting ends and open connections are asked to finish (GOAWAY); the
/// caller bounds how long they may take. `identify` names the client of a
/// connection by its certificate; its requests carry that name.
async fn serve_on<L: axum::serve::Listener>(
    mut listener: L,
    app: axum::Router,
    http2: Http2Settings,
    mut stop: watch::Receiver<bool>,
    identify: fn(&L::Io) -> Option<ClientCert>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
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
        let cert = identify(&io);
        let app = app.clone().map_request(move |mut req: axum::http::Request<_>| {
            if let Some(cert) = &cert {
                req.extensions_mut().insert(cert.clone());
            }
            req
        });
        let service = hyper_util::service::TowerToHyperService::new(app);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(crate::transport::authority::AuthorityFix::new(io)), service)
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
