# Sourced by the scripts: one persistent cargo target dir for local work and CI,
# so nothing is rebuilt that did not change.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}"
export PROTOC="${PROTOC:-/usr/bin/protoc}"
