//! TLS on the client and peer ports (`--cert-file`, `--key-file`,
//! `--client-cert-auth`, `--trusted-ca-file` and the `--peer-*` twins): the
//! same etcdctl runs against MetaStore and Debian's etcd must succeed and
//! fail alike, and a MetaStore cluster whose members talk over TLS works.

use std::path::Path;

use testkit::certs::{generate, Certs};
use testkit::{ServerProcess, Setup};

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn client_flags(c: &Certs) -> Vec<String> {
    let mut v = Vec::new();
    for (flag, path) in [("--cert-file", &c.server_cert), ("--key-file", &c.server_key), ("--trusted-ca-file", &c.ca)] {
        v.push(flag.to_string());
        v.push(s(path).to_string());
    }
    v.push("--client-cert-auth".into());
    v
}

/// etcdctl runs over TLS with and without a client certificate, and
/// without TLS: which of them worked, and what the good ones printed.
fn transcript(srv: &ServerProcess, c: &Certs) -> Vec<String> {
    let ep = srv.url();
    let (ca, cert, key) = (format!("--cacert={}", s(&c.ca)), s(&c.client_cert), s(&c.client_key));
    let (cert, key) = (format!("--cert={cert}"), format!("--key={key}"));
    // Calls that should work get time to spare on a loaded machine; those
    // that should fail give up soon.
    let (patient, quick) = ("--dial-timeout=5s", "--dial-timeout=1s");
    let mut out = Vec::new();
    let (ok, o, e) = etcdctl(&ep, &[&ca, &cert, &key, patient, "put", "k", "v"]);
    out.push(format!("put with a client cert: {ok} {}{}", o.trim(), if ok { "" } else { e.trim() }));
    let (ok, o, _) = etcdctl(&ep, &[&ca, &cert, &key, patient, "get", "k"]);
    out.push(format!("get with a client cert: {ok} {}", o.trim().replace('\n', " ")));
    let (ok, _, _) = etcdctl(&ep, &[&ca, quick, "--command-timeout=2s", "get", "k"]);
    out.push(format!("get without a client cert: {ok}"));
    let plain = format!("http://127.0.0.1:{}", srv.client_port);
    let (ok, _, _) = etcdctl(&plain, &[quick, "--command-timeout=2s", "get", "k"]);
    out.push(format!("get without TLS: {ok}"));
    let (ok, _, _) = etcdctl(&ep, &[&cert, &key, quick, "--command-timeout=2s", "get", "k"]);
    out.push(format!("get trusting no CA: {ok}"));
    out
}

#[test]
fn client_tls_and_client_cert_auth_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate(dir.path());
    let flags = client_flags(&certs);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let setup = Setup { client_tls: true, peer_tls: false, members: 1 };
    let etcd = transcript(&ServerProcess::with_setup(None, &flags, setup), &certs);
    let binary = Path::new(env!("CARGO_BIN_EXE_metastore"));
    let ours = transcript(&ServerProcess::with_setup(Some(binary), &flags, setup), &certs);
    assert_eq!(ours, etcd);
    assert!(ours[0].starts_with("put with a client cert: true"), "{ours:?}");
}

#[test]
fn an_https_url_without_a_certificate_is_refused_as_etcd_does() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metastore"))
        .args(["--listen-client-urls", "https://127.0.0.1:0", "--advertise-client-urls", "https://127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme"
        ),
        "{err}"
    );
}

/// Three members whose peer traffic (raft, snapshots, forwarded lease
/// calls) is TLS with peer certificate checks: writes replicate, a lease
/// keep-alive through a follower reaches the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_peer_tls() {
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let mut flags = Vec::new();
    for (flag, path) in
        [("--peer-cert-file", &c.server_cert), ("--peer-key-file", &c.server_key), ("--peer-trusted-ca-file", &c.ca)]
    {
        flags.push(flag.to_string());
        flags.push(s(path).to_string());
    }
    flags.push("--peer-client-cert-auth".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let setup = Setup { client_tls: false, peer_tls: true, members: 3 };
    let srv = tokio::task::block_in_place(|| {
        ServerProcess::with_setup(Some(Path::new(env!("CARGO_BIN_EXE_metastore"))), &flags, setup)
    });
    let mut cl = client(&srv).await;
    for i in 0..20 {
        cl.put(format!("tls/{i}"), "v", None).await.unwrap();
    }
    let lease = cl.lease_grant(30, None).await.unwrap().id();
    let (mut keeper, mut answers) = cl.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert!(answers.message().await.unwrap().unwrap().ttl() > 0);
    let members = etcdctl(&srv.endpoint(), &["member", "list"]).1;
    assert_eq!(members.matches("https://127.0.0.1:").count(), 3, "{members}");
    let got = cl.get("tls/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(got.count(), 20);
}

/// The flags kubeadm gives etcd (TLS everywhere with certificate checks,
/// `=true` booleans, a metrics port, the initial corruption check, a
/// progress-notify interval): MetaStore starts with them and serves as
/// etcd does.
#[test]
fn kubeadm_command_line_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let run = |binary: Option<&Path>| {
        let metrics_port = testkit::free_port();
        let metrics = format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}");
        let flags = [
            format!("--cert-file={}", s(&c.server_cert)),
            "--client-cert-auth=true".to_string(),
            "--experimental-initial-corrupt-check=true".to_string(),
            "--experimental-watch-progress-notify-interval=5s".to_string(),
            format!("--key-file={}", s(&c.server_key)),
            metrics,
            format!("--peer-cert-file={}", s(&c.server_cert)),
            "--peer-client-cert-auth=true".to_string(),
            format!("--peer-key-file={}", s(&c.server_key)),
            format!("--peer-trusted-ca-file={}", s(&c.ca)),
            "--snapshot-count=10000".to_string(),
            format!("--trusted-ca-file={}", s(&c.ca)),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let setup = Setup { client_tls: true, peer_tls: true, members: 1 };
        let srv = ServerProcess::with_setup(binary, &flags, setup);
        let mut out = transcript(&srv, &c);
        let health = testkit::metrics::http_get(
            &format!("127.0.0.1:{metrics_port}"),
            "/health",
            std::time::Duration::from_secs(5),
        );
        out.push(format!("metrics port /health: {health:?}"));
        out
    };
    let etcd = run(None);
    let ours = run(Some(Path::new(env!("CARGO_BIN_EXE_metastore"))));
    assert_eq!(ours, etcd);
    assert!(ours[0].starts_with("put with a client cert: true"), "{ours:?}");
}

/// With `--client-cert-auth` and auth on, a request that carries no token
/// runs as the user its certificate's Common Name names (etcd's
/// `AuthInfoFromTLS`), and a token, when sent, wins: the same etcdctl runs
/// against MetaStore and etcd succeed and fail alike.
#[test]
fn a_client_certificates_common_name_is_its_user_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let (alice_cert, alice_key) = testkit::certs::client_named(dir.path(), "alice");
    let (nobody_cert, nobody_key) = testkit::certs::client_named(dir.path(), "nobody");
    let flags = client_flags(&c);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let setup = Setup { client_tls: true, peer_tls: false, members: 1 };
    let run = |binary: Option<&Path>| {
        let srv = ServerProcess::with_setup(binary, &flags, setup);
        let ep = srv.url();
        let ca = format!("--cacert={}", s(&c.ca));
        let as_cert = |cert: &Path, key: &Path, args: &[&str]| {
            let (cert, key) = (format!("--cert={}", s(cert)), format!("--key={}", s(key)));
            let mut all = vec![ca.as_str(), cert.as_str(), key.as_str(), "--dial-timeout=5s"];
            all.extend_from_slice(args);
            let (ok, o, e) = etcdctl(&ep, &all);
            // etcdctl's last line of stderr is its error; the lines before
            // it carry times and ports.
            format!("{args:?}: {ok} {} {}", o.trim().replace('\n', " "), e.trim().lines().last().unwrap_or(""))
        };
        let alice = |args: &[&str]| as_cert(&alice_cert, &alice_key, args);
        let nobody = |args: &[&str]| as_cert(&nobody_cert, &nobody_key, args);
        let mut out = Vec::new();
        for step in [
            &["user", "add", "root:pw"][..],
            &["user", "grant-role", "root", "root"],
            &["user", "add", "alice:x"],
            &["role", "add", "rw"],
            &["role", "grant-permission", "rw", "readwrite", "mine/", "--prefix"],
            &["user", "grant-role", "alice", "rw"],
            &["auth", "enable"],
        ] {
            out.push(alice(step));
        }
        out.push(alice(&["put", "mine/a", "1"]));
        out.push(alice(&["get", "mine/a"]));
        out.push(alice(&["put", "theirs", "1"]));
        out.push(alice(&["user", "list"]));
        out.push(nobody(&["get", "mine/a"]));
        out.push(nobody(&["put", "mine/b", "2"]));
        out.push(alice(&["--user", "root:pw", "put", "theirs", "1"]));
        out.push(nobody(&["--user", "root:pw", "get", "theirs"]));
        out.push(alice(&["--user", "root:pw", "role", "revoke-permission", "rw", "mine/", "--prefix"]));
        out.push(alice(&["get", "mine/a"]));
        out
    };
    let etcd = run(None);
    let ours = run(Some(Path::new(env!("CARGO_BIN_EXE_metastore"))));
    assert_eq!(ours, etcd);
    assert!(ours[7].contains("OK"), "{ours:?}");
    assert!(ours[9].contains("permission denied"), "{ours:?}");
}
