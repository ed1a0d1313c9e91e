#!/usr/bin/env bash
# Proves the README's two commands from a fresh machine's state and times
# them cold: removes every Debian package scripts/setup.sh installs (and
# what only they pulled in), clones the repository afresh, and runs
# scripts/run.sh (until the member serves) then scripts/test.sh with an
# empty cargo target dir and an empty cargo registry (CARGO_HOME), so
# crates are downloaded and everything is compiled from nothing. Rust
# itself (rustup's toolchain) and cargo-nextest stay: the README assumes
# them.
#
#   scripts/fresh-machine.sh --yes [WORK_DIR]     (default /tmp/fresh-machine)
#
# Removes packages system-wide (root or sudo): for a test machine only.
# Prints each step's wall time; logs are in WORK_DIR. Takes about an hour
# on 2 cores.
set -uo pipefail
[ "${1:-}" = "--yes" ] || { sed -n 2,16p "$0" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-/tmp/fresh-machine}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
log() { echo "$(date +%T) $*"; }

packages=(protobuf-compiler libprotobuf-dev etcd-server etcd-client clang libclang-dev patroni prometheus postgresql)
log "removing ${packages[*]}"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get remove -y -qq --purge "${packages[@]}" >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get autoremove -y -qq --purge >/dev/null 2>&1
for c in protoc etcd etcdctl clang patroni promtool; do
  command -v "$c" >/dev/null && log "still installed: $c"
done

rm -rf "$work" && mkdir -p "$work"
git clone -q "$repo" "$work/repo" && cd "$work/repo" || exit 1
export CARGO_TARGET_DIR="$work/target" CARGO_HOME="$work/cargo"
export PATH="$HOME/.cargo/bin:$PATH"

t0=$(date +%s)
log "scripts/run.sh --data-dir $work/data (log: $work/run.log)"
setsid scripts/run.sh --data-dir "$work/data" >"$work/run.log" 2>&1 &
pid=$!
served=""
while kill -0 $pid 2>/dev/null; do
  if command -v etcdctl >/dev/null &&
    ETCDCTL_API=3 timeout 2 etcdctl --endpoints 127.0.0.1:2379 put fresh-machine ok >/dev/null 2>&1; then
    served=$(($(date +%s) - t0))
    break
  fi
  sleep 2
done
kill -- -$pid 2>/dev/null
sleep 2
kill -9 -- -$pid 2>/dev/null
[ -n "$served" ] || { log "run.sh: the member never served; see $work/run.log"; exit 1; }
log "run.sh: serving after $served s"

t1=$(date +%s)
log "scripts/test.sh (log: $work/test.log)"
scripts/test.sh >"$work/test.log" 2>&1
rc=$?
log "test.sh: exit $rc after $(($(date +%s) - t1)) s"
exit $rc
