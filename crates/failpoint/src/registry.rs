//! The table of set failpoints. `ANY` lets an unset site return after one
//! relaxed load; the table itself is touched only while something is set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use crate::Action;

/// How often a paused site looks whether it may go on.
const PAUSE_POLL: Duration = Duration::from_millis(10);

struct Entry {
    action: Action,
    /// Hits left before the failpoint turns itself off; None: no limit.
    left: Option<u64>,
    spec: String,
}

static ANY: AtomicBool = AtomicBool::new(false);

fn table() -> &'static Mutex<HashMap<String, Entry>> {
    static TABLE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn parse(spec: &str) -> Result<Option<(Action, Option<u64>)>, String> {
    let bad = || format!("failpoint spec {spec:?}: expected [N*](off|error|panic|sleep(MS)|pause)");
    let (count, action) = match spec.split_once('*') {
        Some((n, a)) => (Some(n.trim().parse::<u64>().map_err(|_| bad())?), a.trim()),
        None => (None, spec.trim()),
    };
    let action = match action {
        "off" => return Ok(None),
        "error" => Action::Error,
        "panic" => Action::Panic,
        "pause" => Action::Pause,
        a => {
            let ms = a.strip_prefix("sleep(").and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
            Action::Sleep(Duration::from_millis(ms.trim().parse().map_err(|_| bad())?))
        }
    };
    Ok(Some((action, count)))
}

pub(crate) fn set(name: &str, spec: &str) -> Result<(), String> {
    let mut t = table().lock();
    match parse(spec)? {
        None => {
            t.remove(name);
        }
        Some((action, left)) => {
            t.insert(name.to_string(), Entry { action, left, spec: spec.trim().to_string() });
        }
    }
    ANY.store(!t.is_empty(), Ordering::Release);
    Ok(())
}

pub(crate) fn clear(name: &str) {
    let mut t = table().lock();
    t.remove(name);
    ANY.store(!t.is_empty(), Ordering::Release);
}

pub(crate) fn list() -> Vec<(String, String)> {
    let mut all: Vec<_> = table().lock().iter().map(|(k, e)| (k.clone(), e.spec.clone())).collect();
    all.sort();
    all
}

#[inline]
pub(crate) fn eval(name: &str) -> Option<Action> {
    if !ANY.load(Ordering::Relaxed) {
        return None;
    }
    let mut t = table().lock();
    let entry = t.get_mut(name)?;
    let action = entry.action.clone();
    if let Some(left) = entry.left.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            t.remove(name);
            ANY.store(!t.is_empty(), Ordering::Release);
        }
    }
    Some(action)
}

/// Blocks while failpoint `name` is set to pause.
pub(crate) fn wait_unpaused(name: &str) {
    while table().lock().get(name).is_some_and(|e| e.action == Action::Pause) {
        std::thread::sleep(PAUSE_POLL);
    }
}
