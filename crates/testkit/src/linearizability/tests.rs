use super::*;
use std::sync::Arc;
use std::time::Duration;

/// Builds histories with times in milliseconds from a common base.
struct H {
    base: Instant,
    h: History,
}

impl H {
    fn new() -> H {
        H { base: Instant::now(), h: History::new() }
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn op(&self, client: usize, op: Op, inv: u64, ret: u64, o: Outcome) -> &Self {
        self.h.record(client, op, self.at(inv), Some(self.at(ret)), o);
        self
    }

    fn unknown(&self, client: usize, op: Op, inv: u64) -> &Self {
        self.h.record(client, op, self.at(inv), None, Outcome::Unknown);
        self
    }

    fn check(&self) -> Result<(), Violation> {
        check(&self.h)
    }
}

fn got(v: &str) -> Outcome {
    Outcome::Got(Some(v.to_string()))
}

const ABSENT_: Outcome = Outcome::Got(None);

#[test]
fn empty_and_sequential_histories_pass() {
    assert!(check(&History::new()).is_ok());
    let h = H::new();
    h.op(0, Op::get("k"), 0, 1, ABSENT_)
        .op(0, Op::put("k", "1"), 2, 3, Outcome::Ok)
        .op(0, Op::get("k"), 4, 5, got("1"))
        .op(0, Op::cas("k", Some("1"), "2"), 6, 7, Outcome::Cas(true))
        .op(0, Op::cas("k", Some("1"), "3"), 8, 9, Outcome::Cas(false))
        .op(0, Op::get("k"), 10, 11, got("2"))
        .op(0, Op::delete("k"), 12, 13, Outcome::Ok)
        .op(0, Op::cas("k", None, "4"), 14, 15, Outcome::Cas(true))
        .op(0, Op::get("k"), 16, 17, got("4"));
    h.check().unwrap();
}

#[test]
fn sequential_wrong_value_fails() {
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).op(0, Op::get("k"), 2, 3, got("2"));
    let v = h.check().unwrap_err();
    assert_eq!(v.key, "k");
}

#[test]
fn concurrent_overlapping_valid_histories_pass() {
    // A read overlapping a write may see either value, and two overlapping
    // reads may disagree as long as an order exists.
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 10, Outcome::Ok)
        .op(1, Op::get("k"), 1, 3, ABSENT_)
        .op(2, Op::get("k"), 2, 12, got("1"))
        .op(3, Op::get("k"), 4, 6, got("1"))
        .op(1, Op::get("k"), 7, 9, got("1"));
    h.check().unwrap();

    // Two concurrent writes; readers agree on the later winner.
    let h = H::new();
    h.op(0, Op::put("k", "a"), 0, 10, Outcome::Ok)
        .op(1, Op::put("k", "b"), 0, 10, Outcome::Ok)
        .op(2, Op::get("k"), 11, 12, got("a"))
        .op(3, Op::get("k"), 13, 14, got("a"));
    h.check().unwrap();

    // Only one of two concurrent cas on an absent key can win.
    let h = H::new();
    h.op(0, Op::cas("k", None, "a"), 0, 10, Outcome::Cas(true))
        .op(1, Op::cas("k", None, "b"), 0, 10, Outcome::Cas(false))
        .op(2, Op::get("k"), 11, 12, got("a"));
    h.check().unwrap();
}

#[test]
fn touching_intervals_count_as_concurrent() {
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 5, Outcome::Ok).op(1, Op::get("k"), 5, 6, ABSENT_);
    h.check().unwrap();
}

#[test]
fn stale_read_fails_and_the_report_shows_the_overwrite() {
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).op(0, Op::put("k", "2"), 2, 3, Outcome::Ok).op(
        1,
        Op::get("k"),
        4,
        5,
        got("1"),
    );
    // Unrelated noise on this key and on others, all valid.
    for i in 0..30u64 {
        h.op(2, Op::get("k"), 10 + i, 10 + i, got("2")).op(
            3,
            Op::put("other", format!("{i}")),
            10 + i,
            11 + i,
            Outcome::Ok,
        );
    }
    let v = h.check().unwrap_err();
    assert_eq!(v.key, "k");
    assert_eq!(v.key_ops, 33);
    let ops: Vec<String> = v.ops.iter().map(|e| format!("{} -> {}", e.op, e.outcome)).collect();
    assert_eq!(ops, [r#"put("k", "1") -> ok"#, r#"put("k", "2") -> ok"#, r#"get("k") -> Some("1")"#], "{v}");
    let text = v.to_string();
    assert!(text.contains("key \"k\" is not linearizable"), "{text}");
    assert!(text.contains("client 1: get(\"k\") -> Some(\"1\")"), "{text}");
}

#[test]
fn lost_write_fails() {
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).op(1, Op::get("k"), 2, 3, ABSENT_);
    let v = h.check().unwrap_err();
    assert_eq!(v.ops.len(), 2, "{v}");

    // A write acknowledged, then a later successful cas that assumed the
    // key absent: the write was lost.
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).op(1, Op::cas("k", None, "2"), 2, 3, Outcome::Cas(true));
    assert!(h.check().is_err());
}

#[test]
fn double_cas_success_fails() {
    let h = H::new();
    h.op(0, Op::cas("k", None, "a"), 0, 10, Outcome::Cas(true)).op(
        1,
        Op::cas("k", None, "b"),
        0,
        10,
        Outcome::Cas(true),
    );
    assert!(h.check().is_err());
}

#[test]
fn read_your_write_reversal_fails() {
    // Reads must not go back in time: 2 then 1 after both writes finished.
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 10, Outcome::Ok)
        .op(1, Op::put("k", "2"), 0, 10, Outcome::Ok)
        .op(2, Op::get("k"), 11, 12, got("2"))
        .op(3, Op::get("k"), 13, 14, got("1"));
    assert!(h.check().is_err());
}

#[test]
fn unknown_put_may_take_effect_or_not_at_any_later_time() {
    // Took effect.
    let h = H::new();
    h.unknown(0, Op::put("k", "1"), 0).op(1, Op::get("k"), 5, 6, got("1"));
    h.check().unwrap();
    // Never happened.
    let h = H::new();
    h.unknown(0, Op::put("k", "1"), 0).op(1, Op::get("k"), 5, 6, ABSENT_);
    h.check().unwrap();
    // Took effect late: absent, then visible long after the client gave up.
    let h = H::new();
    h.unknown(0, Op::put("k", "1"), 0).op(1, Op::get("k"), 5, 6, ABSENT_).op(1, Op::get("k"), 500, 501, got("1"));
    h.check().unwrap();
    // But once visible it cannot vanish again.
    let h = H::new();
    h.unknown(0, Op::put("k", "1"), 0).op(1, Op::get("k"), 5, 6, got("1")).op(1, Op::get("k"), 7, 8, ABSENT_);
    let v = h.check().unwrap_err();
    assert_eq!(v.ops.len(), 3, "{v}");
    // And it cannot take effect before it was invoked.
    let h = H::new();
    h.op(1, Op::get("k"), 0, 1, got("1")).unknown(0, Op::put("k", "1"), 2);
    assert!(h.check().is_err());
}

#[test]
fn unknown_and_failed_ops_are_handled() {
    // Failed ops never happened.
    let h = H::new();
    h.op(0, Op::put("k", "x"), 0, 1, Outcome::Failed).op(1, Op::get("k"), 2, 3, ABSENT_).op(
        1,
        Op::get("k"),
        4,
        5,
        Outcome::Failed,
    );
    h.check().unwrap();
    let h = H::new();
    h.op(0, Op::put("k", "x"), 0, 1, Outcome::Failed).op(1, Op::get("k"), 2, 3, got("x"));
    assert!(h.check().is_err());
    // An unknown cas may have applied.
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).unknown(1, Op::cas("k", Some("1"), "2"), 2).op(
        2,
        Op::get("k"),
        10,
        11,
        got("2"),
    );
    h.check().unwrap();
    // ... but only if its comparison held.
    let h = H::new();
    h.op(0, Op::put("k", "1"), 0, 1, Outcome::Ok).unknown(1, Op::cas("k", Some("0"), "2"), 2).op(
        2,
        Op::get("k"),
        10,
        11,
        got("2"),
    );
    assert!(h.check().is_err());
    // An unknown write can justify a failed cas.
    let h = H::new();
    h.unknown(0, Op::put("k", "u"), 0).op(1, Op::cas("k", None, "c"), 5, 6, Outcome::Cas(false));
    h.check().unwrap();
    // A chain of unknown ops: an unknown put enables an unknown cas whose
    // value a read sees (a later put of the same value keeps the cas from
    // being pinned).
    let h = H::new();
    h.unknown(0, Op::put("k", "x"), 0)
        .unknown(1, Op::cas("k", Some("x"), "y"), 1)
        .op(2, Op::get("k"), 10, 11, got("y"))
        .op(3, Op::put("k", "y"), 100, 101, Outcome::Ok);
    h.check().unwrap();
    // Ops never completed by the recorder count as unknown.
    let r = History::new();
    let _ = r.invoke(0, Op::put("k", "1"));
    let g = r.invoke(1, Op::get("k"));
    r.complete(g, got("1"));
    check(&r).unwrap();
}

#[test]
fn keys_are_checked_independently_and_the_bad_one_is_named() {
    let h = H::new();
    h.op(0, Op::put("a", "1"), 0, 10, Outcome::Ok)
        .op(1, Op::put("b", "1"), 0, 10, Outcome::Ok)
        .op(2, Op::get("a"), 11, 12, got("1"))
        .op(2, Op::get("b"), 11, 12, ABSENT_)
        .op(3, Op::get("a"), 1, 2, ABSENT_);
    let v = h.check().unwrap_err();
    assert_eq!(v.key, "b");
    // The value "1" on key a says nothing about key b.
    let h = H::new();
    h.op(0, Op::put("a", "1"), 0, 1, Outcome::Ok).op(1, Op::get("b"), 2, 3, got("1"));
    assert_eq!(h.check().unwrap_err().key, "b");
}

#[test]
#[should_panic(expected = "does not fit")]
fn mismatched_outcome_is_a_test_bug() {
    let h = History::new();
    let id = h.invoke(0, Op::get("k"));
    h.complete(id, Outcome::Ok);
}

#[test]
#[should_panic(expected = "completed twice")]
fn completing_twice_is_a_test_bug() {
    let h = History::new();
    let id = h.invoke(0, Op::put("k", "v"));
    h.complete(id, Outcome::Ok);
    h.complete(id, Outcome::Ok);
}

#[test]
fn concurrent_threads_against_a_linearizable_store_pass() {
    // A mutex-protected map is linearizable; record through real threads.
    let store = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let h = Arc::new(History::new());
    let threads: Vec<_> = (0..4)
        .map(|c| {
            let (store, h) = (store.clone(), h.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(c as u64 + 1);
                for i in 0..300 {
                    let key = format!("k{}", rng.below(3));
                    let op = match rng.below(3) {
                        0 => Op::put(&key, format!("c{c}-{i}")),
                        1 => Op::get(&key),
                        _ => Op::cas(&key, None, format!("c{c}-{i}")),
                    };
                    let id = h.invoke(c, op.clone());
                    let outcome = {
                        let mut m = store.lock().unwrap();
                        match op {
                            Op::Put { key, value } => {
                                m.insert(key, value);
                                Outcome::Ok
                            }
                            Op::Get { key } => Outcome::Got(m.get(&key).cloned()),
                            Op::Cas { key, new, .. } => {
                                let absent = !m.contains_key(&key);
                                if absent {
                                    m.insert(key, new);
                                }
                                Outcome::Cas(absent)
                            }
                            Op::Delete { .. } => unreachable!(),
                        }
                    };
                    h.complete(id, outcome);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.len(), 1200);
    check(&h).unwrap();
}

// ---------------------------------------------------------------------------
// Randomised: histories generated from a real sequential execution.

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Ops applied to a model at linearization points 10 µs apart, each given an
/// interval of up to `spread` µs on either side of its point (so up to
/// ~`spread / 5` ops overlap). Some writes become `Unknown` (applied or not).
fn generate(seed: u64, n: usize, keys: u64, spread: u64) -> Vec<Entry> {
    let mut rng = Rng(seed);
    let base = Instant::now();
    let at = |us: u64| base + Duration::from_micros(us);
    let mut model: HashMap<String, String> = HashMap::new();
    let mut written: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let point = 1_000 + 10 * i as u64;
        let invoke = at(point - rng.below(spread + 1));
        let ret = at(point + rng.below(spread + 1));
        let key = format!("k{}", rng.below(keys));
        let value = format!("v{i}"); // every write is unique
        let roll = rng.below(100);
        let op = match roll {
            0..=34 => Op::put(&key, &value),
            35..=69 => Op::get(&key),
            70..=74 => Op::delete(&key),
            _ => {
                let expect = match rng.below(3) {
                    0 => model.get(&key).cloned(),
                    1 => None,
                    _ => written.get(rng.below(written.len() as u64 + 1) as usize).cloned(),
                };
                Op::Cas { key: key.clone(), expect, new: value.clone() }
            }
        };
        let is_write = !matches!(op, Op::Get { .. });
        // 4%: unknown and applied; 3%: unknown and never applied.
        let fate = rng.below(100);
        if is_write && (4..7).contains(&fate) {
            out.push(Entry { client: i % 7, op, invoke, ret: None, outcome: Outcome::Unknown });
            continue;
        }
        let outcome = match &op {
            Op::Put { key, value } => {
                model.insert(key.clone(), value.clone());
                written.push(value.clone());
                Outcome::Ok
            }
            Op::Delete { key } => {
                model.remove(key);
                Outcome::Ok
            }
            Op::Get { key } => Outcome::Got(model.get(key).cloned()),
            Op::Cas { key, expect, new } => {
                let holds = model.get(key) == expect.as_ref();
                if holds {
                    model.insert(key.clone(), new.clone());
                    written.push(new.clone());
                }
                Outcome::Cas(holds)
            }
        };
        let unknown = is_write && fate < 4;
        out.push(Entry {
            client: i % 7,
            op,
            invoke,
            ret: if unknown { None } else { Some(ret) },
            outcome: if unknown { Outcome::Unknown } else { outcome },
        });
    }
    out
}

#[test]
fn random_valid_histories_pass() {
    for seed in 1..=12 {
        let h = generate(seed, 1500, 3, 40);
        if let Err(v) = check_entries(&h) {
            panic!("seed {seed}: valid history rejected: {v}");
        }
    }
}

#[test]
fn random_history_with_a_read_of_a_never_written_value_fails() {
    for seed in 1..=6 {
        let mut h = generate(seed, 1500, 3, 40);
        let reads: Vec<usize> = (0..h.len()).filter(|&i| matches!(h[i].outcome, Outcome::Got(_))).collect();
        let pick = reads[Rng(seed).below(reads.len() as u64) as usize];
        h[pick].outcome = got("never-written");
        let v = check_entries(&h).expect_err("corrupted history accepted");
        assert_eq!(v.key, h[pick].op.key());
        assert!(v.ops.iter().any(|e| e.outcome == got("never-written")), "{v}");
    }
}

/// A known write of a unique value `v`, then another known write on the same
/// key that starts after the first returned and returns before the read
/// starts: a read of `v` there is certainly stale.
fn stale_candidate(h: &[Entry]) -> Option<(usize, String)> {
    let known_write = |e: &Entry| -> Option<Option<String>> {
        match (&e.op, &e.outcome) {
            (Op::Put { value, .. }, Outcome::Ok) => Some(Some(value.clone())),
            (Op::Cas { new, .. }, Outcome::Cas(true)) => Some(Some(new.clone())),
            (Op::Delete { .. }, Outcome::Ok) => Some(None),
            _ => None,
        }
    };
    for (g, read) in h.iter().enumerate() {
        if !matches!(read.outcome, Outcome::Got(_)) {
            continue;
        }
        let key = read.op.key();
        for w in h.iter().filter(|e| e.op.key() == key) {
            let Some(Some(v)) = known_write(w) else { continue };
            let overwritten = h.iter().any(|w2| {
                w2.op.key() == key
                    && known_write(w2).is_some_and(|x| x.as_deref() != Some(v.as_str()))
                    && w2.invoke > w.ret.unwrap()
                    && w2.ret.unwrap() < read.invoke
            });
            if overwritten && read.outcome != Outcome::Got(Some(v.clone())) {
                return Some((g, v));
            }
        }
    }
    None
}

#[test]
fn random_history_with_one_stale_read_fails() {
    for seed in 20..=25 {
        let mut h = generate(seed, 1500, 3, 40);
        // Take a candidate from the middle of the history.
        let skip = h.len() / 2;
        let (g, v) = stale_candidate(&h[skip..]).expect("no stale-read candidate");
        let g = g + skip;
        h[g].outcome = Outcome::Got(Some(v.clone()));
        let v = check_entries(&h).expect_err("stale read accepted");
        assert_eq!(v.key, h[g].op.key());
        assert!(v.ops.len() <= 12, "report not minimised: {v}");
    }
}

#[test]
fn thousands_of_concurrent_ops_on_one_key_check_in_reasonable_time() {
    // Single key, ~10 overlapping ops at a time, 4000 ops. Not a speed
    // assertion: it must simply finish (the memo keeps it polynomial here).
    let h = generate(99, 4000, 1, 50);
    check_entries(&h).unwrap();
}

// ---------------------------------------------------------------------------
// Exactness: the pruning, pinning, ordering and weak-op rules must never
// change a verdict. Compare with a brute-force search on small histories.

/// Every order of the ops that respects real time (an op may go next only
/// if no op still to go returned before it was invoked), unknown ops
/// optional, run against the model.
fn brute_force_linearizable(entries: &[Entry]) -> bool {
    struct B<'a> {
        ops: Vec<&'a Entry>,
        used: Vec<bool>,
    }
    fn apply(state: &Option<String>, e: &Entry) -> Option<Option<String>> {
        let unknown = e.outcome == Outcome::Unknown;
        match (&e.op, &e.outcome) {
            (Op::Put { value, .. }, _) => Some(Some(value.clone())),
            (Op::Delete { .. }, _) => Some(None),
            (Op::Get { .. }, Outcome::Got(v)) => (v == state).then(|| state.clone()),
            (Op::Cas { expect, new, .. }, o) => {
                let holds = expect == state;
                // An unknown cas does whatever the state makes it do.
                (unknown || *o == Outcome::Cas(holds)).then(|| if holds { Some(new.clone()) } else { state.clone() })
            }
            _ => unreachable!("filtered"),
        }
    }
    fn go(b: &mut B, state: Option<String>) -> bool {
        let all_known_done = (0..b.ops.len()).all(|i| b.used[i] || b.ops[i].ret.is_none());
        if all_known_done {
            return true;
        }
        for i in 0..b.ops.len() {
            if b.used[i] {
                continue;
            }
            let blocked =
                (0..b.ops.len()).any(|j| !b.used[j] && j != i && b.ops[j].ret.is_some_and(|r| r < b.ops[i].invoke));
            if blocked {
                continue;
            }
            if let Some(ns) = apply(&state, b.ops[i]) {
                b.used[i] = true;
                if go(b, ns) {
                    return true;
                }
                b.used[i] = false;
            }
        }
        false
    }
    let ops: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.outcome != Outcome::Failed)
        .filter(|e| !(matches!(e.op, Op::Get { .. }) && e.outcome == Outcome::Unknown))
        .collect();
    let n = ops.len();
    go(&mut B { ops, used: vec![false; n] }, None)
}

fn random_small_history(rng: &mut Rng) -> Vec<Entry> {
    let base = Instant::now();
    let n = 1 + rng.below(7) as usize;
    let value = |rng: &mut Rng| ["a", "b", "c"][rng.below(3) as usize].to_string();
    (0..n)
        .map(|i| {
            let call = rng.below(20);
            let ret = call + rng.below(8);
            let unknown = rng.below(5) == 0;
            let (op, outcome) = match rng.below(4) {
                0 => (Op::put("k", value(rng)), Outcome::Ok),
                1 => {
                    let v = if rng.below(4) == 0 { None } else { Some(value(rng)) };
                    (Op::get("k"), Outcome::Got(v))
                }
                2 => (Op::delete("k"), Outcome::Ok),
                _ => {
                    let expect = if rng.below(3) == 0 { None } else { Some(value(rng)) };
                    let op = Op::Cas { key: "k".into(), expect, new: value(rng) };
                    (op, Outcome::Cas(rng.below(2) == 0))
                }
            };
            let failed = rng.below(15) == 0;
            Entry {
                client: i,
                op,
                invoke: base + Duration::from_millis(call),
                ret: (!unknown).then(|| base + Duration::from_millis(ret)),
                outcome: if failed {
                    Outcome::Failed
                } else if unknown {
                    Outcome::Unknown
                } else {
                    outcome
                },
            }
        })
        .collect()
}

#[test]
fn verdicts_match_brute_force_on_small_random_histories() {
    let mut rng = Rng(7);
    let (mut ok, mut bad) = (0, 0);
    for round in 0..30_000 {
        let h = random_small_history(&mut rng);
        let expected = brute_force_linearizable(&h);
        let got = check_entries(&h);
        assert_eq!(got.is_ok(), expected, "round {round}: checker says {got:?}, brute force says {expected}\n{h:#?}");
        if let Err(v) = got {
            assert!(!v.undecided);
            // The minimised report must itself be a violation.
            assert!(!brute_force_linearizable(&v.ops), "report passes: {v}");
            bad += 1;
        } else {
            ok += 1;
        }
    }
    // Both verdicts are well represented, or the comparison proves little.
    assert!(ok > 5_000 && bad > 5_000, "ok {ok}, bad {bad}");
}
