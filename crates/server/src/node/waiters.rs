//! Waiters: a proposer registers an id before proposing and waits on a oneshot
//! that apply completes. Invariant: an entry exists only while someone waits;
//! the guard removes it when the waiter gives up (timeout, cancellation, drop),
//! so nothing accumulates for requests nobody waits for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::oneshot;

pub struct Waiters<T> {
    map: Mutex<HashMap<u64, oneshot::Sender<T>>>,
    next: AtomicU64,
}

/// Removes its waiter on drop unless apply already completed it.
pub struct WaitGuard<T> {
    waiters: Arc<Waiters<T>>,
    id: u64,
}

impl<T> Waiters<T> {
    /// Ids are unique per member across restarts, like etcd's idutil: member
    /// bits on top, start time in ms, then a counter, so an entry replayed
    /// from the WAL never completes a new request's waiter.
    pub fn new(member_id: u64) -> Arc<Self> {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let start = ((member_id & 0xffff) << 48) | ((ms & 0xff_ffff_ffff) << 8);
        Arc::new(Waiters { map: Mutex::new(HashMap::new()), next: AtomicU64::new(start) })
    }

    /// A fresh id from the same sequence (lease IDs, request IDs).
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(self: &Arc<Self>) -> (u64, oneshot::Receiver<T>, WaitGuard<T>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id, tx);
        (id, rx, WaitGuard { waiters: self.clone(), id })
    }

    /// Delivers a result; false if nobody waits any more.
    pub fn complete(&self, id: u64, value: T) -> bool {
        match self.map.lock().remove(&id) {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    /// Completes every waiter (shutdown, fatal error).
    pub fn fail_all(&self, mut value: impl FnMut() -> T) {
        let drained: Vec<_> = self.map.lock().drain().collect();
        for (_, tx) in drained {
            let _ = tx.send(value());
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for WaitGuard<T> {
    fn drop(&mut self) {
        self.waiters.map.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn complete_and_drop_leave_nothing() {
        let w: Arc<Waiters<u32>> = Waiters::new(7);
        let (id, rx, guard) = w.register();
        assert_eq!(w.len(), 1);
        assert!(w.complete(id, 5));
        assert_eq!(rx.await.unwrap(), 5);
        drop(guard);
        assert!(w.is_empty());

        let (id2, rx2, guard2) = w.register();
        assert_ne!(id, id2);
        drop(rx2);
        drop(guard2);
        assert!(w.is_empty(), "a dropped waiter must be removed");
        assert!(!w.complete(id2, 1));
    }
}
