#!/usr/bin/env bash
# tests/gpu/pack.sh — builds the CUDA build here (no GPU needed) and fills
# .carry/ (git-ignored) with what tests/gpu/run.sh needs on the GPU machine:
# the stripped binaries (bin.txz), the tiny real model and the vocabularies
# the synthetic models take (qwen2, llama-spm, phi-3, llama-bpe).  Keep it
# under 64 MiB.
#   tests/gpu/pack.sh [BUILD_DIR]      (default build-cuda)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
B="${1:-$ROOT/build-cuda}"
SHARED="${PROMPTFS_SHARED:-$ROOT/../shared}"
cmake -S "$ROOT" -B "$B" -DPROMPTFS_STATIC_FUSE=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null
cmake --build "$B" --target promptfs gpu_ops gpu_attn gpu_model gpu_bench -j2
rm -rf "$ROOT/.carry"
tmp="$(mktemp -d)"
mkdir -p "$tmp/bin" "$ROOT/.carry/models"
cp "$B/promptfs" "$B"/gpu/gpu_* "$tmp/bin/"
strip "$tmp"/bin/*
# the five binaries share the same device code: one xz stream with a large
# window keeps one copy (~9 MB instead of ~55 MB)
XZ_OPT=-9 tar cJf "$ROOT/.carry/bin.txz" -C "$tmp" bin
rm -rf "$tmp"
cp "$SHARED/models/stories260K.gguf" "$SHARED/models/vocab/ggml-vocab-qwen2.gguf" \
	"$SHARED/models/vocab/ggml-vocab-llama-spm.gguf" "$SHARED/models/vocab/ggml-vocab-phi-3.gguf" \
	"$SHARED/models/vocab/ggml-vocab-llama-bpe.gguf" "$ROOT/.carry/models/"
du -sh "$ROOT/.carry"
