#!/usr/bin/env bash
# What auth costs: one release MetaStore member (memory engine, fsync on),
# the same metastore-bench workloads with auth off, then with auth on (root
# user, simple tokens, every request carrying the token and checked). Each
# run gets a fresh data dir; rounds alternate which goes first.
#
#   scripts/bench-auth.sh [--duration 15s] [--rounds 2] [--clients 100]
#
# Prints one line per workload and mode with ops/s and p99 (ms), and the
# on/off ratio. The server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
DURATION=15s
ROUNDS=2
CLIENTS=100
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    *) echo "usage: $0 [--duration D] [--rounds N] [--clients N]" >&2; exit 2 ;;
  esac
done
cargo build --release -p metastore -p bench >&2
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/bench-auth.XXXXXX)
PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop EXIT

run_mode() { # mode round
  local mode=$1 round=$2 dir="$WORK/$1-$2" cport pport ep user=()
  read -r cport pport < <(python3 scripts/free-ports.py 2)
  ep="127.0.0.1:$cport"
  "$BIN/metastore" --name m --data-dir "$dir" \
    --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "m=http://127.0.0.1:$pport" >"$WORK/$mode-$round.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do etcdctl --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$mode" = on ]; then
    etcdctl --endpoints "$ep" user add root:pw >/dev/null
    etcdctl --endpoints "$ep" auth enable >/dev/null
    user=(--user root:pw)
  fi
  local common=(--endpoints "$ep" --conns 10 --clients "$CLIENTS" --duration "$DURATION" --json "${user[@]}")
  "$BIN/metastore-bench" "${common[@]}" put --key-size 16 --val-size 256 --key-space-size 10000 \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print('put', '$mode', r['ops_per_s'], r['latency_ms']['p99'], r['errors_total'])"
  for c in l s; do
    "$BIN/metastore-bench" "${common[@]}" range --consistency "$c" --key-size 16 --key-space-size 10000 \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print('range-$c', '$mode', r['ops_per_s'], r['latency_ms']['p99'], r['errors_total'])"
  done
  stop
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do run_mode "$mode" "$round"; done
done | tee "$WORK/results.txt"
python3 - "$WORK/results.txt" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    w, mode, ops, p99, errs = line.split()
    rows.setdefault((w, mode), []).append((float(ops), float(p99), int(errs)))
print(f"{'workload':10} {'off ops/s':>10} {'on ops/s':>10} {'on/off':>7} {'off p99':>8} {'on p99':>8} errors")
for w in sorted({k[0] for k in rows}):
    off, on = rows[(w, "off")], rows[(w, "on")]
    o = statistics.median(x[0] for x in off); n = statistics.median(x[0] for x in on)
    po = statistics.median(x[1] for x in off); pn = statistics.median(x[1] for x in on)
    errs = sum(x[2] for x in off + on)
    print(f"{w:10} {o:10.0f} {n:10.0f} {n / o:7.2f} {po:8.2f} {pn:8.2f} {errs}")
EOF
echo "work dir: $WORK" >&2
