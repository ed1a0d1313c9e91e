use super::*;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn ours(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut out = Vec::new();
    d.decode(block, |n, v| out.push((n.to_vec(), v.to_vec())))?;
    Ok(out)
}

fn huffman(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    httlib_huffman::encode(s, &mut out).expect("encode");
    out
}

/// A string literal, Huffman-coded when `huff`.
fn literal(out: &mut Vec<u8>, s: &[u8], huff: bool) {
    let bytes = if huff { huffman(s) } else { s.to_vec() };
    let mut len = Vec::new();
    super::super::encode_int(&mut len, if huff { 0x80 } else { 0 }, 7, bytes.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&bytes);
}

#[test]
fn static_table_is_rfc_7541s() {
    let mut reference = loona_hpack::Decoder::new();
    let mut d = Decoder::new(4096);
    for i in 1..=61u8 {
        let block = [0x80 | i];
        assert_eq!(ours(&mut d, &block).unwrap(), reference.decode(&block).unwrap(), "index {i}");
    }
    assert_eq!(ours(&mut d, &[0x80 | 62]), Err(HpackError::BadIndex(62)));
    assert_eq!(ours(&mut d, &[0x80]), Err(HpackError::BadIndex(0)));
}

#[test]
fn huffman_round_trips_every_byte_and_the_rfc_example() {
    let all: Vec<u8> = (0..=255u8).collect();
    let mut out = Vec::new();
    huffman_decode(&huffman(&all), &mut out).unwrap();
    assert_eq!(out, all);
    // RFC 7541 C.4.1.
    let www = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
    out.clear();
    huffman_decode(&www, &mut out).unwrap();
    assert_eq!(out, b"www.example.com");
    // 'a' is 00011: padded with ones it is 'a', with zeros it is refused.
    out.clear();
    huffman_decode(&[0x1f], &mut out).unwrap();
    assert_eq!(out, b"a");
    assert_eq!(huffman_decode(&[0x18], &mut Vec::new()), Err(HpackError::BadHuffman));
    // More than 7 bits of padding, and EOS itself (30 ones), are refused.
    assert_eq!(huffman_decode(&[0x1f, 0xff], &mut Vec::new()), Err(HpackError::BadHuffman));
    assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()), Err(HpackError::BadHuffman));
}

#[test]
fn huffman_literals_enter_the_table() {
    let mut block = vec![0x40];
    literal(&mut block, b"x-name", true);
    literal(&mut block, b"some value", true);
    // Literal with an indexed name (:authority) and a Huffman value, never indexed.
    block.push(0x10 | 1);
    literal(&mut block, b"http://127.0.0.1:2379", true);
    block.push(0x80 | 62);
    let mut d = Decoder::new(4096);
    let got = ours(&mut d, &block).unwrap();
    let want: Fields = vec![
        (b"x-name".to_vec(), b"some value".to_vec()),
        (b":authority".to_vec(), b"http://127.0.0.1:2379".to_vec()),
        (b"x-name".to_vec(), b"some value".to_vec()),
    ];
    assert_eq!(got, want);
}

/// The same blocks through loona's encoder (dynamic table on, small table
/// so entries get evicted) decode the same with ours and loona's decoder.
#[test]
fn agrees_with_a_reference_decoder_across_evictions_and_size_updates() {
    let mut enc = loona_hpack::Encoder::new();
    enc.set_max_table_size(256);
    let mut reference = loona_hpack::Decoder::new();
    let mut d = Decoder::new(4096);
    let mut seed = 7u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":path".to_vec(), format!("/etcdserverpb.KV/M{}", next() % 7).into_bytes()),
        ];
        for _ in 0..next() % 6 {
            fields.push((format!("x-h{}", next() % 9).into_bytes(), format!("v{}", next() % 50).into_bytes()));
        }
        let mut block = Vec::new();
        if round % 50 == 49 {
            // A size update at the start of a block: 0x3f 0xe1 0x01 = 256.
            block.extend_from_slice(&[0x3f, 0xe1, 0x01]);
        }
        block.extend(enc.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))));
        let want = reference.decode(&block).expect("reference decodes");
        assert_eq!(ours(&mut d, &block).expect("ours decodes"), want, "round {round}");
        assert_eq!(want, fields);
    }
    assert!(d.size <= 256, "the table kept to its size: {}", d.size);
}

#[test]
fn size_updates_above_the_limit_are_refused() {
    let mut d = Decoder::new(4096);
    // 0x3f + 4065 = 4096 is allowed; 4097 is not.
    assert!(ours(&mut d, &[0x3f, 0xe1, 0x1f]).is_ok());
    assert_eq!(ours(&mut d, &[0x3f, 0xe2, 0x1f]), Err(HpackError::TableSizeOverLimit(4097)));
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 99u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        let block: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8).collect();
        let mut d = Decoder::new(4096);
        let _ = ours(&mut d, &block);
    }
    // Truncations of a valid block are errors, not panics.
    let mut block = vec![0x40];
    literal(&mut block, b"name", true);
    literal(&mut block, b"value", false);
    for cut in 0..block.len() {
        assert!(ours(&mut Decoder::new(4096), &block[..cut]).is_err() || cut == 0, "cut {cut}");
    }
}
