#!/usr/bin/env bash
# scripts/test.sh — the one test command (CI runs exactly this through .ci/run):
# installs what the tests need, fetches the default model, builds, runs ctest.
set -euo pipefail
. "$(dirname "$0")/common.sh"
bash "$PROMPTFS_SRC/scripts/deps.sh"
bash "$PROMPTFS_SRC/scripts/fetch-model.sh" >/dev/null && bash "$PROMPTFS_SRC/scripts/fetch-model.sh" gemma3 >/dev/null
bash "$PROMPTFS_SRC/scripts/build.sh"
log "running the tests"
cd "$PROMPTFS_BUILD"
ctest --output-on-failure --timeout 1800 "$@"

# ---- sanitizers and fuzzing (issue 14): the whole CPU suite again under
# ASan + UBSan (build-asan/, CUDA off, so cuda_build is left to the main
# run), then the libFuzzer targets over their corpora and for
# PROMPTFS_FUZZ_SECONDS (default 60) each (build-fuzz/, clang).
SAN="$PROMPTFS_SRC/build-asan" FZ="$PROMPTFS_SRC/build-fuzz"
log "ASan + UBSan build: the whole CPU suite"
cmake -S "$PROMPTFS_SRC" -B "$SAN" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROMPTFS_CUDA=OFF \
	-DPROMPTFS_SANITIZE=ON -DPROMPTFS_CACHE="$PROMPTFS_CACHE" >/dev/null
cmake --build "$SAN" -j"$(nproc)"
(cd "$SAN" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ctest --output-on-failure --timeout 1800 -E '^cuda_build$')
log "fuzz targets: corpora, then ${PROMPTFS_FUZZ_SECONDS:-60} s each"
CC=clang CXX=clang++ cmake -S "$PROMPTFS_SRC" -B "$FZ" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROMPTFS_CUDA=OFF \
	-DPROMPTFS_FUZZ=ON -DPROMPTFS_FUZZ_SECONDS="${PROMPTFS_FUZZ_SECONDS:-60}" -DPROMPTFS_CACHE="$PROMPTFS_CACHE" >/dev/null
cmake --build "$FZ" -j"$(nproc)" --target $(cd "$PROMPTFS_SRC/tests" && ls fuzz_*.c | sed 's/\.c$//')
(cd "$FZ" && ctest --output-on-failure -R '^fuzz_')
