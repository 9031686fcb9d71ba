#!/usr/bin/env bash
# scripts/bench-cpu.sh — promptfs's CPU backend side by side with llama.cpp on
# the same model, the same thread count, in the same run.
#
# Columns:
#   promptfs            `promptfs bench --backend cpu` with the best kernels
#                       this CPU runs (AMX-INT8 where present, else AVX-512
#                       VNNI, else AVX2);
#   promptfs no AMX     the same with PROMPTFS_CPU_ISA=avx512 (only on a CPU
#                       with AMX: what the tile kernels buy);
#   llama.cpp native    llama.cpp's own fastest CPU build for this machine
#                       (scripts/llama-native.sh: GGML_NATIVE, its AMX kernels
#                       where the CPU has AMX), timed by its llama-bench;
#   llama.cpp pinned    the tests' reference build (scripts/deps.sh: x86-64-v3,
#                       the same on every machine), timed through
#                       llama-cpp-python (tests/bench_llamacpp.py).
# The ratios are promptfs / llama.cpp (above 1: promptfs is faster).  The
# programs alternate ROUNDS times and each keeps its best figure (this
# machine may be shared; the best of several filters interference out of
# every side alike).  Any program that fails stops the script with its
# error: it never prints a table with a missing side.
# Usage: scripts/bench-cpu.sh [MODEL.gguf]
#   env: THREADS (2) PP (512) TG (64) ROUNDS (3) PINNED (1: include the pinned column)
set -euo pipefail
. "$(dirname "$0")/common.sh"
model="${1:-$PROMPTFS_MODEL_DEFAULT}"
threads="${THREADS:-2}"; pp="${PP:-512}"; tg="${TG:-64}"; rounds="${ROUNDS:-3}"; pinned="${PINNED:-1}"
bin="$PROMPTFS_BUILD/promptfs"
[ -x "$bin" ] || die "build first (scripts/build.sh)"
[ -f "$model" ] || die "no model at $model (scripts/fetch-model.sh)"
[ -x "$PROMPTFS_PY" ] || die "run scripts/deps.sh first (llama.cpp reference)"
lbench=$(bash "$PROMPTFS_SRC/scripts/llama-native.sh" "$model") || die "llama.cpp's native build is not usable (above)"
amx=0; grep -qw amx_int8 /proc/cpuinfo && amx=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a) ? b : a }'; }
# num NAME VALUE: VALUE must be a positive number, else the run failed.
num() { awk -v v="$2" 'BEGIN { exit !(v + 0 > 0) }' || die "$1: no figure in its output (see above)"; echo "$2"; }

run_promptfs() { # ISA-cap label → sets pf_pp pf_tg
	local out
	if ! out=$(PROMPTFS_CPU_ISA="$1" "$bin" bench "$model" --backend cpu -t "$threads" -p "$pp" -n "$tg" \
		--ctx 0 --reps 1 2>"$tmp/pf.err"); then
		cat "$tmp/pf.err" >&2; die "promptfs bench failed (PROMPTFS_CPU_ISA=$1)"
	fi
	echo "$out" >"$tmp/pf-$1.out"
	pf_pp=$(num "promptfs bench prefill" "$(awk -v p="prefill $pp" 'index($0, p) == 1 { print $3 }' <<<"$out")")
	pf_tg=$(num "promptfs bench decode" "$(awk '/^decode @0 / { print $4 }' <<<"$out")")
}

o_pp=0; o_tg=0; a_pp=0; a_tg=0; n_pp=0; n_tg=0; r_pp=0; r_tg=0
for i in $(seq "$rounds"); do
	run_promptfs best; o_pp=$(best "$o_pp" "$pf_pp"); o_tg=$(best "$o_tg" "$pf_tg")
	if [ "$amx" = 1 ]; then
		run_promptfs avx512; a_pp=$(best "$a_pp" "$pf_pp"); a_tg=$(best "$a_tg" "$pf_tg")
	fi
	if ! "$lbench" -m "$model" -t "$threads" -p "$pp" -n "$tg" -r 1 -o csv >"$tmp/lb.csv" 2>"$tmp/lb.err"; then
		tail -20 "$tmp/lb.err" >&2; die "llama-bench ($lbench) failed"
	fi
	# csv columns by name: n_prompt, n_gen, avg_ts
	read -r v_pp v_tg < <("$PROMPTFS_PY" - "$tmp/lb.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
pp = [float(r["avg_ts"]) for r in rows if int(r["n_prompt"]) > 0 and int(r["n_gen"]) == 0]
tg = [float(r["avg_ts"]) for r in rows if int(r["n_gen"]) > 0 and int(r["n_prompt"]) == 0]
print(pp[0] if pp else 0, tg[0] if tg else 0)
PY
	)
	n_pp=$(best "$n_pp" "$(num "llama-bench prefill" "$v_pp")"); n_tg=$(best "$n_tg" "$(num "llama-bench decode" "$v_tg")")
	if [ "$pinned" = 1 ]; then
		if ! ref=$("$PROMPTFS_PY" "$PROMPTFS_SRC/tests/bench_llamacpp.py" "$model" --threads "$threads" \
			--pp "$pp" --tg "$tg" --reps 1 --json 2>"$tmp/ref.err"); then
			tail -20 "$tmp/ref.err" >&2; die "the pinned llama.cpp reference failed (tests/bench_llamacpp.py)"
		fi
		v=$("$PROMPTFS_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["pp_tok_s"])' "$ref"); r_pp=$(best "$r_pp" "$(num "pinned prefill" "$v")")
		v=$("$PROMPTFS_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["tg_tok_s"])' "$ref"); r_tg=$(best "$r_tg" "$(num "pinned decode" "$v")")
	fi
done

cpu=$(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ *//')
simd=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512bw|avx512_vnni|avx512vnni|avx512_bf16|avx_vnni|amx_tile|amx_int8|amx_bf16)$' | tr '\n' ' ')
kern=$(awk -F'[()]' '/^backend:/ { print $2; exit }' "$tmp/pf-best.out")
echo "model: $(basename "$model"); $threads threads; $cpu; $(nproc) cores; best of $rounds alternating rounds"
echo "cpu flags: $simd"
echo "promptfs kernels: $kern; llama.cpp native: $lbench"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a > 0) printf "%.1f", a; else printf "-" }'; }
printf '%-12s %10s %12s %17s %9s %17s %9s\n' test promptfs "promptfs no AMX" "llama.cpp native" "pf/native" \
	"llama.cpp pinned" "pf/pinned"
printf '%-12s %10s %12s %17s %9s %17s %9s\n' "prefill $pp" "$(fmt "$o_pp")" "$(fmt "$a_pp")" "$(fmt "$n_pp")" \
	"$(ratio "$o_pp" "$n_pp")" "$(fmt "$r_pp")" "$(ratio "$o_pp" "$r_pp")"
printf '%-12s %10s %12s %17s %9s %17s %9s\n' "decode $tg" "$(fmt "$o_tg")" "$(fmt "$a_tg")" "$(fmt "$n_tg")" \
	"$(ratio "$o_tg" "$n_tg")" "$(fmt "$r_tg")" "$(ratio "$o_tg" "$r_tg")"
