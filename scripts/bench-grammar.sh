#!/usr/bin/env bash
# scripts/bench-grammar.sh — the cost of a grammar: decode tokens/s of
# `promptfs run` with and without a GBNF grammar (default llama.cpp's
# json.gbnf), same model, prompt, settings and backend, greedy, best of
# REPS each.  A benchmark, not a test: it prints a table.
#   scripts/bench-grammar.sh [MODEL.gguf] [GRAMMAR.gbnf]
#   env: BACKEND=auto|cuda|cpu  N=max tokens  REPS=repetitions  THREADS=-t
#        PROMPT  PROMPTFS_BIN (default build/promptfs)
# Both runs stop at N tokens or the end of the turn; the table shows how many
# tokens each produced (a random-weight synthetic model runs to N both ways).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PROMPTFS_BIN:-$ROOT/build/promptfs}"
MODEL="${1:-${PROMPTFS_CACHE:-$HOME/.cache/promptfs}/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}"
GRAMMAR="${2:-$ROOT/tests/grammars/json.gbnf}"
BACKEND="${BACKEND:-auto}"
N="${N:-128}"
REPS="${REPS:-3}"
THREADS="${THREADS:-0}"
PROMPT="${PROMPT:-Describe a cat as a JSON object with many fields.}"
[ -x "$BIN" ] || { echo "no promptfs binary at $BIN" >&2; exit 1; }

# one_run [run options]: "tokens tok/s" of the reply (from run -v)
one_run() {
	"$BIN" run "$MODEL" "$PROMPT" --backend "$BACKEND" -t "$THREADS" --temp 0 -n "$N" -v "$@" 2>&1 >/dev/null |
		sed -n 's/.*reply \([0-9]*\) tokens at \([0-9.]*\) tok\/s.*/\1 \2/p' | tail -1
}

best() { # best of REPS: "tokens tok/s"
	local b="0 0" r
	for _ in $(seq "$REPS"); do
		r="$(one_run "$@")"
		[ -n "$r" ] || { echo "promptfs run failed ($*)" >&2; exit 1; }
		awk -v a="$r" -v b="$b" 'BEGIN { split(a, x); split(b, y); exit !(x[2] > y[2]) }' && b="$r"
	done
	echo "$b"
}

# alternate the two so that machine noise hits both
free_r="$(best)"
gram_r="$(best --grammar "$GRAMMAR")"
printf '\nmodel: %s\nbackend: %s   grammar: %s   greedy, max %s tokens, best of %s\n\n' \
	"$(basename "$MODEL")" "$BACKEND" "$(basename "$GRAMMAR")" "$N" "$REPS"
printf '| decode | tokens | tok/s |\n| --- | --- | --- |\n'
printf '| unconstrained | %s | %s |\n' $free_r
printf '| %s | %s | %s |\n' "$(basename "$GRAMMAR")" $gram_r
awk -v a="$free_r" -v b="$gram_r" 'BEGIN { split(a, x); split(b, y); printf "\nconstrained / unconstrained: %.3f\n", y[2] / x[2] }'
