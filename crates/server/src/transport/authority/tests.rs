use super::*;
use tokio::io::AsyncReadExt;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A reader that hands out at most `chunk` bytes per read.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (self.data.len() - self.at).min(self.chunk).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

async fn through(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut fix = AuthorityFix::new(Trickle { data: data.to_vec(), at: 0, chunk });
    let mut out = Vec::new();
    fix.read_to_end(&mut out).await.expect("read");
    out
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn grpc_headers(authority: &str, path: &str) -> Vec<(&'static [u8], Vec<u8>)> {
    vec![
        (b":method", b"POST".to_vec()),
        (b":scheme", b"http".to_vec()),
        (b":path", path.as_bytes().to_vec()),
        (b":authority", authority.as_bytes().to_vec()),
        (b"content-type", b"application/grpc".to_vec()),
        (b"user-agent", b"grpc-go/1.26.0".to_vec()),
        (b"te", b"trailers".to_vec()),
    ]
}

/// A client connection: preface, SETTINGS, then for each request a header
/// block (HPACK with the dynamic table, as clients encode) and a DATA frame.
fn client_stream(requests: &[(&str, &str)]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    let mut enc = loona_hpack::Encoder::new();
    for (i, (authority, path)) in requests.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let headers = grpc_headers(authority, path);
        let block = enc.encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
        frame(&mut out, HEADERS, END_HEADERS, stream, &block);
        frame(&mut out, 0x0, END_STREAM, stream, b"\0\0\0\0\x02hi");
    }
    out
}

/// The header lists and the other frames of a server's view of a stream,
/// decoded as hyper would: one decoder over every block in order.
fn server_view(bytes: &[u8]) -> (Vec<Fields>, Vec<Vec<u8>>) {
    assert!(bytes.starts_with(PREFACE), "preface kept");
    let mut rest = &bytes[PREFACE.len()..];
    let mut dec = loona_hpack::Decoder::new();
    let (mut lists, mut others) = (Vec::new(), Vec::new());
    while !rest.is_empty() {
        let Block::Complete(block) = header_block(rest) else {
            let (len, kind, _) = frame_header(rest).expect("frame header");
            assert_ne!(kind, HEADERS, "header block should be complete");
            others.push(rest[..FRAME_HEADER + len].to_vec());
            rest = &rest[FRAME_HEADER + len..];
            continue;
        };
        let fragment = match &block.fragment {
            Fragment::InFrame(r) => &rest[r.clone()],
            Fragment::Joined(v) => v.as_slice(),
        };
        lists.push(dec.decode(fragment).expect("hyper's decoder takes it"));
        rest = &rest[block.wire_len..];
    }
    (lists, others)
}

fn authority_of(list: &Fields) -> Option<String> {
    list.iter().find(|(n, _)| n == b":authority").map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test]
async fn http1_passes_through_untouched() {
    let req = b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    assert_eq!(through(&req, 4096).await, req);
    assert_eq!(through(&req, 1).await, req);
    // Starts like the preface, then is not one.
    let odd = b"PRI * HTTP/1.1\r\n\r\n".to_vec();
    assert_eq!(through(&odd, 3).await, odd);
}

#[tokio::test]
async fn valid_authorities_pass_byte_for_byte() {
    let input =
        client_stream(&[("127.0.0.1:2379", "/etcdserverpb.KV/Range"), ("127.0.0.1:2379", "/etcdserverpb.KV/Put")]);
    for chunk in [1, 7, 4096] {
        assert_eq!(through(&input, chunk).await, input, "chunk {chunk}");
    }
}

#[tokio::test]
async fn url_authority_becomes_host_and_port_and_later_blocks_still_decode() {
    // etcdctl's URL comes first and fills the client's dynamic table; the
    // later requests refer back to it and to one another.
    let input = client_stream(&[
        ("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
        ("127.0.0.1:2379", "/etcdserverpb.KV/Range"),
        ("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/HashKV"),
        ("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
    ]);
    let (sent, _) = server_view(&input);
    for chunk in [1, 5, 100, 65536] {
        let (seen, others) = server_view(&through(&input, chunk).await);
        assert_eq!(seen.len(), 4);
        assert_eq!(others.len(), 5, "SETTINGS and four DATA frames pass");
        let authorities: Vec<_> = seen.iter().map(authority_of).collect();
        assert_eq!(authorities, vec![Some("127.0.0.1:2379".to_string()); 4], "chunk {chunk}");
        for (s, w) in seen.iter().zip(&sent) {
            let strip = |l: &Fields| l.iter().filter(|(n, _)| n != b":authority").cloned().collect::<Fields>();
            assert_eq!(strip(s), strip(w), "every other header as sent");
        }
    }
}

#[tokio::test]
async fn a_connection_whose_first_authority_is_valid_is_not_inspected_further() {
    // One authority per connection is what clients send; a later odd one
    // reaches hyper as sent (and is refused there, as without the fix).
    let input = client_stream(&[("127.0.0.1:2379", "/etcdserverpb.KV/Range"), ("http://127.0.0.1:2379", "/x")]);
    assert_eq!(through(&input, 3).await, input);
}

#[tokio::test]
async fn an_authority_with_no_host_is_left_out() {
    let input = client_stream(&[("#initially=[http://127.0.0.1:2379]", "/etcdserverpb.KV/Range")]);
    let (seen, _) = server_view(&through(&input, 4096).await);
    assert_eq!(authority_of(&seen[0]), None);
    assert_eq!(seen[0].len(), 6);
}

#[tokio::test]
async fn padding_priority_and_continuations_are_understood() {
    let mut input = PREFACE.to_vec();
    let headers = grpc_headers("http://localhost:2379", "/etcdserverpb.KV/Range");
    let block = loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
    let (a, b) = block.split_at(10);
    let mut payload = vec![3u8]; // pad length
    payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    frame(&mut input, HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload);
    frame(&mut input, CONTINUATION, END_HEADERS, 1, b);
    let out = through(&input, 2).await;
    let (seen, others) = server_view(&out);
    assert!(others.is_empty());
    assert_eq!(authority_of(&seen[0]).as_deref(), Some("localhost:2379"));
    let (_, _, flags) = frame_header(&out[PREFACE.len()..]).expect("frame");
    assert_eq!(flags & END_STREAM, END_STREAM, "end of stream kept");
    assert_eq!(flags & PRIORITY, PRIORITY, "priority kept");
}

#[tokio::test]
async fn a_large_rewritten_block_is_split_into_continuations() {
    let mut input = PREFACE.to_vec();
    let mut headers = grpc_headers("http://127.0.0.1:2379", "/etcdserverpb.KV/Range");
    headers.push((b"x-big", vec![b'v'; 40_000]));
    let block = loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
    let mut first = true;
    for (i, part) in block.chunks(MAX_FRAME).enumerate() {
        let last = (i + 1) * MAX_FRAME >= block.len();
        let kind = if first { HEADERS } else { CONTINUATION };
        frame(&mut input, kind, if last { END_HEADERS } else { 0 }, 1, part);
        first = false;
    }
    let out = through(&input, 4096).await;
    let (seen, _) = server_view(&out);
    assert_eq!(authority_of(&seen[0]).as_deref(), Some("127.0.0.1:2379"));
    assert!(seen[0].iter().any(|(n, v)| n == b"x-big" && v.len() == 40_000));
    let (len, _, _) = frame_header(&out[PREFACE.len()..]).expect("frame");
    assert!(len <= MAX_FRAME);
}

#[tokio::test]
async fn undecodable_blocks_are_left_for_hyper_to_refuse() {
    let mut input = PREFACE.to_vec();
    frame(&mut input, HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    frame(&mut input, 0x0, END_STREAM, 1, b"x");
    assert_eq!(through(&input, 3).await, input);
    // A truncated connection is handed on as it is, too.
    let cut = &client_stream(&[("http://127.0.0.1:2379", "/a")])[..PREFACE.len() + 20];
    assert_eq!(through(cut, 4096).await, cut);
}

#[test]
fn repairs() {
    assert_eq!(repair_authority(b"127.0.0.1:2379").as_deref(), Some("127.0.0.1:2379"));
    assert_eq!(repair_authority(b"http://127.0.0.1:2379").as_deref(), Some("127.0.0.1:2379"));
    assert_eq!(repair_authority(b"https://[::1]:2379/").as_deref(), Some("[::1]:2379"));
    assert_eq!(repair_authority(b"https://etcd.example:2379/x?y").as_deref(), Some("etcd.example:2379"));
    assert_eq!(repair_authority(b"#initially=[a;b]"), None);
    assert_eq!(repair_authority(b""), None);
}
