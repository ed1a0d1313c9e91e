#!/usr/bin/env bash
# Side-by-side benchmark: Debian's etcd and MetaStore, one after the other, on
# loopback free ports, fresh temp data dirs, equal durability (both fsync every
# write: etcd's default and MetaStore's default), the same metastore-bench
# workloads against each. Prints a table with MetaStore/etcd ratios, the peak
# RSS (VmHWM) and CPU time of each server, and checks issue 6's targets.
#
#   scripts/bench-vs-etcd.sh [--quick] [--mode single|cluster|both] [--rounds N]
#                            [--rss-1m | --rss-1m-only] [--storage memory|rocksdb]
#                            [--no-build] [--keep]
#
#   --quick        smaller totals, one round (~2 minutes for both modes)
#   --mode M       single (1 member), cluster (3 members on loopback) or both (default)
#   --rounds N     run each mode N times, alternating which server goes first
#                  (etcd first in odd rounds), and report medians (default: 2, quick: 1)
#   --rss-1m       also put 1,000,000 keys of 256 B into a fresh single member of each
#                  and read its VmRSS/VmHWM (adds a few minutes)
#   --rss-1m-only  only that step
#   --storage E    MetaStore's engine (default memory; rocksdb builds with --features rocksdb)
#   --no-build     use the release binaries already in $CARGO_TARGET_DIR
#   --keep         keep the data dirs (server logs are always kept)
#
# Results: one JSON line per measurement in $WORK/results.jsonl, the table in
# $WORK/table.txt ($WORK is printed at the end). Servers are stopped by PID.
# The load generator runs on the same machine: its CPU time and the CPU time
# of everything else on the machine ("other CPU") are reported per workload.
# Needs: /usr/bin/etcd and etcdctl (Debian etcd-server, etcd-client), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
MODES="single cluster"
ROUNDS=""
RSS1M=0
RSS1M_ONLY=0
BUILD=1
KEEP=0
STORAGE=memory
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --mode)
      shift
      case "${1:-}" in
        single) MODES="single" ;;
        cluster) MODES="cluster" ;;
        both) MODES="single cluster" ;;
        *) echo "--mode: single, cluster or both" >&2; exit 2 ;;
      esac ;;
    --rounds)
      shift
      [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: a positive number" >&2; exit 2; }
      ROUNDS="$1" ;;
    --rss-1m) RSS1M=1 ;;
    --rss-1m-only) RSS1M=1; RSS1M_ONLY=1 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --storage)
      shift
      case "${1:-}" in
        memory|rocksdb) STORAGE="$1" ;;
        *) echo "--storage: memory or rocksdb" >&2; exit 2 ;;
      esac ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

for tool in python3 etcdctl; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
ETCD_BIN=/usr/bin/etcd
[ -x "$ETCD_BIN" ] || { echo "needs $ETCD_BIN (apt-get install etcd-server)" >&2; exit 1; }

. scripts/bench-env.sh

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-etcd.XXXXXX")"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PIDS=()
CLK_TCK="$(getconf CLK_TCK)"

# Totals. Full: ~10 min for both modes and 2 rounds on 2 cores; quick: ~2 min.
if [ "$QUICK" = 1 ]; then
  N_PUT=30000; N_PUT1=1000; N_RANGE=30000; N_TXN=10000; N_LEASE=20000; WATCH_PUTS=100; BENCH_TIMEOUT=120s
  ROUNDS="${ROUNDS:-1}"
else
  N_PUT=100000; N_PUT1=3000; N_RANGE=100000; N_TXN=30000; N_LEASE=50000; WATCH_PUTS=300; BENCH_TIMEOUT=300s
  ROUNDS="${ROUNDS:-2}"
fi
KEYSPACE=$N_PUT # the put workload writes every key once; range reads random ones of them

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop in 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  stop_servers
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK/data"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N free loopback TCP ports (bound together, so distinct; released just before use).
free_ports() { python3 scripts/free-ports.py "$1"; }

# start_servers etcd|metastore N: starts N members, sets ENDPOINTS and PIDS.
start_servers() {
  local kind="$1" n="$2" i
  local -a ports
  read -r -a ports <<<"$(free_ports $((2 * n)))"
  local cluster="" eps=""
  for ((i = 0; i < n; i++)); do
    cluster+="${cluster:+,}m$((i + 1))=http://127.0.0.1:${ports[$((2 * i + 1))]}"
    eps+="${eps:+,}127.0.0.1:${ports[$((2 * i))]}"
  done
  ENDPOINTS="$eps"
  rm -rf "$WORK/data/$kind"
  mkdir -p "$WORK/data/$kind" "$WORK/logs"
  for ((i = 0; i < n; i++)); do
    local name="m$((i + 1))" c="${ports[$((2 * i))]}" p="${ports[$((2 * i + 1))]}"
    local -a common=(--name "$name" --data-dir "$WORK/data/$kind/$name"
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c"
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p"
      --initial-cluster "$cluster" --initial-cluster-token bench --initial-cluster-state new)
    if [ "$kind" = etcd ]; then
      "$ETCD_BIN" "${common[@]}" --logger zap --log-outputs stderr --log-level warn \
        >>"$WORK/logs/$kind-$n-$name.log" 2>&1 &
    else
      "$MS_BIN" "${common[@]}" --storage "$STORAGE" --log-level warn >>"$WORK/logs/$kind-$n-$name.log" 2>&1 &
    fi
    PIDS+=("$!")
  done
  # Healthy = every member answers a linearizable read (needs a leader).
  local deadline=$((SECONDS + 60)) pid
  until etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$kind ($n members) did not become healthy in 60 s; logs in $WORK/logs" >&2
      tail -n 20 "$WORK/logs/$kind-$n-"*.log >&2 || true
      exit 1
    fi
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "$kind exited at start; logs in $WORK/logs" >&2; tail -n 20 "$WORK/logs/$kind-$n-"*.log >&2; exit 1; }
    done
    sleep 0.2
  done
}

cpu_ticks() { # utime+stime of all PIDS, in clock ticks
  local t=0 pid
  for pid in "${PIDS[@]}"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$t"
}

machine_busy_ticks() { # non-idle CPU ticks of the whole machine (all cores)
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

status_kb() { # status_kb FIELD: the largest /proc/<pid>/status FIELD (kB) over PIDS
  local m=0 pid v
  for pid in "${PIDS[@]}"; do
    v="$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status")"
    [ "${v:-0}" -gt "$m" ] && m="$v"
  done
  echo "$m"
}

# run_wl MODE ROUND KIND NAME BENCH-ARGS...: one workload, one JSON line in RESULTS.
run_wl() {
  local mode="$1" round="$2" kind="$3" name="$4"
  shift 4
  log "$mode #$round / $kind: $name"
  local t0 t1 m0 m1 out rc=0 start_s end_s
  t0="$(cpu_ticks)"
  m0="$(machine_busy_ticks)"
  start_s="$(date +%s.%N)"
  out="$("$BENCH" --json --timeout "$BENCH_TIMEOUT" "$@")" || rc=$?
  end_s="$(date +%s.%N)"
  m1="$(machine_busy_ticks)"
  t1="$(cpu_ticks)"
  if [ -z "$out" ]; then
    out='{"ok":0,"errors_total":1,"errors":{"metastore-bench failed":1}}'
  fi
  printf '{"mode":"%s","round":%d,"server":"%s","name":"%s","server_cpu_s":%s,"machine_busy_s":%s,"wall_s":%s,"exit":%d,"result":%s}\n' \
    "$mode" "$round" "$kind" "$name" \
    "$(python3 -c "print(($t1 - $t0) / $CLK_TCK)")" "$(python3 -c "print(($m1 - $m0) / $CLK_TCK)")" \
    "$(python3 -c "print(round($end_s - $start_s, 3))")" "$rc" "$out" >>"$RESULTS"
  python3 - "$out" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1]); l = r.get("latency_ms", {})
print("    %.0f ops/s  p50 %.3f  p99 %.3f  p99.9 %.3f ms  errors %d" % (
    r.get("ops_per_s", 0), l.get("p50", 0), l.get("p99", 0), l.get("p99_9", 0), r.get("errors_total", 0)))
for m, n in list(r.get("errors", {}).items())[:3]:
    print("      %d x %s" % (n, m))
EOF
}

record() { # record MODE ROUND KIND NAME JSON-OBJECT-BODY
  printf '{"mode":"%s","round":%d,"server":"%s","name":"%s",%s}\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
}

workloads() { # workloads MODE ROUND KIND
  local m=("$1" "$2" "$3") leader_only=()
  [ "$1" = cluster ] && leader_only=(--target-leader)
  local eps=(--endpoints "$ENDPOINTS")
  run_wl "${m[@]}" put-1000c "${eps[@]}" --conns 100 --clients 1000 --total "$N_PUT" \
    put --key-size 8 --val-size 256 --sequential-keys --key-space-size "$KEYSPACE"
  run_wl "${m[@]}" put-1c "${eps[@]}" "${leader_only[@]}" --conns 1 --clients 1 --total "$N_PUT1" \
    put --key-size 8 --val-size 256 --key-space-size "$KEYSPACE"
  run_wl "${m[@]}" range-l-1000c "${eps[@]}" --conns 100 --clients 1000 --total "$N_RANGE" \
    range --consistency l --key-size 8 --key-space-size "$KEYSPACE"
  run_wl "${m[@]}" range-s-1000c "${eps[@]}" --conns 100 --clients 1000 --total "$N_RANGE" \
    range --consistency s --key-size 8 --key-space-size "$KEYSPACE"
  run_wl "${m[@]}" txn-put-1000c "${eps[@]}" --conns 100 --clients 1000 --total "$N_TXN" \
    txn-put --key-size 8 --val-size 256 --key-space-size "$KEYSPACE"
  run_wl "${m[@]}" watch-1000w "${eps[@]}" --conns 10 \
    watch-latency --watchers 1000 --streams 10 --put-total "$WATCH_PUTS" --put-rate 100 --val-size 256
  run_wl "${m[@]}" lease-keepalive-100c "${eps[@]}" "${leader_only[@]}" --conns 10 --clients 100 --total "$N_LEASE" \
    lease-keepalive
}

# The disk: fdatasync after a 512 B write, appending (the file grows, so its
# size is metadata to sync too, as in MetaStore's WAL) and overwriting a
# preallocated file (as in etcd's WAL). Measured before and after the runs:
# other work on the machine makes it vary.
measure_fsync() { # measure_fsync NAME
  log "fdatasync on $(df -P "$WORK" | awk 'NR==2 {print $1}') ($1)"
  local out
  out="$(python3 - "$WORK" <<'EOF'
import json, os, sys, time
def run(path, prealloc, n=1000):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if prealloc:
        os.posix_fallocate(fd, 0, 64 << 20)
        os.fsync(fd)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        os.pwrite(fd, b"x" * 512, i * 512)
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000)
    os.close(fd)
    os.unlink(path)
    lat.sort()
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1], "mean": sum(lat) / len(lat)}
print(json.dumps({"append_ms": run(os.path.join(sys.argv[1], "fsync.append"), False),
                  "prealloc_ms": run(os.path.join(sys.argv[1], "fsync.prealloc"), True)}))
EOF
)"
  record all 0 disk "$1" "\"result\":$out"
  log "    $out"
}

mkdir -p "$WORK/data"
log "work dir $WORK; $(nproc) cores; quick=$QUICK; modes: $MODES; rounds: $ROUNDS; rss-1m: $RSS1M; storage: $STORAGE"
measure_fsync fdatasync-before

if [ "$RSS1M_ONLY" = 0 ]; then
  for mode in $MODES; do
    n=1
    [ "$mode" = cluster ] && n=3
    for ((round = 1; round <= ROUNDS; round++)); do
      order="etcd metastore"
      [ $((round % 2)) = 0 ] && order="metastore etcd"
      for kind in $order; do
        log "== $mode #$round: starting $kind ($n member(s))"
        start_servers "$kind" "$n"
        workloads "$mode" "$round" "$kind"
        record "$mode" "$round" "$kind" peak-rss \
          "\"hwm_kb\":$(status_kb VmHWM),\"rss_kb\":$(status_kb VmRSS),\"data_kb\":$(du -sk "$WORK/data/$kind" | cut -f1)"
        stop_servers
        rm -rf "$WORK/data/$kind"
      done
    done
  done
fi

if [ "$RSS1M" = 1 ]; then
  for kind in etcd metastore; do
    log "== rss-1m: starting $kind"
    start_servers "$kind" 1
    BENCH_TIMEOUT=900s run_wl rss-1m 1 "$kind" put-1m --endpoints "$ENDPOINTS" --conns 100 --clients 1000 \
      --total 1000000 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 1000000
    sleep 2
    record rss-1m 1 "$kind" rss "\"hwm_kb\":$(status_kb VmHWM),\"rss_kb\":$(status_kb VmRSS),\"anon_kb\":$(status_kb RssAnon),\"file_kb\":$(status_kb RssFile),\"data_kb\":$(du -sk "$WORK/data/$kind" | cut -f1)"
    stop_servers
    rm -rf "$WORK/data/$kind"
  done
fi

measure_fsync fdatasync-after

python3 - "$RESULTS" "$(nproc)" <<'EOF' | tee "$WORK/table.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ncpu = int(sys.argv[2])
by = {}
for r in rows:
    by.setdefault((r["mode"], r["server"], r["name"]), []).append(r)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else 0

def ratio(m, e):
    return "%.2f" % (m / e) if e else "-"

def dig(r, *path):
    v = r
    for k in path:
        v = v.get(k, {}) if isinstance(v, dict) else {}
    return v if isinstance(v, (int, float)) else None

fs = None
for when in ["before", "after"]:
    for r in by.get(("all", "disk", "fdatasync-" + when), []):
        f = r["result"]
        print("disk fdatasync of a 512 B write, %s the runs: append p50 %.3f ms (p99 %.3f), preallocated p50 %.3f ms (p99 %.3f)" % (
            when, f["append_ms"]["p50"], f["append_ms"]["p99"], f["prealloc_ms"]["p50"], f["prealloc_ms"]["p99"]))
        # The disk's fdatasync time for the target: the faster of the two measurements.
        if fs is None or f["append_ms"]["p50"] < fs["append_ms"]["p50"]:
            fs = f

checks = []
for mode in ["single", "cluster"]:
    names = []
    for r in rows:
        if r["mode"] == mode and r["server"] == "etcd" and "result" in r and r["name"] not in names:
            names.append(r["name"])
    if not names:
        continue
    rounds = len(by.get((mode, "etcd", names[0]), []))
    print("\n## %s (%s), median of %d round(s)\n" % (mode, "1 member" if mode == "single" else "3 members", rounds))
    print("| workload | metric | etcd | MetaStore | MetaStore/etcd | per-round ratios |")
    print("|---|---|---:|---:|---:|---|")

    def metric(name, server, fn):
        return [fn(r) for r in by.get((mode, server, name), [])]

    for name in names:
        E, M = by.get((mode, "etcd", name), []), by.get((mode, "metastore", name), [])
        if not E or not M:
            continue
        ms = []
        if not name.startswith("watch"):
            ms.append(("ops/s", lambda r: dig(r, "result", "ops_per_s"), "%.0f"))
        for p in ["p50", "p99", "p99_9"]:
            ms.append((p.replace("_", ".") + " ms", lambda r, p=p: dig(r, "result", "latency_ms", p), "%.3f"))
        if name.startswith("watch"):
            ms.append(("p99 from put start ms", lambda r: dig(r, "result", "extra_latency_ms", "event after put start", "p99"), "%.3f"))
        ms.append(("server CPU us/op", lambda r: 1e6 * r["server_cpu_s"] / max(dig(r, "result", "ok") or 1, 1), "%.1f"))
        ms.append(("bench CPU us/op", lambda r: 1e6 * (dig(r, "result", "client_cpu_s") or 0) / max(dig(r, "result", "ok") or 1, 1), "%.1f"))
        ms.append(("other CPU (cores)", lambda r: max(r["machine_busy_s"] - r["server_cpu_s"] - (dig(r, "result", "client_cpu_s") or 0), 0) / max(r["wall_s"], 1e-9), "%.2f"))
        ms.append(("errors", lambda r: dig(r, "result", "errors_total") or 0, "%d"))
        for label, fn, f in ms:
            ev, mv = metric(name, "etcd", fn), metric(name, "metastore", fn)
            per_round = " ".join(ratio(m, e) for e, m in zip(ev, mv)) if label not in ("errors", "other CPU (cores)") and len(ev) > 1 else ""
            show_ratio = label not in ("errors", "other CPU (cores)")
            print("| %s | %s | %s | %s | %s | %s |" % (name, label, f % med(ev), f % med(mv), ratio(med(mv), med(ev)) if show_ratio else "", per_round))
    E, M = by.get((mode, "etcd", "peak-rss"), []), by.get((mode, "metastore", "peak-rss"), [])
    if E and M:
        eh, mh = max(r["hwm_kb"] for r in E), max(r["hwm_kb"] for r in M)
        print("| (whole run) | peak RSS MiB (largest member) | %.1f | %.1f | %s | |" % (eh / 1024, mh / 1024, ratio(mh, eh)))

    def mget(server, name, *path):
        return med([dig(r, "result", *path) for r in by.get((mode, server, name), [])])
    et, mt = mget("etcd", "put-1000c", "ops_per_s"), mget("metastore", "put-1000c", "ops_per_s")
    checks.append((mode, "put, 1000 clients: throughput >= 2x etcd", et and mt / et >= 2, ratio(mt, et) + "x"))
    ep, mp = mget("etcd", "put-1000c", "latency_ms", "p99"), mget("metastore", "put-1000c", "latency_ms", "p99")
    checks.append((mode, "put, 1000 clients: p99 <= etcd's", ep and mp <= ep, "%.2f vs %.2f ms" % (mp, ep)))
    e1, m1 = mget("etcd", "put-1c", "latency_ms", "p50"), mget("metastore", "put-1c", "latency_ms", "p50")
    checks.append((mode, "put, 1 client: p50 latency <= etcd's", e1 and m1 <= e1, "%.3f vs %.3f ms" % (m1, e1)))
    if fs:
        d = fs["append_ms"]["p50"]
        checks.append((mode, "put, 1 client: p50 <= 1.3x fdatasync (append, %.3f ms)" % d, m1 <= 1.3 * d, "%.2fx" % (m1 / d if d else 0)))
    for c in "ls":
        n = "range-%s-1000c" % c
        er_, mr_ = mget("etcd", n, "ops_per_s"), mget("metastore", n, "ops_per_s")
        checks.append((mode, "range %s, 1000 clients: >= 1.5x etcd" % ("linearizable" if c == "l" else "serializable"), er_ and mr_ / er_ >= 1.5, ratio(mr_, er_) + "x"))

E, M = by.get(("rss-1m", "etcd", "rss"), []), by.get(("rss-1m", "metastore", "rss"), [])
if E and M:
    e, m = E[-1], M[-1]
    print("\n## 1M keys of 256 B, 1 member\n")
    print("| | etcd | MetaStore | MetaStore/etcd |")
    print("|---|---:|---:|---:|")
    for k, label in [("rss_kb", "RSS MiB after the load"), ("anon_kb", "  of which anonymous (heap)"), ("file_kb", "  of which file-backed (mmap)"),
                     ("hwm_kb", "peak RSS MiB (VmHWM)"), ("data_kb", "data dir MiB")]:
        if k not in e or k not in m:
            continue
        print("| %s | %.1f | %.1f | %s |" % (label, e[k] / 1024, m[k] / 1024, ratio(m[k], e[k])))
    for s in ["etcd", "metastore"]:
        for r in by.get(("rss-1m", s, "put-1m"), []):
            res = r["result"]
            print("| put-1m on %s: %s ok, %s errors, %.0f ops/s, server CPU %.1f s | | | |" % (
                s, res.get("ok"), res.get("errors_total"), res.get("ops_per_s", 0), r["server_cpu_s"]))
    checks.append(("rss-1m", "peak RSS holding 1M keys <= 0.5x etcd", m["hwm_kb"] <= 0.5 * e["hwm_kb"], ratio(m["hwm_kb"], e["hwm_kb"]) + "x"))

if checks:
    print("\n## Targets (issue 6)\n")
    for mode, what, ok, detail in checks:
        print("- [%s] %s: %s (%s)" % ("x" if ok else " ", mode, what, detail))
EOF
log "results: $RESULTS, table: $WORK/table.txt, logs: $WORK/logs"
