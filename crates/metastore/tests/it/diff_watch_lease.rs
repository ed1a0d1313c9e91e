//! Differential tests for watch and lease: the same etcdctl command
//! sequences run against one MetaStore and one real etcd (Debian's 3.4), and
//! their outputs must match.
//!
//! `etcdctl watch` runs in the background on both servers at once (started
//! once the server's watcher gauge shows it registered), the same writes go
//! to both, and once both printed the last write's marker the two outputs
//! are compared. Lease commands run one by one; lease IDs differ between the
//! servers, so each server's n-th granted lease is written `{L<n>}` in
//! commands and masked as `<lease-n>` in outputs.
//!
//! Masked before comparing: cluster and member IDs and raft term, lease IDs
//! (by the mapping above), the remaining TTL of `lease timetolive` (it
//! depends on timing; it is checked to lie between TTL - 3 and TTL), ports,
//! and etcdctl's warning-line noise. A lease's attached keys are sorted (etcd
//! lists them in Go map order).

use std::time::Duration;

use crate::common::*;
use crate::diff_common::{map_json_values, map_lines, stderr_lines, Norm};
use testkit::{etcdctl_background, etcdctl_stdin, try_metric, BackgroundEtcdctl, EtcdctlOutput, Kind};

const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";

/// JSON number fields that differ between two healthy servers.
const MASKED_JSON: &[&str] = &["cluster_id", "member_id", "raft_term"];
/// `-w fields` lines that differ between two healthy servers.
const MASKED_FIELDS: &[&str] = &["\"ClusterID\"", "\"MemberID\"", "\"RaftTerm\""];

/// An etcdctl result reduced to what must be equal on both servers.
struct Side {
    server: ServerProcess,
    /// Lease IDs in the order this server granted them.
    leases: Vec<i64>,
}

/// One etcd and one MetaStore, both fresh single-node clusters.
struct Pair {
    etcd: Side,
    ms: Side,
}

impl Pair {
    fn start(extra: &[&str]) -> Pair {
        let etcd = ServerProcess::etcd(extra);
        let ms = metastore(extra);
        for s in [&etcd, &ms] {
            let healthy = wait_until(Duration::from_secs(15), || etcdctl(&s.endpoint(), &["endpoint", "health"]).0);
            assert!(healthy, "{:?} never became healthy; log:\n{}", s.kind, s.log_text());
        }
        Pair { etcd: Side { server: etcd, leases: vec![] }, ms: Side { server: ms, leases: vec![] } }
    }

    /// Runs `args` on both servers (with `{L<n>}` replaced by each server's
    /// n-th lease in hex) and asserts equal normalized outputs. Records the
    /// lease a successful `lease grant` made. Returns etcd's output.
    fn same(&mut self, args: &[&str]) -> Norm {
        let raw_e = run(&self.etcd, args);
        let raw_m = run(&self.ms, args);
        if args.starts_with(&["lease", "grant"]) && raw_e.code == Some(0) {
            for (side, raw) in [(&mut self.etcd, &raw_e), (&mut self.ms, &raw_m)] {
                if let Some(id) = granted_id(&raw.stdout) {
                    side.leases.push(id);
                }
            }
        }
        let e = normalize(&raw_e, &self.etcd);
        let m = normalize(&raw_m, &self.ms);
        assert_eq!(
            e,
            m,
            "\ncommand: etcdctl {}\n--- etcd (left) raw:\n{raw_e:#?}\n--- metastore (right) raw:\n{raw_m:#?}",
            args.join(" ")
        );
        e
    }

    /// Same output on both, and etcd succeeded.
    fn ok(&mut self, args: &[&str]) -> Norm {
        let n = self.same(args);
        assert_eq!(n.code, Some(0), "etcd failed `etcdctl {}`: {n:#?}", args.join(" "));
        n
    }

    /// Same output on both, and etcd failed with `msg` in its last error line.
    fn err(&mut self, args: &[&str], msg: &str) -> Norm {
        let n = self.same(args);
        assert_ne!(n.code, Some(0), "etcd accepted `etcdctl {}`: {n:#?}", args.join(" "));
        let last = n.stderr.last().map(String::as_str).unwrap_or("");
        assert!(last.contains(msg), "etcd's error for `etcdctl {}` lacks {msg:?}: {n:#?}", args.join(" "));
        n
    }

    /// Starts `etcdctl watch <args>` on both servers, waits until both
    /// registered it, runs `writes` on both (each must succeed on etcd and
    /// match), waits until both watchers printed `marker`, and compares what
    /// they printed.
    fn watch(&mut self, args: &[&str], writes: &[&[&str]], marker: &str) -> String {
        let rest = [resting_watchers(&self.etcd.server), resting_watchers(&self.ms.server)];
        let mut cmd = vec!["watch"];
        cmd.extend_from_slice(args);
        let bg_e = etcdctl_background(&self.etcd.server.endpoint(), &cmd);
        let bg_m = etcdctl_background(&self.ms.server.endpoint(), &cmd);
        for (side, rest) in [&self.etcd, &self.ms].into_iter().zip(rest) {
            wait_gauge(&side.server, rest + 1);
        }
        for w in writes {
            self.ok(w);
        }
        let out_e = finish_on(bg_e, marker);
        let out_m = finish_on(bg_m, marker);
        let e = normalize(&out_e, &self.etcd);
        let m = normalize(&out_m, &self.ms);
        assert_eq!(
            e,
            m,
            "\ncommand: etcdctl {}\n--- etcd (left) raw:\n{out_e:#?}\n--- metastore (right) raw:\n{out_m:#?}",
            cmd.join(" ")
        );
        assert!(e.stdout.contains(marker), "etcd's watch never printed {marker:?}: {e:#?}");
        e.stdout
    }

    /// Runs `etcdctl watch <args>` on both servers until it exits by itself
    /// (or 10 s pass) and compares the outputs and exit codes.
    fn watch_until_exit(&mut self, args: &[&str]) -> Norm {
        let mut cmd = vec!["watch"];
        cmd.extend_from_slice(args);
        let out_e = etcdctl_background(&self.etcd.server.endpoint(), &cmd).finish(Duration::from_secs(10));
        let out_m = etcdctl_background(&self.ms.server.endpoint(), &cmd).finish(Duration::from_secs(10));
        let e = normalize(&out_e, &self.etcd);
        let m = normalize(&out_m, &self.ms);
        assert_eq!(
            e,
            m,
            "\ncommand: etcdctl {}\n--- etcd (left) raw:\n{out_e:#?}\n--- metastore (right) raw:\n{out_m:#?}",
            cmd.join(" ")
        );
        e
    }
}

/// Runs etcdctl on one side with its lease placeholders filled in.
/// `["txn", script]` runs `etcdctl txn` with `script` on stdin.
fn run(side: &Side, args: &[&str]) -> EtcdctlOutput {
    if let ["txn", script] = args {
        return etcdctl_stdin(&side.server.endpoint(), &["txn"], script.as_bytes());
    }
    let args: Vec<String> = args.iter().map(|a| fill_leases(a, &side.leases)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    etcdctl_stdin(&side.server.endpoint(), &args, b"")
}

fn fill_leases(arg: &str, leases: &[i64]) -> String {
    let mut out = arg.to_string();
    for (i, id) in leases.iter().enumerate() {
        out = out.replace(&format!("{{L{i}}}"), &format!("{id:x}"));
    }
    out
}

/// The lease ID in `lease grant` output: `lease <hex> granted with TTL(..)`
/// or JSON `"ID":<decimal>`.
fn granted_id(stdout: &str) -> Option<i64> {
    if let Some(rest) = stdout.strip_prefix("lease ") {
        let hex = rest.split_whitespace().next()?;
        return u64::from_str_radix(hex, 16).ok().map(|v| v as i64);
    }
    let i = stdout.find("\"ID\":")? + 5;
    let digits: String = stdout[i..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().ok()
}

/// The watcher gauge once no watch is open: MetaStore's must be exactly 0.
/// etcd 3.4's gauge is decremented twice for a watch canceled because its
/// start revision was compacted (CI saw it rest at -1 after
/// `watch_from_a_compacted_revision_is_canceled`), so on etcd the resting
/// value is whatever the gauge settles at, at most 0, unchanged for 300 ms.
#[track_caller]
fn resting_watchers(s: &ServerProcess) -> i64 {
    if s.kind == Kind::MetaStore {
        wait_gauge(s, 0);
        return 0;
    }
    let mut seen = (None, std::time::Instant::now());
    let ok = wait_until(Duration::from_secs(15), || {
        let now = try_metric(s, WATCHERS);
        if now != seen.0 {
            seen = (now, std::time::Instant::now());
        }
        matches!(now, Some(v) if v <= 0) && seen.1.elapsed() >= Duration::from_millis(300)
    });
    assert!(ok, "etcd: {WATCHERS} never came to rest at or below 0, last seen {:?}", seen.0);
    seen.0.unwrap_or(0)
}

#[track_caller]
fn wait_gauge(s: &ServerProcess, value: i64) {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(15), || {
        last = try_metric(s, WATCHERS);
        last == Some(value)
    });
    assert!(ok, "{:?}: {WATCHERS} should reach {value}, last seen {last:?}", s.kind);
}

/// Waits until the background watch printed `marker` (10 s at most), then
/// stops it.
fn finish_on(mut bg: BackgroundEtcdctl, marker: &str) -> EtcdctlOutput {
    wait_until(Duration::from_secs(10), || bg.stdout().contains(marker) || bg.exited());
    // Let a partial last line complete.
    wait_until(Duration::from_secs(1), || bg.stdout().ends_with('\n'));
    bg.stop()
}

fn normalize(raw: &EtcdctlOutput, side: &Side) -> Norm {
    let s = &side.server;
    let unport =
        |t: &str| t.replace(&s.endpoint(), "<client>").replace(&format!("127.0.0.1:{}", s.peer_port), "<peer>");
    let mut stdout = unport(&raw.stdout);
    for f in MASKED_JSON {
        stdout = mask_json_number(&stdout, f, |_| "*".to_string());
    }
    stdout = map_lines(&stdout, |line| match MASKED_FIELDS.iter().find(|f| line.starts_with(&format!("{f} : "))) {
        Some(f) => format!("{f} : *"),
        None => line.to_string(),
    });
    stdout = mask_leases(&stdout, &side.leases);
    stdout = mask_remaining(&stdout);
    let stderr = stderr_lines(&mask_leases(&unport(&raw.stderr), &side.leases));
    Norm { code: raw.code, stdout, stderr }
}

/// Lease IDs: `%016x` tokens, JSON numbers of `ID`, `id` and `lease`, and
/// `-w fields` lines `"ID"`/`"Lease"` that name a lease this server granted
/// become `<lease-n>`.
fn mask_leases(s: &str, leases: &[i64]) -> String {
    let name = |v: i64| leases.iter().position(|l| *l == v).map(|i| format!("<lease-{i}>"));
    let mut out = s.to_string();
    for f in ["ID", "id", "lease"] {
        out = mask_json_number(&out, f, |v| v.parse().ok().and_then(name).unwrap_or_else(|| v.to_string()));
    }
    out = map_lines(&out, |line| {
        for f in ["\"ID\" : ", "\"Lease\" : "] {
            if let Some(v) = line.strip_prefix(f) {
                if let Some(n) = v.parse().ok().and_then(name) {
                    return format!("{f}{n}");
                }
            }
        }
        line.to_string()
    });
    for (i, id) in leases.iter().enumerate() {
        out = out.replace(&format!("{id:016x}"), &format!("<lease-{i}>"));
    }
    out
}

/// `remaining(59s)` and the JSON `"ttl":59` of `lease timetolive` depend on
/// timing: checked to be within `TTL_SLACK` s of the granted TTL, then
/// masked. The attached keys are sorted.
fn mask_remaining(s: &str) -> String {
    // Seconds that may pass between the grant and the question on a loaded
    // machine (a lease whose TTL was reset or lost would be far off).
    const TTL_SLACK: i64 = 10;
    map_lines(s, |line| {
        let mut line = line.to_string();
        if let (Some(g), Some(r)) = (line.find("granted with TTL("), line.find(", remaining(")) {
            let granted: i64 = number_at(&line[g + 17..]);
            let start = r + 12;
            let end = start + line[start..].find("s)").expect("remaining(..s)");
            let remaining: i64 = line[start..end].parse().expect("remaining seconds");
            assert!(
                granted - TTL_SLACK <= remaining && remaining <= granted,
                "remaining {remaining} of TTL {granted}: {line}"
            );
            line.replace_range(start..end, "*");
        }
        if let Some(k) = line.find("attached keys([") {
            let start = k + 15;
            let end = start + line[start..].find("])").expect("attached keys(..])");
            let mut keys: Vec<&str> = line[start..end].split(' ').collect();
            keys.sort_unstable();
            let sorted = keys.join(" ");
            line.replace_range(start..end, &sorted);
        }
        if line.contains("\"granted-ttl\":") {
            let granted: i64 = number_at(&line[line.find("\"granted-ttl\":").unwrap() + 14..]);
            line = mask_json_number(&line, "ttl", |v| {
                let remaining: i64 = v.parse().expect("ttl");
                assert!(
                    remaining == -1 || (granted - TTL_SLACK <= remaining && remaining <= granted),
                    "ttl {remaining} of granted {granted}"
                );
                if remaining == -1 {
                    v.to_string()
                } else {
                    "*".to_string()
                }
            });
            if let Some(k) = line.find("\"keys\":[") {
                let start = k + 8;
                let end = start + line[start..].find(']').expect("keys array");
                let mut keys: Vec<&str> = line[start..end].split(',').collect();
                keys.sort_unstable();
                let sorted = keys.join(",");
                line.replace_range(start..end, &sorted);
            }
        }
        line
    })
}

fn number_at(s: &str) -> i64 {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().unwrap_or_else(|_| panic!("a number at {s:?}"))
}

/// Replaces the numeric value of every JSON `"key":` with `f(value)`.
fn mask_json_number(s: &str, key: &str, f: impl Fn(&str) -> String) -> String {
    map_json_values(s, key, |v| v.bytes().all(|b| b.is_ascii_digit() || b == b'-').then(|| f(v)))
}

// ------------------------------------------------------------------- watch

/// Puts, overwrites, deletes (single, prefix) and a txn under `w`, ending
/// with `put w1 END`, which every watch in these tests matches.
const WRITES: &[&[&str]] = &[
    &["put", "w1", "a"],
    &["put", "w2", "b"],
    &["put", "w1", "c"],
    &["put", "x1", "outside"],
    &["del", "w2"],
    &["put", "w3", "d"],
    &["put", "w30", "e"],
    &["del", "--prefix", "w3"],
    &["put", "w1", "END"],
];

#[test]
fn watch_key_prefix_range_and_prev_kv() {
    let mut p = Pair::start(&[]);
    let out = p.watch(&["w1"], WRITES, "END");
    assert_eq!(out, "PUT\nw1\na\nPUT\nw1\nc\nPUT\nw1\nEND\n", "etcd's output");
    p.watch(&["--prefix", "w"], WRITES, "END");
    p.watch(&["--prev-kv", "--prefix", "w"], WRITES, "END");
    p.watch(&["w1", "w3"], WRITES, "END");
    p.watch(&["--prefix", "w", "-w", "json"], WRITES, "RU5E");
    p.watch(&["--prev-kv", "w1", "-w", "json"], WRITES, "RU5E");
    p.watch(&["--prefix", ""], WRITES, "END");
    // A txn's events arrive together: one JSON response.
    let txn: &[&[&str]] = &[&["txn", "\nput t/a 1\nput t/b END\ndel t/none\n\n\n"]];
    let out = p.watch(&["--prefix", "t/", "-w", "json"], txn, "RU5E");
    assert_eq!(out.lines().count(), 1, "one response for the txn:\n{out}");
    // The marker must come last only: t/b's previous value is "END", which
    // the delete prints before the last put.
    let out = p.watch(&["--prefix", "t/", "--prev-kv"], &[&["txn", "\nput t/a 2\ndel t/b\nput t/c FIN\n\n\n"]], "FIN");
    assert!(out.ends_with("PUT\nt/c\nFIN\n"), "the whole txn's events:\n{out}");
}

#[test]
fn watch_rev_replays_history() {
    let mut p = Pair::start(&[]);
    for w in WRITES {
        p.ok(w);
    }
    // Each replay ends with the last write's marker, then the watch is live.
    for rev in ["1", "2", "4", "9"] {
        let r = format!("--rev={rev}");
        p.watch(&["--prefix", "w", &r], &[], "END");
        p.watch(&["--prefix", "w", &r, "--prev-kv"], &[], "END");
        p.watch(&["w1", &r, "-w", "json"], &[], "RU5E");
    }
    // A future revision: only what comes from it on.
    p.watch(&["--prefix", "w", "--rev=12"], &[&["put", "w9", "skipped"], &["put", "w1", "END"]], "END");
}

#[test]
fn watch_from_a_compacted_revision_is_canceled() {
    let mut p = Pair::start(&[]);
    for w in WRITES {
        p.ok(w);
    }
    p.ok(&["compact", "5"]);
    let n = p.watch_until_exit(&["--rev=2", "w1"]);
    assert_ne!(n.code, Some(0), "{n:#?}");
    assert!(n.stderr.iter().any(|l| l.contains("required revision has been compacted")), "etcd's output: {n:#?}");
    // At the compaction revision itself the history is still there.
    p.watch(&["--prefix", "w", "--rev=5"], &[], "END");
}

// ------------------------------------------------------------------- lease

#[test]
fn lease_commands() {
    let mut p = Pair::start(&[]);
    p.ok(&["lease", "list"]);
    let n = p.ok(&["lease", "grant", "60"]);
    assert_eq!(n.stdout, "lease <lease-0> granted with TTL(60s)\n");
    p.ok(&["lease", "grant", "60", "-w", "json"]);
    // Below the minimum: raised to 2 s; revoked at once so it cannot expire
    // in the middle of the test.
    let n = p.ok(&["lease", "grant", "1"]);
    assert_eq!(n.stdout, "lease <lease-2> granted with TTL(2s)\n");
    p.ok(&["lease", "revoke", "{L2}"]);
    p.err(&["lease", "grant", "9000000001"], "etcdserver: too large lease TTL");
    p.same(&["lease", "grant"]);
    p.same(&["lease", "grant", "abc"]);

    p.ok(&["put", "--lease={L0}", "k1", "v1"]);
    p.ok(&["put", "--lease={L0}", "k2", "v2"]);
    p.ok(&["put", "--lease={L1}", "k3", "v3"]);
    p.ok(&["put", "k4", "v4"]);
    p.ok(&["get", "--prefix", "k", "-w", "json"]);
    p.ok(&["get", "k1", "-w", "fields"]);
    p.err(&["put", "--lease=1234", "k5", "v"], "etcdserver: requested lease not found");

    p.ok(&["lease", "timetolive", "{L0}"]);
    let n = p.ok(&["lease", "timetolive", "{L0}", "--keys"]);
    assert_eq!(n.stdout, "lease <lease-0> granted with TTL(60s), remaining(*s), attached keys([k1 k2])\n");
    p.ok(&["lease", "timetolive", "{L0}", "--keys", "-w", "json"]);
    p.ok(&["lease", "timetolive", "{L1}", "--keys"]);
    p.ok(&["lease", "timetolive", "1234"]);
    p.ok(&["lease", "timetolive", "1234", "-w", "json"]);
    // Two leases with the same TTL granted in order: etcd lists them by
    // expiry, which is also the order of their IDs here.
    p.ok(&["lease", "list"]);
    p.ok(&["lease", "list", "-w", "json"]);

    // Moving a key to another lease.
    p.ok(&["put", "--lease={L1}", "k1", "v1b"]);
    p.ok(&["lease", "timetolive", "{L0}", "--keys"]);
    p.ok(&["lease", "timetolive", "{L1}", "--keys"]);

    let n = p.ok(&["lease", "keep-alive", "--once", "{L0}"]);
    assert_eq!(n.stdout, "lease <lease-0> keepalived with TTL(60)\n");
    p.ok(&["lease", "keep-alive", "--once", "{L0}", "-w", "json"]);
    p.err(&["lease", "keep-alive", "--once", "1234"], "etcdserver: requested lease not found");

    let n = p.ok(&["lease", "revoke", "{L0}"]);
    assert_eq!(n.stdout, "lease <lease-0> revoked\n");
    p.ok(&["get", "--prefix", "k", "-w", "json"]);
    p.ok(&["lease", "timetolive", "{L0}"]);
    p.err(&["lease", "revoke", "{L0}"], "etcdserver: requested lease not found");
    p.err(&["lease", "keep-alive", "--once", "{L0}"], "etcdserver: requested lease not found");
    p.ok(&["lease", "revoke", "{L1}", "-w", "json"]);
    p.ok(&["get", "--prefix", "", "-w", "json"]);
    p.ok(&["lease", "list"]);
    p.same(&["lease", "revoke"]);
    p.same(&["lease", "timetolive", "zz"]);
}

#[test]
fn revoke_and_expiry_seen_by_watch() {
    let mut p = Pair::start(&[]);
    p.ok(&["lease", "grant", "60"]);
    p.ok(&["put", "--lease={L0}", "e/1", "a"]);
    p.ok(&["put", "--lease={L0}", "e/2", "b"]);
    p.ok(&["put", "e/3", "c"]);
    // The revoke's deletes come in one response, at one revision.
    let writes: &[&[&str]] = &[&["lease", "revoke", "{L0}"], &["put", "e/END", "x"]];
    let out = p.watch(&["--prefix", "e/", "-w", "json", "--prev-kv"], writes, "ZS9FTkQ=");
    assert_eq!(out.lines().count(), 2, "one response for the revoke, one for the put:\n{out}");
    // An expiring lease the same way: the watch sees both deletes together.
    p.ok(&["lease", "grant", "2"]);
    let writes: &[&[&str]] = &[&["put", "--lease={L1}", "e/4", "d"], &["put", "--lease={L1}", "e/5", "e"]];
    let rest = [resting_watchers(&p.etcd.server), resting_watchers(&p.ms.server)];
    let cmd = ["watch", "--prefix", "e/", "-w", "json"];
    let bg_e = etcdctl_background(&p.etcd.server.endpoint(), &cmd);
    let bg_m = etcdctl_background(&p.ms.server.endpoint(), &cmd);
    for (side, rest) in [&p.etcd, &p.ms].into_iter().zip(rest) {
        wait_gauge(&side.server, rest + 1);
    }
    for w in writes {
        p.ok(w);
    }
    // Both deletes (3 responses: two puts, one expiry).
    let done = |bg: &BackgroundEtcdctl| bg.stdout().lines().count() >= 3;
    assert!(wait_until(Duration::from_secs(10), || done(&bg_e) && done(&bg_m)), "the lease did not expire");
    let (out_e, out_m) = (bg_e.stop(), bg_m.stop());
    let (e, m) = (normalize(&out_e, &p.etcd), normalize(&out_m, &p.ms));
    assert_eq!(e, m, "\n--- etcd raw:\n{out_e:#?}\n--- metastore raw:\n{out_m:#?}");
    p.ok(&["lease", "timetolive", "{L1}"]);
    p.ok(&["get", "--prefix", "e/", "-w", "json"]);
}

// --------------------------------- rules MetaStore once got wrong (fixed)

/// etcd's compacted watch response carries a header without a revision
/// (`sendLoop` builds it from `wresp.Revision`, which is 0 for the
/// compacted notice), not the current revision.
#[test]
fn watch_compacted_response_header_has_no_revision() {
    let mut p = Pair::start(&[]);
    for w in WRITES {
        p.ok(w);
    }
    p.ok(&["compact", "5"]);
    p.watch_until_exit(&["--rev=2", "w1", "-w", "json"]);
}

/// etcd lists leases by expiry (`lessor.Leases()` sorts with
/// `leasesByExpiry`): a lease granted later with a shorter TTL comes first,
/// and a keep-alive moves a lease back; not by ID.
#[test]
fn lease_list_is_ordered_by_expiry() {
    let mut p = Pair::start(&[]);
    p.ok(&["lease", "grant", "300"]);
    p.ok(&["lease", "grant", "100"]);
    p.ok(&["lease", "grant", "200"]);
    let n = p.ok(&["lease", "list"]);
    assert_eq!(n.stdout, "found 3 leases\n<lease-1>\n<lease-2>\n<lease-0>\n");
    p.ok(&["lease", "grant", "100"]);
    p.ok(&["lease", "grant", "100"]);
    p.ok(&["lease", "keep-alive", "--once", "{L3}"]);
    p.ok(&["lease", "list", "-w", "json"]);
}

/// etcd's minimum TTL is `ceil((3 * electionTicks / 2) * heartbeat)` with
/// integer tick arithmetic (`etcdserver/server.go`): heartbeat 400 ms and
/// election timeout 2300 ms make 5 ticks, 7 ticks x 400 ms = 2.8 s, so 3 s
/// (not 1.5 x 2300 ms = 3.45 s, so 4 s).
#[test]
fn lease_minimum_ttl_uses_whole_election_ticks() {
    let mut p = Pair::start(&["--heartbeat-interval", "400", "--election-timeout", "2300"]);
    let n = p.ok(&["lease", "grant", "1"]);
    assert_eq!(n.stdout, "lease <lease-0> granted with TTL(3s)\n");
}
