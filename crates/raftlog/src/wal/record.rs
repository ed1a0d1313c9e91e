//! WAL record framing.
//!
//! ```text
//! +------------+------------+---------+-----------------+-----------------+
//! | u32 LE len | u32 LE crc | u8 type | u32 LE head crc | payload (len B) |
//! +------------+------------+---------+-----------------+-----------------+
//!   crc covers type byte + payload; head crc covers the 9 bytes before it,
//!   so a damaged length is told apart from a write cut short by a crash
//! ```
//!
//! Types: 1 = `Entry`, 2 = `HardState`, 3 = `ConfState` (protobuf-encoded
//! raft messages), 4 = snapshot marker (`u64 LE index`, `u64 LE term`,
//! `u8 flags`; flag bit 0 = the snapshot was installed from the leader and
//! replaces the whole log, otherwise it is a local snapshot of our own log),
//! 5 = `ConfState` at a raft index (`u64 LE index` then the protobuf), 6 =
//! sync claim (`u64 LE offset`: when the record was written, the segment was
//! fsynced through that byte offset; see `segment`).
//!
//! Type 3 is no longer written (it does not say which index the conf state
//! belongs to) but is still read, with its old meaning; see `replay`.
//!
//! Invariants: an encoded payload never exceeds [`MAX_RECORD_BYTES`] (the
//! encoder refuses, so every record we write can be read back), and the
//! decoder never allocates on the word of a length field alone: callers check
//! the length against the bytes left in the file first.

use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::WalError;

/// Bytes of the fixed record header (length, crc, type).
pub(crate) const HEADER_LEN: usize = 13;

/// Largest payload a record may carry (1.25 GiB): one raft entry as large
/// as the largest request a member takes (`--max-request-bytes` is at most
/// 1 GiB), with room for the request's framing. The cap exists so a damaged
/// length field cannot make the reader allocate absurd buffers; the reader
/// also checks a length against the bytes left in the file first.
pub const MAX_RECORD_BYTES: u32 = 1280 << 20;

const TYPE_ENTRY: u8 = 1;
const TYPE_HARD_STATE: u8 = 2;
const TYPE_CONF_STATE: u8 = 3;
const TYPE_SNAPSHOT_MARKER: u8 = 4;
const TYPE_CONF_STATE_AT: u8 = 5;
const TYPE_SYNCED: u8 = 6;
const MARKER_PAYLOAD_LEN: usize = 17;
/// Bytes of a whole sync-claim record (header plus its `u64`).
pub(crate) const SYNCED_RECORD_LEN: usize = HEADER_LEN + 8;
const MARKER_FLAG_INSTALLED: u8 = 1;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Entry(Entry),
    HardState(HardState),
    /// A conf state of unknown index (legacy type 3).
    ConfState(ConfState),
    /// The conf state after applying the entry at `index` (0: bootstrap).
    ConfStateAt {
        index: u64,
        conf_state: ConfState,
    },
    /// The segment was fsynced through this offset when the record was
    /// written.
    Synced(u64),
    SnapshotMarker {
        index: u64,
        term: u64,
        /// Installed from the leader: the whole log before it is discarded.
        installed: bool,
    },
}

/// The parsed fixed header of a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) crc: u32,
    pub(crate) kind: u8,
    /// The header's own checksum matched.
    pub(crate) intact: bool,
}

fn head_crc(first9: &[u8]) -> u32 {
    crc32fast::hash(first9)
}

impl Header {
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let stored = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
        Header {
            len: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            crc: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            kind: bytes[8],
            intact: head_crc(&bytes[..9]) == stored,
        }
    }
}

/// CRC32 of the type byte followed by the payload.
pub(crate) fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

/// Appends one framed entry record to `buf`.
pub(crate) fn encode_entry(buf: &mut Vec<u8>, e: &Entry) -> Result<(), WalError> {
    encode_with(buf, TYPE_ENTRY, |b| e.write_to_vec(b).map_err(WalError::Encode))
}

/// Appends one framed hard-state record to `buf`.
pub(crate) fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) -> Result<(), WalError> {
    encode_with(buf, TYPE_HARD_STATE, |b| hs.write_to_vec(b).map_err(WalError::Encode))
}

/// Appends one framed legacy conf-state record (type 3) to `buf`: only
/// tests write it, to prove old WALs still read.
#[cfg(test)]
pub(crate) fn encode_conf_state(buf: &mut Vec<u8>, cs: &ConfState) -> Result<(), WalError> {
    encode_with(buf, TYPE_CONF_STATE, |b| cs.write_to_vec(b).map_err(WalError::Encode))
}

/// Appends one framed conf-state-at-index record to `buf`.
pub(crate) fn encode_conf_state_at(buf: &mut Vec<u8>, index: u64, cs: &ConfState) -> Result<(), WalError> {
    encode_with(buf, TYPE_CONF_STATE_AT, |b| {
        b.extend_from_slice(&index.to_le_bytes());
        cs.write_to_vec(b).map_err(WalError::Encode)
    })
}

/// The framed sync claim for `offset` (see the module docs).
pub(crate) fn encode_synced(offset: u64) -> [u8; SYNCED_RECORD_LEN] {
    let mut buf = Vec::with_capacity(SYNCED_RECORD_LEN);
    // Cannot fail: a fixed 8-byte payload.
    let _ = encode_with(&mut buf, TYPE_SYNCED, |b| {
        b.extend_from_slice(&offset.to_le_bytes());
        Ok(())
    });
    let mut out = [0u8; SYNCED_RECORD_LEN];
    out.copy_from_slice(&buf);
    out
}

/// The claim of a whole, valid sync-claim record at the start of `bytes`, if
/// there is one (used to look for claims past a damaged record).
pub(crate) fn parse_synced(bytes: &[u8]) -> Option<u64> {
    let rec = bytes.get(..SYNCED_RECORD_LEN)?;
    if rec[..4] != [8, 0, 0, 0] || rec[8] != TYPE_SYNCED {
        return None;
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&rec[..HEADER_LEN]);
    let h = Header::parse(&h);
    let payload = &rec[HEADER_LEN..];
    if !h.intact || checksum(h.kind, payload) != h.crc {
        return None;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(payload);
    Some(u64::from_le_bytes(v))
}

/// Appends one framed snapshot-marker record to `buf`.
pub(crate) fn encode_marker(buf: &mut Vec<u8>, index: u64, term: u64, installed: bool) -> Result<(), WalError> {
    encode_with(buf, TYPE_SNAPSHOT_MARKER, |b| {
        b.extend_from_slice(&index.to_le_bytes());
        b.extend_from_slice(&term.to_le_bytes());
        b.push(if installed { MARKER_FLAG_INSTALLED } else { 0 });
        Ok(())
    })
}

/// Frames whatever `write_payload` appends. On error `buf` is restored to its
/// previous length, so a failed encode never leaves half a record behind.
fn encode_with(
    buf: &mut Vec<u8>,
    kind: u8,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), WalError>,
) -> Result<(), WalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    buf[start + 8] = kind;
    if let Err(e) = write_payload(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let payload_len = buf.len() - start - HEADER_LEN;
    if payload_len > MAX_RECORD_BYTES as usize {
        buf.truncate(start);
        return Err(WalError::RecordTooLarge { len: payload_len as u64, max: u64::from(MAX_RECORD_BYTES) });
    }
    let crc = checksum(kind, &buf[start + HEADER_LEN..]);
    // Lossless: payload_len <= MAX_RECORD_BYTES, a u32.
    let len = payload_len as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let head = head_crc(&buf[start..start + 9]);
    buf[start + 9..start + 13].copy_from_slice(&head.to_le_bytes());
    Ok(())
}

/// Decodes a payload whose CRC already verified. An error here means the
/// writer and reader disagree about the format: never a torn write.
pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Record, String> {
    match kind {
        TYPE_ENTRY => {
            Entry::parse_from_bytes(payload).map(Record::Entry).map_err(|e| format!("undecodable entry record: {e}"))
        }
        TYPE_HARD_STATE => HardState::parse_from_bytes(payload)
            .map(Record::HardState)
            .map_err(|e| format!("undecodable hard state record: {e}")),
        TYPE_CONF_STATE => ConfState::parse_from_bytes(payload)
            .map(Record::ConfState)
            .map_err(|e| format!("undecodable conf state record: {e}")),
        TYPE_CONF_STATE_AT => {
            let (index, cs) = split_u64(payload).ok_or("conf state record shorter than its index")?;
            ConfState::parse_from_bytes(cs)
                .map(|conf_state| Record::ConfStateAt { index, conf_state })
                .map_err(|e| format!("undecodable conf state record: {e}"))
        }
        TYPE_SYNCED => match split_u64(payload) {
            Some((offset, [])) => Ok(Record::Synced(offset)),
            _ => Err(format!("sync claim payload is {} bytes, expected 8", payload.len())),
        },
        TYPE_SNAPSHOT_MARKER => {
            if payload.len() != MARKER_PAYLOAD_LEN {
                return Err(format!(
                    "snapshot marker payload is {} bytes, expected {MARKER_PAYLOAD_LEN}",
                    payload.len()
                ));
            }
            let flags = payload[16];
            if flags & !MARKER_FLAG_INSTALLED != 0 {
                return Err(format!("snapshot marker has unknown flags {flags:#x}"));
            }
            let mut index = [0u8; 8];
            let mut term = [0u8; 8];
            index.copy_from_slice(&payload[..8]);
            term.copy_from_slice(&payload[8..16]);
            Ok(Record::SnapshotMarker {
                index: u64::from_le_bytes(index),
                term: u64::from_le_bytes(term),
                installed: flags & MARKER_FLAG_INSTALLED != 0,
            })
        }
        other => Err(format!("unknown record type {other}")),
    }
}

/// A leading `u64 LE` and the rest.
fn split_u64(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = payload.split_at_checked(8)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(head);
    Some((u64::from_le_bytes(v), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(buf: &[u8]) -> (Header, &[u8]) {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        let h = Header::parse(&h);
        (h, &buf[HEADER_LEN..HEADER_LEN + h.len as usize])
    }

    #[test]
    fn every_record_type_round_trips() {
        let e = Entry { index: 7, term: 3, data: b"hello".to_vec().into(), ..Default::default() };
        let hs = HardState { term: 3, vote: 1, commit: 6, ..Default::default() };
        let cs = ConfState { voters: vec![1, 2, 3], ..Default::default() };
        let cases = [
            Record::Entry(e),
            Record::HardState(hs),
            Record::ConfState(cs.clone()),
            Record::ConfStateAt { index: 42, conf_state: cs },
            Record::Synced(4096),
            Record::SnapshotMarker { index: 9, term: 2, installed: false },
            Record::SnapshotMarker { index: 10, term: 3, installed: true },
        ];
        for rec in cases {
            let mut buf = vec![0xAA]; // pre-existing bytes must be preserved
            match &rec {
                Record::Entry(e) => encode_entry(&mut buf, e),
                Record::HardState(hs) => encode_hard_state(&mut buf, hs),
                Record::ConfState(cs) => encode_conf_state(&mut buf, cs),
                Record::ConfStateAt { index, conf_state } => encode_conf_state_at(&mut buf, *index, conf_state),
                Record::Synced(offset) => {
                    buf.extend_from_slice(&encode_synced(*offset));
                    assert_eq!(parse_synced(&buf[1..]), Some(*offset));
                    Ok(())
                }
                Record::SnapshotMarker { index, term, installed } => encode_marker(&mut buf, *index, *term, *installed),
            }
            .unwrap();
            assert_eq!(buf[0], 0xAA);
            let (h, payload) = frame(&buf[1..]);
            assert_eq!(buf.len(), 1 + HEADER_LEN + h.len as usize);
            assert_eq!(checksum(h.kind, payload), h.crc);
            assert_eq!(decode(h.kind, payload).unwrap(), rec);
        }
    }

    #[test]
    fn bad_payloads_are_rejected() {
        assert!(decode(TYPE_SNAPSHOT_MARKER, &[0; 16]).is_err());
        let mut bad_flags = [0u8; 17];
        bad_flags[16] = 2;
        assert!(decode(TYPE_SNAPSHOT_MARKER, &bad_flags).is_err());
        assert!(decode(0, &[]).is_err());
        assert!(decode(TYPE_ENTRY, &[0xFF, 0xFF, 0xFF]).is_err());
        assert!(decode(TYPE_CONF_STATE_AT, &[1, 2, 3]).is_err());
        assert!(decode(TYPE_SYNCED, &[0; 9]).is_err());
        let mut claim = encode_synced(77);
        claim[15] ^= 1;
        assert_eq!(parse_synced(&claim), None, "a damaged claim is no claim");
    }
}
