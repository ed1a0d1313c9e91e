//! The WAL thread: writes each Ready's entries and hard state to the WAL
//! and fsyncs, off the raft thread (raft-rs's async persistence, as TiKV
//! writes its raft log). The raft thread stages a Ready's entries in
//! memory, hands them here and goes on ticking: a leader writing a large
//! entry still sends heartbeats, so its followers do not call an election.
//!
//! Tasks queued together are written with one fsync (group commit across
//! Readies); the raft thread is then told the number of the last Ready
//! written (`NodeMsg::Persisted`), and only then sends the messages that
//! had to wait for persistence (votes, acknowledgements) and applies.
//!
//! Invariants: Readies are written in order; a Ready is reported persisted
//! only after its records are durable (when it needed a sync); a write that
//! fails ends this thread with the error, no later Ready is reported, and
//! the raft thread stops the member.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use raft::eraftpb::{Entry, HardState};
use raftlog::WalWriter;

use super::queue_thread::QueueThread;
use super::{NodeError, NodeMsg};

/// Readies in flight to the WAL; beyond this the raft thread waits (the
/// disk is that far behind).
const WAL_QUEUE: usize = 256;
/// Most Readies written under one fsync.
const MAX_GROUP: usize = 64;

pub(super) enum Task {
    Persist { number: u64, entries: Vec<Entry>, hard_state: Option<HardState>, sync: bool },
    Barrier(SyncSender<()>),
}

pub(super) struct WalThread {
    thread: QueueThread<Task>,
    /// Readies handed over and not yet reported persisted.
    pub(super) in_flight: usize,
}

impl WalThread {
    /// `notify` is the raft thread's queue, where `Persisted` is reported.
    pub(super) fn start(writer: WalWriter, notify: SyncSender<NodeMsg>) -> Result<WalThread, NodeError> {
        let wake = notify.clone();
        let run = move |rx| run(&writer, &rx, &notify);
        // Wakes the raft thread, which then finds the failure.
        let on_failure = move || drop(wake.send(NodeMsg::Persisted(0)));
        let thread = QueueThread::start("wal", WAL_QUEUE, "writing the WAL failed", run, on_failure)?;
        Ok(WalThread { thread, in_flight: 0 })
    }

    /// Hands a Ready's records over; waits while the queue is full.
    pub(super) fn persist(&mut self, task: Task) -> Result<(), NodeError> {
        if let Task::Persist { .. } = task {
            self.in_flight += 1;
        }
        self.thread.send(task)
    }

    /// Waits until everything handed over is written (the raft thread
    /// still has to be told, from its queue).
    pub(super) fn drain(&mut self) -> Result<(), NodeError> {
        if self.in_flight == 0 {
            return Ok(());
        }
        self.thread.drain(Task::Barrier)
    }

    /// The thread's failure, if it failed (reported once).
    pub(super) fn check(&mut self) -> Result<(), NodeError> {
        self.thread.check()
    }

    /// Writes what is queued, then ends the thread.
    pub(super) fn stop(&mut self) -> Result<(), NodeError> {
        self.thread.stop()
    }
}

fn run(writer: &WalWriter, rx: &Receiver<Task>, notify: &SyncSender<NodeMsg>) -> Result<(), NodeError> {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(t) => group.push(t),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // Tests make the disk fail (error) or stall (sleep, pause) here.
        if failpoint::hit("wal::write") {
            return Err(NodeError::Io(std::io::Error::other("failpoint wal::write")));
        }
        let mut must_sync = false;
        let mut last = None;
        let mut barriers = Vec::new();
        let mut written = 0;
        for task in group {
            match task {
                Task::Persist { number, entries, hard_state, sync } => {
                    writer.write(&entries, hard_state.as_ref(), false)?;
                    written += entries.iter().map(|e| (e.data.len() + e.context.len()) as i64).sum::<i64>();
                    must_sync |= sync;
                    last = Some(number);
                }
                Task::Barrier(done) => barriers.push(done),
            }
        }
        let disk = &crate::metrics::get().disk;
        // Entry payloads: the records' framing is not counted.
        disk.wal_write_bytes.add(written);
        // One fsync for the whole group.
        if must_sync {
            let start = std::time::Instant::now();
            // Tests make the fsync fail (EIO) or stall here.
            if failpoint::hit("wal::sync") {
                return Err(NodeError::Io(std::io::Error::other("failpoint wal::sync")));
            }
            writer.sync()?;
            disk.wal_fsync.observe(crate::metrics::since(start));
        }
        if let Some(number) = last {
            // The raft thread takes its queue all the time: this waits only
            // while the queue is full.
            if notify.send(NodeMsg::Persisted(number)).is_err() {
                return Ok(());
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
    Ok(())
}
