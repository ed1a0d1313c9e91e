//! An HPACK decoder (RFC 7541) for [`super::AuthorityFix`]: it mirrors the
//! client's dynamic table and hands each decoded field to a callback,
//! borrowing where it can (raw literals are slices of the block; Huffman
//! strings are decoded into two reused buffers), so inspecting a request's
//! headers costs no allocation once the buffers have grown.
//!
//! Invariant: after every block this decoder accepted, its dynamic table
//! holds what the client's encoder holds (and so what hyper's decoder
//! holds while blocks pass through unchanged). A block it refuses leaves
//! the table in an unknown state: the caller stops inspecting then.

use std::collections::VecDeque;
use std::sync::OnceLock;

#[derive(Debug, PartialEq, Eq)]
pub enum HpackError {
    Truncated,
    IntegerOverflow,
    BadIndex(usize),
    BadHuffman,
    TableSizeOverLimit(usize),
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Bytes an entry counts for in the table size (RFC 7541 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

pub struct Decoder {
    /// Newest entry first (index 62 is `table[0]`).
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The largest size a client may set (the server's SETTINGS).
    allowed: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// Where a string of the block is: its bytes in the block, or in a buffer.
enum Str {
    Block(usize, usize),
    Name,
    Value,
}

impl Decoder {
    pub fn new(allowed: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: allowed,
            allowed,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decodes one header block, calling `field(name, value)` for each field.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Result<(), HpackError> {
        let mut at = 0;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if b & 0xe0 == 0x20 {
                let size = integer(block, &mut at, 5)?;
                if size > self.allowed {
                    return Err(HpackError::TableSizeOverLimit(size));
                }
                self.max_size = size;
                self.evict(0);
            } else {
                // Literal: with incremental indexing (01), without (0000),
                // never indexed (0001).
                let (indexing, prefix) = if b & 0xc0 == 0x40 { (true, 6) } else { (false, 4) };
                let name_index = integer(block, &mut at, prefix)?;
                let name = if name_index == 0 { Some(self.string(block, &mut at, Str::Name)?) } else { None };
                let value = self.string(block, &mut at, Str::Value)?;
                let name_bytes: &[u8] = match name {
                    Some(s) => self.bytes(block, &s),
                    None => self.entry(name_index)?.0,
                };
                let value_bytes = self.bytes(block, &value);
                field(name_bytes, value_bytes);
                if indexing {
                    let entry = (Box::from(name_bytes), Box::from(value_bytes));
                    self.insert(entry);
                }
            }
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            1..=61 => {
                let (n, v) = STATIC_TABLE[index - 1];
                Ok((n.as_bytes(), v.as_bytes()))
            }
            _ => {
                let (n, v) =
                    index.checked_sub(62).and_then(|i| self.table.get(i)).ok_or(HpackError::BadIndex(index))?;
                Ok((n, v))
            }
        }
    }

    fn bytes<'a>(&'a self, block: &'a [u8], s: &Str) -> &'a [u8] {
        match *s {
            Str::Block(from, to) => &block[from..to],
            Str::Name => &self.name_buf,
            Str::Value => &self.value_buf,
        }
    }

    /// A string literal at `at`: raw ones stay in the block, Huffman ones
    /// are decoded into the buffer `into` names.
    fn string(&mut self, block: &[u8], at: &mut usize, into: Str) -> Result<Str, HpackError> {
        let huffman = block.get(*at).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = integer(block, at, 7)?;
        let end = at.checked_add(len).filter(|&e| e <= block.len()).ok_or(HpackError::Truncated)?;
        let raw = &block[*at..end];
        *at = end;
        if !huffman {
            return Ok(Str::Block(end - len, end));
        }
        let buf = match into {
            Str::Name => &mut self.name_buf,
            _ => &mut self.value_buf,
        };
        buf.clear();
        huffman_decode(raw, buf)?;
        Ok(into)
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.0.len() + entry.1.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 4.4: an entry larger than the table empties it.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(entry);
    }

    /// Drops the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }
}

/// An HPACK integer with an `n`-bit prefix at `at` (RFC 7541 5.1).
fn integer(block: &[u8], at: &mut usize, n: u8) -> Result<usize, HpackError> {
    let max = (1usize << n) - 1;
    let mut v = (*block.get(*at).ok_or(HpackError::Truncated)? as usize) & max;
    *at += 1;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at).ok_or(HpackError::Truncated)?;
        *at += 1;
        // Anything past 28 bits is far beyond every limit a peer may use.
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        v += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
}

/// The canonical Huffman code of RFC 7541 Appendix B, arranged for
/// decoding: per code length, the first code and where its symbols start.
struct Canonical {
    first_code: [u32; 31],
    count: [u32; 31],
    offset: [usize; 31],
    symbols: Vec<u16>,
}

fn canonical() -> &'static Canonical {
    static CODE: OnceLock<Canonical> = OnceLock::new();
    CODE.get_or_init(|| {
        let table = &httlib_huffman::encoder::table::ENCODE_TABLE;
        let mut order: Vec<u16> = (0..table.len() as u16).collect();
        order.sort_by_key(|&s| (table[s as usize].0, table[s as usize].1));
        let mut c = Canonical { first_code: [0; 31], count: [0; 31], offset: [0; 31], symbols: order.clone() };
        for (i, &s) in order.iter().enumerate() {
            let (len, code) = table[s as usize];
            let len = len as usize;
            if c.count[len] == 0 {
                c.first_code[len] = code;
                c.offset[len] = i;
            }
            assert_eq!(
                code,
                c.first_code[len] + c.count[len],
                "the HPACK Huffman table is canonical (RFC 7541 Appendix B)"
            );
            c.count[len] += 1;
        }
        c
    })
}

/// Decodes an HPACK Huffman string, checking the padding (at most 7 bits,
/// all ones) and refusing EOS inside the string.
pub fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let c = canonical();
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in src {
        for bit in (0..8).rev() {
            code = code << 1 | ((byte >> bit) & 1) as u32;
            len += 1;
            if len > 30 {
                return Err(HpackError::BadHuffman);
            }
            let i = code.wrapping_sub(c.first_code[len]);
            if c.count[len] > 0 && code >= c.first_code[len] && i < c.count[len] {
                let symbol = c.symbols[c.offset[len] + i as usize];
                if symbol == 256 {
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
        }
    }
    if len > 7 || code != (1 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
