//! The WGL search over one key's compiled ops, memoised on (set of
//! linearized ops, register value) and bounded by `MEMO_LIMIT`.

use std::collections::HashSet;

use super::compile::{step, COp, Kind, State, ABSENT, NIL};

/// Most (linearized set, value) configurations one key's search may memoise
/// (each a few words): past it the key is reported undecided rather than
/// letting a pathological history eat the machine.
pub(super) const MEMO_LIMIT: usize = 2_000_000;

/// What a search concluded; the vectors hold the longest valid sequence
/// found (indices into the ops).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Linearizable,
    Violated(Vec<usize>),
    /// The memo outgrew `MEMO_LIMIT` before an answer.
    Undecided(Vec<usize>),
}

/// The memo key of a set of linearized ops: the index of the first word
/// that is not all ones, then the words from there to the last non-zero
/// one. Ops are sorted by invoke time, so the set is "everything before
/// some point plus a few ops around it" and the key stays a few words long.
pub(super) fn memo_key(bits: &[u64]) -> Box<[u64]> {
    let first = bits.iter().position(|w| *w != u64::MAX).unwrap_or(bits.len());
    let last = bits.iter().rposition(|w| *w != 0).map_or(first, |l| l.max(first));
    let mut k = Vec::with_capacity(last - first + 2);
    k.push(first as u64);
    k.extend_from_slice(&bits[first..(last + 1).min(bits.len())]);
    k.into_boxed_slice()
}

pub(super) fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// WGL over the ops of one key (sorted by invoke time).
///
/// A weak op (unknown, writing a value nothing needs) is tried only when it
/// lets some failed cas of the current window go where it otherwise could
/// not. That loses no linearization: in one that applies a weak op `w`, the
/// ops after `w` until the next state change can only be failed cases (a
/// read or successful cas would need `w`'s value) and unknown cases that do
/// nothing (drop them); if none of those failed cases needs `w`, drop `w`;
/// otherwise move `w` to just before the first one that fails without it.
/// That one is then callable at `w`'s point, i.e. in the window.
pub(super) fn search(ops: &[COp]) -> Verdict {
    let n = ops.len();
    // Events: (time, is_return, op). Calls sort before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, false, i));
        if o.known() {
            events.push((o.ret, true, i));
        }
    }
    events.sort_unstable();
    // A doubly linked list of the events not yet linearized, in time order,
    // headed by the sentinel `head`.
    let head = events.len();
    let mut next = vec![NIL; head + 1];
    let mut prev = vec![NIL; head + 1];
    let mut ret_event = vec![NIL; n];
    let mut call_event = vec![NIL; n];
    let mut cur = head;
    for (idx, &(_, is_ret, op)) in events.iter().enumerate() {
        next[cur] = idx;
        prev[idx] = cur;
        cur = idx;
        if is_ret {
            ret_event[op] = idx;
        } else {
            call_event[op] = idx;
        }
    }
    let unlink = |x: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    };
    let relink = |x: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    };
    // Whether some failed cas callable now fails in `from` but not in `to`.
    let unblocks_failed_cas = |from: State, to: State, next: &[usize]| {
        let mut e = next[head];
        while e != NIL && !events[e].1 {
            let k = ops[events[e].2].kind;
            if matches!(k, Kind::Cas { result: Some(false), .. }) && step(from, k).is_none() && step(to, k).is_some() {
                return true;
            }
            e = next[e];
        }
        false
    };

    let mut remaining_known = ops.iter().filter(|o| o.known()).count();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Box<[u64]>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new(); // (op, state before it)
    let mut best: Vec<usize> = Vec::new();
    let mut state = ABSENT;
    let mut entry = next[head];
    loop {
        if remaining_known == 0 {
            return Verdict::Linearizable;
        }
        if cache.len() > MEMO_LIMIT {
            return Verdict::Undecided(best);
        }
        let backtrack = entry == NIL || events[entry].1;
        if !backtrack {
            let op = events[entry].2;
            let o = &ops[op];
            // The op to linearize now, and the state after it.
            let mut candidate = None;
            if o.class_prev == NIL || is_set(&linearized, o.class_prev) {
                if let Some(ns) = step(state, o.kind) {
                    if !o.weak || (ns != state && unblocks_failed_cas(state, ns, &next)) {
                        candidate = Some((op, ns));
                    }
                }
            }
            let mut advanced = false;
            if let Some((op, ns)) = candidate {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((memo_key(&linearized), ns)) {
                    stack.push((op, state));
                    if stack.len() > best.len() {
                        best = stack.iter().map(|&(o, _)| o).collect();
                    }
                    state = ns;
                    unlink(call_event[op], &mut next, &mut prev);
                    if ops[op].known() {
                        unlink(ret_event[op], &mut next, &mut prev);
                        remaining_known -= 1;
                    }
                    entry = next[head];
                    advanced = true;
                } else {
                    linearized[op / 64] &= !(1 << (op % 64));
                }
            }
            if !advanced {
                entry = next[entry];
            }
            continue;
        }
        let Some((op, s)) = stack.pop() else {
            return Verdict::Violated(best);
        };
        state = s;
        linearized[op / 64] &= !(1 << (op % 64));
        if ops[op].known() {
            relink(ret_event[op], &mut next, &mut prev);
            remaining_known += 1;
        }
        relink(call_event[op], &mut next, &mut prev);
        entry = next[call_event[op]];
    }
}
