#!/bin/sh
# batch.sh — answer every prompt file in a folder: PROMPTS/NAME.txt becomes
# ANSWERS/NAME.txt.  JOBS sessions run at a time (default 4).
#   usage: examples/batch.sh [MOUNTPOINT] PROMPTS ANSWERS [JOBS]
mnt="${1:-$HOME/llm}"; in="${2:?usage: batch.sh MOUNTPOINT PROMPTS ANSWERS [JOBS]}"
out="${3:?usage: batch.sh MOUNTPOINT PROMPTS ANSWERS [JOBS]}"; jobs="${4:-4}"
mkdir -p "$out" || exit 1
export mnt out
find "$in" -maxdepth 1 -name '*.txt' -print0 |
	xargs -0 -r -P "$jobs" -I{} sh -c '
		f="$1"; name="$(basename "$f" .txt)"; s="batch-$$-$name"
		cat "$f" > "$mnt/$s" && cat "$mnt/$s" > "$out/$name.txt"; rc=$?
		rm -f "$mnt/$s"
		[ $rc = 0 ] && echo "$name: $(wc -c < "$out/$name.txt") bytes" || echo "$name: failed" >&2
		exit $rc' _ {}
