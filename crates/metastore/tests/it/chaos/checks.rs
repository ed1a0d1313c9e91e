//! The checks run on what a chaos run recorded. Each returns the
//! violations it found as readable text (never panics), so one run reports
//! everything wrong at once.
//!
//! The reference is the event history of the chaos prefix from revision 1
//! to the final revision F, read with a watch after the final heal; it is
//! trusted only after `reference_matches_range` shows that replaying it
//! gives exactly the key-value state a range at F returns (and every
//! member's HashKV at F is equal).

use std::collections::{BTreeMap, HashMap, HashSet};

use testkit::linearizability::{check_entries, Entry};

use super::driver::Acked;
use super::watchers::Ev;
use super::workload::{LOCK_DATA, LOCK_NAME};

/// At most this many individual items are listed per kind of violation.
const LIST: usize = 10;

/// Checks every key's history on its own (linearizability is local); the
/// number of keys checked and the violations.
pub fn linearizability(entries: Vec<Entry>) -> (usize, Vec<String>) {
    let mut by_key: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        by_key.entry(e.op.key().to_string()).or_default().push(e);
    }
    let mut out = Vec::new();
    for ops in by_key.values() {
        if let Err(v) = check_entries(ops) {
            let what = if v.undecided { "undecided (search limit)" } else { "not linearizable" };
            out.push(format!("linearizability: {what}: {v}"));
        }
    }
    (by_key.len(), out)
}

/// One key of a range: (key, value, mod revision, create revision).
pub type RangeKv = (String, String, i64, i64);

/// Replaying the reference gives the state a range at F returned.
pub fn reference_matches_range(reference: &[Ev], range: &[RangeKv]) -> Vec<String> {
    let mut state: BTreeMap<&str, &Ev> = BTreeMap::new();
    for e in reference {
        if e.put {
            state.insert(&e.key, e);
        } else {
            state.remove(e.key.as_str());
        }
    }
    let mut out = Vec::new();
    let ranged: BTreeMap<&str, (&str, i64, i64)> =
        range.iter().map(|(k, v, m, c)| (k.as_str(), (v.as_str(), *m, *c))).collect();
    for (key, e) in &state {
        match ranged.get(*key) {
            Some((v, m, cr)) if *v == e.value && *m == e.rev && *cr == e.create_rev => {}
            got => out.push(format!("reference: {key} replays to {e} but the range at F has {got:?}")),
        }
    }
    for key in ranged.keys() {
        if !state.contains_key(key) {
            out.push(format!("reference: the range at F has {key}, which the event history deleted or never wrote"));
        }
    }
    out.truncate(LIST);
    out
}

/// Every acknowledged write is in the reference at its revision with its
/// value; the number checked and the violations.
pub fn acked_writes(reference: &[Ev], acked: &[Acked], final_rev: i64) -> (usize, Vec<String>) {
    let mut at: HashMap<i64, Vec<&Ev>> = HashMap::new();
    for e in reference {
        at.entry(e.rev).or_default().push(e);
    }
    let mut out = Vec::new();
    let mut lost = 0;
    let mut checked = 0;
    for a in acked {
        if a.rev <= 0 || a.rev > final_rev {
            out.push(format!("acked write {}={:?} came with revision {} (final {final_rev})", a.key, a.value, a.rev));
            continue;
        }
        checked += 1;
        let found = at.get(&a.rev).is_some_and(|es| es.iter().any(|e| e.put && e.key == a.key && e.value == a.value));
        if !found {
            lost += 1;
            if lost <= LIST {
                let there: Vec<String> = at.get(&a.rev).map_or(vec![], |es| es.iter().map(|e| e.to_string()).collect());
                out.push(format!(
                    "lost write: {}={:?} acknowledged at revision {}; the history has there: {there:?}",
                    a.key, a.value, a.rev
                ));
            }
        }
    }
    if lost > LIST {
        out.push(format!("... {} lost writes in all", lost));
    }
    (checked, out)
}

/// A watch stream against the reference, up to F: the events received
/// (those at or below F) must be exactly the reference's, in order. The
/// first difference is explained as a gap, a duplicate, a reordering, a
/// wrong event, or a stream that stopped short.
pub fn watch_stream(name: &str, got: &[Ev], reference: &[Ev], final_rev: i64) -> Option<String> {
    let got: Vec<&Ev> = got.iter().filter(|e| e.rev <= final_rev).collect();
    for (i, r) in reference.iter().enumerate() {
        let Some(g) = got.get(i) else {
            let last = got.last().map_or(0, |e| e.rev);
            return Some(format!(
                "watch {name}: stopped short: {} of {} events received, last revision {last}, final {final_rev}",
                got.len(),
                reference.len()
            ));
        };
        if *g != r {
            let kind = if g.rev > r.rev {
                "gap (events missing)"
            } else if i > 0 && got[..i].contains(g) {
                "duplicate"
            } else if g.rev < r.rev {
                "out of order"
            } else {
                "wrong event"
            };
            return Some(format!("watch {name}: {kind} at event #{i}: received {g}, expected {r}"));
        }
    }
    if got.len() > reference.len() {
        return Some(format!(
            "watch {name}: {} events beyond the reference, first {}",
            got.len() - reference.len(),
            got[reference.len()]
        ));
    }
    None
}

/// Lock holders never overlap, on revisions: replaying the reference, at
/// every guarded write the writer's lock key (named in the value) is the
/// owner (the oldest existing key under the lock prefix, as etcd's mutex
/// defines it), and each holder's writes form one run (no other holder's
/// write between two of its own). Returns (holders, guarded writes, violations).
pub fn locks(reference: &[Ev]) -> (usize, usize, Vec<String>) {
    let prefix = format!("{LOCK_NAME}/");
    let mut waiting: BTreeMap<&str, i64> = BTreeMap::new();
    let mut current: Option<&str> = None;
    let mut done: HashSet<&str> = HashSet::new();
    let (mut holders, mut writes) = (0, 0);
    let mut out = Vec::new();
    for e in reference {
        if e.key.starts_with(&prefix) {
            if e.put {
                waiting.entry(&e.key).or_insert(e.create_rev);
            } else {
                waiting.remove(e.key.as_str());
            }
            continue;
        }
        if e.key != LOCK_DATA || !e.put {
            continue;
        }
        writes += 1;
        let writer = e.value.rsplit_once('#').map_or(e.value.as_str(), |(k, _)| k);
        let owner = waiting.iter().min_by_key(|(_, cr)| **cr).map(|(k, _)| *k);
        if owner != Some(writer) && out.len() < LIST {
            out.push(format!("lock: guarded write {e} by {writer} while the owner was {owner:?} (holders overlap)"));
        }
        if current != Some(writer) {
            if done.contains(writer) && out.len() < LIST {
                out.push(format!("lock: holder {writer} wrote again at {e} after another holder's write"));
            }
            if let Some(prev) = current.replace(writer) {
                done.insert(prev);
            }
            holders += 1;
        }
    }
    (holders, writes, out)
}

#[cfg(test)]
mod tests {
    //! The checks must catch what they claim to: each kind of violation,
    //! built by hand, is reported; the clean version is not.

    use super::*;

    fn put(rev: i64, key: &str, value: &str, create_rev: i64) -> Ev {
        Ev { rev, key: key.into(), put: true, value: value.into(), create_rev }
    }

    fn del(rev: i64, key: &str) -> Ev {
        Ev { rev, key: key.into(), put: false, value: String::new(), create_rev: 0 }
    }

    #[test]
    fn watch_streams_with_gaps_duplicates_reorderings_or_short_ends_are_reported() {
        let r = vec![put(2, "a", "1", 2), put(3, "b", "1", 3), del(4, "a"), put(5, "a", "2", 5)];
        assert_eq!(watch_stream("w", &r, &r, 5), None);
        // Events past F are not compared.
        let mut longer = r.clone();
        longer.push(put(6, "c", "1", 6));
        assert_eq!(watch_stream("w", &longer, &r, 5), None);
        let gap = vec![r[0].clone(), r[2].clone(), r[3].clone()];
        assert!(watch_stream("w", &gap, &r, 5).unwrap().contains("gap"));
        let dup = vec![r[0].clone(), r[1].clone(), r[1].clone(), r[2].clone(), r[3].clone()];
        assert!(watch_stream("w", &dup, &r, 5).unwrap().contains("duplicate"));
        let swapped = vec![r[0].clone(), r[2].clone(), r[1].clone(), r[3].clone()];
        assert!(watch_stream("w", &swapped, &r, 5).unwrap().contains("gap"), "a later event first skips one");
        let back = vec![r[1].clone(), r[0].clone(), r[2].clone(), r[3].clone()];
        assert!(watch_stream("w", &back, &r, 5).is_some());
        let short = r[..3].to_vec();
        assert!(watch_stream("w", &short, &r, 5).unwrap().contains("stopped short"));
        let mut wrong = r.clone();
        wrong[1].value = "x".into();
        assert!(watch_stream("w", &wrong, &r, 5).unwrap().contains("wrong event"));
    }

    #[test]
    fn overlapping_lock_holders_are_reported() {
        let a = format!("{LOCK_NAME}/a");
        let b = format!("{LOCK_NAME}/b");
        let w = |rev: i64, holder: &str, i: usize| put(rev, LOCK_DATA, &format!("{holder}#{i}"), 4);
        // a holds, then b after a's key is gone.
        let clean =
            vec![put(2, &a, "", 2), put(3, &b, "", 3), w(4, &a, 0), w(5, &a, 1), del(6, &a), w(7, &b, 0), del(8, &b)];
        let (holders, writes, v) = locks(&clean);
        assert_eq!((holders, writes), (2, 3));
        assert!(v.is_empty(), "{v:?}");
        // b writes while a (older) still exists.
        let early = vec![put(2, &a, "", 2), put(3, &b, "", 3), w(4, &a, 0), w(5, &b, 0), del(6, &a)];
        let (_, _, v) = locks(&early);
        assert!(v.iter().any(|m| m.contains("holders overlap")), "{v:?}");
        // a writes again after b wrote (interleaved holders).
        let interleaved = vec![put(2, &a, "", 2), w(3, &a, 0), del(4, &a), put(5, &b, "", 5), w(6, &b, 0), w(7, &a, 1)];
        let (_, _, v) = locks(&interleaved);
        assert!(v.iter().any(|m| m.contains("wrote again")), "{v:?}");
    }

    #[test]
    fn lost_or_changed_acknowledged_writes_are_reported() {
        let r = vec![put(2, "a", "1", 2), put(3, "a", "2", 2)];
        let ack = |key: &str, value: &str, rev| Acked { key: key.into(), value: value.into(), rev };
        let (n, v) = acked_writes(&r, &[ack("a", "1", 2), ack("a", "2", 3)], 3);
        assert_eq!(n, 2);
        assert!(v.is_empty(), "{v:?}");
        let (_, v) = acked_writes(&r, &[ack("a", "3", 3)], 3);
        assert!(v[0].contains("lost write"), "{v:?}");
        let (_, v) = acked_writes(&r, &[ack("b", "1", 4)], 3);
        assert_eq!(v.len(), 1, "a revision past F is reported");
    }

    #[test]
    fn a_reference_that_does_not_replay_to_the_range_is_reported() {
        let r = vec![put(2, "a", "1", 2), put(3, "b", "1", 3), del(4, "b")];
        let kv = |key: &str, value: &str, m: i64, c: i64| (key.to_string(), value.to_string(), m, c);
        assert!(reference_matches_range(&r, &[kv("a", "1", 2, 2)]).is_empty());
        assert_eq!(reference_matches_range(&r, &[kv("a", "1", 2, 2), kv("b", "1", 3, 3)]).len(), 1);
        assert_eq!(reference_matches_range(&r, &[kv("a", "2", 2, 2)]).len(), 1);
    }
}
