//! JWT tokens (`--auth-token jwt,...`) from the outside: etcdctl with
//! `--user` against MetaStore and a real etcd started with the same keys
//! (outputs compared), the token's shape and claims, a token made old by an
//! auth change, tokens valid on every member of a cluster sharing the keys,
//! and a member given only the public key.

use std::path::Path;
use std::time::Duration;

use testkit::Cluster;

use crate::auth::{gateway_post, token};
use crate::common::*;
use crate::diff::Pair;

fn keys() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../server/testdata/jwt").to_string()
}

fn rs256() -> String {
    let k = keys();
    format!("jwt,pub-key={k}/rsa.pub.pem,priv-key={k}/rsa.pem,sign-method=RS256,ttl=10m")
}

/// The claims of a JWT token (its middle part, base64url without padding).
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT token: {token}");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url claims");
    serde_json::from_slice(&json).expect("JSON claims")
}

fn range_as(endpoint: &str, token: &str) -> serde_json::Value {
    let body = gateway_post(endpoint, "/v3/kv/range", r#"{"key":"aw=="}"#, Some(token));
    // etcd's gateway may answer chunked: the JSON is the one line of it.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or(&body);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn jwt_tokens_as_etcd() {
    let flag = rs256();
    let p = Pair::start_with(&["--auth-token", &flag]);
    for args in [
        &["user", "add", "root:pw"][..],
        &["user", "add", "bob:bpw"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "k"],
        &["user", "grant-role", "bob", "reader"],
        &["auth", "enable"],
        &["--user", "root:pw", "user", "list"],
        &["--user", "root:pw", "put", "k", "v"],
        &["--user", "bob:bpw", "get", "k"],
    ] {
        p.ok(args);
    }
    p.err(&["--user", "root:wrong", "user", "list"], "authentication failed");
    p.err(&["--user", "bob:bpw", "put", "k", "v2"], "permission denied");
    p.err(&["--user", "bob:bpw", "user", "list"], "permission denied");

    // Same claims as etcd's, and the same story for a token that an auth
    // change made old.
    let mut answers = Vec::new();
    for s in [&p.etcd, &p.ms] {
        let ep = s.endpoint();
        let t = token(&ep, "bob", "bpw");
        let c = claims(&t);
        let mut names: Vec<&str> = c.as_object().expect("claims object").keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["exp", "revision", "username"], "{:?}: {c}", s.kind);
        assert_eq!(c["username"], "bob");
        let exp = c["exp"].as_u64().expect("exp");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!((now + 590..=now + 610).contains(&exp), "{:?}: exp {exp}, now {now}", s.kind);
        let fresh = range_as(&ep, &t);
        let (ok, out, err) = etcdctl(&ep, &["--user", "root:pw", "role", "add", "another"]);
        assert!(ok, "{out} {err}");
        let stale = range_as(&ep, &t);
        answers.push((fresh["kvs"][0]["value"].clone(), stale["message"].clone()));
    }
    assert_eq!(answers[0], answers[1], "etcd, then MetaStore");
    assert_eq!(answers[1].1, "etcdserver: revision of auth store is old");
}

#[test]
fn jwt_tokens_work_on_every_member_and_a_verify_only_member_cannot_sign() {
    let flag = rs256();
    let c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), 3, &["--auth-token", &flag]);
    let eps: Vec<String> = (0..3).map(|i| c.member(i).endpoint()).collect();
    for args in [&["user", "add", "root:pw"][..], &["auth", "enable"], &["--user", "root:pw", "put", "k", "v"]] {
        let (ok, out, err) = etcdctl(&eps[0], args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    let t = token(&eps[2], "root", "pw");
    for ep in &eps {
        let r = range_as(ep, &t);
        assert_eq!(r["kvs"][0]["value"], "dg==", "{ep}: {r}");
    }
    // A token signed with another key is refused.
    let k = keys();
    let forged = {
        let other =
            server::JwtKeys::new("HS256", None, Some(b"not the cluster's key"), Duration::from_secs(60)).expect("keys");
        other.assign("root", 1).expect("sign")
    };
    assert_eq!(range_as(&eps[1], &forged)["message"], "etcdserver: invalid auth token");

    // A member with the public key only verifies the cluster's tokens and
    // cannot issue one (etcd's ErrVerifyOnly).
    let verify_only = format!("jwt,pub-key={k}/rsa.pub.pem,sign-method=RS256");
    let s = metastore(&["--auth-token", &verify_only]);
    let ep = s.endpoint();
    let ready = wait_until(Duration::from_secs(15), || etcdctl(&ep, &["endpoint", "health"]).0);
    assert!(ready, "{}", s.log_text());
    for args in [&["user", "add", "root:pw"][..], &["auth", "enable"]] {
        let (ok, out, err) = etcdctl(&ep, args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    let (ok, _, err) = etcdctl(&ep, &["--user", "root:pw", "user", "list"]);
    assert!(!ok && err.contains("auth: token signing attempted with verify-only key"), "{err}");
}
