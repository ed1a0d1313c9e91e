#!/usr/bin/env bash
# Runs the whole test suite: unit, integration, crash, cluster and
# differential tests (the differential tests start Debian's etcd on
# loopback), then the KV, watch and lease integration suites again with
# every test's server being a member of a 3-member cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
METASTORE_IT_CLUSTER=3 cargo nextest run -p metastore --test it --no-fail-fast \
  -E 'test(/^(kv|kv_errors|watch|lease)::/)' "$@"
