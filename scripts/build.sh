#!/usr/bin/env bash
# scripts/build.sh — configures and builds promptfs into $PROMPTFS_BUILD
# (default ./build).  The CUDA backend is built when nvcc is found.
# Extra arguments go to cmake's configure step (e.g. -DPROMPTFS_CUDA=OFF).
set -euo pipefail
. "$(dirname "$0")/common.sh"
log "building promptfs in $PROMPTFS_BUILD"
cmake -S "$PROMPTFS_SRC" -B "$PROMPTFS_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DPROMPTFS_CACHE="$PROMPTFS_CACHE" "$@" >/dev/null
cmake --build "$PROMPTFS_BUILD" -j"$(nproc)"
