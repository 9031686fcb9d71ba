#!/usr/bin/env bash
# test_mount_stream.sh — streaming and waiting readers on a real mount of
# stories260K (raw, greedy): `echo q > s; cat s` 50 times never shows a stale
# reply or an early EOF; two cats and a tail -f on one live reply see the
# same bytes; poll() reports readability; Ctrl-C and kill -9 on a waiting cat
# return at once; a write while a cat waits does not deadlock; rm and
# unmount with readers waiting answer them; SIGINT unmounts cleanly.
# PROMPTFS_TEST_STEP_DELAY_MS slows each engine step so that replies stay
# live long enough to wait on (a test hook of the daemon).
. "$(dirname "$0")/mount_lib.sh"

A="Once upon a time"
B="The little dog"
ref_run "$A" -n 40 >"$PF_TMP/refA"
ref_run "$B" -n 40 >"$PF_TMP/refB"
[ -s "$PF_TMP/refA" ] && [ -s "$PF_TMP/refB" ] || fail "promptfs run gave nothing"
cmp -s "$PF_TMP/refA" "$PF_TMP/refB" && fail "the two prompts give the same text; the test could not see a stale reply"

# ---- 50 × (echo q > s; cat s): never stale, never cut short
pf_mount "$STORIES" -s temperature=0 -s max_tokens=40
for i in $(seq 1 50); do
	if [ $((i % 2)) = 0 ]; then p="$A" ref="$PF_TMP/refA"; else p="$B" ref="$PF_TMP/refB"; fi
	echo "$p" >"$MNT/s"
	timeout 30 cat "$MNT/s" >"$PF_TMP/out" || fail "cat failed at round $i"
	cmp -s "$PF_TMP/out" "$ref" || fail "round $i: got '$(cat "$PF_TMP/out")', want '$(cat "$ref")'"
done
ok "50 rounds of echo > s; cat s: each reply complete and current"
pf_umount

# ---- live replies: slow the engine down
export PROMPTFS_TEST_STEP_DELAY_MS=40
pf_mount "$STORIES" -s temperature=0 -s max_tokens=60
ref_run "$A" -n 60 >"$PF_TMP/refA60"

# two cats and a tail -f on one live reply
echo "$A" >"$MNT/live"
timeout 60 cat "$MNT/live" >"$PF_TMP/c1" &
c1=$!
sleep 0.3
timeout 60 cat "$MNT/live" >"$PF_TMP/c2" &
c2=$!
timeout 60 tail -c +1 -f "$MNT/live" >"$PF_TMP/t1" 2>/dev/null &
t1=$!
[ "$(xattr state "$MNT/live")" = generating ] || fail "the reply was not live while the readers started"
pf_wait_exit $c1 60
[ "$PF_RC" = 0 ] || fail "cat 1 exited $PF_RC"
pf_wait_exit $c2 60
[ "$PF_RC" = 0 ] || fail "cat 2 exited $PF_RC"
for _ in $(seq 50); do cmp -s "$PF_TMP/t1" "$PF_TMP/c1" && break; sleep 0.1; done
kill $t1 2>/dev/null || true
wait $t1 2>/dev/null || true
cmp -s "$PF_TMP/c1" "$PF_TMP/refA60" || fail "cat 1 got '$(cat "$PF_TMP/c1")'"
cmp -s "$PF_TMP/c2" "$PF_TMP/c1" || fail "cat 2 differs from cat 1"
cmp -s "$PF_TMP/t1" "$PF_TMP/c1" || fail "tail -f differs: '$(cat "$PF_TMP/t1")'"
[ "$(stat -c %s "$MNT/live")" -eq "$(wc -c <"$PF_TMP/c1")" ] || fail "st_size after the reply"
ok "two cats and tail -f see the same bytes of a live reply"

# st_size grows while the reply is live
echo "$A" >"$MNT/grow"
s1="$(stat -c %s "$MNT/grow")"
sleep 1
s2="$(stat -c %s "$MNT/grow")"
[ "$s2" -gt "$s1" ] || fail "st_size did not grow ($s1 → $s2)"
timeout 60 cat "$MNT/grow" >/dev/null
ok "st_size grows with the reply ($s1 → $s2)"

# poll(): not readable at the end of a live reply, readable when bytes come
PY="${PROMPTFS_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
echo "$A" >"$MNT/polled"
"$PY" - "$MNT/polled" <<'EOF' || fail "poll"
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
p = select.poll()
p.register(fd, select.POLLIN)
got = b""
deadline = time.time() + 60
waits = 0
while time.time() < deadline:
    ev = p.poll(10000)
    assert ev, "poll timed out with the reply unfinished"
    b = os.pread(fd, 4096, len(got))
    if not b:
        break
    got += b
    waits += 1
assert waits > 1, "poll woke only once"
assert got, "nothing read"
print("poll wake-ups:", waits)
EOF
ok "poll/select"

# Ctrl-C (SIGINT) and kill -9 on a waiting cat return at once
echo "$A" >"$MNT/int"
sleep 0.2
t0=$(ms)
rc=0
timeout -s INT 1 cat "$MNT/int" >/dev/null || rc=$?
dt=$(($(ms) - t0))
[ "$(xattr state "$MNT/int")" = generating ] || fail "reply ended before the interrupt; the test proves nothing"
[ $rc -ne 0 ] || fail "cat was not interrupted"
[ $dt -lt 1500 ] || fail "SIGINT took $dt ms to end a waiting cat"
t0=$(ms)
rc=0
sh -c 'timeout -s KILL 1 cat "$1" >/dev/null' _ "$MNT/int" 2>/dev/null || rc=$?
dt=$(($(ms) - t0))
[ $rc -ne 0 ] && [ $dt -lt 1500 ] || fail "kill -9 took $dt ms (rc $rc)"
grep -q "^reads_interrupted: [1-9]" "$MNT/stats" || fail "stats shows no interrupted read"
timeout 60 cat "$MNT/int" >"$PF_TMP/int"
cmp -s "$PF_TMP/int" "$PF_TMP/refA60" || fail "the reply after interrupts differs"
ok "SIGINT and SIGKILL end a waiting cat at once; the reply goes on"

# a write while a cat waits: no deadlock; >> queues; > on another session runs
echo "$A" >"$MNT/q"
timeout 60 cat "$MNT/q" >"$PF_TMP/q1" &
cq=$!
sleep 0.3
timeout 10 sh -c 'echo " And then" >> "$1"' _ "$MNT/q" || fail "echo >> while a cat waits"
timeout 10 sh -c 'echo "$2" > "$1"' _ "$MNT/other" "$B" || fail "echo > another session while a cat waits"
st="$(xattr state "$MNT/q")"
[ "$st" = queued ] || [ "$st" = prefill ] || [ "$st" = generating ] || fail "queued turn state $st"
pf_wait_exit $cq 60
[ "$PF_RC" = 0 ] || fail "the waiting cat exited $PF_RC"
timeout 60 cat "$MNT/q" >/dev/null
timeout 60 cat "$MNT/other" >/dev/null
[ "$(xattr turns "$MNT/q")" = 2 ] || fail "the queued turn was lost"
ok "echo while a cat waits: no deadlock, the turn queues"

# rm with readers waiting: they get EOF at once
echo "$A" >"$MNT/gone"
timeout 60 cat "$MNT/gone" >"$PF_TMP/g1" &
g1=$!
timeout 60 cat "$MNT/gone" >"$PF_TMP/g2" &
g2=$!
sleep 0.5
t0=$(ms)
rm "$MNT/gone"
pf_wait_exit $g1 5
r1=$PF_RC
pf_wait_exit $g2 5
dt=$(($(ms) - t0))
[ $r1 = 0 ] && [ $PF_RC = 0 ] || fail "readers of a removed session: exit $r1, $PF_RC"
[ $dt -lt 1500 ] || fail "rm took $dt ms to answer waiting readers"
[ -s "$PF_TMP/g1" ] || fail "reader got nothing before rm"
head -c "$(wc -c <"$PF_TMP/g1")" "$PF_TMP/refA60" | cmp -s - "$PF_TMP/g1" || fail "reader of a removed session got wrong bytes"
[ ! -e "$MNT/gone" ] || fail "rm"
ok "rm answers waiting readers with EOF"

# SIGTERM with a reader waiting: EOF, then a clean exit
echo "$A" >"$MNT/last"
timeout 60 cat "$MNT/last" >/dev/null &
cl=$!
sleep 0.5
kill -TERM "$DPID"
pf_wait_exit $cl 10
[ "$PF_RC" = 0 ] || fail "waiting cat at SIGTERM exited $PF_RC"
pf_wait_exit "$DPID" 20
[ "$PF_RC" = 0 ] || fail "daemon exit status $PF_RC after SIGTERM"
mountpoint -q "$MNT" && fail "still mounted after SIGTERM"
ok "SIGTERM with a waiting reader: reader gets EOF, clean unmount"

# SIGINT (Ctrl-C in the foreground) unmounts cleanly too
unset PROMPTFS_TEST_STEP_DELAY_MS
pf_mount "$STORIES"
echo "$A" >"$MNT/x"
kill -INT "$DPID"
pf_wait_exit "$DPID" 20
[ "$PF_RC" = 0 ] || fail "daemon exit status $PF_RC after SIGINT"
mountpoint -q "$MNT" && fail "still mounted after SIGINT"
ok "SIGINT unmounts cleanly"
ok "all"
