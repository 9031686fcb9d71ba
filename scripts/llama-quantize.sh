#!/usr/bin/env bash
# scripts/llama-quantize.sh — builds llama.cpp's own llama-quantize (CPU only)
# and prints its path.  tests/test_synth_mix.py asks it which type llama.cpp
# gives every tensor of a Q4_K_M / Q8_0 / F16 file, and compares that with
# what `promptfs synth` writes for its presets.
#
# Source: the llama.cpp that llama-cpp-python 0.3.36 vendors (the tests'
# reference; scripts/deps.sh's venv fetches the sdist once into
# $PROMPTFS_CACHE/src).  Flags: GGML_NATIVE=OFF and no SIMD extensions
# beyond the x86-64 baseline — the tool's type choice does not depend on
# the CPU, and the same build then runs on every machine.  Built once into
# $PROMPTFS_CACHE/llama.cpp-quantize-<ver>/ (several minutes on two cores),
# then reused; scripts/deps.sh calls this script, so CI builds it before the
# tests run.
# Usage: scripts/llama-quantize.sh [-j N]      (prints the llama-quantize path)
set -euo pipefail
. "$(dirname "$0")/common.sh"
ver=0.3.36
jobs=$(nproc)
[ "${1:-}" = "-j" ] && jobs=${2:?}
dir="$PROMPTFS_CACHE/llama.cpp-quantize-$ver"
bin="$dir/build/bin/llama-quantize"
if [ ! -x "$bin" ]; then
	command -v cmake >/dev/null || die "cmake is missing: run scripts/deps.sh"
	src="$PROMPTFS_CACHE/src"
	tgz="$src/llama_cpp_python-$ver.tar.gz"
	if [ ! -f "$tgz" ]; then
		[ -x "$PROMPTFS_PY" ] || die "run scripts/deps.sh first (its venv's pip fetches the llama.cpp source)"
		mkdir -p "$src"
		log "fetching the llama.cpp source (llama-cpp-python $ver sdist)"
		"$PROMPTFS_PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$ver" -d "$src" \
			|| die "pip could not fetch the llama-cpp-python $ver sdist"
	fi
	rm -rf "$dir"; mkdir -p "$dir"
	tar -xzf "$tgz" -C "$dir" --strip-components=3 "llama_cpp_python-$ver/vendor/llama.cpp" \
		|| die "the sdist has no vendor/llama.cpp"
	log "building llama-quantize (CPU only, GGML_NATIVE=OFF) in $dir: several minutes, once"
	cmake -S "$dir" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_CUDA=OFF \
		-DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF \
		-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_OPENMP=OFF \
		-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF \
		>"$dir/configure.log" 2>&1 || die "llama.cpp configure failed: $dir/configure.log"
	cmake --build "$dir/build" -j"$jobs" --target llama-quantize >"$dir/build.log" 2>&1 \
		|| die "llama-quantize build failed: $dir/build.log"
	[ -x "$bin" ] || die "no llama-quantize after the build: $dir/build.log"
fi
echo "$bin"
