//! The compiled form of one key's history: values interned (values no op
//! observes collapsed into one), times in nanoseconds, ops sorted by invoke
//! time, and the rewrites of unknown ops that cannot change the verdict
//! (each is argued where it is done).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{Entry, Op, Outcome};

/// "No op" in the op and event links.
pub(super) const NIL: usize = usize::MAX;

/// Register value: `ABSENT`, an interned value some op observes, or
/// `OTHER` for every value no op observes (no op can tell those apart).
pub(super) type State = u32;
pub(super) const ABSENT: State = 0;
pub(super) const OTHER: State = State::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Write(State),
    Read(State),
    /// `result: None` = unknown outcome.
    Cas {
        expect: State,
        new: State,
        result: Option<bool>,
    },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct COp {
    pub(super) call: u64,
    /// `u64::MAX` = unknown (never returns).
    pub(super) ret: u64,
    pub(super) kind: Kind,
    /// Index into the entries the op was compiled from.
    pub(super) source: usize,
    /// An unknown op whose written value nothing needs; see `search`.
    pub(super) weak: bool,
    /// The previous unknown op with the same kind (`NIL` if none): it must
    /// be linearized first (interchangeable ops are used in invoke order).
    pub(super) class_prev: usize,
}

impl COp {
    pub(super) fn known(&self) -> bool {
        self.ret != u64::MAX
    }
}

pub(super) fn step(state: State, k: Kind) -> Option<State> {
    match k {
        Kind::Write(v) => Some(v),
        Kind::Read(v) => (state == v).then_some(state),
        Kind::Cas { expect, new, result: Some(true) } => (state == expect).then_some(new),
        Kind::Cas { expect, result: Some(false), .. } => (state != expect).then_some(state),
        Kind::Cas { expect, new, result: None } => Some(if state == expect { new } else { state }),
    }
}

pub(super) fn nanos(t: Instant, base: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX - 1)
}

/// Turns one key's entries into model ops sorted by invoke time, dropping,
/// pinning, collapsing and ordering unknown ops where that cannot change
/// the answer.
pub(super) fn compile(entries: &[Entry], base: Instant) -> Vec<COp> {
    let mut values: HashMap<String, State> = HashMap::new();
    let mut intern = |v: Option<&str>| -> State {
        match v {
            None => ABSENT,
            Some(s) => {
                let n = values.len() as State + 1;
                *values.entry(s.to_string()).or_insert(n)
            }
        }
    };
    let mut ops = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let unknown = e.outcome == Outcome::Unknown || e.ret.is_none();
        let kind = match (&e.op, &e.outcome) {
            (_, Outcome::Failed) => continue,
            (Op::Get { .. }, _) if unknown => continue,
            (Op::Put { value, .. }, _) => Kind::Write(intern(Some(value))),
            (Op::Delete { .. }, _) => Kind::Write(ABSENT),
            (Op::Get { .. }, Outcome::Got(v)) => Kind::Read(intern(v.as_deref())),
            (Op::Cas { expect, new, .. }, o) => Kind::Cas {
                expect: intern(expect.as_deref()),
                new: intern(Some(new)),
                result: match o {
                    Outcome::Cas(b) if !unknown => Some(*b),
                    _ => None,
                },
            },
            (op, o) => panic!("outcome {o:?} does not fit {op}"),
        };
        ops.push(COp {
            call: nanos(e.invoke, base),
            ret: match e.ret {
                Some(r) if !unknown => nanos(r, base).max(nanos(e.invoke, base)),
                _ => u64::MAX,
            },
            kind,
            source: i,
            weak: false,
            class_prev: NIL,
        });
    }
    while pin_observed_unknown_writes(&mut ops) {}
    let mut ops = prune_unobserved_unknown_writes(ops);
    collapse_unobserved_values(&mut ops);
    ops.sort_by_key(|o| (o.call, o.ret));
    order_interchangeable_unknowns(&mut ops);
    ops
}

/// The value an op writes if it takes effect (None for reads).
pub(super) fn written_value(k: Kind) -> Option<State> {
    match k {
        Kind::Write(v) => Some(v),
        Kind::Cas { result: Some(false), .. } | Kind::Read(_) => None,
        Kind::Cas { new, .. } => Some(new),
    }
}

/// The value a known op needs the register to hold (reads, successful cas).
pub(super) fn required_value(k: Kind) -> Option<State> {
    match k {
        Kind::Read(v) => Some(v),
        Kind::Cas { expect, result: Some(true), .. } => Some(expect),
        _ => None,
    }
}

/// An unknown op that is the only writer of a value some known op required
/// must have taken effect before that op returned: it becomes a known op
/// (a successful cas, for an unknown cas) returning at the earliest such
/// return. Exact, and it turns "maybe forever pending" into a bounded window.
/// Returns whether it pinned anything (a pinned cas now requires its
/// `expect`, which may pin another op on the next pass).
pub(super) fn pin_observed_unknown_writes(ops: &mut [COp]) -> bool {
    let mut pinned = false;
    let mut writers: HashMap<State, usize> = HashMap::new();
    for o in ops.iter() {
        if let Some(v) = written_value(o.kind) {
            *writers.entry(v).or_default() += 1;
        }
    }
    let mut first_need: HashMap<State, u64> = HashMap::new();
    for o in ops.iter().filter(|o| o.known()) {
        if let Some(v) = required_value(o.kind) {
            let t = first_need.entry(v).or_insert(u64::MAX);
            *t = (*t).min(o.ret);
        }
    }
    for o in ops.iter_mut().filter(|o| !o.known()) {
        let Some(v) = written_value(o.kind) else { continue };
        if v == ABSENT || writers.get(&v) != Some(&1) {
            continue;
        }
        if let Some(&t) = first_need.get(&v) {
            o.ret = t.max(o.call);
            if let Kind::Cas { expect, new, .. } = o.kind {
                o.kind = Kind::Cas { expect, new, result: Some(true) };
            }
            pinned = true;
        }
    }
    pinned
}

/// Values some op can tell apart from others: read results and every cas
/// `expect`, plus `ABSENT`.
pub(super) fn observed_values(ops: &[COp]) -> HashSet<State> {
    let mut observed = HashSet::from([ABSENT]);
    for o in ops {
        match o.kind {
            Kind::Read(v) | Kind::Cas { expect: v, .. } => {
                observed.insert(v);
            }
            Kind::Write(_) => {}
        }
    }
    observed
}

/// See the module docs: an unknown write of a value nobody observes can be
/// assumed never to have happened, unless a failed cas might need it.
pub(super) fn prune_unobserved_unknown_writes(ops: Vec<COp>) -> Vec<COp> {
    if ops.iter().any(|o| matches!(o.kind, Kind::Cas { result: Some(false), .. })) {
        return ops;
    }
    let observed = observed_values(&ops);
    ops.into_iter().filter(|o| o.known() || written_value(o.kind).is_none_or(|v| observed.contains(&v))).collect()
}

/// Every value no op observes becomes `OTHER`: more configurations coincide
/// in the memo.
pub(super) fn collapse_unobserved_values(ops: &mut [COp]) {
    let observed = observed_values(ops);
    let c = |v: State| if observed.contains(&v) { v } else { OTHER };
    for o in ops.iter_mut() {
        o.kind = match o.kind {
            Kind::Write(v) => Kind::Write(c(v)),
            Kind::Read(v) => Kind::Read(v),
            Kind::Cas { expect, new, result } => Kind::Cas { expect, new: c(new), result },
        };
    }
}

/// Unknown ops of the same kind are interchangeable, so any linearization
/// can use them in invoke order (swap two that are used out of order: the
/// earlier-invoked one can stand in at the earlier point, the other at the
/// later point, since neither has a return). Chaining them cuts the
/// search from every subset of them to every prefix.
///
/// Also marks weak ops: unknown ops whose written value no known op
/// requires and no unknown cas expects.
pub(super) fn order_interchangeable_unknowns(ops: &mut [COp]) {
    let mut needed = HashSet::new();
    for o in ops.iter() {
        match o.kind {
            Kind::Cas { expect, result: None, .. } => {
                needed.insert(expect);
            }
            k if o.known() => {
                if let Some(v) = required_value(k) {
                    needed.insert(v);
                }
            }
            _ => {}
        }
    }
    let mut last: HashMap<Kind, usize> = HashMap::new();
    for (i, o) in ops.iter_mut().enumerate() {
        if o.known() {
            continue;
        }
        o.weak = written_value(o.kind).is_some_and(|v| !needed.contains(&v));
        if let Some(&p) = last.get(&o.kind) {
            o.class_prev = p;
        }
        last.insert(o.kind, i);
    }
}
