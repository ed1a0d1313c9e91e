use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};

use proptest::prelude::*;

use crate::{BoltError, BoltReader, BoltWriter, BucketRef, DEFAULT_PAGE_SIZE};

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn write(dir: &tempfile::TempDir, buckets: &Buckets, page_size: usize) -> (std::path::PathBuf, u64) {
    let path = dir.path().join("db");
    let mut w = BoltWriter::new(BufWriter::new(File::create(&path).unwrap()), page_size).unwrap();
    // Buckets in reverse name order: the writer sorts the root itself.
    for (name, pairs) in buckets.iter().rev() {
        w.bucket(name).unwrap();
        for (k, v) in pairs {
            w.put(k, v).unwrap();
        }
    }
    let (mut out, len) = w.finish().unwrap();
    out.flush().unwrap();
    (path, len)
}

fn read_all(path: &std::path::Path, len: u64) -> Result<Buckets, BoltError> {
    let r = BoltReader::open(File::open(path)?, len)?;
    let mut out = Buckets::new();
    for (name, bucket) in r.buckets()? {
        let mut pairs = BTreeMap::new();
        r.for_each::<BoltError>(&bucket, &mut |k, v| {
            pairs.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        out.insert(name, pairs);
    }
    Ok(out)
}

#[test]
fn many_pairs_and_large_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut buckets = Buckets::new();
    // Enough pairs for three levels of branch pages.
    let key: BTreeMap<_, _> = (0..60_000u64)
        .map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").repeat((i % 7) as usize).into_bytes()))
        .collect();
    buckets.insert(b"key".to_vec(), key);
    let big: BTreeMap<_, _> =
        [(b"a".to_vec(), vec![7u8; 100 << 10]), (b"b".to_vec(), Vec::new()), (b"c".to_vec(), vec![1; 5000])]
            .into_iter()
            .collect();
    buckets.insert(b"big".to_vec(), big);
    buckets.insert(b"empty".to_vec(), BTreeMap::new());
    let (path, len) = write(&dir, &buckets, DEFAULT_PAGE_SIZE);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert_eq!(len % DEFAULT_PAGE_SIZE as u64, 0);
    assert_eq!(read_all(&path, len).unwrap(), buckets);
}

#[test]
fn refuses_what_is_not_a_whole_bbolt_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut buckets = Buckets::new();
    buckets.insert(b"key".to_vec(), (0..2000u32).map(|i| (i.to_be_bytes().to_vec(), vec![1; 100])).collect());
    let (path, len) = write(&dir, &buckets, DEFAULT_PAGE_SIZE);
    let bytes = std::fs::read(&path).unwrap();
    let at = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        read_all(&p, data.len() as u64)
    };
    assert!(matches!(at("text", b"hello, this is not a database at all"), Err(BoltError::NotBolt(_))));
    assert!(matches!(at("zeros", &vec![0; 3 * 4096]), Err(BoltError::NotBolt(_))));
    assert!(matches!(at("half", &bytes[..bytes.len() / 2]), Err(BoltError::Truncated(_))));
    // One meta damaged: the other one serves.
    let mut one_meta = bytes.clone();
    one_meta[20] ^= 0xff;
    assert_eq!(at("one-meta", &one_meta).unwrap(), buckets);
    let mut both = one_meta.clone();
    both[4096 + 20] ^= 0xff;
    assert!(matches!(at("both-metas", &both), Err(BoltError::NotBolt(_))));
    // A data page's header damaged.
    let mut page = bytes.clone();
    page[3 * 4096] ^= 0x01;
    assert!(matches!(at("page-id", &page), Err(BoltError::Corrupt(_))), "{:?}", at("page-id", &page));
    assert_eq!(read_all(&path, len).unwrap(), buckets);
}

#[test]
fn the_writer_refuses_what_bbolt_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = BoltWriter::new(File::create(dir.path().join("db")).unwrap(), DEFAULT_PAGE_SIZE).unwrap();
    assert!(matches!(w.put(b"a", b"1"), Err(BoltError::Invalid(_))), "a pair before a bucket");
    w.bucket(b"x").unwrap();
    w.put(b"b", b"1").unwrap();
    assert!(matches!(w.put(b"b", b"2"), Err(BoltError::Invalid(_))), "the same key twice");
    assert!(matches!(w.put(b"a", b"2"), Err(BoltError::Invalid(_))), "keys going down");
    assert!(matches!(w.put(b"", b"2"), Err(BoltError::Invalid(_))), "an empty key");
    assert!(matches!(w.bucket(b"x"), Err(BoltError::Invalid(_))), "a bucket twice");
}

#[test]
fn reads_inline_buckets() {
    // An inline bucket as bbolt writes small buckets: header with root 0,
    // then a leaf page holding one pair.
    let mut inline = vec![0u8; 16];
    let mut page = Vec::new();
    crate::PageHeader { id: 0, flags: crate::FLAG_LEAF, count: 1, overflow: 0 }.encode(&mut page);
    page.extend_from_slice(&0u32.to_le_bytes());
    page.extend_from_slice(&16u32.to_le_bytes());
    page.extend_from_slice(&1u32.to_le_bytes());
    page.extend_from_slice(&2u32.to_le_bytes());
    page.extend_from_slice(b"kvv");
    inline.extend_from_slice(&page);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = BoltWriter::new(File::create(&path).unwrap(), DEFAULT_PAGE_SIZE).unwrap();
    w.bucket(b"plain").unwrap();
    w.put(b"k", b"v").unwrap();
    let (_, len) = w.finish().unwrap();
    let r = BoltReader::open(File::open(&path).unwrap(), len).unwrap();
    let mut seen = Vec::new();
    r.for_each::<BoltError>(&BucketRef::Inline(page), &mut |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [(b"k".to_vec(), b"vv".to_vec())]);
    assert!(r.for_each::<BoltError>(&BucketRef::Inline(vec![1, 2, 3]), &mut |_, _| Ok(())).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_sorted_buckets_round_trip(
        buckets in prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 1..12),
            prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 1..300),
                prop::collection::vec(any::<u8>(), 0..6000),
                0..60,
            ),
            0..5,
        ),
        page_size in prop::sample::select(vec![1024usize, 4096, 16384]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (path, len) = write(&dir, &buckets, page_size);
        prop_assert_eq!(read_all(&path, len).unwrap(), buckets);
    }

    /// Damage anywhere gives an error or some data, never a panic or a hang.
    #[test]
    fn damage_never_panics(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut buckets = Buckets::new();
        buckets.insert(b"key".to_vec(), (0..500u32).map(|i| (i.to_be_bytes().to_vec(), vec![2; 40])).collect());
        buckets.insert(b"meta".to_vec(), [(b"a".to_vec(), vec![0; 9000])].into_iter().collect());
        let (path, _) = write(&dir, &buckets, 1024);
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x | 1;
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_all(&path, bytes.len() as u64);
    }
}
