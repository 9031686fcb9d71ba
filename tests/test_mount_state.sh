#!/usr/bin/env bash
# test_mount_state.sh — --state-dir: every finished turn is journaled; after
# an unmount (and after a kill -9) the sessions, their names, settings and
# histories come back, and the KV cache comes back from its page file (or is
# rebuilt on first use) so the next turn continues the conversation exactly
# (raw greedy: equals `promptfs run` on the whole text).  Removed and renamed
# sessions stay so.  tests/test_mount_kvstate.sh covers the page files.
. "$(dirname "$0")/mount_lib.sh"

P="Once upon a time"
STATE="$PF_TMP/state"
ref_run "$P" -n 24 >"$PF_TMP/r1"

pf_mount "$STORIES" --state-dir "$STATE" -s temperature=0 -s max_tokens=24
echo "$P" >"$MNT/keep"
timeout 60 cat "$MNT/keep" >"$PF_TMP/k1"
cmp -s "$PF_TMP/k1" "$PF_TMP/r1" || fail "first turn differs from promptfs run"
echo " The end." >>"$MNT/keep"
timeout 60 cat "$MNT/keep" >"$PF_TMP/k2"
setfattr -n user.max_tokens -v 16 "$MNT/keep"
echo "$P" >"$MNT/renamed"
timeout 60 cat "$MNT/renamed" >/dev/null
mv "$MNT/renamed" "$MNT/odd name ✓"
echo "$P" >"$MNT/removed"
timeout 60 cat "$MNT/removed" >/dev/null
rm "$MNT/removed"
cp "$MNT/history/keep" "$PF_TMP/h1"
cp "$MNT/history/keep.json" "$PF_TMP/j1"
pf_umount
ls "$STATE"/*.journal >/dev/null 2>&1 || fail "no journal files in the state dir"
ok "journaled: $(ls "$STATE" | wc -l) files"

pf_mount "$STORIES" --state-dir "$STATE" -s temperature=0 -s max_tokens=24
[ "$(ls "$MNT" | grep -vx -e README -e model -e stats -e defaults -e history -e events -e grammars -e schemas | sort | tr '\n' '|')" = "keep|odd name ✓|" ] ||
	fail "sessions after restart: $(ls "$MNT")"
cmp -s "$MNT/history/keep" "$PF_TMP/h1" || fail "history differs after restart: $(cat "$MNT/history/keep")"
cmp -s "$MNT/history/keep.json" "$PF_TMP/j1" || fail "JSON history differs after restart"
cmp -s "$MNT/keep" "$PF_TMP/k2" || fail "the latest reply is not readable after restart"
[ "$(xattr max_tokens "$MNT/keep")" = 16 ] || fail "settings not restored"
[ "$(xattr turns "$MNT/keep")" = 2 ] || fail "turns not restored"
ok "sessions, names, settings and histories back after unmount"

# the next turn continues the conversation on the KV cache of its page file
setfattr -x user.max_tokens "$MNT/keep"
echo " Then" >>"$MNT/keep"
timeout 60 cat "$MNT/keep" >"$PF_TMP/k3"
full="$P$(cat "$PF_TMP/k1"; echo x)"
full="${full%x} The end.$(cat "$PF_TMP/k2"; echo x)"
full="${full%x} Then"
ref_run "$full" -n 24 >"$PF_TMP/r3"
cmp -s "$PF_TMP/k3" "$PF_TMP/r3" || fail "turn after restart differs from a fresh run of the whole text:
mount: '$(cat "$PF_TMP/k3")'
run:   '$(cat "$PF_TMP/r3")'"
pf="$(xattr prefill_tokens "$MNT/keep")"
pt="$(xattr prompt_tokens "$MNT/keep")"
# the previous reply ended at max_tokens, so its last token was never run:
# one more than the new tokens, exactly as without a restart
[ "$pf" -eq $((pt + 1)) ] || fail "first turn after restart prefilled $pf tokens ($pt new): the page file was not used"
ok "turn after restart continues exactly (prefill $pf tokens: the new ones and the unrun last token)"

# kill -9: the finished turns are on disk already
echo "$P" >"$MNT/crash"
timeout 60 cat "$MNT/crash" >"$PF_TMP/c1"
for _ in $(seq 50); do grep -q crash "$STATE"/*.journal 2>/dev/null && break; sleep 0.1; done
sleep 0.5
{ kill -KILL "$DPID"; wait "$DPID"; } 2>/dev/null || true
fusermount3 -u -z "$MNT" 2>/dev/null || true
pf_mount "$STORIES" --state-dir "$STATE" -s temperature=0 -s max_tokens=24
cmp -s "$MNT/crash" "$PF_TMP/c1" || fail "a turn finished before kill -9 was lost"
[ -f "$MNT/keep" ] && [ -f "$MNT/odd name ✓" ] || fail "sessions lost after kill -9"
ok "finished turns survive kill -9"
pf_umount
ok "all"
