#!/usr/bin/env bash
# Snapshots of 1,000,000 keys, MetaStore (memory and rocksdb engines) and
# etcd side by side: each server, fresh on a loopback port, gets 1M puts of
# 8 B keys and 256 B values (metastore-bench, 1,000 clients); then
# `etcdctl snapshot save` runs while the server's RSS is sampled every 20 ms.
# Reported: RSS before and the rise during the save, save time and file size,
# `etcdctl snapshot status` of the file, and the time to restore the file
# offline with `metastore snapshot restore` and with `etcdctl snapshot restore`.
#
#   scripts/snapshot-1m.sh [--keys N] [--no-build]
#
# Prints a table; one JSON line per server in $WORK/results.jsonl. Servers are
# stopped by PID. Needs etcd, etcdctl and python3.
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

WORK="$(mktemp -d "${TMPDIR:-/tmp}/snapshot-1m.XXXXXX")"
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
trap 'stop KILL; rm -rf "$WORK/data" "$WORK"/*.db' EXIT

read -r CPORT PPORT <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"
EP="127.0.0.1:$CPORT"
PEER="http://127.0.0.1:$PPORT"
now() { date +%s.%N; }
since() { python3 -c "import time; print(round(time.time() - $1, 2))"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$PID/status"; }

# start NAME: starts server NAME (metastore-memory, metastore-rocksdb, etcd).
start() {
  local common=(--name m1 --data-dir "$WORK/data/$1" --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP"
    --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" --initial-cluster "m1=$PEER")
  case "$1" in
    etcd) ETCD_UNSUPPORTED_ARCH="$(uname -m | sed 's/x86_64/amd64/')" etcd "${common[@]}" --quota-backend-bytes 8589934592 --log-level warn >>"$WORK/$1.log" 2>&1 & ;;
    metastore-*) "$MS_BIN" "${common[@]}" --storage "${1#metastore-}" --log-level warn >>"$WORK/$1.log" 2>&1 & ;;
  esac
  PID=$!
  local deadline=$((SECONDS + 300))
  until etcdctl --endpoints "$EP" --dial-timeout 1s --command-timeout 5s get --consistency=l probe >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { echo "$1 exited; see $WORK/$1.log" >&2; tail -n 20 "$WORK/$1.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "$1 not ready in 300 s" >&2; exit 1; }
    sleep 0.05
  done
}

for server in metastore-memory metastore-rocksdb etcd; do
  log "== $server: loading $KEYS keys"
  start "$server"
  "$BENCH" --json --timeout 1800s --endpoints "$EP" --conns 100 --clients 1000 --total "$KEYS" \
    put --key-size 8 --val-size 256 --sequential-keys --key-space-size "$KEYS" >"$WORK/$server-put.json"
  sleep 2
  before="$(rss_kb)"
  peak_file="$WORK/$server-peak"
  echo "$before" >"$peak_file"
  ( peak="$before"; while kill -0 "$PID" 2>/dev/null && [ ! -e "$WORK/stop-sampling" ]; do
      r="$(awk '$1 == "VmRSS:" {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)"
      [ "${r:-0}" -gt "$peak" ] && { peak="$r"; echo "$peak" >"$peak_file"; }
      sleep 0.02
    done ) &
  sampler=$!
  log "== $server: snapshot save"
  t0="$(now)"
  etcdctl --endpoints "$EP" --command-timeout 600s snapshot save "$WORK/$server.db" >/dev/null 2>&1
  save_s="$(since "$t0")"
  touch "$WORK/stop-sampling"; wait "$sampler" || true; rm -f "$WORK/stop-sampling"
  peak="$(cat "$peak_file")"
  size="$(stat -c %s "$WORK/$server.db")"
  status="$(etcdctl snapshot status -w json "$WORK/$server.db")"
  stop TERM
  rm -rf "$WORK/data/$server"
  log "== $server: offline restores of its file"
  t0="$(now)"
  "$MS_BIN" snapshot restore "$WORK/$server.db" --data-dir "$WORK/data/restored-ms" --name m1 \
    --initial-cluster "m1=$PEER" --initial-advertise-peer-urls "$PEER" >/dev/null
  ms_restore_s="$(since "$t0")"
  t0="$(now)"
  etcdctl snapshot restore "$WORK/$server.db" --data-dir "$WORK/data/restored-etcd" --name m1 \
    --initial-cluster "m1=$PEER" --initial-advertise-peer-urls "$PEER" >/dev/null 2>&1
  etcd_restore_s="$(since "$t0")"
  rm -rf "$WORK/data/restored-ms" "$WORK/data/restored-etcd" "$WORK/$server.db"
  printf '{"server":"%s","keys":%s,"rss_before_kb":%s,"rss_peak_kb":%s,"save_s":%s,"size":%s,"status":%s,"metastore_restore_s":%s,"etcd_restore_s":%s}\n' \
    "$server" "$KEYS" "$before" "$peak" "$save_s" "$size" "$status" "$ms_restore_s" "$etcd_restore_s" >>"$RESULTS"
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mib = lambda kb: f"{kb / 1024:.0f}"
print(f"{'':40}" + "".join(f"{r['server']:>19}" for r in rows))
for label, f in [
    ("RSS before the save, MiB", lambda r: mib(r["rss_before_kb"])),
    ("RSS rise during the save, MiB", lambda r: mib(r["rss_peak_kb"] - r["rss_before_kb"])),
    ("snapshot save, s", lambda r: str(r["save_s"])),
    ("file size, MiB", lambda r: f"{r['size'] / 2**20:.0f}"),
    ("status: revision", lambda r: str(r["status"]["revision"])),
    ("status: total keys", lambda r: str(r["status"]["totalKey"])),
    ("metastore snapshot restore, s", lambda r: str(r["metastore_restore_s"])),
    ("etcdctl snapshot restore, s", lambda r: str(r["etcd_restore_s"])),
]:
    print(f"{label:40}" + "".join(f"{f(r):>19}" for r in rows))
EOF
log "results: $RESULTS"
