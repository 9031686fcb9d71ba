#!/usr/bin/env bash
# test_mount_journal.sh — the state directory under faults: every journal
# byte is untrusted (negative and wrapping lengths, a changed reply byte, a
# damaged first line), appends are all or nothing (a full state dir: the
# status says "not saved", nothing torn, the turns come back once there is
# space), journals are compacted online, and a smaller -c never destroys
# journaled turns.  Each case names what the user sees.
. "$(dirname "$0")/mount_lib.sh"

P="Once upon a time"
SETS=(-s temperature=0 -s max_tokens=16)
user_sessions() { ls "$MNT" | grep -v -x -e README -e model -e stats -e defaults -e history -e events -e grammars -e schemas | sort | tr '\n' '|'; }

# ---- 1. hostile format-1 files (what older versions wrote): negative and
# wrapping lengths must not crash the mount; the good file beside them loads
STATE="$PF_TMP/s1"
mkdir -p "$STATE"
printf 'promptfs-journal 1\nN -1\nxx\n' >"$STATE/0000000000000001.journal"
printf 'promptfs-journal 1\nN 3\nneg\nT -1 1\nab\n' >"$STATE/0000000000000002.journal"
printf 'promptfs-journal 1\nN 4\nwrap\nT 18446744073709551615 2\nab\n' >"$STATE/0000000000000003.journal"
printf 'promptfs-journal 1\nN 4\ngood\nT 2 3\nhiyes\n' >"$STATE/0000000000000004.journal"
# a format-2 file whose name record holds a NUL (checksum right): not cut,
# refused; its intact turn comes back under recovered-<id>
PY="${PROMPTFS_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
"$PY" - "$STATE/0000000000000005.journal" <<'EOF'
import sys, zlib
def rec(t, a, c=b""):
    h = b"%c %d %d " % (t, len(a), len(c))
    return h + b"%08x\n" % zlib.crc32(h + a + c) + a + c + b"\n"
open(sys.argv[1], "wb").write(b"promptfs-journal 2\n" + rec(ord("N"), b"nul\0name") + rec(ord("T"), b"hi", b"there"))
EOF
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
[ "$(user_sessions)" = "good|neg|recovered-0000000000000005|wrap|" ] || fail "sessions from hostile journals: $(user_sessions)"
[ "$(cat "$MNT/recovered-0000000000000005")" = there ] || fail "the turn after a NUL name was lost"
grep -q "0000000000000005.journal: damaged record at byte 19" "$PF_TMP/daemon.log" || fail "no log line for the NUL name"
[ "$(cat "$MNT/good")" = yes ] || fail "the intact v1 journal's reply: '$(cat "$MNT/good")'"
[ "$(xattr turns "$MNT/neg")" = 0 ] || fail "a negative-length turn was loaded"
grep -q "0000000000000002.journal: damaged record at byte" "$PF_TMP/daemon.log" || fail "no log line for the negative length"
ok "negative and wrapping lengths: damaged records skipped with a log line, the mount is up"
pf_umount
head -1 "$STATE/0000000000000004.journal" | grep -qx 'promptfs-journal 2' || fail "format-1 file not rewritten in format 2"

# ---- 2. a changed reply byte and a damaged first line
STATE="$PF_TMP/s2"
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
echo "$P" >"$MNT/a"; timeout 60 cat "$MNT/a" >"$PF_TMP/a1"
echo " Next" >>"$MNT/a"; timeout 60 cat "$MNT/a" >"$PF_TMP/a2"
echo " Last" >>"$MNT/a"; timeout 60 cat "$MNT/a" >"$PF_TMP/a3"
echo "$P" >"$MNT/b"; timeout 60 cat "$MNT/b" >"$PF_TMP/b1"
pf_umount
JA="$(grep -l -a -F "$(cat "$PF_TMP/a1")" "$STATE"/*.journal | head -1)"
JB=""
for f in "$STATE"/*.journal; do grep -a -q -x 'b' "$f" && JB="$f"; done
[ -n "$JA" ] && [ -n "$JB" ] && [ "$JA" != "$JB" ] || fail "cannot find the two journals"
# flip one byte inside the second turn's reply (a2's first character)
off="$(grep -a -b -o -F " Next$(head -c 8 "$PF_TMP/a2")" "$JA" | head -1 | cut -d: -f1)"
[ -n "$off" ] || fail "second turn not found in $JA"
off=$((off + 5))
orig="$(dd if="$JA" bs=1 skip="$off" count=1 2>/dev/null)"
[ "$orig" = "?" ] && new=. || new="?"
printf '%s' "$new" | dd of="$JA" bs=1 seek="$off" conv=notrunc 2>/dev/null
# and damage the first line of the other file
printf 'X' | dd of="$JB" bs=1 seek=3 conv=notrunc 2>/dev/null
cp "$JA" "$PF_TMP/ja.bad"
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
[ "$(user_sessions)" = "a|b|" ] || fail "sessions after damage: $(user_sessions)"
[ "$(xattr turns "$MNT/a")" = 2 ] || fail "a: $(xattr turns "$MNT/a") turns loaded, wanted 2 (the damaged one skipped)"
grep -q -F "$(basename "$JA"): damaged record at byte" "$PF_TMP/daemon.log" || fail "no log line naming the file and offset"
grep -a -q -F "$(cat "$PF_TMP/a3")" "$MNT/history/a" || fail "the intact turn after the damaged one is not in history/"
grep -a -q -F "$(cat "$PF_TMP/a2")" "$MNT/history/a" && fail "the damaged reply came back"
cmp -s "$PF_TMP/ja.bad" "$JA.damaged" || fail "the damaged file was not kept as .damaged"
cmp -s "$MNT/b" "$PF_TMP/b1" || fail "a damaged first line lost session b's reply"
ok "changed byte: that turn skipped with a log line naming file and offset; header damage: records still load"
pf_umount

# ---- 3. a full state directory: not saved, said so, nothing torn, back later
# (a small tmpfs; the journal is first padded with a system-prompt override so
# that its last page has fewer free bytes than the next turn's record needs)
STATE="$PF_TMP/s3"
mkdir -p "$STATE"
mount -t tmpfs -o size=512k tmpfs "$STATE" || fail "cannot mount a small tmpfs (root needed)"
PF_MOUNTS+=("$STATE")
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
echo "$P" >"$MNT/full"; timeout 60 cat "$MNT/full" >/dev/null
jsize() { stat -c %s "$STATE"/*.journal; }
wait_size() { for _ in $(seq 100); do [ "$(jsize)" != "$1" ] && return 0; sleep 0.05; done; fail "journal did not grow"; }
for _ in $(seq 50); do grep -a -q '^T ' "$STATE"/*.journal && break; sleep 0.1; done
s0="$(jsize)"
setfattr -n user.system -v x "$MNT/full"; wait_size "$s0"; s1="$(jsize)"
fixed=$((s1 - s0 - 1))
for L in $(seq 100 8300); do
	[ $(( (s1 + fixed + L + ${#L} - 1) % 4096 )) -eq 4090 ] && break
done
setfattr -n user.system -v "$(head -c "$L" /dev/zero | tr '\0' s)" "$MNT/full"; wait_size "$s1"
size_before="$(jsize)"
[ $((4096 - size_before % 4096)) -lt 40 ] || fail "setup: journal of $size_before bytes has room left in its page"
cat "$MNT/events" >"$PF_TMP/events" & EVPID=$!
wait_reader "$EVPID" # events stream from the open on
dd if=/dev/zero of="$STATE/filler" bs=4k 2>/dev/null || true
echo " More" >>"$MNT/full"; timeout 60 cat "$MNT/full" >"$PF_TMP/f2"
for _ in $(seq 50); do [[ "$(xattr status "$MNT/full")" == *"not saved"* ]] && break; sleep 0.1; done
st="$(xattr status "$MNT/full")"
[[ "$st" == *"not saved: No space left on device"* ]] || fail "status after a failed append: '$st'"
[ "$(jsize)" = "$size_before" ] || fail "a torn record was left behind ($size_before -> $(jsize) bytes)"
grep -q "not saved to the state directory" "$PF_TMP/daemon.log" || fail "no log line for the failed append"
ok "state dir full: user.status is '$st', the file is cut back to the last good record"
rm -f "$STATE/filler"
sleep 0.2; kill "$EVPID"; wait "$EVPID" 2>/dev/null || true # (an open file would keep the mount busy)
pf_umount
grep -q ' full not saved ENOSPC$' "$PF_TMP/events" || fail "no 'not saved ENOSPC' event: $(cat "$PF_TMP/events")"
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
[ "$(xattr turns "$MNT/full")" = 2 ] || fail "after space came back: $(xattr turns "$MNT/full") turns, wanted 2"
cmp -s "$MNT/full" "$PF_TMP/f2" || fail "the unsaved turn's reply did not come back"
ok "once there is space again, the unsaved turn is written and comes back after a remount"
pf_umount
umount "$STATE"

# ---- 4. online compaction: many `>` on one session
STATE="$PF_TMP/s4"
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
for i in $(seq 60); do echo "$P $i" >"$MNT/c"; timeout 60 cat "$MNT/c" >/dev/null; done
for _ in $(seq 50); do grep -a -q "$P 60" "$STATE"/*.journal && break; sleep 0.1; done
recs="$(grep -a -c -E '^[NSUTR] [0-9]+ [0-9]+ [0-9a-f]{8}$' "$STATE"/*.journal)"
[ "$recs" -le 40 ] || fail "after 60 new conversations the journal holds $recs records (no compaction)"
ok "online compaction: 60 conversations on one session leave $recs records"
pf_umount
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}"
grep -a -q -F "$P 60" "$MNT/history/c" || fail "compaction lost the live turn"
[ "$(xattr turns "$MNT/c")" = 1 ] || fail "compacted session has $(xattr turns "$MNT/c") turns"
pf_umount
ok "the live turn survives compaction"

# ---- 5. a smaller -c never destroys journaled turns
STATE="$PF_TMP/s5"
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}" -c 512
echo "$P" >"$MNT/long"; timeout 60 cat "$MNT/long" >/dev/null
for i in $(seq 2 8); do echo " and $i" >>"$MNT/long"; timeout 60 cat "$MNT/long" >/dev/null; done
[ "$(xattr turns "$MNT/long")" = 8 ] || fail "setup: $(xattr turns "$MNT/long") turns"
cp "$MNT/history/long" "$PF_TMP/hl"
pf_umount
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}" -c 64
t="$(xattr turns "$MNT/long")"
[ "$t" -lt 8 ] || fail "with -c 64 all 8 turns fit; make the turns longer"
cmp -s "$MNT/history/long" "$PF_TMP/hl" || fail "history/ does not show every journaled turn with -c 64"
[[ "$(xattr status "$MNT/long")" == *"do not fit the context"* ]] || fail "status does not say turns were left out: $(xattr status "$MNT/long")"
printf more >"$PF_TMP/more"
expect_err "File too large" dd if="$PF_TMP/more" of="$MNT/long" oflag=append conv=notrunc status=none
ok "-c 64: $t of 8 turns loaded, history/ shows all 8, >> gets EFBIG"
pf_umount
pf_mount "$STORIES" --state-dir "$STATE" "${SETS[@]}" -c 512
[ "$(xattr turns "$MNT/long")" = 8 ] || fail "back at -c 512: $(xattr turns "$MNT/long") turns, wanted 8"
cmp -s "$MNT/history/long" "$PF_TMP/hl" || fail "history changed after the -c round trip"
ok "back at -c 512 all 8 turns are loaded again"
pf_umount
ok "all"
