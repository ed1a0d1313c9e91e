#!/usr/bin/env bash
# Runs the whole test suite: unit, integration, crash, cluster and
# differential tests (the differential tests start Debian's etcd on
# loopback), then the KV, watch and lease integration suites again with
# every test's server being a member of a 3-member cluster (except the test
# of etcd's lease-TTL reset on a new leader, which restarts a single member
# and so needs that member to lead, and the "right after start" tests, which
# start 8-10 servers at once: 30 processes electing on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
METASTORE_IT_CLUSTER=3 cargo nextest run -p metastore --test it --no-fail-fast \
  -E 'test(/^(kv|kv_errors|watch|lease)::/) - test(restart_keeps_leases_and_resets_their_ttl) - test(right_after_start)' \
  "$@"
