//! Connecting to a peer's URL and the calls a member makes on another.

use std::net::IpAddr;
use std::time::Duration;

use api::pb::metastorepb::{peer_client::PeerClient, MembersRequest, MembersResponse};
use tonic::transport::{Channel, Endpoint};

use super::MAX_PEER_MESSAGE;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer request other than the raft streams (members, forwarded lease and
/// promote calls) gives up after this long.
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel to `url`, from `source` when given (the IP this member listens
/// on for peers), so peers and fault-injecting proxies see who connects.
pub fn endpoint(url: &str, source: Option<IpAddr>) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        // A peer that vanished without closing the connection (a cut
        // network) is noticed by unanswered pings, not waited on forever.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .local_address(source))
}

pub async fn connect(url: &str, source: Option<IpAddr>) -> Result<PeerClient<Channel>, tonic::transport::Error> {
    let channel = endpoint(url, source)?.connect().await?;
    Ok(PeerClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE).max_encoding_message_size(MAX_PEER_MESSAGE))
}

/// Asks the members at `urls` (first that answers) for the membership.
pub async fn fetch_members(urls: &[String], source: Option<IpAddr>) -> Result<MembersResponse, String> {
    let mut last = String::from("no peer URLs to ask");
    for url in urls {
        match connect(url, source).await {
            Ok(mut c) => match c.members(with_timeout(MembersRequest {}, PEER_REQUEST_TIMEOUT)).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(e) => last = format!("{url}: {}", e.message()),
            },
            Err(e) => last = format!("{url}: {e}"),
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
