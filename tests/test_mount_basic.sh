#!/usr/bin/env bash
# test_mount_basic.sh — the filesystem contract on a real FUSE mount of
# stories260K (raw mode, greedy): root files, defaults, sessions, the second
# turn reusing the KV cache, history, xattrs, names and errno, rm/mv/ls -l,
# truncate, ENOSPC, EFBIG, daemon mode.  Expected text comes from
# `promptfs run` (the CLI path), never from this mount.
. "$(dirname "$0")/mount_lib.sh"

# ---- daemon mode: returns once mounted, unmounts and exits cleanly
D="$(mktemp -d "$PF_TMP/daemon.XXXXXX")"
PF_MOUNTS+=("$D")
timeout 60 "$PROMPTFS_BIN" "$STORIES" "$D" || fail "promptfs (daemon mode) exited $?"
mountpoint -q "$D" || fail "promptfs returned before the mount was there"
[ -f "$D/README" ] || fail "the mount does not answer right after promptfs returned"
fusermount3 -u "$D" || fail "fusermount3 -u (daemon mode)"
for _ in $(seq 100); do pgrep -f -- "$D" >/dev/null || break; sleep 0.1; done
pgrep -f -- "$D" >/dev/null && fail "daemon still running 10 s after fusermount3 -u"
ok "daemon mode: returns when mounted, exits at unmount"

pf_mount "$STORIES"

# ---- root files
for f in README model stats defaults history; do
	[ -e "$MNT/$f" ] || fail "missing $f"
done
[ -d "$MNT/history" ] || fail "history is not a directory"
grep -q "promptfs" "$MNT/README" || fail "README"
grep -qi "llama" "$MNT/model" || fail "model does not name the architecture: $(cat "$MNT/model")"
grep -q "^sessions: 0" "$MNT/stats" || fail "stats: $(cat "$MNT/stats")"
ok "root files"

# ---- defaults: key = value lines; a bad line is EINVAL at close and nothing applies
before="$(cat "$MNT/defaults")"
grep -q "^temperature = " <<<"$before" || fail "defaults lacks temperature: $before"
expect_err "Invalid argument" sh -c 'printf "top_k = 7\ntemperature = hot\n" | tee "$1" >/dev/null' _ "$MNT/defaults"
expect_err "Invalid argument" sh -c 'printf "no_such_key = 1\n" | tee -a "$1" >/dev/null' _ "$MNT/defaults"
[ "$(cat "$MNT/defaults")" = "$before" ] || fail "a rejected defaults write changed something"
echo "top_k = 5" >"$MNT/defaults"
grep -q "^top_k = 5$" "$MNT/defaults" || fail "'>' to defaults"
echo "temperature = hot" >"$MNT/defaults" # bash does not report the close error...
grep -q "^top_k = 5$" "$MNT/defaults" || fail "a bad '>' to defaults changed it" # ...but nothing applied
: >"$MNT/defaults"
for _ in $(seq 20); do grep -q "^top_k = 40$" "$MNT/defaults" && break; sleep 0.1; done
[ "$(cat "$MNT/defaults")" = "$before" ] || fail "': > defaults' did not restore the built-in values"
echo "temperature = 0" >>"$MNT/defaults"
grep -q "^temperature = 0$" "$MNT/defaults" || fail "temperature not set: $(cat "$MNT/defaults")"
grep -q "^top_k = 40$" "$MNT/defaults" || fail ">> changed other keys"
[ "$(getfattr --only-values -n user.temperature "$MNT" 2>/dev/null)" = 0 ] || fail "root xattr user.temperature"
ok "defaults (EINVAL, all or nothing, >> keeps other keys)"

# ---- a prompt, greedy, equals promptfs run; printf without newline; echo's newline dropped
P="Once upon a time"
ref_run "$P" -n 48 >"$PF_TMP/want"
[ -s "$PF_TMP/want" ] || fail "promptfs run gave nothing"
setfattr -n user.max_tokens -v 48 "$MNT" || fail "root setfattr"
printf '%s' "$P" >"$MNT/a"
timeout 60 cat "$MNT/a" >"$PF_TMP/got" || fail "cat a"
cmp -s "$PF_TMP/got" "$PF_TMP/want" || fail "mount output differs from promptfs run:
mount: '$(cat "$PF_TMP/got")'
run:   '$(cat "$PF_TMP/want")'"
echo "$P" >"$MNT/b"
timeout 60 cat "$MNT/b" | cmp -s - "$PF_TMP/want" || fail "echo (with newline) differs from printf"
timeout 60 cat "$MNT/b" | cmp -s - "$PF_TMP/want" || fail "a second read differs (reads must not consume)"
[ "$(xattr state "$MNT/b")" = done ] || fail "state $(xattr state "$MNT/b")"
slurp "$PF_TMP/want"
want="$SLURP"
ok "greedy output equals promptfs run; re-read identical"

# ---- the second turn reuses the KV cache (raw: the text is appended)
n1="$(xattr tokens "$MNT/b")"
pre_stats="$(awk '/^prefill_tokens:/ {print $2}' "$MNT/stats")"
echo " The end." >>"$MNT/b"
timeout 60 cat "$MNT/b" >"$PF_TMP/r2"
pt="$(xattr prompt_tokens "$MNT/b")"
pf="$(xattr prefill_tokens "$MNT/b")"
n2="$(xattr tokens "$MNT/b")"
post_stats="$(awk '/^prefill_tokens:/ {print $2}' "$MNT/stats")"
# the new text's tokens, plus at most the previous reply's last token (sampled, not yet in the cache)
[ "$pf" -le $((pt + 1)) ] || fail "second turn prefilled $pf tokens for a $pt-token turn"
[ "$pf" -lt "$n1" ] || fail "second turn prefilled $pf tokens: the first turn's $n1 were not reused"
[ $((post_stats - pre_stats)) -eq "$pf" ] || fail "stats prefill grew by $((post_stats - pre_stats)), turn says $pf"
[ "$n2" -gt "$n1" ] || fail "tokens did not grow ($n1 → $n2)"
# the continuation is what a fresh run of the whole text gives
ref_run "$P$want The end." -n 48 >"$PF_TMP/want2"
cmp -s "$PF_TMP/r2" "$PF_TMP/want2" || fail "second turn differs from promptfs run on the whole text:
mount: '$(cat "$PF_TMP/r2")'
run:   '$(cat "$PF_TMP/want2")'"
slurp "$PF_TMP/r2"
r2="$SLURP"
ok "second turn: prefill $pf tokens for $pt new (of $n2), output equals a fresh run"

# ---- history
hist="$(cat "$MNT/history/b")"
[[ "$hist" == *"$P"* && "$hist" == *"$want"* && "$hist" == *"The end."* && "$hist" == *"$r2"* ]] ||
	fail "history/b lacks the conversation: $hist"
PY="${PROMPTFS_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
"$PY" - "$MNT/history/b.json" "$P" "$want" "$r2" <<'EOF' || fail "history/b.json"
import json, sys
m = json.load(open(sys.argv[1]))
roles = [x["role"] for x in m if x["role"] != "system"]
assert roles == ["user", "assistant", "user", "assistant"], roles
c = [x["content"] for x in m if x["role"] != "system"]
assert c[0] == sys.argv[2], c[0]
assert c[1] == sys.argv[3], (c[1], sys.argv[3])
assert c[3] == sys.argv[4], c[3]
EOF
ls "$MNT/history" | grep -qx "b.json" || fail "ls history"
ok "history/NAME and NAME.json"

# ---- xattrs: settings, read-only status, fall back to defaults, survive '>', dropped by rm
attrs="$(getfattr -d "$MNT/b" 2>/dev/null)"
for k in temperature top_k top_p min_p repeat_penalty seed max_tokens mode system stop status state tokens prompt_tokens prefill_tokens generated_tokens; do
	grep -q "^user.$k=" <<<"$attrs" || fail "getfattr -d lacks user.$k: $attrs"
done
setfattr -n user.temperature -v 0.5 "$MNT/b"
[ "$(xattr temperature "$MNT/b")" = 0.5 ] || fail "user.temperature not set"
expect_err "Invalid argument" setfattr -n user.temperature -v hot "$MNT/b"
expect_err "Invalid argument" setfattr -n user.top_k -v -3x "$MNT/b"
expect_err "Invalid argument" setfattr -n user.mode -v sideways "$MNT/b"
[ "$(xattr temperature "$MNT/b")" = 0.5 ] || fail "a bad value changed the setting"
expect_err "Operation not permitted" setfattr -n user.status -v ok "$MNT/b"
expect_err "Operation not permitted" setfattr -n user.tokens -v 1 "$MNT/b"
setfattr -x user.temperature "$MNT/b"
[ "$(xattr temperature "$MNT/b")" = 0 ] || fail "removed xattr does not fall back to defaults"
setfattr -n user.max_tokens -v 5 "$MNT/b"
echo "$P" >"$MNT/b"
timeout 60 cat "$MNT/b" >/dev/null
[ "$(xattr max_tokens "$MNT/b")" = 5 ] || fail "settings did not survive '>'"
[ "$(xattr generated_tokens "$MNT/b")" -le 5 ] || fail "max_tokens 5 not applied"
[ "$(xattr turns "$MNT/b")" = 1 ] || fail "'>' did not start a new conversation"
rm "$MNT/b"
echo "$P" >"$MNT/b"
timeout 60 cat "$MNT/b" >/dev/null
[ "$(xattr max_tokens "$MNT/b")" = 48 ] || fail "rm did not drop the session's settings"
ok "xattrs"

# ---- names and errno
expect_err "Invalid argument" sh -c 'echo x > "$1"' _ "$MNT/.hidden"
expect_err "File name too long" sh -c 'echo x > "$1"' _ "$MNT/$(printf 'n%.0s' $(seq 256))"
expect_err "Permission denied" sh -c 'echo x > "$1"' _ "$MNT/model"
expect_err "Permission denied" sh -c 'echo x >> "$1"' _ "$MNT/stats"
expect_err "Permission denied" sh -c 'echo x > "$1"' _ "$MNT/README"
expect_err "Permission denied" truncate -s 0 "$MNT/model"
expect_err "Permission denied" sh -c 'echo x > "$1"' _ "$MNT/history/new"
expect_err "Operation not permitted" mkdir "$MNT/dir"
# rename(2) answers EINVAL, which mv words as "a subdirectory of itself"
expect_err "subdirectory of itself" mv "$MNT/a" "$MNT/.a"
[ -e "$MNT/a" ] && [ ! -e "$MNT/.a" ] || fail "a refused rename moved the session"
echo x >"$MNT/with space and ünïcode"
[ -f "$MNT/with space and ünïcode" ] || fail "a name with spaces and UTF-8"
rm "$MNT/with space and ünïcode"
ok "names and errno"

# ---- ls -l, mv, rm, truncate -s 0, ': >'
size="$(stat -c %s "$MNT/a")"
[ "$size" -eq "$(timeout 60 cat "$MNT/a" | wc -c)" ] || fail "st_size $size is not the reply's size"
ls -l "$MNT" | grep -q " a$" || fail "ls -l does not list a"
mv "$MNT/a" "$MNT/c"
[ ! -e "$MNT/a" ] || fail "mv left a"
timeout 60 cat "$MNT/c" | cmp -s - "$PF_TMP/want" || fail "mv lost the session"
[ -f "$MNT/history/c" ] || fail "history/c after mv"
truncate -s 0 "$MNT/c"
[ -z "$(timeout 10 cat "$MNT/c")" ] || fail "truncate -s 0 did not reset"
[ "$(xattr tokens "$MNT/c")" = 0 ] || fail "truncate -s 0 kept tokens"
echo "$P" >"$MNT/c"
timeout 60 cat "$MNT/c" >/dev/null
: >"$MNT/c"
[ -z "$(timeout 10 cat "$MNT/c")" ] || fail "': >' did not reset"
[ "$(xattr state "$MNT/c")" = empty ] || fail "': >' state $(xattr state "$MNT/c")"
rm "$MNT/c"
[ ! -e "$MNT/c" ] && ! ls "$MNT" | grep -qx c || fail "rm"
expect_err "No such file" rm "$MNT/c"
expect_err "Permission denied" rm "$MNT/stats"
ok "ls -l, mv, rm, truncate -s 0, : >"

# ---- EFBIG: a 1 MB prompt, then the session still works
head -c 750000 /dev/urandom | base64 -w 100 >"$PF_TMP/big"
echo "$P" >"$MNT/big"
timeout 60 cat "$MNT/big" >"$PF_TMP/first"
expect_err "File too large" sh -c 'cat "$1" >> "$2"' _ "$PF_TMP/big" "$MNT/big"
timeout 60 cat "$MNT/big" | cmp -s - "$PF_TMP/first" || fail "a refused >> changed the conversation"
[ "$(xattr turns "$MNT/big")" = 1 ] || fail "a refused >> added a turn"
expect_err "File too large" cp "$PF_TMP/big" "$MNT/big"
expect_err "File too large" sh -c 'cat "$1" > "$2"' _ "$PF_TMP/big" "$MNT/big"
[ "$(xattr turns "$MNT/big")" = 0 ] || fail "'>' with a refused prompt: the open should have emptied the session"
echo "$P" >"$MNT/big"
timeout 60 cat "$MNT/big" | cmp -s - "$PF_TMP/want" || fail "session unusable after EFBIG"
ok "EFBIG on a 1 MB prompt (>> keeps the conversation); session usable"
pf_umount
ok "unmounted"

# ---- ENOSPC with --max-sessions; a small context: EFBIG at close (dd reports it)
pf_mount "$STORIES" --max-sessions 3 -c 64 -s temperature=0
for s in s1 s2 s3; do : >"$MNT/$s"; done
expect_err "No space left on device" sh -c ': > "$1"' _ "$MNT/s4"
rm "$MNT/s1"
: >"$MNT/s4" || fail "no room after rm"
seq 1 60 | tr '\n' ' ' >"$PF_TMP/p60"
expect_err "File too large" dd if="$PF_TMP/p60" of="$MNT/s4" status=none
echo "$P" >"$MNT/s4"
[ -n "$(timeout 60 cat "$MNT/s4")" ] || fail "session unusable after EFBIG at close"
ok "ENOSPC at create; EFBIG for a prompt over a 64-token context"
pf_umount

# ---- a failed turn: EIO at the end of what was generated, the reason in user.status
# (a 2-page KV pool, smaller than one context: the conversation outgrows it alone)
pf_mount "$STORIES" --kv-mem 100K -s temperature=0 -s max_tokens=400
echo "$P" >"$MNT/e"
rc=0
timeout 60 cat "$MNT/e" >"$PF_TMP/e.out" 2>"$PF_TMP/e.err" || rc=$?
[ "$(xattr state "$MNT/e")" = error ] || fail "the turn should fail in a 2-page KV pool: $(xattr status "$MNT/e")"
[ $rc -ne 0 ] && grep -q "Input/output error" "$PF_TMP/e.err" || fail "cat of a failed turn: rc $rc, $(cat "$PF_TMP/e.err")"
xattr status "$MNT/e" | grep -q "KV pool (EFBIG)" || fail "user.status does not say why: $(xattr status "$MNT/e")"
[ "$(xattr error "$MNT/e")" = EFBIG ] || fail "user.error $(xattr error "$MNT/e")"
[ "$(wc -c <"$PF_TMP/e.out")" -gt "$(wc -c <"$PF_TMP/want")" ] || fail "the failed turn produced too little"
head -c "$(wc -c <"$PF_TMP/want")" "$PF_TMP/e.out" | cmp -s - "$PF_TMP/want" || fail "the text before the failure is not the model's"
grep -qi "error\|EFBIG" "$PF_TMP/e.out" && fail "error text passed off as model output"
ok "failed turn: EIO, user.status '$(xattr status "$MNT/e")'"
pf_umount
ok "all"
