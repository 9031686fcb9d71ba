#!/usr/bin/env bash
# test_mount_examples.sh — runs examples/*.sh as written, on a real mount of
# stories260K (raw mode, greedy), and checks each answer against
# `promptfs run` on the same prompt.
. "$(dirname "$0")/mount_lib.sh"
EX="$PROMPTFS_SRC/examples"

pf_mount "$STORIES" -s temperature=0 -s max_tokens=32

# haiku.sh: the one-liner
timeout 120 sh "$EX/haiku.sh" "$MNT" "the sea" >"$PF_TMP/haiku" || fail "haiku.sh"
ref_run "Write a haiku about the sea" -n 32 >"$PF_TMP/haiku.ref"
echo >>"$PF_TMP/haiku.ref" # haiku.sh ends the reply with a newline
cmp -s "$PF_TMP/haiku" "$PF_TMP/haiku.ref" || fail "haiku.sh printed '$(cat "$PF_TMP/haiku")'"
ok "haiku.sh"

# chat.sh: two turns from stdin, then an empty line
printf 'Once upon a time\nThe end.\n\n' | timeout 120 sh "$EX/chat.sh" "$MNT" talk >"$PF_TMP/chat" || fail "chat.sh"
[ "$(xattr turns "$MNT/talk")" = 2 ] || fail "chat.sh: $(xattr turns "$MNT/talk") turns"
ref_run "Once upon a time" -n 32 >"$PF_TMP/chat.ref1"
grep -qF "model> $(head -n 1 "$PF_TMP/chat.ref1")" "$PF_TMP/chat" || fail "chat.sh transcript: $(cat "$PF_TMP/chat")"
grep -q "The end." "$MNT/history/talk" || fail "chat.sh second turn missing from history"
ok "chat.sh"

# parallel.sh: several sessions at once
timeout 300 sh "$EX/parallel.sh" "$MNT" "$PF_TMP/par" cats dogs rain >"$PF_TMP/par.log" || fail "parallel.sh"
for t in cats dogs rain; do
	ref_run "Tell me a short story about $t." -n 32 >"$PF_TMP/par.ref"
	cmp -s "$PF_TMP/par/$t.txt" "$PF_TMP/par.ref" || fail "parallel.sh $t: '$(cat "$PF_TMP/par/$t.txt")'"
done
ls "$MNT" | grep -q '^par-' && fail "parallel.sh left sessions behind"
ok "parallel.sh"

# batch.sh: a folder of prompt files into a folder of answers
mkdir -p "$PF_TMP/prompts"
for p in "The little dog" "Lily wanted a" "One day, a bird" "Tom and Sue" "The sun was hot"; do
	echo "$p" >"$PF_TMP/prompts/$(echo "$p" | tr ' ,' '__').txt"
done
timeout 300 sh "$EX/batch.sh" "$MNT" "$PF_TMP/prompts" "$PF_TMP/answers" 3 >"$PF_TMP/batch.log" || fail "batch.sh"
for f in "$PF_TMP"/prompts/*.txt; do
	ref_run "$(cat "$f")" -n 32 >"$PF_TMP/batch.ref"
	cmp -s "$PF_TMP/answers/$(basename "$f")" "$PF_TMP/batch.ref" || fail "batch.sh $(basename "$f")"
done
ok "batch.sh: $(ls "$PF_TMP/answers" | wc -l) answers"
pf_umount
ok "all"
