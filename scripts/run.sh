#!/usr/bin/env bash
# Builds MetaStore (release) and starts a single member with etcd's defaults:
# clients on 127.0.0.1:2379, peers on 127.0.0.1:2380, data in ./default.metastore.
# Extra arguments go to the server, e.g. scripts/run.sh --name n1 --data-dir /tmp/n1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
exec cargo run --release --bin metastore -- "$@"
