//! Opening a member's state: the raft log, the engine restored from the
//! newest snapshot, membership and leases. A brand-new member of a new
//! cluster bootstraps: every initial member writes the same membership and
//! installs the same snapshot at index 1, term 1, whose conf state names the
//! initial voters. A member that later joins starts empty and receives that
//! state (or a newer snapshot) from the leader, so the initial configuration
//! is never something only the log's missing prefix knows.
//!
//! A persistent engine (RocksDB) that already holds the newest snapshot's
//! index or more is not restored: the node resumes from the engine's applied
//! index, and raft replays only the entries after it. With either engine raft
//! starts with the WAL's newest conf state record (written before each conf
//! change's effects reach the engine) when it is newer than the snapshot.
//!
//! A bootstrap writes the engine (the `--restore-snapshot` file, the
//! membership, applied index 1) before the raft log records its snapshot.
//! A crash in between leaves a persistent engine with state and an empty
//! log, which otherwise means a lost or foreign raft log and is refused. So
//! the bootstrap first writes the marker file `member/bootstrapping`
//! (durably) and removes it once the log holds the snapshot: an empty log
//! with the marker is an unfinished bootstrap, which is wiped and redone.

use crate::maintenance::backup::RestoreSource;
use std::sync::Arc;

use api::pb::metastorepb::MemberRecord;
use raft::eraftpb::{ConfState, SnapshotMetadata};
use raftlog::{LogStore, LogStoreOptions};
use storage::{AppliedIndex, CompactionConfig, Engine, MvccStore, Table, WriteBatch};

use super::NodeError;
use crate::apply::alarms::Alarms;
use crate::apply::auth::AuthStore;
use crate::apply::lessor::Lessor;
use crate::apply::members::Membership;
use crate::config::ServerConfig;

pub struct Opened {
    pub log: LogStore,
    pub mvcc: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub members: Arc<Membership>,
    pub alarms: Arc<Alarms>,
    pub auth: Arc<AuthStore>,
    pub cluster_id: u64,
    /// Index of the snapshot the state was restored from (0: none).
    pub last_snapshot: u64,
}

/// Opens and checks `cfg.restore_snapshot` whole when this data dir holds
/// no member yet, before anything creates one: a bad file then leaves the
/// data dir as it was.
pub fn check_restore(cfg: &ServerConfig) -> Result<Option<RestoreSource>, NodeError> {
    match &cfg.restore_snapshot {
        Some(path) if !cfg.join_existing && !cfg.member_dir().join("wal").is_dir() => {
            Ok(Some(crate::maintenance::backup::open_restore(path, cfg.skip_hash_check)?))
        }
        _ => Ok(None),
    }
}

/// Marks a bootstrap in progress (see the module docs).
const BOOTSTRAP_MARKER: &str = "bootstrapping";

/// Opens the member's state; `checked` is `cfg.restore_snapshot` already
/// opened and checked ([`check_restore`]), if it was.
pub fn open(
    cfg: &ServerConfig,
    engine: Arc<dyn Engine>,
    mut checked: Option<RestoreSource>,
) -> Result<Opened, NodeError> {
    let opts = LogStoreOptions { catchup_entries: cfg.snapshot_catchup_entries, ..LogStoreOptions::default() };
    let (mut log, recovered) = LogStore::open_with(&cfg.member_dir(), opts)?;
    let mut last_snapshot = 0;
    let marker = cfg.member_dir().join(BOOTSTRAP_MARKER);
    let unfinished = marker.exists();
    if unfinished && !recovered.fresh {
        // The log holds the bootstrap's snapshot: it finished, and only the
        // marker's removal was lost.
        raftlog::durable::remove_file_durably(&marker)?;
    }
    let mut held = storage::mvcc::meta::load_applied(engine.as_ref())?;
    if unfinished && recovered.fresh {
        tracing::warn!(
            engine_index = held.index,
            "an earlier start stopped while bootstrapping this member; starting the bootstrap over"
        );
        wipe(engine.as_ref())?;
        held = AppliedIndex::default();
    }
    let bootstrapping = recovered.fresh && !cfg.join_existing;
    if engine.persistent() && recovered.fresh && held.index > 0 {
        return Err(NodeError::EngineAheadOfLog { engine: engine.kind(), index: held.index });
    }
    // The backup file is checked whole before anything is written.
    let backup = match &cfg.restore_snapshot {
        Some(path) if bootstrapping => match checked.take() {
            Some(source) => Some((path, source)),
            None => Some((path, crate::maintenance::backup::open_restore(path, cfg.skip_hash_check)?)),
        },
        Some(path) => {
            tracing::info!(file = %path.display(), "the data dir holds a member: --restore-snapshot is ignored");
            None
        }
        None => None,
    };
    if bootstrapping {
        raftlog::durable::write_file(&marker, b"")?;
    }
    if let Some((path, source)) = backup {
        tracing::info!(file = %path.display(), "bootstrapping the new cluster from a snapshot");
        source.restore_with(|dump| {
            engine.restore(dump).map_err(|source| NodeError::Restore { what: path.display().to_string(), source })
        })?;
        // Tests crash the process here and below.
        failpoint::hit("bootstrap::restored");
        // The old cluster's applied index means nothing to the new raft
        // log; the bootstrap below records index 1.
        let mut batch = WriteBatch::default();
        storage::mvcc::meta::put_applied(&mut batch, AppliedIndex::default());
        engine.write(batch)?;
    }
    if let Some((meta, mut reader)) = recovered.snapshot {
        last_snapshot = meta.index;
        if engine.persistent() && held.index >= meta.index {
            tracing::info!(applied = held.index, snapshot = meta.index, "resuming from the engine's applied index");
        } else {
            tracing::info!(index = meta.index, term = meta.term, "restoring state from snapshot");
            engine.restore(&mut reader).map_err(|source| NodeError::Restore {
                what: format!(
                    "the {} engine (at raft index {}) from snapshot {}/{}",
                    engine.kind(),
                    held.index,
                    meta.index,
                    meta.term
                ),
                source,
            })?;
        }
    }
    let mvcc = Arc::new(MvccStore::open_with_index(engine, CompactionConfig::default(), cfg.key_index)?);
    let load = mvcc.index_load();
    tracing::info!(
        key_index = %mvcc.key_index_kind(),
        keys = mvcc.keys_total(),
        rebuilt = load.rebuilt,
        took_ms = load.took.as_millis() as u64,
        "key index ready"
    );
    // Everything applied was committed; raft requires applied <= commit, and
    // the commit index on disk may lag (it is not fsynced on its own).
    log.mark_committed(mvcc.applied_index().index)?;
    let members = Arc::new(Membership::default());
    members.load(mvcc.engine().as_ref())?;
    if bootstrapping {
        bootstrap_new(cfg, &mut log, &mvcc, &members)?;
        raftlog::durable::remove_file_durably(&marker)?;
        last_snapshot = 1;
    }
    let lessor = Arc::new(Lessor::new(Lessor::min_ttl_for(cfg.heartbeat, cfg.election_ticks())));
    lessor.recover(&mvcc)?;
    let cluster_id = match members.cluster_id() {
        0 => cfg.cluster_id,
        id => id,
    };
    let alarms = Arc::new(Alarms::default());
    alarms.load(mvcc.engine().as_ref())?;
    let auth = Arc::new(AuthStore::new(cfg.auth_token_ttl, cfg.auth_jwt.clone()));
    auth.load(mvcc.engine().as_ref())?;
    Ok(Opened { log, mvcc, lessor, members, alarms, auth, cluster_id, last_snapshot })
}

fn bootstrap_new(
    cfg: &ServerConfig,
    log: &mut LogStore,
    mvcc: &MvccStore,
    members: &Membership,
) -> Result<(), NodeError> {
    let records: Vec<MemberRecord> = cfg
        .members
        .iter()
        .map(|m| MemberRecord {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            // Each member publishes its own client URLs once it runs.
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let mut batch = WriteBatch::default();
    // A restored snapshot brings the old cluster's members: the new cluster
    // is the one on the command line (as etcd's snapshot restore).
    mvcc.engine().scan(Table::Members, &[], None, &mut |k, _| {
        batch.delete(Table::Members, k.to_vec());
        true
    })?;
    // Its alarms name the old members; the new cluster raises its own.
    crate::apply::alarms::clear_all(mvcc.engine().as_ref(), &mut batch)?;
    members.bootstrap(cfg.cluster_id, records, &mut batch);
    let applied = AppliedIndex { index: 1, term: 1 };
    mvcc.set_applied_with(applied, batch)?;
    members.load(mvcc.engine().as_ref())?;
    let cs = ConfState { voters: cfg.members.iter().map(|m| m.id).collect(), ..Default::default() };
    let mut meta = SnapshotMetadata { index: applied.index, term: applied.term, ..Default::default() };
    meta.set_conf_state(cs);
    failpoint::hit("bootstrap::log");
    let engine = mvcc.engine();
    log.install_snapshot_with(&meta, &mut |w| engine.dump(w).map_err(std::io::Error::other))?;
    tracing::info!(members = cfg.members.len(), "bootstrapped a new cluster");
    Ok(())
}

/// Empties the engine (what an unfinished bootstrap left), through the one
/// operation every engine has that replaces all contents.
fn wipe(engine: &dyn Engine) -> Result<(), NodeError> {
    let mut empty = Vec::new();
    storage::MemoryEngine::new().dump(&mut empty)?;
    engine.restore(&mut empty.as_slice())?;
    Ok(())
}
