#!/usr/bin/env bash
# scripts/bench-fs.sh — the cost of the filesystem: decode tokens/s streamed
# through `cat` on a mount against `promptfs run` (same model, settings,
# threads), and the time from the writer's close() to the first readable
# byte.  A benchmark, not a test: it prints a table.
#   scripts/bench-fs.sh [MODEL.gguf ...]      (default: stories260K and the real model)
#   env: N=tokens per reply  REPS=repetitions  THREADS=-t for both sides
#        BACKEND=auto|cuda|cpu for both sides
#        PROMPTFS_BIN (default $PROMPTFS_BUILD/promptfs)
set -euo pipefail
. "$(dirname "$0")/common.sh"
BIN="${PROMPTFS_BIN:-$PROMPTFS_BUILD/promptfs}"
REPS="${REPS:-3}"
THREADS="${THREADS:-0}"
BACKEND="${BACKEND:-auto}"
PY="$(command -v python3)"
[ -x "$BIN" ] || die "no promptfs binary at $BIN (scripts/build.sh)"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$PROMPTFS_SRC/../shared/models/stories260K.gguf" "$PROMPTFS_MODEL_DEFAULT")

TMP="$(mktemp -d /tmp/promptfs-bench.XXXXXX)"
MNT=""
DPID=""
unmount() { fusermount3 -u "$@" 2>/dev/null || umount "$@"; }
cleanup() {
	[ -n "$MNT" ] && mountpoint -q "$MNT" && { fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# One reply through the mount: close() → first byte → EOF, timed by the reader.
stream_once() { # MNT NAME PROMPT
	"$PY" - "$1" "$2" "$3" <<'EOF'
import os, sys, time
mnt, name, prompt = sys.argv[1:4]
path = os.path.join(mnt, name)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, prompt.encode() + b"\n")
os.close(fd)                                   # the prompt is submitted here
t_close = time.perf_counter()
fd = os.open(path, os.O_RDONLY)
t_first = None
n = 0
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    if t_first is None:
        t_first = time.perf_counter()
    n += len(b)
t_end = time.perf_counter()
os.close(fd)
gen = int(os.getxattr(path, "user.generated_tokens"))
pre = float(os.getxattr(path, "user.prefill_tps") or 0)
ptok = int(os.getxattr(path, "user.prefill_tokens"))
dtps = float(os.getxattr(path, "user.decode_tps") or 0)
stream_tps = (gen - 1) / (t_end - t_first) if gen > 1 and t_end > t_first else 0
prefill_ms = 1000 * ptok / pre if pre > 0 else 0
print(f"{stream_tps:.1f} {dtps:.1f} {1000*(t_first - t_close):.2f} {prefill_ms:.2f} {gen} {1000*(t_end-t_close):.1f}")
EOF
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }

printf '%-28s %7s %11s %11s %9s %11s %9s %9s %9s\n' model tokens "run tok/s" "cat tok/s" "cat/run" "mount t/s" "cat/mnt" "close→1st" "prefill"
printf '%-28s %7s %11s %11s %9s %11s %9s %9s %9s\n' "" "" "(engine)" "(reader)" "" "(engine)" "" "ms" "ms"
for model in "${models[@]}"; do
	[ -f "$model" ] || { log "skipping missing $model"; continue; }
	name="$(basename "$model" .gguf)"
	case "$name" in stories*) n="${N:-256}" prompt="Once upon a time" ;; *) n="${N:-64}" prompt="Write a story about the sea." ;; esac
	# the mount, and promptfs run in turns (machine load drifts)
	MNT="$(mktemp -d "$TMP/mnt.XXXXXX")"
	"$BIN" -f -t "$THREADS" --backend "$BACKEND" -s temperature=0 -s "max_tokens=$n" "$model" "$MNT" 2>"$TMP/daemon.err" &
	DPID=$!
	for _ in $(seq 600); do [ -e "$MNT/README" ] && break; sleep 0.1; done
	[ -e "$MNT/README" ] || die "mount failed: $(cat "$TMP/daemon.err")"
	stream_once "$MNT" warmup "$prompt" >/dev/null
	log "$name: $(grep -m1 '^backend:' "$MNT/model" || true)"
	: >"$TMP/cat"
	: >"$TMP/run"
	for i in $(seq "$REPS"); do
		# promptfs run: the engine's own decode rate, same settings, while the mount idles
		"$BIN" run "$model" "$prompt" --temp 0 -n "$n" -t "$THREADS" --backend "$BACKEND" -v 2>&1 >/dev/null |
			sed -n 's/.*reply \([0-9]*\) tokens at \([0-9.]*\) tok\/s.*/\2/p' >>"$TMP/run"
		stream_once "$MNT" "b$i" "$prompt" >>"$TMP/cat"
	done
	run_tps="$(median <"$TMP/run")"
	unmount "$MNT"
	wait "$DPID" || true
	DPID=""
	MNT=""
	cat_tps="$(cut -d' ' -f1 "$TMP/cat" | median)"
	eng_tps="$(cut -d' ' -f2 "$TMP/cat" | median)"
	first_ms="$(cut -d' ' -f3 "$TMP/cat" | median)"
	prefill_ms="$(cut -d' ' -f4 "$TMP/cat" | median)"
	gen="$(cut -d' ' -f5 "$TMP/cat" | median)"
	ratio="$(awk -v a="$cat_tps" -v b="$run_tps" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}')"
	ratio2="$(awk -v a="$cat_tps" -v b="$eng_tps" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}')"
	printf '%-28s %7s %11s %11s %9s %11s %9s %9s %9s\n' "${name:0:28}" "$gen" "$run_tps" "$cat_tps" "$ratio" "$eng_tps" "$ratio2" "$first_ms" "$prefill_ms"
done
echo "(medians of $REPS; threads $THREADS (0 = all cores).  run/mount t/s: the engine's decode rate in"
echo " promptfs run and inside the daemon; cat t/s: bytes reaching a reader, first byte to EOF;"
echo " close→1st: writer's close() to the reader's first byte, which includes the prefill)"
