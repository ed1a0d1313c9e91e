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
//! - Rewrites that cannot change the answer: an unknown write whose value no
//!   op ever observes is dropped when the key has no failed `Cas` (any
//!   linearization using it stays valid without it, minus unknown `Cas`es
//!   that were no-ops); an unknown write that is the only writer of a value
//!   some known op required is pinned: it took effect (a cas succeeded)
//!   before the earliest such op returned. Unique values per write (a
//!   counter, a client/sequence pair) make both apply, which is what keeps
//!   histories with many timeouts cheap to check. Unknown ops of the same
//!   kind are used in invoke order, and an unknown op whose value nothing
//!   needs is only tried where it lets a failed cas go (see `search`).
//! - The search is bounded by `MEMO_LIMIT` memoised states per key; past it
//!   `check` fails with an *undecided* `Violation` instead of running on.
//! - On failure, the [`Violation`] names the key and a minimised set of ops
//!   that is still not linearizable: first the shortest failing prefix of
//!   the key's history (ops pending at the cut become `Unknown`, which keeps
//!   failure monotone); the op returning at the cut is the culprit. Then a
//!   long front is dropped (keeping the writers of values the rest
//!   observes), then greedy removal of runs of ops (halving the run length down to single
//!   ops) as long as the rest still fails, still passes without the culprit,
//!   and no value a remaining op observed loses its last writer (so the
//!   report shows the stale or lost write, not just "read a value nobody
//!   wrote").

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

mod compile;
mod minimise;
mod search;
#[cfg(test)]
mod tests;

use compile::compile;
use minimise::{describe_order, minimise};
use search::{search, Verdict, MEMO_LIMIT};

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
    /// True when the search hit its memo limit without an answer: the
    /// history may be fine, but it could not be shown (too many overlapping
    /// or unknown ops on this key). `ops` is then the key's whole history.
    pub undecided: bool,
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
        if self.undecided {
            return write!(
                f,
                "key {:?}: could not decide linearizability of its {} ops within {MEMO_LIMIT} \
                 search states (too many concurrent or unknown ops); longest valid order \
                 found has {} ops",
                self.key,
                self.key_ops,
                self.longest_valid_prefix.len()
            );
        }
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
        let compiled = compile(&ops, base);
        match search(&compiled) {
            Verdict::Linearizable => {}
            Verdict::Violated(_) => {
                let (ops, longest) = minimise(ops, base);
                return Err(Violation {
                    key: key.to_string(),
                    key_ops: by_key[key].len(),
                    ops,
                    longest_valid_prefix: longest,
                    undecided: false,
                    base,
                });
            }
            Verdict::Undecided(best) => {
                return Err(Violation {
                    key: key.to_string(),
                    key_ops: by_key[key].len(),
                    longest_valid_prefix: describe_order(&ops, &compiled, &best),
                    ops,
                    undecided: true,
                    base,
                });
            }
        }
    }
    Ok(())
}
