//! Power-loss simulation for tests (compiled only under `cfg(test)`).
//!
//! A [`Session`] watches one directory tree while a test drives the WAL or the
//! log store on it. Every fsync, rename and unlink of the crate goes through
//! `fsutil`, which calls the hooks below; the session keeps a *durability
//! model* of the tree and, just before each of those calls, a [`Point`]: the
//! model plus a copy of every file as the process sees it. After the run,
//! [`Recording::image`] writes what a disk could hold after a power loss at
//! any point, in one of several [`Variant`]s, for the test to reopen and check.
//!
//! What is modelled:
//! - File contents survive as of the file's last fsync/fdatasync. Bytes
//!   written after it form the *unsynced tail* (from the first byte that
//!   differs from the synced content to the end of either version), split on
//!   512-byte sector boundaries. Each variant says what became of it: kept
//!   whole (a process crash), lost whole, a prefix kept (cut at any byte),
//!   sectors kept or lost independently (out of order), lost sectors read as
//!   zeros, or the last sector that made it holding garbage.
//! - Directory entries survive as of the directory's last fsync. An entry
//!   created, renamed or removed since may or may not be there (each one
//!   independently in the random variants); a rename is atomic (the name
//!   holds the old file or the new one, never neither); a new directory that
//!   is not durable in its parent takes its whole subtree with it.
//! - The root directory of the session itself is durable, and so is
//!   everything already under it when the session starts.
//!
//! What is not modelled (documented limits):
//! - Bytes before the first changed byte of a file, i.e. data that was
//!   fsynced, are never damaged: sector writes are atomic for synced data and
//!   media do not rot. Corruption of synced data has its own tests.
//! - Garbage is produced only as the last sector of a tail that made it to
//!   disk, never followed by later sectors that made it (the WAL repairs the
//!   former, rule 3 in `wal/segment.rs`). A power loss leaves unwritten
//!   sectors as zeros on the preallocated (fallocate'd, so "unwritten"
//!   extents) WAL segments; garbage followed by valid records cannot be told
//!   from a bit flip in synced data, which the WAL reports as corruption by
//!   design (`wal::power_loss::garbage_followed_by_later_records_is_corruption`).
//! - Crashes inside a single write(2) are covered only through the tail
//!   variants (a write is the unit the process sees; the variants cut it at
//!   any byte or sector).
//! - Metadata other than names and sizes (permissions, times), and the
//!   `LOCK` file's lock, which a reopen takes afresh.
//! - Operations of other threads: the hooks are thread-local.
//!
//! Recordings and images go to tmpfs when there is one ([`scratch_dir`]):
//! the model, not the disk under the test, decides what survives.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The unit in which a torn write keeps or loses data.
pub(crate) const SECTOR: usize = 512;

thread_local! {
    static ACTIVE: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

type FileId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DEntry {
    File(FileId),
    Dir,
}

/// What survives a power loss for certain.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// File contents as of each file's last fsync.
    files: HashMap<FileId, Rc<[u8]>>,
    /// Entries of each directory (relative path) as of its last fsync.
    dirs: HashMap<PathBuf, BTreeMap<OsString, DEntry>>,
}

#[derive(Debug, Clone)]
enum Node {
    File { id: FileId, bytes: Rc<[u8]> },
    Dir,
}

/// A moment just before an fsync, rename or unlink (or an explicit
/// [`Session::checkpoint`]): what is durable, and what the process sees.
#[derive(Debug)]
pub(crate) struct Point {
    /// The operation about to run (or the checkpoint's label).
    pub(crate) label: String,
    durable: Durable,
    actual: BTreeMap<PathBuf, BTreeMap<OsString, Node>>,
}

struct Recorder {
    root: PathBuf,
    /// Current relative path of every file the model has seen.
    ids: HashMap<PathBuf, FileId>,
    next_id: FileId,
    durable: Durable,
    points: Vec<Point>,
}

impl Recorder {
    fn rel(&self, path: &Path) -> Option<PathBuf> {
        path.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }

    fn id_of(&mut self, rel: &Path) -> FileId {
        if let Some(id) = self.ids.get(rel) {
            return *id;
        }
        self.next_id += 1;
        self.ids.insert(rel.to_path_buf(), self.next_id);
        self.next_id
    }

    fn entries_of(&mut self, rel_dir: &Path) -> BTreeMap<OsString, DEntry> {
        let mut out = BTreeMap::new();
        let rd = fs::read_dir(self.root.join(rel_dir)).expect("crashsim: listing a watched directory");
        for ent in rd {
            let ent = ent.expect("crashsim: reading a directory entry");
            let kind = ent.file_type().expect("crashsim: entry type");
            let rel = rel_dir.join(ent.file_name());
            let e = if kind.is_dir() { DEntry::Dir } else { DEntry::File(self.id_of(&rel)) };
            out.insert(ent.file_name(), e);
        }
        out
    }

    fn capture(&mut self, label: String) {
        let mut actual = BTreeMap::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel_dir) = todo.pop() {
            let mut nodes = BTreeMap::new();
            for (name, e) in self.entries_of(&rel_dir) {
                let rel = rel_dir.join(&name);
                let node = match e {
                    DEntry::Dir => {
                        todo.push(rel);
                        Node::Dir
                    }
                    DEntry::File(id) => match fs::read(self.root.join(&rel)) {
                        Ok(bytes) => Node::File { id, bytes: bytes.into() },
                        Err(_) => continue, // removed meanwhile
                    },
                };
                nodes.insert(name, node);
            }
            actual.insert(rel_dir, nodes);
        }
        self.points.push(Point { label, durable: self.durable.clone(), actual });
    }

    fn all_durable(&mut self) {
        let mut todo = vec![PathBuf::new()];
        while let Some(rel_dir) = todo.pop() {
            let entries = self.entries_of(&rel_dir);
            for (name, e) in &entries {
                let rel = rel_dir.join(name);
                match e {
                    DEntry::Dir => todo.push(rel),
                    DEntry::File(id) => {
                        let bytes = fs::read(self.root.join(&rel)).expect("crashsim: reading a watched file");
                        self.durable.files.insert(*id, bytes.into());
                    }
                }
            }
            self.durable.dirs.insert(rel_dir, entries);
        }
    }
}

fn with_recorder(path: &Path, f: impl FnOnce(&mut Recorder, PathBuf)) {
    ACTIVE.with(|a| {
        if let Some(r) = a.borrow_mut().as_mut() {
            if let Some(rel) = r.rel(path) {
                f(r, rel);
            }
        }
    });
}

/// Hook: `op` on `path` is about to run.
pub(crate) fn before(op: &str, path: &Path) {
    with_recorder(path, |r, rel| r.capture(format!("{op} {}", rel.display())));
}

/// Hook: the file at `path` was fsynced.
pub(crate) fn file_synced(path: &Path) {
    with_recorder(path, |r, rel| {
        let id = r.id_of(&rel);
        let bytes = fs::read(path).expect("crashsim: reading a file just synced");
        r.durable.files.insert(id, bytes.into());
    });
}

/// Hook: the directory `dir` was fsynced.
pub(crate) fn dir_synced(dir: &Path) {
    with_recorder(dir, |r, rel| {
        let entries = r.entries_of(&rel);
        r.durable.dirs.insert(rel, entries);
    });
}

/// Hook: `from` was renamed to `to` (the file keeps its identity).
pub(crate) fn renamed(from: &Path, to: &Path) {
    with_recorder(from, |r, rel_from| {
        let id = r.ids.remove(&rel_from);
        if let Some(rel_to) = r.rel(to) {
            match id {
                Some(id) => {
                    r.ids.insert(rel_to, id);
                }
                None => {
                    r.ids.remove(&rel_to);
                }
            }
        }
    });
}

/// Hook: `path` was unlinked.
pub(crate) fn removed(path: &Path) {
    with_recorder(path, |r, rel| {
        r.ids.remove(&rel);
    });
}

/// Records durability events under a root directory on this thread until
/// [`Session::finish`] (or drop).
pub(crate) struct Session {
    _not_send: std::marker::PhantomData<Rc<()>>,
}

impl Session {
    /// Starts watching `root`; everything already under it counts as durable.
    pub(crate) fn start(root: &Path) -> Session {
        let mut r = Recorder {
            root: root.to_path_buf(),
            ids: HashMap::new(),
            next_id: 0,
            durable: Durable::default(),
            points: vec![],
        };
        r.all_durable();
        ACTIVE.with(|a| {
            let mut a = a.borrow_mut();
            assert!(a.is_none(), "crashsim: a session is already active on this thread");
            *a = Some(r);
        });
        Session { _not_send: std::marker::PhantomData }
    }

    /// Adds a crash point now (e.g. after an operation returned).
    pub(crate) fn checkpoint(&self, label: &str) {
        ACTIVE.with(|a| {
            if let Some(r) = a.borrow_mut().as_mut() {
                r.capture(label.to_string());
            }
        });
    }

    /// Crash points recorded so far.
    pub(crate) fn points(&self) -> usize {
        ACTIVE.with(|a| a.borrow().as_ref().map_or(0, |r| r.points.len()))
    }

    /// Stops recording.
    pub(crate) fn finish(self) -> Recording {
        let r = ACTIVE.with(|a| a.borrow_mut().take()).expect("crashsim: session still active");
        Recording { points: r.points }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
}

/// Which uncertain directory entries survive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entries {
    /// Only what the directories' last fsyncs recorded.
    Durable,
    /// Everything the process saw.
    Actual,
    /// Each uncertain entry by coin flip.
    Random(u64),
}

/// What becomes of each file's unsynced tail.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tails {
    /// Lost whole.
    Synced,
    /// Kept whole (what a process crash leaves).
    Written,
    /// Kept up to a random byte.
    Prefix(u64),
    /// Each sector kept or lost (left as it was) independently.
    Sectors(u64),
    /// Each sector kept or lost, lost ones read as zeros.
    ZeroHoles(u64),
    /// Kept up to a random sector, which holds garbage; the rest is lost.
    GarbageEnd(u64),
}

/// One way a power loss may have gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    pub(crate) entries: Entries,
    pub(crate) tails: Tails,
}

/// The variants the crash tests try at each point: the two extremes, then a
/// few random mixes with torn tails.
pub(crate) fn standard_variants(seed: u64) -> Vec<Variant> {
    use Entries::*;
    use Tails::*;
    let s = |i: u64| seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i);
    vec![
        Variant { entries: Durable, tails: Synced },
        Variant { entries: Actual, tails: Written },
        Variant { entries: Actual, tails: Synced },
        Variant { entries: Durable, tails: Written },
        Variant { entries: Actual, tails: Prefix(s(1)) },
        Variant { entries: Random(s(2)), tails: Sectors(s(3)) },
        Variant { entries: Actual, tails: Sectors(s(4)) },
        Variant { entries: Random(s(5)), tails: ZeroHoles(s(6)) },
        Variant { entries: Actual, tails: ZeroHoles(s(7)) },
        Variant { entries: Random(s(8)), tails: GarbageEnd(s(9)) },
    ]
}

/// The crash points of a finished session.
#[derive(Debug)]
pub(crate) struct Recording {
    points: Vec<Point>,
}

/// xorshift64*: deterministic randomness without dependencies.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.max(1);
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// What one sector-sized piece of an unsynced tail became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    New,
    Old,
    Zeros,
    Garbage,
}

impl Recording {
    /// The crash points, in order.
    pub(crate) fn points(&self) -> &[Point] {
        &self.points
    }

    /// Writes into `out` (which must not exist) what the disk may hold after
    /// a power loss at point `k`, as `v` decides.
    pub(crate) fn image(&self, k: usize, v: Variant, out: &Path) {
        let p = &self.points[k];
        let seed = match v.entries {
            Entries::Random(s) => s,
            _ => 0,
        };
        let mut b = Builder { p, v, entry_rng: Rng(seed ^ 0x5555), tail_rng: Rng(tail_seed(v.tails)) };
        b.dir(Path::new(""), out);
    }
}

fn tail_seed(t: Tails) -> u64 {
    match t {
        Tails::Prefix(s) | Tails::Sectors(s) | Tails::ZeroHoles(s) | Tails::GarbageEnd(s) => s,
        Tails::Synced | Tails::Written => 1,
    }
}

struct Builder<'a> {
    p: &'a Point,
    v: Variant,
    entry_rng: Rng,
    tail_rng: Rng,
}

impl<'a> Builder<'a> {
    /// Whether an uncertain entry ends up as the process saw it (true) or as
    /// the directory's last fsync recorded it (false).
    fn new_entry(&mut self) -> bool {
        match self.v.entries {
            Entries::Durable => false,
            Entries::Actual => true,
            Entries::Random(_) => self.entry_rng.coin(),
        }
    }

    fn synced_bytes(&self, id: FileId) -> &'a [u8] {
        let p: &'a Point = self.p;
        p.durable.files.get(&id).map_or(&[][..], |b| &b[..])
    }

    fn dir(&mut self, rel: &Path, out: &Path) {
        fs::create_dir_all(out.join(rel)).expect("crashsim: creating an image directory");
        let p: &'a Point = self.p;
        let empty_d = BTreeMap::new();
        let empty_a = BTreeMap::new();
        let durable = p.durable.dirs.get(rel).unwrap_or(&empty_d);
        let actual = p.actual.get(rel).unwrap_or(&empty_a);
        let names: BTreeSet<&OsString> = durable.keys().chain(actual.keys()).collect();
        for name in names {
            let child = rel.join(name);
            match (durable.get(name), actual.get(name)) {
                (Some(DEntry::Dir), _) => self.dir(&child, out),
                (None, Some(Node::Dir)) => {
                    if self.new_entry() {
                        self.dir(&child, out);
                    }
                }
                (Some(DEntry::File(old)), Some(Node::File { id, bytes })) if old == id => {
                    let data = self.tail(self.synced_bytes(*id), bytes);
                    write(out, &child, &data);
                }
                (Some(DEntry::File(old)), Some(Node::File { id, bytes })) => {
                    // Replaced by a rename: the old file or the new one.
                    let data = if self.new_entry() {
                        self.tail(self.synced_bytes(*id), bytes)
                    } else {
                        self.synced_bytes(*old).to_vec()
                    };
                    write(out, &child, &data);
                }
                (Some(DEntry::File(old)), None | Some(Node::Dir)) => {
                    // Removed (or renamed away) since the last fsync.
                    if !self.new_entry() {
                        let data = self.synced_bytes(*old);
                        write(out, &child, data);
                    }
                }
                (None, Some(Node::File { id, bytes })) => {
                    if self.new_entry() {
                        let data = self.tail(self.synced_bytes(*id), bytes);
                        write(out, &child, &data);
                    }
                }
                (None, None) => {}
            }
        }
    }

    /// A file whose last fsync saw `synced` and whose process view is
    /// `written`, after the power loss.
    fn tail(&mut self, synced: &[u8], written: &[u8]) -> Vec<u8> {
        let first = synced.iter().zip(written).take_while(|(a, b)| a == b).count();
        let end = synced.len().max(written.len());
        if first == end && synced.len() == written.len() {
            return written.to_vec();
        }
        // Sector-aligned pieces of [first, end).
        let mut pieces = Vec::new();
        let mut at = first;
        while at < end {
            let next = ((at / SECTOR) + 1) * SECTOR;
            pieces.push((at, next.min(end)));
            at = next.min(end);
        }
        let rng = &mut self.tail_rng;
        let choice: Vec<Piece> = match self.v.tails {
            Tails::Synced => vec![Piece::Old; pieces.len()],
            Tails::Written => vec![Piece::New; pieces.len()],
            Tails::Prefix(_) => {
                // Split one piece at a random byte so the cut is byte-exact.
                let cut = first + rng.below((end - first + 1) as u64) as usize;
                let mut split = Vec::new();
                for (s, e) in pieces {
                    if s < cut && cut < e {
                        split.push((s, cut));
                        split.push((cut, e));
                    } else {
                        split.push((s, e));
                    }
                }
                pieces = split;
                pieces.iter().map(|(s, _)| if *s < cut { Piece::New } else { Piece::Old }).collect()
            }
            Tails::Sectors(_) => pieces.iter().map(|_| if rng.coin() { Piece::New } else { Piece::Old }).collect(),
            Tails::ZeroHoles(_) => pieces.iter().map(|_| if rng.coin() { Piece::New } else { Piece::Zeros }).collect(),
            Tails::GarbageEnd(_) => {
                let k = rng.below(pieces.len() as u64) as usize;
                (0..pieces.len())
                    .map(|i| match i.cmp(&k) {
                        std::cmp::Ordering::Less => Piece::New,
                        std::cmp::Ordering::Equal => Piece::Garbage,
                        std::cmp::Ordering::Greater => Piece::Old,
                    })
                    .collect()
            }
        };
        let mut out = written[..first].to_vec();
        for (&(s, e), piece) in pieces.iter().zip(choice) {
            let bytes: Vec<u8> = match piece {
                Piece::New => written.get(s..e.min(written.len())).unwrap_or(&[]).to_vec(),
                Piece::Old => synced.get(s..e.min(synced.len())).unwrap_or(&[]).to_vec(),
                Piece::Zeros => vec![0; e - s],
                Piece::Garbage => (s..e).map(|_| (rng.next() as u8) | 1).collect(),
            };
            if bytes.is_empty() {
                continue; // beyond the end of that version of the file
            }
            if out.len() < s {
                out.resize(s, 0); // a hole: the size grew, the data did not land
            }
            out.truncate(s);
            out.extend_from_slice(&bytes);
        }
        out
    }
}

fn write(out: &Path, rel: &Path, data: &[u8]) {
    fs::write(out.join(rel), data).expect("crashsim: writing an image file");
}

/// A scratch directory for recordings and crash images: on tmpfs when there
/// is one (the tests fsync thousands of times, and what they check is the
/// model, not the disk under it), else in the default temp dir.
pub(crate) fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("raftlog-crash").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("crashsim: creating a temp dir")
}

/// Reads every regular file under `dir` (relative path → bytes): for tests
/// that compare trees.
pub(crate) fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for ent in fs::read_dir(&d).expect("read_tree: listing") {
            let ent = ent.expect("read_tree: entry");
            let path = ent.path();
            if ent.file_type().expect("read_tree: type").is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("read_tree: under dir").to_path_buf();
                out.insert(rel, fs::read(&path).expect("read_tree: reading"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
