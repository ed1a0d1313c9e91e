//! Snapshot data received from a leader, staged in files until the raft
//! thread installs it: the peer service writes each chunk to disk as it
//! arrives, so a snapshot is never held in memory whole. A staged file is
//! a complete, fsynced snapshot file (`raftlog::Incoming`), so installing
//! it is a rename (`LogStore::install_staged`).
//!
//! Invariants: staged files live in the snapshot directory with a `.tmp`
//! suffix, so a restart removes leftovers (`SnapshotStore::open`); at most
//! [`KEEP_STAGED`] are kept while running (raft only installs the newest,
//! older ones it would refuse anyway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Staged snapshots kept at once.
const KEEP_STAGED: usize = 2;

pub struct StagedSnapshots {
    dir: PathBuf,
    files: Mutex<BTreeMap<(u64, u64), PathBuf>>,
    /// Makes every staged file name unique: a leader may resend a snapshot
    /// while the raft thread still reads the previous copy.
    seq: AtomicU64,
}

impl StagedSnapshots {
    pub fn new(snap_dir: &Path) -> StagedSnapshots {
        StagedSnapshots { dir: snap_dir.to_path_buf(), files: Mutex::new(BTreeMap::new()), seq: AtomicU64::new(0) }
    }

    /// A new file name for receiving the data of snapshot `(index, term)`.
    pub fn path_for(&self, index: u64, term: u64) -> PathBuf {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{}.{seq}.incoming.tmp", raftlog::snapfile::file_name(index, term)))
    }

    /// Records a complete staged file; drops the oldest beyond the limit.
    pub fn add(&self, index: u64, term: u64, path: PathBuf) {
        let mut files = self.files.lock();
        if let Some(old) = files.insert((index, term), path.clone()) {
            if old != path {
                let _ = std::fs::remove_file(old);
            }
        }
        while files.len() > KEEP_STAGED {
            if let Some((_, old)) = files.pop_first() {
                let _ = std::fs::remove_file(old);
            }
        }
    }

    /// The staged file of `(index, term)`, handed over to the caller.
    pub fn take(&self, index: u64, term: u64) -> Option<PathBuf> {
        self.files.lock().remove(&(index, term))
    }

    /// Removes every staged file up to `index` (installed or superseded).
    pub fn discard_through(&self, index: u64) {
        let mut files = self.files.lock();
        let keep = files.split_off(&(index + 1, 0));
        for (_, path) in std::mem::replace(&mut *files, keep) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = StagedSnapshots::new(dir.path());
        let mut paths = Vec::new();
        for i in 1..=3u64 {
            let p = s.path_for(i * 10, 2);
            std::fs::write(&p, b"x").unwrap();
            s.add(i * 10, 2, p.clone());
            paths.push(p);
        }
        assert!(!paths[0].exists(), "beyond the limit the oldest goes");
        assert!(s.take(10, 2).is_none());
        assert_eq!(s.take(30, 2).as_deref(), Some(paths[2].as_path()));
        assert!(paths[2].exists(), "taken files are the caller's");
        s.discard_through(20);
        assert!(!paths[1].exists());
        assert!(paths[1].to_string_lossy().ends_with(".tmp"));
        assert_ne!(s.path_for(10, 2), s.path_for(10, 2), "names are unique");
    }
}
