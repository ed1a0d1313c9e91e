//! etcd's Auth service from the outside: etcdctl's user, role and auth
//! commands against MetaStore and a real etcd side by side (outputs
//! compared after the differential tests' normalisation), the auth state
//! surviving kill -9, and a 3-member cluster where users and tokens made
//! through one member work on the others.
//!
//! Permissions on the other APIs are in `auth_perms.rs`, JWT tokens in
//! `auth_jwt.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use testkit::Cluster;

use crate::common::*;
use crate::diff::Pair;

/// Runs every step on both servers, expecting the same output; `Ok` steps
/// must succeed on etcd, `Err` ones fail with the given text.
fn transcript(p: &Pair, steps: &[(&[&str], Option<&str>)]) {
    for (args, err) in steps {
        match err {
            None => {
                p.ok(args);
            }
            Some(msg) => {
                p.err(args, msg);
            }
        }
    }
}

#[test]
fn auth_commands_as_etcd() {
    let p = Pair::start();
    let root = ["--user", "root:pw"];
    let as_root =
        |args: &[&'static str]| -> Vec<&'static str> { root.iter().copied().chain(args.iter().copied()).collect() };
    transcript(
        &p,
        &[
            (&["user", "list"], None),
            (&["role", "list"], None),
            (&["auth", "enable"], Some("root user does not exist")),
            (&["user", "add", "root:pw"], None),
            (&["user", "add", "root:other"], Some("etcdserver: user name already exists")),
            (&["user", "add", "bob:pw"], None),
            (&["user", "add", "np", "--no-password"], None),
            (&["user", "add", "carol", "--new-user-password", "secret"], None),
            // bcrypt reads 72 bytes of a password: etcd's and ours alike.
            (
                &[
                    "user",
                    "add",
                    "long:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                ],
                None,
            ),
            (&["user", "get", "bob"], None),
            (&["user", "get", "nobody"], Some("etcdserver: user name not found")),
            (&["user", "list"], None),
            (&["user", "list", "-w", "json"], None),
            (&["role", "add", "r1"], None),
            (&["role", "add", "r1"], Some("etcdserver: role name already exists")),
            (&["role", "add", "r0"], None),
            (&["role", "get", "nope"], Some("etcdserver: role name not found")),
            (&["role", "grant-permission", "r1", "read", "k1"], None),
            (&["role", "grant-permission", "r1", "write", "p/", "--prefix"], None),
            (&["role", "grant-permission", "r1", "readwrite", "a", "c"], None),
            (&["role", "grant-permission", "r1", "read", "f", "--from-key"], None),
            // Same key and end: the type is updated in place.
            (&["role", "grant-permission", "r1", "write", "k1"], None),
            (&["role", "grant-permission", "nope", "read", "k"], Some("etcdserver: role name not found")),
            (&["role", "get", "r1"], None),
            (&["role", "get", "r1", "-w", "json"], None),
            (&["role", "revoke-permission", "r1", "k1"], None),
            (&["role", "revoke-permission", "r1", "k1"], Some("etcdserver: permission is not granted to the role")),
            (&["role", "revoke-permission", "r1", "p/", "--prefix"], None),
            (&["role", "revoke-permission", "r1", "a", "c"], None),
            (&["role", "get", "r1"], None),
            (&["role", "list"], None),
            (&["user", "grant-role", "bob", "r1"], None),
            (&["user", "grant-role", "bob", "r0"], None),
            (&["user", "grant-role", "bob", "r1"], None),
            (&["user", "grant-role", "bob", "nope"], Some("etcdserver: role name not found")),
            (&["user", "grant-role", "nobody", "r1"], Some("etcdserver: user name not found")),
            (&["user", "get", "bob"], None),
            (&["user", "get", "bob", "--detail"], None),
            (&["user", "revoke-role", "bob", "r0"], None),
            (&["user", "revoke-role", "bob", "r0"], Some("etcdserver: role is not granted to the user")),
            (&["user", "delete", "nobody"], Some("etcdserver: user name not found")),
            (&["role", "delete", "nope"], Some("etcdserver: role name not found")),
            // Auth off: etcdctl's client ignores "authentication is not enabled".
            (&["--user", "root:pw", "user", "list"], None),
            // etcdctl creates the root role and grants it, then enables.
            (&["auth", "enable"], None),
            // Now on: enabling again needs root's token.
            (&["auth", "enable"], Some("etcdserver: user name is empty")),
            (
                &["--user", "root:wrong", "user", "list"],
                Some("etcdserver: authentication failed, invalid user ID or password"),
            ),
            (
                &["--user", "ghost:pw", "user", "list"],
                Some("etcdserver: authentication failed, invalid user ID or password"),
            ),
            (&["--user", "np:x", "user", "list"], Some("password was given for no password user")),
            (&["user", "list"], Some("etcdserver: user name is empty")),
            (&["--user", "bob:pw", "user", "list"], Some("etcdserver: permission denied")),
            (&["--user", "bob:pw", "user", "get", "bob"], None),
            (&["--user", "bob:pw", "user", "get", "carol"], Some("etcdserver: permission denied")),
            (&["--user", "bob:pw", "role", "get", "r1"], None),
            (&["--user", "bob:pw", "role", "get", "r0"], Some("etcdserver: permission denied")),
            (&["--user", "carol:secret", "user", "get", "carol"], None),
            (
                &[
                    "--user",
                    "long:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyyyyyyyy",
                    "user",
                    "get",
                    "long",
                ],
                None,
            ),
            (
                &[
                    "--user",
                    "long:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                    "user",
                    "get",
                    "long",
                ],
                Some("etcdserver: authentication failed, invalid user ID or password"),
            ),
        ],
    );
    let owned: Vec<(Vec<&str>, Option<&str>)> = vec![
        (as_root(&["user", "list"]), None),
        (as_root(&["role", "list"]), None),
        // An empty password (stdin) is accepted, as etcd does.
        (as_root(&["user", "add", "empty", "--interactive=false"]), None),
        (as_root(&["user", "get", "empty"]), None),
        (as_root(&["user", "get", "root"]), None),
        (as_root(&["user", "delete", "root"]), Some("etcdserver: invalid auth management")),
        (as_root(&["user", "revoke-role", "root", "root"]), Some("etcdserver: invalid auth management")),
        (as_root(&["role", "delete", "root"]), Some("etcdserver: invalid auth management")),
        (as_root(&["user", "passwd", "bob", "--interactive=false"]), None),
        (as_root(&["role", "delete", "r1"]), None),
        (as_root(&["user", "get", "bob"]), None),
        (as_root(&["user", "delete", "carol"]), None),
        (as_root(&["user", "list"]), None),
        (as_root(&["auth", "disable"]), None),
        (vec!["auth", "disable"], None),
        (vec!["user", "list"], None),
        (vec!["user", "revoke-role", "root", "root"], None),
        (vec!["role", "delete", "root"], None),
        (vec!["user", "delete", "root"], None),
        (vec!["user", "list"], None),
        (vec!["role", "list"], None),
    ];
    // etcd 3.5 (the spec) shows root's role as read-write on every key;
    // etcd 3.4 shows the stored, empty role: compared with 3.5's view.
    let (ok, out, err) = etcdctl(&p.ms.endpoint(), &as_root(&["role", "get", "root"]));
    assert!(ok, "{err}");
    assert_eq!(out, "Role root\nKV Read:\n\t[, <open ended> (prefix )\nKV Write:\n\t[, <open ended> (prefix )\n");
    for (args, err) in &owned {
        // `user passwd` reads the new password from stdin.
        let stdin: &[u8] = if args.contains(&"passwd") { b"pw2\n" } else { b"" };
        let n = p.same_at(ServerProcess::endpoint, args, stdin, |s| s.to_string());
        match err {
            None => assert_eq!(n.code, Some(0), "etcd failed `etcdctl {args:?}`: {n:#?}"),
            Some(msg) => assert!(n.stderr.last().is_some_and(|l| l.contains(msg)), "{args:?}: {n:#?}"),
        }
        if args.contains(&"passwd") {
            // The old password is gone, the new one works, on both.
            p.err(&["--user", "bob:pw", "user", "get", "bob"], "authentication failed");
            p.ok(&["--user", "bob:pw2", "user", "get", "bob"]);
        }
    }
}

/// POSTs a JSON body to the gateway (with a token, if given); the body of
/// the answer.
pub(crate) fn gateway_post(endpoint: &str, path: &str, body: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(endpoint).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(out)
}

/// The token of `user`, through the gateway's Authenticate.
pub(crate) fn token(endpoint: &str, user: &str, password: &str) -> String {
    let body = gateway_post(
        endpoint,
        "/v3/auth/authenticate",
        &format!(r#"{{"name":"{user}","password":"{password}"}}"#),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["token"].as_str().unwrap_or_else(|| panic!("no token in {body}")).to_string()
}

fn auth_status(endpoint: &str, token: Option<&str>) -> serde_json::Value {
    let body = gateway_post(endpoint, "/v3/auth/status", "{}", token);
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn ctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    etcdctl(endpoint, args)
}

#[test]
fn auth_state_survives_kill9_and_restart() {
    let mut s = metastore(&[]);
    let ep = s.endpoint();
    for args in [
        &["user", "add", "root:pw"][..],
        &["role", "add", "r1"],
        &["role", "grant-permission", "r1", "read", "a", "--prefix"],
        &["user", "add", "bob:pw"],
        &["user", "grant-role", "bob", "r1"],
        &["auth", "enable"],
    ] {
        let (ok, out, err) = ctl(&ep, args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    let t = token(&ep, "root", "pw");
    let before = auth_status(&ep, Some(&t));
    assert_eq!(before["enabled"], true, "{before}");
    assert_eq!(auth_status(&ep, None)["message"], "etcdserver: user name is empty");
    s.kill9();
    s.restart();
    assert!(wait_until(Duration::from_secs(15), || ctl(&ep, &["--user", "root:pw", "user", "list"]).0));
    // The state survives. (Tokens live in memory; with the memory engine
    // the WAL replay applies the Authenticate entries after the last
    // snapshot again, which brings their tokens back.)
    assert_eq!(auth_status(&ep, Some("bogus.1"))["message"], "etcdserver: invalid auth token");
    let t = token(&ep, "root", "pw");
    let after = auth_status(&ep, Some(&t));
    assert_eq!(after["enabled"], true);
    assert_eq!(after["authRevision"], before["authRevision"], "{before} {after}");
    let (ok, out, err) = ctl(&ep, &["--user", "root:pw", "user", "get", "bob"]);
    assert!(ok && out.contains("r1"), "{out} {err}");
    let (ok, out, err) = ctl(&ep, &["--user", "root:pw", "role", "get", "r1"]);
    assert!(ok && out.contains("[a, b) (prefix a)"), "{out} {err}");
    let (ok, _, err) = ctl(&ep, &["--user", "bob:wrong", "user", "get", "bob"]);
    assert!(!ok && err.contains("authentication failed"), "{err}");
}

#[test]
fn three_members_share_users_and_tokens() {
    let c = tokio_free_cluster();
    let eps: Vec<String> = (0..3).map(|i| c.member(i).endpoint()).collect();
    for args in [&["user", "add", "root:pw"][..], &["user", "add", "alice:apw"], &["auth", "enable"]] {
        let (ok, out, err) = ctl(&eps[0], args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    // Added through member 0, usable with --user on the others.
    for ep in &eps[1..] {
        let (ok, out, err) = ctl(ep, &["--user", "root:pw", "user", "list"]);
        assert!(ok && out.contains("alice"), "{ep}: {out} {err}");
        let (ok, _, err) = ctl(ep, &["--user", "alice:nope", "user", "get", "alice"]);
        assert!(!ok && err.contains("authentication failed"), "{ep}: {err}");
    }
    // Permissions hold on every member: writes are checked where they are
    // applied, reads where they are served.
    for ep in &eps {
        let (ok, _, err) = ctl(ep, &["--user", "alice:apw", "put", "app/k", "v"]);
        assert!(!ok && err.contains("etcdserver: permission denied"), "{ep}: {err}");
    }
    for args in [
        &["--user", "root:pw", "role", "add", "app"][..],
        &["--user", "root:pw", "role", "grant-permission", "app", "readwrite", "app/", "--prefix"],
        &["--user", "root:pw", "user", "grant-role", "alice", "app"],
    ] {
        let (ok, out, err) = ctl(&eps[1], args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    for (i, ep) in eps.iter().enumerate() {
        let key = format!("app/{i}");
        let (ok, out, err) = ctl(ep, &["--user", "alice:apw", "put", &key, "v"]);
        assert!(ok, "{ep}: {out} {err}");
        let (ok, out, err) = ctl(ep, &["--user", "alice:apw", "get", "app/", "--prefix", "--keys-only"]);
        assert!(ok && out.contains(&key), "{ep}: {out} {err}");
        let (ok, _, err) = ctl(ep, &["--user", "alice:apw", "put", "other", "v"]);
        assert!(!ok && err.contains("etcdserver: permission denied"), "{ep}: {err}");
    }
    let (ok, out, err) = ctl(&eps[2], &["--user", "root:pw", "user", "revoke-role", "alice", "app"]);
    assert!(ok, "{out} {err}");
    for ep in &eps {
        let (ok, _, err) = ctl(ep, &["--user", "alice:apw", "get", "app/", "--prefix"]);
        assert!(!ok && err.contains("etcdserver: permission denied"), "{ep}: {err}");
    }
    // A user added through member 2 authenticates through member 1.
    let (ok, out, err) = ctl(&eps[2], &["--user", "root:pw", "user", "add", "dave:dpw"]);
    assert!(ok, "{out} {err}");
    let (ok, out, err) = ctl(&eps[1], &["--user", "dave:dpw", "user", "get", "dave"]);
    assert!(ok, "{out} {err}");
    // A token issued by one member works on every member.
    let t = token(&eps[1], "root", "pw");
    for ep in &eps {
        let st = auth_status(ep, Some(&t));
        assert_eq!(st["enabled"], true, "{ep}: {st}");
    }
    // Changing root's password drops its tokens everywhere.
    let args = ["--user", "root:pw", "user", "passwd", "root", "--interactive=false"];
    let out = testkit::etcdctl_stdin(&eps[0], &args, b"pw2\n");
    assert_eq!(out.code, Some(0), "{out:?}");
    for ep in &eps {
        let dropped = wait_until(Duration::from_secs(10), || {
            auth_status(ep, Some(&t))["message"] == "etcdserver: invalid auth token"
        });
        assert!(dropped, "{ep} still takes the old token");
    }
}

fn tokio_free_cluster() -> Cluster {
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &[])
}

/// A member that was down catches up through the leader's snapshot, and
/// its auth store is reloaded from it.
#[test]
fn a_member_catching_up_by_snapshot_reloads_auth() {
    let flags = ["--snapshot-count", "10", "--experimental-snapshot-catchup-entries", "5"];
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &flags);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    let lagging = (leader + 1) % 3;
    c.member_mut(lagging).kill9();
    let ep = c.member(leader).endpoint();
    let roles: Vec<String> = (0..30).map(|i| format!("role{i:02}")).collect();
    for r in &roles {
        let (ok, out, err) = ctl(&ep, &["role", "add", r]);
        assert!(ok, "{r}: {out} {err}");
    }
    c.member_mut(lagging).restart();
    let lag_ep = c.member(lagging).endpoint();
    let caught_up = wait_until(Duration::from_secs(30), || {
        let (ok, out, _) = ctl(&lag_ep, &["role", "list"]);
        ok && out.lines().count() == roles.len()
    });
    assert!(caught_up, "the restarted member lacks roles: {:?}", ctl(&lag_ep, &["role", "list"]));
    assert!(
        c.member(lagging).log_text().contains("installing a snapshot from the leader"),
        "the member should have caught up through a snapshot"
    );
    // Its in-memory copy, not only its engine, has them.
    let (ok, out, err) = ctl(&lag_ep, &["role", "get", "role29"]);
    assert!(ok && out.starts_with("Role role29"), "{out} {err}");
}

/// Median time of `n` runs of `f`.
fn median_time(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// No password or token leaves the server in its logs (at debug level),
/// its metrics or its error messages; passwords rest only as bcrypt
/// hashes; and a refused Authenticate takes a password check's time
/// whether the password was wrong or the user does not exist, so timing
/// tells neither the password nor which names exist.
#[test]
fn secrets_stay_secret_and_refusals_cost_a_password_check() {
    let s = metastore(&["--log-level", "debug"]);
    let ep = s.endpoint();
    let (root_pw, alice_pw) = ("Root-Secret-8e1f", "Alice-Secret-77c2");
    for args in
        [&["user", "add", &format!("root:{root_pw}")][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]]
    {
        let (ok, out, err) = ctl(&ep, args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    let as_root = format!("root:{root_pw}");
    let (ok, out, err) = ctl(&ep, &["--user", &as_root, "user", "add", &format!("alice:{alice_pw}")]);
    assert!(ok, "{out} {err}");
    let t = token(&ep, "root", root_pw);
    let wrong = || gateway_post(&ep, "/v3/auth/authenticate", r#"{"name":"root","password":"Wrong-Secret-1"}"#, None);
    let refusal = wrong();
    assert!(refusal.contains("authentication failed") && !refusal.contains("Wrong-Secret"), "{refusal}");
    let denied = gateway_post(&ep, "/v3/kv/range", r#"{"key":"aw=="}"#, Some(&format!("{t}x")));
    assert!(denied.contains("invalid auth token") && !denied.contains(&t), "{denied}");

    let right = median_time(5, || {
        token(&ep, "root", root_pw);
    });
    let bad_password = median_time(5, || {
        wrong();
    });
    let no_user = median_time(5, || {
        gateway_post(&ep, "/v3/auth/authenticate", r#"{"name":"ghost","password":"Wrong-Secret-1"}"#, None);
    });
    // A refusal without a bcrypt check answers in about a millisecond, a
    // check at cost 10 takes tens: far outside these bounds.
    for (what, d) in [("a wrong password", bad_password), ("an unknown user", no_user)] {
        assert!(d * 3 >= right && d <= right * 3, "{what} took {d:?}, a right password {right:?}");
    }

    let metrics = testkit::metrics::http_get(&ep, "/metrics", Duration::from_secs(5)).expect("scrape").1;
    let logs = s.log_text();
    for secret in [root_pw, alice_pw, "Wrong-Secret-1", t.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
    // At rest: the data dir holds no password in clear, only hashes.
    let mut stored = Vec::new();
    for entry in walk(&s.data_dir()) {
        stored.extend(std::fs::read(entry).unwrap_or_default());
    }
    for secret in [root_pw, alice_pw] {
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} stored in clear");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A token stops working when it expires (`--auth-token-ttl`), when its
/// user's password changes and when its user is deleted; a stale or bad
/// token is refused on every kind of call: the gateway's answers compared
/// with etcd's.
#[test]
fn tokens_expire_and_die_with_password_changes_and_deletion_as_etcd() {
    let p = Pair::start_with(&["--auth-token-ttl", "2"]);
    for args in [
        &["user", "add", "root:pw"][..],
        &["user", "add", "bob:pw"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "readwrite", "k"],
        &["user", "grant-role", "bob", "r"],
        &["auth", "enable"],
    ] {
        p.ok(args);
    }
    let story = |ep: &str| {
        let calls = [
            ("/v3/kv/range", r#"{"key":"aw=="}"#),
            ("/v3/kv/put", r#"{"key":"aw==","value":"dg=="}"#),
            ("/v3/lease/grant", r#"{"TTL":"30"}"#),
            ("/v3/cluster/member/list", "{}"),
            ("/v3/maintenance/status", "{}"),
        ];
        let answers = |token: &str| -> Vec<String> {
            calls
                .iter()
                .map(|(path, body)| {
                    let answer = gateway_post(ep, path, body, Some(token));
                    // etcd's gateway may answer chunked: the JSON is the one line of it.
                    let json = answer.lines().find(|l| l.starts_with('{')).unwrap_or(&answer);
                    let v: serde_json::Value =
                        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"));
                    format!("{path}: {}", v["message"].as_str().unwrap_or("ok"))
                })
                .collect()
        };
        let mut out = Vec::new();
        let t = token(ep, "bob", "pw");
        out.push(format!("fresh: {:?}", answers(&t)));
        out.push(format!("bad: {:?}", answers("not-a-token.1")));
        // Used within its TTL, a simple token lives on; unused, it dies.
        std::thread::sleep(Duration::from_millis(1200));
        out.push(format!("kept alive: {:?}", answers(&t)[0]));
        std::thread::sleep(Duration::from_millis(3500));
        out.push(format!("expired: {:?}", answers(&t)));
        let t = token(ep, "bob", "pw");
        let args = ["--user", "root:pw", "user", "passwd", "bob", "--interactive=false"];
        let changed = testkit::etcdctl_stdin(ep, &args, b"pw2\n");
        assert_eq!(changed.code, Some(0), "{} {}", changed.stdout, changed.stderr);
        out.push(format!("after passwd: {:?}", answers(&t)[0]));
        let t = token(ep, "bob", "pw2");
        let (ok, o, e) = etcdctl(ep, &["--user", "root:pw", "user", "delete", "bob"]);
        assert!(ok, "{o} {e}");
        out.push(format!("after delete: {:?}", answers(&t)[0]));
        out
    };
    let etcd = story(&p.etcd.endpoint());
    let ours = story(&p.ms.endpoint());
    assert!(ours[0].contains("/v3/kv/range: ok"), "{ours:?}");
    // etcd 3.5 (the spec; its "guard unauthenticated endpoints") checks
    // the token of MemberList and Status too; Debian's 3.4.23 lets them
    // through: compared in 3.4's terms after checking 3.5's.
    let guarded = ["/v3/cluster/member/list", "/v3/maintenance/status"];
    for line in [&ours[1], &ours[3]] {
        for path in guarded {
            assert!(line.contains(&format!("{path}: etcdserver: invalid auth token")), "{line}");
        }
    }
    let as_34 = |line: &String| {
        guarded.iter().fold(line.clone(), |l, path| {
            l.replace(&format!("{path}: etcdserver: invalid auth token"), &format!("{path}: ok"))
        })
    };
    assert_eq!(ours.iter().map(as_34).collect::<Vec<_>>(), etcd);
}
