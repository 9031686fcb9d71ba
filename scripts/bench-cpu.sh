#!/usr/bin/env bash
# scripts/bench-cpu.sh — promptfs's CPU backend side by side with llama.cpp's
# CPU build (llama-cpp-python, compiled for this CPU by scripts/deps.sh) on the
# same model and thread count, in the same run.  The two programs alternate
# ROUNDS times and each keeps its best figure (this machine is shared; the
# best of several filters interference out of both sides alike).
# Usage: scripts/bench-cpu.sh [MODEL.gguf]   env: THREADS (2) PP (512) TG (64) ROUNDS (3)
set -euo pipefail
. "$(dirname "$0")/common.sh"
model="${1:-$PROMPTFS_MODEL_DEFAULT}"
threads="${THREADS:-2}"; pp="${PP:-512}"; tg="${TG:-64}"; rounds="${ROUNDS:-3}"
bin="$PROMPTFS_BUILD/promptfs"
[ -x "$bin" ] || die "build first (scripts/build.sh)"
[ -x "$PROMPTFS_PY" ] || die "run scripts/deps.sh first (llama.cpp reference)"

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a) ? b : a }'; }
o_pp=0; o_tg=0; r_pp=0; r_tg=0
for i in $(seq "$rounds"); do
	out=$("$bin" bench "$model" --backend cpu -t "$threads" -p "$pp" -n "$tg" --ctx 0 --reps 1)
	v=$(awk -v p="prefill $pp" 'index($0, p) == 1 { print $3 }' <<<"$out"); o_pp=$(best "$o_pp" "${v:-0}")
	v=$(awk '/^decode @0 / { print $4 }' <<<"$out"); o_tg=$(best "$o_tg" "${v:-0}")
	ref=$("$PROMPTFS_PY" "$PROMPTFS_SRC/tests/bench_llamacpp.py" "$model" --threads "$threads" \
		--pp "$pp" --tg "$tg" --reps 1 --json)
	v=$("$PROMPTFS_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["pp_tok_s"])' "$ref"); r_pp=$(best "$r_pp" "$v")
	v=$("$PROMPTFS_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["tg_tok_s"])' "$ref"); r_tg=$(best "$r_tg" "$v")
done
cpu=$(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ *//')
echo "model: $(basename "$model"); $threads threads; $cpu; $(nproc) cores; best of $rounds alternating rounds"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %14s %14s %18s\n' test "promptfs tok/s" "llama.cpp tok/s" "llama.cpp/promptfs"
printf '%-22s %14.1f %14.1f %18.2f\n' "prefill $pp" "$o_pp" "$r_pp" "$(awk -v a="$r_pp" -v b="$o_pp" 'BEGIN { print (b > 0) ? a / b : 0 }')"
printf '%-22s %14.1f %14.1f %18.2f\n' "decode $tg" "$o_tg" "$r_tg" "$(awk -v a="$r_tg" -v b="$o_tg" 'BEGIN { print (b > 0) ? a / b : 0 }')"
