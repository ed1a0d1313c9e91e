//! Repairs the HTTP/2 `:authority` that Go etcd clients send, before hyper
//! sees it.
//!
//! etcd's Go client (etcdctl 3.4 dialing one endpoint, as `endpoint status`
//! and `endpoint hashkv` do; clientv3 3.5.0's `#initially=[...]`) sends the
//! endpoint as written, `http://127.0.0.1:2379`, as the `:authority` pseudo
//! header. That is not an authority (RFC 3986: no scheme, no path). Go's
//! HTTP/2 server takes it; the `h2` crate resets the stream with
//! PROTOCOL_ERROR and will not be told otherwise. gRPC routes by `:path`,
//! so the authority only has to be valid, not meaningful.
//!
//! [`AuthorityFix`] wraps an accepted connection and watches what the
//! client sends. An HTTP/1 connection is handed through untouched. On an
//! HTTP/2 connection, frames other than HEADERS pass through as they are;
//! each header block (HEADERS and its CONTINUATIONs) is HPACK-decoded with
//! a decoder that mirrors the client's dynamic table, and:
//!
//! - the first block that carries a valid authority ends the inspection:
//!   a client sends the same authority on every request of a connection
//!   (grpc-go takes it from the dial target), so the rest of the
//!   connection passes through at no cost;
//! - the first block with an invalid authority switches the connection to
//!   re-encoding: from then on every block is rewritten as literals that
//!   never touch the dynamic table, with the authority replaced by the
//!   URL's host and port (or left out when there is none). hyper's table
//!   keeps what it had, never referenced again, so it cannot disagree;
//! - blocks before either (none carried an authority) pass as they came,
//!   so hyper's decoder holds the same dynamic table as the client.
//!
//! Invariant: the bytes hyper reads decode, header for header, to what the
//! client sent, but for invalid `:authority` values on a connection whose
//! first authority was invalid. Anything that does not parse (a broken
//! frame, a bad HPACK block, a header block over [`MAX_HEADER_BLOCK`]) ends
//! the inspection: the rest of the connection passes through untouched and
//! hyper reports the client's error itself.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::uri::{Authority, Uri};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod hpack;

/// The client connection preface of HTTP/2 (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames we write stay within the size every HTTP/2 peer must accept.
const MAX_FRAME: usize = 16_384;
/// A header block (all its frames) larger than this is not inspected: hyper
/// refuses header lists far smaller, so only a broken client sends one.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The HPACK table size a client may use unless the server raises it; ours
/// never does.
const HPACK_TABLE: usize = 4096;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

enum Mode {
    /// Not yet known whether this is HTTP/2.
    Preface,
    /// HTTP/2 frames, inspected.
    Frames,
    /// Everything passes through (HTTP/1, or inspection given up).
    Plain,
}

/// A connection whose HTTP/2 `:authority` values are made valid (see the
/// module docs). Writes pass through.
pub struct AuthorityFix<IO> {
    inner: IO,
    mode: Mode,
    /// Bytes read from the client and not yet handed on.
    raw: BytesMut,
    /// How many bytes at the head of `raw` (or still to come) pass as they are.
    pass: usize,
    /// Rewritten header frames, handed on before anything else.
    rewritten: BytesMut,
    decoder: hpack::Decoder,
    /// The rewritten header block being built (reused).
    scratch: Vec<u8>,
    /// The last `:authority` found valid.
    known_good: Vec<u8>,
    /// Set at the first invalid authority: every later block is rewritten.
    reencode: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(inner: IO) -> Self {
        let decoder = hpack::Decoder::new(HPACK_TABLE);
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            pass: 0,
            rewritten: BytesMut::new(),
            decoder,
            scratch: Vec::new(),
            known_good: Vec::new(),
            reencode: false,
        }
    }

    /// Looks at what `raw` holds; false when more bytes are needed first.
    fn step(&mut self) -> bool {
        match self.mode {
            Mode::Plain => {
                self.pass = usize::MAX;
                true
            }
            Mode::Preface => {
                let n = self.raw.len().min(PREFACE.len());
                if self.raw[..n] != PREFACE[..n] {
                    self.mode = Mode::Plain;
                } else if n == PREFACE.len() {
                    self.mode = Mode::Frames;
                    self.pass = PREFACE.len();
                } else {
                    return false;
                }
                true
            }
            Mode::Frames => self.frame(),
        }
    }

    /// The frame at the head of `raw`: passed on, or its header block
    /// inspected once all of it is here.
    fn frame(&mut self) -> bool {
        let Some((len, kind, _)) = frame_header(&self.raw) else { return false };
        if kind != HEADERS {
            self.pass = FRAME_HEADER + len;
            return true;
        }
        match header_block(&self.raw) {
            Block::Incomplete(need) if need > MAX_HEADER_BLOCK + FRAME_HEADER * 64 => self.give_up(),
            Block::Incomplete(_) => return false,
            Block::Broken => self.give_up(),
            Block::Complete(block) => self.inspect(block),
        }
        true
    }

    fn give_up(&mut self) {
        self.mode = Mode::Plain;
        self.pass = usize::MAX;
    }

    fn inspect(&mut self, block: HeaderBlock) {
        let (mut bad_authority, mut saw_authority) = (false, false);
        // Every field is re-encoded as it is decoded (a copy of a few
        // hundred bytes into a reused buffer); used only if rewriting.
        let mut encoded = std::mem::take(&mut self.scratch);
        encoded.clear();
        let known_good = &mut self.known_good;
        let fragment = match &block.fragment {
            Fragment::InFrame(r) => &self.raw[r.clone()],
            Fragment::Joined(v) => v.as_slice(),
        };
        let decoded = self.decoder.decode(fragment, |name, value| {
            saw_authority |= name == b":authority";
            if name != b":authority" || value == known_good.as_slice() {
                encode_literal(&mut encoded, name, value);
            } else if Authority::try_from(value).is_ok() {
                // A client sends the same authority on every request:
                // parse it once.
                *known_good = value.to_vec();
                encode_literal(&mut encoded, name, value);
            } else {
                bad_authority = true;
                if let Some(fixed) = repair_authority(value) {
                    encode_literal(&mut encoded, name, fixed.as_bytes());
                }
            }
        });
        if decoded.is_err() {
            self.scratch = encoded;
            return self.give_up();
        }
        if bad_authority && !self.reencode {
            tracing::debug!("HTTP/2 client sent an invalid :authority: rewriting its header blocks");
            self.reencode = true;
        }
        if self.reencode {
            self.raw.advance(block.wire_len);
            write_header_frames(&mut self.rewritten, block.stream_id, block.flags, block.priority, &encoded);
        } else if saw_authority {
            // A client sends one authority on all its requests: this one
            // is fine, so are the rest. The connection passes through from
            // here at no cost.
            self.give_up();
        } else {
            self.pass = block.wire_len;
        }
        self.scratch = encoded;
    }
}

/// A valid authority for what a client sent: the value itself when valid,
/// the host and port of a URL, or none.
pub fn repair_authority(value: &[u8]) -> Option<String> {
    if let Ok(a) = Authority::try_from(value) {
        return Some(a.as_str().to_string());
    }
    let uri = Uri::try_from(value).ok()?;
    uri.authority().map(|a| a.as_str().to_string())
}

/// Length, type and flags of the frame at the head of `buf`.
fn frame_header(buf: &[u8]) -> Option<(usize, u8, u8)> {
    if buf.len() < FRAME_HEADER {
        return None;
    }
    let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
    Some((len, buf[3], buf[4]))
}

/// Where a header block's HPACK bytes are.
enum Fragment {
    /// In one frame: this range of the buffer.
    InFrame(std::ops::Range<usize>),
    /// Spread over CONTINUATION frames: joined.
    Joined(Vec<u8>),
}

struct HeaderBlock {
    /// The HPACK block, padding and priority taken out.
    fragment: Fragment,
    /// Bytes its frames take on the wire.
    wire_len: usize,
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
}

enum Block {
    /// At least this many bytes are needed.
    Incomplete(usize),
    Broken,
    Complete(HeaderBlock),
}

/// The header block that starts with the HEADERS frame at the head of
/// `buf`, once `buf` holds all its frames.
fn header_block(buf: &[u8]) -> Block {
    let Some((len, _, flags)) = frame_header(buf) else { return Block::Incomplete(FRAME_HEADER) };
    if buf.len() < FRAME_HEADER + len {
        return Block::Incomplete(FRAME_HEADER + len);
    }
    let stream_id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
    let mut payload = &buf[FRAME_HEADER..FRAME_HEADER + len];
    let mut pad = 0;
    if flags & PADDED != 0 {
        let Some((&p, rest)) = payload.split_first() else { return Block::Broken };
        pad = p as usize;
        payload = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        if payload.len() < 5 {
            return Block::Broken;
        }
        let mut p = [0u8; 5];
        p.copy_from_slice(&payload[..5]);
        priority = Some(p);
        payload = &payload[5..];
    }
    if pad > payload.len() {
        return Block::Broken;
    }
    let start = FRAME_HEADER + len - payload.len();
    let mut fragment = Fragment::InFrame(start..start + payload.len() - pad);
    let mut at = FRAME_HEADER + len;
    let mut end_headers = flags & END_HEADERS != 0;
    while !end_headers {
        let Some((len, kind, cflags)) = frame_header(&buf[at..]) else { return Block::Incomplete(at + FRAME_HEADER) };
        let id = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]) & 0x7fff_ffff;
        if kind != CONTINUATION || id != stream_id {
            return Block::Broken;
        }
        if buf.len() < at + FRAME_HEADER + len {
            return Block::Incomplete(at + FRAME_HEADER + len);
        }
        let more = &buf[at + FRAME_HEADER..at + FRAME_HEADER + len];
        fragment = match fragment {
            Fragment::InFrame(r) => Fragment::Joined([&buf[r], more].concat()),
            Fragment::Joined(mut v) => {
                v.extend_from_slice(more);
                Fragment::Joined(v)
            }
        };
        at += FRAME_HEADER + len;
        end_headers = cflags & END_HEADERS != 0;
    }
    Block::Complete(HeaderBlock { fragment, wire_len: at, stream_id, flags, priority })
}

/// HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn encode_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, with a literal name: it never
/// enters the receiver's dynamic table.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for s in [name, value] {
        encode_int(out, 0x00, 7, s.len());
        out.extend_from_slice(s);
    }
}

/// `block` as a HEADERS frame and as many CONTINUATIONs as it needs.
fn write_header_frames(out: &mut BytesMut, stream_id: u32, flags: u8, priority: Option<[u8; 5]>, block: &[u8]) {
    let mut first = true;
    let mut rest = block;
    loop {
        let room = if first && priority.is_some() { MAX_FRAME - 5 } else { MAX_FRAME };
        let take = rest.len().min(room);
        let last = take == rest.len();
        let (kind, mut f) = if first { (HEADERS, flags & END_STREAM) } else { (CONTINUATION, 0) };
        if last {
            f |= END_HEADERS;
        }
        let prio = if first { priority } else { None };
        if prio.is_some() {
            f |= PRIORITY;
        }
        let len = take + prio.map_or(0, |p| p.len());
        out.put_uint(len as u64, 3);
        out.put_u8(kind);
        out.put_u8(f);
        out.put_u32(stream_id);
        if let Some(p) = prio {
            out.put_slice(&p);
        }
        out.put_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
        if last {
            return;
        }
    }
}

fn copy_out(from: &mut BytesMut, limit: usize, buf: &mut ReadBuf<'_>) -> usize {
    let n = from.len().min(limit).min(buf.remaining());
    buf.put_slice(&from[..n]);
    from.advance(n);
    n
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.rewritten.is_empty() {
                copy_out(&mut this.rewritten, usize::MAX, buf);
                return Poll::Ready(Ok(()));
            }
            if this.pass > 0 {
                if !this.raw.is_empty() {
                    let n = copy_out(&mut this.raw, this.pass, buf);
                    this.pass = this.pass.saturating_sub(n);
                    return Poll::Ready(Ok(()));
                }
                // Straight into the caller's buffer: large bodies are not copied.
                if this.pass >= buf.remaining() || matches!(this.mode, Mode::Plain) {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    let n = buf.filled().len() - before;
                    if !matches!(this.mode, Mode::Plain) {
                        this.pass -= n;
                    }
                    return Poll::Ready(Ok(()));
                }
            } else if !this.raw.is_empty() && this.step() {
                continue;
            }
            // More bytes are needed to go on.
            this.raw.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.raw))?;
            if n == 0 {
                // End of stream: what is left goes on as it is.
                if this.raw.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.give_up();
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
