#!/usr/bin/env bash
# The checks that are not tests; CI runs them before scripts/test.sh:
# 1. formatting (rustfmt.toml), without rewriting anything;
# 2. clippy on every crate and target, the RocksDB engine included, with
#    the workspace's lints (Cargo.toml, [workspace.lints]), warnings denied;
# 3. the doc tests (the examples in `//!` and `///` comments), which
#    cargo-nextest does not run.
#
#   scripts/check.sh [--no-rocksdb]
#
# --no-rocksdb leaves the RocksDB engine out (the storage-rocks crate and
# the `rocksdb` feature): minutes instead of a first RocksDB build. CI runs
# without it. The target dir from scripts/env.sh is shared with
# scripts/test.sh, so RocksDB is compiled once for both (15-20 minutes on
# two cores the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scope=(--workspace --features metastore/rocksdb)
case "${1:-}" in
  "") ;;
  --no-rocksdb) scope=(--workspace --exclude storage-rocks) ;;
  *) echo "usage: $0 [--no-rocksdb]" >&2; exit 2 ;;
esac
echo "check: cargo fmt" >&2
cargo fmt --all --check
echo "check: cargo clippy" >&2
cargo clippy "${scope[@]}" --all-targets -- -D warnings
echo "check: doc tests" >&2
cargo test --doc "${scope[@]}"
echo "check: ok" >&2
