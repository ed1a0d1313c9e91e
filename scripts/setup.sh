#!/usr/bin/env bash
# Installs what building and testing MetaStore needs on a fresh Debian machine.
# Idempotent: quick when everything is already there.
#   protobuf-compiler  protoc 3.x, for raft-rs's build and the etcd-client test crate
#   libprotobuf-dev    the well-known .proto files (google/protobuf/descriptor.proto)
#                      that the etcd-client crate's build needs; --no-install-recommends
#                      leaves them out of protobuf-compiler
#   etcd-server        real etcd, for differential tests
#   etcd-client        etcdctl, for the walkthrough and differential tests
#   clang libclang-dev bindgen for librocksdb-sys (the RocksDB engine)
#   openssl            test certificates for the TLS tests
#   patroni postgresql the Patroni end-to-end test (PostgreSQL HA over the
#   curl               JSON gateway; scripts/patroni.sh)
#   prometheus         prometheus and promtool, for the monitoring test
#                      (etcd's alert rules and dashboard queries, deploy/prometheus)
#   rustfmt, clippy    rustup components, for scripts/check.sh
#   cargo-nextest      the test runner
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v patroni >/dev/null 2>&1 || need+=(patroni)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup first" >&2
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: cargo fmt or cargo clippy missing, and no rustup to add them" >&2
    exit 1
  fi
  echo "setup: adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
echo "setup: ok ($(protoc --version), etcd $(etcd --version | head -1 | awk '{print $3}'))"
