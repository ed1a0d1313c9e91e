//! [`Engine::deferred_dump`](storage::Engine::deferred_dump) for RocksDB.
//!
//! A RocksDB snapshot is a point-in-time view of every column family that
//! costs nothing to hold and never makes a writer wait, which is all a
//! deferred dump needs; but it borrows the database, so it cannot travel
//! inside the `'static` job. A producer thread of its own therefore takes the
//! snapshot before [`start`] returns (so the dump is the state as of the
//! call) and streams the dump in chunks through a bounded channel to
//! whichever thread runs the job.
//!
//! Invariants: at most [`CHUNKS_IN_FLIGHT`] chunks of about [`CHUNK_BYTES`]
//! wait in the channel; the job succeeds only after the producer's explicit
//! end marker (a producer that stopped early is an error, never a short
//! dump); the job joins the producer, so the database is not held open after
//! the job returns; a job dropped unrun makes the producer's next send fail,
//! and it then releases the snapshot and exits.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use storage::{DeferredDump, EngineError};

use crate::RocksEngine;

/// Bytes per chunk handed from the producer to the job.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks that may wait in the channel.
const CHUNKS_IN_FLIGHT: usize = 8;

enum Chunk {
    Data(Vec<u8>),
    Failed(EngineError),
    End,
}

/// Takes a snapshot of `engine` now and returns the job that writes its dump.
pub(crate) fn start(engine: Arc<RocksEngine>) -> Result<DeferredDump, EngineError> {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let (taken_tx, taken_rx) = sync_channel(1);
    let producer = std::thread::Builder::new().name("rocks-dump".into()).spawn(move || {
        let snap = engine.db.snapshot();
        // The caller waits for this: the view is fixed before it goes on.
        let _ = taken_tx.send(());
        let mut out = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK_BYTES) };
        let last = match engine.dump_from(&snap, &mut out).and_then(|()| Ok(out.flush()?)) {
            Ok(()) => Chunk::End,
            Err(e) => Chunk::Failed(e),
        };
        // Fails only when the job is gone, and then nobody is listening.
        let _ = tx.send(last);
    })?;
    if taken_rx.recv().is_err() {
        // The producer ended without a snapshot: it panicked.
        let _ = producer.join();
        return Err(EngineError::Backend("the RocksDB dump thread failed to start".into()));
    }
    Ok(Box::new(move |out: &mut dyn Write| consume(rx, producer, out)))
}

/// Writes the producer's chunks to `out` until its end marker.
fn consume(rx: Receiver<Chunk>, producer: JoinHandle<()>, out: &mut dyn Write) -> Result<(), EngineError> {
    let mut result = Err(EngineError::Backend("the RocksDB dump thread stopped before the end of the dump".into()));
    for chunk in &rx {
        match chunk {
            Chunk::Data(bytes) => {
                if let Err(e) = out.write_all(&bytes) {
                    result = Err(e.into());
                    break;
                }
            }
            Chunk::Failed(e) => {
                result = Err(e);
                break;
            }
            Chunk::End => {
                result = Ok(());
                break;
            }
        }
    }
    // Unblocks a producer waiting to send, which then gives up and exits.
    drop(rx);
    if producer.join().is_err() && result.is_ok() {
        result = Err(EngineError::Backend("the RocksDB dump thread panicked".into()));
    }
    result
}

/// An `io::Write` that hands full chunks to the job's thread.
struct ChunkWriter {
    tx: SyncSender<Chunk>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .send(Chunk::Data(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the dump's reader is gone"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
