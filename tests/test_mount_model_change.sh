#!/usr/bin/env bash
# test_mount_model_change.sh — the model file changes under a running mount:
# truncated, rewritten in place with other bytes, replaced by another file.
# The daemon reads the file into memory at start (the default; --mmap maps
# it), so it survives every case, every finished reply and journal stays, and
# new turns still give exactly what `promptfs run` gives on the original.
# With --mmap the file is mapped: a truncation (SIGBUS past the new end,
# caught) or a rewrite fails the turns that need the weights with EIO and a
# status naming the cause; the daemon, the finished replies and the journals
# survive.
. "$(dirname "$0")/mount_lib.sh"

P="Once upon a time"
M="$PF_TMP/model.gguf"
cp "$STORIES" "$M"
ref_run "$P" -n 16 >"$PF_TMP/ref"
pf_mount "$M" --state-dir "$PF_TMP/state" -s temperature=0 -s max_tokens=16
echo "$P" >"$MNT/before"; timeout 60 cat "$MNT/before" >"$PF_TMP/before"
cmp -s "$PF_TMP/before" "$PF_TMP/ref" || fail "first turn differs from promptfs run"

check_turn() { # CASE: a new turn after the change equals the reference
	local out
	echo "$P" >"$MNT/$1"
	out="$(timeout 60 cat "$MNT/$1")" || fail "$1: reading the reply failed (status: $(xattr status "$MNT/$1"))"
	kill -0 "$DPID" 2>/dev/null || fail "$1: the daemon died"
	[ "$out" = "$(cat "$PF_TMP/ref")" ] || fail "$1: reply '$out' differs from the reference"
	cmp -s "$MNT/before" "$PF_TMP/before" || fail "$1: the finished reply changed"
}

truncate -s 100 "$M"
check_turn truncated
ok "model truncated to 100 bytes: the daemon lives, the new turn is right"
head -c "$(stat -c %s "$STORIES")" /dev/urandom >"$M.new"
dd if="$M.new" of="$M" conv=notrunc status=none
check_turn rewritten
ok "model rewritten in place with random bytes: the new turn is right"
cp "$STORIES" "$M.other"; mv "$M.other" "$M"
rm -f "$M"
check_turn replaced
ok "model replaced, then removed: the new turn is right"
pf_umount
[ "$(ls "$PF_TMP/state"/*.journal | wc -l)" = 4 ] || fail "journals lost: $(ls "$PF_TMP/state")"

# ---- --mmap: the same changes cost the turns, never the daemon
for change in truncate rewrite; do
	cp "$STORIES" "$M"
	pf_mount "$M" --mmap --state-dir "$PF_TMP/state-$change" -s temperature=0 -s max_tokens=16
	echo "$P" >"$MNT/before"; timeout 60 cat "$MNT/before" >"$PF_TMP/before"
	cmp -s "$PF_TMP/before" "$PF_TMP/ref" || fail "--mmap: first turn differs from promptfs run"
	if [ $change = truncate ]; then
		truncate -s 100 "$M"
	else
		head -c "$(stat -c %s "$STORIES")" /dev/urandom >"$M.new"
		dd if="$M.new" of="$M" conv=notrunc status=none
	fi
	echo "$P" >"$MNT/after"
	if timeout 60 cat "$MNT/after" >/dev/null 2>"$PF_TMP/err"; then
		fail "--mmap $change: a turn after the change succeeded"
	fi
	grep -q "Input/output error" "$PF_TMP/err" || fail "--mmap $change: read error was not EIO: $(cat "$PF_TMP/err")"
	st="$(xattr status "$MNT/after")"
	case "$st" in
	*"model file"*EIO*) ;;
	*) fail "--mmap $change: status does not name the cause: '$st'" ;;
	esac
	kill -0 "$DPID" 2>/dev/null || fail "--mmap $change: the daemon died"
	cmp -s "$MNT/before" "$PF_TMP/before" || fail "--mmap $change: the finished reply changed"
	echo "$P" >"$MNT/later"
	timeout 60 cat "$MNT/later" >/dev/null 2>&1 && fail "--mmap $change: a later turn ran on changed weights"
	pf_umount
	[ "$(ls "$PF_TMP/state-$change"/*.journal | wc -l)" = 3 ] || fail "--mmap $change: journals lost"
	ok "--mmap, model file changed by $change: later turns EIO with status '$st'; daemon, reply and journals kept"
done
ok "all"
