//! The engine-independent snapshot format written by [`crate::Engine::dump`] and
//! read by [`crate::Engine::restore`].
//!
//! Every engine uses this one format, so a raft snapshot taken on a node running
//! the memory engine installs on a node running RocksDB and vice versa.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! header   "MSDUMP" 0x00 0x01                  magic + format version 1
//! table    'T' name_len:u8 name                starts a table section ("key", "meta", ...)
//! entry    'E' key_len:u32 key val_len:u32 val one pair of the current table
//! trailer  'Z' entries:u64 crc32:u32           crc32 (IEEE) of every byte before the crc
//! ```
//!
//! Invariants checked by [`read_dump`] (violations give [`EngineError::Corrupt`]):
//! the header matches; each table name is known and appears at most once; an
//! entry follows a table record; keys inside a table are strictly ascending; the
//! entry count and checksum in the trailer match. Reading stops right after the
//! trailer, so a dump can be embedded in a larger stream. Lengths are read
//! incrementally, so a garbage length never triggers a huge allocation.
//!
//! Example: a store whose only content is `meta: "a" -> "1"` dumps as the header,
//! `T 04 "meta"`, `E 00000001 "a" 00000001 "1"`, `Z 0000000000000001 <crc>`.

use std::io::{self, BufWriter, Read, Write};

use crate::engine::EngineError;
use crate::schema::Table;

const MAGIC: &[u8; 8] = b"MSDUMP\x00\x01";
const TAG_TABLE: u8 = b'T';
const TAG_ENTRY: u8 = b'E';
const TAG_END: u8 = b'Z';

/// True when `head` (a file's first 8 bytes) starts a dump of this format.
pub fn is_dump_header(head: &[u8]) -> bool {
    head == MAGIC
}

/// Streams a dump; call [`DumpWriter::begin_table`] then [`DumpWriter::entry`]
/// for each pair in ascending key order, and [`DumpWriter::finish`] at the end.
pub struct DumpWriter<W: Write> {
    out: BufWriter<W>,
    crc: crc32fast::Hasher,
    entries: u64,
    in_table: bool,
}

impl<W: Write> DumpWriter<W> {
    /// Writes the header.
    pub fn new(out: W) -> Result<Self, EngineError> {
        let mut w = DumpWriter { out: BufWriter::new(out), crc: crc32fast::Hasher::new(), entries: 0, in_table: false };
        w.put(MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.crc.update(bytes);
        self.out.write_all(bytes)?;
        Ok(())
    }

    fn put_len(&mut self, len: usize) -> Result<(), EngineError> {
        let len =
            u32::try_from(len).map_err(|_| EngineError::Corrupt(format!("dump field of {len} bytes is too long")))?;
        self.put(&len.to_be_bytes())
    }

    /// Starts the section of `table`; following entries belong to it.
    pub fn begin_table(&mut self, table: Table) -> Result<(), EngineError> {
        let name = table.name().as_bytes();
        // Table names are short constants; the cast cannot truncate.
        self.put(&[TAG_TABLE, name.len() as u8])?;
        self.put(name)?;
        self.in_table = true;
        Ok(())
    }

    /// Appends one pair to the current table.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        assert!(self.in_table, "DumpWriter::entry called before begin_table (caller bug)");
        self.put(&[TAG_ENTRY])?;
        self.put_len(key.len())?;
        self.put(key)?;
        self.put_len(value.len())?;
        self.put(value)?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the trailer and flushes.
    pub fn finish(mut self) -> Result<(), EngineError> {
        let entries = self.entries;
        self.put(&[TAG_END])?;
        self.put(&entries.to_be_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok(())
    }
}

/// The parsed contents of a dump, one sorted list of pairs per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpContents {
    tables: [Vec<(Vec<u8>, Vec<u8>)>; 6],
}

impl DumpContents {
    /// The pairs of `table`, in ascending key order.
    pub fn table(&self, table: Table) -> &[(Vec<u8>, Vec<u8>)] {
        &self.tables[table.index()]
    }

    /// Takes the pairs of `table`, leaving it empty.
    pub fn take_table(&mut self, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.tables[table.index()])
    }
}

struct CrcReader<'a> {
    inner: &'a mut dyn Read,
    crc: crc32fast::Hasher,
}

fn corrupt(msg: impl Into<String>) -> EngineError {
    EngineError::Corrupt(msg.into())
}

fn map_eof(e: io::Error) -> EngineError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("dump is truncated")
    } else {
        EngineError::Io(e)
    }
}

impl CrcReader<'_> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], EngineError> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(map_eof)?;
        self.crc.update(&buf);
        Ok(buf)
    }

    /// Reads `len` bytes without trusting `len` for the allocation size.
    fn bytes(&mut self, len: usize) -> Result<Vec<u8>, EngineError> {
        let mut buf = Vec::new();
        let read = (&mut self.inner).take(len as u64).read_to_end(&mut buf).map_err(map_eof)?;
        if read != len {
            return Err(corrupt("dump is truncated"));
        }
        self.crc.update(&buf);
        Ok(buf)
    }

    fn len_prefixed(&mut self) -> Result<Vec<u8>, EngineError> {
        let len = u32::from_be_bytes(self.exact::<4>()?) as usize;
        self.bytes(len)
    }
}

/// Parses and validates a whole dump (see the module docs for the checks).
pub fn read_dump(input: &mut dyn Read) -> Result<DumpContents, EngineError> {
    let mut contents = DumpContents::default();
    read_dump_with(input, &mut |table, key, value| {
        contents.tables[table.index()].push((key, value));
        Ok(())
    })?;
    Ok(contents)
}

/// Streams a dump: hands each pair to `visit` as soon as it is read, so a
/// dump larger than memory can be restored. Every check of [`read_dump`] is
/// made, but the trailer (entry count, checksum) can only be checked at the
/// end: a caller must treat what it was given as void unless this returns
/// `Ok` (the number of entries). An error from `visit` stops the read.
pub fn read_dump_with(
    input: &mut dyn Read,
    visit: &mut dyn FnMut(Table, Vec<u8>, Vec<u8>) -> Result<(), EngineError>,
) -> Result<u64, EngineError> {
    let mut r = CrcReader { inner: input, crc: crc32fast::Hasher::new() };
    if &r.exact::<8>()? != MAGIC {
        return Err(corrupt("not a MetaStore dump (bad magic or version)"));
    }
    let mut seen = [false; 6];
    let mut current: Option<Table> = None;
    let mut last_key: Option<Vec<u8>> = None;
    let mut entries: u64 = 0;
    loop {
        let [tag] = r.exact::<1>()?;
        match tag {
            TAG_TABLE => {
                let [len] = r.exact::<1>()?;
                let name = r.bytes(len as usize)?;
                let table = std::str::from_utf8(&name)
                    .ok()
                    .and_then(Table::from_name)
                    .ok_or_else(|| corrupt(format!("unknown table {:?} in dump", String::from_utf8_lossy(&name))))?;
                if std::mem::replace(&mut seen[table.index()], true) {
                    return Err(corrupt(format!("table {} appears twice", table.name())));
                }
                current = Some(table);
                last_key = None;
            }
            TAG_ENTRY => {
                let table = current.ok_or_else(|| corrupt("entry before any table"))?;
                let key = r.len_prefixed()?;
                let value = r.len_prefixed()?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(corrupt(format!("keys of table {} are not strictly ascending", table.name())));
                }
                last_key = Some(key.clone());
                visit(table, key, value)?;
                entries += 1;
            }
            TAG_END => {
                let count = u64::from_be_bytes(r.exact::<8>()?);
                let expected_crc = r.crc.clone().finalize();
                let mut crc = [0u8; 4];
                r.inner.read_exact(&mut crc).map_err(map_eof)?;
                if count != entries {
                    return Err(corrupt(format!("dump trailer says {count} entries, found {entries}")));
                }
                if u32::from_be_bytes(crc) != expected_crc {
                    return Err(corrupt("dump checksum mismatch"));
                }
                return Ok(entries);
            }
            other => return Err(corrupt(format!("unknown record tag {other:#04x} in dump"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = DumpWriter::new(&mut out).unwrap();
        w.begin_table(Table::Key).unwrap();
        w.entry(b"a", b"1").unwrap();
        w.entry(b"b", b"").unwrap();
        w.begin_table(Table::Members).unwrap();
        w.entry(b"m", b"member").unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let mut c = read_dump(&mut &bytes[..]).unwrap();
        assert_eq!(c.table(Table::Key), &[(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![])]);
        assert!(c.table(Table::Meta).is_empty());
        assert_eq!(c.take_table(Table::Members).len(), 1);
    }

    #[test]
    fn stops_after_trailer() {
        let mut bytes = sample();
        let len = bytes.len();
        bytes.extend_from_slice(b"rest");
        let mut input = &bytes[..];
        read_dump(&mut input).unwrap();
        assert_eq!(input, b"rest");
        assert_eq!(len + 4, bytes.len());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_corrupt() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let r = read_dump(&mut &bytes[..cut]);
            assert!(matches!(r, Err(EngineError::Corrupt(_))), "cut {cut}: {r:?}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let r = read_dump(&mut &b[..]);
                assert!(matches!(r, Err(EngineError::Corrupt(_))), "flip {i}/{bit}: {r:?}");
            }
        }
    }

    #[test]
    fn garbage_lengths_do_not_allocate_or_panic() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[TAG_TABLE, 3]);
        b.extend_from_slice(b"key");
        b.push(TAG_ENTRY);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(b"short");
        assert!(matches!(read_dump(&mut &b[..]), Err(EngineError::Corrupt(_))));
    }

    #[test]
    fn structural_errors() {
        // Entry before table.
        let mut b = MAGIC.to_vec();
        b.push(TAG_ENTRY);
        assert!(matches!(read_dump(&mut &b[..]), Err(EngineError::Corrupt(_))));
        // Unsorted keys.
        let mut out = Vec::new();
        let mut w = DumpWriter::new(&mut out).unwrap();
        w.begin_table(Table::Key).unwrap();
        w.entry(b"b", b"").unwrap();
        w.entry(b"a", b"").unwrap();
        w.finish().unwrap();
        assert!(matches!(read_dump(&mut &out[..]), Err(EngineError::Corrupt(_))));
        // Duplicate table.
        let mut out = Vec::new();
        let mut w = DumpWriter::new(&mut out).unwrap();
        w.begin_table(Table::Key).unwrap();
        w.begin_table(Table::Key).unwrap();
        w.finish().unwrap();
        assert!(matches!(read_dump(&mut &out[..]), Err(EngineError::Corrupt(_))));
        // Empty input and random text.
        assert!(matches!(read_dump(&mut &b""[..]), Err(EngineError::Corrupt(_))));
        assert!(matches!(read_dump(&mut &b"hello world, definitely not a dump"[..]), Err(EngineError::Corrupt(_))));
    }
}
