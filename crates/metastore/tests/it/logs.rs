//! The log as a log pipeline reads it: etcd's JSON lines by default
//! (`--log-format json`), text with `--log-format console`, and no
//! credential in any line, even at debug level.

use crate::common::*;

/// Lines the server wrote (testkit adds its own `testkit:` lines).
fn server_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| !l.starts_with("testkit:") && !l.trim().is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_etcds_json_lines_and_carry_no_credentials() {
    let s = metastore(&["--log-level", "debug"]);
    let root_pw = "Root-pa55word-7f3a";
    let alice_pw = "Alice-pa55word-91c2";
    let alice_new_pw = "Alice-changed-44be";
    for args in [
        vec!["user", "add", &format!("root:{root_pw}")],
        vec!["user", "grant-role", "root", "root"],
        vec!["user", "add", &format!("alice:{alice_pw}")],
        vec!["auth", "enable"],
    ] {
        let (ok, out, err) = etcdctl(&s.endpoint(), &args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let mut c =
        etcd_client::Client::connect([s.url()], Some(etcd_client::ConnectOptions::new().with_user("root", root_pw)))
            .await
            .expect("connect as root");
    let token =
        c.auth_client().authenticate("alice".into(), alice_pw.into()).await.expect("authenticate").token().to_string();
    assert!(!token.is_empty());
    c.user_change_password("alice", alice_new_pw).await.expect("change password");
    c.put("k", "v", None).await.expect("put");
    c.get("k", None).await.expect("get");
    // A wrong password is logged as a failure, without the password.
    let wrong = "Wrong-pa55word-0d1e";
    assert!(c.auth_client().authenticate("alice".into(), wrong.into()).await.is_err());

    let log = s.log_text();
    let lines = server_lines(&log);
    assert!(lines.len() > 10, "{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["level", "ts", "caller", "msg"] {
            assert!(v[key].is_string(), "no {key}: {line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains(r#""level":"debug""#)), "debug level on: {log}");
    for secret in [root_pw, alice_pw, alice_new_pw, wrong, token.as_str(), "PRIVATE KEY"] {
        assert!(!log.contains(secret), "a credential in the log: {secret}\n{log}");
    }
}

#[tokio::test]
async fn console_format_is_text() {
    let s = metastore(&["--log-format", "console"]);
    let log = s.log_text();
    let line = format!("serving client requests address=127.0.0.1:{}", s.client_port);
    assert!(log.contains(&line), "{log}");
    assert!(server_lines(&log).iter().all(|l| !l.starts_with('{')), "{log}");
    let bad =
        std::process::Command::new(env!("CARGO_BIN_EXE_metastore")).args(["--log-format", "yaml"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("json, console"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// TLS on both ports at debug level: neither key's material, nor the
/// keys' file contents, reaches the log.
#[test]
fn tls_key_material_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let c = testkit::certs::generate(dir.path());
    let s = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let flags = [
        format!("--cert-file={}", s(&c.server_cert)),
        format!("--key-file={}", s(&c.server_key)),
        format!("--trusted-ca-file={}", s(&c.ca)),
        "--client-cert-auth=true".to_string(),
        format!("--peer-cert-file={}", s(&c.server_cert)),
        format!("--peer-key-file={}", s(&c.server_key)),
        format!("--peer-trusted-ca-file={}", s(&c.ca)),
        "--peer-client-cert-auth=true".to_string(),
        "--log-level=debug".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let setup = testkit::Setup { client_tls: true, peer_tls: true, members: 1 };
    let srv = ServerProcess::with_setup(Some(std::path::Path::new(env!("CARGO_BIN_EXE_metastore"))), &flags, setup);
    let tls = [
        format!("--cacert={}", s(&c.ca)),
        format!("--cert={}", s(&c.client_cert)),
        format!("--key={}", s(&c.client_key)),
    ];
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend(["put", "k", "v"]);
    let (ok, out, err) = etcdctl(&srv.url(), &args);
    assert!(ok, "{out}{err}");
    let log = srv.log_text();
    assert!(log.contains(r#""level":"debug""#), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    for key in [&c.server_key, &c.client_key] {
        let pem = std::fs::read_to_string(key).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
            assert!(!log.contains(line), "key material in the log: {line}");
        }
    }
}
