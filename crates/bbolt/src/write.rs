//! [`BoltWriter`]: bulk-loads buckets of sorted pairs into a new bbolt file.
//!
//! Each bucket is a B+tree built bottom-up as its pairs arrive: one page
//! under construction per level; a full page is written at the next free
//! page id and its first key goes up one level. Memory is one page per
//! level whatever the bucket's size. The metas (pages 0 and 1) are written
//! last, so a file whose writer stopped half-way has no valid meta and no
//! reader takes it for a database.

use std::io::{Seek, SeekFrom, Write};

use crate::{
    BoltError, Meta, PageHeader, BUCKET_HEADER, BUCKET_LEAF_FLAG, ELEMENT, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF,
    FLAG_META, MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_HEADER,
};

/// Writes a bbolt file: [`BoltWriter::bucket`] once per bucket (any order,
/// no name twice), [`BoltWriter::put`] its pairs in ascending key order,
/// then [`BoltWriter::finish`].
pub struct BoltWriter<W: Write + Seek> {
    out: W,
    page_size: usize,
    next_pgid: u64,
    /// Finished buckets: name, root page.
    buckets: Vec<(Vec<u8>, u64)>,
    current: Option<(Vec<u8>, Tree)>,
    page: Vec<u8>,
}

impl<W: Write + Seek> BoltWriter<W> {
    /// Starts a file at `out`'s current position 0 (pages 0 and 1 are left
    /// for the metas).
    pub fn new(mut out: W, page_size: usize) -> Result<Self, BoltError> {
        if !page_size.is_power_of_two() || page_size < 1024 || page_size as u64 > crate::read::MAX_PAGE_SIZE {
            return Err(BoltError::Invalid(format!("page size {page_size}")));
        }
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&vec![0; 2 * page_size])?;
        Ok(BoltWriter { out, page_size, next_pgid: 2, buckets: Vec::new(), current: None, page: Vec::new() })
    }

    /// Ends the current bucket, if any, and starts bucket `name`.
    pub fn bucket(&mut self, name: &[u8]) -> Result<(), BoltError> {
        self.end_bucket()?;
        check_key(name)?;
        if self.buckets.iter().any(|(n, _)| n == name) {
            return Err(BoltError::Invalid(format!("bucket {:?} twice", String::from_utf8_lossy(name))));
        }
        self.current = Some((name.to_vec(), Tree::new(0)));
        Ok(())
    }

    /// Adds a pair to the current bucket; keys must ascend strictly.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        let (name, mut tree) =
            self.current.take().ok_or_else(|| BoltError::Invalid("a pair before any bucket".into()))?;
        let result = self.put_in(&mut tree, key, value);
        self.current = Some((name, tree));
        result
    }

    fn put_in(&mut self, tree: &mut Tree, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(BoltError::Invalid(format!("a value of {} bytes", value.len())));
        }
        if tree.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(BoltError::Invalid("keys are not strictly ascending".into()));
        }
        tree.last_key = Some(key.to_vec());
        self.add(tree, 0, key.to_vec(), value.to_vec())
    }

    fn end_bucket(&mut self) -> Result<(), BoltError> {
        if let Some((name, mut tree)) = self.current.take() {
            let root = self.finish_tree(&mut tree)?;
            self.buckets.push((name, root));
        }
        Ok(())
    }

    /// Writes the root bucket, the freelist and the metas; returns the
    /// output and the file's length.
    pub fn finish(mut self) -> Result<(W, u64), BoltError> {
        self.end_bucket()?;
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let mut root = Tree::new(BUCKET_LEAF_FLAG);
        for (name, pgid) in buckets {
            let mut header = Vec::with_capacity(BUCKET_HEADER);
            header.extend_from_slice(&pgid.to_le_bytes());
            header.extend_from_slice(&0u64.to_le_bytes());
            self.add(&mut root, 0, name, header)?;
        }
        let root_pgid = self.finish_tree(&mut root)?;
        let freelist = self.write_page(FLAG_FREELIST, &[], 0)?;
        let pages = self.next_pgid;
        for (pgid, txid) in [(0u64, 0u64), (1, 1)] {
            let meta = Meta {
                page_size: self.page_size as u32,
                flags: 0,
                root: root_pgid,
                sequence: 0,
                freelist,
                pgid: pages,
                txid,
            };
            let mut page = Vec::with_capacity(PAGE_HEADER + 64);
            PageHeader { id: pgid, flags: FLAG_META, count: 0, overflow: 0 }.encode(&mut page);
            page.extend_from_slice(&meta.encode());
            self.out.seek(SeekFrom::Start(pgid * self.page_size as u64))?;
            self.out.write_all(&page)?;
        }
        self.out.seek(SeekFrom::Start(pages * self.page_size as u64))?;
        self.out.flush()?;
        Ok((self.out, pages * self.page_size as u64))
    }

    /// Adds an element at `level` of `tree`, writing out the page there
    /// first if the element does not fit in it.
    fn add(&mut self, tree: &mut Tree, level: usize, key: Vec<u8>, payload: Vec<u8>) -> Result<(), BoltError> {
        if tree.levels.len() == level {
            tree.levels.push(Level::default());
        }
        let size = ELEMENT + key.len() + if level == 0 { payload.len() } else { 0 };
        let lv = &tree.levels[level];
        if !lv.items.is_empty() && lv.bytes + size > self.page_size {
            self.flush(tree, level)?;
        }
        let lv = &mut tree.levels[level];
        lv.bytes += size;
        lv.items.push((key, payload));
        Ok(())
    }

    /// Writes the page under construction at `level` and adds it to the
    /// level above.
    fn flush(&mut self, tree: &mut Tree, level: usize) -> Result<(), BoltError> {
        let items = std::mem::take(&mut tree.levels[level].items);
        tree.levels[level].bytes = PAGE_HEADER;
        tree.levels[level].pages_written += 1;
        let pgid = self.write_level_page(tree.leaf_flags, level, &items)?;
        let first = items.into_iter().next().expect("a flushed page has items").0;
        self.add(tree, level + 1, first, pgid.to_le_bytes().to_vec())
    }

    /// Writes what is left of `tree` and returns its root page.
    fn finish_tree(&mut self, tree: &mut Tree) -> Result<u64, BoltError> {
        let mut level = 0;
        loop {
            if tree.levels.len() == level {
                tree.levels.push(Level::default());
            }
            if tree.levels[level].pages_written == 0 {
                // The only page of its level: the root.
                let items = std::mem::take(&mut tree.levels[level].items);
                return self.write_level_page(tree.leaf_flags, level, &items);
            }
            if !tree.levels[level].items.is_empty() {
                self.flush(tree, level)?;
            }
            level += 1;
        }
    }

    fn write_level_page(
        &mut self,
        leaf_flags: u32,
        level: usize,
        items: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, BoltError> {
        if level == 0 {
            self.write_page(FLAG_LEAF, items, leaf_flags)
        } else {
            self.write_page(FLAG_BRANCH, items, 0)
        }
    }

    /// Writes one page (and its overflow) at the next free page id.
    fn write_page(&mut self, flags: u16, items: &[(Vec<u8>, Vec<u8>)], leaf_flags: u32) -> Result<u64, BoltError> {
        let count = u16::try_from(items.len()).map_err(|_| BoltError::Invalid("too many elements in a page".into()))?;
        let pgid = self.next_pgid;
        let data_len: usize = items.iter().map(|(k, v)| k.len() + if flags == FLAG_LEAF { v.len() } else { 0 }).sum();
        let len = PAGE_HEADER + ELEMENT * items.len() + data_len;
        let pages = len.div_ceil(self.page_size).max(1);
        let overflow = u32::try_from(pages - 1).map_err(|_| BoltError::Invalid("a page too large".into()))?;
        let mut page = std::mem::take(&mut self.page);
        page.clear();
        PageHeader { id: pgid, flags, count, overflow }.encode(&mut page);
        let mut data_at = PAGE_HEADER + ELEMENT * items.len();
        for (i, (key, value)) in items.iter().enumerate() {
            // `pos` counts from the element's own offset.
            let pos = (data_at - (PAGE_HEADER + ELEMENT * i)) as u32;
            if flags == FLAG_LEAF {
                page.extend_from_slice(&leaf_flags.to_le_bytes());
                page.extend_from_slice(&pos.to_le_bytes());
                page.extend_from_slice(&(key.len() as u32).to_le_bytes());
                page.extend_from_slice(&(value.len() as u32).to_le_bytes());
                data_at += key.len() + value.len();
            } else {
                page.extend_from_slice(&pos.to_le_bytes());
                page.extend_from_slice(&(key.len() as u32).to_le_bytes());
                page.extend_from_slice(value);
                data_at += key.len();
            }
        }
        for (key, value) in items {
            page.extend_from_slice(key);
            if flags == FLAG_LEAF {
                page.extend_from_slice(value);
            }
        }
        page.resize(pages * self.page_size, 0);
        self.out.write_all(&page)?;
        self.page = page;
        self.next_pgid += pages as u64;
        Ok(pgid)
    }
}

fn check_key(key: &[u8]) -> Result<(), BoltError> {
    if key.is_empty() || key.len() > MAX_KEY_SIZE {
        return Err(BoltError::Invalid(format!("a key of {} bytes", key.len())));
    }
    Ok(())
}

/// One bucket's tree under construction.
struct Tree {
    /// Flags of its leaf elements (the root bucket's are buckets).
    leaf_flags: u32,
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
}

impl Tree {
    fn new(leaf_flags: u32) -> Tree {
        Tree { leaf_flags, levels: Vec::new(), last_key: None }
    }
}

/// The page under construction at one level: (key, value) at the leaves,
/// (first key of the child, child page id as u64 LE) above.
struct Level {
    items: Vec<(Vec<u8>, Vec<u8>)>,
    /// Size of the page if written now.
    bytes: usize,
    pages_written: u64,
}

impl Default for Level {
    fn default() -> Self {
        Level { items: Vec::new(), bytes: PAGE_HEADER, pages_written: 0 }
    }
}
