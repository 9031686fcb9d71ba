#!/bin/sh
# parallel.sh — several sessions at once: one per topic, all generating
# together (the engine batches them), each answer saved to OUTDIR/TOPIC.txt.
#   usage: examples/parallel.sh [MOUNTPOINT] [OUTDIR] [TOPIC...]
mnt="${1:-$HOME/llm}"; out="${2:-answers}"
if [ $# -ge 2 ]; then shift 2; else set --; fi
[ $# -gt 0 ] || set -- sea mountains autumn cities rain
mkdir -p "$out" || exit 1
for topic in "$@"; do
	(
		name="par-$(printf '%s' "$topic" | tr -c 'A-Za-z0-9_-' '_')"
		echo "Tell me a short story about $topic." > "$mnt/$name" &&
		cat "$mnt/$name" > "$out/$topic.txt" &&
		rm "$mnt/$name"
	) &
done
wait
for topic in "$@"; do
	printf '== %s (%s bytes)\n' "$topic" "$(wc -c < "$out/$topic.txt")"
done
