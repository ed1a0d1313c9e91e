//! [`ReaderGate`]: grace periods for history readers, so that compaction can
//! wait for the readers that may still read below a newly published compact
//! revision without ever making a reader wait.
//!
//! Readers [`enter`](ReaderGate::enter) before they load the compact revision
//! and leave (drop the guard) when their read is done. The compactor, after a
//! new compact revision `C` was published, calls
//! [`synchronize`](ReaderGate::synchronize): it returns once every reader
//! that entered before the call has left. Readers entering after the call
//! started load the compact revision after `C` was published, so they reject
//! revisions below `C` themselves; from then on revisions compaction at `C`
//! drops may be deleted.
//!
//! Mechanism (two-slot epochs, as a minimal RCU): a reader counts itself in
//! the slot of the current epoch (and re-checks the epoch, so it never counts
//! in a slot a synchronizer is already draining); `synchronize` bumps the
//! epoch and waits for the previous slot to drain. Synchronizers are
//! serialised, so each drains a slot that holds only readers of one epoch.
//! Entering and leaving cost two atomic operations each and never block.
//!
//! Example: reader R1 enters (epoch 0, slot 0); the apply loop publishes
//! `C = 10`; the compactor synchronizes: epoch 0 -> 1, waits for slot 0.
//! Reader R2 enters now (slot 1) and sees `C = 10`. R1 leaves, slot 0 is
//! empty, the compactor starts deleting; R2 is never waited for.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::Mutex;

/// See the module docs.
#[derive(Default)]
pub struct ReaderGate {
    epoch: AtomicU64,
    active: [AtomicU64; 2],
    /// Serialises synchronizers.
    sync: Mutex<()>,
}

/// A reader inside the gate; leaves on drop.
pub struct ReadGuard<'a> {
    gate: &'a ReaderGate,
    slot: usize,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.gate.active[self.slot].fetch_sub(1, SeqCst);
    }
}

/// How long a synchronizer sleeps between looks once spinning did not do.
const DRAIN_POLL: Duration = Duration::from_micros(200);

impl ReaderGate {
    /// Enters the gate; never blocks.
    pub fn enter(&self) -> ReadGuard<'_> {
        loop {
            let epoch = self.epoch.load(SeqCst);
            let slot = (epoch & 1) as usize;
            self.active[slot].fetch_add(1, SeqCst);
            if self.epoch.load(SeqCst) == epoch {
                return ReadGuard { gate: self, slot };
            }
            // A synchronizer flipped the epoch meanwhile: it may be draining
            // this slot, so count in the new one instead.
            self.active[slot].fetch_sub(1, SeqCst);
        }
    }

    /// Waits until every reader that entered before this call has left, or
    /// `cancel` says to give up (then returns false). Never makes a reader
    /// wait; only the caller waits, as long as the slowest such reader.
    pub fn synchronize(&self, cancel: &dyn Fn() -> bool) -> bool {
        let _one = self.sync.lock();
        let old = self.epoch.fetch_add(1, SeqCst);
        let slot = &self.active[(old & 1) as usize];
        let mut spins = 0u32;
        while slot.load(SeqCst) != 0 {
            if cancel() {
                return false;
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::sleep(DRAIN_POLL);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn synchronize_waits_for_earlier_readers_only() {
        let gate = Arc::new(ReaderGate::default());
        assert!(gate.synchronize(&|| false), "no reader: returns at once");
        let early = gate.enter();
        let released = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (gate, released) = (gate.clone(), released.clone());
            std::thread::spawn(move || {
                assert!(gate.synchronize(&|| false));
                assert!(released.load(SeqCst), "returned while an earlier reader was inside");
            })
        };
        // Readers entering while the synchronizer waits are not waited for,
        // and never block themselves.
        std::thread::sleep(Duration::from_millis(20));
        let late = gate.enter();
        assert!(!waiter.is_finished());
        released.store(true, SeqCst);
        drop(early);
        waiter.join().unwrap();
        drop(late);
        // A cancelled wait gives up.
        let _held = gate.enter();
        assert!(!gate.synchronize(&|| true));
    }
}
