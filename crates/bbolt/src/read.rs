//! [`BoltReader`]: walks the buckets of a bbolt file page by page (no
//! mmap), holding one page per tree level.
//!
//! Every offset and length read from the file is checked before use; a
//! page outside the file, a page larger than any bbolt writes, an element
//! pointing outside its page, a page reached twice (bbolt's "multiple
//! references": pages pointing back into a tree, or at another bucket's),
//! keys out of order, or a tree deeper than [`MAX_DEPTH`] is a
//! [`BoltError`], never a panic or a walk without end. A reader visits
//! each page once: its buckets are listed once, and each bucket walked
//! once.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::{
    BoltError, Meta, PageHeader, BUCKET_HEADER, BUCKET_LEAF_FLAG, ELEMENT, FLAG_BRANCH, FLAG_LEAF, FLAG_META, META_LEN,
    PAGE_HEADER,
};

/// Deeper trees than this are damage (bbolt's are a handful of levels).
const MAX_DEPTH: usize = 64;
const MIN_PAGE_SIZE: u64 = 512;
/// Largest page size a reader accepts (and the writer writes).
pub(crate) const MAX_PAGE_SIZE: u64 = 1 << 20;
/// Page sizes to look for the second meta at when the first is damaged
/// (bbolt's `getPageSizeFromSecondMeta` tries the same idea).
const PROBED_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// The most bytes one page and its overflow can hold: one element of the
/// largest key and value.
const MAX_PAGE_BYTES: u64 = (PAGE_HEADER + ELEMENT + crate::MAX_KEY_SIZE + crate::MAX_VALUE_SIZE) as u64;

/// What a walk hands each pair to; its error stops the walk.
pub type Visit<'a, E> = dyn FnMut(&[u8], &[u8]) -> Result<(), E> + 'a;

/// One element of a page: its 16 bytes, its key, its value (empty in a
/// branch).
struct Element<'p> {
    raw: &'p [u8],
    key: &'p [u8],
    value: &'p [u8],
}

/// Where a bucket's tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketRef {
    /// Its root page.
    Page(u64),
    /// An inline bucket: its one leaf page, stored in the root bucket.
    Inline(Vec<u8>),
}

/// An open bbolt file.
pub struct BoltReader {
    file: File,
    /// Bytes of the file that belong to the database (a snapshot's trailer
    /// follows them).
    data_len: u64,
    page_size: u64,
    meta: Meta,
    /// One bit per page: read already.
    visited: RefCell<Vec<u64>>,
}

impl BoltReader {
    /// Opens the database held in the first `data_len` bytes of `file`.
    pub fn open(file: File, data_len: u64) -> Result<BoltReader, BoltError> {
        let read_meta = |offset: u64| -> Result<Meta, String> {
            if offset + (PAGE_HEADER + META_LEN) as u64 > data_len {
                return Err("too short for a meta page".into());
            }
            let mut b = [0u8; PAGE_HEADER + META_LEN];
            file.read_exact_at(&mut b, offset).map_err(|e| e.to_string())?;
            if PageHeader::decode(&b).flags != FLAG_META {
                return Err("no meta page".into());
            }
            Meta::decode(&b[PAGE_HEADER..])
        };
        let first = read_meta(0);
        let second = match &first {
            Ok(m) => read_meta(u64::from(m.page_size)),
            Err(e) => PROBED_PAGE_SIZES
                .iter()
                .find_map(|&size| read_meta(size).ok().filter(|m| u64::from(m.page_size) == size))
                .ok_or_else(|| e.clone()),
        };
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(BoltError::NotBolt(e)),
        };
        let page_size = u64::from(meta.page_size);
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(BoltError::Corrupt(format!("page size {page_size}")));
        }
        if meta.pgid < 3 || meta.pgid.checked_mul(page_size).is_none_or(|end| end > data_len) {
            return Err(BoltError::Truncated(format!(
                "{data_len} bytes hold fewer than the {} pages of {page_size} bytes its meta counts",
                meta.pgid
            )));
        }
        let visited = RefCell::new(vec![0u64; meta.pgid.div_ceil(64) as usize]);
        Ok(BoltReader { file, data_len, page_size, meta, visited })
    }

    pub fn page_size(&self) -> usize {
        self.page_size as usize
    }

    /// Pages in use (the meta's high-water mark).
    pub fn pages(&self) -> u64 {
        self.meta.pgid
    }

    /// The buckets at the top level, in name order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, BucketRef)>, BoltError> {
        let mut out = Vec::new();
        let mut last = None;
        self.walk(self.meta.root, 0, true, &mut last, &mut |key, value| {
            if value.len() < BUCKET_HEADER {
                return Err(BoltError::Corrupt(format!("bucket {:?}: a value of {} bytes", lossy(key), value.len())));
            }
            let root = crate::u64_at(value, 0);
            let bucket =
                if root == 0 { BucketRef::Inline(value[BUCKET_HEADER..].to_vec()) } else { BucketRef::Page(root) };
            out.push((key.to_vec(), bucket));
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands every pair of `bucket` to `visit`, in key order.
    pub fn for_each<E: From<BoltError>>(&self, bucket: &BucketRef, visit: &mut Visit<'_, E>) -> Result<(), E> {
        let mut last = None;
        match bucket {
            BucketRef::Page(root) => self.walk(*root, 0, false, &mut last, visit),
            BucketRef::Inline(page) => {
                if page.len() < PAGE_HEADER || PageHeader::decode(page).flags != FLAG_LEAF {
                    return Err(BoltError::Corrupt("an inline bucket that is not a leaf page".into()).into());
                }
                visit_leaf(page, false, &mut last, visit)
            }
        }
    }

    fn walk<E: From<BoltError>>(
        &self,
        pgid: u64,
        depth: usize,
        buckets: bool,
        last: &mut Option<Vec<u8>>,
        visit: &mut Visit<'_, E>,
    ) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(BoltError::Corrupt(format!("a tree deeper than {MAX_DEPTH} levels")).into());
        }
        let page = self.read_page(pgid)?;
        match PageHeader::decode(&page).flags {
            FLAG_LEAF => visit_leaf(&page, buckets, last, visit),
            FLAG_BRANCH => {
                let count = PageHeader::decode(&page).count as usize;
                for i in 0..count {
                    let e = element(&page, i, false)?;
                    let child = crate::u64_at(e.raw, 8);
                    if e.key.is_empty() {
                        return Err(BoltError::Corrupt(format!("page {pgid}: a branch element without key")).into());
                    }
                    self.walk(child, depth + 1, buckets, last, visit)?;
                }
                Ok(())
            }
            other => Err(BoltError::Corrupt(format!("page {pgid}: flags {other:#x} where a tree page belongs")).into()),
        }
    }

    /// Page `pgid` with its overflow pages.
    fn read_page(&self, pgid: u64) -> Result<Vec<u8>, BoltError> {
        if pgid < 2 || pgid >= self.meta.pgid {
            return Err(BoltError::Corrupt(format!("a reference to page {pgid} of {}", self.meta.pgid)));
        }
        {
            let mut visited = self.visited.borrow_mut();
            let (word, bit) = ((pgid / 64) as usize, 1u64 << (pgid % 64));
            if visited[word] & bit != 0 {
                return Err(BoltError::Corrupt(format!("page {pgid} is referenced twice")));
            }
            visited[word] |= bit;
        }
        let offset = pgid * self.page_size;
        let mut header = [0u8; PAGE_HEADER];
        self.file.read_exact_at(&mut header, offset)?;
        let h = PageHeader::decode(&header);
        if h.id != pgid {
            return Err(BoltError::Corrupt(format!("page {pgid} says it is page {}", h.id)));
        }
        let pages = u64::from(h.overflow) + 1;
        if pages * self.page_size > MAX_PAGE_BYTES.next_multiple_of(self.page_size) {
            return Err(BoltError::Corrupt(format!("page {pgid} spans {pages} pages, more than any bbolt writes")));
        }
        if pgid + pages > self.meta.pgid || offset + pages * self.page_size > self.data_len {
            return Err(BoltError::Corrupt(format!("page {pgid} overflows past the end ({} pages)", pages)));
        }
        let mut page = vec![0u8; (pages * self.page_size) as usize];
        self.file.read_exact_at(&mut page, offset)?;
        Ok(page)
    }
}

/// Visits a leaf page's pairs, checking order against `last`.
fn visit_leaf<E: From<BoltError>>(
    page: &[u8],
    buckets: bool,
    last: &mut Option<Vec<u8>>,
    visit: &mut Visit<'_, E>,
) -> Result<(), E> {
    let count = PageHeader::decode(page).count as usize;
    for i in 0..count {
        let Element { raw, key, value } = element(page, i, true)?;
        let is_bucket = crate::u32_at(raw, 0) & BUCKET_LEAF_FLAG != 0;
        if is_bucket != buckets {
            let what = if buckets { "a pair among the buckets" } else { "a nested bucket (etcd has none)" };
            return Err(BoltError::Corrupt(format!("{what}: {:?}", lossy(key))).into());
        }
        if last.as_deref().is_some_and(|l| l >= key) {
            return Err(BoltError::Corrupt(format!("keys out of order at {:?}", lossy(key))).into());
        }
        *last = Some(key.to_vec());
        visit(key, value)?;
    }
    Ok(())
}

/// Element `i` of `page`.
fn element(page: &[u8], i: usize, leaf: bool) -> Result<Element<'_>, BoltError> {
    let at = PAGE_HEADER + ELEMENT * i;
    let elem = page.get(at..at + ELEMENT).ok_or_else(|| BoltError::Corrupt("element count past the page".into()))?;
    let (pos, ksize, vsize) = if leaf {
        (crate::u32_at(elem, 4), crate::u32_at(elem, 8), crate::u32_at(elem, 12))
    } else {
        (crate::u32_at(elem, 0), crate::u32_at(elem, 4), 0)
    };
    let start = at + pos as usize;
    let key_end = start + ksize as usize;
    let end = key_end + vsize as usize;
    if end > page.len() {
        return Err(BoltError::Corrupt("an element's data past its page".into()));
    }
    Ok(Element { raw: elem, key: &page[start..key_end], value: &page[key_end..end] })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
