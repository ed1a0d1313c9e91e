//! Moving data between etcd and MetaStore through etcd's snapshot format,
//! differential against Debian's etcd: etcd's snapshot restored into
//! MetaStore (`--restore-snapshot` and `metastore snapshot restore`) reads
//! as etcd's own restore of it; MetaStore's snapshot passes
//! `etcdctl snapshot status` and restores into a working etcd; bad files
//! exit 2 and write nothing. The RocksDB pass of scripts/test.sh runs
//! them again with that engine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};

use crate::common::*;

/// Keys of the bulk load (the "100k keys").
const BULK: usize = 100_000;
const PUTS_PER_TXN: usize = 100;

/// A key, its value, create and mod revisions, version and lease.
type KeyState = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);
/// A past read: (value, key, mod revision, version) of each key, or the
/// error's message.
type PastRead = Result<Vec<(Vec<u8>, Vec<u8>, i64, i64)>, String>;

/// What a migration must carry, as a client sees it.
#[derive(Debug, PartialEq)]
struct Seen {
    revision: i64,
    kvs: Vec<KeyState>,
    /// Reads at past revisions: the key-values, or the error's message.
    history: Vec<PastRead>,
    /// `etcdctl lease list` and `lease timetolive --keys` without the
    /// remaining time.
    leases: Vec<String>,
    /// `etcdctl user list`, `user get u1`, `role get r1`.
    auth: Vec<String>,
    /// HashKV at the current revision: hash and compact revision.
    hash_kv: (u32, i64),
}

/// The history reads `fill` makes worth checking.
struct Filled {
    history: Vec<(String, i64)>,
}

async fn fill(c: &mut Client, endpoint: &str) -> Filled {
    let rev = |r: &etcd_client::PutResponse| r.header().unwrap().revision();
    let a1 = rev(&c.put("a", "1", None).await.unwrap());
    let a2 = rev(&c.put("a", "2", None).await.unwrap());
    c.put("empty", "", None).await.unwrap();
    c.put(b"\x00\xffbin\x01".to_vec(), b"\x00\x01\xfe".to_vec(), None).await.unwrap();
    let gone = rev(&c.put("gone", "x", None).await.unwrap());
    let gone_del = c.delete("gone", None).await.unwrap().header().unwrap().revision();
    let mut h = Vec::new();
    for i in 0..4 {
        h.push(rev(&c.put("h", format!("h{i}"), None).await.unwrap()));
    }
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.lease_grant(900, None).await.unwrap();
    for k in ["l1", "l2"] {
        c.put(k, "leased", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    }
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "r1"],
        &["role", "grant-permission", "r1", "readwrite", "/x", "/y"],
        &["role", "grant-permission", "r1", "read", "--prefix", "/pub/"],
        &["user", "add", "u1:u1pw"],
        &["user", "grant-role", "u1", "r1"],
    ] {
        let (ok, out, err) = etcdctl(endpoint, args);
        assert!(ok, "etcdctl {args:?}: {out}{err}");
    }
    // Compacted at a put (not at a tombstone, where etcd versions disagree
    // on HashKV), with history on both sides of it.
    c.compact(h[1], None).await.unwrap();
    let a3 = rev(&c.put("a", "3", None).await.unwrap());
    let value = "v".repeat(100);
    for batch in 0..BULK / PUTS_PER_TXN {
        let ops: Vec<TxnOp> = (0..PUTS_PER_TXN)
            .map(|i| TxnOp::put(format!("bulk/{:06}", batch * PUTS_PER_TXN + i), value.as_str(), None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let deleted = c.delete("bulk/00000", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(deleted.deleted(), 10);
    let history = vec![
        ("a".to_string(), a1),
        ("a".to_string(), a2),
        ("a".to_string(), a3),
        ("gone".to_string(), gone),
        ("gone".to_string(), gone_del),
        ("h".to_string(), h[0]),
        ("h".to_string(), h[1]),
        ("h".to_string(), h[2]),
        ("h".to_string(), h[3]),
    ];
    Filled { history }
}

async fn seen(s: &ServerProcess, filled: &Filled) -> Seen {
    let mut c = client(s).await;
    let revision = c.get("a", None).await.unwrap().header().unwrap().revision();
    // Paged, at one revision: a client's default message limit is 4 MiB.
    let mut kvs = Vec::new();
    let mut from = b"\0".to_vec();
    loop {
        let opts = GetOptions::new().with_from_key().with_revision(revision).with_limit(5000);
        let page = c.get(from.clone(), Some(opts)).await.unwrap();
        for kv in page.kvs() {
            let k = kv.key().to_vec();
            kvs.push((k, kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()));
        }
        if !page.more() {
            break;
        }
        from = kvs.last().unwrap().0.clone();
        from.push(0);
    }
    let mut history = Vec::new();
    for (key, rev) in &filled.history {
        let read = c.get(key.as_str(), Some(GetOptions::new().with_revision(*rev))).await;
        history.push(match read {
            Ok(r) => Ok(r
                .kvs()
                .iter()
                .map(|kv| (kv.value().to_vec(), kv.key().to_vec(), kv.mod_revision(), kv.version()))
                .collect()),
            Err(etcd_client::Error::GRpcStatus(st)) => Err(st.message().to_string()),
            Err(e) => panic!("get {key} at {rev}: {e}"),
        });
    }
    let (ok, list, err) = etcdctl(&s.endpoint(), &["lease", "list"]);
    assert!(ok, "{list}{err}");
    let mut leases: Vec<String> = list.lines().map(str::to_string).collect();
    leases.sort();
    for id in list.lines().skip(1) {
        let (ok, out, err) = etcdctl(&s.endpoint(), &["lease", "timetolive", id, "--keys"]);
        assert!(ok, "{out}{err}");
        let out = out.trim();
        // "lease ID granted with TTL(600s), remaining(598s), attached keys([l1 l2])"
        let remaining = out.find(", remaining(").expect("a remaining TTL");
        let keys = out.find(", attached").expect("attached keys");
        // etcd lists a lease's keys in map order.
        let mut attached: Vec<&str> =
            out[keys..].trim_start_matches(", attached keys([").trim_end_matches("])").split(' ').collect();
        attached.sort();
        leases.push(format!("{} keys {attached:?}", &out[..remaining]));
    }
    let mut auth = Vec::new();
    for args in [&["user", "list"][..], &["user", "get", "u1"], &["role", "get", "r1"], &["auth", "status"]] {
        let (ok, out, err) = etcdctl(&s.endpoint(), args);
        auth.push(if ok { out } else { format!("error: {err}") });
    }
    let hash = c.hash_kv(0).await.unwrap();
    Seen { revision, kvs, history, leases, auth, hash_kv: (hash.hash(), hash.compact_version()) }
}

/// Asserts two views equal, naming the part that differs (a whole `Seen`
/// of 100k keys is too long to print).
fn assert_same(what: &str, got: &Seen, want: &Seen) {
    assert_eq!(got.revision, want.revision, "{what}: revision");
    assert_eq!(got.kvs.len(), want.kvs.len(), "{what}: number of keys");
    if let Some(i) = (0..got.kvs.len()).find(|&i| got.kvs[i] != want.kvs[i]) {
        panic!("{what}: key #{i} differs: {:?} != {:?}", got.kvs[i], want.kvs[i]);
    }
    assert_eq!(got.history, want.history, "{what}: history");
    assert_eq!(got.leases, want.leases, "{what}: leases");
    assert_eq!(got.auth, want.auth, "{what}: auth");
    assert_eq!(got.hash_kv, want.hash_kv, "{what}: HashKV (hash, compact revision)");
}

fn save(s: &ServerProcess, file: &Path) {
    let path = file.to_str().expect("utf-8 path");
    let (ok, out, err) = etcdctl(&s.endpoint(), &["snapshot", "save", path]);
    assert!(ok && out.contains("Snapshot saved"), "{out}{err}");
}

fn metastore_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_metastore"))
}

/// `etcdctl snapshot status -w json` and `metastore snapshot status -w
/// json` of `file`: both, to compare.
fn statuses(file: &Path) -> (String, String) {
    let etcd = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .unwrap();
    let ours = Command::new(metastore_bin()).args(["snapshot", "status", "-w", "json"]).arg(file).output().unwrap();
    assert!(etcd.status.success(), "etcdctl snapshot status: {}", String::from_utf8_lossy(&etcd.stderr));
    assert!(ours.status.success(), "metastore snapshot status: {}", String::from_utf8_lossy(&ours.stderr));
    (String::from_utf8_lossy(&etcd.stdout).trim().to_string(), String::from_utf8_lossy(&ours.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_snapshot_restores_into_metastore_as_into_etcd() {
    let etcd = ServerProcess::etcd(&[]);
    let mut c = client(&etcd).await;
    let filled = fill(&mut c, &etcd.endpoint()).await;
    let source = seen(&etcd, &filled).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.db");
    save(&etcd, &file);
    drop(etcd);
    let (theirs, ours) = statuses(&file);
    assert_eq!(ours, theirs, "snapshot status of etcd's file");

    let restored_etcd = ServerProcess::etcd_restored(&file, &[]);
    assert_same("etcd restored by etcd", &seen(&restored_etcd, &filled).await, &source);
    drop(restored_etcd);

    let online = metastore(&["--restore-snapshot", file.to_str().unwrap()]);
    assert_same("etcd restored by metastore --restore-snapshot", &seen(&online, &filled).await, &source);
    drop(online);

    let offline = ServerProcess::metastore_restored(metastore_bin(), &file, &[]);
    let mut oc = client(&offline).await;
    assert_same("etcd restored by metastore snapshot restore", &seen(&offline, &filled).await, &source);
    let put = oc.put("after", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), source.revision + 1, "revisions go on from the snapshot's");
    let members = oc.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1, "the new membership is the command line's");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metastore_snapshot_is_one_etcd_reads_and_restores() {
    let m = metastore(&[]);
    let mut c = client(&m).await;
    let filled = fill(&mut c, &m.endpoint()).await;
    let source = seen(&m, &filled).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metastore.db");
    let before = testkit::rss_kib(&m).expect("RSS of the member");
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let pid = m.pid().unwrap();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = testkit::rss_kib_of(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    save(&m, &file);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    assert!(grew < 64 << 10, "a snapshot raised the member's RSS by {grew} KiB");
    let (theirs, ours) = statuses(&file);
    assert_eq!(ours, theirs, "snapshot status of MetaStore's file");
    assert!(theirs.contains(&format!("\"revision\":{}", source.revision)), "{theirs}");

    let restored = ServerProcess::etcd_restored(&file, &[]);
    let mut ec = client(&restored).await;
    assert_same("metastore's snapshot restored by etcd", &seen(&restored, &filled).await, &source);
    let put = ec.put("after", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), source.revision + 1);
}

/// Every way a file can be unusable: a clear error, exit code 2, and no
/// data dir left behind, from both the server flag and the offline command.
#[tokio::test(flavor = "multi_thread")]
async fn bad_snapshot_files_exit_2_and_write_nothing() {
    let m = metastore(&[]);
    let mut c = client(&m).await;
    for i in 0..2000 {
        c.put(format!("k{i:04}"), "v".repeat(50), None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    save(&m, &good);
    let bytes = std::fs::read(&good).unwrap();
    let mut wrong_trailer = bytes.clone();
    *wrong_trailer.last_mut().unwrap() ^= 1;
    let mut not_etcds = Vec::new();
    {
        let path = dir.path().join("widgets.db");
        let mut w = bbolt::BoltWriter::new(std::fs::File::create(&path).unwrap(), 4096).unwrap();
        w.bucket(b"widgets").unwrap();
        w.put(b"a", b"b").unwrap();
        w.finish().unwrap();
        not_etcds.extend(std::fs::read(&path).unwrap());
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&not_etcds);
        not_etcds.extend_from_slice(&digest);
    }
    let cases: [(&str, &[u8], &str); 5] = [
        ("truncated", &bytes[..bytes.len() / 3], "snapshot missing hash"),
        ("truncated-pages", &bytes[..bytes.len() - 8192], "expected sha256"),
        ("wrong-trailer", &wrong_trailer, "expected sha256"),
        ("not-bbolt", b"this is not a database, just some text of no particular length", "snapshot missing hash"),
        ("not-etcds", &not_etcds, "not an etcd snapshot: no bucket \"key\""),
    ];
    for (name, data, message) in cases {
        let file = dir.path().join(format!("{name}.db"));
        std::fs::write(&file, data).unwrap();
        let data_dir = dir.path().join(format!("{name}.offline"));
        let out = Command::new(metastore_bin())
            .args(["snapshot", "restore"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(!data_dir.exists(), "{name}: the offline restore left {}", data_dir.display());

        let data_dir = dir.path().join(format!("{name}.server"));
        let out = Command::new(metastore_bin())
            .arg("--restore-snapshot")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", "http://127.0.0.1:0", "--listen-peer-urls", "http://127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(!data_dir.exists(), "{name}: the server left {}", data_dir.display());
    }
    // Not a bbolt file, said so when the hash check is skipped.
    let text = dir.path().join("not-bbolt.db");
    let out = Command::new(metastore_bin())
        .args(["snapshot", "restore"])
        .arg(&text)
        .arg("--skip-hash-check")
        .arg("--data-dir")
        .arg(dir.path().join("t"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a bbolt database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(metastore_bin()).args(["snapshot", "status"]).arg(&text).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The good file restores offline, and a second restore into the same
    // data dir is refused.
    let data_dir: PathBuf = dir.path().join("good.offline");
    for expect in [Some(0), Some(2)] {
        let out = Command::new(metastore_bin())
            .args(["snapshot", "restore"])
            .arg(&good)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), expect, "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The key-values under `prefix`, paged.
async fn under(c: &mut Client, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let end = format!("{}{}", &prefix[..prefix.len() - 1], (prefix.as_bytes()[prefix.len() - 1] + 1) as char);
    let mut from = prefix.as_bytes().to_vec();
    loop {
        let opts = GetOptions::new().with_range(end.as_str()).with_limit(5000);
        let page = c.get(from.clone(), Some(opts)).await.unwrap();
        out.extend(page.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())));
        if !page.more() {
            return out;
        }
        from = out.last().unwrap().0.clone();
        from.push(0);
    }
}

/// `etcdctl make-mirror` from `from` into `to` under `prefix`: the keys
/// there before it starts and the puts and deletes of 8 writers while it
/// runs all arrive, and the two key spaces end equal.
async fn mirror(from: &ServerProcess, to: &ServerProcess, destination: &str, prefix: &str) {
    let mut src = client(from).await;
    for batch in 0..20 {
        let ops: Vec<TxnOp> =
            (0..100).map(|i| TxnOp::put(format!("{prefix}pre/{:04}", batch * 100 + i), "before", None)).collect();
        src.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let mut mm = testkit::etcdctl_background(&from.endpoint(), &["make-mirror", "--prefix", prefix, destination]);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = src.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                for i in 0..250 {
                    c.put(format!("{prefix}w{w}/{i:03}"), format!("v{i}"), None).await.unwrap();
                    if i % 5 == 0 {
                        c.put(format!("{prefix}w{w}/{i:03}"), "overwritten", None).await.unwrap();
                    }
                    if i % 7 == 0 {
                        c.delete(format!("{prefix}pre/{:04}", w * 250 + i), None).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let want = under(&mut src, prefix).await;
    let mut dst = client(to).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut got = under(&mut dst, prefix).await;
    while got != want && std::time::Instant::now() < deadline {
        assert!(!mm.exited(), "make-mirror stopped: {}", mm.stdout());
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = under(&mut dst, prefix).await;
    }
    let out = mm.stop();
    assert_eq!(got.len(), want.len(), "{prefix}: keys mirrored; make-mirror said {out:?}");
    assert!(got == want, "{prefix}: the mirror's keys and values differ from the source's");
    assert!(want.len() > 2000, "the writers added keys");
}

#[tokio::test(flavor = "multi_thread")]
async fn make_mirror_both_ways_under_writes() {
    let etcd = ServerProcess::etcd(&[]);
    let m = metastore(&[]);
    // Destinations as a URL and as host:port, as operators write them.
    mirror(&etcd, &m, &m.url(), "/into-metastore/").await;
    mirror(&m, &etcd, &etcd.endpoint(), "/into-etcd/").await;
}
