#!/usr/bin/env bash
# test_mount_shared.sh — many sessions at once, shared prefixes, through a
# real mount.  (1) At temperature 0, 64 sessions written at once (a common
# head of ~180 tokens, then a line of their own) produce exactly the text
# each produces alone (`promptfs run`), with prefix sharing on (the head is
# prefilled once: stats and user.cached_tokens show the shared tokens) and
# off (nothing shared, the same text).  (2) Removing them all gives every KV
# page back: kv_pages_used returns to 0 and the prefix table empties.
. "$(dirname "$0")/mount_lib.sh"

N=64
HEAD="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball under a tree. She ran to the ball and picked it up. It was soft and round. Lily wanted to share the ball with her friend Tom, so she went to his house and knocked on the door. Tom opened the door and smiled. They played with the ball all day long, and when the sun went down they sat on the grass and talked about the stars."
prompt() { printf '%s Then story %d began with a dog named %d.' "$HEAD" "$1" "$(( $1 * 7 ))"; }

for i in $(seq $N); do ref_run "$(prompt "$i")" -n 48 -c 512 >"$PF_TMP/ref$i"; done

# write_all: all N sessions written at once, then N parallel readers
write_all() {
	local pids=()
	for i in $(seq $N); do prompt "$i" >"$MNT/s$i" & pids+=($!); done
	wait "${pids[@]}"
	pids=()
	for i in $(seq $N); do timeout 120 cat "$MNT/s$i" >"$PF_TMP/out$i" 2>"$PF_TMP/err$i" & pids+=($!); done
	wait "${pids[@]}" || true
	for i in $(seq $N); do
		st="$(xattr status "$MNT/s$i")"
		[[ "$st" == done* ]] || fail "s$i: status '$st' ($(cat "$PF_TMP/err$i"))"
		cmp -s "$PF_TMP/out$i" "$PF_TMP/ref$i" || fail "s$i differs from promptfs run ($1)"
	done
}
stat_of() { awk -v k="$1:" '$1 == k {print $2}' "$MNT/stats"; }

pf_mount "$STORIES" -c 512 -s temperature=0 -s max_tokens=48
[ "$(stat_of prefix_sharing)" = on ] || fail "prefix sharing is not on by default"
write_all "sharing on"
saved="$(stat_of prefill_tokens_saved)"
cached=0 alone=0
for i in $(seq $N); do
	c="$(xattr cached_tokens "$MNT/s$i")"
	cached=$((cached + c))
	[ "$c" = 0 ] && alone=$((alone + 1))
done
[ "$saved" -gt 0 ] || fail "nothing shared: prefill_tokens_saved is $saved"
[ "$cached" = "$saved" ] || fail "user.cached_tokens sum $cached, stats say $saved"
# the head fills at least 2 full pages (64 tokens each): one session
# prefilled them, every other one took them
[ "$alone" -le 1 ] || fail "the head was not prefilled once: $alone sessions took no shared page"
[ "$saved" -ge $(((N - 1) * 2 * 64)) ] || fail "the head was not prefilled once: $saved tokens saved"
ok "$N sessions at once equal promptfs run with sharing on ($saved prefill tokens saved, $(stat_of kv_pages_shared) pages shared)"
for i in $(seq $N); do rm "$MNT/s$i"; done
for _ in $(seq 50); do [ "$(stat_of kv_pages_used)" = 0 ] && break; sleep 0.1; done
[ "$(stat_of kv_pages_used)" = 0 ] || fail "after rm: $(stat_of kv_pages_used) pages still used"
[ "$(stat_of prefix_pages)" = 0 ] || fail "after rm: $(stat_of prefix_pages) pages still in the prefix table"
ok "rm of all $N gives every page back"
pf_umount

pf_mount "$STORIES" -c 512 -s temperature=0 -s max_tokens=48 --no-prefix-share
[ "$(stat_of prefix_sharing)" = off ] || fail "--no-prefix-share: $(stat_of prefix_sharing)"
write_all "sharing off"
[ "$(stat_of prefill_tokens_saved)" = 0 ] || fail "sharing off saved $(stat_of prefill_tokens_saved) tokens"
[ "$(xattr cached_tokens "$MNT/s1")" = 0 ] || fail "sharing off: user.cached_tokens $(xattr cached_tokens "$MNT/s1")"
ok "$N sessions at once equal promptfs run with sharing off"
pf_umount
ok "all"
