//! Checks every [`Engine`] implementation must pass, written once and run by
//! each engine's own tests (the memory engine here, RocksDB in its crate).
//! Each function panics with a message on the first violation.

use crate::engine::{Engine, EngineError, WriteBatch};
use crate::mvcc::meta::{self, AppliedIndex};
use crate::schema::Table;

/// Every pair of `table`, in scan order.
pub fn all_pairs(e: &dyn Engine, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    e.scan(table, b"", None, &mut |k, val| {
        v.push((k.to_vec(), val.to_vec()));
        true
    })
    .expect("scan");
    v
}

/// A scan, plain or bulk: both must answer alike.
fn scan(
    e: &dyn Engine,
    bulk: bool,
    t: Table,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), EngineError> {
    match bulk {
        false => e.scan(t, start, end, visit),
        true => e.scan_bulk(t, start, end, visit),
    }
}

fn keys(e: &dyn Engine, bulk: bool, t: Table, start: &[u8], end: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    scan(e, bulk, t, start, end, &mut |k, _| {
        keys.push(k.to_vec());
        true
    })
    .expect("scan");
    keys
}

/// Puts, overwrites within one batch (later op wins), deletes, table isolation.
pub fn put_get_delete(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    b.put(Table::Key, b"a".to_vec(), b"11".to_vec());
    b.put(Table::Meta, b"a".to_vec(), b"2".to_vec());
    b.put(Table::Key, b"a".to_vec(), b"333".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, b"a").unwrap(), Some(b"333".to_vec()));
    assert_eq!(e.get(Table::Meta, b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(e.get(Table::Lease, b"a").unwrap(), None);
    let mut b = WriteBatch::default();
    b.delete(Table::Key, b"a".to_vec());
    b.delete(Table::Key, b"missing".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, b"a").unwrap(), None);
    assert_eq!(e.get(Table::Meta, b"a").unwrap(), Some(b"2".to_vec()));
    let mut b = WriteBatch::default();
    b.put(Table::Members, b"x".to_vec(), b"1".to_vec());
    b.delete(Table::Members, b"x".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Members, b"x").unwrap(), None, "a delete after a put in one batch wins");
}

/// `get_each` answers each key once, in the order given, absent keys with
/// `None`, cached or not, from memtables and from flushed data alike.
pub fn get_each_in_order(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    for i in (0..600u32).step_by(2) {
        b.put(Table::Key, i.to_be_bytes().to_vec(), format!("v{i}").into_bytes());
    }
    e.write(b).expect("write");
    let keys: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for bulk in [false, true] {
        let mut seen = Vec::new();
        e.get_each(Table::Key, &keys, bulk, &mut |i, v| seen.push((i, v.map(<[u8]>::to_vec)))).expect("get_each");
        let want: Vec<_> = (0..600usize).map(|i| (i, (i % 2 == 0).then(|| format!("v{i}").into_bytes()))).collect();
        assert_eq!(seen, want, "bulk {bulk}");
    }
    let mut calls = 0;
    e.get_each(Table::Meta, &keys[..3], false, &mut |_, v| {
        assert_eq!(v, None, "tables are apart");
        calls += 1;
    })
    .expect("get_each");
    assert_eq!(calls, 3);
    e.get_each(Table::Key, &[], true, &mut |_, _| panic!("no keys, no calls")).expect("get_each");
}

/// Half-open bounds, empty and inverted ranges, early stop, byte order;
/// the same from [`Engine::scan`] and [`Engine::scan_bulk`].
pub fn scan_bounds_and_early_stop(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    for k in [&b"a"[..], b"b", b"c", b"d", b"\xff", b"b\x00"] {
        b.put(Table::Auth, k.to_vec(), k.repeat(3));
    }
    e.write(b).expect("write");
    for bulk in [false, true] {
        assert_eq!(keys(e, bulk, Table::Auth, b"b", Some(b"d")), [&b"b"[..], b"b\x00", b"c"], "bulk {bulk}");
        assert_eq!(keys(e, bulk, Table::Auth, b"b", None).len(), 5, "bulk {bulk}");
        let last = keys(e, bulk, Table::Auth, b"", None).pop();
        assert_eq!(last.as_deref(), Some(&b"\xff"[..]), "bulk {bulk}");
        assert!(keys(e, bulk, Table::Auth, b"d", Some(b"b")).is_empty(), "bulk {bulk}");
        assert!(keys(e, bulk, Table::Auth, b"b", Some(b"b")).is_empty(), "bulk {bulk}");
        assert!(keys(e, bulk, Table::Key, b"", None).is_empty(), "bulk {bulk}");
        let mut seen = Vec::new();
        scan(e, bulk, Table::Auth, b"", None, &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            seen.len() < 2
        })
        .expect("scan");
        assert_eq!(seen, [(b"a".to_vec(), b"aaa".to_vec()), (b"b".to_vec(), b"bbb".to_vec())], "bulk {bulk}");
    }
}

fn fill(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    for (i, &t) in Table::all().iter().enumerate() {
        for j in 0..10u8 {
            b.put(t, vec![j, i as u8], vec![j; j as usize]);
        }
    }
    meta::put_applied(&mut b, AppliedIndex { index: 9, term: 2 });
    e.write(b).expect("write");
}

/// `source` dumps, `target` (holding stale data) restores: same pairs in every
/// table, and dumping again gives the same bytes. Works across engine kinds.
pub fn dump_restore_round_trip(source: &dyn Engine, target: &dyn Engine) {
    fill(source);
    let mut dump = Vec::new();
    source.dump(&mut dump).expect("dump");
    let mut b = WriteBatch::default();
    b.put(Table::Lease, b"stale".to_vec(), b"x".to_vec());
    b.put(Table::Key, vec![0xff; 40], b"x".to_vec());
    b.put(Table::Index, b"stale".to_vec(), b"x".to_vec());
    target.write(b).expect("write");
    target.restore(&mut &dump[..]).expect("restore");
    assert_eq!(target.get(Table::Lease, b"stale").unwrap(), None);
    for &t in Table::dumped() {
        assert_eq!(all_pairs(source, t), all_pairs(target, t), "table {}", t.name());
    }
    // The derived index is neither dumped nor left behind by a restore.
    assert!(!all_pairs(source, Table::Index).is_empty());
    assert_eq!(all_pairs(target, Table::Index), Vec::new(), "a restore empties the index table");
    assert_eq!(meta::load_applied(target).unwrap(), AppliedIndex { index: 9, term: 2 });
    let mut again = Vec::new();
    target.dump(&mut again).expect("dump");
    assert_eq!(again, dump);
}

/// Malformed dumps are `Corrupt`, never a panic; a volatile engine keeps its
/// contents, a persistent one at least holds no applied index afterwards.
pub fn restore_rejects_garbage(e: &dyn Engine) {
    fill(e);
    let mut dump = Vec::new();
    e.dump(&mut dump).expect("dump");
    let before = all_pairs(e, Table::Key);
    let mut flipped = dump.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    for garbage in [&b""[..], b"garbage", &dump[..dump.len() - 1], &flipped[..]] {
        let r = e.restore(&mut &garbage[..]);
        assert!(matches!(r, Err(EngineError::Corrupt(_))), "{r:?}");
        if e.persistent() {
            assert_eq!(meta::load_applied(e).unwrap(), AppliedIndex::default());
        } else {
            assert_eq!(all_pairs(e, Table::Key), before);
        }
    }
    e.restore(&mut &dump[..]).expect("a good dump restores after bad ones");
    assert_eq!(all_pairs(e, Table::Key), before);
}

/// Runs every check, each on a fresh engine from `make`.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Engine>) {
    put_get_delete(&*make());
    scan_bounds_and_early_stop(&*make());
    get_each_in_order(&*make());
    dump_restore_round_trip(&*make(), &*make());
    dump_restore_round_trip(&*make(), &crate::MemoryEngine::new());
    dump_restore_round_trip(&crate::MemoryEngine::new(), &*make());
    restore_rejects_garbage(&*make());
}
