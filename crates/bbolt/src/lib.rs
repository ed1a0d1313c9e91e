//! The subset of bbolt's file format that etcd's backend and snapshots use:
//! a writer that bulk-loads sorted buckets into a new file, and a reader
//! that walks the buckets of an existing one. No transactions, no mmap, no
//! nested buckets: a snapshot is written once, front to back, and read once.
//!
//! Why our own and not a bbolt port: a snapshot of millions of keys must
//! stream with a small, fixed memory footprint (one page per tree level),
//! which a transactional port (dirty pages held until commit, mmap'd reads)
//! cannot give; and the subset is small (docs/migration.md has the story).
//!
//! File layout (all integers little-endian, as bbolt on amd64/arm64 writes
//! them; `P` is the page size, 4096 here):
//!
//! ```text
//! page N at offset N*P, spanning 1 + overflow pages:
//!   header   id:u64 flags:u16 count:u16 overflow:u32          16 bytes
//!   meta     (flags 0x04, pages 0 and 1)
//!            magic:u32=0xED0CDAED version:u32=2 page_size:u32 flags:u32
//!            root:u64 sequence:u64 freelist:u64 pgid:u64 txid:u64
//!            checksum:u64 (FNV-1a 64 of the 56 bytes before it)
//!   leaf     (flags 0x02) count elements of flags:u32 pos:u32 ksize:u32 vsize:u32,
//!            then keys and values; `pos` counts from the element itself
//!   branch   (flags 0x01) count elements of pos:u32 ksize:u32 pgid:u64, then keys
//!   freelist (flags 0x10) count free page ids (u64)
//! ```
//!
//! The meta's root is the root bucket: a tree whose leaf elements carry the
//! bucket flag (1), the bucket's name as key and, as value, the bucket
//! header root:u64 sequence:u64, followed by the bucket's whole leaf page
//! when root is 0 (an inline bucket). Of the two metas, a reader takes the
//! valid one with the higher txid; `pgid` is the number of pages in use.
//!
//! Invariants of what [`BoltWriter`] writes (those bbolt's `tx.Check` and
//! etcd's `snapshot status` rely on): every page below `pgid` is reachable
//! from a meta exactly once (metas, freelist, root bucket tree, bucket
//! trees and their overflow pages); keys in a bucket are strictly
//! ascending across its leaves; a branch element's key is its child's
//! first key; a page is at most one page size unless it holds one element.
//! [`BoltReader`] checks the same shapes on what it reads and fails with
//! [`BoltError`] (never a panic) on anything else.

mod read;
mod write;

#[cfg(test)]
mod tests;

pub use read::{BoltReader, BucketRef, Visit};
pub use write::BoltWriter;

/// bbolt's default page size on Linux (the OS page size).
pub const DEFAULT_PAGE_SIZE: usize = 4096;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
const META_MAGIC: u32 = 0xED0C_DAED;
const META_VERSION: u32 = 2;
/// Bytes of the meta covered by its checksum.
const META_CHECKED: usize = 56;
const META_LEN: usize = 64;

const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const FLAG_FREELIST: u16 = 0x10;
/// Leaf element flag: the element is a bucket.
const BUCKET_LEAF_FLAG: u32 = 0x01;

/// bbolt's limits on one key and one value.
pub const MAX_KEY_SIZE: usize = 32768;
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// Why a file could not be read or written as bbolt.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Neither meta page is valid: not a bbolt file at all.
    #[error("not a bbolt database: {0}")]
    NotBolt(String),
    /// The file ends before the pages its meta says it has.
    #[error("truncated bbolt database: {0}")]
    Truncated(String),
    /// A page, element or bucket has a shape bbolt never writes.
    #[error("damaged bbolt database: {0}")]
    Corrupt(String),
    /// The writer was given something bbolt cannot hold (or out of order).
    #[error("cannot write this into bbolt: {0}")]
    Invalid(String),
}

/// FNV-1a 64, the meta page checksum (Go's `hash/fnv.New64a`).
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A page header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageHeader {
    id: u64,
    flags: u16,
    count: u16,
    overflow: u32,
}

impl PageHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.overflow.to_le_bytes());
    }

    /// `b` holds at least [`PAGE_HEADER`] bytes.
    fn decode(b: &[u8]) -> PageHeader {
        PageHeader { id: u64_at(b, 0), flags: u16_at(b, 8), count: u16_at(b, 10), overflow: u32_at(b, 12) }
    }
}

/// A meta page's fields (the checksum is computed, not stored here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    flags: u32,
    root: u64,
    sequence: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

impl Meta {
    fn encode(&self) -> [u8; META_LEN] {
        let mut b = Vec::with_capacity(META_LEN);
        b.extend_from_slice(&META_MAGIC.to_le_bytes());
        b.extend_from_slice(&META_VERSION.to_le_bytes());
        b.extend_from_slice(&self.page_size.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        for v in [self.root, self.sequence, self.freelist, self.pgid, self.txid] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let sum = fnv1a64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b.try_into().expect("meta is 64 bytes")
    }

    /// Decodes and validates a meta (`b`: at least [`META_LEN`] bytes).
    fn decode(b: &[u8]) -> Result<Meta, String> {
        if u32_at(b, 0) != META_MAGIC {
            return Err("bad magic".into());
        }
        let version = u32_at(b, 4);
        if version != META_VERSION {
            return Err(format!("version {version}, not 2"));
        }
        if u64_at(b, 56) != fnv1a64(&b[..META_CHECKED]) {
            return Err("meta checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }
}
