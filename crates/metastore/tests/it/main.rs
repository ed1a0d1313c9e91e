//! Cross-process tests: real `metastore` processes on loopback driven by real
//! clients (the `etcd-client` crate and etcdctl), and differential runs
//! against Debian's etcd.

mod common;
mod crash;
mod smoke;
