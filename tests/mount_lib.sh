# tests/mount_lib.sh — helpers for the mount tests (tests/test_mount*.sh),
# sourced, not a test.  Each test mounts a real FUSE filesystem on a
# mktemp -d mountpoint with `promptfs -f` in the background, drives it with
# the shell tools a user uses, and always unmounts in the EXIT trap.  Every
# wait is bounded (timeout or a counted loop).
set -euo pipefail

: "${PROMPTFS_BIN:?PROMPTFS_BIN not set (run through ctest)}"
: "${PROMPTFS_SHARED:?PROMPTFS_SHARED not set}"
STORIES="$PROMPTFS_SHARED/models/stories260K.gguf"
[ -f "$STORIES" ] || { echo "FAIL: $STORIES missing" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "FAIL: fusermount3 not installed" >&2; exit 1; }

PF_TMP="$(mktemp -d /tmp/promptfs-test.XXXXXX)"
PF_MOUNTS=()
PF_PIDS=()
MNT=""
DPID=""

pf_cleanup() {
	local rc=$?
	set +e
	for m in "${PF_MOUNTS[@]}"; do
		# /proc/mounts, not mountpoint(1): a dead daemon's mount fails stat
		grep -q " $m " /proc/mounts 2>/dev/null && { fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; }
	done
	for p in "${PF_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PF_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	if [ $rc -ne 0 ] && [ -f "$PF_TMP/daemon.log" ]; then
		echo "---- daemon log (last 40 lines)" >&2
		tail -n 40 "$PF_TMP/daemon.log" >&2
	fi
	if [ $rc -ne 0 ] && [ -s "$PF_TMP/daemon.out" ]; then
		echo "---- daemon stderr (last 60 lines)" >&2
		tail -n 60 "$PF_TMP/daemon.out" >&2
	fi
	rm -rf "$PF_TMP"
	exit $rc
}
trap pf_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# pf_mount MODEL [promptfs options...]: mounts in the foreground, in the
# background; sets MNT and DPID; returns once the mount answers.
pf_mount() {
	local model="$1"
	shift
	MNT="$(mktemp -d "$PF_TMP/mnt.XXXXXX")"
	"$PROMPTFS_BIN" -f -v --log-file "$PF_TMP/daemon.log" "$@" "$model" "$MNT" \
		>>"$PF_TMP/daemon.out" 2>&1 &
	DPID=$!
	PF_MOUNTS+=("$MNT")
	PF_PIDS+=("$DPID")
	for _ in $(seq 600); do
		if mountpoint -q "$MNT" && [ -e "$MNT/README" ]; then
			return 0
		fi
		kill -0 "$DPID" 2>/dev/null || { cat "$PF_TMP/daemon.out" >&2; fail "promptfs exited before mounting"; }
		sleep 0.1
	done
	fail "mount did not answer within 60 s"
}

# pf_wait_exit PID [SECONDS]: waits for a process to end; its status in PF_RC.
pf_wait_exit() {
	local pid="$1" secs="${2:-30}"
	for _ in $(seq $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && fail "process $pid still running after $secs s"
	PF_RC=0
	wait "$pid" 2>/dev/null || PF_RC=$?
}

# pf_umount: fusermount3 -u, then the daemon must exit 0.
pf_umount() {
	fusermount3 -u "$MNT" || fail "fusermount3 -u $MNT"
	pf_wait_exit "$DPID" 30
	[ "$PF_RC" -eq 0 ] || fail "daemon exited with $PF_RC after unmount"
}

# expect_err MESSAGE CMD...: CMD must fail and its stderr name the errno.
expect_err() {
	local want="$1" out
	shift
	if out="$("$@" 2>&1)"; then
		fail "'$*' succeeded; wanted '$want'"
	fi
	[[ "$out" == *"$want"* ]] || fail "'$*': wanted '$want', got '$out'"
}

# xattr NAME FILE: one attribute's value.
xattr() { getfattr --only-values -n "user.$1" "$2" 2>/dev/null; }

# ms: milliseconds since the epoch.
ms() { date +%s%3N; }

# ref_run PROMPT [run options]: the reply `promptfs run` gives on stories260K
# (greedy, raw), byte for byte: run ends a reply with one newline of its own.
ref_run() {
	local prompt="$1" out
	shift
	out="$(timeout 120 "$PROMPTFS_BIN" run "$STORIES" "$prompt" --temp 0 "$@" 2>/dev/null && echo x)"
	[[ "$out" == *x ]] || fail "promptfs run failed on '$prompt'"
	out="${out%x}"
	printf '%s' "${out%$'\n'}"
}

# slurp FILE: the file's bytes, trailing newlines kept, into SLURP.
slurp() {
	SLURP="$(cat "$1"; echo x)"
	SLURP="${SLURP%x}"
}

# wait_reader PID: until process PID has the mount's events file open (a
# reader sees only the lines posted after its open)
wait_reader() {
	for _ in $(seq 200); do
		for fd in /proc/"$1"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "$MNT/events" ] && return 0
		done
		sleep 0.05
	done
	fail "the events reader (pid $1) never opened $MNT/events"
}
