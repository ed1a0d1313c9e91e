//! Snapshot file tests: round trip, fallback past corruption, temp files,
//! pruning, failed saves.

use std::fs;
use std::io::{self, Read, Write};

use raft::eraftpb::{ConfState, SnapshotMetadata};

use super::{file_name, SnapshotError, SnapshotStore, KEEP_SNAPSHOTS};

fn meta(index: u64, term: u64) -> SnapshotMetadata {
    SnapshotMetadata {
        index,
        term,
        conf_state: Some(ConfState { voters: vec![1, 2, 3], ..Default::default() }).into(),
        ..Default::default()
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn save(store: &SnapshotStore, m: &SnapshotMetadata, bytes: &[u8]) {
    store
        .save(m, &mut |w: &mut dyn Write| {
            // Stream in uneven chunks, as a state machine would.
            for chunk in bytes.chunks(100_003) {
                w.write_all(chunk)?;
            }
            Ok(())
        })
        .unwrap();
}

fn read_all(mut r: Box<dyn Read + Send>) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

#[test]
fn multi_megabyte_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    assert!(store.load_latest().unwrap().is_none());
    let bytes = data(5 << 20, 7);
    save(&store, &meta(100, 3), &bytes);

    let (m, r) = store.load_latest().unwrap().unwrap();
    assert_eq!(m, meta(100, 3));
    assert_eq!(read_all(r), bytes);
    let (m, r) = store.load(100, 3).unwrap().unwrap();
    assert_eq!(m, meta(100, 3));
    assert_eq!(read_all(r), bytes);
    assert!(store.load(100, 4).unwrap().is_none());
    assert!(dir.path().join(file_name(100, 3)).exists());
}

#[test]
fn empty_data_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    save(&store, &meta(1, 1), &[]);
    let (_, r) = store.load(1, 1).unwrap().unwrap();
    assert!(read_all(r).is_empty());
}

#[test]
fn corrupt_newest_falls_back_to_older() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let old = data(300_000, 1);
    let new = data(300_000, 2);
    save(&store, &meta(10, 1), &old);
    save(&store, &meta(20, 2), &new);

    let newest = dir.path().join(file_name(20, 2));
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&newest, &bytes).unwrap();

    let (m, r) = store.load_latest().unwrap().unwrap();
    assert_eq!(m.index, 10);
    assert_eq!(read_all(r), old);
    match store.load(20, 2) {
        Err(SnapshotError::Corrupt { path, .. }) => assert_eq!(path, newest),
        other => panic!("expected Corrupt, got {:?}", other.map(|o| o.map(|(m, _)| m))),
    }

    // Truncation is caught too, at any length.
    for cut in [0, 10, 30, bytes.len() - 5] {
        fs::write(&newest, &bytes[..cut]).unwrap();
        assert!(matches!(store.load(20, 2), Err(SnapshotError::Corrupt { .. })));
        assert_eq!(store.load_latest().unwrap().unwrap().0.index, 10);
    }
}

#[test]
fn misnamed_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    save(&store, &meta(10, 1), b"abc");
    fs::rename(dir.path().join(file_name(10, 1)), dir.path().join(file_name(11, 1))).unwrap();
    assert!(matches!(store.load(11, 1), Err(SnapshotError::Corrupt { .. })));
    assert!(store.load_latest().unwrap().is_none());
}

#[test]
fn tmp_leftovers_are_removed_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SnapshotStore::open(dir.path()).unwrap();
        save(&store, &meta(5, 1), b"five");
    }
    let leftover = dir.path().join(format!("{}.tmp", file_name(9, 1)));
    fs::write(&leftover, b"half a snapshot").unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    let (m, r) = store.load_latest().unwrap().unwrap();
    assert_eq!(m.index, 5);
    assert_eq!(read_all(r), b"five");
}

#[test]
fn only_the_newest_two_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    for i in 1..=5u64 {
        save(&store, &meta(i * 10, i), format!("snap {i}").as_bytes());
    }
    let left: Vec<u64> = store.list().unwrap().into_iter().map(|(i, _, _)| i).collect();
    assert_eq!(left.len(), KEEP_SNAPSHOTS);
    assert_eq!(left, vec![40, 50]);
}

#[test]
fn failed_save_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let err = store
        .save(&meta(7, 1), &mut |w: &mut dyn Write| {
            w.write_all(b"partial")?;
            Err(io::Error::other("state machine failed"))
        })
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Io { .. }), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(store.load_latest().unwrap().is_none());
}

#[test]
fn lookups_read_headers_and_a_file_corrupt_when_sent_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let old = data(300_000, 1);
    save(&store, &meta(10, 1), &old);
    save(&store, &meta(20, 2), &data(300_000, 2));
    assert_eq!(store.latest_with_data_meta().unwrap(), Some(meta(20, 2)));

    // Damage in the data is not seen from the header...
    let newest = dir.path().join(file_name(20, 2));
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&newest, &bytes).unwrap();
    assert_eq!(store.latest_with_data_meta().unwrap(), Some(meta(20, 2)));
    // ...but loading it to send finds it, and sets the file aside.
    assert!(matches!(store.load_to_send(20, 2), Err(SnapshotError::Corrupt { .. })));
    assert!(!newest.exists());
    assert!(dir.path().join(format!("{}.broken", file_name(20, 2))).exists());
    // The next lookup falls back to the older file, which sends.
    assert_eq!(store.latest_with_data_meta().unwrap(), Some(meta(10, 1)));
    let (m, r) = store.load_to_send(10, 1).unwrap().unwrap();
    assert_eq!(m, meta(10, 1));
    assert_eq!(read_all(r), old);
    // Asked for by name, the set-aside snapshot is still reported corrupt
    // (a WAL marker naming it must not read as a missing file).
    match store.load(20, 2) {
        Err(SnapshotError::Corrupt { reason, .. }) => assert!(reason.contains("set aside"), "{reason}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|o| o.map(|(m, _)| m))),
    }

    // A damaged header is skipped at once; data-less files never count.
    save(&store, &meta(30, 3), &data(1000, 3));
    save(&store, &meta(40, 3), &[]);
    save(&store, &meta(50, 3), &data(1000, 5));
    let kept: Vec<u64> = store.list().unwrap().iter().map(|(i, _, _)| *i).collect();
    assert_eq!(kept, vec![40, 50]);
    assert_eq!(store.latest_with_data_meta().unwrap(), Some(meta(50, 3)));
    let header_damaged = dir.path().join(file_name(50, 3));
    let mut bytes = fs::read(&header_damaged).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&header_damaged, &bytes).unwrap();
    assert_eq!(store.latest_with_data_meta().unwrap(), None, "only a data-less file is left");
}

/// A file built piece by piece with `Incoming`, as the peer service stages
/// a leader's snapshot, in `dir`.
pub(crate) fn incoming(dir: &std::path::Path, m: &SnapshotMetadata, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(format!("{}.0.incoming.tmp", file_name(m.index, m.term)));
    let (mut b, mut out) = super::Incoming::start(m).unwrap();
    for piece in bytes.chunks(65_537) {
        b.data(piece);
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&b.trailer());
    fs::write(&path, out).unwrap();
    path
}

#[test]
fn adopted_incoming_file_is_the_saved_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let bytes = data(2_500_000, 9);
    let staged = incoming(dir.path(), &meta(50, 3), &bytes);
    let path = store.adopt(&meta(50, 3), &staged).unwrap();
    assert!(!staged.exists());
    let adopted = fs::read(&path).unwrap();
    save(&store, &meta(50, 3), &bytes);
    assert_eq!(adopted, fs::read(&path).unwrap(), "byte for byte what save writes");
    let (m, r) = store.open_unverified(50, 3).unwrap().unwrap().verify().unwrap();
    assert_eq!((m.index, m.term), (50, 3));
    assert_eq!(read_all(r), bytes);
}

#[test]
fn adopt_checks_header_and_length_and_verify_checks_the_crc() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let staged = incoming(dir.path(), &meta(60, 3), &data(10_000, 1));
    let err = store.adopt(&meta(61, 3), &staged).unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    let mut bytes = fs::read(&staged).unwrap();
    bytes.pop();
    fs::write(&staged, &bytes).unwrap();
    let err = store.adopt(&meta(60, 3), &staged).unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    assert!(store.list().unwrap().is_empty(), "nothing adopted");

    // A flipped data byte passes adoption (no full read) but not verify.
    let staged = incoming(dir.path(), &meta(60, 3), &data(10_000, 1));
    let mut bytes = fs::read(&staged).unwrap();
    bytes[500] ^= 0x40;
    fs::write(&staged, &bytes).unwrap();
    store.adopt(&meta(60, 3), &staged).unwrap();
    let Err(err) = store.open_unverified(60, 3).unwrap().unwrap().verify() else {
        panic!("a flipped byte verified");
    };
    assert!(err.to_string().contains("crc mismatch"), "{err}");
}

#[test]
fn an_unverified_file_outlives_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    save(&store, &meta(10, 1), b"state@10");
    let open = store.open_unverified(10, 1).unwrap().unwrap();
    for i in 2..=(KEEP_SNAPSHOTS as u64 + 2) {
        save(&store, &meta(i * 10, 1), b"newer");
    }
    assert!(!open.path().exists(), "pruned from the directory");
    let (_, r) = open.verify().unwrap();
    assert_eq!(read_all(r), b"state@10", "still readable through the open file");
    assert!(store.open_unverified(10, 1).unwrap().is_none());
}
