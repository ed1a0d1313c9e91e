//! Connecting to a peer's URL and the calls a member makes on another.

use std::net::IpAddr;
use std::time::Duration;

use api::pb::metastorepb::{peer_client::PeerClient, MembersRequest, MembersResponse};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer request other than the raft streams (members, forwarded lease and
/// promote calls) gives up after this long.
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How this member dials its peers: from the IP it listens on for peers
/// (when it names one), so peers and fault-injecting proxies see who
/// connects; over TLS to https URLs (`--peer-cert-file` and the rest).
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    pub source: Option<IpAddr>,
    pub tls: Option<ClientTlsConfig>,
    /// Largest message sent or received ([`super::message_limit`]; 0: the
    /// least, [`super::MAX_PEER_MESSAGE`]).
    pub max_message: usize,
}

impl Dialer {
    pub fn new(cfg: &crate::config::ServerConfig) -> Result<Dialer, crate::transport::tls::TlsError> {
        let tls = cfg.peer_tls.as_ref().map(|t| t.client_config()).transpose()?;
        Ok(Dialer { source: cfg.peer_source_ip, tls, max_message: super::message_limit(cfg.max_request_bytes) })
    }
}

/// A channel to `url`, as `dialer` says.
pub fn endpoint(url: &str, dialer: &Dialer) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        // A peer that vanished without closing the connection (a cut
        // network) is noticed by unanswered pings, not waited on forever.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .local_address(dialer.source);
    match &dialer.tls {
        Some(tls) if url.starts_with("https://") => endpoint.tls_config(tls.clone()),
        _ => Ok(endpoint),
    }
}

pub async fn connect(url: &str, dialer: &Dialer) -> Result<PeerClient<Channel>, tonic::transport::Error> {
    let channel = endpoint(url, dialer)?.connect().await?;
    let limit = dialer.max_message.max(super::MAX_PEER_MESSAGE);
    Ok(PeerClient::new(channel).max_decoding_message_size(limit).max_encoding_message_size(limit))
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    #[error("no peer URLs to ask")]
    NoUrls,
    #[error("{url}: {source}")]
    Connect { url: String, source: tonic::transport::Error },
    #[error("{url}: {}", .status.message())]
    Call { url: String, status: tonic::Status },
}

/// Asks the members at `urls` (first that answers) for the membership; the
/// error is the last URL's.
pub async fn fetch_members(urls: &[String], dialer: &Dialer) -> Result<MembersResponse, PeerCallError> {
    let mut last = PeerCallError::NoUrls;
    for url in urls {
        match connect(url, dialer).await {
            Ok(mut c) => match c.members(with_timeout(MembersRequest {}, PEER_REQUEST_TIMEOUT)).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) => last = PeerCallError::Call { url: url.clone(), status },
            },
            Err(source) => last = PeerCallError::Connect { url: url.clone(), source },
        }
    }
    Err(last)
}

/// A request that gives up after `timeout` (the raft stream has none: it
/// lives as long as the connection).
pub fn with_timeout<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}
