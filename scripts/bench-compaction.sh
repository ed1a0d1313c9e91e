#!/usr/bin/env bash
# Put latency while a long history is compacted (issue 12, item 6): for each
# server and member count, load N revisions (puts over 10,000 keys), sample
# sequential small puts for a baseline window, then compact everything but
# the last revision while sampling goes on, and report the worst and p99 put
# latency of both windows, how long the Compact RPC took, and whether an
# election happened (raft term change on any member).
#
#   scripts/bench-compaction.sh [--revisions N] [--members "1 3"]
#                               [--server NAME=BINARY]... [--storage memory|rocksdb]
#                               [--window SECONDS] [--no-build]
#
#   --revisions N   history length (default 2000000, the issue's figure)
#   --members L     member counts to run (default 3)
#   --server N=B    a server to measure: NAME starting with "etcd" runs B as
#                   etcd, anything else as MetaStore (repeatable; default:
#                   metastore=<this tree's release build> etcd=/usr/bin/etcd)
#   --storage E     MetaStore's engine (default memory)
#   --window S      seconds sampled after the compaction starts (default 40:
#                   both servers delete 1,000 revisions per batch with 10 ms
#                   pauses, 2 M revisions take 20 s and more)
#   --no-build      use the release binaries already in $CARGO_TARGET_DIR
#
# Servers run on loopback free ports with fresh temp data dirs and default
# flags (fsync on, etcd's default timeouts); metastore-bench is the client.
# Results: $WORK/results.jsonl, the table on stdout. Servers are stopped by PID.
# Needs: etcdctl (Debian etcd-client), python3; etcd (Debian etcd-server) to
# measure etcd.
set -euo pipefail
cd "$(dirname "$0")/.."

REVISIONS=2000000
MEMBERS="3"
STORAGE=memory
WINDOW=40
BUILD=1
SERVERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --revisions) shift; REVISIONS="$1" ;;
    --members) shift; MEMBERS="$1" ;;
    --server) shift; SERVERS+=("$1") ;;
    --storage) shift; STORAGE="$1" ;;
    --window) shift; WINDOW="$1" ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# A clean environment (no ETCD_* flags leaking in) and the release binaries
# (built with RocksDB unless --no-build): MS_BIN, BENCH.
export BUILD
. scripts/bench-env.sh >&2
BENCH_BIN="$BENCH"
if [ ${#SERVERS[@]} -eq 0 ]; then
  SERVERS=("metastore=$MS_BIN")
  [ -x /usr/bin/etcd ] && SERVERS+=("etcd=/usr/bin/etcd")
fi

WORK="$(mktemp -d /tmp/bench-compaction.XXXXXX)"
RESULTS="$WORK/results.jsonl"
PIDS=()
ENDPOINTS=""
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap 'stop_servers; rm -rf "$WORK/data"' EXIT
trap 'exit 130' INT TERM

# start_servers NAME BINARY N: starts N members, sets ENDPOINTS and PIDS.
start_servers() {
  local name="$1" bin="$2" n="$3" i
  local -a ports
  read -r -a ports <<<"$(python3 scripts/free-ports.py $((2 * n)))"
  local cluster="" eps=""
  for ((i = 0; i < n; i++)); do
    cluster+="${cluster:+,}m$((i + 1))=http://127.0.0.1:${ports[$((2 * i + 1))]}"
    eps+="${eps:+,}127.0.0.1:${ports[$((2 * i))]}"
  done
  ENDPOINTS="$eps"
  mkdir -p "$WORK/data/$name-$n" "$WORK/logs"
  for ((i = 0; i < n; i++)); do
    local m="m$((i + 1))" c="${ports[$((2 * i))]}" p="${ports[$((2 * i + 1))]}"
    local -a common=(--name "$m" --data-dir "$WORK/data/$name-$n/$m"
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c"
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p"
      --initial-cluster "$cluster" --initial-cluster-token bench --initial-cluster-state new)
    if [[ "$name" == etcd* ]]; then
      # etcd 3.4 counts 1 M revisions as above its default 2 GB quota: no.
      "$bin" "${common[@]}" --quota-backend-bytes 8589934592 --logger zap --log-outputs stderr \
        --log-level warn >>"$WORK/logs/$name-$n-$m.log" 2>&1 &
    else
      "$bin" "${common[@]}" --storage "$STORAGE" --quota-backend-bytes 8589934592 --log-level warn \
        >>"$WORK/logs/$name-$n-$m.log" 2>&1 &
    fi
    PIDS+=("$!")
  done
  local deadline=$((SECONDS + 60))
  until etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "$name did not become healthy; logs in $WORK/logs" >&2; exit 1; }
    sleep 0.2
  done
}

# status_json: every member's endpoint status, as JSON.
status_json() { etcdctl --endpoints "$ENDPOINTS" --command-timeout 10s endpoint status -w json; }

leader_endpoint() {
  status_json | python3 -c 'import json,sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["leader"] == s["header"]["member_id"]: print(e["Endpoint"])'
}

terms() { status_json | python3 -c 'import json,sys; print(" ".join(str(e["Status"]["raftTerm"]) for e in json.load(sys.stdin)))'; }

probe() { # probe SECONDS: sequential 8-byte puts to the leader, one JSON line
  "$BENCH_BIN" --endpoints "$LEADER" --conns 1 --clients 1 --duration "$1s" --json \
    put --key-size 8 --val-size 8 --key-space-size 1
}

for spec in "${SERVERS[@]}"; do
  name="${spec%%=*}" bin="${spec#*=}"
  for n in $MEMBERS; do
    log "$name, $n member(s): loading $REVISIONS revisions"
    start_servers "$name" "$bin" "$n"
    "$BENCH_BIN" --endpoints "$ENDPOINTS" --conns 8 --clients 64 --total "$REVISIONS" --timeout 1800s --json \
      put --key-size 16 --val-size 100 --key-space-size 10000 --sequential-keys >"$WORK/load-$name-$n.json"
    LEADER="$(leader_endpoint)"
    rev="$(etcdctl --endpoints "$LEADER" get probe-rev-marker -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')"
    log "$name, $n member(s): baseline"
    base="$(probe 10)"
    terms_before="$(terms)"
    log "$name, $n member(s): compacting at $rev"
    probe "$WINDOW" >"$WORK/during-$name-$n.json" &
    prober=$!
    sleep 1
    t0=$(date +%s.%N)
    etcdctl --endpoints "$LEADER" --command-timeout 120s compact "$rev" >/dev/null
    t1=$(date +%s.%N)
    wait "$prober"
    terms_after="$(terms)"
    python3 - "$name" "$n" "$REVISIONS" "$base" "$WORK/during-$name-$n.json" "$t0" "$t1" "$terms_before" "$terms_after" \
      >>"$RESULTS" <<'EOF'
import json, sys
name, n, revs, base, during_path, t0, t1, tb, ta = sys.argv[1:]
base = json.loads(base)["latency_ms"]
during = json.loads(open(during_path).read())["latency_ms"]
print(json.dumps({
    "server": name, "members": int(n), "revisions": int(revs),
    "compact_rpc_ms": round((float(t1) - float(t0)) * 1000, 1),
    "baseline_p99_ms": base["p99"], "baseline_max_ms": base["max"],
    "during_p99_ms": during["p99"], "during_max_ms": during["max"],
    "elections": tb != ta, "terms": [tb, ta],
}))
EOF
    stop_servers
    rm -rf "$WORK/data"
  done
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'server':<16}{'members':>8}{'revisions':>11}{'compact RPC':>13}{'base p99':>10}{'base max':>10}"
      f"{'during p99':>12}{'during max':>12}{'election':>10}")
for r in rows:
    print(f"{r['server']:<16}{r['members']:>8}{r['revisions']:>11}{r['compact_rpc_ms']:>11.1f}ms"
          f"{r['baseline_p99_ms']:>8.1f}ms{r['baseline_max_ms']:>8.1f}ms{r['during_p99_ms']:>10.1f}ms"
          f"{r['during_max_ms']:>10.1f}ms{('yes' if r['elections'] else 'no'):>10}")
EOF
log "results in $RESULTS"
