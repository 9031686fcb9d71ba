#!/usr/bin/env bash
# test_mount_kv_wait.sh — a full KV pool makes turns wait, never fail.
# (1) Eight sessions at once on a pool of 10 pages (640 tokens) where each
# needs ~4: every turn completes, byte-identical to `promptfs run` (greedy),
# because turns that find the pool full preempt younger turns (recomputed
# later) or wait, in arrival order.  (2) Queued `>>` turns: one that cannot
# fit behind the turns queued ahead gets EFBIG at its close; one accepted
# at close that no longer fits when it comes to run is dropped, so no empty
# turn appears in history/, user.turns or the journal.
. "$(dirname "$0")/mount_lib.sh"

N=8
for i in $(seq $N); do ref_run "Once upon a time $i" -n 200 -c 512 >"$PF_TMP/ref$i"; done
pf_mount "$STORIES" --kv-mem 400K -c 512 -s temperature=0 -s max_tokens=200
grep -q "^kv_pages_total: 10$" "$MNT/stats" || fail "pool is not 10 pages: $(grep -i page "$MNT/stats")"
cat "$MNT/events" >"$PF_TMP/events" & EVPID=$!
wait_reader "$EVPID" # events stream from the open on
pids=() # (a bare `wait` would wait for the daemon too)
for i in $(seq $N); do echo "Once upon a time $i" >"$MNT/s$i" & pids+=($!); done
wait "${pids[@]}"
pids=()
for i in $(seq $N); do timeout 120 cat "$MNT/s$i" >"$PF_TMP/out$i" 2>"$PF_TMP/err$i" & pids+=($!); done
wait "${pids[@]}" || true
for i in $(seq $N); do
	st="$(xattr status "$MNT/s$i")"
	[[ "$st" == done* ]] || fail "s$i: status '$st' ($(cat "$PF_TMP/err$i"))"
	cmp -s "$PF_TMP/out$i" "$PF_TMP/ref$i" || fail "s$i differs from promptfs run"
done
ev="$(awk '/^evictions:/ {print $2}' "$MNT/stats")"
pre="$(awk '/^preemptions:/ {print $2}' "$MNT/stats")"
[ "${pre:-0}" -gt 0 ] || fail "setup: no turn was preempted (stats: preemptions ${pre:-missing})"
sleep 0.2; kill "$EVPID"; wait "$EVPID" 2>/dev/null || true # (an open file would keep the mount busy)
pf_umount
npre="$(grep -c ' preempted$' "$PF_TMP/events")"
# a turn preempted before its pages held a token posts nothing: at most one line per preemption
[ "$npre" -ge 1 ] && [ "$npre" -le "$pre" ] || fail "events: $npre 'preempted' lines for $pre preemptions"
[ "$(grep -c ' done$' "$PF_TMP/events")" = $N ] || fail "events: not $N 'done' lines: $(cat "$PF_TMP/events")"
ok "$N concurrent turns on a 10-page pool: all done, all equal promptfs run (evictions $ev, preemptions $pre, $npre 'preempted' events)"

# ---- queued >> turns and the context
STATE="$PF_TMP/state"
LONG="$(for _ in $(seq 30); do printf ' the cat'; done)" # ~60 tokens
printf '%s' "$LONG" >"$PF_TMP/long"
PROMPTFS_TEST_STEP_DELAY_MS=20 pf_mount "$STORIES" -c 128 --state-dir "$STATE" -s temperature=0 -s max_tokens=100
cat "$MNT/events" >"$PF_TMP/events2" & EVPID=$!
wait_reader "$EVPID" # events stream from the open on
echo "Once upon a time" >"$MNT/q"
sleep 0.3
[ "$(xattr state "$MNT/q")" = generating ] || fail "setup: the first turn is not running: $(xattr status "$MNT/q")"
dd if="$PF_TMP/long" of="$MNT/q" oflag=append conv=notrunc status=none || fail "the first queued >> was refused"
expect_err "File too large" dd if="$PF_TMP/long" of="$MNT/q" oflag=append conv=notrunc status=none
ok "a queued >> that cannot fit behind the turn queued ahead: EFBIG at its close"
timeout 60 cat "$MNT/q" >"$PF_TMP/q" || fail "reading q failed: $(xattr status "$MNT/q")"
for _ in $(seq 100); do [ "$(xattr state "$MNT/q")" = generating ] || break; sleep 0.1; done
st="$(xattr status "$MNT/q")"
[[ "$st" == *"queued turn was dropped"*EFBIG* ]] || fail "status after the drop: '$st'"
[ "$(xattr turns "$MNT/q")" = 1 ] || fail "user.turns is $(xattr turns "$MNT/q"): a phantom turn"
[ "$(grep -c '^### user' "$MNT/history/q")" = 1 ] || fail "history/q has phantom turns: $(cat "$MNT/history/q")"
sleep 0.2; kill "$EVPID"; wait "$EVPID" 2>/dev/null || true # (an open file would keep the mount busy)
pf_umount
grep -q ' q error$' "$PF_TMP/events2" || fail "no 'error' event for the dropped turn: $(cat "$PF_TMP/events2")"
ok "the accepted >> that no longer fit when it came to run was dropped: status '$st', 1 turn, an 'error' event"
pf_mount "$STORIES" -c 128 --state-dir "$STATE" -s temperature=0 -s max_tokens=100
[ "$(xattr turns "$MNT/q")" = 1 ] || fail "after a restart q has $(xattr turns "$MNT/q") turns"
[ "$(grep -c '^### user' "$MNT/history/q")" = 1 ] || fail "history/q after restart: $(cat "$MNT/history/q")"
pf_umount
ok "no phantom turn after a restart either"
ok "all"
