//! Test helpers that run real server processes on loopback: MetaStore members
//! and Debian's etcd, each with its own temporary data dir and free ports,
//! killed when dropped. Tests wait on conditions with deadlines, not sleeps.

pub mod certs;
pub mod cluster;
pub mod linearizability;
pub mod member;
pub mod metrics;
pub mod proxy;

pub use cluster::Cluster;
pub use proxy::FaultProxy;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST)
}

/// A port on `ip` that was free a moment ago, chosen below Linux's ephemeral
/// range (32768-60999): ports the kernel hands out for outgoing connections
/// (clients, peers) then never collide with a server about to bind it.
/// Parallel test processes start from different points (pid, time) and
/// every candidate is checked by binding it.
/// Whether the MetaStore process writing `log` has said, after byte
/// `from`, that it serves clients on `port`. A port that merely accepts
/// connections may belong to another test's server that picked the same
/// free port (parallel test processes choose independently); our process
/// then fails to bind it and exits, and the retry takes fresh ports. The line
/// is logged at info level: servers under test keep `--log-level` at info or
/// below.
pub fn says_it_serves(log: &Path, from: u64, port: u16) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return false;
    };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut text).is_err() {
        return false;
    }
    // Console (`address=...`) and JSON (`"address":"..."`) log formats.
    let field = format!("address=127.0.0.1:{port}");
    let json = format!(r#""address":"127.0.0.1:{port}""#);
    text.lines().any(|l| {
        l.contains("serving client requests") && (l.contains(&json) || l.split_whitespace().any(|w| w == field))
    })
}

/// Writes into `dir` a wrapper of Debian's etcd that prints the line
/// [`says_it_serves`] waits for (etcd's own readiness is then checked by
/// connecting), so a [`cluster::Cluster`] can run etcd members; returns its
/// path.
pub fn etcd_member_binary(dir: &Path) -> PathBuf {
    let path = dir.join("etcd");
    std::fs::write(
        &path,
        "#!/bin/sh\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --listen-client-urls ]; then\n    \
         echo \"etcd wrapper: serving client requests address=${a#http://}\"\n  fi\n  prev=$a\ndone\n\
         exec /usr/bin/etcd \"$@\"\n",
    )
    .expect("write the etcd wrapper");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

/// Bytes in `path` now (0 if missing): where a restarted process's output
/// starts in a log that is appended to.
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

pub fn free_port_on(ip: std::net::Ipv4Addr) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id().wrapping_mul(7919).wrapping_add(nanos);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(104_729)) % SPAN) as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0 (is {ip} a local address?): {e}"));
    l.local_addr().expect("local addr").port()
}

/// SIGKILL and reap.
pub(crate) fn kill_child(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// SIGTERM, then wait up to `timeout` for the exit code; SIGKILL after that
/// (None: killed, or ended by a signal).
pub(crate) fn terminate_child(mut c: Child, timeout: Duration) -> Option<i32> {
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(st)) = c.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_child(Some(c));
    None
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MetaStore,
    Etcd,
}

/// One server process. The data dir outlives restarts; the process does not
/// outlive the value.
pub struct ServerProcess {
    pub kind: Kind,
    pub client_port: u16,
    pub peer_port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    binary: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// Where the running process's output starts in `log`.
    log_start: u64,
    name: String,
    initial_cluster: String,
    /// In cluster mode, the other members: they live and die with this one.
    companions: Vec<Child>,
    setup: Setup,
}

/// How a server is started beyond its flags: http or https for its client
/// and peer URLs (the certificates come with the flags), and how many
/// members (MetaStore; etcd always runs one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub client_tls: bool,
    pub peer_tls: bool,
    pub members: usize,
}

impl Setup {
    /// http everywhere, `METASTORE_IT_CLUSTER` members.
    pub fn plain() -> Setup {
        Setup { client_tls: false, peer_tls: false, members: cluster_size() }
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// The engine the MetaStore processes of this test run use: the binary reads
/// `METASTORE_STORAGE` itself and every process the harness starts inherits
/// it, so `METASTORE_STORAGE=rocksdb` runs the same suites over RocksDB.
pub fn storage_engine() -> String {
    std::env::var("METASTORE_STORAGE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "memory".into())
}

/// `METASTORE_IT_CLUSTER=N` makes every MetaStore `ServerProcess` member 0
/// of an N-member cluster, so the same tests run against a cluster member.
pub fn cluster_size() -> usize {
    std::env::var("METASTORE_IT_CLUSTER").ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(1)
}

struct Launch<'a> {
    binary: &'a Path,
    name: &'a str,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &'a str,
    extra: &'a [String],
    log: &'a Path,
    etcd: bool,
    setup: Setup,
}

fn launch(l: Launch<'_>) -> Child {
    let client = format!("{}://127.0.0.1:{}", scheme(l.setup.client_tls), l.client_port);
    let peer = format!("{}://127.0.0.1:{}", scheme(l.setup.peer_tls), l.peer_port);
    let mut cmd = Command::new(l.binary);
    cmd.arg("--name")
        .arg(l.name)
        .arg("--data-dir")
        .arg(&l.data_dir)
        .arg("--listen-client-urls")
        .arg(&client)
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--initial-cluster")
        .arg(l.initial_cluster)
        .args(l.extra);
    if l.etcd {
        cmd.env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(l.log).expect("open log");
    let log2 = log.try_clone().expect("clone log");
    cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", l.binary.display()))
}

impl ServerProcess {
    /// Starts a MetaStore member built at `binary` (pass
    /// `env!("CARGO_BIN_EXE_metastore")`).
    pub fn metastore(binary: &Path, extra: &[&str]) -> ServerProcess {
        Self::start(Kind::MetaStore, binary.to_path_buf(), extra, Setup::plain())
    }

    /// Starts Debian's etcd (`/usr/bin/etcd`).
    pub fn etcd(extra: &[&str]) -> ServerProcess {
        Self::start(Kind::Etcd, PathBuf::from("/usr/bin/etcd"), extra, Setup::plain())
    }

    /// Starts Debian's etcd from a snapshot file, the way an operator
    /// does: `etcdctl snapshot restore` into a new data dir, then etcd.
    pub fn etcd_restored(snapshot: &Path, extra: &[&str]) -> ServerProcess {
        let mut s = Self::prepare(Kind::Etcd, PathBuf::from("/usr/bin/etcd"), extra, Setup::plain());
        let peer = format!("http://127.0.0.1:{}", s.peer_port);
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(s.data_dir())
            .args(["--name", &s.name, "--initial-cluster", &s.initial_cluster, "--initial-advertise-peer-urls", &peer])
            .output()
            .expect("run etcdctl snapshot restore");
        assert!(out.status.success(), "etcdctl snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
        s.spawn();
        s
    }

    /// Starts one MetaStore member from a snapshot file restored offline
    /// first (`metastore snapshot restore`, etcdutl's way).
    pub fn metastore_restored(binary: &Path, snapshot: &Path, extra: &[&str]) -> ServerProcess {
        let setup = Setup { members: 1, ..Setup::plain() };
        let mut s = Self::prepare(Kind::MetaStore, binary.to_path_buf(), extra, setup);
        let peer = format!("http://127.0.0.1:{}", s.peer_port);
        let out = Command::new(binary)
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(s.data_dir())
            .args(["--name", &s.name, "--initial-cluster", &s.initial_cluster, "--initial-advertise-peer-urls", &peer])
            .args(extra)
            .output()
            .expect("run metastore snapshot restore");
        assert!(out.status.success(), "metastore snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
        s.spawn();
        s
    }

    /// Starts MetaStore (`binary`) or, without one, Debian's etcd, as
    /// `setup` says.
    pub fn with_setup(binary: Option<&Path>, extra: &[&str], setup: Setup) -> ServerProcess {
        match binary {
            Some(b) => Self::start(Kind::MetaStore, b.to_path_buf(), extra, setup),
            None => Self::start(Kind::Etcd, PathBuf::from("/usr/bin/etcd"), extra, setup),
        }
    }

    /// Starts the server; a port taken by someone else between choosing it
    /// and binding it (parallel tests) is retried with fresh ports.
    fn start(kind: Kind, binary: PathBuf, extra: &[&str], setup: Setup) -> ServerProcess {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut s = Self::prepare(kind, binary.clone(), extra, setup);
            match s.try_spawn() {
                Ok(()) => return s,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => continue,
                Err(log) => panic!("{:?} did not start listening on {}; log:\n{log}", s.kind, s.endpoint()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn prepare(kind: Kind, binary: PathBuf, extra: &[&str], setup: Setup) -> ServerProcess {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let members = if kind == Kind::MetaStore { setup.members.max(1) } else { 1 };
        let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
        let peer_scheme = scheme(setup.peer_tls);
        let (name, initial_cluster) = if members == 1 {
            ("default".to_string(), format!("default={peer_scheme}://127.0.0.1:{}", ports[0].1))
        } else {
            let all: Vec<String> =
                ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}={peer_scheme}://127.0.0.1:{p}")).collect();
            ("m0".to_string(), all.join(","))
        };
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut companions = Vec::new();
        for (i, (client_port, peer_port)) in ports.iter().enumerate().skip(1) {
            companions.push(launch(Launch {
                binary: &binary,
                name: &format!("m{i}"),
                data_dir: dir.join(format!("m{i}")),
                client_port: *client_port,
                peer_port: *peer_port,
                initial_cluster: &initial_cluster,
                extra: &extra,
                log: &dir.join(format!("m{i}.log")),
                etcd: false,
                setup,
            }));
        }
        ServerProcess {
            kind,
            client_port: ports[0].0,
            peer_port: ports[0].1,
            log: dir.join("server.log"),
            log_start: 0,
            dir,
            _tmp: Some(tmp),
            binary,
            extra,
            child: None,
            name,
            initial_cluster,
            companions,
            setup,
        }
    }

    /// Logs of the other cluster members (cluster mode), for failure messages.
    pub fn companion_logs(&self) -> String {
        (1..=self.companions.len())
            .map(|i| {
                format!("--- m{i}\n{}", std::fs::read_to_string(self.dir.join(format!("m{i}.log"))).unwrap_or_default())
            })
            .collect()
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", scheme(self.setup.client_tls), self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How the process ended, once it has (None while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{:?} did not start listening on {}; log:\n{log}", self.kind, self.endpoint());
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        self.log_start = log_len(&self.log);
        self.child = Some(launch(Launch {
            binary: &self.binary,
            name: &self.name,
            data_dir: self.data_dir(),
            client_port: self.client_port,
            peer_port: self.peer_port,
            initial_cluster: &self.initial_cluster,
            extra: &self.extra,
            log: &self.log,
            etcd: self.kind == Kind::Etcd,
            setup: self.setup,
        }));
        let companions_alive =
            |s: &mut ServerProcess| s.companions.iter_mut().all(|c| matches!(c.try_wait(), Ok(None)));
        if self.wait_ready(Duration::from_secs(30)) && companions_alive(self) {
            Ok(())
        } else {
            Err(format!("{}{}", self.log_text(), self.companion_logs()))
        }
    }

    /// Waits until the client port accepts connections and the process lives
    /// (a MetaStore process must also have said it serves on that port: see
    /// [`says_it_serves`]).
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let addr = self.endpoint();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            let ours = self.kind == Kind::Etcd || says_it_serves(&self.log, self.log_start, self.client_port);
            if ours && TcpStream::connect(&addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        kill_child(self.child.take());
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        terminate_child(self.child.take()?, timeout)
    }

    /// Stops the process with SIGTERM (a clean shutdown) and starts it
    /// again on the same ports and data dir.
    pub fn restart_gracefully(&mut self) {
        self.terminate(Duration::from_secs(30));
        self.spawn();
    }

    /// Stops the process with SIGTERM and starts it again on the same ports
    /// and data dir with `extra` as its flags instead of the ones it had.
    pub fn restart_with_flags(&mut self, extra: &[&str]) {
        self.terminate(Duration::from_secs(30));
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// Starts the process again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Lines of the log file, for assertions about what the server said.
    pub fn log_lines(&self) -> Vec<String> {
        match std::fs::File::open(&self.log) {
            Ok(f) => BufReader::new(f).lines().map_while(Result::ok).collect(),
            Err(_) => vec![],
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
        for mut c in self.companions.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn etcdctl_command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(endpoint).arg("--command-timeout=10s").args(args);
    cmd
}

/// Runs etcdctl (API v3) against an endpoint; returns (exit ok, stdout, stderr).
pub fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = etcdctl_command(endpoint, args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl (scripts/setup.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What one etcdctl run produced, with its exit code (None if killed by a signal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdctlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs etcdctl (API v3) against an endpoint with `stdin` fed to it (for
/// `etcdctl txn` and `etcdctl put <key>` reading its value), keeping the exit code.
pub fn etcdctl_stdin(endpoint: &str, args: &[&str], stdin: &[u8]) -> EtcdctlOutput {
    use std::io::Write;
    let mut child = etcdctl_command(endpoint, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl (scripts/setup.sh installs it)");
    let mut input = child.stdin.take().expect("etcdctl stdin");
    let data = stdin.to_vec();
    // A writer thread, so a large stdin cannot deadlock against full output pipes.
    let writer = std::thread::spawn(move || {
        // etcdctl may exit before reading everything (bad flags); that is not our error.
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for etcdctl");
    let _ = writer.join();
    EtcdctlOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// GETs `path` from the server's client URL (plain HTTP/1.1 on the gRPC
/// port: etcd and MetaStore serve `/metrics`, `/health` and `/version`
/// beside gRPC) and returns the status code and the body.
pub fn http_get(server: &ServerProcess, path: &str) -> std::io::Result<(u16, String)> {
    metrics::http_get(&server.endpoint(), path, Duration::from_secs(10))
}

/// The value of the unlabelled sample `name` on the server's `/metrics`, or
/// None when the scrape fails or has no such sample.
pub fn try_metric(server: &ServerProcess, name: &str) -> Option<i64> {
    metrics::fetch_metric(&server.endpoint(), name, Duration::from_secs(10)).map(|v| v as i64)
}

/// The value of the unlabelled gauge or counter `name` on the server's
/// `/metrics`, e.g. `etcd_debugging_mvcc_watcher_total`. Panics when the
/// scrape fails or the metric is missing.
pub fn metric(server: &ServerProcess, name: &str) -> i64 {
    match try_metric(server, name) {
        Some(v) => v,
        None => {
            let scrape = http_get(server, "/metrics");
            panic!("metric {name} not found on {}: {scrape:?}", server.endpoint())
        }
    }
}

/// The resident set size of the server process in KiB (`VmRSS` of
/// `/proc/<pid>/status`), None when it does not run.
pub fn rss_kib(server: &ServerProcess) -> Option<u64> {
    rss_kib_of(server.pid()?)
}

/// Resident set size of process `pid` in KiB (Linux), None once it is gone.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// An etcdctl (API v3) running in the background, such as `etcdctl watch`,
/// whose output is collected while it runs. Killed when stopped or dropped.
pub struct BackgroundEtcdctl {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `etcdctl args` against `endpoint` in the background.
pub fn etcdctl_background(endpoint: &str, args: &[&str]) -> BackgroundEtcdctl {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let mut child = etcdctl_command(endpoint, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl (scripts/setup.sh installs it)");
    fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    }
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let readers = vec![
        collect(child.stdout.take().expect("etcdctl stdout"), stdout.clone()),
        collect(child.stderr.take().expect("etcdctl stderr"), stderr.clone()),
    ];
    BackgroundEtcdctl { child, stdout, stderr, readers }
}

impl BackgroundEtcdctl {
    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether it exited by itself already.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for it to exit by itself, then kills it; returns
    /// everything it printed and its exit code (None when it was killed).
    pub fn finish(mut self, timeout: Duration) -> EtcdctlOutput {
        let end = Instant::now() + timeout;
        let mut code = None;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                code = st.code();
                break;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        EtcdctlOutput {
            code,
            stdout: self.stdout(),
            stderr: self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Kills it now; returns what it printed.
    pub fn stop(self) -> EtcdctlOutput {
        self.finish(Duration::ZERO)
    }
}

impl Drop for BackgroundEtcdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_our_process_to_say_it_serves_on_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        assert!(!says_it_serves(&log, 0, 4000), "no log yet");
        std::fs::write(&log, "INFO metastore: serving client requests address=127.0.0.1:4000\n").unwrap();
        assert!(says_it_serves(&log, 0, 4000));
        assert!(!says_it_serves(&log, 0, 400), "another port");
        // A restart appends: the previous run's line does not count.
        let restart = log_len(&log);
        assert!(!says_it_serves(&log, restart, 4000));
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("metastore: listen on 127.0.0.1:4000 for clients: Address already in use (os error 98)\n");
        std::fs::write(&log, &text).unwrap();
        assert!(!says_it_serves(&log, restart, 4000));
        // The JSON log format (the default).
        text.push_str(r#"{"level":"info","msg":"serving client requests","address":"127.0.0.1:4001"}"#);
        text.push('\n');
        std::fs::write(&log, &text).unwrap();
        assert!(says_it_serves(&log, restart, 4001));
        assert!(!says_it_serves(&log, restart, 400));
    }
}
