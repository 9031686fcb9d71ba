#!/usr/bin/env bash
# scripts/bench-grammar.sh — the cost of a grammar: decode tokens/s of
# `promptfs run` with and without a GBNF grammar (default llama.cpp's
# json.gbnf), same model, prompt, settings and backend, greedy, best of
# REPS each.  A benchmark, not a test: it prints a table.
#   scripts/bench-grammar.sh [MODEL.gguf] [GRAMMAR.gbnf]
#   env: BACKEND=auto|cuda|cpu  N=tokens per row  REPS=repetitions  THREADS=-t
#        PROMPT  BIAS_CONTAINING (default '}')  PROMPTFS_BIN (default build/promptfs)
#
# Every row must decode exactly N tokens, or the script fails: a speed
# figure over a reply that ended early measures start-up, not decode (a
# random-weight model's greedy reply under json.gbnf can be `{}`).  So
# every token whose piece contains BIAS_CONTAINING gets logit_bias -inf
# (`promptfs info MODEL --tokens-containing`, 499 tokens for '}' in the
# Qwen2 vocabulary): under json.gbnf the object then never closes, the
# reply keeps writing keys and values (and the grammar's stacks grow as a
# real reply's do), and it runs to N.  Rows:
#   unconstrained          no bias, no grammar (on CUDA: sampled on the device)
#   unconstrained + bias   the bias alone (logit_bias is a host step: on CUDA
#                          the row is copied to the host and sampled there)
#   GRAMMAR + bias         the bias and the grammar
# and two ratios: grammar row / unconstrained (what a user pays for the
# grammar, the host round trip included) and grammar row / biased row (the
# grammar step alone, both rows sampled on the host).
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
BIAS_CONTAINING="${BIAS_CONTAINING-\}}"
[ -x "$BIN" ] || { echo "no promptfs binary at $BIN" >&2; exit 1; }

bias=()
if [ -n "$BIAS_CONTAINING" ]; then
	ids="$("$BIN" info "$MODEL" --tokens-containing "$BIAS_CONTAINING")"
	[ -n "$ids" ] || { echo "no token of $(basename "$MODEL") contains '$BIAS_CONTAINING'" >&2; exit 1; }
	n_bias=$(echo "$ids" | wc -l)
	bias=(--set "logit_bias=$(echo "$ids" | sed 's/$/:-inf/' | paste -sd, -)")
fi

# one_run [run options]: "tokens tok/s" of the reply (from run -v)
one_run() {
	"$BIN" run "$MODEL" "$PROMPT" --backend "$BACKEND" -t "$THREADS" --temp 0 -n "$N" -v "$@" 2>&1 >/dev/null |
		sed -n 's/.*reply \([0-9]*\) tokens at \([0-9.]*\) tok\/s.*/\1 \2/p' | tail -1
}

best() { # NAME [run options]: best of REPS, "tokens tok/s"; fails unless every run made N tokens
	local name="$1" b="0 0" r
	shift
	for _ in $(seq "$REPS"); do
		r="$(one_run "$@")"
		[ -n "$r" ] || { echo "promptfs run failed ($name)" >&2; exit 1; }
		[ "${r%% *}" = "$N" ] || {
			echo "FAIL: the $name row decoded ${r%% *} tokens, not N=$N: its tok/s would not be decode speed" \
				"(a reply that ends early: use a random-weight model, or BIAS_CONTAINING / PROMPT that keep it going)" >&2
			exit 1
		}
		awk -v a="$r" -v b="$b" 'BEGIN { split(a, x); split(b, y); exit !(x[2] > y[2]) }' && b="$r"
	done
	echo "$b"
}

g="$(basename "$GRAMMAR")"
free_r="$(best unconstrained)"
if [ ${#bias[@]} -gt 0 ]; then bias_r="$(best "unconstrained + bias" "${bias[@]}")"; fi
gram_r="$(best "$g" "${bias[@]}" --grammar "$GRAMMAR")"
printf '\nmodel: %s\nbackend: %s   grammar: %s   greedy, %s tokens per row, best of %s\n' \
	"$(basename "$MODEL")" "$BACKEND" "$g" "$N" "$REPS"
if [ ${#bias[@]} -gt 0 ]; then
	printf "bias: logit_bias -inf on the %s tokens whose piece contains '%s' (both biased rows)\n" "$n_bias" "$BIAS_CONTAINING"
fi
printf '\n| decode | tokens | tok/s |\n| --- | --- | --- |\n'
printf '| unconstrained | %s | %s |\n' $free_r
if [ ${#bias[@]} -gt 0 ]; then
	printf '| unconstrained + bias | %s | %s |\n' $bias_r
	printf '| %s + bias | %s | %s |\n' "$g" $gram_r
	awk -v a="$free_r" -v b="$bias_r" -v c="$gram_r" 'BEGIN { split(a, x); split(b, y); split(c, z)
		printf "\ngrammar / unconstrained: %.3f\ngrammar / unconstrained + bias: %.3f\n", z[2] / x[2], z[2] / y[2] }'
else
	printf '| %s | %s | %s |\n' "$g" $gram_r
	awk -v a="$free_r" -v c="$gram_r" 'BEGIN { split(a, x); split(c, z); printf "\ngrammar / unconstrained: %.3f\n", z[2] / x[2] }'
fi
