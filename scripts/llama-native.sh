#!/usr/bin/env bash
# scripts/llama-native.sh — builds llama.cpp's own fastest CPU build for this
# machine, for the side-by-side benchmark (scripts/bench-cpu.sh), and prints
# the path of its llama-bench.  The tests never use it: they use the pinned
# reference of scripts/deps.sh.
#
# Source: the llama.cpp that llama-cpp-python 0.3.36 vendors (the same code
# as the tests' reference), fetched once with pip into $PROMPTFS_CACHE/src.
# Flags: GGML_NATIVE=ON (-march=native: AVX-512, VNNI, BF16 and, where the CPU
# has them, ggml's AMX kernels), compiled with clang: GCC 12's AMX intrinsics
# drop the tile configuration (see scripts/deps.sh) and ggml's AMX kernels
# built with it crash.  Clang 14 (Debian 12's) spells the AMX feature macros
# __AMXINT8__/__AMXTILE__, where ggml tests __AMX_INT8__/__AMX_TILE__ (GCC's
# and newer clangs' spelling); on a CPU with AMX both spellings are defined
# so that ggml's AMX kernels are compiled, and the build is refused if they
# are missing.  The build is checked once (a multi-token prompt and a few
# decode steps through llama-bench) before it is used.
# Usage: scripts/llama-native.sh      (prints the llama-bench path on stdout)
set -euo pipefail
. "$(dirname "$0")/common.sh"
ver=0.3.36
flags=$(grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-8)
dir="$PROMPTFS_CACHE/llama.cpp-native-$ver-$flags"
bench="$dir/build/bin/llama-bench"
if [ ! -x "$bench" ]; then
	for p in clang cmake; do
		command -v "$p" >/dev/null || {
			log "apt-get install $p"
			SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
			$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$p" >/dev/null
		}
	done
	[ -x "$PROMPTFS_PY" ] || die "run scripts/deps.sh first (its venv's pip fetches the llama.cpp source)"
	src="$PROMPTFS_CACHE/src"
	mkdir -p "$src"
	tgz="$src/llama_cpp_python-$ver.tar.gz"
	if [ ! -f "$tgz" ]; then
		log "fetching the llama.cpp source (llama-cpp-python $ver sdist)"
		"$PROMPTFS_PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$ver" -d "$src" \
			|| die "pip could not fetch the llama-cpp-python $ver sdist"
	fi
	rm -rf "$dir"; mkdir -p "$dir"
	tar -xzf "$tgz" -C "$dir" --strip-components=3 "llama_cpp_python-$ver/vendor/llama.cpp" \
		|| die "the sdist has no vendor/llama.cpp"
	amxdefs=""
	if grep -qw amx_int8 /proc/cpuinfo; then
		amxdefs="-D__AMX_INT8__=1 -D__AMX_TILE__=1"
	fi
	log "building llama.cpp (GGML_NATIVE, clang $amxdefs) in $dir: several minutes"
	cmake -S "$dir" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
		-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_FLAGS="$amxdefs" -DCMAKE_CXX_FLAGS="$amxdefs" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
		-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >"$dir/configure.log" 2>&1 \
		|| die "llama.cpp configure failed: $dir/configure.log"
	cmake --build "$dir/build" -j"$(nproc)" --target llama-bench >"$dir/build.log" 2>&1 \
		|| die "llama.cpp build failed: $dir/build.log"
	[ -x "$bench" ] || die "no llama-bench after the build: $dir/build.log"
	if [ -n "$amxdefs" ] && [ "$(nm "$bench" | grep -c ggml_backend_amx_buffer_type)" = 0 ]; then
		rm -f "$bench"; die "the native llama.cpp build lacks ggml's AMX kernels on this AMX CPU ($dir/build.log)"
	fi
fi
# Proof: a 32-token prompt and 4 decode steps on the model the benchmark uses.
model="${1:-$PROMPTFS_MODEL_DEFAULT}"
if [ -f "$model" ] && [ ! -f "$dir/.proved-$(basename "$model")" ]; then
	if ! "$bench" -m "$model" -t 2 -p 32 -n 4 -r 1 -o csv >"$dir/proof.log" 2>&1; then
		die "llama.cpp's native build fails on $(basename "$model") (see $dir/proof.log)"
	fi
	touch "$dir/.proved-$(basename "$model")"
fi
echo "$bench"
