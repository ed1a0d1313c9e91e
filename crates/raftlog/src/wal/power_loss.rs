//! Power-loss tests of the WAL: torn writes in the unsynced tail of the last
//! segment (zeros then data, data then zeros, sectors out of order) are
//! repaired; damage to data that later records prove was synced is not.

use std::fs;
use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::segment;
use super::tests::record_offsets;
use super::{Wal, WalContents, WalError, WalOptions};
use crate::crashsim::{scratch_dir, standard_variants, Rng, Session, SECTOR};

/// Segments big enough for every test here, small enough to copy cheaply.
const SMALL: WalOptions = WalOptions { segment_bytes: 16 << 10 };

fn ent(index: u64, len: usize) -> Entry {
    Entry { index, term: 1, data: vec![(index % 251) as u8 | 1; len].into(), ..Default::default() }
}

fn hs(commit: u64) -> HardState {
    HardState { term: 1, vote: 1, commit, ..Default::default() }
}

fn last_segment(dir: &Path) -> PathBuf {
    segment::list(dir).unwrap().pop().unwrap().path
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

/// Entries must be 1..=n for some n in `lo..=hi`, each with its own data.
fn check_prefix(c: &WalContents, lo: u64, hi: u64, ctx: &str) {
    let n = c.entries.len() as u64;
    assert!(n >= lo && n <= hi, "{ctx}: {n} entries, want {lo}..={hi}");
    for (i, e) in c.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1, "{ctx}");
        assert!(e.data.iter().all(|&b| b == (e.index % 251) as u8 | 1), "{ctx}: entry {} data", e.index);
    }
}

/// Entries 1..=3 synced, then 4..=9 (large, spanning sectors) written but
/// not synced. Returns the WAL dir and the offset where the unsynced
/// records start.
fn synced_then_unsynced() -> (tempfile::TempDir, u64) {
    let dir = scratch_dir();
    let (mut wal, _) = Wal::open_with(dir.path(), SMALL).unwrap();
    wal.append(&(1..=3).map(|i| ent(i, 100)).collect::<Vec<_>>(), Some(&hs(3))).unwrap();
    wal.sync().unwrap();
    let synced_end = wal.active_len;
    wal.append(&(4..=9).map(|i| ent(i, 300)).collect::<Vec<_>>(), Some(&hs(9))).unwrap();
    wal.flush().unwrap();
    (dir, synced_end)
}

#[test]
fn a_lost_sector_in_the_unsynced_tail_is_a_torn_write() {
    let (base, synced_end) = synced_then_unsynced();
    let seg = last_segment(base.path());
    let name = seg.file_name().unwrap().to_owned();
    let bytes = fs::read(&seg).unwrap();
    let end = *record_offsets(&seg).last().unwrap() as usize + 200;
    // Every sector (piece) of the unsynced tail lost on its own: it reads as
    // zeros while later sectors made it to disk.
    let mut at = synced_end as usize;
    while at < end {
        let next = (at / SECTOR + 1) * SECTOR;
        let mut torn = bytes.clone();
        torn[at..next].fill(0);
        let dir = scratch_dir();
        copy_dir(base.path(), dir.path());
        fs::write(dir.path().join(&name), &torn).unwrap();
        let ctx = format!("sector piece {at}..{next} zeroed");
        {
            let (mut wal, c) = Wal::open_with(dir.path(), SMALL).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            check_prefix(&c, 3, 9, &ctx);
            wal.append(&[ent(c.entries.len() as u64 + 1, 10)], None).unwrap();
            wal.sync().unwrap();
        }
        let (_wal, again) = Wal::open_with(dir.path(), SMALL).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        check_prefix(&again, 4, 10, &ctx);
        at = next;
    }
}

#[test]
fn a_lost_sector_in_synced_data_is_corruption_when_later_records_prove_it() {
    let dir = scratch_dir();
    let synced_mid;
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&(1..=4).map(|i| ent(i, 300)).collect::<Vec<_>>(), Some(&hs(4))).unwrap();
        wal.sync().unwrap();
        synced_mid = wal.active_len / 2;
        for i in 5..=8 {
            wal.append(&[ent(i, 300)], Some(&hs(i))).unwrap();
            wal.sync().unwrap();
        }
    }
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let sector = synced_mid as usize / SECTOR * SECTOR;
    bytes[sector..sector + SECTOR].fill(0);
    fs::write(&seg, &bytes).unwrap();
    match Wal::open(dir.path()) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("synced"), "{reason}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, c)| c.entries.len())),
    }
    // Nothing was truncated by the failed open.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn garbage_followed_by_later_records_is_corruption() {
    // Indistinguishable from a bit flip in synced data: reported, never
    // truncated (the documented limit of the torn-write repair).
    let (dir, synced_end) = synced_then_unsynced();
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let at = synced_end as usize + 20;
    bytes[at..at + 50].fill(0x5a);
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(Wal::open_with(dir.path(), SMALL), Err(WalError::Corrupt { .. })));
}

/// Random batches (synced, or only flushed) and snapshot markers, recorded
/// by `crashsim`; every crash image in every variant must open with every
/// synced entry.
#[test]
fn every_power_loss_keeps_what_was_synced() {
    for seed in 1..=8u64 {
        let root = scratch_dir();
        let opts = WalOptions { segment_bytes: 4096 };
        let mut rng = Rng(seed * 0x51_7cc1_b727_220a);
        let session = Session::start(root.path());
        let (mut wal, _) = Wal::open_with(&root.path().join("wal"), opts).unwrap();
        // (crash points recorded when the op completed, synced last index,
        // written last index, snapshot index)
        let mut marks: Vec<(usize, u64, u64, u64)> = vec![(session.points(), 0, 0, 0)];
        let (mut synced, mut written, mut snap) = (0u64, 0u64, 0u64);
        for _ in 0..40 {
            if rng.below(8) == 0 && synced > snap {
                snap = snap + 1 + rng.below(synced - snap);
                wal.mark_snapshot(snap, 1).unwrap();
                synced = written;
            } else {
                let n = 1 + rng.below(3);
                let es: Vec<Entry> = (written + 1..=written + n).map(|i| ent(i, rng.below(900) as usize)).collect();
                written += n;
                wal.append(&es, Some(&hs(written))).unwrap();
                if rng.below(3) == 0 {
                    wal.flush().unwrap();
                } else {
                    wal.sync().unwrap();
                    synced = written;
                }
            }
            marks.push((session.points(), synced, written, snap));
            session.checkpoint("op done");
        }
        let rec = session.finish();
        drop(wal);
        for (k, p) in rec.points().iter().enumerate() {
            let done = marks.iter().take_while(|m| m.0 <= k).count();
            let (_, acked, _, acked_snap) = marks[done.saturating_sub(1)];
            let (_, _, max_written, max_snap) = marks[done.min(marks.len() - 1)];
            for v in standard_variants(seed ^ k as u64) {
                let out = scratch_dir();
                rec.image(k, v, out.path());
                let ctx = format!("seed {seed}, point {k} ({}), {v:?}", p.label);
                let (_wal, c) =
                    Wal::open_with(&out.path().join("wal"), opts).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
                let s = c.snapshot.map_or(0, |(i, _)| i);
                assert!(s >= acked_snap && s <= max_snap, "{ctx}: snapshot {s}");
                let last = c.entries.last().map_or(s, |e| e.index);
                assert!(last >= acked && last <= max_written.max(s), "{ctx}: last {last}, synced {acked}");
                for (i, e) in c.entries.iter().enumerate() {
                    assert_eq!(e.index, s + 1 + i as u64, "{ctx}");
                    assert!(e.data.iter().all(|&b| b == (e.index % 251) as u8 | 1), "{ctx}: entry {}", e.index);
                }
            }
        }
    }
}

#[test]
fn what_open_replays_after_a_process_crash_is_made_durable() {
    // Written but never synced, then the process dies: the records are in
    // the page cache, and open replays them. Raft treats them as persisted
    // from then on, so open must sync them before returning.
    let root = scratch_dir();
    let session = Session::start(root.path());
    let dir = root.path().join("wal");
    {
        let (mut wal, _) = Wal::open_with(&dir, SMALL).unwrap();
        wal.append(&(1..=3).map(|i| ent(i, 50)).collect::<Vec<_>>(), Some(&hs(3))).unwrap();
        wal.flush().unwrap();
    }
    let (_wal, c) = Wal::open_with(&dir, SMALL).unwrap();
    assert_eq!(c.entries.len(), 3);
    session.checkpoint("reopened");
    let rec = session.finish();
    let k = rec.points().len() - 1;
    for v in standard_variants(7) {
        let out = scratch_dir();
        rec.image(k, v, out.path());
        let (_w, c) = Wal::open_with(&out.path().join("wal"), SMALL).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        check_prefix(&c, 3, 3, &format!("{v:?}"));
    }
}
