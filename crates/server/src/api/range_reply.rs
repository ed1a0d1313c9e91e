//! The Range RPC's reply, encoded as the store reads it when it is large.
//!
//! tonic's generated KV service answers Range with a whole `RangeResponse`,
//! which prost then encodes into one buffer: a 100 k-key range (30 MiB
//! encoded) was held twice, as about 40 MiB of key-values and as its 30 MiB
//! encoding. Here a plain range (key order, no revision filters) of more
//! than [`ENCODE_ABOVE`] values is encoded into [`Chunks`] as the store
//! hands its key-values over ([`ReplySink`]), one read batch held at a time;
//! [`RangeCodec`] then copies the chunks into tonic's buffer, sized exactly,
//! and frees each as soon as it is copied. Smaller, sorted or filtered
//! ranges are built as a `RangeResponse` and encoded as before.
//! `api::kv::range_route` serves `/etcdserverpb.KV/Range` with this codec.
//!
//! Invariant: the bytes on the wire are prost's encoding of the
//! `RangeResponse` the built path answers (fields in number order, default
//! values left out), whichever path made them; a test compares the two.

use std::io;

use api::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::pb::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use api::pb::mvccpb;
use api::EtcdError;
use bytes::BufMut;
use prost::encoding::{bool as pb_bool, int64 as pb_int64, message as pb_message};
use prost::Message;
use storage::{EngineError, KeyRange, KeyValue, KvSink, MvccError, RangeOptions, RangeTotals};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::Status;

use super::mapped::MappedBuf;
use crate::apply::range::{execute_range, has_revision_filters, range_limit, to_pb_kv, PinnedView};
use crate::errors::from_mvcc;

/// Ranges reading more values than this are encoded as they are read.
/// Below it the whole reply is small, and building it is cheaper than
/// chunks.
pub const ENCODE_ABOVE: usize = 1000;

/// Bytes per chunk of an encoded reply: large enough that the copy into
/// tonic's buffer is a few long copies, small enough that what is held
/// beyond the encoding itself stays small.
const CHUNK_BYTES: usize = 1 << 20;

/// A Range reply, either built or already encoded.
#[derive(Debug)]
pub enum RangeReply {
    Built(RangeResponse),
    Encoded(EncodedRange),
}

impl RangeReply {
    /// The response header, which the API completes after the read.
    pub fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
        match self {
            RangeReply::Built(r) => &mut r.header,
            RangeReply::Encoded(e) => &mut e.header,
        }
    }

    /// The `RangeResponse` this reply encodes (tests; it decodes an encoded one).
    #[cfg(test)]
    fn into_response(self) -> RangeResponse {
        match self {
            RangeReply::Built(r) => r,
            RangeReply::Encoded(e) => {
                let mut buf = Vec::with_capacity(e.encoded_len());
                e.encode_into(&mut buf);
                RangeResponse::decode(&buf[..]).expect("an encoded range decodes")
            }
        }
    }
}

/// A `RangeResponse` whose key-values are already encoded, each as field 2.
#[derive(Debug)]
pub struct EncodedRange {
    header: Option<ResponseHeader>,
    kvs: Chunks,
    more: bool,
    count: i64,
}

impl EncodedRange {
    fn encoded_len(&self) -> usize {
        self.header.as_ref().map_or(0, |h| pb_message::encoded_len(1, h))
            + self.kvs.len
            + if self.more { pb_bool::encoded_len(3, &self.more) } else { 0 }
            + if self.count != 0 { pb_int64::encoded_len(4, &self.count) } else { 0 }
    }

    /// Writes the message, freeing each chunk once it is copied.
    fn encode_into(self, buf: &mut impl BufMut) {
        if let Some(h) = &self.header {
            pb_message::encode(1, h, buf);
        }
        for chunk in self.kvs.into_iter() {
            buf.put_slice(chunk.as_slice());
        }
        if self.more {
            pb_bool::encode(3, &self.more, buf);
        }
        if self.count != 0 {
            pb_int64::encode(4, &self.count, buf);
        }
    }
}

/// Encoded bytes in chunks of about [`CHUNK_BYTES`] (a key-value is never
/// split, so a larger one gets a chunk of its own size), each a
/// [`MappedBuf`], so that copying them out gives their memory back at once.
#[derive(Debug, Default)]
struct Chunks {
    full: Vec<MappedBuf>,
    open: Option<MappedBuf>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        let open = match self.open.take() {
            Some(open) if open.spare() >= bytes.len() => open,
            other => {
                self.full.extend(other.filter(|c| !c.is_empty()));
                MappedBuf::with_capacity(CHUNK_BYTES.max(bytes.len()))?
            }
        };
        let open = self.open.insert(open);
        open.push(bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// Every chunk in order, each handed over (and so freed) in turn.
    fn into_iter(self) -> impl Iterator<Item = MappedBuf> {
        self.full.into_iter().chain(self.open)
    }
}

/// Turns the key-values of a plain range into its reply as the store reads
/// them: etcd's limit (the store reads one more, which only sets `more`)
/// and `keys_only` applied on the way.
pub struct ReplySink {
    limit: usize,
    keys_only: bool,
    sent: usize,
    more: bool,
    out: Out,
}

enum Out {
    Built(Vec<mvccpb::KeyValue>),
    Encoded { kvs: Chunks, scratch: Vec<u8> },
}

impl ReplySink {
    fn new(r: &RangeRequest) -> Self {
        let limit = if r.limit > 0 { usize::try_from(r.limit).unwrap_or(usize::MAX) } else { usize::MAX };
        ReplySink { limit, keys_only: r.keys_only, sent: 0, more: false, out: Out::Built(Vec::new()) }
    }

    fn finish(self, totals: RangeTotals) -> RangeReply {
        let header = Some(ResponseHeader { revision: totals.rev, ..Default::default() });
        match self.out {
            Out::Built(kvs) => RangeReply::Built(RangeResponse { header, kvs, more: self.more, count: totals.count }),
            Out::Encoded { kvs, .. } => {
                RangeReply::Encoded(EncodedRange { header, kvs, more: self.more, count: totals.count })
            }
        }
    }
}

impl KvSink for ReplySink {
    fn start(&mut self, values: usize) {
        self.out = if values > ENCODE_ABOVE {
            Out::Encoded { kvs: Chunks::default(), scratch: Vec::new() }
        } else {
            Out::Built(Vec::with_capacity(values.min(self.limit)))
        };
    }

    fn kv(&mut self, mut kv: KeyValue) -> Result<(), MvccError> {
        if self.sent == self.limit {
            self.more = true;
            return Ok(());
        }
        self.sent += 1;
        if self.keys_only {
            kv.value = Vec::new();
        }
        match &mut self.out {
            Out::Built(kvs) => kvs.push(to_pb_kv(kv)),
            Out::Encoded { kvs, scratch } => {
                scratch.clear();
                pb_message::encode(2, &to_pb_kv(kv), scratch);
                kvs.push(scratch).map_err(|e| MvccError::Engine(EngineError::Io(e)))?;
            }
        }
        Ok(())
    }
}

/// A plain range: in key order, no revision filters. Only these can be
/// answered as they are read; the others sort or filter the whole result.
fn is_plain(r: &RangeRequest) -> bool {
    r.sort_order == SortOrder::None as i32 && r.sort_target == SortTarget::Key as i32 && !has_revision_filters(r)
}

/// [`execute_range`] for the Range RPC, encoding a large plain range as it
/// is read (see the module docs).
pub fn execute(view: &PinnedView<'_>, r: &RangeRequest) -> Result<RangeReply, EtcdError> {
    if !is_plain(r) {
        return execute_range(view, r).map(RangeReply::Built);
    }
    crate::metrics::get().mvcc.range.inc();
    let range = KeyRange::from_etcd(&r.key, &r.range_end);
    let opts = RangeOptions { limit: range_limit(r), rev: r.revision, count_only: r.count_only };
    let mut sink = ReplySink::new(r);
    let totals = view.range_into(&range, opts, &mut sink).map_err(from_mvcc)?;
    Ok(sink.finish(totals))
}

/// The codec of the Range route: decodes a `RangeRequest`, encodes a
/// [`RangeReply`].
#[derive(Debug, Default, Clone)]
pub struct RangeCodec;

impl Codec for RangeCodec {
    type Encode = RangeReply;
    type Decode = RangeRequest;
    type Encoder = RangeEncoder;
    type Decoder = api::codec::Decoder<RangeRequest>;

    fn encoder(&mut self) -> RangeEncoder {
        RangeEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        api::codec::decoder()
    }
}

/// Encodes a [`RangeReply`] into a buffer reserved to its exact length.
#[derive(Debug, Default, Clone)]
pub struct RangeEncoder;

impl Encoder for RangeEncoder {
    type Item = RangeReply;
    type Error = Status;

    fn encode(&mut self, item: RangeReply, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            RangeReply::Built(r) => {
                buf.reserve(r.encoded_len());
                r.encode(buf).map_err(|e| Status::internal(e.to_string()))
            }
            RangeReply::Encoded(e) => {
                buf.reserve(e.encoded_len());
                e.encode_into(buf);
                Ok(())
            }
        }
    }

    fn buffer_settings(&self) -> BufferSettings {
        api::codec::buffer_settings()
    }
}

#[cfg(test)]
#[path = "tests_range_reply.rs"]
mod tests;
