//! `Cluster`: N `metastore` processes started as one cluster on loopback,
//! with a `FaultProxy` in front of every member's peer listener so tests can
//! cut links, isolate members and heal the network.
//!
//! Layout for member `i` (0-based):
//! - name `m{i}`, clients on `http://127.0.0.1:<free port>`;
//! - real peer listener on `http://127.0.0.{11+i}:<free port>`; the server
//!   dials its peers from that address too, which is how the proxies tell
//!   members apart;
//! - advertised peer URL `http://127.0.0.1:<proxy port>`, the proxy
//!   forwarding to the real listener.
//!
//! All members get the same `--initial-cluster m0=<proxy0>,m1=<proxy1>,...`,
//! a per-`Cluster` unique `--initial-cluster-token`,
//! `--initial-cluster-state new`, then `DEFAULT_FLAGS` (fast elections),
//! then the caller's flags. A caller flag replaces the default of the same
//! name (`--election-timeout 2000` drops the default `--election-timeout 500`).
//!
//! ```no_run
//! # use testkit::cluster::Cluster;
//! # use std::{path::Path, time::Duration};
//! let mut c = Cluster::start(Path::new("target/debug/metastore"), 3, &[]);
//! let leader = c.leader().expect("a leader");
//! c.isolate(leader);                      // cut it off, both directions
//! let new = c.wait_leader(Duration::from_secs(10)).expect("a new leader");
//! assert_ne!(new, leader);
//! c.heal();
//! c.member_mut(new).kill9();
//! c.member_mut(new).restart();
//! ```
//!
//! Invariants:
//! - Member indices are stable: members added later get the next index, and
//!   a killed member keeps its slot (and ports, data dir, proxy).
//! - A link fault is expressed only through proxies: "block connections from
//!   `a`'s address on `b`'s proxy" cuts everything `a` dialed to `b`, existing
//!   connections included. `isolate(i)` does that for every pair `(i, j)` in
//!   both directions; `heal` clears every proxy.
//! - `start` returns only when every member's client port accepts
//!   connections, and panics (with that member's log) otherwise.
//! - `wait_leader` ignores isolated members (an isolated old leader may still
//!   believe it leads until its check-quorum fires) and answers only when
//!   exactly one of the remaining running members reports
//!   `etcd_server_is_leader 1`.
//! - Dropping the `Cluster` SIGKILLs every process and closes every proxy.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::member::{Member, MemberSpec};

/// Flags every member gets unless the caller passes the same flag:
/// elections in ~0.5 s keep failover tests short.
pub const DEFAULT_FLAGS: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];
/// How long `leader()` waits for a single leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Last octet of member 0's private peer address (`127.0.0.11`).
const FIRST_PEER_OCTET: usize = 11;
/// Poll interval of the `wait_*` helpers.
const POLL: Duration = Duration::from_millis(50);

static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

/// N member processes forming one cluster; see the module docs.
pub struct Cluster {
    binary: PathBuf,
    token: String,
    /// Defaults merged with the caller's extra flags.
    flags: Vec<String>,
    members: Vec<Member>,
    /// Members `wait_leader` ignores (set by `isolate`/`partition`).
    isolated: BTreeSet<usize>,
}

/// What `prepare_member`/`add_member_process` allocated for a new member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    pub index: usize,
    pub name: String,
    /// `http://127.0.0.1:<client port>`.
    pub client_url: String,
    /// The advertised peer URL (the member's proxy), for `MemberAdd`.
    pub peer_url: String,
}

/// `defaults` minus every flag that `extra` sets, followed by `extra`.
/// Defaults are `--flag value` pairs; `extra` may use `--flag value` or
/// `--flag=value`.
pub fn merge_flags(defaults: &[&str], extra: &[&str]) -> Vec<String> {
    let overridden: BTreeSet<&str> =
        extra.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < defaults.len() {
        let flag = defaults[i];
        let has_value = defaults.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        let n = if has_value { 2 } else { 1 };
        if !overridden.contains(flag) {
            out.extend(defaults[i..i + n].iter().map(|s| s.to_string()));
        }
        i += n;
    }
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

/// The private peer address of member `index`: `127.0.0.{11+index}`.
pub fn peer_ip(index: usize) -> Ipv4Addr {
    let octet = FIRST_PEER_OCTET + index;
    assert!(octet < 255, "too many members for 127.0.0.x peer addresses");
    Ipv4Addr::new(127, 0, 0, octet as u8)
}

/// The single leader among readings of `etcd_server_is_leader`, if exactly
/// one member reports 1. `None` readings (member down) are skipped.
pub fn single_leader(readings: &[(usize, Option<f64>)]) -> Option<usize> {
    let mut leaders = readings.iter().filter(|(_, v)| *v == Some(1.0)).map(|(i, _)| *i);
    let first = leaders.next()?;
    match leaders.next() {
        None => Some(first),
        Some(_) => None,
    }
}

impl Cluster {
    /// Starts `n` members of `binary` with `DEFAULT_FLAGS` + `extra` and waits
    /// until every client port accepts connections.
    pub fn start(binary: &Path, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::prepare(binary, n, extra);
        for m in &mut c.members {
            m.spawn();
        }
        for m in &mut c.members {
            m.expect_ready();
        }
        c
    }

    /// Allocates `n` members (ports, data dirs, proxies, command lines)
    /// without starting any process; `start_all` starts them.
    pub fn prepare(binary: &Path, n: usize, extra: &[&str]) -> Cluster {
        assert!(n > 0, "a cluster needs at least one member");
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut c = Cluster {
            binary: binary.to_path_buf(),
            token: format!("testkit-{}-{seq}", std::process::id()),
            flags: merge_flags(DEFAULT_FLAGS, extra),
            members: Vec::with_capacity(n),
            isolated: BTreeSet::new(),
        };
        for i in 0..n {
            c.members.push(c.new_member(i, &format!("m{i}"), "new"));
        }
        let initial = c.initial_cluster();
        for m in &mut c.members {
            m.set_initial_cluster(&initial, "new");
        }
        c
    }

    /// Starts every member not running and waits for their client ports.
    pub fn start_all(&mut self) {
        for m in &mut self.members {
            m.spawn();
        }
        for m in &mut self.members {
            m.expect_ready();
        }
    }

    fn new_member(&self, index: usize, name: &str, state: &str) -> Member {
        Member::prepare(
            &self.binary,
            index,
            MemberSpec {
                name: name.to_string(),
                peer_ip: peer_ip(index),
                initial_cluster: String::new(),
                initial_cluster_state: state.to_string(),
                initial_cluster_token: self.token.clone(),
                extra: self.flags.clone(),
            },
        )
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    pub fn member_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The flags after the harness's own (defaults merged with extras).
    pub fn flags(&self) -> &[String] {
        &self.flags
    }

    /// Client URLs (`http://127.0.0.1:<port>`) of every member, by index,
    /// whether or not it runs right now.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url()).collect()
    }

    /// `m0=<peer url>,m1=...` over every member slot.
    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name(), m.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.members[i].peer_ip())
    }

    /// Cuts the connections member `from` opens to member `to` (existing and
    /// new). `to` can still reach `from` over connections it opens itself.
    pub fn block_link(&self, from: usize, to: usize) {
        self.members[to].proxy().block_source(self.ip(from));
    }

    /// Undoes `block_link(from, to)`.
    pub fn unblock_link(&self, from: usize, to: usize) {
        self.members[to].proxy().unblock_source(self.ip(from));
    }

    /// Cuts member `i` off from every other member, both directions.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.members.len() {
            if j != i {
                self.block_link(i, j);
                self.block_link(j, i);
            }
        }
        self.isolated.insert(i);
    }

    /// Splits the members into `groups` that cannot reach each other; a
    /// member in no group is cut off from everyone. Members outside the
    /// largest group count as isolated for `wait_leader`.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        let n = self.members.len();
        for a in 0..n {
            for b in 0..n {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    self.block_link(a, b);
                }
            }
        }
        let largest = groups.iter().max_by_key(|g| g.len()).copied().unwrap_or(&[]);
        self.isolated = (0..n).filter(|m| !largest.contains(m)).collect();
    }

    /// Removes every fault from every proxy.
    pub fn heal(&mut self) {
        for m in &self.members {
            m.proxy().clear();
        }
        self.isolated.clear();
    }

    /// Members currently excluded from `wait_leader`.
    pub fn isolated(&self) -> Vec<usize> {
        self.isolated.iter().copied().collect()
    }

    /// One sample of member `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        self.members[i].metric(name)
    }

    /// The single leader among the non-isolated members, waiting up to
    /// `LEADER_TIMEOUT`.
    pub fn leader(&self) -> Option<usize> {
        self.wait_leader(LEADER_TIMEOUT)
    }

    /// Polls until exactly one running, non-isolated member reports
    /// `etcd_server_is_leader 1`; None after `timeout`.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let end = Instant::now() + timeout;
        loop {
            let readings: Vec<(usize, Option<f64>)> = (0..self.members.len())
                .filter(|i| !self.isolated.contains(i))
                .map(|i| (i, self.members[i].metric("etcd_server_is_leader")))
                .collect();
            if let Some(l) = single_leader(&readings) {
                return Some(l);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every running, non-isolated member reports
    /// `etcd_server_has_leader 1`.
    pub fn wait_all_have_leader(&self, timeout: Duration) -> bool {
        crate::wait_until(timeout, || {
            let mut any = false;
            for (i, m) in self.members.iter().enumerate() {
                if self.isolated.contains(&i) || m.pid().is_none() {
                    continue;
                }
                any = true;
                if m.metric("etcd_server_has_leader") != Some(1.0) {
                    return false;
                }
            }
            any
        })
    }

    /// Allocates the next member slot (name, ports, data dir, proxy) without
    /// starting it, so its peer URL can go into a `MemberAdd` first.
    pub fn prepare_member(&mut self, name: &str) -> NewMember {
        let index = self.members.len();
        let m = self.new_member(index, name, "existing");
        let info = NewMember { index, name: name.to_string(), client_url: m.client_url(), peer_url: m.peer_url() };
        self.members.push(m);
        info
    }

    /// Starts a slot from `prepare_member` with the given
    /// `--initial-cluster` and `--initial-cluster-state`, and waits for its
    /// client port.
    pub fn start_member(&mut self, index: usize, state: &str, initial_cluster: &str) {
        let m = &mut self.members[index];
        m.set_initial_cluster(initial_cluster, state);
        m.start();
    }

    /// `prepare_member` + `start_member`. If `initial_cluster` does not name
    /// `name`, `name=<its peer url>` is appended to it.
    pub fn add_member_process(&mut self, name: &str, state: &str, initial_cluster: &str) -> NewMember {
        let info = self.prepare_member(name);
        let names_self = initial_cluster.split(',').any(|e| e.split_once('=').is_some_and(|(n, _)| n.trim() == name));
        let cluster = if names_self {
            initial_cluster.to_string()
        } else if initial_cluster.trim().is_empty() {
            format!("{name}={}", info.peer_url)
        } else {
            format!("{initial_cluster},{name}={}", info.peer_url)
        };
        self.start_member(info.index, state, &cluster);
        info
    }

    /// Every member's log, labelled, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            s.push_str(&format!("===== {} ({}) =====\n", m.name(), m.endpoint()));
            s.push_str(&m.log_text());
        }
        s
    }
}

/// A failing test shows what the members said: every warning and error
/// line, then the last lines of each log (CI keeps no data dirs).
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for m in &self.members {
            let text = m.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let notable = lines.iter().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"));
            eprintln!("===== {} ({}): warnings and errors =====", m.name(), m.endpoint());
            for l in notable.take(200) {
                eprintln!("{l}");
            }
            eprintln!("===== {}: last lines =====", m.name());
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("token", &self.token)
            .field("members", &self.members)
            .field("isolated", &self.isolated)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: &str = "/bin/false";

    #[test]
    fn caller_flags_replace_defaults_of_the_same_name() {
        assert_eq!(merge_flags(DEFAULT_FLAGS, &[]), ["--heartbeat-interval", "50", "--election-timeout", "500"]);
        assert_eq!(
            merge_flags(DEFAULT_FLAGS, &["--election-timeout", "2000", "--snapshot-count", "10"]),
            ["--heartbeat-interval", "50", "--election-timeout", "2000", "--snapshot-count", "10"]
        );
        assert_eq!(
            merge_flags(DEFAULT_FLAGS, &["--heartbeat-interval=100"]),
            ["--election-timeout", "500", "--heartbeat-interval=100"]
        );
        assert_eq!(merge_flags(&["--flag", "--x", "1"], &[]), ["--flag", "--x", "1"]);
    }

    #[test]
    fn layout_names_addresses_and_shared_initial_cluster() {
        let c = Cluster::prepare(Path::new(FAKE), 3, &["--snapshot-count", "5"]);
        assert_eq!(c.len(), 3);
        let initial = c.initial_cluster();
        let parts: Vec<&str> = initial.split(',').collect();
        assert_eq!(parts.len(), 3);
        for (i, m) in c.members().iter().enumerate() {
            assert_eq!(m.name(), format!("m{i}"));
            assert_eq!(parts[i], format!("m{i}={}", m.peer_url()));
            assert_eq!(m.peer_ip(), Ipv4Addr::new(127, 0, 0, 11 + i as u8));
            assert!(m.listen_peer_url().starts_with(&format!("http://127.0.0.{}:", 11 + i)));
            assert!(m.client_url().starts_with("http://127.0.0.1:"));
            assert_eq!(m.proxy().target().ip(), IpAddr::V4(m.peer_ip()));
            let args = m.args().join(" ");
            assert!(args.contains(&format!("--initial-cluster {initial} ")), "{args}");
            assert!(args.contains("--initial-cluster-state new"));
            assert!(args.contains(&format!("--initial-cluster-token {}", c.token())));
            assert!(args.ends_with("--heartbeat-interval 50 --election-timeout 500 --snapshot-count 5"));
        }
        assert_eq!(c.endpoints().len(), 3);
        let urls: BTreeSet<String> = c.endpoints().into_iter().collect();
        assert_eq!(urls.len(), 3, "client ports must differ");
        let other = Cluster::prepare(Path::new(FAKE), 1, &[]);
        assert_ne!(c.token(), other.token(), "tokens must be unique per cluster");
    }

    fn blocked(c: &Cluster, from: usize, to: usize) -> bool {
        c.member(to).proxy().is_blocked(IpAddr::V4(c.member(from).peer_ip()))
    }

    #[test]
    fn isolate_partition_and_heal_drive_the_proxies() {
        let mut c = Cluster::prepare(Path::new(FAKE), 3, &[]);
        c.isolate(1);
        for (a, b, cut) in [(0, 1, true), (1, 0, true), (2, 1, true), (1, 2, true), (0, 2, false), (2, 0, false)] {
            assert_eq!(blocked(&c, a, b), cut, "link {a}->{b}");
        }
        assert_eq!(c.isolated(), vec![1]);
        c.heal();
        assert!((0..3).all(|a| (0..3).all(|b| !blocked(&c, a, b))));
        assert!(c.isolated().is_empty());

        c.partition(&[&[0, 1], &[2]]);
        assert!(!blocked(&c, 0, 1) && !blocked(&c, 1, 0));
        for m in [0, 1] {
            assert!(blocked(&c, m, 2) && blocked(&c, 2, m));
        }
        assert_eq!(c.isolated(), vec![2]);
        c.heal();

        c.block_link(0, 2);
        assert!(blocked(&c, 0, 2) && !blocked(&c, 2, 0));
        c.unblock_link(0, 2);
        assert!(!blocked(&c, 0, 2));
    }

    #[test]
    fn single_leader_needs_exactly_one_claim() {
        assert_eq!(single_leader(&[(0, Some(0.0)), (1, Some(1.0)), (2, None)]), Some(1));
        assert_eq!(single_leader(&[(0, Some(1.0)), (1, Some(1.0))]), None);
        assert_eq!(single_leader(&[(0, Some(0.0)), (1, None)]), None);
        assert_eq!(single_leader(&[]), None);
    }

    #[test]
    fn new_members_get_the_next_slot_and_their_own_entry() {
        let mut c = Cluster::prepare(Path::new(FAKE), 2, &[]);
        let base = c.initial_cluster();
        let nm = c.prepare_member("m2");
        assert_eq!(nm.index, 2);
        assert_eq!(c.member(2).peer_ip(), peer_ip(2));
        assert_eq!(nm.peer_url, c.member(2).peer_url());
        assert_eq!(c.len(), 3);
        assert!(c.initial_cluster().starts_with(&base));
        // A binary that exits at once: start_member must panic with the log.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.start_member(2, "existing", &format!("{base},m2={}", nm.peer_url))
        }));
        let msg = r.expect_err("a process that exits cannot be ready");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("did not start") && msg.contains("exited"), "{msg}");
        assert!(msg.contains("--initial-cluster-state existing"), "{msg}");
        assert!(msg.contains(&format!("{base},m2=")), "{msg}");
    }

    #[test]
    #[should_panic(expected = "did not start")]
    fn start_panics_when_a_member_cannot_start() {
        let _ = Cluster::start(Path::new(FAKE), 2, &[]);
    }

    #[test]
    fn leader_wait_gives_up_on_a_dead_cluster() {
        let c = Cluster::prepare(Path::new(FAKE), 2, &[]);
        let t = Instant::now();
        assert_eq!(c.wait_leader(Duration::from_millis(200)), None);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!c.wait_all_have_leader(Duration::from_millis(100)));
        assert_eq!(c.metric(0, "etcd_server_is_leader"), None);
    }
}
