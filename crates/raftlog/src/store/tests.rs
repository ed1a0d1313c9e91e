//! LogStore tests: recovery answers the same `raft::Storage` queries as
//! before a restart; snapshots (local and installed); and a three-node raft
//! cluster driven through real `RawNode`s, with a follower caught up by a
//! snapshot and restarts from disk.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{Config, GetEntriesContext, RawNode, SnapshotStatus, Storage};

use super::{LogStore, LogStoreError, LogStoreOptions};
use crate::wal::WalOptions;

fn ent(index: u64, term: u64) -> Entry {
    Entry { index, term, data: format!("e{index}t{term}").into_bytes().into(), ..Default::default() }
}

fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| ent(i, term)).collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..Default::default() }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState { voters: ids.to_vec(), ..Default::default() }
}

fn opts(catchup_entries: u64) -> LogStoreOptions {
    LogStoreOptions { wal: WalOptions { segment_bytes: 1024 }, catchup_entries }
}

fn data_of(r: Option<(raft::eraftpb::SnapshotMetadata, Box<dyn Read + Send>)>) -> Vec<u8> {
    let (_, mut r) = r.expect("a snapshot");
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// Everything raft can ask a storage about the log from `from` on.
fn answers(s: &impl Storage, from: u64) -> (HardState, ConfState, u64, Vec<Entry>, Vec<u64>) {
    let st = s.initial_state().unwrap();
    let last = s.last_index().unwrap();
    let es = s.entries(from, last + 1, None, GetEntriesContext::empty(false)).unwrap();
    let terms = (from - 1..=last).map(|i| s.term(i).unwrap()).collect();
    (st.hard_state, st.conf_state, last, es, terms)
}

#[test]
fn bootstrap_persist_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let (mut store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        assert!(rec.fresh && rec.snapshot.is_none());
        store.bootstrap(&voters(&[1, 2, 3])).unwrap();
        store.persist(&ents(1..=10, 1), Some(&hs(1, 1, 8)), true).unwrap();
        // A raft conflict overwrites a suffix.
        store.persist(&ents(7..=9, 2), Some(&hs(2, 2, 6)), true).unwrap();
        store.persist_commit(8).unwrap();
        assert_eq!(store.first_index(), 1);
        assert_eq!(store.last_index(), 9);
        assert!(matches!(store.persist(&ents(11..=12, 2), None, true), Err(LogStoreError::Inconsistent(_))));
        before = answers(&store.storage(), 1);
        assert_eq!(before.0, hs(2, 2, 8));
        assert_eq!(before.1, voters(&[1, 2, 3]));
        assert_eq!(before.4, vec![0, 1, 1, 1, 1, 1, 1, 2, 2, 2]);
    }
    let (mut store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    assert!(!rec.fresh && rec.snapshot.is_none());
    assert_eq!(answers(&store.raft_storage(), 1), before);
    assert_eq!(store.first_index(), 1);
    assert!(matches!(store.bootstrap(&voters(&[1])), Err(LogStoreError::AlreadyBootstrapped)));
}

#[test]
fn create_snapshot_compacts_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(3)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        for batch in 0..20u64 {
            let r = batch * 10 + 1..=batch * 10 + 10;
            store.persist(&ents(r, 1 + batch / 10), Some(&hs(2, 1, batch * 10 + 5)), true).unwrap();
        }
        let segments = store.wal_segment_count();
        assert!(segments > 2, "{segments} segments");
        // Not committed yet / wrong term: refused.
        let mut never = |_: &mut dyn Write| -> std::io::Result<()> { panic!("must not write") };
        assert!(store.create_snapshot(197, 2, &voters(&[1]), &mut never).is_err());
        assert!(store.create_snapshot(150, 1, &voters(&[1]), &mut never).is_err());

        store.create_snapshot(150, 2, &voters(&[1, 2]), &mut |w: &mut dyn Write| w.write_all(b"state@150")).unwrap();
        assert_eq!(store.first_index(), 148, "3 catch-up entries kept");
        assert!(store.wal_segment_count() < segments);
        assert_eq!(store.snapshot_marker(), Some((150, 2)));
        // Not newer: a no-op.
        store.create_snapshot(150, 2, &voters(&[1]), &mut never).unwrap();

        let raft = store.raft_storage();
        let snap = raft.snapshot(0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 150);
        assert!(snap.get_data().is_empty(), "data stays in the file");
        assert_eq!(data_of(store.snapshot_store().load(150, 2).unwrap()), b"state@150");
        assert!(raft.snapshot(151, 2).is_err(), "older than requested");
        before = answers(&store.storage(), 151);
    }
    let (store, rec) = LogStore::open_with(dir.path(), opts(3)).unwrap();
    assert!(!rec.fresh);
    assert_eq!(data_of(rec.snapshot), b"state@150");
    assert_eq!(store.first_index(), 151);
    assert_eq!(store.last_index(), 200);
    let mut after = answers(&store.storage(), 151);
    // Raft restarts from the snapshot's conf state (then re-applies later
    // conf changes); the live store kept the bootstrap one.
    assert_eq!(after.1, voters(&[1, 2]), "conf state from the snapshot");
    after.1 = before.1.clone();
    assert_eq!(after, before);
}

#[test]
fn conf_state_written_after_the_snapshot_wins() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        store.persist(&ents(1..=5, 1), Some(&hs(1, 1, 5)), true).unwrap();
        store.create_snapshot(4, 1, &voters(&[1, 2]), &mut |w: &mut dyn Write| w.write_all(b"s")).unwrap();
        store.persist_conf_state(5, &voters(&[1, 2, 3])).unwrap();
    }
    let (store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    let st = store.storage().initial_state().unwrap();
    assert_eq!(st.conf_state, voters(&[1, 2, 3]));
}

#[test]
fn conf_change_applied_while_a_background_snapshot_is_saved_survives_its_marker() {
    // The runner computes the snapshot's metadata at I = 5 (conf state cs0),
    // another thread writes the file, a conf change at J = 8 is applied and
    // persisted meanwhile, and only then is the marker for I written.
    let dir = tempfile::tempdir().unwrap();
    let (cs0, cs1) = (voters(&[1, 2]), voters(&[1, 2, 3]));
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        store.persist(&ents(1..=10, 1), Some(&hs(1, 1, 10)), true).unwrap();
        let meta = store.snapshot_meta(5, 1, &cs0).unwrap().unwrap();
        store.snapshot_store().save(&meta, &mut |w: &mut dyn Write| w.write_all(b"state@5")).unwrap();
        store.persist_conf_state(8, &cs1).unwrap(); // the conf change entry at 8
        assert!(store.commit_saved_snapshot(5, 1).unwrap());
        assert_eq!(store.storage().initial_state().unwrap().conf_state, cs1);
    }
    let (store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    assert_eq!(data_of(rec.snapshot), b"state@5");
    assert_eq!(store.storage().initial_state().unwrap().conf_state, cs1, "the newest persisted conf state");
    drop(store);
    // A later snapshot past J carries the conf state itself and wins.
    let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    let cs2 = voters(&[1, 2, 3, 4]);
    store.create_snapshot(9, 1, &cs2, &mut |w: &mut dyn Write| w.write_all(b"state@9")).unwrap();
    drop(store);
    let (store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    assert_eq!(store.storage().initial_state().unwrap().conf_state, cs2);
}

#[test]
fn pruning_never_removes_the_file_the_marker_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        store.persist(&ents(1..=30, 1), Some(&hs(1, 1, 30)), true).unwrap();
        store.create_snapshot(10, 1, &voters(&[1]), &mut |w: &mut dyn Write| w.write_all(b"10")).unwrap();
        // Two saves whose markers never come (crash, or superseded): the
        // prune of the second must not take 10's file, which the marker names.
        for i in [20, 25] {
            let meta = raft::eraftpb::SnapshotMetadata { index: i, term: 1, ..Default::default() };
            store.snapshot_store().save(&meta, &mut |w: &mut dyn Write| w.write_all(b"later")).unwrap();
        }
    }
    let (_store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(data_of(rec.snapshot), b"10");
}

#[test]
fn crash_between_saving_an_installed_snapshot_and_its_marker() {
    // Marker at 10; a background snapshot at 30 is saved but not yet
    // recorded; the leader's snapshot at 40 arrives (its file's prune sees
    // 10, 30, 40). A crash anywhere in the install, in particular right after
    // its file is saved (before `mark_installed_snapshot`), must leave a
    // store that opens.
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    store.bootstrap(&voters(&[1, 2])).unwrap();
    store.persist(&ents(1..=30, 1), Some(&hs(1, 1, 30)), true).unwrap();
    store.create_snapshot(10, 1, &voters(&[1, 2]), &mut |w: &mut dyn Write| w.write_all(b"10")).unwrap();
    let bg = store.snapshot_meta(30, 1, &voters(&[1, 2])).unwrap().unwrap();
    store.snapshot_store().save(&bg, &mut |w: &mut dyn Write| w.write_all(b"30")).unwrap();

    let session = crate::crashsim::Session::start(dir.path());
    store.install_snapshot(&leader_snapshot(40, 2, voters(&[1, 2]), b"leader@40")).unwrap();
    session.checkpoint("installed");
    let rec = session.finish();
    drop(store);
    check_every_crash_opens(&rec, &[b"10".as_slice(), b"leader@40"]);
}

/// Reopens the store from every crash image of `rec` in every variant; open
/// must succeed and recover one of the snapshots in `allowed`.
fn check_every_crash_opens(rec: &crate::crashsim::Recording, allowed: &[&[u8]]) {
    for (k, p) in rec.points().iter().enumerate() {
        for v in crate::crashsim::standard_variants(k as u64) {
            let out = crate::crashsim::scratch_dir();
            let img = out.path().join("img");
            rec.image(k, v, &img);
            let (_store, r) = LogStore::open_with(&img, opts(0))
                .unwrap_or_else(|e| panic!("crash point {k} ({}), {v:?}: open failed: {e}", p.label));
            let data = data_of(r.snapshot);
            assert!(allowed.contains(&data.as_slice()), "point {k} ({}), {v:?}: snapshot {data:?}", p.label);
        }
    }
}

fn leader_snapshot(index: u64, term: u64, cs: ConfState, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(cs);
    s.set_data(data.to_vec().into());
    s
}

#[test]
fn install_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1, 2, 3])).unwrap();
        store.persist(&ents(1..=5, 1), Some(&hs(1, 1, 3)), true).unwrap();
        let snap = leader_snapshot(20, 3, voters(&[1, 2]), b"leader state");
        store.install_snapshot(&snap).unwrap();
        assert_eq!((store.first_index(), store.last_index()), (21, 20));
        // Older than what we hold: refused before touching the disk.
        let old = leader_snapshot(10, 2, voters(&[1]), b"old");
        assert!(matches!(store.install_snapshot(&old), Err(LogStoreError::SnapshotOutOfDate { .. })));
        // Crash before the Ready's hard state (commit 20) is persisted.
    }
    {
        let (mut store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        assert_eq!(data_of(rec.snapshot), b"leader state");
        let st = store.storage().initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 20, "commit raised to the snapshot");
        assert_eq!(st.hard_state.term, 3);
        assert_eq!(st.conf_state, voters(&[1, 2]));
        assert_eq!((store.first_index(), store.last_index()), (21, 20));
        assert_eq!(store.storage().term(20).unwrap(), 3);
        store.persist(&ents(21..=22, 3), Some(&hs(3, 0, 21)), true).unwrap();
    }
    let (store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    let a = answers(&store.storage(), 21);
    assert_eq!(a.0, hs(3, 0, 21));
    assert_eq!(a.3, ents(21..=22, 3));
    assert_eq!(a.4, vec![3, 3, 3]);
}

#[test]
fn install_snapshot_from_a_staged_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    {
        let (mut store, _) = LogStore::open_with(m.as_path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1, 2])).unwrap();
        let snaps = store.snapshot_store();
        let meta = leader_snapshot(30, 4, voters(&[1, 2]), b"").take_metadata();
        let staged = crate::snapfile::tests::incoming(snaps.dir(), &meta, &vec![7u8; 3 << 20]);
        store.install_staged(&meta, &staged).unwrap();
        assert_eq!((store.first_index(), store.last_index()), (31, 30));
        assert!(!staged.exists(), "the staged file became the snapshot file");
        assert_eq!(data_of(snaps.load(30, 4).unwrap()), vec![7u8; 3 << 20]);

        // A staged file must be the snapshot raft installs, and whole.
        let next = leader_snapshot(40, 4, voters(&[1, 2]), b"").take_metadata();
        let other = leader_snapshot(41, 4, voters(&[1, 2]), b"").take_metadata();
        let wrong = crate::snapfile::tests::incoming(snaps.dir(), &other, b"state@41");
        assert!(store.install_staged(&next, &wrong).is_err(), "metadata of another snapshot");
        let cut = crate::snapfile::tests::incoming(snaps.dir(), &next, b"state@40");
        let len = fs::metadata(&cut).unwrap().len();
        fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(len - 3).unwrap();
        assert!(store.install_staged(&next, &cut).is_err(), "truncated");
        assert!(store.install_staged(&next, &dir.path().join("nope")).is_err(), "missing");
        assert!(cut.exists() && wrong.exists(), "a refused file is left for the caller");
        assert_eq!(store.first_index(), 31, "nothing was installed");
    }
    let (_, rec) = LogStore::open_with(m.as_path(), opts(0)).unwrap();
    assert_eq!(data_of(rec.snapshot), vec![7u8; 3 << 20]);
}

#[test]
fn dataless_snapshots_are_not_served_until_refilled() {
    let dir = tempfile::tempdir().unwrap();
    // Catch-up entries kept, so the older snapshot still reaches the log.
    let (mut store, _) = LogStore::open_with(dir.path(), opts(100)).unwrap();
    store.bootstrap(&voters(&[1, 2])).unwrap();
    store.persist(&ents(1..=20, 1), Some(&hs(1, 1, 20)), true).unwrap();
    let cs = voters(&[1, 2]);
    store.create_snapshot(5, 1, &cs, &mut |w: &mut dyn Write| w.write_all(b"state@5")).unwrap();
    store.create_snapshot(10, 1, &cs, &mut |_: &mut dyn Write| Ok(())).unwrap();
    let raft = store.raft_storage();
    assert_eq!(raft.snapshot(0, 2).unwrap().get_metadata().index, 5, "the newest with data");
    assert!(raft.snapshot(6, 2).is_err(), "the data-less one is never served");
    assert!(raft.take_snapshot_request());
    assert!(store.refill_snapshot(5, 1, &cs, &mut |_: &mut dyn Write| Ok(())).is_err(), "only the latest");
    store.refill_snapshot(10, 1, &cs, &mut |w: &mut dyn Write| w.write_all(b"state@10")).unwrap();
    assert_eq!(raft.snapshot(6, 2).unwrap().get_metadata().index, 10);
    assert_eq!(data_of(store.snapshot_store().load(10, 1).unwrap()), b"state@10");
    assert_eq!(store.snapshot_marker(), Some((10, 1)));
}

#[test]
fn mark_committed_raises_commit_within_the_log_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    store.bootstrap(&voters(&[1])).unwrap();
    store.persist(&ents(1..=10, 1), Some(&hs(1, 1, 4)), true).unwrap();
    store.mark_committed(8).unwrap();
    assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 8);
    store.mark_committed(5).unwrap();
    assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 8, "never lowered");
    assert!(matches!(store.mark_committed(11), Err(LogStoreError::Inconsistent(_))));
}

#[test]
fn missing_or_corrupt_marked_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        store.persist(&ents(1..=5, 1), Some(&hs(1, 1, 5)), true).unwrap();
        store.create_snapshot(5, 1, &voters(&[1]), &mut |w: &mut dyn Write| w.write_all(b"abcdef")).unwrap();
    }
    let snap_file = dir.path().join("snap").join(crate::snapfile::file_name(5, 1));
    let good = fs::read(&snap_file).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 14] ^= 0xff;
    fs::write(&snap_file, &bad).unwrap();
    assert!(matches!(
        LogStore::open_with(dir.path(), opts(0)),
        Err(LogStoreError::Snapshot(crate::SnapshotError::Corrupt { .. }))
    ));
    fs::remove_file(&snap_file).unwrap();
    assert!(matches!(
        LogStore::open_with(dir.path(), opts(0)),
        Err(LogStoreError::MissingSnapshot { index: 5, term: 1 })
    ));
}

#[test]
fn orphan_snapshot_from_a_crash_never_costs_the_marked_one() {
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    {
        let (mut store, _) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        store.bootstrap(&voters(&[1])).unwrap();
        store.persist(&ents(1..=30, 1), Some(&hs(1, 1, 30)), true).unwrap();
        store.create_snapshot(10, 1, &voters(&[1]), &mut |w: &mut dyn Write| w.write_all(b"10")).unwrap();
        // Crash after saving the file for 20 but before its WAL marker.
        let meta = raft::eraftpb::SnapshotMetadata { index: 20, term: 1, ..Default::default() };
        store.snaps.save(&meta, &mut |w: &mut dyn Write| w.write_all(b"20")).unwrap();
    }
    {
        let (store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
        assert_eq!(data_of(rec.snapshot), b"10");
        assert!(!snap_dir.join(crate::snapfile::file_name(20, 1)).exists());
        // Crash after saving 25's file: 10's file (the marker's) must remain.
        let meta = raft::eraftpb::SnapshotMetadata { index: 25, term: 1, ..Default::default() };
        store.snaps.save(&meta, &mut |w: &mut dyn Write| w.write_all(b"25")).unwrap();
    }
    let (_store, rec) = LogStore::open_with(dir.path(), opts(0)).unwrap();
    assert_eq!(data_of(rec.snapshot), b"10");
}

// ---- a three-node cluster driven through real RawNodes -------------------

/// A tiny state machine: the list of applied payloads.
struct Node {
    raw: RawNode<crate::RaftStorage>,
    store: LogStore,
    applied: Vec<Vec<u8>>,
    applied_index: u64,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn encode_state(applied: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in applied {
        out.extend_from_slice(&(a.len() as u32).to_le_bytes());
        out.extend_from_slice(a);
    }
    out
}

fn decode_state(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        out.push(bytes[4..4 + n].to_vec());
        bytes = &bytes[4 + n..];
    }
    out
}

impl Node {
    fn start(dir: &Path, id: u64, peers: &[u64], catchup: u64) -> Node {
        let (mut store, rec) = LogStore::open_with(dir, opts(catchup)).unwrap();
        let mut applied = Vec::new();
        let mut applied_index = 0;
        if rec.fresh {
            store.bootstrap(&voters(peers)).unwrap();
        }
        if let Some((meta, mut r)) = rec.snapshot {
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            applied = decode_state(&data);
            applied_index = meta.index;
        }
        let cfg = Config { id, election_tick: 10, heartbeat_tick: 1, applied: applied_index, ..Default::default() };
        let raw = RawNode::new(&cfg, store.raft_storage(), &logger()).unwrap();
        Node { raw, store, applied, applied_index }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            assert_eq!(e.get_entry_type(), EntryType::EntryNormal);
            if !e.data.is_empty() {
                self.applied.push(e.data.to_vec());
            }
            self.applied_index = e.index;
        }
    }

    /// One Ready round, in the order the caller must follow.
    fn handle_ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        if !self.raw.has_ready() {
            return out;
        }
        let mut rd = self.raw.ready();
        out.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.store.install_snapshot(rd.snapshot()).unwrap();
            self.applied = decode_state(rd.snapshot().get_data());
            self.applied_index = rd.snapshot().get_metadata().index;
        }
        self.apply(rd.take_committed_entries());
        self.store.persist(rd.entries(), rd.hs(), rd.must_sync()).unwrap();
        out.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.store.persist_commit(commit).unwrap();
        }
        out.extend(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        out
    }

    fn snapshot_now(&mut self) {
        let index = self.applied_index;
        let term = self.raw.store().term(index).unwrap();
        let cs = self.raw.store().initial_state().unwrap().conf_state;
        let state = encode_state(&self.applied);
        self.store.create_snapshot(index, term, &cs, &mut |w: &mut dyn Write| w.write_all(&state)).unwrap();
    }
}

struct Cluster {
    nodes: HashMap<u64, Node>,
    down: HashSet<u64>,
}

impl Cluster {
    /// Delivers messages until the cluster is quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut msgs = Vec::new();
            let mut ids: Vec<u64> = self.nodes.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                if let Some(n) = self.nodes.get_mut(&id) {
                    msgs.extend(n.handle_ready());
                }
            }
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if self.down.contains(&m.from) || self.down.contains(&m.to) {
                    continue;
                }
                let (from, to, is_snap) = (m.from, m.to, m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot);
                let mut m = m;
                if is_snap {
                    // What the transport does: stream the data from the
                    // sender's snapshot file.
                    let meta = m.get_snapshot().get_metadata().clone();
                    let loaded = self.nodes[&from].store.snapshot_store().load(meta.index, meta.term).unwrap();
                    m.mut_snapshot().set_data(data_of(loaded).into());
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.raw.step(m).unwrap();
                }
                if is_snap {
                    if let Some(leader) = self.nodes.get_mut(&from) {
                        leader.raw.report_snapshot(to, SnapshotStatus::Finish);
                    }
                }
            }
        }
        panic!("cluster did not quiesce");
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("node exists")
    }

    fn tick_leader(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.node(1).raw.tick();
            self.pump();
        }
    }
}

#[test]
fn raw_node_cluster_catches_up_by_snapshot_and_restarts_from_disk() {
    let root = tempfile::tempdir().unwrap();
    let peers = [1u64, 2, 3];
    let dir = |id: u64| root.path().join(format!("n{id}")).join("member");
    let mut c = Cluster {
        nodes: peers.iter().map(|&id| (id, Node::start(&dir(id), id, &peers, 2))).collect(),
        down: HashSet::new(),
    };
    c.node(1).raw.campaign().unwrap();
    c.pump();
    assert_eq!(c.node(1).raw.raft.state, raft::StateRole::Leader);

    c.down.insert(3);
    for i in 0..40 {
        c.node(1).raw.propose(vec![], format!("v{i}").into_bytes()).unwrap();
        c.pump();
    }
    assert_eq!(c.node(1).applied.len(), 40);
    let leader_state = c.node(1).applied.clone();
    assert_eq!(c.node(2).applied, leader_state);
    assert!(c.node(3).applied.is_empty());

    // Snapshot on the leader compacts away what node 3 would need.
    c.node(1).snapshot_now();
    c.node(2).snapshot_now();
    assert!(c.node(1).store.first_index() > c.node(3).store.last_index() + 1);

    c.down.clear();
    c.tick_leader(5);
    c.node(1).raw.propose(vec![], b"after".to_vec()).unwrap();
    c.pump();
    c.tick_leader(3);
    let want = c.node(1).applied.clone();
    assert_eq!(want.len(), 41);
    assert_eq!(c.node(3).applied, want, "node 3 caught up through the snapshot");
    assert!(c.node(3).store.snapshot_marker().is_some());

    // Restart every node from disk: state = snapshot + replayed log.
    let nodes: Vec<u64> = peers.to_vec();
    c.nodes.clear();
    for id in nodes {
        let n = Node::start(&dir(id), id, &peers, 2);
        c.nodes.insert(id, n);
    }
    c.pump();
    for id in peers {
        assert_eq!(c.node(id).applied, want, "node {id} after restart");
    }
    // And the cluster still makes progress.
    c.node(2).raw.campaign().unwrap();
    c.pump();
    c.node(2).raw.propose(vec![], b"post-restart".to_vec()).unwrap();
    c.pump();
    for _ in 0..3 {
        c.node(2).raw.tick();
        c.pump();
    }
    for id in peers {
        assert_eq!(c.node(id).applied.len(), 42, "node {id}");
    }
}

#[test]
fn the_log_stays_whole_while_a_snapshot_is_being_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = LogStore::open_with(dir.path(), opts(10)).unwrap();
    store.bootstrap(&voters(&[1, 2])).unwrap();
    store.persist(&ents(1..=300, 1), Some(&hs(1, 1, 300)), true).unwrap();
    let cs = voters(&[1, 2]);
    let mut write = |w: &mut dyn Write| w.write_all(b"state");
    store.create_snapshot(100, 1, &cs, &mut write).unwrap();
    assert_eq!(store.first_index(), 91, "10 catch-up entries kept");

    let hold = store.snapshot_store().hold_for_send();
    store.create_snapshot(200, 1, &cs, &mut write).unwrap();
    assert_eq!(store.snapshot_marker(), Some((200, 1)), "the snapshot itself is taken");
    assert_eq!(store.first_index(), 91, "nothing compacted while sending");
    let also = store.snapshot_store().hold_for_send();
    drop(hold);
    store.create_snapshot(250, 1, &cs, &mut write).unwrap();
    assert_eq!(store.first_index(), 91, "another send still holds the log");
    drop(also);
    store.create_snapshot(300, 1, &cs, &mut write).unwrap();
    assert_eq!(store.first_index(), 291, "compacted once no send holds it");
}
