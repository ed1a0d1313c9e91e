# Sourced by the measurement scripts (bench-vs-etcd.sh, engines-1m.sh):
# a clean environment for the servers they start, then the release binaries
# (built unless BUILD=0), as MS_BIN and BENCH.
# Servers read ETCD_* (and METASTORE_*) variables as flags: none may leak in
# from the caller. METASTORE_ROCKSDB_* tuning is left alone on purpose.
for v in $(env | sed -n 's/^\(ETCD_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset METASTORE_STORAGE
export ETCDCTL_API=3
. scripts/env.sh
if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release -p metastore -p bench --features metastore/rocksdb
fi
MS_BIN="$CARGO_TARGET_DIR/release/metastore"
BENCH="$CARGO_TARGET_DIR/release/metastore-bench"
[ -x "$MS_BIN" ] && [ -x "$BENCH" ] || { echo "missing $MS_BIN or $BENCH (run without --no-build)" >&2; exit 1; }
