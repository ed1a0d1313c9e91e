#!/usr/bin/env bash
# Runs the whole test suite: unit, integration, crash and differential tests
# (the differential tests start Debian's etcd on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
