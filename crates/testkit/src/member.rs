//! `Member`: one `metastore` process of a multi-member test cluster, with its
//! own temp data dir, its client port on `127.0.0.1`, its real peer listener
//! on a private loopback address, and a `FaultProxy` in front of that
//! listener whose address is what the member advertises to its peers.
//!
//! ```text
//!   peer m1 (dials from 127.0.0.12) ──> 127.0.0.1:<proxy0> ──FaultProxy──> 127.0.0.11:<peer0>  m0
//!   client ──────────────────────────> 127.0.0.1:<client0> ─────────────────────────────────────┘
//! ```
//!
//! Invariants:
//! - Ports, addresses, the data dir and the command line are fixed when the
//!   member is created: `restart` reuses all of them, so the member comes back
//!   as itself (the initial-cluster flags are ignored once data exists, as in
//!   etcd).
//! - Every process start appends to one log file (`log_text`), preceded by a
//!   `testkit:` marker line, so a failure message shows every incarnation.
//! - Dropping a `Member` SIGKILLs its process; the proxy is dropped after it.
//! - Nothing here waits without a deadline.

use crate::{kill_child, terminate_child};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proxy::FaultProxy;

/// How long a (re)started member gets to accept connections on its client port.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one `/metrics` request.
const METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to start one member process.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    pub name: String,
    /// The member's private loopback address: its peer listener binds here
    /// and its outgoing peer connections come from here.
    pub peer_ip: Ipv4Addr,
    pub initial_cluster: String,
    /// `new` or `existing`.
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    /// Flags appended after the ones the harness sets.
    pub extra: Vec<String>,
}

/// One member process; see the module docs.
pub struct Member {
    index: usize,
    name: String,
    binary: PathBuf,
    client_port: u16,
    peer_ip: Ipv4Addr,
    peer_port: u16,
    args: Vec<String>,
    starts: usize,
    /// Where the running process's output starts in `log`.
    log_start: u64,
    log: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// METASTORE_FAILPOINTS for the next starts (faults from the first
    /// instant, before the HTTP endpoint serves).
    start_failpoints: String,
    // Field order = drop order: the process dies (Drop below) before the
    // proxy and the temp dir go.
    proxy: FaultProxy,
    _tmp: tempfile::TempDir,
}

/// A port on `ip` that was free a moment ago.
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    crate::free_port_on(ip)
}

impl Member {
    /// Allocates ports, the data dir and the proxy; does not start the process
    /// (the advertised peer URL is known before the member runs, as a
    /// `MemberAdd` needs). `initial_cluster` in `spec` may still be empty;
    /// `set_initial_cluster` fills it before `start`.
    pub fn prepare(binary: &Path, index: usize, spec: MemberSpec) -> Member {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let peer_port = free_port_on(spec.peer_ip);
        let target = SocketAddr::new(IpAddr::V4(spec.peer_ip), peer_port);
        let proxy = FaultProxy::start(target).expect("start peer proxy");
        let mut m = Member {
            index,
            name: spec.name.clone(),
            binary: binary.to_path_buf(),
            client_port: crate::free_port(),
            peer_ip: spec.peer_ip,
            peer_port,
            args: vec![],
            starts: 0,
            log_start: 0,
            log: dir.join("server.log"),
            dir,
            child: None,
            start_failpoints: String::new(),
            proxy,
            _tmp: tmp,
        };
        m.args = m.build_args(&spec);
        m
    }

    fn build_args(&self, spec: &MemberSpec) -> Vec<String> {
        let client = self.client_url();
        let mut a: Vec<String> = vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            self.listen_peer_url(),
            "--initial-advertise-peer-urls".into(),
            self.peer_url(),
            "--initial-cluster".into(),
            spec.initial_cluster.clone(),
            "--initial-cluster-state".into(),
            spec.initial_cluster_state.clone(),
            "--initial-cluster-token".into(),
            spec.initial_cluster_token.clone(),
        ];
        a.extend(spec.extra.iter().cloned());
        a
    }

    /// Replaces `--initial-cluster` and `--initial-cluster-state` (before the
    /// first start of a member created by `prepare`).
    pub fn set_initial_cluster(&mut self, initial_cluster: &str, state: &str) {
        for (flag, value) in [("--initial-cluster", initial_cluster), ("--initial-cluster-state", state)] {
            let i = self.args.iter().position(|a| a == flag).expect("harness sets every initial-cluster flag");
            self.args[i + 1] = value.to_string();
        }
    }

    /// The full command line (after the binary), for diagnostics.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The advertised peer URL: the proxy in front of the real listener.
    pub fn peer_url(&self) -> String {
        format!("http://{}", self.proxy.addr())
    }

    /// Where the process really listens for peers (and dials them from).
    pub fn listen_peer_url(&self) -> String {
        format!("http://{}:{}", self.peer_ip, self.peer_port)
    }

    pub fn peer_ip(&self) -> Ipv4Addr {
        self.peer_ip
    }

    pub fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process exists and has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How the process ended, once it has (None while it runs or if it was
    /// never started).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sets failpoint `name` to `spec` in this member's process (its
    /// `/debug/failpoints` endpoint; debug builds only).
    pub fn set_failpoint(&self, name: &str, spec: &str) {
        crate::metrics::set_failpoint(&self.endpoint(), name, spec);
    }

    /// Failpoints (`name=spec;...`, empty for none) the next starts begin
    /// with, through METASTORE_FAILPOINTS.
    pub fn set_start_failpoints(&mut self, specs: &str) {
        self.start_failpoints = specs.to_string();
    }

    /// Starts the process if it is not running (does not wait for readiness).
    pub fn spawn(&mut self) {
        if self.is_running() {
            return;
        }
        self.child = None;
        self.starts += 1;
        self.log_start = crate::log_len(&self.log);
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open member log");
        let _ = writeln!(
            log,
            "testkit: start #{} of {}: {} {}",
            self.starts,
            self.name,
            self.binary.display(),
            self.args.join(" ")
        );
        let log2 = log.try_clone().expect("clone log handle");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("METASTORE_FAILPOINTS", &self.start_failpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    /// Waits until the client port accepts connections while the process
    /// lives and has said it serves on it ([`crate::says_it_serves`]). Err
    /// explains why not (exit status or timeout).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        let end = Instant::now() + timeout;
        loop {
            match self.child.as_mut().map(|c| c.try_wait()) {
                None => return Err("not started".into()),
                Some(Ok(Some(st))) => return Err(format!("exited with {st}")),
                _ => {}
            }
            if crate::says_it_serves(&self.log, self.log_start, self.client_port)
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!("client port {addr} not open after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the log if the member is not ready within `READY_TIMEOUT`.
    /// A client port that another test's server took between choosing and
    /// binding it (parallel test processes choose independently) is
    /// replaced by a fresh one, twice at most; the peer side is behind the
    /// member's own proxy and private address.
    pub fn expect_ready(&mut self) {
        let mut result = self.wait_ready(READY_TIMEOUT);
        for _ in 0..2 {
            if result.is_ok() || !self.client_port_was_taken() {
                break;
            }
            let (old, new) = (self.client_port, crate::free_port());
            let (from, to) = (format!("127.0.0.1:{old}"), format!("127.0.0.1:{new}"));
            for arg in &mut self.args {
                if arg.contains(&from) && !arg.contains(',') {
                    *arg = arg.replace(&from, &to);
                }
            }
            self.client_port = new;
            self.child = None;
            self.spawn();
            result = self.wait_ready(READY_TIMEOUT);
        }
        if let Err(why) = result {
            panic!(
                "member {} ({}) did not start: {why}\ncommand: {} {}\nlog:\n{}",
                self.name,
                self.endpoint(),
                self.binary.display(),
                self.args.join(" "),
                self.log_text()
            );
        }
    }

    /// Whether the last start failed because its client port was taken.
    fn client_port_was_taken(&self) -> bool {
        let text = self.log_text();
        let since = usize::try_from(self.log_start).unwrap_or(usize::MAX).min(text.len());
        text.get(since..).is_some_and(|t| t.contains("for clients: Address already in use"))
    }

    /// Starts the process (if not running) and waits for its client port.
    pub fn start(&mut self) {
        self.spawn();
        self.expect_ready();
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        kill_child(self.child.take());
    }

    /// SIGTERM and wait for a clean exit; returns the exit code (None if it
    /// had to be killed, died of a signal, or was not running).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        terminate_child(self.child.take()?, timeout)
    }

    /// SIGKILL (if running), then start again on the same ports and data dir
    /// and wait for the client port.
    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    /// One sample from this member's `/metrics`; None if the member is down,
    /// unreachable or does not export `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.child.as_ref()?;
        crate::metrics::fetch_metric(&self.endpoint(), name, METRICS_TIMEOUT)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("client", &self.client_url())
            .field("peer", &self.peer_url())
            .field("listen_peer", &self.listen_peer_url())
            .field("pid", &self.pid())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ip: u8) -> MemberSpec {
        MemberSpec {
            name: name.into(),
            peer_ip: Ipv4Addr::new(127, 0, 0, ip),
            initial_cluster: String::new(),
            initial_cluster_state: "new".into(),
            initial_cluster_token: "tok".into(),
            extra: vec!["--heartbeat-interval".into(), "50".into()],
        }
    }

    #[test]
    fn command_line_names_every_url_and_extra_flags_last() {
        let mut m = Member::prepare(Path::new("/bin/true"), 3, spec("m3", 14));
        m.set_initial_cluster(&format!("m3={}", m.peer_url()), "existing");
        let a = m.args().join(" ");
        assert!(a.starts_with("--name m3 --data-dir "), "{a}");
        assert!(a.contains(&format!("--listen-client-urls {}", m.client_url())));
        assert!(a.contains("--listen-peer-urls http://127.0.0.14:"));
        assert!(a.contains(&format!("--initial-advertise-peer-urls {}", m.peer_url())));
        assert!(a.contains(&format!("--initial-cluster m3={} ", m.peer_url())));
        assert!(a.contains("--initial-cluster-state existing --initial-cluster-token tok"));
        assert!(a.ends_with("--heartbeat-interval 50"), "{a}");
        assert!(m.peer_url().starts_with("http://127.0.0.1:"));
        assert_eq!(m.proxy().target().ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 14)));
        assert_eq!(m.index(), 3);
    }

    #[test]
    fn a_process_that_exits_is_reported_with_its_status() {
        let mut m = Member::prepare(Path::new("/bin/false"), 0, spec("m0", 11));
        m.spawn();
        let err = m.wait_ready(Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("exited"), "{err}");
        assert!(m.log_text().contains("testkit: start #1 of m0"));
        assert!(!m.is_running());
        assert_eq!(m.metric("x"), None);
    }

    #[test]
    fn kill9_and_terminate_stop_the_process() {
        // A stand-in server: ignores the flags and sleeps.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake.sh");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut m = Member::prepare(&script, 0, spec("m0", 11));
        m.spawn();
        assert!(m.is_running());
        let pid = m.pid().unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        m.kill9();
        assert!(!m.is_running());
        assert_eq!(m.pid(), None);
        m.spawn();
        assert!(m.is_running());
        // sleep dies of SIGTERM: no exit code, but it is gone.
        assert_eq!(m.terminate(Duration::from_secs(5)), None);
        assert!(!m.is_running());
        assert_eq!(m.log_text().matches("testkit: start #").count(), 2);
    }

    #[test]
    fn a_client_port_taken_by_someone_else_is_replaced() {
        // A stand-in server that binds its --listen-client-urls port the way
        // MetaStore does and says so, or fails as MetaStore does.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake.py");
        std::fs::write(
            &script,
            r#"#!/usr/bin/env python3
import socket, sys, time
url = sys.argv[sys.argv.index("--listen-client-urls") + 1]
host, port = url.split("//")[1].split(":")
s = socket.socket()
try:
    s.bind((host, int(port)))
except OSError:
    print(f"metastore: listen on {host}:{port} for clients: Address already in use (os error 98)", flush=True)
    sys.exit(1)
s.listen()
print(f"INFO metastore: serving client requests address={host}:{port}", flush=True)
time.sleep(30)
"#,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut m = Member::prepare(&script, 0, spec("m0", 11));
        let taken = m.client_port();
        let _holder = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("hold the port");
        m.start();
        assert_ne!(m.client_port(), taken);
        assert!(m.args().iter().any(|a| a == &m.client_url()), "{:?}", m.args());
        assert!(m.log_text().contains("Address already in use"));
        m.kill9();
    }
}
