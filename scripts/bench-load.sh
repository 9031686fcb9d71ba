#!/usr/bin/env bash
# scripts/bench-load.sh — load through a real mount: for each N, N sessions
# are written at once (N writer threads released together), read back by N
# parallel readers, and timed from the first write to the last end of file.
# Token counts come from each session's xattrs (user.generated_tokens,
# user.prompt_tokens, user.cached_tokens).  Prints one row per N: aggregate
# generated tokens/s over the wall time, per-session tokens/s (generated
# tokens over its first byte → EOF; median and worst), time to first byte
# from its write (median and worst), prompt tokens and tokens taken from
# shared prefix pages.  A benchmark, not a test (tests/test_bench_load.sh
# runs it once at a tiny size).
#   scripts/bench-load.sh [-n 1,8,64] [-g 128] [-m MODEL.gguf] [--raw] [-- promptfs options...]
#   -n  session counts (default 1,8,64)       -g  tokens per reply (max_tokens, default 128)
#   -m  model (default the project's default model; stories260K when it is absent)
#   --raw  raw mode (default: the model's chat mode)
#   env: PROMPTFS_BIN (default $PROMPTFS_BUILD/promptfs)
set -euo pipefail
. "$(dirname "$0")/common.sh"
BIN="${PROMPTFS_BIN:-$PROMPTFS_BUILD/promptfs}"
COUNTS="1,8,64"
GEN=128
MODEL=""
MODE=chat
while [ $# -gt 0 ]; do
	case "$1" in
	-n) COUNTS="$2"; shift 2 ;;
	-g) GEN="$2"; shift 2 ;;
	-m) MODEL="$2"; shift 2 ;;
	--raw) MODE=raw; shift ;;
	--) shift; break ;;
	*) die "unknown option '$1' (see the header of $0)" ;;
	esac
done
[ -x "$BIN" ] || die "no promptfs binary at $BIN (scripts/build.sh)"
if [ -z "$MODEL" ]; then
	MODEL="$PROMPTFS_MODEL_DEFAULT"
	[ -f "$MODEL" ] || MODEL="$PROMPTFS_SHARED/models/stories260K.gguf"
fi
[ -f "$MODEL" ] || die "no model at $MODEL"
max=0
for n in ${COUNTS//,/ }; do
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "bad session count '$n'"
	[ "$n" -gt "$max" ] && max=$n
done

TMP="$(mktemp -d /tmp/promptfs-load.XXXXXX)"
MNT="$TMP/mnt"
DPID=""
cleanup() {
	grep -q " $MNT " /proc/mounts 2>/dev/null && { fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$MNT"
"$BIN" -f --log-file "$TMP/daemon.log" --max-sessions "$((max + 8))" -s temperature=0 \
	-s "max_tokens=$GEN" -s "mode=$MODE" "$@" "$MODEL" "$MNT" >"$TMP/daemon.out" 2>&1 &
DPID=$!
for _ in $(seq 600); do
	[ -e "$MNT/README" ] && break
	kill -0 "$DPID" 2>/dev/null || { cat "$TMP/daemon.out" >&2; die "promptfs exited before mounting"; }
	sleep 0.1
done
[ -e "$MNT/README" ] || die "the mount did not answer"
echo "model:    $MODEL"
grep -E "^(backend|device)" "$MNT/model" | sed 's/^/          /' || true
echo "mount:    $MODE mode, greedy, max_tokens $GEN; $(grep -E '^prefix_sharing:' "$MNT/stats"), $(grep -E '^max_batch_seqs:' "$MNT/stats")"
echo "per-session tok/s: generated tokens / (first byte → EOF); ttfb: its write → first byte"
echo

python3 - "$MNT" "$COUNTS" <<'EOF'
import os, sys, threading, time, statistics

mnt, counts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
head = ("You are a helpful storyteller for young children. Answer in plain words that a child can "
        "follow, keep every sentence short, and stay kind. When you tell a story, give it a "
        "beginning, a middle and an end, name the characters, and say where they are. When you "
        "explain something, start with what the child can see or touch, then say why it happens, "
        "and give one small example from daily life. Never use words that could frighten a child, "
        "never talk about violence, and never ask for personal information. If a question is not "
        "clear, say what you understood and answer that. End each answer with one line that sums "
        "it up, starting with the words: In short.\n")
questions = ["Tell me a story about a cat who finds a key.", "Why is the sky blue?",
             "Write a short poem about rain on the roof.", "What do bees do all day?",
             "Tell me about a boy who builds a boat.", "How does a seed become a tree?",
             "Write a story about a lost red ball.", "What is the moon made of?"]

def xattr(path, name):
    return int(os.getxattr(path, "user." + name).decode())

def stat(key):
    with open(os.path.join(mnt, "stats")) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return int(v.split()[0])
    return 0

print("%8s %10s %12s %12s %12s %12s %12s %9s %10s %10s" % ("sessions", "generated", "agg_tok/s",
      "sess_median", "sess_worst", "ttfb_ms_med", "ttfb_ms_max", "wall_s", "prompt", "shared"))
for n in counts:
    names = [os.path.join(mnt, "load%d" % i) for i in range(n)]
    go = threading.Barrier(n + 1)
    res = [None] * n
    def one(i):
        path = names[i]
        text = (head + questions[i % len(questions)] + " (%d)\n" % i).encode()
        go.wait()
        t_w = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, text)
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        first = None
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        os.close(fd)
        res[i] = (t_w, first if first is not None else end, end)
    th = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    go.wait()
    for t in th:
        t.join()
    start = min(r[0] for r in res)
    wall = max(r[2] for r in res) - start
    gen = [xattr(p, "generated_tokens") for p in names]
    prompt = sum(xattr(p, "prompt_tokens") for p in names)
    shared = sum(xattr(p, "cached_tokens") for p in names)
    rate = sorted(g / (r[2] - r[1]) if r[2] > r[1] and g > 0 else 0.0 for g, r in zip(gen, res))
    ttfb = sorted(1e3 * (r[1] - r[0]) for r in res)
    print("%8d %10d %12.1f %12.1f %12.1f %12.1f %12.1f %9.2f %10d %10d" % (n, sum(gen), sum(gen) / wall,
          statistics.median(rate), rate[0], statistics.median(ttfb), ttfb[-1], wall, prompt, shared),
          flush=True)
    for p in names:
        os.unlink(p)
EOF
fusermount3 -u "$MNT"
for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
DPID=""
