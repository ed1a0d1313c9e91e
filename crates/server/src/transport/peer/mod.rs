//! Member-to-member traffic over gRPC on the peer URLs: raft messages (a
//! long-lived stream per peer), snapshots (one call each, data in chunks),
//! membership for joining members, and requests only the leader can answer.
//!
//! Peers are trusted: run peer URLs on a private network (raft-rs decodes
//! messages with protobuf 2, see RUSTSEC-2024-0437).

pub mod client;
pub mod leader;
pub mod sender;
pub mod service;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Raft messages at least this large are encoded and decoded as blocking
/// work ([`heavy`]).
const HEAVY_BYTES: usize = 1 << 20;

/// Runs `f`, the encoding or decoding of a raft message of `bytes` bytes.
/// A large one (an append of a 130 MiB entry takes a good part of a second
/// on this machine) would hold its async worker, and every task queued
/// behind it there, heartbeats included: a follower then answered the
/// leader late enough for check-quorum to step it down. Past
/// [`HEAVY_BYTES`] the runtime is told the worker blocks, and moves those
/// tasks to another thread. Small messages, and runtimes that cannot
/// (current-thread, in tests), run it in place.
fn heavy<T>(bytes: usize, f: impl FnOnce() -> T) -> T {
    let multi = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if bytes >= HEAVY_BYTES && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Snapshot data travels in pieces of this size.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;
/// Largest message a peer accepts at the least (raft batches appends to
/// 1 MiB; a snapshot chunk is `SNAPSHOT_CHUNK`).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;
/// Room for raft's and the envelope's framing around one entry.
const ENTRY_FRAMING: usize = 1024 * 1024;

/// Largest message a peer sends or accepts: an append of one entry as
/// large as the largest request this member takes (`--max-request-bytes`;
/// a larger entry goes alone in its append), never below
/// [`MAX_PEER_MESSAGE`]. Every member must run with the same flag, as in
/// etcd.
pub fn message_limit(max_request_bytes: usize) -> usize {
    (max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES + ENTRY_FRAMING).max(MAX_PEER_MESSAGE)
}
