#!/usr/bin/env bash
# A member catching up through a snapshot, and what the writers see meanwhile.
# A fresh 3-member cluster on loopback gets --keys puts (8 B keys, 256 B
# values); one follower is killed (-9), the others take --more puts (so the
# leader's log moves past it: --snapshot-count 5000), then the follower
# restarts while a single client keeps writing to the leader. Prints that
# client's put latency (p50, p99.9, max), how long the follower took to hold
# the leader's revision, and the leader's log lines about the snapshot.
#
#   scripts/snapshot-catchup.sh [--storage memory|rocksdb] [--keys N]
#                               [--more N] [--bin PATH] [--no-build]
#
# Servers are stopped by PID. Needs etcdctl (Debian etcd-client), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

STORAGE=rocksdb
KEYS=1000000
MORE=20000
BIN=""
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --storage) shift; [[ "${1:-}" =~ ^(memory|rocksdb)$ ]] || { echo "--storage: memory or rocksdb" >&2; exit 2; }; STORAGE="$1" ;;
    --keys) shift; [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--keys: a positive number" >&2; exit 2; }; KEYS="$1" ;;
    --more) shift; [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--more: a positive number" >&2; exit 2; }; MORE="$1" ;;
    --bin) shift; [ -x "${1:-}" ] || { echo "--bin: an executable" >&2; exit 2; }; BIN="$1" ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

. scripts/bench-env.sh
[ -n "$BIN" ] && MS_BIN="$BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/snapshot-catchup.XXXXXX")"
declare -a PIDS=("" "" "")
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
stop_member() {
  local pid="${PIDS[$1]}"
  [ -n "$pid" ] || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  { wait "$pid"; } 2>/dev/null || true
  PIDS[$1]=""
}
cleanup() {
  for i in 0 1 2; do stop_member "$i" TERM; done
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -a CPORT PPORT
for i in 0 1 2; do CPORT[$i]="$(free_port)"; PPORT[$i]="$(free_port)"; done
CLUSTER="m0=http://127.0.0.1:${PPORT[0]},m1=http://127.0.0.1:${PPORT[1]},m2=http://127.0.0.1:${PPORT[2]}"
start_member() {
  local i="$1" state="$2"
  "$MS_BIN" --name "m$i" --data-dir "$WORK/m$i" --storage "$STORAGE" --snapshot-count 5000 \
    --listen-client-urls "http://127.0.0.1:${CPORT[$i]}" --advertise-client-urls "http://127.0.0.1:${CPORT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
    --initial-cluster "$CLUSTER" --initial-cluster-state "$state" >>"$WORK/m$i.log" 2>&1 &
  PIDS[$i]=$!
}
status_json() { etcdctl --endpoints "127.0.0.1:${CPORT[$1]}" --command-timeout=2s endpoint status -w json 2>/dev/null || true; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d[0]['Status']$1)" 2>/dev/null || true; }

for i in 0 1 2; do start_member "$i" new; done
LEADER=""
for _ in $(seq 100); do
  id="$(status_json 0 | field "['leader']")"
  if [ -n "$id" ] && [ "$id" != 0 ]; then
    for i in 0 1 2; do
      [ "$(status_json "$i" | field "['header']['member_id']")" = "$id" ] && LEADER="$i"
    done
  fi
  [ -n "$LEADER" ] && break
  sleep 0.2
done
[ -n "$LEADER" ] || { echo "no leader; logs in $WORK" >&2; trap - EXIT; exit 1; }
LAG=$(((LEADER + 1) % 3))
ALL="127.0.0.1:${CPORT[0]},127.0.0.1:${CPORT[1]},127.0.0.1:${CPORT[2]}"
log "$STORAGE cluster up, leader m$LEADER; loading $KEYS keys"
"$BENCH" --endpoints "$ALL" --conns 100 --clients 1000 --total "$KEYS" put \
  --key-size 8 --val-size 256 --sequential-keys --key-space-size "$KEYS" >/dev/null
stop_member "$LAG" KILL
log "m$LAG killed; $MORE more puts"
OTHERS="127.0.0.1:${CPORT[$LEADER]}"
"$BENCH" --endpoints "$OTHERS" --conns 10 --clients 100 --total "$MORE" put \
  --key-size 8 --val-size 256 --key-space-size "$KEYS" >/dev/null

# A single writer on the leader throughout the catch-up.
"$BENCH" --endpoints "127.0.0.1:${CPORT[$LEADER]}" --clients 1 --conns 1 --duration 20s --json \
  put --key-size 8 --val-size 256 --key-space-size "$KEYS" >"$WORK/writer.json" 2>/dev/null &
WRITER=$!
sleep 2
TARGET="$(status_json "$LEADER" | field "['header']['revision']")"
log "restarting m$LAG (leader at revision $TARGET)"
STARTED=$(date +%s.%N)
start_member "$LAG" existing
CAUGHT=""
while kill -0 "$WRITER" 2>/dev/null; do
  rev="$(status_json "$LAG" | field "['header']['revision']")"
  if [ -n "$rev" ] && [ "$rev" -ge "$TARGET" ]; then
    CAUGHT="$(python3 -c "print(round($(date +%s.%N) - $STARTED, 2))")"
    break
  fi
  sleep 0.1
done
wait "$WRITER" || true
python3 - "$WORK/writer.json" "$STORAGE" "$KEYS" "${CAUGHT:-not within the run}" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
l = j["latency_ms"]
print(f"storage {sys.argv[2]}, {sys.argv[3]} keys: follower caught up in {sys.argv[4]} s")
print(f"single writer on the leader: {j['ok']} puts, {j['errors_total']} errors, "
      f"p50 {l['p50']:.3f} ms, p99.9 {l['p99_9']:.1f} ms, max {l['max']:.1f} ms")
PY
grep -hE "snapshot (saved|written again)|snapshot sent|became (leader|candidate|follower)|elected" "$WORK/m$LEADER.log" |
  grep -v '"with_data":false' | tail -n 8 | cut -c1-220
