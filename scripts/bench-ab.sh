#!/usr/bin/env bash
# A/B of MetaStore binaries on the same machine, alternated: for each, a
# fresh single member, then metastore-bench's serializable range (300,000
# reads of one key) and put (100,000 puts of 256 B, distinct keys) at 1,000
# clients over 100 connections. Prints throughput and the server's own CPU
# time per request (utime + stime of the server process / requests), which
# other load on the machine disturbs far less than throughput; after the
# last round, the median of each column per binary.
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS]   (default 3 rounds)
#   scripts/bench-ab.sh --rounds N BINARY...             (any number, e.g. a
#                                                         bisection's points)
#
# Binaries are labelled by file name (old/new in the two-binary form).
# metastore-bench is taken from $CARGO_TARGET_DIR/release (cargo build
# --release -p bench). Servers are stopped by PID; data dirs are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
usage() { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS] | $0 --rounds N BINARY..." >&2; exit 2; }
ROUNDS=3 LABELS=() BINS=()
if [ "${1:-}" = --rounds ]; then
  [ $# -ge 3 ] || usage
  ROUNDS=$2; shift 2
  for b in "$@"; do LABELS+=("$(basename "$b")"); BINS+=("$b"); done
else
  [ $# -ge 2 ] && [ $# -le 3 ] || usage
  LABELS=(old new) BINS=("$1" "$2") ROUNDS=${3:-3}
fi
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
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
  printf '%-12s range %7s ops/s %6s us/req   put %7s ops/s %6s us/req\n' "$1" \
    "$(echo "$r" | ops)" "$(per_req_us "$t0" "$t1" 300000)" "$(echo "$w" | ops)" "$(per_req_us "$t1" "$t2" 100000)"
}

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for _ in $(seq "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    run "${LABELS[$i]}" "${BINS[$i]}" | tee -a "$RESULTS"
  done
done
# Medians per label, in the order the binaries were given.
python3 - "$RESULTS" "${LABELS[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("median over %d rounds" % (len(rows) // len(sys.argv[2:])))
for label in sys.argv[2:]:
    mine = [r for r in rows if r[0] == label]
    col = lambda i: statistics.median(float(r[i]) for r in mine)
    print('%-12s range %7.0f ops/s %6.2f us/req   put %7.0f ops/s %6.2f us/req' % (label, col(2), col(4), col(7), col(9)))
PY
