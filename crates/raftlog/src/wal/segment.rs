//! Segment files: naming, listing and scanning one file record by record.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`; `seq` increases by
//! one per segment and `first_index` is the raft index the segment was cut
//! for (informational only: replay never trusts it).
//!
//! Invariants:
//! - Live segments have consecutive sequence numbers; a gap means a segment
//!   went missing and is reported as corruption.
//! - The last segment is preallocated: after its records come zero bytes up
//!   to the reserved size. Zeros where the next record header would start
//!   end the log cleanly (no warning, nothing to repair).
//! - Only the last segment may end in a torn write, and only its unsynced
//!   tail: earlier segments were synced and cut to their records' length
//!   before the next one started, so any bad record or zero tail in them is
//!   corruption.
//! - A bad record (the first one) in the last segment is a *torn write*, and
//!   the segment is truncated just before it, when one of these holds:
//!   1. nothing but zero bytes follows it (a crash cut the write short, or
//!      the filesystem extended the file with zeros);
//!   2. a 512-byte sector it covers reads as zeros from the record's start
//!      (or the sector's) to the sector's end: that sector never reached the
//!      disk although later ones did (etcd's `isTornEntry`; sectors of an
//!      unsynced write land in any order);
//!   3. zeros follow from the end of its last sector, and no valid record
//!      starts between it and there: its sector holds garbage.
//! - Anything else (a bit flip with valid records after it, an impossible
//!   length, garbage followed by data) is [`WalError::Corrupt`].
//! - Never truncate what was synced: every write that follows an fdatasync
//!   starts with a *sync claim* record (the offset the segment was synced
//!   through). A torn write under rule 2 with a valid claim past it that
//!   covers its offset is synced data gone bad: corruption, not a torn tail.
//!   What no claim covers (the batches since the last claim) cannot be told
//!   apart from an unsynced tail; there the rules above decide, as in etcd.
//! - A length field is trusted only under an intact header checksum, and is
//!   checked against the bytes left in the file and [`MAX_RECORD_BYTES`]
//!   before anything is allocated for it.
//!
//! Example (sector size 512, records r1..r4 written at offsets 0, 300, 700,
//! 900, only r1 synced): after a power loss sector 1 (512..1024) reads as
//! zeros and sector 2 holds the tail of r4. r2 spans sector 1, which is zero
//! from 512 to 1024 (rule 2); no claim past it covers offset 300, so the
//! segment is truncated to 300 and r1 survives.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, Header, Record, HEADER_LEN, MAX_RECORD_BYTES, SYNCED_RECORD_LEN};
use super::WalError;

const SEGMENT_SUFFIX: &str = ".wal";
/// Read buffer for replay (1 MiB): large sequential reads, bounded memory.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// The unit a torn write keeps or loses (the smallest sector size, as etcd).
pub(crate) const SECTOR_BYTES: u64 = 512;

/// A segment file found in the WAL directory.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
}

/// File name of segment `seq`, cut when the next raft index was `first_index`.
pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name into `(seq, first_index)`.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(seq, 16).ok()?, u64::from_str_radix(first, 16).ok()?))
}

/// Lists the segments of `dir` in sequence order. Files that do not look like
/// segments are ignored; a gap in the sequence numbers is corruption.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io(dir, e))?;
        let name = ent.file_name();
        let Some((seq, _)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        out.push(SegmentFile { seq, path: ent.path() });
    }
    out.sort_by_key(|s| s.seq);
    for pair in out.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::corrupt(
                &pair[1].path,
                0,
                format!("segment sequence jumps from {:#x} to {:#x}: a segment is missing", pair[0].seq, pair[1].seq),
            ));
        }
    }
    Ok(out)
}

/// How a segment scan ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Offset just past the last good record: where the next record goes.
    pub(crate) valid_len: u64,
    /// Size of the file when scanned.
    pub(crate) file_len: u64,
    /// Set when the file ends in a torn record that must be truncated away.
    pub(crate) torn: Option<String>,
}

/// A record that failed its checks.
struct BadRecord {
    offset: u64,
    /// End of the bytes the record claims (its header only, when the header
    /// cannot be trusted), capped at the file's end.
    span_end: u64,
    tail: Tail,
    reason: String,
    /// Every byte read of it was zero: with only zeros after it, this is the
    /// unwritten (preallocated) end of the segment, not a record.
    zeros: bool,
}

/// Whether a bad record in the last segment may be a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// The record runs to (or past) the end of the file: torn.
    ReachesEof,
    /// The reader sits just past the record: torn iff only zeros follow.
    ZerosMustFollow,
    /// Cannot be a torn write (e.g. an impossible length with data after it).
    Never,
}

/// Reads every record of the segment at `path`, calling `visit(record,
/// offset)` for each good one. For the last segment a torn tail is reported
/// in [`ScanEnd::torn`] (the caller truncates); anything else that fails a
/// check is [`WalError::Corrupt`].
pub(crate) fn scan(
    path: &Path,
    is_last: bool,
    mut visit: impl FnMut(Record, u64) -> Result<(), WalError>,
) -> Result<ScanEnd, WalError> {
    let io_err = |e: io::Error| WalError::io(path, e);
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();

    let bad = loop {
        if offset == file_len {
            return Ok(ScanEnd { valid_len: offset, file_len, torn: None });
        }
        let remaining = file_len - offset;
        if remaining < HEADER_LEN as u64 {
            let partial = &mut header[..remaining as usize];
            r.read_exact(partial).map_err(io_err)?;
            break BadRecord {
                offset,
                span_end: file_len,
                tail: Tail::ReachesEof,
                reason: format!("partial record header ({remaining} bytes)"),
                zeros: partial.iter().all(|&b| b == 0),
            };
        }
        r.read_exact(&mut header).map_err(io_err)?;
        let h = Header::parse(&header);
        if !h.intact {
            // A crash can cut a header short, with only zeros after it; a
            // header whose own checksum fails with data after it was damaged
            // (a flipped length must not silently drop the records after it).
            break BadRecord {
                offset,
                span_end: offset + HEADER_LEN as u64,
                tail: Tail::ZerosMustFollow,
                reason: "record header checksum mismatch".to_string(),
                zeros: header.iter().all(|&b| b == 0),
            };
        }
        let room = remaining - HEADER_LEN as u64;
        if u64::from(h.len) > room {
            break BadRecord {
                offset,
                span_end: file_len,
                tail: Tail::ReachesEof,
                reason: format!("record length {} runs past the end of the file ({room} bytes left)", h.len),
                zeros: false,
            };
        }
        if h.len > MAX_RECORD_BYTES {
            break BadRecord {
                offset,
                span_end: offset + HEADER_LEN as u64,
                tail: Tail::Never,
                reason: format!("record length {} exceeds the maximum {MAX_RECORD_BYTES}", h.len),
                zeros: false,
            };
        }
        payload.resize(h.len as usize, 0);
        r.read_exact(&mut payload).map_err(io_err)?;
        let end = offset + HEADER_LEN as u64 + u64::from(h.len);
        if record::checksum(h.kind, &payload) != h.crc {
            break BadRecord {
                offset,
                span_end: end,
                tail: Tail::ZerosMustFollow,
                reason: "crc mismatch".to_string(),
                zeros: false,
            };
        }
        match record::decode(h.kind, &payload).map_err(|reason| WalError::corrupt(path, offset, reason))? {
            Record::Synced(claim) if claim > offset => {
                let reason = format!("sync claim of offset {claim} lies beyond the claim itself");
                return Err(WalError::corrupt(path, offset, reason));
            }
            Record::Synced(_) => {}
            rec => visit(rec, offset)?,
        }
        offset = end;
    };

    // Only the last segment may end in zeros or a torn record: do not read
    // the rest of an earlier one that is corrupt anyway.
    if !is_last {
        let reason = format!("{} in a segment that is not the last", bad.reason);
        return Err(WalError::corrupt(path, bad.offset, reason));
    }
    let zeros_follow = match bad.tail {
        Tail::ReachesEof => true,
        Tail::ZerosMustFollow => rest_is_zero(&mut r).map_err(io_err)?,
        Tail::Never => false,
    };
    if zeros_follow {
        let torn = (!bad.zeros).then_some(bad.reason); // all zeros: the clean end
        return Ok(ScanEnd { valid_len: bad.offset, file_len, torn });
    }
    if bad.tail == Tail::Never {
        return Err(WalError::corrupt(path, bad.offset, format!("{}, followed by more data", bad.reason)));
    }
    let file = r.get_ref();
    let torn = if zeroed_sector(file, bad.offset, bad.span_end, file_len).map_err(io_err)? {
        format!("{}: a sector of it reads as zeros, later ones hold data", bad.reason)
    } else if garbage_sector(file, &bad, file_len).map_err(io_err)? {
        format!("{}: garbage up to its sector's end, zeros after", bad.reason)
    } else {
        return Err(WalError::corrupt(path, bad.offset, format!("{}, followed by more data", bad.reason)));
    };
    let synced = max_sync_claim(file, bad.offset + 1, file_len).map_err(io_err)?;
    if synced > bad.offset {
        let reason = format!("{torn}; but a later record shows the segment was synced through offset {synced}");
        return Err(WalError::corrupt(path, bad.offset, reason));
    }
    Ok(ScanEnd { valid_len: bad.offset, file_len, torn: Some(torn) })
}

fn align_up(offset: u64) -> u64 {
    offset.div_ceil(SECTOR_BYTES) * SECTOR_BYTES
}

/// Rule 2 of the module docs: some sector overlapping `[start, span_end)`
/// reads as zeros from `max(start, sector start)` to the sector's end (or the
/// file's).
fn zeroed_sector(file: &File, start: u64, span_end: u64, file_len: u64) -> io::Result<bool> {
    let mut sector = start / SECTOR_BYTES * SECTOR_BYTES;
    let mut buf = [0u8; SECTOR_BYTES as usize];
    while sector < span_end && sector < file_len {
        let from = sector.max(start);
        let to = (sector + SECTOR_BYTES).min(file_len);
        // Lossless: to - from <= SECTOR_BYTES.
        let piece = &mut buf[..(to - from) as usize];
        file.read_exact_at(piece, from)?;
        if piece.iter().all(|&b| b == 0) {
            return Ok(true);
        }
        sector += SECTOR_BYTES;
    }
    Ok(false)
}

/// Rule 3 of the module docs: zeros from the end of the record's last sector
/// on, and no valid record starting after the bad one's offset before it.
fn garbage_sector(file: &File, bad: &BadRecord, file_len: u64) -> io::Result<bool> {
    let sector_end = align_up(bad.span_end).min(file_len);
    if !zeros_from(file, sector_end, file_len)? {
        return Ok(false);
    }
    // Inside a record whose header is intact there is no other record.
    let from = if bad.span_end > bad.offset + HEADER_LEN as u64 { bad.span_end } else { bad.offset + 1 };
    for at in from..sector_end.saturating_sub(HEADER_LEN as u64 - 1) {
        if valid_record_at(file, at, file_len)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a record with intact header and checksum starts at `at`.
fn valid_record_at(file: &File, at: u64, file_len: u64) -> io::Result<bool> {
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, at)?;
    let h = Header::parse(&header);
    let payload_at = at + HEADER_LEN as u64;
    if !h.intact || h.len > MAX_RECORD_BYTES || u64::from(h.len) > file_len - payload_at {
        return Ok(false);
    }
    let mut payload = vec![0u8; h.len as usize];
    file.read_exact_at(&mut payload, payload_at)?;
    Ok(record::checksum(h.kind, &payload) == h.crc)
}

/// True when `[from, file_len)` is all zero bytes.
fn zeros_from(file: &File, from: u64, file_len: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut at = from;
    while at < file_len {
        // Lossless: bounded by READ_BUFFER_BYTES.
        let n = (file_len - at).min(READ_BUFFER_BYTES as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// The highest offset claimed by a valid sync-claim record starting in
/// `[from, file_len)`, 0 if none (a claim is only believed at or below its
/// own offset, as the writer puts it).
fn max_sync_claim(file: &File, from: u64, file_len: u64) -> io::Result<u64> {
    let overlap = SYNCED_RECORD_LEN - 1;
    let mut buf = vec![0u8; READ_BUFFER_BYTES + overlap];
    let mut best = 0;
    let mut at = from;
    while at + (SYNCED_RECORD_LEN as u64) <= file_len {
        // Lossless: bounded by the buffer's length.
        let n = (file_len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        for i in 0..=n - SYNCED_RECORD_LEN {
            if let Some(claim) = record::parse_synced(&buf[i..]) {
                if claim <= at + i as u64 {
                    best = best.max(claim);
                }
            }
        }
        at += (n - overlap) as u64;
    }
    Ok(best)
}

/// True when everything left in `r` is zero bytes (or nothing is left).
fn rest_is_zero(r: &mut impl Read) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        let n = file_name(0x1f, 0x2a);
        assert_eq!(n, "000000000000001f-000000000000002a.wal");
        assert_eq!(parse_name(&n), Some((0x1f, 0x2a)));
        assert_eq!(parse_name("LOCK"), None);
        assert_eq!(parse_name("1-2.wal"), None);
        assert_eq!(parse_name("000000000000001f-000000000000002a.wal.tmp"), None);
    }

    #[test]
    fn sequence_gap_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [0u64, 1, 3] {
            fs::write(dir.path().join(file_name(seq, 1)), b"").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        match list(dir.path()) {
            Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("missing")),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
