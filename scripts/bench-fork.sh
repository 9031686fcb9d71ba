#!/usr/bin/env bash
# scripts/bench-fork.sh — what forks and KV page files save.  A benchmark,
# not a test: it prints two tables.
#   1. A conversation of about TOKENS tokens (default 3000): `cp a b` time,
#      and the time from the close() of the next turn's prompt to the first
#      byte of its reply on the fork, against the same turn after a restart
#      with the page file, and after a restart without it (the whole history
#      re-prefilled, as before page files existed).
#   2. A state dir of SESSIONS sessions (default 20) of about PER tokens
#      each (default 400): restart, then every session gets its next turn at
#      once; the time from the daemon's start until every session has
#      answered (first byte) and finished, with and without page files.
#   scripts/bench-fork.sh [MODEL.gguf]        (default: the default model)
#   env: TOKENS PER SESSIONS N (reply tokens) THREADS BACKEND PROMPTFS_BIN
set -euo pipefail
. "$(dirname "$0")/common.sh"
BIN="${PROMPTFS_BIN:-$PROMPTFS_BUILD/promptfs}"
MODEL="${1:-$PROMPTFS_MODEL_DEFAULT}"
TOKENS="${TOKENS:-3000}"
PER="${PER:-400}"
SESSIONS="${SESSIONS:-20}"
N="${N:-16}"
THREADS="${THREADS:-0}"
BACKEND="${BACKEND:-auto}"
PY="$(command -v python3)"
[ -x "$BIN" ] || die "no promptfs binary at $BIN (scripts/build.sh)"
[ -f "$MODEL" ] || die "no model at $MODEL (scripts/fetch-model.sh)"

TMP="$(mktemp -d /tmp/promptfs-bench-fork.XXXXXX)"
MNT="$TMP/mnt"
DPID=""
mkdir -p "$MNT"
cleanup() {
	mountpoint -q "$MNT" && fusermount3 -u -z "$MNT" 2>/dev/null
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

T_START=0
mount_fs() { # STATE_DIR
	local opts=(-f --log-file "$TMP/log" --state-dir "$1" --backend "$BACKEND" -s temperature=0
		-s "max_tokens=$N" --ctx $((TOKENS + 512)))
	[ "$THREADS" -gt 0 ] && opts+=(-t "$THREADS")
	T_START="$("$PY" -c 'import time; print(time.time())')"
	"$BIN" "${opts[@]}" "$MODEL" "$MNT" >>"$TMP/out" 2>&1 &
	DPID=$!
	for _ in $(seq 1200); do
		mountpoint -q "$MNT" && [ -e "$MNT/README" ] && return 0
		kill -0 "$DPID" 2>/dev/null || { cat "$TMP/out" >&2; die "promptfs exited"; }
		sleep 0.05
	done
	die "mount did not answer"
}
umount_fs() {
	fusermount3 -u "$MNT"
	while kill -0 "$DPID" 2>/dev/null; do sleep 0.1; done
	DPID=""
}

# helper: turns and timings through the mount (python: perf_counter clocks)
cat >"$TMP/h.py" <<'EOF'
import os, subprocess, sys, threading, time
mnt = sys.argv[2]
def turn(name, text, append=True):
    """Writes a prompt; returns (close -> first byte, close -> EOF) in s."""
    p = os.path.join(mnt, name)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC))
    os.write(fd, text.encode() + b"\n")
    os.close(fd)
    t0 = time.perf_counter()
    fd = os.open(p, os.O_RDONLY)
    first = None
    while True:
        b = os.read(fd, 65536)
        if first is None:
            first = time.perf_counter()
        if not b:
            break
    end = time.perf_counter()
    os.close(fd)
    return first - t0, end - t0
def x(name, key):
    return os.getxattr(os.path.join(mnt, name), "user." + key).decode()
def text(n, tag):
    s, i = [], 0
    while len(s) < n:
        i += 1
        s.append("Note %d about %s: the river bends east past the old mill." % (i, tag))
    return " ".join(s)
cmd = sys.argv[1]
if cmd == "build":           # build NAME TOKENS: a first turn of about TOKENS tokens
    name, tokens = sys.argv[3], int(sys.argv[4])
    turn(name, text(tokens // 15, name) + "\nSummarise these notes in one sentence.", append=False)
    print(x(name, "tokens"))
elif cmd == "cp":            # cp A B: wall time of the cp command
    t0 = time.perf_counter()
    subprocess.run(["cp", os.path.join(mnt, sys.argv[3]), os.path.join(mnt, sys.argv[4])], check=True)
    print("%.2f" % (1000 * (time.perf_counter() - t0)))
elif cmd == "next":          # next NAME: the next turn: first byte ms, prefilled tokens
    f, e = turn(sys.argv[3], "Now say it in five words.")
    print("%.1f %s %s" % (1000 * f, x(sys.argv[3], "prefill_tokens"), x(sys.argv[3], "tokens")))
elif cmd == "all":           # all T_START NAME...: every session's next turn at once
    t_start, names = float(sys.argv[3]), sys.argv[4:]
    res = {}
    t_sub = time.time()
    def one(n):
        res[n] = turn(n, "Now say it in five words.")
    th = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in th: t.start()
    for t in th: t.join()
    now = time.time()
    first = max(r[0] for r in res.values())
    end = max(r[1] for r in res.values())
    pre = sum(int(x(n, "prefill_tokens")) for n in names)
    print("%.2f %.2f %.2f %d" % (t_sub - t_start + first, t_sub - t_start + end, t_sub - t_start, pre))
EOF
h() { "$PY" "$TMP/h.py" "$1" "$MNT" "${@:2}"; }

# ---- 1. fork a long conversation
log "building a conversation of ~$TOKENS tokens"
mount_fs "$TMP/s1"
tok="$(h build a "$TOKENS")"
cp_ms="$(h cp a b)"
read -r fork_ms fork_pre _ <<<"$(h next b)"
umount_fs
mount_fs "$TMP/s1"
read -r page_ms page_pre _ <<<"$(h next a)"
umount_fs
rm -f "$TMP"/s1/*.kv
mount_fs "$TMP/s1"
read -r re_ms re_pre _ <<<"$(h next a)"
umount_fs

echo
echo "Fork of a $tok-token conversation ($(basename "$MODEL"), backend $BACKEND, next turn: close() → first byte)"
echo
echo "| what | time | tokens prefilled |"
echo "| --- | --- | --- |"
echo "| \`cp a b\` | $cp_ms ms | 0 |"
echo "| next turn on the fork b | $fork_ms ms | $fork_pre |"
echo "| next turn after a restart, page file | $page_ms ms | $page_pre |"
echo "| next turn after a restart, no page file (history re-prefilled) | $re_ms ms | $re_pre |"

# ---- 2. restart with many sessions
log "building $SESSIONS sessions of ~$PER tokens"
mount_fs "$TMP/s2"
names=()
for i in $(seq -w 1 "$SESSIONS"); do
	h build "s$i" "$PER" >/dev/null
	names+=("s$i")
done
umount_fs
cp -r "$TMP/s2" "$TMP/s2-nokv"
rm -f "$TMP"/s2-nokv/*.kv
kvmb="$(du -sm "$TMP/s2" | cut -f1)"
mount_fs "$TMP/s2"
read -r kv_first kv_end kv_ready kv_pre <<<"$(h all "$T_START" "${names[@]}")"
umount_fs
mount_fs "$TMP/s2-nokv"
read -r no_first no_end no_ready no_pre <<<"$(h all "$T_START" "${names[@]}")"
umount_fs

echo
echo "Restart with $SESSIONS sessions of ~$PER tokens (state dir with page files: $kvmb MB); every session's next turn at once, seconds from the daemon's start"
echo
echo "| state dir | mount answers | every session answered | every reply done | tokens prefilled |"
echo "| --- | --- | --- | --- | --- |"
echo "| with page files | $kv_ready | $kv_first | $kv_end | $kv_pre |"
echo "| without page files | $no_ready | $no_first | $no_end | $no_pre |"
