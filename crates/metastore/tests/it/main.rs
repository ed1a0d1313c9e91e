//! Cross-process tests: real `metastore` processes on loopback driven by real
//! clients (the `etcd-client` crate and etcdctl), and differential runs
//! against Debian's etcd.

mod auto_compaction;
mod backup;
mod cluster;
mod common;
mod corrupt;
mod crash;
mod diff;
mod diff_clients;
mod diff_common;
mod diff_watch_lease;
mod faults;
#[cfg(feature = "rocksdb")]
mod faults_disk;
mod gateway;
mod kv;
mod kv_errors;
mod lease;
mod lifecycle;
mod lock_election;
mod quota;
mod smoke;
mod tls;
mod watch;
