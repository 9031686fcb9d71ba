#!/usr/bin/env bash
# test_mount_real.sh — the real default model ($PROMPTFS_MODEL, Qwen2.5
# 0.5B instruct, ChatML) mounted in chat mode, as a new user would use it:
# a haiku and a follow-up turn (greedy output equals `promptfs run`, the
# second turn reuses the KV cache), the system prompt as an xattr, history
# with roles, Ctrl-C on a cat waiting on a live reply, clean unmount.
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_MODEL:?PROMPTFS_MODEL not set}"
[ -f "$PROMPTFS_MODEL" ] || fail "the real model $PROMPTFS_MODEL is missing (scripts/fetch-model.sh)"

# real_run PROMPT [run options]: the reply of `promptfs run` on the real model.
real_run() {
	local prompt="$1" out
	shift
	out="$(timeout 300 "$PROMPTFS_BIN" run "$PROMPTFS_MODEL" "$prompt" --temp 0 "$@" 2>/dev/null && echo x)"
	[[ "$out" == *x ]] || fail "promptfs run failed on '$prompt'"
	out="${out%x}"
	printf '%s' "${out%$'\n'}"
}

pf_mount "$PROMPTFS_MODEL" -s temperature=0 -s max_tokens=24
grep -q "qwen2" "$MNT/model" || fail "model file: $(cat "$MNT/model")"

# ---- the haiku, greedy: equals promptfs run (chat mode on both sides)
echo "Write a haiku about the sea" >"$MNT/poem"
[ "$(xattr mode "$MNT/poem")" = chat ] || fail "a model with a template should default to chat mode"
timeout 300 cat "$MNT/poem" >"$PF_TMP/poem1" || fail "cat poem"
[ -s "$PF_TMP/poem1" ] || fail "empty reply"
grep -q "<|im_end|>\|<|im_start|>" "$PF_TMP/poem1" && fail "control tokens in the reply"
real_run "Write a haiku about the sea" -n 24 >"$PF_TMP/ref1"
cmp -s "$PF_TMP/poem1" "$PF_TMP/ref1" || fail "mount and promptfs run differ:
mount: '$(cat "$PF_TMP/poem1")'
run:   '$(cat "$PF_TMP/ref1")'"
ok "haiku in chat mode equals promptfs run: $(tr '\n' '/' <"$PF_TMP/poem1")"

# ---- the next turn reuses the cache
n1="$(xattr tokens "$MNT/poem")"
echo "Now make it rhyme" >>"$MNT/poem"
timeout 300 cat "$MNT/poem" >"$PF_TMP/poem2"
[ -s "$PF_TMP/poem2" ] || fail "empty second reply"
pt="$(xattr prompt_tokens "$MNT/poem")"
pf="$(xattr prefill_tokens "$MNT/poem")"
# the turn's own tokens (template included), plus at most the previous
# reply's end-of-turn token, sampled but never run through the model
[ "$pf" -le $((pt + 1)) ] && [ "$pf" -lt "$n1" ] ||
	fail "second turn prefilled $pf tokens ($pt new, $n1 before): the cache was not reused"
[ "$(xattr turns "$MNT/poem")" = 2 ] || fail "turns"
grep -q "Now make it rhyme" "$MNT/history/poem" || fail "history lacks the second prompt"
grep -qF "$(head -n 1 "$PF_TMP/poem2")" "$MNT/history/poem" || fail "history lacks the second reply"
grep -q '"role":"assistant"' "$MNT/history/poem.json" || fail "history json"
ok "second turn prefilled $pf tokens for its $pt (conversation was $n1)"

# ---- the system prompt as an xattr: equals promptfs run --system
touch "$MNT/sys"
setfattr -n user.system -v "You answer in one short sentence." "$MNT/sys"
echo "What is the sea?" >"$MNT/sys"
timeout 300 cat "$MNT/sys" >"$PF_TMP/sys"
real_run "What is the sea?" -n 24 --system "You answer in one short sentence." >"$PF_TMP/sysref"
cmp -s "$PF_TMP/sys" "$PF_TMP/sysref" || fail "system prompt: mount '$(cat "$PF_TMP/sys")' vs run '$(cat "$PF_TMP/sysref")'"
grep -q "one short sentence" "$MNT/history/sys" || fail "history lacks the system prompt"
ok "system prompt via user.system"

# ---- Ctrl-C on a cat waiting on a live reply returns at once
touch "$MNT/long"
setfattr -n user.max_tokens -v 200 "$MNT/long"
echo "Count from 1 to 100, one number per line." >"$MNT/long"
for _ in $(seq 300); do [ "$(xattr state "$MNT/long")" = generating ] && break; sleep 0.1; done
timeout 60 head -c 1 "$MNT/long" >/dev/null
t0=$(ms)
rc=0
timeout -s INT 2 cat "$MNT/long" >/dev/null || rc=$?
dt=$(($(ms) - t0))
[ "$(xattr state "$MNT/long")" = generating ] || fail "the reply finished first; the test proves nothing"
[ $rc -ne 0 ] && [ $dt -lt 3000 ] || fail "Ctrl-C took $dt ms (rc $rc)"
rm "$MNT/long"
ok "Ctrl-C on a waiting cat: back in $dt ms (2000 ms of it waiting)"

pf_umount
ok "all"
