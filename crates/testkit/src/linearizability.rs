//! A linearizability checker for key-value histories: Wing & Gong's search
//! with Lowe's memoisation (the "WGL" algorithm, as in porcupine), run per key.
//!
//! Concurrent client threads record what they did through a shared
//! [`History`]:
//!
//! ```
//! use testkit::linearizability::{check, History, Op, Outcome};
//! let h = History::new();
//! let op = h.invoke(0, Op::put("k", "v1"));
//! // ... send the request ...
//! h.complete(op, Outcome::Ok);
//! let op = h.invoke(1, Op::get("k"));
//! h.complete(op, Outcome::Got(Some("v1".into())));
//! check(&h).unwrap();
//! ```
//!
//! Model: one register per key, initially absent. `Put` sets it, `Delete`
//! clears it, `Get` reads it, `Cas{expect, new}` sets it to `new` iff it
//! equals `expect` (`None` = absent) and reports whether it did.
//!
//! Invariants and rules:
//! - A history is linearizable iff every op can be given a point between its
//!   invoke and its return such that the ops, run one by one in that order
//!   against the model, produce exactly the recorded outcomes. A KV store is
//!   linearizable iff each key's sub-history is (locality), so keys are
//!   checked independently.
//! - `Outcome::Unknown` (timeout, connection error, never completed): the op
//!   may have taken effect at any point after its invoke, or never; its
//!   return is +infinity. An unknown `Get` constrains nothing and is dropped.
//!   `Outcome::Failed` means certainly not applied: the op is dropped.
//! - Ends of intervals: an op that returns at the very instant another is
//!   invoked counts as concurrent with it (the lenient reading).
//! - The search memoises every (set of linearized ops, register value) it has
//!   reached, so each such configuration is explored once; the cost grows
//!   with the number of ops that overlap in time, not with history length.
//! - Pruning that cannot change the answer: an unknown write whose value no
//!   op ever observes is dropped when the key has no failed `Cas` (any
//!   linearization using it stays valid without it, minus unknown `Cas`es
//!   that were no-ops).
//! - On failure, the [`Violation`] names the key and a minimised set of ops
//!   that is still not linearizable: first the shortest failing prefix of
//!   the key's history (ops pending at the cut become `Unknown`, which keeps
//!   failure monotone), then greedy removal of runs of ops (halving the run
//!   length down to single ops) as long as the rest still fails and no value
//!   a remaining op observed loses its last writer (so the report shows the
//!   stale or lost write, not just "read a value nobody wrote").

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time spent minimising one violation before reporting what is left.
const MINIMISE_BUDGET: Duration = Duration::from_secs(5);

/// One client operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// "if value == expect then put new" (`expect: None` = key absent).
    Cas {
        key: String,
        expect: Option<String>,
        new: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Op {
        Op::Put { key: key.into(), value: value.into() }
    }

    pub fn get(key: impl Into<String>) -> Op {
        Op::Get { key: key.into() }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn cas(key: impl Into<String>, expect: Option<&str>, new: impl Into<String>) -> Op {
        Op::Cas { key: key.into(), expect: expect.map(str::to_string), new: new.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    fn accepts(&self, o: &Outcome) -> bool {
        matches!(
            (self, o),
            (_, Outcome::Unknown | Outcome::Failed)
                | (Op::Put { .. } | Op::Delete { .. }, Outcome::Ok)
                | (Op::Get { .. }, Outcome::Got(_))
                | (Op::Cas { .. }, Outcome::Cas(_))
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => write!(f, "put({key:?}, {value:?})"),
            Op::Get { key } => write!(f, "get({key:?})"),
            Op::Delete { key } => write!(f, "delete({key:?})"),
            Op::Cas { key, expect, new } => write!(f, "cas({key:?}, {expect:?} -> {new:?})"),
        }
    }
}

/// What the client saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A put or delete was acknowledged.
    Ok,
    /// A get returned this value (`None` = key absent).
    Got(Option<String>),
    /// A cas reported whether its comparison held (and it wrote).
    Cas(bool),
    /// No answer: it may or may not have taken effect, at any time after
    /// its invoke.
    Unknown,
    /// A definite error: it certainly did not take effect.
    Failed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Got(v) => write!(f, "{v:?}"),
            Outcome::Cas(b) => write!(f, "{b}"),
            Outcome::Unknown => write!(f, "unknown"),
            Outcome::Failed => write!(f, "failed"),
        }
    }
}

/// Handle of one invoked op in a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(usize);

/// One recorded op. `ret` is None while pending or when the outcome is
/// `Unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub client: usize,
    pub op: Op,
    pub invoke: Instant,
    pub ret: Option<Instant>,
    pub outcome: Outcome,
}

/// A thread-safe recorder of invocations and outcomes. Ops never completed
/// count as `Unknown`.
#[derive(Debug)]
pub struct History {
    entries: Mutex<Vec<Entry>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> History {
        History { entries: Mutex::new(Vec::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `client` is about to send `op`; call right before sending.
    pub fn invoke(&self, client: usize, op: Op) -> OpId {
        let mut e = self.lock();
        e.push(Entry { client, op, invoke: Instant::now(), ret: None, outcome: Outcome::Unknown });
        OpId(e.len() - 1)
    }

    /// Records the outcome of `id`; call right after the answer arrives.
    /// Panics (a bug in the test) if `id` was completed already or the
    /// outcome does not fit the op.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let now = Instant::now();
        let mut e = self.lock();
        let entry = &mut e[id.0];
        assert!(entry.ret.is_none() && entry.outcome == Outcome::Unknown, "op {id:?} completed twice");
        assert!(entry.op.accepts(&outcome), "outcome {outcome:?} does not fit {}", entry.op);
        if outcome != Outcome::Unknown {
            entry.ret = Some(now);
        }
        entry.outcome = outcome;
    }

    /// Adds a finished op with explicit instants (`ret: None` = unknown).
    pub fn record(&self, client: usize, op: Op, invoke: Instant, ret: Option<Instant>, outcome: Outcome) -> OpId {
        assert!(op.accepts(&outcome), "outcome {outcome:?} does not fit {op}");
        assert!(ret.is_none_or(|r| r >= invoke), "op {op} returns before invoke");
        let ret = if outcome == Outcome::Unknown { None } else { ret };
        let mut e = self.lock();
        e.push(Entry { client, op, invoke, ret, outcome });
        OpId(e.len() - 1)
    }

    /// A copy of everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Why a history is not linearizable.
#[derive(Clone, Debug)]
pub struct Violation {
    pub key: String,
    /// A minimised non-linearizable subset of the key's ops, in invoke
    /// order. Ops still pending at the cut show as `Unknown`.
    pub ops: Vec<Entry>,
    /// The longest order of some of `ops` found valid, as op descriptions.
    pub longest_valid_prefix: Vec<String>,
    /// Ops of this key in the whole history.
    pub key_ops: usize,
    base: Instant,
}

impl Violation {
    fn describe(&self, e: &Entry) -> String {
        let ms = |t: Instant| t.saturating_duration_since(self.base).as_secs_f64() * 1e3;
        let ret = match e.ret {
            Some(r) => format!("{:.3}ms", ms(r)),
            None => "inf".to_string(),
        };
        format!("client {}: {} -> {}  [{:.3}ms .. {ret}]", e.client, e.op, e.outcome, ms(e.invoke))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable: these {} of its {} ops admit no valid order \
             (times since the history's first invoke):",
            self.key,
            self.ops.len(),
            self.key_ops
        )?;
        for e in &self.ops {
            writeln!(f, "  {}", self.describe(e))?;
        }
        if self.longest_valid_prefix.is_empty() {
            write!(f, "no op can go first")
        } else {
            write!(f, "longest valid order found: {}", self.longest_valid_prefix.join(", "))
        }
    }
}

impl std::error::Error for Violation {}

/// Checks a recorded history; see the module docs.
pub fn check(history: &History) -> Result<(), Violation> {
    check_entries(&history.entries())
}

/// Checks a list of entries (e.g. `History::entries`, or built by hand).
pub fn check_entries(entries: &[Entry]) -> Result<(), Violation> {
    let Some(base) = entries.iter().map(|e| e.invoke).min() else {
        return Ok(());
    };
    let mut by_key: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for e in entries {
        by_key.entry(e.op.key()).or_default().push(e);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort();
    for key in keys {
        let ops: Vec<Entry> = by_key[key].iter().map(|e| (*e).clone()).collect();
        if search(&compile(&ops, base)).is_err() {
            let (ops, longest) = minimise(ops, base);
            return Err(Violation {
                key: key.to_string(),
                key_ops: by_key[key].len(),
                ops,
                longest_valid_prefix: longest,
                base,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Compiled form: values interned per key, times in nanoseconds.

/// Register value: 0 = absent, v + 1 = interned value v.
type State = u32;
const ABSENT: State = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
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
struct COp {
    call: u64,
    /// `u64::MAX` = unknown (never returns).
    ret: u64,
    kind: Kind,
    /// Index into the entries the op was compiled from.
    source: usize,
}

impl COp {
    fn known(&self) -> bool {
        self.ret != u64::MAX
    }
}

fn step(state: State, k: Kind) -> Option<State> {
    match k {
        Kind::Write(v) => Some(v),
        Kind::Read(v) => (state == v).then_some(state),
        Kind::Cas { expect, new, result: Some(true) } => (state == expect).then_some(new),
        Kind::Cas { expect, result: Some(false), .. } => (state != expect).then_some(state),
        Kind::Cas { expect, new, result: None } => Some(if state == expect { new } else { state }),
    }
}

fn nanos(t: Instant, base: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX - 1)
}

/// Turns one key's entries into model ops, dropping ops that cannot matter.
fn compile(entries: &[Entry], base: Instant) -> Vec<COp> {
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
        });
    }
    prune_unobserved_unknown_writes(ops)
}

/// See the module docs: an unknown write of a value nobody observes can be
/// assumed never to have happened, unless a failed cas might need it.
fn prune_unobserved_unknown_writes(ops: Vec<COp>) -> Vec<COp> {
    let mut observed = HashSet::new();
    for o in &ops {
        match o.kind {
            Kind::Read(v) => {
                observed.insert(v);
            }
            Kind::Cas { result: Some(false), .. } => return ops,
            Kind::Cas { expect, .. } => {
                observed.insert(expect);
            }
            Kind::Write(_) => {}
        }
    }
    ops.into_iter()
        .filter(|o| {
            o.known()
                || match o.kind {
                    Kind::Write(v) => observed.contains(&v),
                    Kind::Cas { new, .. } => observed.contains(&new),
                    Kind::Read(_) => true,
                }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The WGL search.

const NIL: usize = usize::MAX;

/// The longest valid sequence found (indices into the ops) on failure.
fn search(ops: &[COp]) -> Result<(), Vec<usize>> {
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
    let e = events.len();
    let head = e;
    let mut next = vec![NIL; e + 1];
    let mut prev = vec![NIL; e + 1];
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

    let mut remaining_known = ops.iter().filter(|o| o.known()).count();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new(); // (op, state before it)
    let mut best: Vec<usize> = Vec::new();
    let mut state = ABSENT;
    let mut entry = next[head];
    loop {
        if remaining_known == 0 {
            return Ok(());
        }
        let backtrack = if entry == NIL {
            true // unreachable while a known op remains; be safe
        } else {
            let (_, is_ret, op) = events[entry];
            if is_ret {
                true
            } else {
                let mut advanced = false;
                if let Some(ns) = step(state, ops[op].kind) {
                    linearized[op / 64] |= 1 << (op % 64);
                    if cache.insert((linearized.clone(), ns)) {
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
                false
            }
        };
        if backtrack {
            let Some((op, s)) = stack.pop() else {
                return Err(best);
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
}

// ---------------------------------------------------------------------------
// Minimising a violation.

/// The key's history as seen at instant `t` (nanoseconds from `base`): ops
/// invoked by `t`, those not returned by `t` turned `Unknown`.
fn cut_at(ops: &[Entry], base: Instant, t: u64) -> Vec<Entry> {
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

fn fails(ops: &[Entry], base: Instant) -> bool {
    search(&compile(ops, base)).is_err()
}

/// Values an entry needs someone to have written, and the value it writes.
fn observes(e: &Entry) -> Option<Option<&str>> {
    match (&e.op, &e.outcome) {
        (Op::Get { .. }, Outcome::Got(v)) => Some(v.as_deref()),
        (Op::Cas { expect, .. }, Outcome::Cas(true) | Outcome::Unknown) => Some(expect.as_deref()),
        _ => None,
    }
}

fn writes(e: &Entry) -> Option<Option<&str>> {
    match (&e.op, &e.outcome) {
        (_, Outcome::Failed) => None,
        (Op::Put { value, .. }, _) => Some(Some(value.as_str())),
        (Op::Delete { .. }, _) => Some(None),
        (Op::Cas { new, .. }, Outcome::Cas(true) | Outcome::Unknown) => Some(Some(new.as_str())),
        _ => None,
    }
}

/// Values some op of `ops` observed that no op of `ops` writes.
fn unexplained(ops: &[Entry]) -> HashSet<Option<String>> {
    let written: HashSet<Option<&str>> = ops.iter().filter_map(writes).collect();
    ops.iter()
        .filter_map(observes)
        .filter(|v| v.is_some() && !written.contains(v))
        .map(|v| v.map(str::to_string))
        .collect()
}

/// A small failing subset of one key's failing history, and the longest
/// valid order found in it.
fn minimise(mut ops: Vec<Entry>, base: Instant) -> (Vec<Entry>, Vec<String>) {
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
    if hi < cuts.len() {
        ops = cut_at(&ops, base, cuts[hi]);
    }
    // 2. Remove runs of ops, long runs first, latest first, while the rest
    // still fails and no observation loses its writer.
    let mut run = ops.len().div_ceil(2).max(1);
    loop {
        let mut end = ops.len();
        while end > 0 && started.elapsed() < MINIMISE_BUDGET {
            let start = end.saturating_sub(run);
            let mut candidate = ops.clone();
            candidate.drain(start..end);
            let before = unexplained(&ops);
            if unexplained(&candidate).is_subset(&before) && fails(&candidate, base) {
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
        Err(best) => best
            .iter()
            .map(|&k| {
                let e = &ops[compiled[k].source];
                format!("{} -> {}", e.op, e.outcome)
            })
            .collect(),
        Ok(()) => vec![],
    };
    (ops, longest)
}

#[cfg(test)]
mod tests;
