//! A Range answered through [`ReplySink`] encodes to the same bytes as the
//! `RangeResponse` [`execute_range`] builds, large (encoded as read) or small.

use api::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::pb::etcdserverpb::RangeRequest;
use prost::Message;

use super::*;
use crate::apply::test_harness::Harness;

/// 2,500 keys `k00000`.. with values of varied length, some written twice,
/// and one key outside their prefix.
fn fixture() -> Harness {
    let h = Harness::new();
    for i in 0..2500 {
        h.put(&format!("k{i:05}"), &"v".repeat(i % 300));
    }
    for i in (0..2500).step_by(7) {
        h.put(&format!("k{i:05}"), "again");
    }
    h.put("z", "outside");
    h
}

fn bytes(reply: RangeReply) -> (bool, Vec<u8>) {
    match reply {
        RangeReply::Built(r) => (false, r.encode_to_vec()),
        RangeReply::Encoded(e) => {
            let mut buf = Vec::with_capacity(e.encoded_len());
            let len = e.encoded_len();
            e.encode_into(&mut buf);
            assert_eq!(buf.len(), len, "encoded_len is exact");
            (true, buf)
        }
    }
}

fn req(limit: i64) -> RangeRequest {
    RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), limit, ..Default::default() }
}

#[test]
fn encoded_and_built_replies_are_the_same_bytes() {
    let h = fixture();
    let view = PinnedView::new(h.mvcc());
    let old = h.rev() - 300;
    let cases = [
        (req(0), true),
        (req(1500), true),
        (req(2500), true),
        (req(2501), true),
        (req(10), false),
        (req(999), false),
        (req(1000), true),
        (RangeRequest { keys_only: true, ..req(0) }, true),
        (RangeRequest { count_only: true, ..req(0) }, false),
        (RangeRequest { revision: old, ..req(0) }, true),
        (RangeRequest { key: b"k00100".to_vec(), ..req(0) }, true),
        (RangeRequest { key: b"k02000".to_vec(), ..req(0) }, false),
        (RangeRequest { key: b"k00005".to_vec(), range_end: vec![], ..req(0) }, false),
        (RangeRequest { key: b"nothing".to_vec(), range_end: vec![], ..req(0) }, false),
        // Sorted or filtered: built whole, as before.
        (RangeRequest { sort_order: SortOrder::Descend as i32, ..req(0) }, false),
        (RangeRequest { sort_target: SortTarget::Value as i32, ..req(0) }, false),
        (RangeRequest { min_mod_revision: 3, ..req(0) }, false),
    ];
    for (r, encoded) in cases {
        let want = execute_range(&view, &r).expect("built").encode_to_vec();
        let (was_encoded, got) = bytes(execute(&view, &r).expect("reply"));
        assert_eq!(was_encoded, encoded, "{r:?}");
        assert!(got == want, "{r:?}: {} bytes against {}", got.len(), want.len());
    }
}

#[test]
fn an_encoded_reply_decodes_to_every_key_with_more_and_count() {
    let h = fixture();
    let view = PinnedView::new(h.mvcc());
    let resp = execute(&view, &req(2000)).expect("reply").into_response();
    assert_eq!(resp.kvs.len(), 2000);
    assert!(resp.more);
    assert_eq!(resp.count, 2500);
    assert_eq!(resp.kvs[7].value, b"again");
    assert_eq!(resp.kvs[8].value, "v".repeat(8).as_bytes());
    assert!(resp.kvs.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(resp.header.expect("header").revision, h.rev());
}

#[test]
fn a_key_value_larger_than_a_chunk_gets_a_chunk_of_its_own() {
    let mut c = Chunks::default();
    c.push(&[1; 10]).unwrap();
    c.push(&vec![2; CHUNK_BYTES + 5]).unwrap();
    c.push(&[3; 10]).unwrap();
    c.push(&[4; 10]).unwrap();
    assert_eq!(c.len, CHUNK_BYTES + 35);
    let chunks: Vec<Vec<u8>> = c.into_iter().map(|m| m.as_slice().to_vec()).collect();
    let want = [vec![1; 10], vec![2; CHUNK_BYTES + 5], [vec![3; 10], vec![4; 10]].concat()];
    assert!(chunks == want, "{:?}", chunks.iter().map(Vec::len).collect::<Vec<_>>());
}
