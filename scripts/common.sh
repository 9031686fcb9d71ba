# scripts/common.sh — shared settings for the project's scripts (sourced).
# PROMPTFS_CACHE holds everything downloaded: models, the Python venv with the
# reference implementations, pip's wheel cache.  The build and CI reuse it.
: "${PROMPTFS_CACHE:=${HOME:-/root}/.cache/promptfs}"
export PROMPTFS_CACHE
export PIP_CACHE_DIR="$PROMPTFS_CACHE/pip"
PROMPTFS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${PROMPTFS_SHARED:=$(cd "$PROMPTFS_SRC/.." && pwd)/shared}"
PROMPTFS_VENV="$PROMPTFS_CACHE/venv"
PROMPTFS_PY="$PROMPTFS_VENV/bin/python3"
PROMPTFS_MODEL_DEFAULT="$PROMPTFS_CACHE/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PROMPTFS_MODEL_GEMMA3="$PROMPTFS_CACHE/models/gemma-3-270m-q4_k_m.gguf"
: "${PROMPTFS_BUILD:=$PROMPTFS_SRC/build}"
export PROMPTFS_BUILD
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
