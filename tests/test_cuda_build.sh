#!/usr/bin/env bash
# test_cuda_build.sh — the CUDA backend in CI (no GPU there):
#   - CMake found the CUDA toolkit, so the backend is compiled and linked
#     into promptfs (its ops table and kernels are in the binary, the
#     libraries it needs resolve);
#   - the GPU test programs (build/gpu/gpu_*) were built too;
#   - without a device, `--backend cuda` fails cleanly — exit status 1, a
#     message that names the missing device, no crash — for run, bench and
#     the mount, and `--backend auto` falls back to the CPU and works;
#   - on a machine that does have a GPU, `--backend cuda` must work instead
#     (greedy text equal to the CPU backend's on stories260K).
# The GPU checks themselves are tests/gpu/run.sh, run on the GPU machine.
# Run: ctest -R cuda_build
set -u
BIN=${PROMPTFS_BIN:?}
BUILD=${PROMPTFS_BUILD:?}
SHARED=${PROMPTFS_SHARED:?}
STORIES="$SHARED/models/stories260K.gguf"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
done_() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }

[ -f "$STORIES" ] || { bad "missing $STORIES"; done_; exit 1; }

# ---- built and linked
check "grep -q '^CMAKE_CUDA_COMPILER:.*nvcc' '$BUILD/CMakeCache.txt' && [ -f '$BUILD/cuda/libpf_cuda.a' ]" \
	"CMake did not build the CUDA backend (is nvcc on PATH?)"
check "nm -C '$BIN' 2>/dev/null | grep -q ' cuda_backend_get'" "promptfs lacks cuda_backend_get (pf_cuda not linked whole)"
check "nm -C '$BIN' 2>/dev/null | grep -q 'attn_kernel'" "promptfs lacks the attention kernel"
check "nm -C '$BIN' 2>/dev/null | grep -q 'fused_kernel'" "promptfs lacks the fused mat-vec kernels"
check "! ldd '$BIN' | grep -q 'not found'" "promptfs has unresolved libraries: $(ldd "$BIN" | grep 'not found' | tr -d '\t')"
for p in gpu_ops gpu_attn gpu_model gpu_bench; do
	check "[ -x '$BUILD/gpu/$p' ]" "GPU test program $p was not built"
done
# a CUDA fat binary for Hopper is embedded
if command -v cuobjdump > /dev/null; then
	check "cuobjdump --list-elf '$BIN' 2>/dev/null | grep -q 'sm_90'" "no sm_90 code in promptfs"
fi

# ---- no device: clean failure
have_gpu=0
if command -v nvidia-smi > /dev/null && nvidia-smi -L 2> /dev/null | grep -q GPU; then
	have_gpu=1
fi
"$BIN" run "$STORIES" "Once upon a time" --backend cpu --temp 0 -n 32 --raw > "$TMP/cpu.txt" 2> "$TMP/cpu.err"
check "[ $? -eq 0 ] && [ -s '$TMP/cpu.txt' ]" "run --backend cpu failed: $(head -3 "$TMP/cpu.err")"
"$BIN" run "$STORIES" "Once upon a time" --backend cuda --temp 0 -n 32 --raw > "$TMP/cuda.txt" 2> "$TMP/cuda.err"
rc=$?
if [ $have_gpu -eq 0 ]; then
	check "[ $rc -eq 1 ]" "run --backend cuda without a GPU: exit $rc, want 1"
	check "grep -qi 'cuda' '$TMP/cuda.err' && grep -qi 'device' '$TMP/cuda.err'" \
		"run --backend cuda: message does not name the missing CUDA device: $(head -3 "$TMP/cuda.err")"
	check "[ ! -s '$TMP/cuda.txt' ]" "run --backend cuda printed model output without a device"
	"$BIN" bench "$STORIES" --backend cuda -p 16 --ctx 0 -n 4 --reps 1 > "$TMP/bench.txt" 2> "$TMP/bench.err"
	rc=$?
	check "[ $rc -eq 1 ]" "bench --backend cuda without a GPU: exit $rc, want 1"
	mkdir -p "$TMP/mnt"
	timeout 60 "$BIN" "$STORIES" "$TMP/mnt" --backend cuda > "$TMP/mount.out" 2>&1
	rc=$?
	check "[ $rc -ne 0 ] && [ $rc -lt 124 ]" "mount --backend cuda without a GPU: exit $rc (want a clean failure)"
	check "! mountpoint -q '$TMP/mnt'" "mount --backend cuda without a GPU left a mount behind"
	mountpoint -q "$TMP/mnt" && { fusermount3 -u "$TMP/mnt" 2>/dev/null || umount "$TMP/mnt"; }
	check "grep -qi 'device' '$TMP/mount.out'" "mount --backend cuda: no message about the device: $(head -3 "$TMP/mount.out")"
	"$BIN" run "$STORIES" "Once upon a time" --backend auto --temp 0 -n 32 --raw > "$TMP/auto.txt" 2> "$TMP/auto.err"
	check "[ $? -eq 0 ] && cmp -s '$TMP/auto.txt' '$TMP/cpu.txt'" "--backend auto did not fall back to the CPU"
else
	check "[ $rc -eq 0 ] && cmp -s '$TMP/cuda.txt' '$TMP/cpu.txt'" \
		"run --backend cuda on a GPU machine: exit $rc or text differs from the CPU's"
fi
done_
