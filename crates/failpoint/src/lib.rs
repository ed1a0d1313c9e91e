//! Failpoints: named places in the code where a test injects a fault (an
//! error, a delay, a stall, a panic) to prove what the code promises under
//! it, as etcd's gofail and TiKV's `fail` do.
//!
//! A site asks [`hit`] (blocking code) or [`eval`] (async code, which must
//! not block its thread) whether its failpoint is set:
//!
//! ```
//! fn sync_wal() -> std::io::Result<()> {
//!     if failpoint::hit("wal::sync") {
//!         return Err(std::io::Error::other("failpoint wal::sync"));
//!     }
//!     Ok(())
//! }
//! failpoint::set("wal::sync", "1*error").unwrap();
//! assert!(sync_wal().is_err());
//! assert!(sync_wal().is_ok()); // fired once, then off
//! ```
//!
//! Specs: `off`, `error`, `panic`, `sleep(MS)`, `pause` (blocks until the
//! failpoint is changed), each with an optional count `N*` after which the
//! failpoint turns itself off. They are set in-process ([`set`], [`clear`]),
//! from the environment at start (`METASTORE_FAILPOINTS="a=error;b=sleep(50)"`,
//! [`init_from_env`]), or over HTTP by process tests (the server's
//! `/debug/failpoints`).
//!
//! Invariant: release builds compile every site to nothing (`hit` is a
//! constant `false`) unless the `enabled` feature is on; debug and test
//! builds check one relaxed atomic per site while no failpoint is set.

use std::time::Duration;

/// What a failpoint does when its site is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The site fails with its own error.
    Error,
    /// The site panics.
    Panic,
    /// The site waits this long, then goes on.
    Sleep(Duration),
    /// The site waits until the failpoint is changed or cleared.
    Pause,
}

/// Whether failpoints are compiled into this build.
pub const ENABLED: bool = cfg!(any(debug_assertions, feature = "enabled"));

#[cfg(any(debug_assertions, feature = "enabled"))]
mod registry;

/// Sets failpoint `name` to `spec` (see the module docs).
pub fn set(name: &str, spec: &str) -> Result<(), String> {
    #[cfg(any(debug_assertions, feature = "enabled"))]
    return registry::set(name, spec);
    #[cfg(not(any(debug_assertions, feature = "enabled")))]
    {
        let _ = (name, spec);
        Err("failpoints are not compiled into this build".to_string())
    }
}

/// Turns failpoint `name` off.
pub fn clear(name: &str) {
    #[cfg(any(debug_assertions, feature = "enabled"))]
    registry::clear(name);
    #[cfg(not(any(debug_assertions, feature = "enabled")))]
    let _ = name;
}

/// The failpoints set now, with their specs.
pub fn list() -> Vec<(String, String)> {
    #[cfg(any(debug_assertions, feature = "enabled"))]
    return registry::list();
    #[cfg(not(any(debug_assertions, feature = "enabled")))]
    Vec::new()
}

/// Sets the failpoints named in `METASTORE_FAILPOINTS` (`name=spec;...`).
pub fn init_from_env() -> Result<(), String> {
    let Ok(all) = std::env::var("METASTORE_FAILPOINTS") else { return Ok(()) };
    for item in all.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, spec) = item.split_once('=').ok_or_else(|| format!("failpoint {item:?}: expected name=spec"))?;
        set(name.trim(), spec.trim())?;
    }
    Ok(())
}

/// The action of failpoint `name`, if it is set (a count is used up by
/// this call). For async sites, which act on it without blocking.
#[inline]
pub fn eval(name: &str) -> Option<Action> {
    #[cfg(any(debug_assertions, feature = "enabled"))]
    return registry::eval(name);
    #[cfg(not(any(debug_assertions, feature = "enabled")))]
    {
        let _ = name;
        None
    }
}

/// For blocking sites: sleeps, pauses or panics as failpoint `name` says,
/// and returns true when the site must fail with its error.
#[inline]
pub fn hit(name: &str) -> bool {
    match eval(name) {
        None | Some(Action::Sleep(Duration::ZERO)) => false,
        Some(Action::Error) => true,
        Some(Action::Panic) => panic!("failpoint {name}: panic"),
        Some(Action::Sleep(d)) => {
            std::thread::sleep(d);
            false
        }
        Some(Action::Pause) => {
            #[cfg(any(debug_assertions, feature = "enabled"))]
            registry::wait_unpaused(name);
            false
        }
    }
}

#[cfg(test)]
mod tests;
