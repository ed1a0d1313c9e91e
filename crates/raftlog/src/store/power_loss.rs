//! Power-loss tests of the log store: workloads recorded by `crashsim`, then
//! every crash point reopened in every standard variant. Each reopen must
//! succeed without repair and hold everything acknowledged (an operation
//! that returned `Ok` after syncing); the operation in flight at the crash
//! may or may not have landed, in part for a batch of entries.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::Storage;

use super::{LogStore, LogStoreOptions};
use crate::crashsim::{scratch_dir, standard_variants, Recording, Rng, Session, Variant};
use crate::wal::WalOptions;

fn opts() -> LogStoreOptions {
    LogStoreOptions { wal: WalOptions { segment_bytes: 1024 }, catchup_entries: 0 }
}

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![(index % 251) as u8 | 1; 40 + (index % 7) as usize * 90].into(),
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState { voters: ids.to_vec(), ..Default::default() }
}

/// What the store holds, as far as these tests look.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    snap: (u64, u64),
    /// Snapshot data, named by the marker.
    snap_data: Vec<u8>,
    /// index -> term, above the snapshot.
    entries: BTreeMap<u64, u64>,
    term_vote: (u64, u64),
    conf: ConfState,
}

/// An operation that changes the model; `Persist` may land in part.
#[derive(Debug, Clone)]
enum Op {
    Persist { first: u64, count: u64 },
    Other,
}

/// The store as recovered after a crash.
fn recovered(dir: &Path) -> Result<(LogStore, Model), String> {
    let (store, rec) = LogStore::open_with(dir, opts()).map_err(|e| e.to_string())?;
    let st = store.storage().initial_state().map_err(|e| e.to_string())?;
    let snap = store.snapshot_marker().unwrap_or((0, 0));
    let mut snap_data = Vec::new();
    if let Some((meta, mut r)) = rec.snapshot {
        assert_eq!((meta.index, meta.term), snap);
        r.read_to_end(&mut snap_data).map_err(|e| e.to_string())?;
    }
    let mut entries = BTreeMap::new();
    for i in snap.0 + 1..=store.last_index() {
        let t = store.storage().term(i).map_err(|e| e.to_string())?;
        entries.insert(i, t);
    }
    let m =
        Model { snap, snap_data, entries, term_vote: (st.hard_state.term, st.hard_state.vote), conf: st.conf_state };
    Ok((store, m))
}

/// Whether `r` is `a` with a prefix of the in-flight operation `op` (which
/// leads to `b`) applied.
fn acceptable(r: &Model, a: &Model, b: Option<&(Op, Model)>) -> Result<(), String> {
    let candidates: Vec<&Model> = std::iter::once(a).chain(b.map(|(_, m)| m)).collect();
    let pick = |f: &dyn Fn(&Model) -> bool, what: &str| -> Result<(), String> {
        if candidates.iter().any(|m| f(m)) {
            Ok(())
        } else {
            Err(format!("{what} matches neither the acknowledged state nor the one in flight"))
        }
    };
    pick(&|m: &Model| m.snap == r.snap && m.snap_data == r.snap_data, "snapshot")?;
    pick(&|m: &Model| m.conf == r.conf, "conf state")?;
    pick(&|m: &Model| m.term_vote == r.term_vote, "term and vote")?;
    let above = |m: &Model| m.entries.range(r.snap.0 + 1..).map(|(i, t)| (*i, *t)).collect::<Vec<_>>();
    let got = above(r);
    if candidates.iter().any(|m| above(m) == got) {
        return Ok(());
    }
    if let Some((Op::Persist { first, count }, bm)) = b {
        for m in 1..=*count {
            let mut want: Vec<(u64, u64)> = above(a).into_iter().filter(|(i, _)| i < first).collect();
            want.extend(bm.entries.range(*first..*first + m).map(|(i, t)| (*i, *t)));
            if want == got {
                return Ok(());
            }
        }
    }
    Err(format!("entries {got:?} are not the acknowledged {:?} plus part of the one in flight", above(a)))
}

/// Reopens every crash image of `rec`, in the variants `variants` picks for
/// each point; `models[j]` is the state after operation `j`, completed at
/// crash point `done[j]`.
fn check_all(
    rec: &Recording,
    done: &[usize],
    models: &[(Op, Model)],
    root_member: &str,
    variants: fn(usize) -> Vec<Variant>,
) {
    let empty = Model::default();
    for (k, p) in rec.points().iter().enumerate() {
        let completed = done.iter().take_while(|d| **d <= k).count();
        let acked = completed.checked_sub(1).map_or(&empty, |j| &models[j].1);
        let in_flight = models.get(completed);
        for v in variants(k) {
            let out = scratch_dir();
            let img = out.path().join("img");
            rec.image(k, v, &img);
            let dir = img.join(root_member);
            let ctx = || format!("crash point {k} ({}) of {}, {v:?}", p.label, rec.points().len());
            let (mut store, r) = recovered(&dir).unwrap_or_else(|e| panic!("{}: open failed: {e}", ctx()));
            if let Err(e) = acceptable(&r, acked, in_flight) {
                panic!("{}: {e}\n recovered {r:?}\n acknowledged {acked:?}\n in flight {in_flight:?}", ctx());
            }
            // The store keeps working after the repair.
            let next = store.last_index() + 1;
            let hs = HardState { term: r.term_vote.0.max(1), vote: r.term_vote.1, commit: 0, ..Default::default() };
            store.persist(&[ent(next, hs.term)], Some(&hs), true).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
            drop(store);
            let (_s, again) = recovered(&dir).unwrap_or_else(|e| panic!("{}: second open: {e}", ctx()));
            assert_eq!(again.entries.get(&next), Some(&hs.term), "{}", ctx());
        }
    }
}

#[test]
fn a_fresh_member_survives_power_loss_once_acknowledged() {
    let root = scratch_dir();
    let session = Session::start(root.path());
    let (mut store, rec) = LogStore::open_with(&root.path().join("member"), opts()).unwrap();
    assert!(rec.fresh);
    store.bootstrap(&voters(&[1, 2, 3])).unwrap();
    let m1 = Model { conf: voters(&[1, 2, 3]), ..Default::default() };
    let done0 = session.points();
    session.checkpoint("bootstrapped");
    let hs = HardState { term: 1, vote: 1, commit: 0, ..Default::default() };
    let es: Vec<Entry> = (1..=3).map(|i| ent(i, 1)).collect();
    store.persist(&es, Some(&hs), true).unwrap();
    let mut m2 = m1.clone();
    m2.entries = (1..=3).map(|i| (i, 1)).collect();
    m2.term_vote = (1, 1);
    let done1 = session.points();
    session.checkpoint("persisted");
    let rec = session.finish();
    drop(store);
    let models = vec![(Op::Other, m1), (Op::Persist { first: 1, count: 3 }, m2)];
    check_all(&rec, &[done0, done1], &models, "member", |k| standard_variants(k as u64));
}

/// A random workload: appends, raft overwrites, commit-only updates (not
/// synced), local snapshots, snapshots from a leader and conf changes, on
/// 1 KiB segments so that rotation and release happen all the time.
fn random_workload(seed: u64, ops: usize) {
    let root = scratch_dir();
    let session = Session::start(root.path());
    let mut rng = Rng(seed);
    let (mut store, _) = LogStore::open_with(&root.path().join("member"), opts()).unwrap();
    let mut m = Model { conf: voters(&[1, 2, 3]), ..Default::default() };
    store.bootstrap(&m.conf).unwrap();
    let mut done = vec![session.points()];
    let mut models = vec![(Op::Other, m.clone())];
    session.checkpoint("bootstrapped");
    let (mut term, mut commit) = (1u64, 0u64);
    // (index, conf state after the conf change at that index), oldest first.
    let mut confs = vec![(0u64, m.conf.clone())];
    let conf_at = |confs: &[(u64, ConfState)], i: u64| -> ConfState {
        confs.iter().rev().find(|(j, _)| *j <= i).map(|(_, cs)| cs.clone()).unwrap_or_default()
    };
    for step in 0..ops {
        let last = m.entries.keys().last().copied().unwrap_or(m.snap.0);
        let op = match rng.below(10) {
            0..=4 => {
                let overwrite = last > commit && rng.below(3) == 0;
                let first = if overwrite { commit + 1 + rng.below(last - commit) } else { last + 1 };
                if overwrite {
                    term += 1;
                }
                let count = 1 + rng.below(4);
                let es: Vec<Entry> = (first..first + count).map(|i| ent(i, term)).collect();
                m.entries.retain(|i, _| *i < first);
                m.entries.extend(es.iter().map(|e| (e.index, e.term)));
                m.term_vote = (term, 1);
                let hs = HardState { term, vote: 1, commit, ..Default::default() };
                store.persist(&es, Some(&hs), true).unwrap();
                Op::Persist { first, count }
            }
            5 if last > commit => {
                commit += 1 + rng.below(last - commit);
                store.persist_commit(commit).unwrap();
                Op::Other
            }
            6 if commit > m.snap.0 => {
                let i = m.snap.0 + 1 + rng.below(commit - m.snap.0);
                let t = m.entries[&i];
                let data = format!("local@{i}").into_bytes();
                let cs = conf_at(&confs, i);
                store.create_snapshot(i, t, &cs, &mut |w: &mut dyn Write| w.write_all(&data)).unwrap();
                m.entries.retain(|j, _| *j > i);
                m.snap = (i, t);
                m.snap_data = data;
                Op::Other
            }
            7 => {
                let i = last.max(m.snap.0) + rng.below(4);
                if i <= m.snap.0 {
                    continue;
                }
                let data = format!("leader@{i}").into_bytes();
                let mut s = Snapshot::default();
                s.mut_metadata().index = i;
                s.mut_metadata().term = term;
                s.mut_metadata().set_conf_state(m.conf.clone());
                s.set_data(data.clone().into());
                store.install_snapshot(&s).unwrap();
                // Raft's storage takes the snapshot's term if it is higher.
                m.term_vote.0 = m.term_vote.0.max(term);
                m.entries.clear();
                m.snap = (i, term);
                m.snap_data = data;
                commit = i;
                Op::Other
            }
            // A conf change entry at `commit`, newly applied.
            8 if commit > m.snap.0 && commit > confs.last().map_or(0, |c| c.0) => {
                m.conf = voters(&[1, 2, 3, 4 + step as u64]);
                confs.push((commit, m.conf.clone()));
                store.persist_conf_state(commit, &m.conf).unwrap();
                Op::Other
            }
            _ => continue,
        };
        done.push(session.points());
        models.push((op, m.clone()));
        session.checkpoint(&format!("op {step} done"));
    }
    let rec = session.finish();
    drop(store);
    check_all(&rec, &done, &models, "member", |k| standard_variants(k as u64 ^ 0x5eed));
}

#[test]
fn random_workloads_survive_power_loss_at_every_point() {
    for seed in 1..=6 {
        random_workload(seed * 0x1234_5678_9abc, 40);
    }
}
