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
