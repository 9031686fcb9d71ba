#!/usr/bin/env bash
# test_bench_load.sh — scripts/bench-load.sh keeps working: at a tiny size
# (stories260K, raw mode, 1 and 4 sessions through a real mount, 8 tokens
# each) the table has one row per count, the token counts from the xattrs
# add up (no more than 8 generated per session, some generated), and the
# numbers are sane (positive rates, median >= worst, ttfb median <= worst;
# with 4 sessions on one prompt head, shared tokens).
set -euo pipefail
: "${PROMPTFS_BIN:?}" "${PROMPTFS_SHARED:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
SCRIPT="$(cd "$(dirname "$0")/.." && pwd)/scripts/bench-load.sh"
out="$(PROMPTFS_BIN="$PROMPTFS_BIN" timeout 300 "$SCRIPT" -n 1,4 -g 8 --raw \
	-m "$PROMPTFS_SHARED/models/stories260K.gguf" -- -t 1)" || fail "bench-load.sh failed: $out"
echo "$out"
rows=0
while read -r n gen agg smed swor tmed tmax wall prompt shared; do
	rows=$((rows + 1))
	[ "$gen" -ge "$n" ] && [ "$gen" -le $((n * 8)) ] || fail "$n sessions generated $gen tokens (1..8 each)"
	awk -v a="$agg" -v sm="$smed" -v sw="$swor" -v tm="$tmed" -v tx="$tmax" -v w="$wall" \
		'BEGIN { exit !(a > 0 && sw > 0 && sm >= sw && tm > 0 && tm <= tx && w > 0) }' \
		|| fail "insane row: $n $gen $agg $smed $swor $tmed $tmax $wall"
	[ "$prompt" -gt "$n" ] || fail "prompt tokens $prompt for $n sessions"
	if [ "$n" -gt 1 ]; then [ "$shared" -gt 0 ] || fail "$n sessions on one head shared nothing"; fi
done < <(awk '$1 ~ /^[0-9]+$/ && NF == 10' <<<"$out")
[ "$rows" = 2 ] || fail "table has $rows rows, want 2"
grep -q "^sessions  *generated  *agg_tok/s" <<<"$out" || fail "no table header"
echo "ok - bench-load.sh -n 1,4"
