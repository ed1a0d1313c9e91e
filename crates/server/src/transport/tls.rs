//! TLS on the client and peer ports, as etcd's `--cert-file`, `--key-file`,
//! `--trusted-ca-file`, `--client-cert-auth` and their `--peer-*` twins.
//!
//! Server side, [`TlsListener`] hands axum connections whose handshake is
//! done: a task accepts TCP connections and runs each handshake in a task of
//! its own (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]), so a slow or silent client delays nobody else.
//! Client side (a member dialing its peers), [`TlsFiles::client_config`]
//! gives tonic the CA to trust and this member's certificate.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Handshakes in flight per listener; more connections wait in the kernel's
/// accept queue.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of one side's TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    /// Require a certificate signed by `trusted_ca` from every client.
    pub client_cert_auth: bool,
}

/// Why TLS settings could not be loaded; the member does not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("reading certificates from {}: {source}", .path.display())]
    Certificates { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{}: no PEM certificate in it", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    TrustedCa { path: PathBuf, source: rustls::Error },
    #[error("reading the private key {}: {source}", .path.display())]
    PrivateKey { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{} and {}: {source}", .cert.display(), .key.display())]
    KeyPair { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("{0}")]
    Protocols(rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("--client-cert-auth needs a trusted CA file (--trusted-ca-file)")]
    ClientAuthWithoutCa,
    #[error("https peer URLs need a trusted CA file (--peer-trusted-ca-file)")]
    PeerWithoutCa,
    #[error("an https {0} URL without a cert and key")]
    NoFiles(&'static str),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |source| TlsError::Certificates { path: path.clone(), source };
    let certs = CertificateDer::pem_file_iter(path).map_err(bad)?.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.clone() });
    }
    Ok(certs)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source })
}

impl TlsFiles {
    fn roots(&self) -> Result<Option<RootCertStore>, TlsError> {
        let Some(ca) = &self.trusted_ca else { return Ok(None) };
        let mut roots = RootCertStore::empty();
        for cert in certs(ca)? {
            roots.add(cert).map_err(|source| TlsError::TrustedCa { path: ca.clone(), source })?;
        }
        Ok(Some(roots))
    }

    /// The server side: this member's certificate, client certificates
    /// required (and checked against the trusted CA) with
    /// `client_cert_auth`, ALPN h2 for gRPC and http/1.1 for the HTTP
    /// endpoints that share the port.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|source| TlsError::PrivateKey { path: self.key.clone(), source })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocols)?;
        let builder = if self.client_cert_auth {
            let roots = self.roots()?.ok_or(TlsError::ClientAuthWithoutCa)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|source| TlsError::KeyPair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side, for dialing peers: trust the CA, present this
    /// member's certificate.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let ca = self.trusted_ca.as_ref().ok_or(TlsError::PeerWithoutCa)?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }
}

/// A listener whose connections have completed a TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor_task = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local, acceptor_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, addr) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: retry after a pause
                // instead of spinning.
                tracing::warn!(error = %e, "accepting a TLS connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    let _ = ready.send((tls, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, client = %addr, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
