#!/usr/bin/env bash
# test_mount_concurrency.sh — many sessions and many readers at once on a
# real mount of stories260K (raw, greedy): 20 sessions written and read
# concurrently each get their own reply (the one `promptfs run` gives for
# their prompt); 10 readers of one session agree; sessions created and
# removed while others stream do not disturb them.
. "$(dirname "$0")/mount_lib.sh"

N=20
openers=("Once upon a time" "The little dog" "Lily wanted" "One day, a bird" "Tom and Sue"
	"The sun was" "A big tree" "The cat sat" "Mom said" "In the park")
prompt() { echo "${openers[$(($1 % 10))]}$([ "$1" -ge 10 ] && echo " there was")"; }

for i in $(seq 0 $((N - 1))); do
	ref_run "$(prompt "$i")" -n 32 >"$PF_TMP/ref$i" || fail "promptfs run $i"
done
distinct="$(md5sum "$PF_TMP"/ref* | cut -d" " -f1 | sort -u | wc -l)"
[ "$distinct" -ge 5 ] || fail "the references are too alike ($distinct distinct lines) to tell sessions apart"

pf_mount "$STORIES" -s temperature=0 -s max_tokens=32

# ---- 20 sessions at once: write and read concurrently
pids=()
for i in $(seq 0 $((N - 1))); do
	(
		prompt "$i" >"$MNT/sess$i"
		timeout 120 cat "$MNT/sess$i" >"$PF_TMP/out$i"
	) &
	pids+=($!)
done
for p in "${pids[@]}"; do
	pf_wait_exit "$p" 180
	[ "$PF_RC" = 0 ] || fail "a writer/reader exited $PF_RC"
done
for i in $(seq 0 $((N - 1))); do
	cmp -s "$PF_TMP/out$i" "$PF_TMP/ref$i" ||
		fail "session $i: got '$(cat "$PF_TMP/out$i")', want '$(cat "$PF_TMP/ref$i")'"
done
[ "$(ls "$MNT" | grep -c '^sess')" = $N ] || fail "ls does not list $N sessions"
grep -q "^sessions: $N" "$MNT/stats" || fail "stats: $(grep ^sessions "$MNT/stats")"
ok "$N sessions written and read concurrently, each its own reply"

# ---- the same again with every session read twice at the same time
pids=()
for i in $(seq 0 $((N - 1))); do
	(
		prompt "$i" >"$MNT/sess$i"
		timeout 120 cat "$MNT/sess$i" >"$PF_TMP/a$i" &
		timeout 120 cat "$MNT/sess$i" >"$PF_TMP/b$i"
		wait
	) &
	pids+=($!)
done
for p in "${pids[@]}"; do
	pf_wait_exit "$p" 180
done
for i in $(seq 0 $((N - 1))); do
	cmp -s "$PF_TMP/a$i" "$PF_TMP/ref$i" && cmp -s "$PF_TMP/b$i" "$PF_TMP/ref$i" ||
		fail "session $i (two readers): '$(cat "$PF_TMP/a$i")' / '$(cat "$PF_TMP/b$i")'"
	[ "$(xattr turns "$MNT/sess$i")" = 1 ] || fail "session $i: '>' did not start over"
done
ok "$N sessions × 2 concurrent readers"

# ---- 10 readers of one session
prompt 0 >"$MNT/one"
pids=()
for r in $(seq 1 10); do
	timeout 120 cat "$MNT/one" >"$PF_TMP/r$r" &
	pids+=($!)
done
for p in "${pids[@]}"; do pf_wait_exit "$p" 120; done
for r in $(seq 1 10); do
	cmp -s "$PF_TMP/r$r" "$PF_TMP/ref0" || fail "reader $r of one session differs"
done
ok "10 readers of one session agree"

# ---- churn: create/remove sessions while others stream
pids=()
for i in $(seq 0 9); do
	(
		prompt "$i" >"$MNT/sess$i"
		timeout 120 cat "$MNT/sess$i" >"$PF_TMP/out$i"
	) &
	pids+=($!)
done
for k in $(seq 1 30); do
	echo "tmp $k" >"$MNT/tmp$k"
	[ $((k % 3)) = 0 ] && timeout 30 cat "$MNT/tmp$k" >/dev/null
	rm "$MNT/tmp$k"
done
for p in "${pids[@]}"; do pf_wait_exit "$p" 180; done
for i in $(seq 0 9); do
	cmp -s "$PF_TMP/out$i" "$PF_TMP/ref$i" || fail "session $i disturbed by churn"
done
[ -z "$(ls "$MNT" | grep '^tmp')" ] || fail "removed sessions still listed"
ok "create/remove churn does not disturb streaming sessions"

pf_umount
ok "all"
