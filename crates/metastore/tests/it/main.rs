//! Cross-process tests: real `metastore` processes on loopback driven by real
//! clients (the `etcd-client` crate and etcdctl), and differential runs
//! against Debian's etcd.

mod auth;
mod auth_jwt;
mod auth_perms;
mod auto_compaction;
mod backup;
mod chaos;
mod cluster;
mod common;
mod compaction_stall;
mod corrupt;
mod crash;
mod diff;
mod diff_clients;
mod diff_common;
mod diff_watch_lease;
mod faults;
mod faults_bootstrap;
mod faults_disk;
mod faults_io;
mod gateway;
mod hash_scans;
mod kv;
mod kv_errors;
mod lease;
mod lifecycle;
mod lock_election;
mod logs;
mod migration;
mod monitoring;
mod quota;
mod scale;
mod smoke;
mod tls;
mod watch;
