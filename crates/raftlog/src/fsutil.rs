//! Small filesystem helpers shared by the WAL and the snapshot store.
//!
//! Invariant: a file created or renamed inside a directory is only durable
//! once the directory itself has been fsynced; callers use [`sync_dir`] after
//! every create/rename/delete whose durability matters.

use std::fs::File;
use std::io;
use std::path::Path;

/// Fsyncs a directory so that entries created, renamed or removed in it
/// survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
