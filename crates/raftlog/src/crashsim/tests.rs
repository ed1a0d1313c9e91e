//! Tests of the power-loss model itself.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::*;
use crate::fsutil;

fn image(rec: &Recording, k: usize, entries: Entries, tails: Tails) -> (tempfile::TempDir, BTreeMap<PathBuf, Vec<u8>>) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("img");
    rec.image(k, Variant { entries, tails }, &dir);
    let tree = read_tree(&dir);
    (out, tree)
}

fn append(path: &Path, bytes: &[u8]) -> File {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn unsynced_entries_and_tails_may_vanish_synced_ones_stay() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("old"), b"before").unwrap();
    let session = Session::start(root.path());
    let a = root.path().join("a");
    let f = append(&a, b"synced");
    fsutil::sync_file(&f, &a).unwrap();
    drop(append(&a, b"+tail"));
    session.checkpoint("a synced, entry not");
    fsutil::sync_dir(root.path()).unwrap();
    session.checkpoint("entry synced");
    let rec = session.finish();
    assert_eq!(rec.points().len(), 4, "{:?}", rec.points().iter().map(|p| &p.label).collect::<Vec<_>>());

    // Before the directory fsync, `a` may be missing; `old` always stays.
    let (_d, t) = image(&rec, 2, Entries::Durable, Tails::Written);
    assert_eq!(t.keys().map(|p| p.to_str().unwrap()).collect::<Vec<_>>(), vec!["old"]);
    let (_d, t) = image(&rec, 2, Entries::Actual, Tails::Synced);
    assert_eq!(t[Path::new("a")], b"synced");
    // After it, `a` is there with at least its synced bytes.
    let (_d, t) = image(&rec, 3, Entries::Durable, Tails::Synced);
    assert_eq!(t[Path::new("a")], b"synced");
    let (_d, t) = image(&rec, 3, Entries::Durable, Tails::Written);
    assert_eq!(t[Path::new("a")], b"synced+tail");
    for seed in 0..20 {
        let (_d, t) = image(&rec, 3, Entries::Durable, Tails::Prefix(seed));
        let got = &t[Path::new("a")];
        assert!(b"synced+tail".starts_with(got) && got.len() >= 6, "{got:?}");
    }
}

#[test]
fn a_rename_is_atomic_and_durable_only_with_its_directory() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("x"), b"old x").unwrap();
    let session = Session::start(root.path());
    let tmp = root.path().join("x.tmp");
    let f = append(&tmp, b"new x");
    fsutil::sync_file(&f, &tmp).unwrap();
    fsutil::rename(&tmp, &root.path().join("x")).unwrap();
    session.checkpoint("renamed");
    fsutil::sync_dir(root.path()).unwrap();
    session.checkpoint("synced");
    fsutil::remove_file(&root.path().join("x")).unwrap();
    session.checkpoint("removed");
    let rec = session.finish();
    let n = rec.points().len();
    for seed in 0..16 {
        let (_d, t) = image(&rec, n - 3, Entries::Random(seed), Tails::Synced);
        let x = &t[Path::new("x")];
        assert!(x == b"old x" || x == b"new x", "{x:?}");
        assert!(!t.contains_key(Path::new("x.tmp")));
        let (_d, t) = image(&rec, n - 2, Entries::Random(seed), Tails::Synced);
        assert_eq!(t[Path::new("x")], b"new x");
        // Unlinked but the directory not synced: may or may not be there.
        let (_d, t) = image(&rec, n - 1, Entries::Random(seed), Tails::Synced);
        assert!(t.get(Path::new("x")).is_none_or(|x| x == b"new x"));
    }
}

#[test]
fn torn_tails_are_cut_on_sectors_and_never_touch_synced_bytes() {
    let root = tempfile::tempdir().unwrap();
    let session = Session::start(root.path());
    let path = root.path().join("seg");
    // A "preallocated" file: 4 sectors of zeros, the first 100 bytes synced.
    let f = OpenOptions::new().create(true).truncate(true).write(true).read(true).open(&path).unwrap();
    f.set_len(4 * SECTOR as u64).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[7u8; 100], 0).unwrap();
    fsutil::sync_file(&f, &path).unwrap();
    fsutil::sync_dir(root.path()).unwrap();
    f.write_all_at(&[9u8; 1500], 100).unwrap();
    session.checkpoint("tail written");
    let rec = session.finish();
    let k = rec.points().len() - 1;
    let mut saw_hole_then_data = false;
    for seed in 0..32 {
        for tails in [Tails::Sectors(seed), Tails::ZeroHoles(seed), Tails::GarbageEnd(seed), Tails::Prefix(seed)] {
            let (_d, t) = image(&rec, k, Entries::Durable, tails);
            let got = &t[Path::new("seg")];
            assert_eq!(got.len(), 4 * SECTOR, "{tails:?}");
            assert_eq!(&got[..100], &[7u8; 100][..], "{tails:?}: synced bytes intact");
            let s1 = &got[SECTOR..2 * SECTOR];
            let s2 = &got[2 * SECTOR..3 * SECTOR];
            if s1.iter().all(|&b| b == 0) && s2.iter().all(|&b| b == 9) {
                saw_hole_then_data = true;
            }
        }
    }
    assert!(saw_hole_then_data, "sectors land out of order in some variant");
}

#[test]
fn a_directory_not_durable_in_its_parent_takes_its_subtree() {
    let root = tempfile::tempdir().unwrap();
    let session = Session::start(root.path());
    let sub = root.path().join("member").join("wal");
    fs::create_dir_all(&sub).unwrap();
    let seg = sub.join("seg");
    let f = append(&seg, b"data");
    fsutil::sync_file(&f, &seg).unwrap();
    fsutil::sync_dir(&sub).unwrap();
    session.checkpoint("parents not synced");
    let rec = session.finish();
    let k = rec.points().len() - 1;
    let (_d, t) = image(&rec, k, Entries::Durable, Tails::Synced);
    assert!(t.is_empty(), "{t:?}");
    let (_d, t) = image(&rec, k, Entries::Actual, Tails::Synced);
    assert_eq!(t[Path::new("member/wal/seg")], b"data");
}
