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
        check_pages(&std::fs::read(&path).unwrap(), page_size);
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

/// bbolt's `tx.Check` page accounting, on the raw bytes: from the meta,
/// every page below its high-water mark is the meta pages, the freelist or
/// part of exactly one tree (with its overflow), and every branch key is its
/// child's first key.
fn check_pages(bytes: &[u8], page_size: usize) {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let meta = 16;
    let (root, freelist, pgid) = (u64_at(meta + 16), u64_at(meta + 32), u64_at(meta + 40));
    assert_eq!(bytes.len() as u64, pgid * page_size as u64, "the file is its pages");
    let mut seen = vec![0u32; pgid as usize];
    let mut mark = |id: u64| {
        let off = id as usize * page_size;
        let overflow = u32_at(off + 12) as u64;
        for p in id..=id + overflow {
            seen[p as usize] += 1;
        }
    };
    mark(0);
    mark(1);
    mark(freelist);
    // (page, is root bucket tree); returns the page's first key.
    fn walk(
        bytes: &[u8],
        ps: usize,
        id: u64,
        buckets: bool,
        mark: &mut dyn FnMut(u64),
        roots: &mut Vec<u64>,
    ) -> Vec<u8> {
        let off = id as usize * ps;
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(u64_at(off), id, "page id");
        mark(id);
        let (flags, count) = (u16_at(off + 8), u16_at(off + 10) as usize);
        let mut first = None;
        for i in 0..count {
            let e = off + 16 + 16 * i;
            if flags == crate::FLAG_BRANCH {
                let key = &bytes[e + u32_at(e) as usize..][..u32_at(e + 4) as usize];
                let child_first = walk(bytes, ps, u64_at(e + 8), buckets, mark, roots);
                assert_eq!(child_first, key, "a branch key is its child's first key");
                first.get_or_insert(key.to_vec());
            } else {
                assert_eq!(flags, crate::FLAG_LEAF);
                let (pos, ks, vs) = (u32_at(e + 4) as usize, u32_at(e + 8) as usize, u32_at(e + 12) as usize);
                let key = &bytes[e + pos..][..ks];
                if buckets {
                    roots.push(u64_at(e + pos + ks));
                    assert_eq!(vs, 16);
                }
                first.get_or_insert(key.to_vec());
            }
        }
        first.unwrap_or_default()
    }
    let mut roots = Vec::new();
    walk(bytes, page_size, root, true, &mut mark, &mut roots);
    for r in roots {
        walk(bytes, page_size, r, false, &mut mark, &mut Vec::new());
    }
    for (id, n) in seen.iter().enumerate() {
        assert_eq!(*n, 1, "page {id} is reached {n} times");
    }
}

#[test]
fn every_page_is_reached_once_and_branch_keys_are_first_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut buckets = Buckets::new();
    buckets.insert(
        b"key".to_vec(),
        (0..20_000u32).map(|i| (i.to_be_bytes().to_vec(), vec![3; (i % 300) as usize])).collect(),
    );
    buckets.insert(
        b"big".to_vec(),
        [(b"a".to_vec(), vec![1; 50_000]), (b"b".to_vec(), vec![2; 9000])].into_iter().collect(),
    );
    buckets.insert(b"empty".to_vec(), BTreeMap::new());
    let (path, _) = write(&dir, &buckets, DEFAULT_PAGE_SIZE);
    check_pages(&std::fs::read(&path).unwrap(), DEFAULT_PAGE_SIZE);
}

/// A file whose branch pages all point at the same page (a walk of 255^n
/// reads) is refused at the second visit.
#[test]
fn a_page_reached_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut buckets = Buckets::new();
    buckets.insert(b"key".to_vec(), (0..3000u32).map(|i| (i.to_be_bytes().to_vec(), vec![3; 40])).collect());
    let (path, len) = write(&dir, &buckets, DEFAULT_PAGE_SIZE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Find a branch page and point its second child at its first.
    let ps = DEFAULT_PAGE_SIZE;
    let branch = (2..bytes.len() / ps)
        .find(|&p| u16::from_le_bytes([bytes[p * ps + 8], bytes[p * ps + 9]]) == crate::FLAG_BRANCH);
    let off = branch.expect("a tree of 3000 pairs has a branch page") * ps;
    let first_child: [u8; 8] = bytes[off + 16 + 8..off + 16 + 16].try_into().unwrap();
    bytes[off + 32 + 8..off + 32 + 16].copy_from_slice(&first_child);
    std::fs::write(&path, &bytes).unwrap();
    let err = read_all(&path, len).unwrap_err().to_string();
    assert!(err.contains("referenced twice"), "{err}");
}
