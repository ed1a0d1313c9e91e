#!/usr/bin/env bash
# End-to-end test of Patroni (PostgreSQL HA) with DCS etcd3 against real etcd
# or MetaStore. Patroni's etcd3 client speaks etcd's gRPC-JSON gateway over
# HTTP (/v3/kv/range, /v3/lease/keepalive, /v3/watch, ...), so this exercises
# the gateway the way a production user does.
#
#   scripts/patroni.sh [--server etcd|metastore] [--members 1|3] [--binary PATH]
#
#   --server   DCS under test (default etcd: Debian's /usr/bin/etcd)
#   --members  DCS cluster size (default 1)
#   --binary   metastore binary (default
#              ${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}/debug/metastore)
#
# Two PostgreSQL 15 nodes (pg1, pg2), each run by its own Patroni as the
# `postgres` user (PostgreSQL refuses root), walk through:
#   1 dcs-up        DCS members up and healthy
#   2 bootstrap     one leader + one streaming replica; a row replicates
#   3 stays-up      the leader keeps its leader key for 2 x ttl, stays writable
#   4 switchover    patronictl switchover to the replica; old leader rejoins
#   5 dcs-kill      kill -9 the DCS leader (1 member: kill and restart it);
#                   a leader survives, never two primaries, writes work
#   6 failover      kill -9 the leader's postmaster and Patroni; the replica is
#                   promoted within ttl + a margin
#   7 rejoin        restart the killed Patroni; it rejoins as a streaming
#                   replica (pg_rewind if needed); a row replicates to it
# Each step prints `PASS <step> (<s>s)` or `FAIL <step>: <reason>`; a failure
# skips the steps after it. The last line is `patroni: N passed, N failed,
# N skipped`; exit 0 only if all passed.
#
# Everything listens on free loopback ports. Everything started is stopped on
# exit by recorded PID. The temp dir is removed on success, kept on failure
# (KEEP=1: always kept). PATRONI_LOG_LEVEL=DEBUG makes Patroni log every DCS
# request.
# Needs: patroni, postgresql (15), etcd-server, etcd-client (etcdctl), curl,
# python3, setpriv (util-linux); runs as root.
set -euo pipefail

SERVER=etcd
MEMBERS=1
BINARY="${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}/debug/metastore"
while [ $# -gt 0 ]; do
  case "$1" in
    --server) shift; [[ "${1:-}" =~ ^(etcd|metastore)$ ]] || { echo "--server: etcd or metastore" >&2; exit 2; }; SERVER="$1" ;;
    --members) shift; [[ "${1:-}" =~ ^[13]$ ]] || { echo "--members: 1 or 3" >&2; exit 2; }; MEMBERS="$1" ;;
    --binary) shift; BINARY="${1:?--binary needs a path}" ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
BINARY="$(realpath -m "$BINARY")" # before the cd: a relative --binary is from the caller's dir
cd "$(dirname "$0")/.."

# Patroni timing kept small so a run takes a few minutes. Patroni requires
# loop_wait + 2 * retry_timeout <= ttl.
TTL=15
LOOP_WAIT=3
RETRY_TIMEOUT=5
SCOPE=patroni-e2e
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PY=/usr/bin/python3 # Patroni's own interpreter: always there when Patroni is
[ -x "$PY" ] || PY=python3
export ETCDCTL_API=3

if [ "$SERVER" = metastore ]; then
  DCS_BIN="$BINARY"
else
  DCS_BIN=/usr/bin/etcd
fi
for tool in "$DCS_BIN" /usr/bin/patroni /usr/bin/patronictl etcdctl curl setpriv "$PG_BIN/postgres"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (Patroni runs as the postgres user through setpriv)" >&2; exit 2; }

# ---------------------------------------------------------------- state

WORK="$(mktemp -d "${TMPDIR:-/tmp}/patroni-e2e.XXXXXX")"
# PostgreSQL runs as postgres: it needs to traverse and write the work dir.
chown postgres:postgres "$WORK"
chmod 755 "$WORK"
mkdir -p "$WORK/dcs" "$WORK/run"
chown postgres:postgres "$WORK/run"

declare -a DCS_PID DCS_CPORT DCS_PPORT    # per DCS member, index 1..MEMBERS
declare -a PATRONI_PID PG_PORT REST_PORT  # per PostgreSQL node, index 1..2
declare -a STRAYS=()                      # orphans of a killed postmaster
PASSED=0 FAILED=0 SKIPPED=0
REASON=""

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >>"$WORK/test.log"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { "$PY" -c "print(f'{$(now) - $1:.1f}')"; }

# Free loopback ports, all bound at once so none is handed out twice. Other
# tests run in parallel: no fixed ports.
free_ports() { python3 scripts/free-ports.py "$1"; }

# Polls "$@" every 0.5 s until it succeeds; gives up after $1 seconds.
wait_for() {
  local timeout="$1"; shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# Sends signal $1 to PID $2 (if alive) and waits up to $3 s for it to go; then
# SIGKILL. Children of this shell are reaped so they do not linger as zombies;
# stderr is dropped so the shell's "Killed" job notices do not clutter output.
stop_pid() {
  local sig="$1" pid="$2" grace="${3:-10}"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; return 0; }
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" || true
} 2>/dev/null

# ---------------------------------------------------------------- DCS

dcs_endpoints() {
  local i eps=""
  for i in $(seq "$MEMBERS"); do eps+="${eps:+,}127.0.0.1:${DCS_CPORT[$i]}"; done
  echo "$eps"
}

# etcd and MetaStore take the same flags. A restart reuses the data dir, where
# the member's identity lives, so the --initial-* flags are then ignored.
start_dcs_member() {
  local i="$1" cluster="" j
  for j in $(seq "$MEMBERS"); do cluster+="${cluster:+,}m$j=http://127.0.0.1:${DCS_PPORT[$j]}"; done
  "$DCS_BIN" --name "m$i" --data-dir "$WORK/dcs/m$i" \
    --listen-client-urls "http://127.0.0.1:${DCS_CPORT[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${DCS_CPORT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${DCS_PPORT[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${DCS_PPORT[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "$SCOPE" \
    --heartbeat-interval 100 --election-timeout 1000 \
    >>"$WORK/dcs/m$i.log" 2>&1 &
  DCS_PID[$i]=$!
  log "DCS m$i started (pid ${DCS_PID[$i]})"
}

dcs_healthy() { etcdctl --endpoints "$(dcs_endpoints)" --command-timeout=2s endpoint health >/dev/null 2>&1; }

# Index of the member that is the Raft leader (empty if none is known).
dcs_leader() {
  local i st
  for i in $(seq "$MEMBERS"); do
    st=$(etcdctl --endpoints "127.0.0.1:${DCS_CPORT[$i]}" --command-timeout=2s endpoint status -w json 2>/dev/null) || continue
    if [ "$("$PY" -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print(int(s["leader"] == s["header"]["member_id"]))' <<<"$st" 2>/dev/null)" = 1 ]; then
      echo "$i"; return 0
    fi
  done
}

dcs_has_leader() { [ -n "$(dcs_leader)" ]; }

# The value of Patroni's leader key in the DCS: the leader's name.
leader_key() {
  etcdctl --endpoints "$(dcs_endpoints)" --command-timeout=2s get --print-value-only "/service/$SCOPE/leader" 2>/dev/null || true
}

# ---------------------------------------------------------------- Patroni

write_patroni_config() {
  local n="$1" hosts="" i
  for i in $(seq "$MEMBERS"); do hosts+="${hosts:+, }127.0.0.1:${DCS_CPORT[$i]}"; done
  mkdir -p "$WORK/pg$n"
  cat >"$WORK/pg$n.yml" <<EOF
scope: $SCOPE
namespace: /service/
name: pg$n
log:
  level: ${PATRONI_LOG_LEVEL:-INFO}
restapi:
  listen: 127.0.0.1:${REST_PORT[$n]}
  connect_address: 127.0.0.1:${REST_PORT[$n]}
etcd3:
  hosts: [$hosts]
  protocol: http
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:${PG_PORT[$n]}
  connect_address: 127.0.0.1:${PG_PORT[$n]}
  data_dir: $WORK/pg$n/data
  bin_dir: $PG_BIN
  pgpass: $WORK/pg$n/pgpass
  # A failed pg_rewind (or diverged timelines) rebuilds the replica from a
  # fresh base backup instead of leaving it stuck.
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
  # Loopback only, trust: this is a throwaway test cluster.
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: $WORK/run
    shared_buffers: 16MB
    max_connections: 30
EOF
  chown -R postgres:postgres "$WORK/pg$n" "$WORK/pg$n.yml"
}

# setpriv execs (runuser would fork), so $! is Patroni's own PID.
start_patroni() {
  local n="$1"
  (cd "$WORK" && exec setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME="$WORK" /usr/bin/patroni "$WORK/pg$n.yml") >>"$WORK/pg$n/patroni.log" 2>&1 &
  PATRONI_PID[$n]=$!
  log "Patroni pg$n started (pid ${PATRONI_PID[$n]})"
}

postmaster_pid() {
  local f="$WORK/pg$1/data/postmaster.pid"
  [ -f "$f" ] && head -n 1 "$f"
}

# HTTP status of Patroni's REST API on node $1 for path $2 (000 if down).
rest_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${REST_PORT[$1]}$2" || true; }

# Nodes whose Patroni says it holds the leader lock (GET /leader == 200).
rest_leaders() {
  local n out=""
  for n in 1 2; do [ "$(rest_code "$n" /leader)" = 200 ] && out+="${out:+ }$n"; done
  echo "$out"
}

psql_at() {
  PGCONNECT_TIMEOUT=2 timeout 10 "$PG_BIN/psql" -h 127.0.0.1 -p "${PG_PORT[$1]}" -U postgres -d postgres \
    -XAtq -v ON_ERROR_STOP=1 -c "$2" 2>>"$WORK/psql.log"
}
is_primary() { [ "$(psql_at "$1" 'select not pg_is_in_recovery()')" = t ]; }
is_streaming() { [ "$(psql_at "$1" 'select status from pg_stat_wal_receiver')" = streaming ]; }
# PostgreSQL nodes that accept writes right now.
primaries() {
  local n out=""
  for n in 1 2; do is_primary "$n" && out+="${out:+ }$n"; done
  echo "$out"
}
other() { echo $((3 - $1)); }

# A healthy pair: node $1 holds the lock (DCS key and REST) and is a writable
# primary, the other node is a streaming replica.
healthy_pair() {
  local l="$1" r
  r=$(other "$l")
  [ "$(leader_key)" = "pg$l" ] && [ "$(rest_leaders)" = "$l" ] && is_primary "$l" &&
    [ "$(rest_code "$r" /replica)" = 200 ] && is_streaming "$r"
}

insert_row() { psql_at "$1" "insert into e2e(note) values ('$2')" >/dev/null; }
has_row() { [ "$(psql_at "$1" "select count(*) from e2e where note = '$2'")" = 1 ]; }
# Writes a marker row on leader $1 and waits until replica $2 has it.
row_replicates() {
  # Not "<step>-<n>": stays-up writes rows so named, and a marker equal to
  # one of them counts 2 and never passes has_row.
  local marker="$3-marker-$RANDOM"
  insert_row "$1" "$marker" || { REASON="insert on leader pg$1 failed"; return 1; }
  wait_for 30 has_row "$2" "$marker" || { REASON="row '$marker' written on pg$1 not on pg$2 within 30s"; return 1; }
}

snapshot() {
  {
    echo "--- $(date +%H:%M:%S) $*"
    patronictl -c "$WORK/pg1.yml" list 2>&1 || true
  } >>"$WORK/test.log"
}

# ---------------------------------------------------------------- steps
# Each step returns non-zero with REASON set; `set -e` does not apply inside
# functions called from `if`, so every check is explicit.

LEADER="" # node number of the current Patroni leader

step_dcs_up() {
  local i
  for i in $(seq "$MEMBERS"); do start_dcs_member "$i"; done
  wait_for 30 dcs_healthy || { REASON="DCS not healthy within 30s (logs $WORK/dcs)"; return 1; }
  wait_for 10 dcs_has_leader || { REASON="no DCS Raft leader"; return 1; }
}

step_bootstrap() {
  write_patroni_config 1
  write_patroni_config 2
  start_patroni 1
  start_patroni 2
  local deadline=$((SECONDS + 120)) l
  while :; do
    l=$(rest_leaders)
    if [[ "$l" =~ ^[12]$ ]] && healthy_pair "$l"; then break; fi
    [ "$SECONDS" -lt "$deadline" ] || { REASON="no leader + streaming replica within 120s (REST leaders: '${l}', key: '$(leader_key)')"; return 1; }
    sleep 1
  done
  LEADER="$l"
  snapshot bootstrap
  psql_at "$LEADER" "create table e2e (id serial primary key, note text, at timestamptz default now())" >/dev/null ||
    { REASON="create table on leader pg$LEADER failed"; return 1; }
  row_replicates "$LEADER" "$(other "$LEADER")" bootstrap
}

# The leader must hold its key for 2 x ttl (+ a loop): a lease keepalive that
# does not answer in time makes Patroni demote itself within ~ttl.
step_stays_up() {
  local start=$SECONDS i=0 key
  while [ $((SECONDS - start)) -lt $((2 * TTL + LOOP_WAIT)) ]; do
    key=$(leader_key)
    [ "$key" = "pg$LEADER" ] || { REASON="leader key is '$key', expected pg$LEADER ($((SECONDS - start))s into the step)"; return 1; }
    [ "$(rest_leaders)" = "$LEADER" ] || { REASON="REST /leader: '$(rest_leaders)', expected $LEADER"; return 1; }
    insert_row "$LEADER" "stays-up-$i" || { REASON="write on leader pg$LEADER failed"; return 1; }
    i=$((i + 1))
    sleep 1
  done
  healthy_pair "$LEADER" || { REASON="pair not healthy at the end"; return 1; }
  row_replicates "$LEADER" "$(other "$LEADER")" stays-up
}

step_switchover() {
  local old="$LEADER" new
  new=$(other "$old")
  patronictl -c "$WORK/pg1.yml" switchover --leader "pg$old" --candidate "pg$new" --force \
    >>"$WORK/test.log" 2>&1 || { REASON="patronictl switchover failed (see $WORK/test.log)"; return 1; }
  wait_for 60 healthy_pair "$new" || { REASON="pg$new not leader with pg$old streaming within 60s"; snapshot switchover-failed; return 1; }
  LEADER="$new"
  snapshot switchover
  row_replicates "$LEADER" "$old" switchover
}

# Samples who is primary while the DCS is disturbed: two writable primaries
# at once is a split brain.
no_split_brain_for() {
  local until_s=$((SECONDS + $1)) p
  while [ "$SECONDS" -lt "$until_s" ]; do
    p=$(primaries)
    [ "$p" != "1 2" ] || { REASON="split brain: both pg1 and pg2 accept writes"; return 1; }
    sleep 0.5
  done
}

step_dcs_kill() {
  local victim
  victim=$(dcs_leader)
  [ -n "$victim" ] || { REASON="no DCS leader found"; return 1; }
  log "kill -9 DCS m$victim (pid ${DCS_PID[$victim]})"
  stop_pid KILL "${DCS_PID[$victim]}"
  if [ "$MEMBERS" -eq 1 ]; then
    # The only member: restart it from its data dir, as a supervisor would.
    sleep 2
    start_dcs_member "$victim"
    wait_for 30 dcs_healthy || { REASON="restarted DCS member not healthy within 30s"; return 1; }
    no_split_brain_for $((TTL + 2 * LOOP_WAIT)) || return 1
  else
    # The two survivors elect a new Raft leader; Patroni must ride through.
    no_split_brain_for $((TTL + 2 * LOOP_WAIT)) || return 1
    start_dcs_member "$victim"
    wait_for 30 dcs_healthy || { REASON="restarted DCS member m$victim not healthy within 30s"; return 1; }
  fi
  # Keep (or regain) a leader: whichever node it is now.
  local deadline=$((SECONDS + 60)) l
  while :; do
    l=$(rest_leaders)
    if [[ "$l" =~ ^[12]$ ]] && healthy_pair "$l"; then break; fi
    [ "$SECONDS" -lt "$deadline" ] || { REASON="no healthy leader + replica within 60s after the DCS came back"; snapshot dcs-kill-failed; return 1; }
    sleep 1
  done
  [ "$l" = "$LEADER" ] || log "leader changed during dcs-kill: pg$LEADER -> pg$l"
  LEADER="$l"
  snapshot dcs-kill
  row_replicates "$LEADER" "$(other "$LEADER")" dcs-kill
}

# Node loss: Patroni and the postmaster both die at once (kill -9), so nobody
# releases the leader key; it has to expire (ttl) before the replica promotes.
step_failover() {
  local dead="$LEADER" survivor pm t0
  survivor=$(other "$dead")
  pm=$(postmaster_pid "$dead") || { REASON="no postmaster.pid for pg$dead"; return 1; }
  # Its backends outlive a SIGKILLed postmaster briefly; remember them so the
  # cleanup can make sure they are gone.
  mapfile -t STRAYS < <(ps -o pid= --ppid "$pm" | tr -d ' ')
  t0=$(now)
  stop_pid KILL "${PATRONI_PID[$dead]}"
  PATRONI_PID[$dead]=""
  kill -KILL "$pm" 2>/dev/null || true
  log "killed pg$dead: Patroni and postmaster $pm"
  local timeout=$((TTL + 2 * LOOP_WAIT + 10))
  wait_for "$timeout" failover_done "$survivor" ||
    { REASON="pg$survivor not promoted within ${timeout}s (key '$(leader_key)')"; snapshot failover-failed; return 1; }
  echo "  failover: pg$survivor promoted $(elapsed "$t0")s after the kill (ttl $TTL)"
  LEADER="$survivor"
  snapshot failover
  insert_row "$LEADER" failover || { REASON="write on new leader pg$LEADER failed"; return 1; }
}
failover_done() { [ "$(leader_key)" = "pg$1" ] && [ "$(rest_code "$1" /leader)" = 200 ] && is_primary "$1"; }

step_rejoin() {
  local back
  back=$(other "$LEADER")
  # The killed node's orphaned backends must be gone before its restart.
  wait_for 30 strays_gone || { REASON="backends of the killed postmaster still alive"; return 1; }
  start_patroni "$back"
  wait_for 120 healthy_pair "$LEADER" ||
    { REASON="pg$back not streaming from leader pg$LEADER within 120s (see $WORK/pg$back/patroni.log)"; snapshot rejoin-failed; return 1; }
  snapshot rejoin
  if grep -q "running pg_rewind from" "$WORK/pg$back/patroni.log"; then echo "  rejoin: pg$back ran pg_rewind"; fi
  has_row "$back" failover || wait_for 30 has_row "$back" failover ||
    { REASON="row written on pg$LEADER during the outage missing on pg$back"; return 1; }
  row_replicates "$LEADER" "$back" rejoin
}
strays_gone() {
  local p
  for p in "${STRAYS[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}

# ---------------------------------------------------------------- run

cleanup() {
  local rc=$? n i pm p
  trap - EXIT INT TERM
  # Patroni stops its PostgreSQL on SIGTERM (and releases the leader key
  # while the DCS is still up, so stop it first).
  for n in 1 2; do [ -n "${PATRONI_PID[$n]:-}" ] && kill -TERM "${PATRONI_PID[$n]}" 2>/dev/null; done
  for n in 1 2; do stop_pid TERM "${PATRONI_PID[$n]:-}" 30; done
  # A postmaster whose Patroni was killed: stop it by its pid file, if that
  # PID is still that data dir's postgres.
  for n in 1 2; do
    pm=$(postmaster_pid "$n" 2>/dev/null) || continue
    if [ -n "$pm" ] && grep -qa "$WORK/pg$n/data" "/proc/$pm/cmdline" 2>/dev/null; then
      kill -QUIT "$pm" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pm" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pm" 2>/dev/null || true
    fi
  done
  for p in "${STRAYS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # DCS members last, all signalled at once so their shutdowns overlap.
  for i in $(seq "$MEMBERS"); do [ -n "${DCS_PID[$i]:-}" ] && kill -TERM "${DCS_PID[$i]}" 2>/dev/null; done
  for i in $(seq "$MEMBERS"); do stop_pid TERM "${DCS_PID[$i]:-}" 15; done
  # Logs are kept unless every step passed (KEEP=1 keeps them anyway).
  if [ "$PASSED" -eq "${#STEPS[@]}" ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK"
  else
    echo "logs kept in $WORK (test.log, pg1/patroni.log, pg2/patroni.log, dcs/)"
  fi
  exit "$rc"
}
STEPS=(dcs-up bootstrap stays-up switchover dcs-kill failover rejoin)
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# Ports: client + peer per DCS member, PostgreSQL + REST API per node.
read -r -a ports <<<"$(free_ports $((2 * MEMBERS + 4)))"
for i in $(seq "$MEMBERS"); do
  DCS_CPORT[$i]=${ports[$((2 * i - 2))]}
  DCS_PPORT[$i]=${ports[$((2 * i - 1))]}
done
PG_PORT[1]=${ports[$((2 * MEMBERS))]}
PG_PORT[2]=${ports[$((2 * MEMBERS + 1))]}
REST_PORT[1]=${ports[$((2 * MEMBERS + 2))]}
REST_PORT[2]=${ports[$((2 * MEMBERS + 3))]}
PATRONI_PID[1]="" PATRONI_PID[2]=""

echo "patroni e2e: server $SERVER ($DCS_BIN), $MEMBERS member(s), ttl $TTL loop_wait $LOOP_WAIT retry_timeout $RETRY_TIMEOUT; work dir $WORK"
RUN_START=$(now)
for step in "${STEPS[@]}"; do
  if [ "$FAILED" -gt 0 ]; then
    echo "SKIP $step"
    SKIPPED=$((SKIPPED + 1))
    continue
  fi
  REASON=""
  t0=$(now)
  log "=== $step"
  if "step_${step//-/_}"; then
    echo "PASS $step ($(elapsed "$t0")s)"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $step: ${REASON:-unknown} ($(elapsed "$t0")s)"
    FAILED=$((FAILED + 1))
  fi
done
echo "total $(elapsed "$RUN_START")s ($SERVER, $MEMBERS member(s))"
echo "patroni: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
