//! Shared helpers for the integration tests.

use std::path::Path;

pub use testkit::{etcdctl, wait_until, ServerProcess};

pub fn metastore(extra: &[&str]) -> ServerProcess {
    ServerProcess::metastore(Path::new(env!("CARGO_BIN_EXE_metastore")), extra)
}

pub async fn client(s: &ServerProcess) -> etcd_client::Client {
    etcd_client::Client::connect([s.url()], None).await.expect("connect etcd-client")
}
