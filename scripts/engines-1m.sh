#!/usr/bin/env bash
# The two engines side by side holding 1,000,000 keys: for each of memory and
# rocksdb, a fresh single member on a loopback port gets 1M puts of 8 B keys
# and 256 B values (metastore-bench, 1,000 clients over 100 connections);
# then we read its peak and current RSS and the data dir's size on disk,
# stop it with SIGTERM and time the restart until it answers a linearizable
# read, read the RSS again, and do the same after a kill -9.
#
#   scripts/engines-1m.sh [--keys N] [--no-build]
#
# Prints a table; one JSON line per engine in $WORK/results.jsonl. Servers are
# stopped by PID. Needs etcdctl (Debian etcd-client) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000000
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) shift; [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--keys: a positive number" >&2; exit 2; }; KEYS="$1" ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

. scripts/bench-env.sh

WORK="$(mktemp -d "${TMPDIR:-/tmp}/engines-1m.XXXXXX")"
RESULTS="$WORK/results.jsonl"
PID=""
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
stop() {
  [ -n "$PID" ] || return 0
  kill "-$1" "$PID" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
trap 'stop KILL; rm -rf "$WORK/data"' EXIT

read -r CPORT PPORT <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"
EP="127.0.0.1:$CPORT"

status_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$PID/status"; }

# start ENGINE: starts the member (PID); READY_S = seconds until a linearizable read works.
start() {
  local t0 deadline
  t0="$(date +%s.%N)"
  "$MS_BIN" --name m1 --data-dir "$WORK/data/$1" --storage "$1" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "m1=http://127.0.0.1:$PPORT" --log-level warn >>"$WORK/$1.log" 2>&1 &
  PID=$!
  deadline=$((SECONDS + 600))
  until etcdctl --endpoints "$EP" --dial-timeout 1s --command-timeout 5s get --consistency=l probe >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { echo "$1 exited; see $WORK/$1.log" >&2; tail -n 20 "$WORK/$1.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "$1 not ready in 600 s" >&2; exit 1; }
    sleep 0.05
  done
  READY_S="$(python3 -c "import time; print(round(time.time() - $t0, 2))")"
}

for engine in memory rocksdb; do
  log "== $engine: loading $KEYS keys"
  start "$engine"
  t0="$(date +%s.%N)"
  "$BENCH" --json --timeout 1800s --endpoints "$EP" --conns 100 --clients 1000 --total "$KEYS" \
    put --key-size 8 --val-size 256 --sequential-keys --key-space-size "$KEYS" >"$WORK/$engine-put.json"
  load_s="$(python3 -c "import time; print(round(time.time() - $t0, 1))")"
  sleep 2
  hwm="$(status_kb VmHWM)"; rss="$(status_kb VmRSS)"
  stop TERM
  disk="$(du -sk "$WORK/data/$engine" | cut -f1)"
  log "== $engine: restart after SIGTERM"
  start "$engine"
  restart_s="$READY_S"
  sleep 2
  rss_restart="$(status_kb VmRSS)"; hwm_restart="$(status_kb VmHWM)"
  count="$(etcdctl --endpoints "$EP" --command-timeout 60s get "" --prefix --limit 1 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')"
  stop KILL
  log "== $engine: restart after kill -9"
  start "$engine"
  crash_s="$READY_S"
  stop TERM
  printf '{"engine":"%s","keys":%s,"count_after_restart":%s,"load_s":%s,"hwm_kb":%s,"rss_kb":%s,"disk_kb":%s,"restart_s":%s,"restart_hwm_kb":%s,"restart_rss_kb":%s,"crash_restart_s":%s,"put":%s}\n' \
    "$engine" "$KEYS" "$count" "$load_s" "$hwm" "$rss" "$disk" "$restart_s" "$hwm_restart" "$rss_restart" "$crash_s" \
    "$(cat "$WORK/$engine-put.json")" >>"$RESULTS"
  rm -rf "$WORK/data/$engine"
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mib = lambda kb: f"{kb / 1024:.0f}"
print(f"{'':34}" + "".join(f"{r['engine']:>12}" for r in rows))
for label, f in [
    ("keys after restart", lambda r: str(r["count_after_restart"])),
    ("load: puts/s", lambda r: f"{r['put'].get('ops_per_s', 0):.0f}"),
    ("peak RSS while loading, MiB", lambda r: mib(r["hwm_kb"])),
    ("RSS after loading, MiB", lambda r: mib(r["rss_kb"])),
    ("data dir on disk, MiB", lambda r: mib(r["disk_kb"])),
    ("restart (SIGTERM) to first read, s", lambda r: str(r["restart_s"])),
    ("peak RSS during restart, MiB", lambda r: mib(r["restart_hwm_kb"])),
    ("RSS after restart, MiB", lambda r: mib(r["restart_rss_kb"])),
    ("restart after kill -9, s", lambda r: str(r["crash_restart_s"])),
]:
    print(f"{label:34}" + "".join(f"{f(r):>12}" for r in rows))
EOF
log "results: $RESULTS"
