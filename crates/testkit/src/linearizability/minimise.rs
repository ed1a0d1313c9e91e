//! Shrinking a non-linearizable key history to a small failing core for
//! the report (see the module docs of `linearizability`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::compile::{compile, nanos, COp};
use super::search::{search, Verdict};
use super::{Entry, Op, Outcome};

/// Time spent minimising one violation before reporting what is left.
const MINIMISE_BUDGET: Duration = Duration::from_secs(5);

/// The key's history as seen at instant `t` (nanoseconds from `base`): ops
/// invoked by `t`, those not returned by `t` turned `Unknown`.
pub(super) fn cut_at(ops: &[Entry], base: Instant, t: u64) -> Vec<Entry> {
    ops.iter()
        .filter(|e| nanos(e.invoke, base) <= t)
        .map(|e| {
            let mut e = e.clone();
            if e.ret.is_none_or(|r| nanos(r, base) > t) {
                e.ret = None;
                e.outcome = Outcome::Unknown;
            }
            e
        })
        .collect()
}

/// True only when the search proves `ops` not linearizable.
pub(super) fn fails(ops: &[Entry], base: Instant) -> bool {
    matches!(search(&compile(ops, base)), Verdict::Violated(_))
}

pub(super) fn describe_order(ops: &[Entry], compiled: &[COp], order: &[usize]) -> Vec<String> {
    order
        .iter()
        .map(|&k| {
            let e = &ops[compiled[k].source];
            format!("{} -> {}", e.op, e.outcome)
        })
        .collect()
}

/// Values an entry needs someone to have written, and the value it writes.
pub(super) fn observes(e: &Entry) -> Option<Option<&str>> {
    match (&e.op, &e.outcome) {
        (Op::Get { .. }, Outcome::Got(v)) => Some(v.as_deref()),
        (Op::Cas { expect, .. }, Outcome::Cas(true) | Outcome::Unknown) => Some(expect.as_deref()),
        _ => None,
    }
}

pub(super) fn writes(e: &Entry) -> Option<Option<&str>> {
    match (&e.op, &e.outcome) {
        (_, Outcome::Failed) => None,
        (Op::Put { value, .. }, _) => Some(Some(value.as_str())),
        (Op::Delete { .. }, _) => Some(None),
        (Op::Cas { new, .. }, Outcome::Cas(true) | Outcome::Unknown) => Some(Some(new.as_str())),
        _ => None,
    }
}

/// Values some op of `ops` observed that no op of `ops` writes.
pub(super) fn unexplained(ops: &[Entry]) -> HashSet<Option<String>> {
    let written: HashSet<Option<&str>> = ops.iter().filter_map(writes).collect();
    ops.iter()
        .filter_map(observes)
        .filter(|v| v.is_some() && !written.contains(v))
        .map(|v| v.map(str::to_string))
        .collect()
}

/// A small failing subset of one key's failing history, and the longest
/// valid order found in it.
pub(super) fn minimise(mut ops: Vec<Entry>, base: Instant) -> (Vec<Entry>, Vec<String>) {
    let started = Instant::now();
    ops.sort_by_key(|e| e.invoke);
    // 1. Shortest failing prefix: binary search over return instants.
    let mut cuts: Vec<u64> = ops.iter().filter_map(|e| e.ret.map(|r| nanos(r, base))).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut lo, mut hi) = (0usize, cuts.len());
    // Invariant: cut at cuts[hi] (or the full history when hi == len) fails.
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&cut_at(&ops, base, cuts[mid]), base) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // The op returning at the cut is the culprit: every kept subset must
    // fail with it and pass without it, so the report stays about the op
    // that broke (and does not drift to some other failure created by
    // removing writes).
    let mut culprit = None;
    if let Some(&t) = cuts.get(hi) {
        ops = cut_at(&ops, base, t);
        culprit = ops.iter().find(|e| e.ret.is_some_and(|r| nanos(r, base) == t)).cloned();
    }
    let without = |c: &[Entry], x: &Entry| -> Option<Vec<Entry>> {
        let rest: Vec<Entry> = c.iter().filter(|e| *e != x).cloned().collect();
        (rest.len() < c.len()).then_some(rest)
    };
    if let Some(x) = &culprit {
        // Should not happen (the cut before this one passed); if it does,
        // minimise without the culprit rule rather than not at all.
        if without(&ops, x).is_none_or(|r| search(&compile(&r, base)) != Verdict::Linearizable) {
            culprit = None;
        }
    }
    let passes_without_culprit = |c: &[Entry]| match &culprit {
        Some(x) => without(c, x).is_some_and(|r| search(&compile(&r, base)) == Verdict::Linearizable),
        None => true,
    };
    let acceptable = |c: &[Entry]| fails(c, base) && passes_without_culprit(c);
    // 2. Drop a long front: keep the ops invoked from index `s` on plus,
    // from before `s`, every writer of a value they observe and the last
    // write that returned before `ops[s]` was invoked. Binary search for
    // the latest `s` that still shows the violation (a heuristic: each
    // candidate is checked, only the search order assumes monotony).
    let with_front = |ops: &[Entry], s: usize| -> Vec<Entry> {
        let observed: HashSet<Option<&str>> = ops[s..].iter().filter_map(observes).collect();
        let start = ops[s].invoke;
        let last_write = (0..s)
            .filter(|&i| writes(&ops[i]).is_some() && ops[i].ret.is_some_and(|r| r < start))
            .max_by_key(|&i| ops[i].ret);
        ops.iter()
            .enumerate()
            .filter(|&(i, e)| {
                i >= s || Some(i) == last_write || writes(e).is_some_and(|w| w.is_some() && observed.contains(&w))
            })
            .map(|(_, e)| e.clone())
            .collect()
    };
    let culprit_pos = culprit.as_ref().and_then(|x| ops.iter().position(|e| e == x));
    let (mut lo, mut hi) = (0, culprit_pos.unwrap_or(0));
    while lo < hi && started.elapsed() < MINIMISE_BUDGET {
        let mid = (lo + hi).div_ceil(2);
        if acceptable(&with_front(&ops, mid)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo > 0 {
        ops = with_front(&ops, lo);
    }
    // 3. Remove runs of ops, long runs first, latest first, while the rest
    // still fails, the culprit is still needed and no observation loses its
    // last writer.
    let mut run = ops.len().div_ceil(2).max(1);
    loop {
        let mut end = ops.len();
        while end > 0 && started.elapsed() < MINIMISE_BUDGET {
            let start = end.saturating_sub(run);
            let mut candidate = ops.clone();
            candidate.drain(start..end);
            if unexplained(&candidate).is_subset(&unexplained(&ops)) && acceptable(&candidate) {
                ops = candidate;
            }
            end = start;
        }
        if run == 1 || started.elapsed() >= MINIMISE_BUDGET {
            break;
        }
        run /= 2;
    }
    let compiled = compile(&ops, base);
    let longest = match search(&compiled) {
        Verdict::Violated(best) | Verdict::Undecided(best) => describe_order(&ops, &compiled, &best),
        Verdict::Linearizable => vec![],
    };
    (ops, longest)
}
