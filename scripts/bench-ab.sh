#!/usr/bin/env bash
# A/B of two MetaStore binaries on the same machine, alternated: for each, a
# fresh single member, then metastore-bench's serializable range (300,000
# reads of one key) and put (100,000 puts of 256 B, distinct keys) at 1,000
# clients over 100 connections. Prints throughput and the server's own CPU
# time per request (utime + stime of the server process / requests), which
# other load on the machine disturbs far less than throughput.
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS]   (default 3 rounds)
#
# metastore-bench is taken from $CARGO_TARGET_DIR/release (cargo build
# --release -p bench). Servers are stopped by PID; data dirs are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-3}
BENCH="$CARGO_TARGET_DIR/release/metastore-bench"
[ -x "$BENCH" ] || { echo "build it first: cargo build --release -p bench" >&2; exit 2; }
TCK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
per_req_us() { python3 -c "print(round(($2-$1)/$TCK/$3*1e6, 2))"; }
ops() { python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read().strip().splitlines()[-1])["ops_per_s"]))'; }

run() { # label binary
  local c p d pid t0 t1 t2 r w
  read -r c p <<<"$(python3 scripts/free-ports.py 2)"
  d=$(mktemp -d)
  "$2" --name default --data-dir "$d/data" --listen-client-urls "http://127.0.0.1:$c" \
    --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
    --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "default=http://127.0.0.1:$p" >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$c" put k v >/dev/null 2>&1 && break
    sleep 0.1
  done
  t0=$(cpu_ticks $pid)
  r=$("$BENCH" --endpoints "127.0.0.1:$c" --conns 100 --clients 1000 --total 300000 --json range k --consistency s 2>/dev/null)
  t1=$(cpu_ticks $pid)
  w=$("$BENCH" --endpoints "127.0.0.1:$c" --conns 100 --clients 1000 --total 100000 --json \
    put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 2>/dev/null)
  t2=$(cpu_ticks $pid)
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$d"
  printf '%-4s range %7s ops/s %6s us/req   put %7s ops/s %6s us/req\n' "$1" \
    "$(echo "$r" | ops)" "$(per_req_us "$t0" "$t1" 300000)" "$(echo "$w" | ops)" "$(per_req_us "$t1" "$t2" 100000)"
}

for _ in $(seq "$ROUNDS"); do
  run old "$OLD"
  run new "$NEW"
done
