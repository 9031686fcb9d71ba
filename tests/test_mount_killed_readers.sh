#!/usr/bin/env bash
# test_mount_killed_readers.sh — readers killed in the middle of a read.
# A SIGKILLed `cat` lets the kernel send RELEASE while its READ is still
# being answered, so a handle must never be used after its release: handles
# and directory snapshots are found by id (fs/io.c, fs/ops.c).  Meant for the
# ASan build (scripts/test.sh runs the whole suite there), where a use after
# free aborts the daemon; here it checks the daemon lives and exits 0.
. "$(dirname "$0")/mount_lib.sh"

pf_mount "$STORIES" -t 1 -s max_tokens=64
end=$((SECONDS + ${PF_KILL_SECONDS:-15}))
pids=()
for w in 1 2 3; do
	( while [ $SECONDS -lt $end ]; do echo "Once upon $w" >"$MNT/s$w"; cat "$MNT/s$w" >/dev/null; done ) &
	pids+=($!)
done
for w in 1 2 3 4 5; do
	( while [ $SECONDS -lt $end ]; do
		timeout -s KILL "0.0$((RANDOM % 9 + 1))" cat "$MNT/stats" >/dev/null 2>&1
		timeout -s KILL "0.0$((RANDOM % 9 + 1))" ls -l "$MNT" "$MNT/history" >/dev/null 2>&1
		timeout -s KILL "0.0$((RANDOM % 9 + 1))" cat "$MNT/history/s1" >/dev/null 2>&1
	done ) 2>/dev/null &
	pids+=($!)
done
wait "${pids[@]}" 2>/dev/null || true
kill -0 "$DPID" 2>/dev/null || fail "the daemon died while readers were killed"
grep -q "^sessions: 3" "$MNT/stats" || fail "stats after the storm: $(head -3 "$MNT/stats")"
pf_umount
ok "readers killed mid-read for ${PF_KILL_SECONDS:-15} s: the daemon lived and exited 0"
