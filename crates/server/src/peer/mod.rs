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
/// Largest message a peer accepts (a raft append is at most a few MiB; a
/// snapshot chunk is `SNAPSHOT_CHUNK`).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;
