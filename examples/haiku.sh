#!/bin/sh
# haiku.sh — the one-liner: a haiku about a topic, streamed to the terminal.
#   usage: examples/haiku.sh [MOUNTPOINT] [TOPIC]
mnt="${1:-$HOME/llm}"; topic="${2:-the sea}"
echo "Write a haiku about $topic" > "$mnt/haiku" && cat "$mnt/haiku" && echo
