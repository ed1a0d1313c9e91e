//! WAL tests: round trips, overwrite replay, torn tails, corruption,
//! rotation/release and crash simulation by truncation.

use std::fs;
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState};

use super::segment;
use super::{Wal, WalContents, WalError, WalOptions, DEFAULT_SEGMENT_BYTES};

fn ent(index: u64, term: u64, len: usize) -> Entry {
    Entry { index, term, data: vec![(index % 251) as u8; len].into(), ..Default::default() }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..Default::default() }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState { voters: ids.to_vec(), ..Default::default() }
}

fn ids(c: &WalContents) -> Vec<(u64, u64)> {
    c.entries.iter().map(|e| (e.index, e.term)).collect()
}

fn small(segment_bytes: u64) -> WalOptions {
    WalOptions { segment_bytes }
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir).unwrap().into_iter().map(|s| s.path).collect()
}

/// Start offsets of every record in a segment.
pub(super) fn record_offsets(path: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    segment::scan(path, true, |_, off| {
        out.push(off);
        Ok(())
    })
    .unwrap();
    out
}

/// Bytes of records in a segment (its file is longer when preallocated).
fn data_len(path: &Path) -> u64 {
    segment::scan(path, true, |_, _| Ok(())).unwrap().valid_len
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn round_trip_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (1..=50).map(|i| ent(i, 1 + i / 20, 37)).collect();
    {
        let (mut wal, c) = Wal::open(dir.path()).unwrap();
        assert!(c.is_empty());
        wal.append_conf_state(0, &voters(&[1, 2, 3])).unwrap();
        wal.append(&entries[..20], Some(&hs(1, 1, 10))).unwrap();
        wal.append(&entries[20..], Some(&hs(3, 2, 45))).unwrap();
        wal.sync().unwrap();
    }
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.entries, entries);
    assert_eq!(c.hard_state, Some(hs(3, 2, 45)));
    assert_eq!(c.conf_state, Some(voters(&[1, 2, 3])));
    assert_eq!(c.snapshot, None);
}

#[test]
fn unsynced_records_are_not_durable_but_flushed_ones_survive_a_process_exit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[ent(1, 1, 4)], None).unwrap();
        wal.flush().unwrap();
        wal.append(&[ent(2, 1, 4)], None).unwrap(); // buffered only
    }
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(ids(&c), vec![(1, 1)]);
}

#[test]
fn overwrite_replays_like_raft() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let first: Vec<Entry> = (1..=10).map(|i| ent(i, 1, 8)).collect();
        wal.append(&first, Some(&hs(1, 1, 3))).unwrap();
        wal.sync().unwrap();
        let second: Vec<Entry> = (6..=8).map(|i| ent(i, 2, 8)).collect();
        wal.append(&second, Some(&hs(2, 2, 3))).unwrap();
        wal.sync().unwrap();
    }
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    let want: Vec<(u64, u64)> = (1..=5).map(|i| (i, 1)).chain((6..=8).map(|i| (i, 2))).collect();
    assert_eq!(ids(&c), want);
    assert_eq!(c.hard_state, Some(hs(2, 2, 3)));
}

#[test]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path()).unwrap();
    assert!(matches!(Wal::open(dir.path()), Err(WalError::Locked(_))));
}

#[test]
fn torn_tail_at_every_offset_is_truncated() {
    let base = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(base.path()).unwrap();
        wal.append(&[ent(1, 1, 16), ent(2, 1, 16)], Some(&hs(1, 1, 2))).unwrap();
        wal.sync().unwrap();
        wal.append(&[ent(3, 1, 40)], None).unwrap();
        wal.sync().unwrap();
    }
    let seg = segment_paths(base.path()).pop().unwrap();
    let mut full = fs::read(&seg).unwrap();
    assert!(full.len() as u64 >= DEFAULT_SEGMENT_BYTES, "the active segment is preallocated");
    full.truncate(data_len(&seg) as usize);
    let last_start = *record_offsets(&seg).last().unwrap() as usize;
    let seg_name = seg.file_name().unwrap().to_owned();

    for cut in last_start..full.len() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        fs::write(dir.path().join(&seg_name), &full[..cut]).unwrap();
        {
            let (mut wal, c) = Wal::open(dir.path()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(ids(&c), vec![(1, 1), (2, 1)], "cut {cut}");
            assert_eq!(c.hard_state, Some(hs(1, 1, 2)));
            assert_eq!(data_len(&dir.path().join(&seg_name)), last_start as u64);
            wal.append(&[ent(3, 2, 5)], Some(&hs(2, 1, 3))).unwrap();
            wal.sync().unwrap();
        }
        let (_wal, c) = Wal::open(dir.path()).unwrap();
        assert_eq!(ids(&c), vec![(1, 1), (2, 1), (3, 2)], "cut {cut}");
        assert_eq!(c.hard_state, Some(hs(2, 1, 3)));
    }
}

#[test]
fn a_zero_tail_ends_the_log_cleanly_at_any_length() {
    // Zeros after the records are the preallocated end of the segment, or
    // a write the filesystem extended but never filled: either way the log
    // ends there and the next record goes right after the last good one.
    let base = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(base.path()).unwrap();
        wal.append(&[ent(1, 1, 16)], None).unwrap();
        wal.sync().unwrap();
    }
    let seg = segment_paths(base.path()).pop().unwrap();
    let seg_name = seg.file_name().unwrap().to_owned();
    let good = data_len(&seg) as usize;
    let records = fs::read(&seg).unwrap()[..good].to_vec();
    for zeros in [0, 1, 12, 13, 14, 4096] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let mut bytes = records.clone();
        bytes.resize(good + zeros, 0);
        fs::write(dir.path().join(&seg_name), &bytes).unwrap();
        {
            let (mut wal, c) = Wal::open(dir.path()).unwrap();
            assert_eq!(ids(&c), vec![(1, 1)], "{zeros} zeros");
            assert_eq!(data_len(&dir.path().join(&seg_name)), good as u64);
            wal.append(&[ent(2, 1, 16)], None).unwrap();
            wal.sync().unwrap();
        }
        let (_wal, c) = Wal::open(dir.path()).unwrap();
        assert_eq!(ids(&c), vec![(1, 1), (2, 1)], "{zeros} zeros");
    }
}

#[test]
fn only_the_active_segment_is_preallocated() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(4096);
    {
        let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
        for i in 1..=60 {
            wal.append(&[ent(i, 1, 200)], None).unwrap();
            wal.sync().unwrap();
        }
        assert!(wal.segment_count() >= 3);
    }
    let mut segs = segment_paths(dir.path());
    let last = segs.pop().unwrap();
    assert_eq!(fs::metadata(&last).unwrap().len(), 4096, "the active segment keeps its reserved size");
    assert!(data_len(&last) < 4096);
    for seg in &segs {
        assert_eq!(fs::metadata(seg).unwrap().len(), data_len(seg), "{} was cut back", seg.display());
    }
    // Zeros after the records of an earlier segment are damage, not an end.
    let first = &segs[0];
    let mut bytes = fs::read(first).unwrap();
    let len = bytes.len();
    bytes.resize(len + 64, 0);
    fs::write(first, &bytes).unwrap();
    match Wal::open_with(dir.path(), opts) {
        Err(WalError::Corrupt { file, offset, .. }) => assert_eq!((file, offset), (first.clone(), len as u64)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn flipped_byte_before_valid_records_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        for i in 1..=5 {
            wal.append(&[ent(i, 1, 64)], None).unwrap();
        }
        wal.sync().unwrap();
    }
    let seg = segment_paths(dir.path()).pop().unwrap();
    let offsets = record_offsets(&seg);
    let victim = offsets[1];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[victim as usize + 9 + 30] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    match Wal::open(dir.path()) {
        Err(WalError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, victim);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was truncated by the failed open.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn damage_in_a_non_last_segment_is_corruption() {
    for damage in ["flip", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open_with(dir.path(), small(512)).unwrap();
            for i in 1..=40 {
                wal.append(&[ent(i, 1, 40)], Some(&hs(1, 1, i))).unwrap();
                wal.sync().unwrap();
            }
            assert!(wal.segment_count() >= 3);
        }
        let first = segment_paths(dir.path()).remove(0);
        let mut bytes = fs::read(&first).unwrap();
        let last_rec = *record_offsets(&first).last().unwrap() as usize;
        match damage {
            "flip" => bytes[last_rec + 12] ^= 1,
            _ => bytes.truncate(last_rec + 5),
        }
        fs::write(&first, &bytes).unwrap();
        match Wal::open_with(dir.path(), small(512)) {
            Err(WalError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, first, "{damage}");
                assert_eq!(offset, last_rec as u64, "{damage}");
            }
            other => panic!("{damage}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn missing_first_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open_with(dir.path(), small(256)).unwrap();
        for i in 1..=20 {
            wal.append(&[ent(i, 1, 40)], None).unwrap();
            wal.sync().unwrap();
        }
    }
    fs::remove_file(segment_paths(dir.path()).remove(0)).unwrap();
    assert!(matches!(Wal::open_with(dir.path(), small(256)), Err(WalError::Corrupt { .. })));
}

#[test]
fn rotation_and_release_keep_what_replay_needs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(1024);
    {
        let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
        wal.append_conf_state(0, &voters(&[1, 2, 3])).unwrap();
        for batch in 0..20u64 {
            let es: Vec<Entry> = (batch * 10 + 1..=batch * 10 + 10).map(|i| ent(i, 2, 30)).collect();
            wal.append(&es, Some(&hs(2, 1, batch * 10 + 5))).unwrap();
            wal.sync().unwrap();
        }
        let before = wal.segment_count();
        assert!(before >= 5, "expected rotation, have {before} segments");
        for name in segment_paths(dir.path()) {
            assert!(fs::metadata(&name).unwrap().len() < 1024 + 600);
        }
        wal.mark_snapshot(150, 2).unwrap();
        let after = wal.segment_count();
        assert!(after < before - 2, "released: {before} -> {after}");
        assert_eq!(segment_paths(dir.path()).len(), after);
        wal.append(&[ent(201, 3, 30)], Some(&hs(3, 1, 190))).unwrap();
        wal.sync().unwrap();
    }
    let (mut wal, c) = Wal::open_with(dir.path(), opts).unwrap();
    assert_eq!(c.snapshot, Some((150, 2)));
    assert_eq!(c.conf_state, Some(voters(&[1, 2, 3])));
    assert!(!c.conf_state_after_snapshot);
    assert_eq!(c.hard_state, Some(hs(3, 1, 190)));
    let want: Vec<(u64, u64)> = (151..=200).map(|i| (i, 2)).chain([(201, 3)]).collect();
    assert_eq!(ids(&c), want);

    // A second snapshot with nothing new appended releases the rest, and the
    // hard state / conf state still survive.
    wal.mark_snapshot(201, 3).unwrap();
    assert!(wal.segment_count() <= 2);
    drop(wal);
    let (_wal, c) = Wal::open_with(dir.path(), opts).unwrap();
    assert_eq!(c.snapshot, Some((201, 3)));
    assert!(c.entries.is_empty());
    assert_eq!(c.hard_state, Some(hs(3, 1, 190)));
    assert_eq!(c.conf_state, Some(voters(&[1, 2, 3])));
}

#[test]
fn legacy_conf_state_records_still_read_with_their_old_meaning() {
    // Type 3 records (no index) from before indexed conf states: after the
    // marker they are newer than the snapshot, before it they are not.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&(1..=5).map(|i| ent(i, 1, 1)).collect::<Vec<_>>(), None).unwrap();
        super::record::encode_conf_state(&mut wal.buf, &voters(&[1])).unwrap();
        wal.mark_snapshot(3, 1).unwrap();
        super::record::encode_conf_state(&mut wal.buf, &voters(&[1, 2])).unwrap();
        wal.sync().unwrap();
    }
    {
        let (mut wal, c) = Wal::open(dir.path()).unwrap();
        assert_eq!((c.conf_state, c.conf_state_index), (Some(voters(&[1, 2])), None));
        assert!(c.conf_state_after_snapshot);
        // The next marker's copy keeps the old meaning: not newer than it.
        wal.mark_snapshot(5, 1).unwrap();
    }
    let (mut wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!((c.conf_state, c.conf_state_index), (Some(voters(&[1, 2])), Some(0)));
    // An indexed record from the new code takes over.
    wal.append_conf_state(5, &voters(&[1, 2, 3])).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!((c.conf_state, c.conf_state_index), (Some(voters(&[1, 2, 3])), Some(5)));
}

#[test]
fn marker_must_not_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path()).unwrap();
    wal.append(&(1..=10).map(|i| ent(i, 1, 1)).collect::<Vec<_>>(), None).unwrap();
    wal.mark_snapshot(8, 1).unwrap();
    wal.mark_snapshot(8, 1).unwrap();
    assert!(matches!(wal.mark_snapshot(7, 1), Err(WalError::MarkerRegression { .. })));
}

#[test]
fn installed_snapshot_marker_discards_conflicting_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&(1..=10).map(|i| ent(i, 1, 1)).collect::<Vec<_>>(), None).unwrap();
        wal.sync().unwrap();
        // The leader's snapshot at 12 (term 4) runs past our log.
        wal.mark_installed_snapshot(12, 4).unwrap();
        wal.append(&[ent(13, 4, 1)], Some(&hs(4, 2, 12))).unwrap();
        wal.sync().unwrap();
    }
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.snapshot, Some((12, 4)));
    assert_eq!(ids(&c), vec![(13, 4)]);
}

/// xorshift64*: deterministic, dependency-free randomness for the crash test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_crashes_never_lose_synced_batches() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for trial in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let opts = small(2048);
        // (segment path, end offset, entries so far) after each batch.
        let mut marks: Vec<(PathBuf, u64, u64)> = Vec::new();
        let mut synced_entries = 0;
        let mut next = 1u64;
        {
            let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
            let batches = 10 + rng.below(20);
            for b in 0..batches {
                let n = 1 + rng.below(6);
                let es: Vec<Entry> = (next..next + n).map(|i| ent(i, 1, rng.below(120) as usize)).collect();
                next += n;
                wal.append(&es, Some(&hs(1, 1, next - 1))).unwrap();
                // The last few batches are written but never fsynced.
                if b + 3 < batches {
                    wal.sync().unwrap();
                    synced_entries = next - 1;
                } else {
                    wal.flush().unwrap();
                }
                let active = wal.segments.last().unwrap();
                marks.push((active.path.clone(), wal.active_len, next - 1));
            }
        }
        let segs = segment_paths(dir.path());
        let last = segs.last().unwrap().clone();
        let len = fs::metadata(&last).unwrap().len();
        // The last synced position inside the last segment (0 if none).
        let synced_pos = marks
            .iter()
            .filter(|(p, _, n)| *p == last && *n <= synced_entries)
            .map(|(_, off, _)| *off)
            .max()
            .unwrap_or(0);
        let cut = synced_pos + rng.below(len - synced_pos + 1);
        let bytes = fs::read(&last).unwrap();
        fs::write(&last, &bytes[..cut as usize]).unwrap();

        let (mut wal, c) = Wal::open_with(dir.path(), opts).unwrap_or_else(|e| panic!("trial {trial}: cut {cut}: {e}"));
        let got = c.entries.len() as u64;
        // Everything synced survives; nothing beyond the cut appears.
        let lower = marks.iter().filter(|(p, off, _)| *p != last || *off <= cut).map(|(_, _, n)| *n).max().unwrap_or(0);
        let upper = marks.iter().find(|(p, off, _)| *p == last && *off > cut).map_or(next - 1, |(_, _, n)| *n);
        assert!(got >= synced_entries, "trial {trial}: lost synced entries");
        assert!(got >= lower && got <= upper, "trial {trial}: {got} not in {lower}..={upper}");
        for (i, e) in c.entries.iter().enumerate() {
            assert_eq!(e.index, i as u64 + 1);
            assert_eq!(e.data.len(), ent(e.index, 1, e.data.len()).data.len());
        }
        // The log keeps working after the repair.
        wal.append(&[ent(got + 1, 2, 10)], None).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_wal, c) = Wal::open_with(dir.path(), opts).unwrap();
        assert_eq!(c.entries.len() as u64, got + 1);
    }
}

/// Random histories of appends (with raft overwrites), local and installed
/// snapshot markers and reopens, checked against a simple model of the raft
/// log. Small segments make rotation and release happen all the time, so
/// replay constantly starts mid-history.
#[test]
fn random_histories_replay_like_the_model() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for trial in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let opts = small(300);
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut snap = (0u64, 0u64);
        let mut term = 1u64;
        let mut hard = None;
        let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
        let check = |c: &WalContents, model: &[(u64, u64)], snap, hard: &Option<HardState>| {
            assert_eq!(ids(c), model, "trial {trial}");
            assert_eq!(c.snapshot, (snap != (0, 0)).then_some(snap), "trial {trial}");
            assert_eq!(&c.hard_state, hard, "trial {trial}");
        };
        for _ in 0..160 {
            let last = model.last().map_or(snap.0, |e| e.0);
            match rng.below(12) {
                0..=6 => {
                    let overwrite = last > snap.0 && rng.below(4) == 0;
                    let start = if overwrite {
                        term += 1;
                        snap.0 + 1 + rng.below(last - snap.0)
                    } else {
                        last + 1
                    };
                    let n = 1 + rng.below(5);
                    let es: Vec<Entry> = (start..start + n).map(|i| ent(i, term, rng.below(60) as usize)).collect();
                    model.retain(|e| e.0 < start);
                    model.extend(es.iter().map(|e| (e.index, e.term)));
                    hard = Some(hs(term, 1, snap.0));
                    wal.append(&es, hard.as_ref()).unwrap();
                    wal.sync().unwrap();
                }
                7..=8 if last > snap.0 => {
                    let s = snap.0 + 1 + rng.below(last - snap.0);
                    let t = model.iter().find(|e| e.0 == s).map(|e| e.1).unwrap();
                    wal.mark_snapshot(s, t).unwrap();
                    model.retain(|e| e.0 > s);
                    snap = (s, t);
                }
                9 => {
                    term += 1;
                    let s = (snap.0 + 1).max(last.saturating_sub(3)) + rng.below(6);
                    wal.mark_installed_snapshot(s, term).unwrap();
                    model.clear();
                    snap = (s, term);
                }
                _ => {
                    drop(wal);
                    let (w, c) = Wal::open_with(dir.path(), opts).unwrap();
                    check(&c, &model, snap, &hard);
                    wal = w;
                }
            }
        }
        drop(wal);
        let (_wal, c) = Wal::open_with(dir.path(), opts).unwrap();
        check(&c, &model, snap, &hard);
    }
}

#[test]
fn log_ahead_of_the_snapshot_survives_release() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(512);
    {
        let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
        for i in 1..=300 {
            wal.append(&[ent(i, 1, 20)], Some(&hs(1, 1, i))).unwrap();
            wal.sync().unwrap();
        }
        let before = wal.segment_count();
        wal.mark_snapshot(100, 1).unwrap();
        wal.mark_snapshot(200, 1).unwrap();
        assert!(wal.segment_count() < before);
    }
    let (_wal, c) = Wal::open_with(dir.path(), opts).unwrap();
    assert_eq!(c.snapshot, Some((200, 1)));
    assert_eq!(ids(&c), (201..=300).map(|i| (i, 1)).collect::<Vec<_>>());
}

#[test]
fn a_release_cut_short_by_a_crash_leaves_a_log_that_opens() {
    // Our log runs to 25 (an uncommitted tail) when the leader's snapshot at
    // 19 is installed; the crash comes after the release removed only the
    // oldest `k` segments. The retained ones start past 20, but an installed
    // marker discards everything before it anyway.
    let opts = small(400);
    for k in 1..6 {
        let dir = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open_with(dir.path(), opts).unwrap();
            for i in 1..=25 {
                wal.append(&[ent(i, 2, 60)], Some(&hs(2, 1, 0))).unwrap();
                wal.sync().unwrap();
            }
            copy_dir(dir.path(), old.path());
            wal.mark_installed_snapshot(19, 3).unwrap();
        }
        let before: Vec<PathBuf> = segment_paths(old.path());
        assert!(before.len() > k, "{} segments", before.len());
        for p in &before[k..] {
            // As `mark` left it: cut back to its records.
            let bytes = fs::read(p).unwrap();
            fs::write(dir.path().join(p.file_name().unwrap()), &bytes[..data_len(p) as usize]).unwrap();
        }
        let (_wal, c) = Wal::open_with(dir.path(), opts).unwrap_or_else(|e| panic!("k {k}: reopen: {e}"));
        assert_eq!(c.snapshot, Some((19, 3)), "k {k}");
        assert!(c.entries.is_empty(), "k {k}");
    }
}

#[test]
fn failed_write_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path()).unwrap();
    wal.append(&[ent(1, 1, 8)], None).unwrap();
    wal.sync().unwrap();
    // Swap in a read-only handle so the next write fails, as a full or
    // failing disk would.
    let path = wal.segments.last().unwrap().path.clone();
    wal.active = fs::File::open(&path).unwrap();
    wal.append(&[ent(2, 1, 8)], None).unwrap();
    assert!(matches!(wal.sync(), Err(WalError::Io { .. })));
    assert!(matches!(wal.append(&[ent(3, 1, 8)], None), Err(WalError::Poisoned)));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
    assert!(matches!(wal.mark_snapshot(1, 1), Err(WalError::Poisoned)));
    drop(wal);
    let (_wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(ids(&c), vec![(1, 1)]);
}

#[test]
fn damaged_length_field_with_records_after_it_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let entries: Vec<Entry> =
            (1..=20).map(|i| Entry { index: i, term: 1, data: vec![7u8; 40].into(), ..Default::default() }).collect();
        wal.append(&entries, None).unwrap();
        wal.sync().unwrap();
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(data_len(&seg) as usize);
    // Make the first entry record's length point past the end of the file.
    let e = Entry { index: 1, term: 1, data: vec![7u8; 40].into(), ..Default::default() };
    let mut one = Vec::new();
    super::record::encode_entry(&mut one, &e).unwrap();
    let first = bytes.len() - 20 * one.len();
    assert_eq!(&bytes[first..first + 4], &one[..4], "found the first entry record");
    bytes[first + 3] = 0x7f;
    std::fs::write(&seg, &bytes).unwrap();
    match Wal::open(dir.path()) {
        Err(WalError::Corrupt { .. }) => {}
        other => {
            panic!("a damaged length amid records must be corruption, got {:?}", other.map(|(_, c)| c.entries.len()))
        }
    }
}
