//! Request deadlines: the earlier of the server's request timeout and the
//! client's own gRPC deadline (`grpc-timeout` header). Every wait in a request
//! path uses one, so nothing waits forever.

use std::time::Duration;

use api::EtcdError;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    /// True when the client's deadline is the binding one.
    client: bool,
}

impl Deadline {
    pub fn new(server_timeout: Duration, client_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        match client_timeout {
            Some(c) if c <= server_timeout => Deadline { at: now + c, client: true },
            _ => Deadline { at: now + server_timeout, client: false },
        }
    }

    pub fn from_request<T>(req: &tonic::Request<T>, server_timeout: Duration) -> Self {
        Self::new(server_timeout, client_timeout(req))
    }

    /// The error to report when the deadline passes.
    pub fn expired(&self) -> EtcdError {
        if self.client {
            EtcdError::DeadlineExceeded
        } else {
            EtcdError::Timeout
        }
    }

    /// Waits for `fut` until the deadline.
    pub async fn run<F: std::future::Future>(&self, fut: F) -> Result<F::Output, EtcdError> {
        tokio::time::timeout_at(self.at, fut).await.map_err(|_| self.expired())
    }
}

/// The client's own deadline (`grpc-timeout`), if it set one.
pub fn client_timeout<T>(req: &tonic::Request<T>) -> Option<Duration> {
    req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout)
}

/// [`client_timeout`] from the request's HTTP headers (gRPC metadata are
/// HTTP/2 headers; the gateway forwards a `Grpc-Timeout` header).
pub fn client_timeout_of(headers: &axum::http::HeaderMap) -> Option<Duration> {
    headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout)
}

/// Parses gRPC's `grpc-timeout` (at most 8 digits and a unit: H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }

    #[tokio::test]
    async fn binding_deadline_picks_error() {
        let d = Deadline::new(Duration::from_secs(7), Some(Duration::from_millis(10)));
        assert_eq!(d.run(std::future::pending::<()>()).await, Err(EtcdError::DeadlineExceeded));
        let d = Deadline::new(Duration::from_millis(10), Some(Duration::from_secs(7)));
        assert_eq!(d.run(std::future::pending::<()>()).await, Err(EtcdError::Timeout));
    }
}
