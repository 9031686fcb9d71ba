#!/usr/bin/env bash
# test_bench_sessions.sh — `promptfs bench --sessions` keeps working: at a
# tiny size (stories260K, 1 and 4 sessions, 8 tokens each) the table has
# one row per count, every session generated its tokens, and the numbers
# are sane (positive rates, ttfb median <= worst, per-session median >=
# worst, shared tokens only with sharing on).
set -euo pipefail
: "${PROMPTFS_BIN:?}" "${PROMPTFS_SHARED:?}"
MODEL="$PROMPTFS_SHARED/models/stories260K.gguf"
fail() { echo "FAIL: $*" >&2; exit 1; }

check_table() { # OUTPUT SHARING(on|off)
	local out="$1" n gen agg smed swor tmed tmax wall pre shared rows=0
	while read -r n gen agg smed swor tmed tmax wall pre shared; do
		rows=$((rows + 1))
		[ "$gen" = $((n * 8)) ] || fail "$n sessions generated $gen tokens, want $((n * 8))"
		awk -v a="$agg" -v sm="$smed" -v sw="$swor" -v tm="$tmed" -v tx="$tmax" -v w="$wall" \
			'BEGIN { exit !(a > 0 && sw > 0 && sm >= sw && tm > 0 && tm <= tx && w > 0) }' \
			|| fail "insane row: $n $gen $agg $smed $swor $tmed $tmax $wall"
		[ "$pre" -gt 0 ] || fail "no prefill tokens counted"
		if [ "$2" = off ] || [ "$n" = 1 ]; then
			[ "$shared" = 0 ] || fail "$n sessions, sharing $2: $shared shared tokens"
		else
			[ "$shared" -gt 0 ] || fail "$n sessions with a common preamble shared nothing"
		fi
	done < <(awk '$1 ~ /^[0-9]+$/ && NF == 10' <<<"$out")
	[ "$rows" = 2 ] || fail "table has $rows rows, want 2: $out"
	grep -q "^sessions  *generated  *agg_tok/s" <<<"$out" || fail "no table header: $out"
}

out="$("$PROMPTFS_BIN" bench "$MODEL" --sessions 1,4 -n 8 -t 1)" || fail "bench failed: $out"
check_table "$out" on
echo "ok - bench --sessions 1,4 (sharing on)"
out="$("$PROMPTFS_BIN" bench "$MODEL" --sessions 1,4 -n 8 -t 1 --no-prefix-share)" || fail "bench failed: $out"
check_table "$out" off
echo "ok - bench --sessions 1,4 (sharing off)"
"$PROMPTFS_BIN" bench "$MODEL" --sessions 0 >/dev/null 2>&1 && fail "--sessions 0 accepted"
echo "ok - all"
