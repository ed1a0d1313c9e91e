#!/usr/bin/env bash
# Runs the whole test suite, with the RocksDB engine built in:
# 1. every crate's tests: unit, integration, crash, cluster and differential
#    tests (the differential tests start Debian's etcd on loopback), servers
#    on the default memory engine;
# 2. the KV, watch, lease, lock/election, auth and JSON gateway suites again
#    with every test's server being member 0 of a 3-member cluster (except
#    the test of etcd's lease-TTL reset on a new leader, which restarts a
#    single member and so needs that member to lead, and the "right after
#    start" tests, which start 8-10 servers at once: 30 processes electing
#    on two cores);
# 3. the KV, watch, lease, lock/election, auth (permissions and JWT too),
#    gateway, cluster, crash,
#    lifecycle, auto-compaction, backup, migration and quota suites again over
#    RocksDB (METASTORE_STORAGE=rocksdb, inherited by every server the
#    harness starts).
# 4. Patroni end to end (scripts/patroni.sh: two PostgreSQL nodes on a 1-
#    and a 3-member MetaStore cluster: bootstrap, switchover, kill -9 of
#    the DCS leader, failover, rejoin; about 1.5 minutes each), after the
#    suites so its timings do not compete with them.
# A first build compiles RocksDB from C++ source (15-20 minutes on two
# cores); the target dir in scripts/env.sh keeps it for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
features=(--features metastore/rocksdb)
cargo build --workspace --bins "${features[@]}"
cargo nextest run --workspace "${features[@]}" --no-fail-fast "$@"
METASTORE_IT_CLUSTER=3 cargo nextest run -p metastore "${features[@]}" --test it --no-fail-fast \
  -E 'test(/^(kv|kv_errors|watch|lease|lock_election|auth|gateway)::/) - test(restart_keeps_leases_and_resets_their_ttl) - test(right_after_start)' \
  "$@"
METASTORE_STORAGE=rocksdb cargo nextest run -p metastore "${features[@]}" --test it --no-fail-fast \
  -E 'test(/^(kv|kv_errors|watch|lease|lock_election|auth|auth_perms|auth_jwt|gateway|cluster|crash|lifecycle|auto_compaction|backup|migration|quota)::/)' \
  "$@"
for members in 1 3; do
  scripts/patroni.sh --server metastore --members "$members" --binary "$CARGO_TARGET_DIR/debug/metastore"
done
