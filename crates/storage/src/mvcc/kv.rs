//! [`KeyValue`], watch [`Event`]s, and the encoding of a key-value as stored in
//! [`Table::Key`](crate::Table::Key) (the whole on-disk layout is in
//! [`crate::schema`]).
//!
//! Stored value layout (all integers big-endian):
//!
//! ```text
//! 0x01                format version
//! create_revision:i64 mod_revision:i64 version:i64 lease:i64
//! key_len:u32 key
//! value               (the rest)
//! ```
//!
//! Invariants: a put stores the full [`KeyValue`]; a tombstone stores a
//! `KeyValue` with only `key` set (as etcd does) — readers fill in
//! `mod_revision` from the revision key. `decode_kv` rejects anything else
//! with [`MvccError::Corrupt`], never panics.

use super::error::MvccError;

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 * 8 + 4;

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Revision of the put that started this key's current generation.
    pub create_revision: i64,
    /// Revision of the change that produced this version.
    pub mod_revision: i64,
    /// Number of puts in the current generation, 1 for a new key.
    pub version: i64,
    pub value: Vec<u8>,
    /// Lease id attached to the key, 0 for none.
    pub lease: i64,
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of the key space, as a watcher sees it.
///
/// For a `Delete`, `kv` holds only `key` and `mod_revision` (the deletion
/// revision); all other fields are zero/empty, as etcd sends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's version just before this change, when it had one.
    pub prev_kv: Option<KeyValue>,
}

/// Encodes `kv` for storage.
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + kv.key.len() + kv.value.len());
    out.push(FORMAT_VERSION);
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    // Keys are bounded far below 4 GiB by the request size limits upstream.
    let key_len = u32::try_from(kv.key.len()).expect("key longer than 4 GiB (caller bug)");
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(&kv.key);
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes a stored key-value.
pub fn decode_kv(b: &[u8]) -> Result<KeyValue, MvccError> {
    let h = decode_header(b)?;
    Ok(KeyValue {
        create_revision: h.create_revision,
        mod_revision: h.mod_revision,
        version: h.version,
        lease: h.lease,
        key: h.key.to_vec(),
        value: b[HEADER_LEN + h.key.len()..].to_vec(),
    })
}

/// A stored key-value without its value, borrowed (rebuilding the index
/// needs no value and no copy).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KvHeader<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// Decodes everything but the value; the same checks as [`decode_kv`].
pub(crate) fn decode_header(b: &[u8]) -> Result<KvHeader<'_>, MvccError> {
    let bad = |why: &str| MvccError::Corrupt(format!("invalid stored key-value: {why}"));
    if b.len() < HEADER_LEN {
        return Err(bad("too short"));
    }
    if b[0] != FORMAT_VERSION {
        return Err(bad("unknown format version"));
    }
    let int = |i: usize| {
        let start = 1 + i * 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[start..start + 8]);
        i64::from_be_bytes(a)
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(&b[33..37]);
    let key_len = u32::from_be_bytes(len) as usize;
    let rest = &b[HEADER_LEN..];
    if key_len > rest.len() {
        return Err(bad("key length past the end"));
    }
    Ok(KvHeader {
        create_revision: int(0),
        mod_revision: int(1),
        version: int(2),
        lease: int(3),
        key: &rest[..key_len],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let kvs = [
            KeyValue::default(),
            KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 7,
                version: 3,
                value: b"bar\0baz".to_vec(),
                lease: -5,
            },
            KeyValue { key: vec![0xff; 300], value: vec![], ..Default::default() },
        ];
        for kv in kvs {
            assert_eq!(decode_kv(&encode_kv(&kv)).unwrap(), kv);
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        let good = encode_kv(&KeyValue { key: b"abc".to_vec(), ..Default::default() });
        let mut wrong_version = good.clone();
        wrong_version[0] = 9;
        let mut long_key = good.clone();
        long_key[36] = 4;
        for b in [&b""[..], &good[..10], &wrong_version, &long_key] {
            assert!(matches!(decode_kv(b), Err(MvccError::Corrupt(_))));
        }
        // Every truncation either fails cleanly or (past the key) shortens the value.
        for cut in 0..good.len() {
            let _ = decode_kv(&good[..cut]);
        }
    }
}
