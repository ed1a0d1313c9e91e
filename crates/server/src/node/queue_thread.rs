//! A thread fed through a bounded queue that stops at its first error: the
//! shape of the apply thread and the WAL thread, which the raft thread
//! feeds and checks.
//!
//! Invariants: tasks run in the order sent; the first error ends the thread
//! and is reported once by [`QueueThread::check`] (and by `send`/`drain`
//! from then on), so the raft thread stops the member; `stop` runs what is
//! queued, then joins.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::NodeError;

pub(super) struct QueueThread<T> {
    name: &'static str,
    tx: Option<SyncSender<T>>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<NodeError>>>,
}

impl<T: Send + 'static> QueueThread<T> {
    /// Starts thread `name` running `run` over a queue of `capacity` tasks.
    /// On an error, `failed` logs it and runs `on_failure` (to wake whoever
    /// waits for this thread's reports).
    pub(super) fn start(
        name: &'static str,
        capacity: usize,
        failed: &'static str,
        run: impl FnOnce(Receiver<T>) -> Result<(), NodeError> + Send + 'static,
        on_failure: impl FnOnce() + Send + 'static,
    ) -> Result<QueueThread<T>, NodeError> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let failure = Arc::new(Mutex::new(None));
        let slot = failure.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            if let Err(e) = run(rx) {
                tracing::error!(error = %e, "{failed}");
                *slot.lock() = Some(e);
                on_failure();
            }
        })?;
        Ok(QueueThread { name, tx: Some(tx), thread: Some(thread), failure })
    }

    /// Queues `task`; waits while the queue is full. Err once the thread
    /// has failed (its error).
    pub(super) fn send(&mut self, task: T) -> Result<(), NodeError> {
        self.check()?;
        if self.tx.as_ref().is_some_and(|tx| tx.send(task).is_ok()) {
            return Ok(());
        }
        self.check()?;
        Err(self.gone("is gone"))
    }

    /// Waits until every task sent before has run: `barrier` wraps the
    /// sender the thread answers on once it reaches it.
    pub(super) fn drain(&mut self, barrier: impl FnOnce(SyncSender<()>) -> T) -> Result<(), NodeError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(barrier(done))?;
        if wait.recv().is_err() {
            self.check()?;
            return Err(self.gone("is gone"));
        }
        Ok(())
    }

    /// The thread's failure, if it failed (reported once).
    pub(super) fn check(&mut self) -> Result<(), NodeError> {
        match self.failure.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs what is queued, then ends the thread.
    pub(super) fn stop(&mut self) -> Result<(), NodeError> {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Err(self.gone("panicked"));
            }
        }
        self.check()
    }

    fn gone(&self, how: &'static str) -> NodeError {
        NodeError::ThreadStopped { name: self.name, how }
    }
}

impl<T> Drop for QueueThread<T> {
    fn drop(&mut self) {
        // Runs what is queued; a failure was reported (or is moot) by now.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
