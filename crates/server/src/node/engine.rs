//! Opening the engine `--storage` names in a member's data dir.
//!
//! Invariant: a data dir holds one engine's files, named by the `engine`
//! marker, which is durable before the engine writes anything; a member
//! refuses to open a data dir another engine wrote.

use std::path::Path;
use std::sync::Arc;

use storage::{Engine, MemoryEngine};

use crate::config::{ServerConfig, StorageConfig};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("data dir {path} was written by the {found} engine; this server runs the {wanted} engine")]
    Mismatch { path: String, found: String, wanted: String },
    #[error("opening the {kind} engine: {source}")]
    Engine { kind: &'static str, source: storage::EngineError },
    #[error("this binary was built without the {0} engine; rebuild with `--features rocksdb`")]
    Unavailable(&'static str),
}

/// Opens the engine `--storage` names, after checking the data dir's marker.
pub fn open(cfg: &ServerConfig) -> Result<Arc<dyn Engine>, OpenError> {
    let kind = cfg.storage.kind();
    if !StorageConfig::available().contains(&kind) {
        return Err(OpenError::Unavailable(kind));
    }
    check_marker(&cfg.member_dir(), kind)?;
    match &cfg.storage {
        StorageConfig::Memory => Ok(Arc::new(MemoryEngine::new())),
        #[cfg(feature = "rocksdb")]
        StorageConfig::Rocksdb { block_cache_bytes, write_buffer_bytes } => {
            let opts = storage_rocks::RocksOptions {
                block_cache_bytes: *block_cache_bytes,
                write_buffer_bytes: *write_buffer_bytes,
            };
            let engine = storage_rocks::RocksEngine::open(&cfg.member_dir().join("rocksdb"), &opts)
                .map_err(|source| OpenError::Engine { kind, source })?;
            Ok(Arc::new(engine))
        }
        #[cfg(not(feature = "rocksdb"))]
        StorageConfig::Rocksdb { .. } => Err(OpenError::Unavailable(kind)),
    }
}

/// Records which engine owns the data dir; refuses to open another's.
fn check_marker(member_dir: &Path, wanted: &str) -> Result<(), OpenError> {
    let io = |source| OpenError::DataDir { path: member_dir.display().to_string(), source };
    raftlog::durable::create_dir_all(member_dir).map_err(io)?;
    let marker = member_dir.join("engine");
    match std::fs::read_to_string(&marker) {
        Ok(found) if found.trim() == wanted => Ok(()),
        Ok(found) => Err(OpenError::Mismatch {
            path: member_dir.display().to_string(),
            found: found.trim().to_string(),
            wanted: wanted.to_string(),
        }),
        // Durable before the engine writes anything: a data dir never holds
        // an engine's files without the marker that names it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            raftlog::durable::write_file(&marker, wanted.as_bytes()).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}
