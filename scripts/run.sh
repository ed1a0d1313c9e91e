#!/usr/bin/env bash
# Builds MetaStore (release) and starts a single member with etcd's defaults:
# clients on 127.0.0.1:2379, peers on 127.0.0.1:2380, data in ./default.metastore.
# Extra arguments go to the server, e.g. scripts/run.sh --name n1 --data-dir /tmp/n1
# With `--storage rocksdb` (or METASTORE_STORAGE=rocksdb) the binary is built
# with the RocksDB engine; its first build compiles RocksDB (15-20 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
features=()
prev=""
for arg in "$@"; do
  if [ "$arg" = "--storage=rocksdb" ] || { [ "$prev" = "--storage" ] && [ "$arg" = "rocksdb" ]; }; then
    features=(--features metastore/rocksdb)
  fi
  prev="$arg"
done
[ "${METASTORE_STORAGE:-}" = "rocksdb" ] && features=(--features metastore/rocksdb)
exec cargo run --release -p metastore --bin metastore "${features[@]}" -- "$@"
