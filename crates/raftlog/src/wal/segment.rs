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
//! - Only the last segment may end in a torn record. A bad record counts as a
//!   torn tail when nothing but zero bytes follows it (a crash cut the write
//!   short, or the filesystem extended the file with zeros); a bad record
//!   followed by real data is corruption. Earlier segments were cut to their
//!   records' length when the next one was started, so any bad record or
//!   zero tail in them is corruption.
//! - A length field is trusted only under an intact header checksum, and is
//!   checked against the bytes left in the file and [`MAX_RECORD_BYTES`]
//!   before anything is allocated for it.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::record::{self, Header, Record, HEADER_LEN, MAX_RECORD_BYTES};
use super::WalError;

const SEGMENT_SUFFIX: &str = ".wal";
/// Read buffer for replay (1 MiB): large sequential reads, bounded memory.
const READ_BUFFER_BYTES: usize = 1 << 20;

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
                tail: Tail::ZerosMustFollow,
                reason: "record header checksum mismatch".to_string(),
                zeros: header.iter().all(|&b| b == 0),
            };
        }
        let room = remaining - HEADER_LEN as u64;
        if u64::from(h.len) > room {
            break BadRecord {
                offset,
                tail: Tail::ReachesEof,
                reason: format!("record length {} runs past the end of the file ({room} bytes left)", h.len),
                zeros: false,
            };
        }
        if h.len > MAX_RECORD_BYTES {
            break BadRecord {
                offset,
                tail: Tail::Never,
                reason: format!("record length {} exceeds the maximum {MAX_RECORD_BYTES}", h.len),
                zeros: false,
            };
        }
        payload.resize(h.len as usize, 0);
        r.read_exact(&mut payload).map_err(io_err)?;
        let end = offset + HEADER_LEN as u64 + u64::from(h.len);
        if record::checksum(h.kind, &payload) != h.crc {
            break BadRecord { offset, tail: Tail::ZerosMustFollow, reason: "crc mismatch".to_string(), zeros: false };
        }
        let rec = record::decode(h.kind, &payload).map_err(|reason| WalError::corrupt(path, offset, reason))?;
        visit(rec, offset)?;
        offset = end;
    };

    // Only the last segment may end in zeros or a torn record: do not read
    // the rest of an earlier one that is corrupt anyway.
    let zeros_follow = is_last
        && match bad.tail {
            Tail::ReachesEof => true,
            Tail::ZerosMustFollow => rest_is_zero(&mut r).map_err(io_err)?,
            Tail::Never => false,
        };
    if bad.zeros && zeros_follow {
        return Ok(ScanEnd { valid_len: bad.offset, file_len, torn: None });
    }
    let torn = zeros_follow;
    if !torn {
        let reason = if is_last {
            format!("{}, followed by more data", bad.reason)
        } else {
            format!("{} in a segment that is not the last", bad.reason)
        };
        return Err(WalError::corrupt(path, bad.offset, reason));
    }
    Ok(ScanEnd { valid_len: bad.offset, file_len, torn: Some(bad.reason) })
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
