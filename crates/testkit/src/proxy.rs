//! `FaultProxy`: a TCP proxy on loopback that forwards to one target address
//! and injects network faults, so tests can partition real server processes.
//!
//! The proxy tells clients apart by the *source IP* of their connections. On
//! Linux the whole `127.0.0.0/8` is local, so each cluster member listens for
//! (and dials) peers from its own address (`127.0.0.11`, `127.0.0.12`, ...)
//! and `block_source(127.0.0.12)` on member 0's proxy cuts exactly the
//! connections that member 1 made to member 0.
//!
//! ```no_run
//! # use testkit::proxy::FaultProxy;
//! let p = FaultProxy::start("127.0.0.11:2380".parse().unwrap()).unwrap();
//! // advertise format!("http://{}", p.addr()) instead of the real listener
//! p.block_source("127.0.0.12".parse().unwrap()); // cut + refuse that member
//! p.clear(); // back to a plain pipe
//! ```
//!
//! Invariants:
//! - A connection from a blocked source (or any source after `block_all`)
//!   is closed right after `accept`, before anything is forwarded; blocking
//!   also shuts down every existing connection from that source, both ways.
//!   The block check is repeated under the state lock when a connection is
//!   registered, so no connection slips past a concurrent `block_source`.
//! - Resources are bounded by the live connections: one accept thread per
//!   proxy, exactly two copy threads per open connection (one per direction),
//!   each with one `BUF_SIZE` buffer. A connection's entry is removed by the
//!   last of its two copy threads to finish.
//! - Dropping the proxy stops accepting, closes the listener (the port is
//!   free again), shuts down every connection and joins every thread before
//!   `drop` returns: nothing outlives the value.
//! - A clean EOF in one direction is forwarded as a half-close
//!   (`shutdown(Write)`) and the other direction keeps flowing; an I/O error
//!   in either direction closes both.
//! - `delay(d)` holds every forwarded chunk for `d` before writing it, in both
//!   directions, for connections old and new.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the proxy tries to reach its target before dropping the client
/// connection (the target is on loopback: a live one answers at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes moved per read; each copy thread owns one buffer of this size.
const BUF_SIZE: usize = 16 * 1024;
/// How long `drop` waits for copy threads whose join handles were already
/// released (their connection finished on its own) to run to their end.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// A fault-injecting TCP proxy; see the module docs.
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    stop: AtomicBool,
    /// Copy threads started and not yet finished.
    live_threads: AtomicUsize,
    /// `delay` in nanoseconds (read on every chunk, so kept outside the lock).
    delay_nanos: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    blocked: HashSet<IpAddr>,
    block_all: bool,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    accepted: u64,
    refused: u64,
}

impl State {
    fn is_blocked(&self, ip: IpAddr) -> bool {
        self.block_all || self.blocked.contains(&ip)
    }
}

struct Conn {
    source: IpAddr,
    /// Clones of the two sockets, kept only to shut them down from outside.
    client: TcpStream,
    upstream: TcpStream,
    threads: Vec<JoinHandle<()>>,
    /// Copy threads of this connection still running (2, 1, then removed).
    running: u8,
}

impl Conn {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections forwarded since start.
    pub accepted: u64,
    /// Connections closed at accept because their source was blocked.
    pub refused: u64,
    /// Connections open right now.
    pub open: usize,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards to `target`.
    pub fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), target)
    }

    /// Listens on `listen` (port 0 picks a free one) and forwards to `target`.
    pub fn start_on(listen: SocketAddr, target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            stop: AtomicBool::new(false),
            live_threads: AtomicUsize::new(0),
            delay_nanos: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, s))?;
        Ok(FaultProxy { addr, target, shared, acceptor: Some(acceptor) })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Refuses new connections from `ip` and cuts the existing ones.
    pub fn block_source(&self, ip: IpAddr) {
        let mut st = self.shared.lock();
        st.blocked.insert(ip);
        for c in st.conns.values().filter(|c| c.source == ip) {
            c.cut();
        }
    }

    /// Lets `ip` connect again (existing cut connections stay closed).
    pub fn unblock_source(&self, ip: IpAddr) {
        self.shared.lock().blocked.remove(&ip);
    }

    /// Refuses every new connection and cuts every existing one.
    pub fn block_all(&self) {
        let mut st = self.shared.lock();
        st.block_all = true;
        for c in st.conns.values() {
            c.cut();
        }
    }

    /// Removes every fault: no blocked source, no `block_all`, no delay.
    pub fn clear(&self) {
        let mut st = self.shared.lock();
        st.blocked.clear();
        st.block_all = false;
        self.shared.delay_nanos.store(0, Ordering::Relaxed);
    }

    /// Holds every forwarded chunk for `d` (zero turns the delay off).
    pub fn delay(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Cuts every open connection without blocking new ones (a network blip).
    pub fn cut_connections(&self) {
        for c in self.shared.lock().conns.values() {
            c.cut();
        }
    }

    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.shared.lock().is_blocked(ip)
    }

    /// Source IPs of the open connections (one entry per connection).
    pub fn sources(&self) -> Vec<IpAddr> {
        let st = self.shared.lock();
        let mut v: Vec<IpAddr> = st.conns.values().map(|c| c.source).collect();
        v.sort();
        v
    }

    pub fn stats(&self) -> ProxyStats {
        let st = self.shared.lock();
        ProxyStats { accepted: st.accepted, refused: st.refused, open: st.conns.len() }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).field("target", &self.target).finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A copy thread never panics while holding the lock; if one did, the
        // state is still consistent enough to shut everything down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = incoming else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let source = match client.peer_addr() {
            Ok(a) => a.ip(),
            Err(_) => continue,
        };
        {
            let mut st = shared.lock();
            if st.is_blocked(source) {
                st.refused += 1;
                continue; // `client` dropped: closed
            }
        }
        let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
            continue; // target down: the client sees its connection closed
        };
        register(&shared, source, client, upstream);
    }
    // `listener` is dropped here: the port is released.
}

fn register(shared: &Arc<Shared>, source: IpAddr, client: TcpStream, upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (client.try_clone(), upstream.try_clone(), upstream.try_clone(), client.try_clone());
    let (Ok(c_read), Ok(u_write), Ok(u_read), Ok(c_write)) = clones else {
        return;
    };
    let mut st = shared.lock();
    if st.is_blocked(source) {
        // Blocked while we were connecting upstream.
        st.refused += 1;
        return;
    }
    let id = st.next_id;
    st.next_id += 1;
    st.accepted += 1;
    st.conns.insert(id, Conn { source, client, upstream, threads: Vec::with_capacity(2), running: 0 });
    for (from, to, dir) in [(c_read, u_write, "up"), (u_read, c_write, "down")] {
        let s = shared.clone();
        shared.live_threads.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new().name(format!("proxy-{id}-{dir}")).spawn(move || {
            pump(&s, from, to);
            finish(&s, id);
        });
        let conn = st.conns.get_mut(&id).expect("connection registered above");
        match spawned {
            Ok(h) => {
                conn.threads.push(h);
                conn.running += 1;
            }
            Err(_) => {
                shared.live_threads.fetch_sub(1, Ordering::SeqCst);
                conn.cut();
            }
        }
    }
    if st.conns.get(&id).is_some_and(|c| c.running == 0) {
        st.conns.remove(&id);
    }
}

/// Copies `from` -> `to` until EOF or error; see the module invariants.
fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let d = shared.delay();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
        if shared.stop.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn finish(shared: &Shared, id: u64) {
    {
        let mut st = shared.lock();
        if let Some(c) = st.conns.get_mut(&id) {
            c.running = c.running.saturating_sub(1);
            if c.running == 0 {
                // Dropping the handles detaches both threads, which are past
                // their last use of any socket.
                st.conns.remove(&id);
            }
        }
    }
    shared.live_threads.fetch_sub(1, Ordering::SeqCst);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop sees `stop` and drops the listener.
        let wake_addr = if self.addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&wake_addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let conns: Vec<Conn> = self.shared.lock().conns.drain().map(|(_, c)| c).collect();
        let mut handles = Vec::new();
        for mut c in conns {
            c.cut();
            handles.append(&mut c.threads);
        }
        for h in handles {
            let _ = h.join();
        }
        let end = Instant::now() + DROP_GRACE;
        while self.shared.live_threads.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait_until;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// An echo server: each connection gets its bytes back; the listener
    /// thread stops when the returned flag is set and a connection arrives.
    fn echo_server() -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, stop, h)
    }

    fn stop_echo(addr: SocketAddr, stop: Arc<AtomicBool>, h: JoinHandle<()>) {
        stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(addr);
        h.join().unwrap();
    }

    fn connect(p: &FaultProxy) -> TcpStream {
        let s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends `msg` and reads the echo; Err if the connection is closed or broken.
    fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    /// True when the peer closed the connection (EOF or reset).
    fn is_closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(0) | Err(_))
    }

    #[test]
    fn forwards_both_ways_with_large_payload() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        let mut s = connect(&p);
        assert_eq!(roundtrip(&mut s, b"hello").unwrap(), b"hello");
        // Bigger than the copy buffer and the socket buffers: needs both
        // directions flowing at once.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = s.try_clone().unwrap();
        let data = big.clone();
        let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
        let mut got = vec![0u8; big.len()];
        s.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        assert!(got == big, "payload corrupted in transit");
        assert_eq!(p.sources(), vec![LOOPBACK]);
        assert_eq!(p.stats().accepted, 1);
        drop(s);
        drop(p);
        stop_echo(addr, stop, h);
    }

    #[test]
    fn half_close_is_forwarded() {
        // Upstream reads until EOF, then answers with the byte count.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            c.write_all(all.len().to_string().as_bytes()).unwrap();
        });
        let p = FaultProxy::start(addr).unwrap();
        let mut s = connect(&p);
        s.write_all(&[7u8; 100_000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "100000");
        server.join().unwrap();
    }

    #[test]
    fn block_source_cuts_existing_and_refuses_new_until_cleared() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        let mut s = connect(&p);
        assert_eq!(roundtrip(&mut s, b"a").unwrap(), b"a");

        // Blocking some other source changes nothing for us.
        p.block_source("127.0.0.99".parse().unwrap());
        assert_eq!(roundtrip(&mut s, b"b").unwrap(), b"b");
        let mut other = connect(&p);
        assert_eq!(roundtrip(&mut other, b"c").unwrap(), b"c");
        drop(other);

        // Blocking our source cuts the live connection...
        p.block_source(LOOPBACK);
        assert!(p.is_blocked(LOOPBACK));
        assert!(is_closed(&mut s), "existing connection survived the block");
        // ...and every new one is closed before anything gets through.
        for _ in 0..3 {
            let mut n = connect(&p);
            let r = roundtrip(&mut n, b"x");
            assert!(r.is_err(), "blocked source got an answer: {r:?}");
        }
        assert!(wait_until(Duration::from_secs(5), || p.stats().open == 0));
        assert!(p.stats().refused >= 3);

        // Unblocking restores service.
        p.unblock_source(LOOPBACK);
        let mut n = connect(&p);
        assert_eq!(roundtrip(&mut n, b"y").unwrap(), b"y");

        // block_all then clear.
        p.block_all();
        assert!(is_closed(&mut n));
        let mut m = connect(&p);
        assert!(roundtrip(&mut m, b"z").is_err());
        p.clear();
        assert!(!p.is_blocked(LOOPBACK));
        let mut m = connect(&p);
        assert_eq!(roundtrip(&mut m, b"ok").unwrap(), b"ok");
        drop((m, n, s));
        drop(p);
        stop_echo(addr, stop, h);
    }

    #[test]
    fn cut_connections_does_not_block() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        let mut s = connect(&p);
        assert_eq!(roundtrip(&mut s, b"1").unwrap(), b"1");
        p.cut_connections();
        assert!(is_closed(&mut s));
        let mut s = connect(&p);
        assert_eq!(roundtrip(&mut s, b"2").unwrap(), b"2");
        drop(s);
        drop(p);
        stop_echo(addr, stop, h);
    }

    #[test]
    fn delay_holds_chunks_and_clear_removes_it() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        let mut s = connect(&p);
        // Generous numbers: this checks that the delay is applied and then
        // removed, not how fast loopback is on a loaded machine.
        let d = Duration::from_millis(400);
        p.delay(d);
        let t = Instant::now();
        assert_eq!(roundtrip(&mut s, b"slow").unwrap(), b"slow");
        // One delay on the way up, one on the way down.
        assert!(t.elapsed() >= 2 * d, "{:?}", t.elapsed());
        p.clear();
        let t = Instant::now();
        assert_eq!(roundtrip(&mut s, b"fast").unwrap(), b"fast");
        assert!(t.elapsed() < d, "delay still applied after clear: {:?}", t.elapsed());
        drop(s);
        drop(p);
        stop_echo(addr, stop, h);
    }

    #[test]
    fn target_down_closes_client() {
        // A port with nothing listening.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let p = FaultProxy::start(dead).unwrap();
        let mut s = connect(&p);
        assert!(roundtrip(&mut s, b"x").is_err());
        assert_eq!(p.stats().open, 0);
    }

    #[test]
    fn drop_joins_threads_closes_connections_and_frees_port() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        let port = p.port();
        let shared = p.shared.clone();
        let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(&p)).collect();
        for c in &mut clients {
            assert_eq!(roundtrip(c, b"hi").unwrap(), b"hi");
        }
        // One connection closed by the client before the drop: its threads
        // end on their own and release their entry.
        clients.pop();
        assert!(wait_until(Duration::from_secs(5), || {
            p.stats().open == 7 && shared.live_threads.load(Ordering::SeqCst) == 14
        }));
        drop(p);
        assert_eq!(shared.live_threads.load(Ordering::SeqCst), 0);
        assert!(shared.lock().conns.is_empty());
        for c in &mut clients {
            assert!(is_closed(c), "a connection outlived its proxy");
        }
        // The listener is gone: the port can be bound again, and connecting
        // to it is refused.
        TcpListener::bind(("127.0.0.1", port)).expect("port still held after drop");
        stop_echo(addr, stop, h);
    }

    #[test]
    fn many_short_connections_do_not_accumulate() {
        let (addr, stop, h) = echo_server();
        let p = FaultProxy::start(addr).unwrap();
        for i in 0..50u8 {
            let mut s = connect(&p);
            assert_eq!(roundtrip(&mut s, &[i]).unwrap(), [i]);
        }
        assert!(wait_until(Duration::from_secs(5), || {
            p.stats().open == 0 && p.shared.live_threads.load(Ordering::SeqCst) == 0
        }));
        assert_eq!(p.stats().accepted, 50);
        drop(p);
        stop_echo(addr, stop, h);
    }
}
