//! Snapshot install into a running store (`restore.rs`): readers are not
//! held up while the snapshot streams in, the result equals the snapshot's
//! store, and failures leave the old state (and no false applied index).

use std::io::Read;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::memory::MemoryEngine;

use super::test_engine::FaultyEngine;
use super::tests_model::normalized_index;
use super::*;

fn applied(index: u64) -> AppliedIndex {
    AppliedIndex { index, term: 1 }
}

fn all() -> KeyRange {
    KeyRange::FromKey(Vec::new())
}

/// Txns `from..to` of one deterministic history (every member of a raft
/// group applies the same one).
fn apply(s: &MvccStore, from: u64, to: u64) {
    for n in from..to {
        let key = format!("k{:03}", (n * 31) % 200).into_bytes();
        let mut t = s.write_txn();
        if n % 6 == 1 {
            t.delete_range(&KeyRange::Single(key.clone())).unwrap();
        }
        t.put(&key, format!("value {n}").as_bytes(), 0);
        t.commit(applied(n + 1)).unwrap();
    }
}

fn dump_of(s: &MvccStore) -> Vec<u8> {
    let mut out = Vec::new();
    s.engine().dump(&mut out).unwrap();
    out
}

/// Hands out `data` but stops once at `gate_at` bytes until told to go on.
struct Gated {
    data: Vec<u8>,
    pos: usize,
    gate_at: usize,
    reached: Option<mpsc::Sender<()>>,
    go: mpsc::Receiver<()>,
}

impl Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.gate_at {
            if let Some(tx) = self.reached.take() {
                let _ = tx.send(());
                let _ = self.go.recv();
            }
        }
        let end = if self.pos < self.gate_at { self.gate_at } else { self.data.len() };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn readers_read_the_old_state_while_a_snapshot_streams_in() {
    // The leader is far ahead and compacted; this member is behind.
    let leader = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
    apply(&leader, 0, 3000);
    leader.compact(2500, applied(5000)).unwrap();
    assert!(leader.wait_compacted(2500, Duration::from_secs(30)).unwrap());
    let dump = dump_of(&leader);
    let member = Arc::new(MvccStore::open(Arc::new(MemoryEngine::new())).unwrap());
    apply(&member, 0, 1000);
    let old = member.range(&all(), RangeOptions::default()).unwrap();

    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let input = Gated { gate_at: dump.len() / 2, data: dump, pos: 0, reached: Some(reached_tx), go: go_rx };
    let installer = {
        let member = member.clone();
        std::thread::spawn(move || {
            let mut input = input;
            member.restore_snapshot(&mut input)
        })
    };
    reached.recv_timeout(Duration::from_secs(30)).expect("the install never got half-way");
    // The install is half-way and waits for the rest of the snapshot. Before
    // the fix a read waited with it (the whole install held the readers' lock).
    let reader = {
        let member = member.clone();
        std::thread::spawn(move || member.range(&all(), RangeOptions::default()).unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() {
        assert!(std::time::Instant::now() < deadline, "a read waited for the snapshot install");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reader.join().unwrap(), old, "mid-install reads see the old state");
    assert_eq!(member.current_revision(), 1001);
    go.send(()).unwrap();
    installer.join().unwrap().unwrap();

    assert_eq!(member.current_revision(), leader.current_revision());
    assert_eq!(member.compact_revision(), 2500);
    assert_eq!(member.applied_index(), leader.applied_index());
    for rev in [2500, 2800, 3001] {
        let opts = RangeOptions { rev, ..Default::default() };
        assert_eq!(member.range(&all(), opts).unwrap(), leader.range(&all(), opts).unwrap());
    }
    assert_eq!(normalized_index(&member), normalized_index(&leader));
    assert_eq!(member.engine().size_bytes(), leader.engine().size_bytes(), "nothing stale left");
    assert_eq!(meta::load_applied(member.engine().as_ref()).unwrap(), leader.applied_index());
}

#[test]
fn a_corrupt_snapshot_leaves_the_old_state_and_engine() {
    let leader = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
    apply(&leader, 0, 600);
    leader.compact(500, applied(700)).unwrap();
    // Half-way through its physical compaction: the member gets that too.
    let dump = dump_of(&leader);
    let engine = Arc::new(MemoryEngine::new());
    let member = MvccStore::open(engine.clone()).unwrap();
    apply(&member, 0, 300);
    member.compact(200, applied(301)).unwrap();
    assert!(member.wait_compacted(200, Duration::from_secs(30)).unwrap());
    let before = (member.range(&all(), RangeOptions::default()).unwrap(), engine.size_bytes());
    let index = member.index_snapshot();
    for cut in [dump.len() / 3, dump.len() - 2] {
        assert!(member.restore_snapshot(&mut &dump[..cut]).is_err());
        assert_eq!((member.range(&all(), RangeOptions::default()).unwrap(), engine.size_bytes()), before);
        assert_eq!(member.index_snapshot(), index);
        assert_eq!(member.compact_revision(), 200);
    }
    member.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(member.compact_revision(), 500);
    assert!(member.wait_compacted(500, Duration::from_secs(30)).unwrap(), "the install's compaction resumes");
    assert!(leader.wait_compacted(500, Duration::from_secs(30)).unwrap());
    assert_eq!(normalized_index(&member), normalized_index(&leader));
    assert_eq!(engine.size_bytes(), leader.engine().size_bytes());
}

#[test]
fn an_install_cut_in_its_sweep_stores_no_applied_index() {
    let leader = MvccStore::open(Arc::new(MemoryEngine::new())).unwrap();
    apply(&leader, 0, 400);
    leader.compact(350, applied(500)).unwrap();
    assert!(leader.wait_compacted(350, Duration::from_secs(30)).unwrap());
    let dump = dump_of(&leader);
    // The member holds history the leader compacted away: the sweep must
    // delete it, and cannot.
    let engine = Arc::new(FaultyEngine::default());
    let member = MvccStore::open(engine.clone()).unwrap();
    apply(&member, 0, 300);
    engine.fail_key_deletes.store(true, SeqCst);
    assert!(member.restore_snapshot(&mut &dump[..]).is_err());
    assert_eq!(meta::load_applied(engine.as_ref()).unwrap(), AppliedIndex::default(), "restore again after a restart");
    // What was swapped in reads right meanwhile.
    let opts = RangeOptions { rev: 380, ..Default::default() };
    assert_eq!(member.range(&all(), opts).unwrap(), leader.range(&all(), opts).unwrap());
    engine.fail_key_deletes.store(false, SeqCst);
    member.restore_snapshot(&mut &dump[..]).unwrap();
    assert_eq!(meta::load_applied(engine.as_ref()).unwrap(), leader.applied_index());
    assert_eq!(engine.size_bytes(), leader.engine().size_bytes());
}
