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
