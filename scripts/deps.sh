#!/usr/bin/env bash
# scripts/deps.sh — installs what building and testing need, idempotently:
#   Debian packages (compiler, cmake, libfuse3, fuse3, attr tools, python venv),
#   a Python venv in $PROMPTFS_CACHE/venv with the independent references:
#   gguf (dequantisation), llama-cpp-python (llama.cpp, built for this CPU),
#   tokenizers/transformers-free numpy tooling; llama.cpp's llama-quantize
#   (scripts/llama-quantize.sh) for the synth presets' type check.
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
# The reference llama.cpp is built the same way on every machine: x86-64-v3
# (SSE4.2, AVX, AVX2, FMA, F16C, BMI2), which every CPU this project runs on
# has, and nothing newer.  Never GGML_NATIVE: on a CPU with AMX it turns on
# ggml's AMX kernels, and built with GCC 12 (Debian 12's compiler) those
# crash in llama_decode on the first multi-token batch.  GCC 12's
# _tile_loadconfig (amxtileintrin.h) declares only 8 of the 64 bytes of the
# tile configuration as read, so the compiler drops the stores of the rows
# and column widths in ggml's ggml_tile_config_init and ldtilecfg loads
# stack garbage: #GP, SIGSEGV.  The same flags everywhere also make the test
# figures mean the same thing on every CPU.  The benchmark builds llama.cpp
# for the CPU separately (scripts/bench-cpu.sh).
PROMPTFS_REF_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
stamp="$PROMPTFS_VENV/.promptfs-reqs"
llama_stamp="$PROMPTFS_VENV/.promptfs-llama-build"
llama_want="$(grep -i '^llama-cpp-python' "$PROMPTFS_SRC/tests/requirements.txt") $PROMPTFS_REF_CMAKE_ARGS"
if [ "$llama_want" != "$(cat "$llama_stamp" 2>/dev/null)" ]; then
	# A llama-cpp-python built with other flags (an older deps.sh used
	# GGML_NATIVE) is rebuilt: pip would otherwise keep it as it is.
	if "$PROMPTFS_PY" -m pip show -q llama-cpp-python >/dev/null 2>&1; then
		log "removing the llama-cpp-python built with other flags"
		"$PROMPTFS_PY" -m pip uninstall -q -y llama-cpp-python
	fi
	rm -f "$stamp"
fi
if ! cmp -s "$PROMPTFS_SRC/tests/requirements.txt" "$stamp"; then
	log "pip install tests/requirements.txt (llama-cpp-python compiles llama.cpp: a few minutes the first time)"
	"$PROMPTFS_PY" -m pip install -q --upgrade pip >/dev/null
	CMAKE_ARGS="$PROMPTFS_REF_CMAKE_ARGS" "$PROMPTFS_PY" -m pip install -q --no-cache-dir \
		-r "$PROMPTFS_SRC/tests/requirements.txt"
	printf '%s\n' "$llama_want" >"$llama_stamp"
	cp "$PROMPTFS_SRC/tests/requirements.txt" "$stamp"
fi

# Prove the reference once before any test relies on it: a multi-token batch
# through llama_decode on F32 and on quantised weights.  It runs in its own
# process so that a crash is reported here, with what to do, and not as a
# segfault in the middle of the test suite.
log "checking the llama.cpp reference (multi-token llama_decode)"
if ! "$PROMPTFS_PY" "$PROMPTFS_SRC/tests/ref_check.py" "$PROMPTFS_SHARED/models/stories260K.gguf"; then
	die "the llama.cpp reference in $PROMPTFS_VENV fails (above). Rebuild it with the pinned flags: rm -f $stamp && bash scripts/deps.sh (README, \"The reference implementations\")"
fi

# llama.cpp's own llama-quantize (CPU only, built once into $PROMPTFS_CACHE):
# tests/test_synth_mix.py compares every synth preset's tensor types with it.
bash "$PROMPTFS_SRC/scripts/llama-quantize.sh" >/dev/null
