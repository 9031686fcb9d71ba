#!/usr/bin/env bash
# test_mount_events.sh — the `events` file through a real mount
# (stories260K): a scripted sequence of writes, reads, mv, rm, cp and an
# eviction (a KV pool of three pages) gives exactly the expected lines, to
# two readers at once, in `while read -r t s e` form; a reader opened later
# sees only what came after; a reader that falls more than 4096 lines
# behind gets "missed N" first; a reply stopped by the end of the context
# ends with status "done (context full)" and a "context full" line.
. "$(dirname "$0")/mount_lib.sh"

# 3 pages of KV: a session of ~110 tokens takes two, so a second one
# evicts the first
pf_mount "$STORIES" -s temperature=0 -s max_tokens=12 --kv-mem 120K
pages="$(grep '^kv_pages_total:' "$MNT/stats" | cut -d' ' -f2)"
[ "$pages" -eq 3 ] || fail "--kv-mem 120K gave $pages pages; the test needs 3"

# while read -r t s e: the lines of a reader, time checked and dropped
readlines() {
	while read -r t s e; do
		[[ "$t" =~ ^[0-9]+\.[0-9]{6}$ ]] || { echo "BAD TIME $t"; continue; }
		echo "$s $e"
	done
}
timeout 120 cat "$MNT/events" >"$PF_TMP/ev1" &
R1=$!
exec 4<"$MNT/events" # a second reader, read at the end
sleep 0.3

echo "Once upon a time" >"$MNT/a"
cat "$MNT/a" >/dev/null
echo " The end." >>"$MNT/a"
cat "$MNT/a" >/dev/null
mv "$MNT/a" "$MNT/my story"
cp "$MNT/my story" "$MNT/b"
rm "$MNT/b" "$MNT/my story"
touch "$MNT/x" "$MNT/y"
setfattr -n user.max_tokens -v 100 "$MNT/x"
setfattr -n user.max_tokens -v 100 "$MNT/y"
echo "Once upon a time" >"$MNT/x"
cat "$MNT/x" >/dev/null
echo "Once upon a time" >"$MNT/y"
cat "$MNT/y" >/dev/null
setfattr -n user.max_tokens -v 4 "$MNT/x"
echo " Then" >>"$MNT/x"
cat "$MNT/x" >/dev/null
sleep 0.5
exec 5<"$MNT/events" # opened now: sees only what follows
rm "$MNT/x" "$MNT/y"
sleep 0.5

cat >"$PF_TMP/want" <<'EOF'
a submitted
a done
a submitted
a done
a renamed my\x20story
b forked my\x20story
b removed
my\x20story removed
x submitted
x done
y submitted
x evicted
y done
x submitted
y evicted
x restored
x done
x removed
y removed
EOF
timeout 5 cat <&4 >"$PF_TMP/ev2" || true
exec 4<&-
readlines <"$PF_TMP/ev2" >"$PF_TMP/got2"
diff "$PF_TMP/want" "$PF_TMP/got2" >"$PF_TMP/d2" || fail "events (second reader) differ from the script:
$(cat "$PF_TMP/d2")"
timeout 5 cat <&5 >"$PF_TMP/ev3" || true
exec 5<&-
[ "$(readlines <"$PF_TMP/ev3")" = $'x removed\ny removed' ] || fail "a reader opened late saw: $(cat "$PF_TMP/ev3")"
ok "events: $(wc -l <"$PF_TMP/want") lines as scripted (write, read, mv, cp, rm, eviction, rebuild); a late reader sees only what follows"

# ---- a slow reader past the bound: "missed N", then the newest 4096
exec 6<"$MNT/events"
touch "$MNT/m0"
"$PROMPTFS_PYTHON" - "$MNT" <<'EOF' || fail "rename loop"
import os, sys
m = sys.argv[1]
for i in range(5000):
    os.rename(os.path.join(m, "m%d" % i), os.path.join(m, "m%d" % (i + 1)))
EOF
rm "$MNT/m5000"
timeout 5 cat <&6 >"$PF_TMP/ev4" || true
exec 6<&-
readlines <"$PF_TMP/ev4" >"$PF_TMP/got4"
[ "$(head -n 1 "$PF_TMP/got4")" = "- missed 905" ] || fail "slow reader: first line '$(head -n 1 "$PF_TMP/got4")'"
[ "$(sed -n 2p "$PF_TMP/got4")" = "m905 renamed m906" ] || fail "slow reader: second line '$(sed -n 2p "$PF_TMP/got4")'"
[ "$(tail -n 1 "$PF_TMP/got4")" = "m5000 removed" ] || fail "slow reader: last line '$(tail -n 1 "$PF_TMP/got4")'"
[ "$(wc -l <"$PF_TMP/got4")" -eq 4097 ] || fail "slow reader got $(wc -l <"$PF_TMP/got4") lines"
ok "a reader 5001 lines behind: 'missed 905', then the 4096 kept"

# a waiting read: Ctrl-C ends it at once; O_NONBLOCK gets EAGAIN
# (python handles SIGINT, so the signal is not fatal: the read returns only
# when the daemon answers the kernel's interrupt)
t0="$(ms)"
rc=0
timeout -k 3 -s INT 1 "$PROMPTFS_PYTHON" -c 'import os, sys; os.read(os.open(sys.argv[1], os.O_RDONLY), 4096)' \
	"$MNT/events" >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 137 ] && [ $(($(ms) - t0)) -lt 2500 ] ||
	fail "SIGINT did not end a read waiting on events (rc $rc, $(($(ms) - t0)) ms)"
"$PROMPTFS_PYTHON" - "$MNT/events" <<'EOF' || fail "O_NONBLOCK read of events"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 4096)
    sys.exit("read returned instead of EAGAIN")
except BlockingIOError:
    pass
EOF
ok "a waiting read of events: SIGINT ends it, O_NONBLOCK gets EAGAIN"

kill "$R1" 2>/dev/null
wait "$R1" 2>/dev/null || true
readlines <"$PF_TMP/ev1" >"$PF_TMP/all1"
head -n "$(wc -l <"$PF_TMP/want")" "$PF_TMP/all1" >"$PF_TMP/got1"
diff -q "$PF_TMP/want" "$PF_TMP/got1" >/dev/null || fail "the streaming reader saw other lines: $(diff "$PF_TMP/want" "$PF_TMP/got1")"
ok "a streaming cat saw the same lines as they happened"
pf_umount

# ---- the end of the context: an honest status and event
pf_mount "$STORIES" -s temperature=0 -s max_tokens=0 --ctx 64
timeout 60 cat "$MNT/events" >"$PF_TMP/ev5" &
R5=$!
sleep 0.3
echo "Once upon a time" >"$MNT/full"
timeout 60 cat "$MNT/full" >/dev/null
[ "$(xattr status "$MNT/full")" = "done (context full)" ] || fail "status at the end of the context: $(xattr status "$MNT/full")"
[ "$(xattr tokens "$MNT/full")" = 64 ] || fail "tokens at the end: $(xattr tokens "$MNT/full")"
echo more >"$PF_TMP/more"
expect_err "File too large" sh -c 'cat "$1" >> "$2"' _ "$PF_TMP/more" "$MNT/full"
sleep 0.3
kill "$R5" 2>/dev/null
wait "$R5" 2>/dev/null || true
readlines <"$PF_TMP/ev5" >"$PF_TMP/all5"
[ "$(head -n 2 "$PF_TMP/all5" | tr '\n' '|')" = "full submitted|full context full|" ] ||
	fail "context full events: $(cat "$PF_TMP/ev5")"
ok "a full context: status 'done (context full)', event 'context full', the next >> is EFBIG"
pf_umount
ok "all"
