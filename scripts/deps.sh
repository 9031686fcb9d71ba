#!/usr/bin/env bash
# scripts/deps.sh — installs what building and testing need, idempotently:
#   Debian packages (compiler, cmake, libfuse3, fuse3, attr tools, python venv),
#   a Python venv in $PROMPTFS_CACHE/venv with the independent references:
#   gguf (dequantisation), llama-cpp-python (llama.cpp, built for this CPU),
#   tokenizers/transformers-free numpy tooling.
# Usage: scripts/deps.sh [--no-python]
set -euo pipefail
. "$(dirname "$0")/common.sh"

need_apt=()
for p in build-essential cmake pkg-config libfuse3-dev fuse3 attr python3 python3-venv python3-pip git psmisc clang; do
	dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
	log "apt-get install ${need_apt[*]}"
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
[ -e /dev/fuse ] || log "warning: /dev/fuse is missing: mounting will not work on this machine"

[ "${1:-}" = "--no-python" ] && exit 0

mkdir -p "$PROMPTFS_CACHE"
if [ ! -x "$PROMPTFS_PY" ]; then
	log "creating venv $PROMPTFS_VENV"
	python3 -m venv "$PROMPTFS_VENV"
fi
stamp="$PROMPTFS_VENV/.promptfs-reqs"
if ! cmp -s "$PROMPTFS_SRC/tests/requirements.txt" "$stamp"; then
	log "pip install tests/requirements.txt (llama-cpp-python compiles llama.cpp: a few minutes the first time)"
	"$PROMPTFS_PY" -m pip install -q --upgrade pip >/dev/null
	# llama.cpp built for this CPU (AVX2/AVX-512) so the benchmark compares like with like.
	CMAKE_ARGS="-DGGML_NATIVE=ON" "$PROMPTFS_PY" -m pip install -q -r "$PROMPTFS_SRC/tests/requirements.txt"
	cp "$PROMPTFS_SRC/tests/requirements.txt" "$stamp"
fi
