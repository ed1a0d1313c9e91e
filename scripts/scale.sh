#!/usr/bin/env bash
# MetaStore (RocksDB) and etcd at 10 million keys, side by side (issue 17):
# load, memory, large lists, restart, online compaction and defrag, a member
# joining. Builds the release binaries, then runs scripts/scale.py; see its
# docstring (scripts/scale.py --help) for the phases and what each measures.
#
#   scripts/scale.sh [--keys N] [--servers metastore,etcd] [--phases load,lists,restart,online,join]
#                    [--members 1|3] [--window SECONDS] [--key-index auto|memory|stored] [--out DIR]
#                    [--keep-data] [--no-build]
#
# 10 M keys take about an hour per server on 2 cores and some 10 GB of disk
# each (data dirs are removed as each server finishes). Results:
# DIR/results.json and the table on stdout. Needs etcdctl (Debian etcd-client)
# and, to measure etcd, /usr/bin/etcd (etcd-server): scripts/setup.sh installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=1
ARGS=()
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
export BUILD
. scripts/bench-env.sh >&2
exec python3 scripts/scale.py --metastore "$MS_BIN" --bench "$BENCH" "${ARGS[@]}"
