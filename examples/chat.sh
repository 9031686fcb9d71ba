#!/bin/sh
# chat.sh — a chat loop in plain shell on a promptfs mount.
#   usage: examples/chat.sh [MOUNTPOINT] [SESSION]
# Each line you type is one turn: the first starts the conversation (>),
# the next ones continue it (>>, the model's KV cache is reused).  The reply
# streams as it is generated.  An empty line or end of input ends the chat;
# the conversation stays in MOUNTPOINT/history/SESSION.
mnt="${1:-$HOME/llm}"
s="${2:-chat-$$}"
[ -f "$mnt/README" ] || { echo "chat.sh: $mnt is not a promptfs mount" >&2; exit 1; }
op='>'
while printf 'you> ' && IFS= read -r line && [ -n "$line" ]; do
	if [ "$op" = '>' ]; then
		printf '%s\n' "$line" > "$mnt/$s" || exit 1
		op='>>'
	else
		printf '%s\n' "$line" >> "$mnt/$s" || exit 1
	fi
	printf 'model> '
	cat "$mnt/$s" || exit 1
	echo
done
echo
echo "(the whole conversation: cat $mnt/history/$s)"
