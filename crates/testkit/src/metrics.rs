//! Reading a member's Prometheus metrics with nothing but `std::net`: one
//! HTTP/1.1 `GET` per call (`Connection: close`), then a lookup of one sample
//! in the text exposition format.
//!
//! Invariants:
//! - Every call is bounded: connecting, writing and each read have a timeout,
//!   and a response larger than `MAX_RESPONSE` is an error, so a hung or
//!   misbehaving server cannot stall a test.
//! - Bodies framed by `Content-Length`, `Transfer-Encoding: chunked` or the
//!   end of the connection are all decoded.
//! - `parse_metric` matches the metric name exactly (`etcd_server_is_leader`
//!   does not match `etcd_server_is_leader_changes`), ignores `#` lines, and
//!   with labels present returns the first sample of that name.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response accepted (metrics pages are a few KB).
const MAX_RESPONSE: usize = 16 << 20;

/// `GET http://<addr><path>`; returns the status code and the decoded body.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    http_request(addr, "GET", path, None, timeout)
}

/// `POST http://<addr><path>` with a JSON body; the status code and the
/// decoded body.
pub fn http_post(addr: &str, path: &str, body: &str, timeout: Duration) -> io::Result<(u16, String)> {
    http_request(addr, "POST", path, Some(body), timeout)
}

fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let sock: SocketAddr =
        addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n")?;
    match body {
        Some(b) => write!(s, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len())?,
        None => write!(s, "\r\n")?,
    }
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE as u64 + 1).read_to_end(&mut raw)?;
    if raw.len() > MAX_RESPONSE {
        return Err(bad("response too large"));
    }
    parse_response(&raw)
}

/// Sets failpoint `name` to `spec` through a member's `/debug/failpoints`
/// endpoint (debug builds); panics if the member refuses.
pub fn set_failpoint(addr: &str, name: &str, spec: &str) {
    let timeout = Duration::from_secs(5);
    let (status, body) = http_request(addr, "PUT", &format!("/debug/failpoints/{name}"), Some(spec), timeout)
        .unwrap_or_else(|e| panic!("set failpoint {name} on {addr}: {e}"));
    assert_eq!(status, 204, "set failpoint {name}={spec} on {addr}: {body}");
}

/// `POST` on a persistent connection, as urllib3 (Patroni, etcd3gw) and
/// most HTTP clients send it: no `Connection: close`, and the call returns
/// as soon as the body is complete by its own framing (`Content-Length` or
/// the last chunk). A response whose body never ends is a timeout error,
/// which is what such a client sees.
pub fn http_post_persistent(addr: &str, path: &str, body: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let sock: SocketAddr =
        addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let deadline = std::time::Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return parse_response(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(done) = complete_response(&raw) {
            return done;
        }
        if raw.len() > MAX_RESPONSE || std::time::Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the response body did not end"));
        }
    }
}

/// The response in `raw` once its body is complete by its own framing.
fn complete_response(raw: &[u8]) -> Option<io::Result<(u16, String)>> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let framed = head.contains("\r\ncontent-length:") || head.contains("\r\ntransfer-encoding:");
    match parse_response(raw) {
        Ok(r) if framed => Some(Ok(r)),
        _ => None,
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Splits a complete HTTP/1.1 response into status code and body.
fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = Some(v.parse::<usize>().map_err(|_| bad("bad content-length"))?);
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n).ok_or_else(|| bad("body shorter than content-length"))?.to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).ok_or_else(|| bad("truncated chunk end"))?;
    }
}

/// The value of the first sample named exactly `name` in Prometheus text.
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.split_once('}') {
                Some((_, v)) => v,
                None => continue,
            }
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            rest
        } else {
            continue; // a longer name with this prefix
        };
        // "value [timestamp]"
        if let Some(v) = value.split_whitespace().next() {
            return match v {
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                _ => v.parse().ok(),
            };
        }
    }
    None
}

/// Fetches `/metrics` from `addr` (`host:port`) and looks up `name`.
pub fn fetch_metric(addr: &str, name: &str, timeout: Duration) -> Option<f64> {
    match http_get(addr, "/metrics", timeout) {
        Ok((200, body)) => parse_metric(&body, name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const PAGE: &str = "# HELP etcd_server_is_leader Whether or not this member is a leader.\n\
        # TYPE etcd_server_is_leader gauge\n\
        etcd_server_is_leader_changes 7\n\
        etcd_server_is_leader 1\n\
        etcd_server_has_leader 0\n\
        grpc_requests{method=\"Range\",code=\"OK\"} 12 1700000000\n\
        big 1.5e3\n";

    #[test]
    fn parses_exact_names_labels_and_floats() {
        assert_eq!(parse_metric(PAGE, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(parse_metric(PAGE, "etcd_server_is_leader_changes"), Some(7.0));
        assert_eq!(parse_metric(PAGE, "etcd_server_has_leader"), Some(0.0));
        assert_eq!(parse_metric(PAGE, "grpc_requests"), Some(12.0));
        assert_eq!(parse_metric(PAGE, "big"), Some(1500.0));
        assert_eq!(parse_metric(PAGE, "etcd_server"), None);
        assert_eq!(parse_metric(PAGE, "missing"), None);
    }

    #[test]
    fn decodes_length_chunked_and_eof_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello trailing";
        assert_eq!(parse_response(r).unwrap(), (200, "hello".into()));
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, "wikipedia".into()));
        let r = b"HTTP/1.1 503 Service Unavailable\r\n\r\nno leader";
        assert_eq!(parse_response(r).unwrap(), (503, "no leader".into()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn fetches_from_a_real_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            let body = PAGE.as_bytes();
            // Split across writes, chunked, as hyper may send it.
            write!(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            for part in body.chunks(40) {
                write!(c, "{:x}\r\n", part.len()).unwrap();
                c.write_all(part).unwrap();
                c.write_all(b"\r\n").unwrap();
            }
            c.write_all(b"0\r\n\r\n").unwrap();
            String::from_utf8(req).unwrap()
        });
        let v = fetch_metric(&addr, "etcd_server_is_leader", Duration::from_secs(5));
        assert_eq!(v, Some(1.0));
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /metrics HTTP/1.1\r\n"), "{req}");
    }

    #[test]
    fn unreachable_server_is_none_not_a_hang() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert_eq!(fetch_metric(&addr, "x", Duration::from_secs(1)), None);
    }
}
