//! Keeping a running cluster healthy: backups (`etcdctl snapshot save` and
//! `--restore-snapshot`), HashKV, the corruption checks that compare it
//! across members, auto-compaction and lease expiry. Each runs beside the request path
//! and changes state only through raft, like any client.

pub mod auto_compaction;
pub mod backup;
pub mod corrupt;
pub mod etcd_export;
pub mod etcd_format;
pub mod etcd_import;
pub mod hashkv;
pub mod lease_expiry;
