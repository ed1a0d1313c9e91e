#!/usr/bin/env bash
# A local 3-member MetaStore cluster on loopback.
#   scripts/cluster.sh start    build (release) and start members m1..m3
#   scripts/cluster.sh status   etcdctl endpoint status for every member
#   scripts/cluster.sh stop     stop the members (SIGTERM by PID, then SIGKILL)
# Clients: 127.0.0.1:12379, :22379, :32379. Peers: :12380, :22380, :32380.
# Data and logs: ./cluster.metastore/ (override with CLUSTER_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${CLUSTER_DIR:-$PWD/cluster.metastore}"
ENDPOINTS="127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"
CLUSTER="m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"

start() {
  scripts/setup.sh >/dev/null
  . scripts/env.sh
  cargo build --release --bin metastore
  local bin="$CARGO_TARGET_DIR/release/metastore"
  mkdir -p "$DIR"
  for i in 1 2 3; do
    if [ -f "$DIR/m$i.pid" ] && kill -0 "$(cat "$DIR/m$i.pid")" 2>/dev/null; then
      echo "m$i already running (pid $(cat "$DIR/m$i.pid"))"
      continue
    fi
    "$bin" --name "m$i" --data-dir "$DIR/m$i" \
      --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
      --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
      --initial-cluster "$CLUSTER" --initial-cluster-token metastore-local \
      >>"$DIR/m$i.log" 2>&1 &
    echo $! >"$DIR/m$i.pid"
    echo "m$i started (pid $!, log $DIR/m$i.log)"
  done
  echo "endpoints: $ENDPOINTS"
}

status() {
  ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" endpoint status -w table || true
  ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" member list -w table || true
}

stop() {
  for i in 1 2 3; do
    local f="$DIR/m$i.pid"
    [ -f "$f" ] || continue
    local pid
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "m$i stopped"
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
