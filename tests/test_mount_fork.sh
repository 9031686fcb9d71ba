#!/usr/bin/env bash
# test_mount_fork.sh — forking conversations through a real mount of the
# real model (chat mode, greedy):
#   - `cp a b`: b's history (text, JSON, per message) equals a's; `>> b`
#     prefills only its own new tokens (the KV pages are shared, copy-on-
#     write); b's reply equals the reply a gives to the same turn; a's files
#     are byte-identical before and after.
#   - `setfattr -n user.fork_from -v c@2 d` on a 4-turn session c: d holds
#     c's first two turns, its next turn prefills only its own tokens and
#     its reply equals a fresh session that ran the same two turns then that
#     turn; c is unchanged.
#   - cp onto an existing session replaces it; bad fork specs are refused.
#   - history/NAME.d/: one file per message, equal to the JSON history's
#     messages (parsed by Python's json), `stat` sizes equal the bytes.
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_MODEL:?PROMPTFS_MODEL not set}"
[ -f "$PROMPTFS_MODEL" ] || fail "the real model $PROMPTFS_MODEL is missing (scripts/fetch-model.sh)"
: "${PROMPTFS_PYTHON:?}"

pf_mount "$PROMPTFS_MODEL" -s temperature=0 -s max_tokens=24

# turn SESSION TEXT [>|>>]: one turn, waits for its reply
turn() {
	if [ "${3:->>}" = ">" ]; then echo "$2" >"$MNT/$1"; else echo "$2" >>"$MNT/$1"; fi
	timeout 300 cat "$MNT/$1" >/dev/null || fail "cat $1"
	case "$(xattr status "$MNT/$1")" in done*) ;; *) fail "$1: status $(xattr status "$MNT/$1")" ;; esac
}

# snap SESSION DIR: every file of a session, byte for byte
snap() {
	mkdir -p "$2"
	cat "$MNT/$1" >"$2/reply"
	cat "$MNT/history/$1" >"$2/text"
	cat "$MNT/history/$1.json" >"$2/json"
	for f in "$MNT/history/$1.d"/*; do cat "$f" >"$2/msg-$(basename "$f")"; done
	getfattr -d "$MNT/$1" 2>/dev/null | grep -v -e _tps= -e '^#' >"$2/xattrs"
}

# extra SESSION: 1 when its last reply ended without an end-of-turn token
# (its last sampled token was never run, so the next turn prefills it too)
extra() { [ "$(xattr status "$MNT/$1")" = "done (end of turn)" ] && echo 0 || echo 1; }

# ---- cp a b
# a first prompt of ~90 tokens: the conversation spans a full KV page and a
# partial one, so cp shares a full page and the tail page is copied on write
long="I am writing a short quiz for children about the natural world around them, with simple questions about colours, animals, plants, the weather and the seasons, and I would like very short answers that a seven-year-old can read easily. Please answer in one word only: what colour is the sky?"
turn a "$long" ">"
turn a "And the grass?"
setfattr -n user.top_k -v 7 "$MNT/a"
snap a "$PF_TMP/a0"
x="$(extra a)"
cp "$MNT/a" "$MNT/b" || fail "cp a b"
[ "$(xattr fork_from "$MNT/b")" = a ] || fail "user.fork_from of b: '$(xattr fork_from "$MNT/b")'"
cmp -s "$MNT/history/a" "$MNT/history/b" || fail "history/b differs from history/a"
cmp -s "$MNT/history/a.json" "$MNT/history/b.json" || fail "history/b.json differs"
cmp -s "$MNT/a" "$MNT/b" || fail "b's reply differs from a's"
[ "$(xattr top_k "$MNT/b")" = 7 ] || fail "setting overrides not copied: top_k $(xattr top_k "$MNT/b")"
[ "$(xattr tokens "$MNT/b")" = "$(xattr tokens "$MNT/a")" ] || fail "token counts differ"
[ "$(xattr kv_tokens "$MNT/b")" = "$(xattr kv_tokens "$MNT/a")" ] || fail "b's KV cache is not a's"
shared="$(grep '^kv_pages_shared:' "$MNT/stats" | cut -d' ' -f2)"
[ "$shared" -ge 2 ] || fail "$shared KV pages shared after cp (a full one and the tail expected)"
ok "cp a b: same history, reply, settings, tokens; $shared KV pages shared"

copied0="$(grep '^kv_pages_copied:' "$MNT/stats" | cut -d' ' -f2)"
turn b "And the sun?"
copied1="$(grep '^kv_pages_copied:' "$MNT/stats" | cut -d' ' -f2)"
shared1="$(grep '^kv_pages_shared:' "$MNT/stats" | cut -d' ' -f2)"
[ "$copied1" -eq $((copied0 + 1)) ] || fail "b's turn copied $((copied1 - copied0)) shared pages, not the one tail page"
[ "$shared1" -eq $((shared - 1)) ] || fail "after b's turn $shared1 pages are shared (before: $shared)"
pf="$(xattr prefill_tokens "$MNT/b")"
pt="$(xattr prompt_tokens "$MNT/b")"
[ "$pf" -eq $((pt + x)) ] || fail "b's turn prefilled $pf tokens, its own are $pt (+$x)"
cat "$MNT/b" >"$PF_TMP/b3"
snap a "$PF_TMP/a1"
diff -r "$PF_TMP/a0" "$PF_TMP/a1" >/dev/null || fail "a changed when b went on: $(diff -r "$PF_TMP/a0" "$PF_TMP/a1")"
turn a "And the sun?"
cmp -s "$MNT/a" "$PF_TMP/b3" || fail "b's reply differs from a's to the same turn:
b: '$(cat "$PF_TMP/b3")'
a: '$(cat "$MNT/a")'"
ok "b's next turn prefilled $pf tokens (its own $pt +$x), copied the tail page only, reply = a's to the same turn, a untouched"

# ---- fork from turn 2 of a 4-turn session
turn c "Name a fruit, one word." ">"
turn c "Name a vegetable, one word."
x2="$(extra c)"
turn c "Name a tree, one word."
turn c "Name a flower, one word."
snap c "$PF_TMP/c0"
touch "$MNT/d"
setfattr -n user.fork_from -v c@2 "$MNT/d" || fail "setfattr user.fork_from c@2"
[ "$(xattr turns "$MNT/d")" = 2 ] || fail "d has $(xattr turns "$MNT/d") turns, not 2"
[ "$(ls "$MNT/history/d.d" | tr '\n' ' ')" = "$(ls "$MNT/history/c.d" | head -n "$(ls "$MNT/history/d.d" | wc -l)" | tr '\n' ' ')" ] ||
	fail "d's messages: $(ls "$MNT/history/d.d")"
ls "$MNT/history/d.d" | grep -q 004-assistant || fail "d lacks turn 2's reply"
ls "$MNT/history/d.d" | grep -q 005-user && fail "d has turn 3"
for f in "$MNT/history/d.d"/*; do
	cmp -s "$f" "$MNT/history/c.d/$(basename "$f")" || fail "history/d.d/$(basename "$f") differs from c's"
done
turn d "Name a bird, one word."
pf="$(xattr prefill_tokens "$MNT/d")"
pt="$(xattr prompt_tokens "$MNT/d")"
[ "$pf" -eq $((pt + x2)) ] || fail "d's turn prefilled $pf tokens, its own are $pt (+$x2)"
turn e "Name a fruit, one word." ">"
turn e "Name a vegetable, one word."
turn e "Name a bird, one word."
cmp -s "$MNT/e" "$MNT/d" || fail "d's reply differs from a fresh session's:
d: '$(cat "$MNT/d")'
e: '$(cat "$MNT/e")'"
cmp -s "$MNT/history/e" "$MNT/history/d" || fail "d's history differs from the fresh session's"
snap c "$PF_TMP/c1"
diff -r "$PF_TMP/c0" "$PF_TMP/c1" >/dev/null || fail "c changed"
ok "fork c@2: 2 turns, next turn prefilled $pf ($pt +$x2), reply = a fresh session's, c untouched"

# ---- cp onto an existing session, and bad specs
cp "$MNT/c" "$MNT/d" || fail "cp c d (d exists)"
cmp -s "$MNT/history/c" "$MNT/history/d" || fail "cp onto an existing session did not replace it"
[ "$(xattr turns "$MNT/d")" = 4 ] || fail "d after cp c d: $(xattr turns "$MNT/d") turns"
expect_err "No such file" setfattr -n user.fork_from -v nosuch "$MNT/d"
expect_err "Invalid argument" setfattr -n user.fork_from -v c@9 "$MNT/d"
expect_err "Invalid argument" setfattr -n user.fork_from -v d "$MNT/d"
expect_err "Operation not permitted" setfattr -x user.fork_from "$MNT/d"
[ "$(xattr turns "$MNT/d")" = 4 ] || fail "a refused fork changed d"
ok "cp onto an existing session replaces it; bad forks refused, nothing changed"

# ---- history/NAME.d/ against the JSON history
"$PROMPTFS_PYTHON" - "$MNT" c <<'EOF' || fail "history/c.d does not match history/c.json"
import json, os, sys
mnt, name = sys.argv[1], sys.argv[2]
msgs = json.load(open(os.path.join(mnt, "history", name + ".json"), encoding="utf-8"))
d = os.path.join(mnt, "history", name + ".d")
files = sorted(os.listdir(d))
first = 0 if msgs and msgs[0]["role"] == "system" else 1
want = ["%03d-%s" % (i + first, m["role"]) for i, m in enumerate(msgs)]
assert files == want, (files, want)
for f, m in zip(files, msgs):
    data = open(os.path.join(d, f), "rb").read()
    assert data == m["content"].encode("utf-8"), (f, data, m["content"])
    assert os.stat(os.path.join(d, f)).st_size == len(data), f
for f in (name, name + ".json"):
    p = os.path.join(mnt, "history", f)
    assert os.stat(p).st_size == len(open(p, "rb").read()), p
print("ok - history/%s.d: %d messages equal the JSON history; stat sizes exact" % (name, len(files)))
EOF
[ -d "$MNT/history/c.d" ] || fail "history/c.d is not a directory"
expect_err "Permission denied" sh -c "echo x > '$MNT/history/c.d/001-user'"
pf_umount
ok "all"
