#!/usr/bin/env bash
# test_mount_window.sh — sliding-window layers keep only their window
# (engine/window.c), through the mount: a small random-weight Gemma 3 (6
# layers, 5 with a window of 100 positions: at most 3 pages of 64) written
# with the gguf package, raw mode, temperature 0, prefill in chunks of 64.
#   - a ~400-token prompt and a 48-token reply: the reply's token ids
#     (s1.tokens) equal llama.cpp's greedy continuation of the same tokens, while `stats` shows the
#     session holding 7 pages but at most 3 window pages;
#   - two more turns (`>>`), then `user.fork_from s1@1` forks at the first
#     turn, whose window pages s1 has let go since: with a roomy pool the
#     fork takes them back (no rebuild); on a mount whose window pool is
#     small (--window-pages 17) and churned by other sessions they were
#     reused, so the fork rebuilds its cache from the history
#     (kv_window_rebuilds); the fork's next reply is the same both ways;
#   - a second session with the same prompt shares s1's pages (prefix),
#     window pages included, and replies the same;
#   - `rm` of every session gives every page and window page back;
#   - a page file (--state-dir) restores a session with its window pages:
#     the next turn prefills only its own tokens and replies as without a
#     restart;
#   - churn on a 1 MiB pool (evictions of pages and window pages, forks,
#     shared prefixes, `>>`, `rm`): every turn ends, nothing leaks.
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_PYTHON:?PROMPTFS_PYTHON not set}"
M="$PF_TMP/window-gemma3.gguf"
N=48

# the model, the prompt (400 token ids as text the tokenizer maps back to
# the same ids: one SPM piece per word) and llama.cpp's greedy reply
"$PROMPTFS_PYTHON" - "$M" "$PF_TMP" $N <<'EOF' || fail "writing the model or the llama.cpp reference"
import os, sys
sys.path.insert(0, os.path.join(os.environ["PROMPTFS_SRC"], "tests"))
import numpy as np
from test_arch import write_model, gemma_layer
from test_logits import load, llama_greedy
path, tmp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
g3 = dict(C=64, H=4, G=1, D=32, F=128, L=6)
write_model(path, "gemma3", seed=31, **g3, keys=[("gemma3.attention.sliding_window", ("uint32", 100))],
            layer_tensors=gemma_layer(qk_norm=True, **{k: g3[k] for k in "CHGDF"}))
llm = load(path, n_ctx=1024)
words = "the cat sat on a mat and then it ran to see what was there in the big old house".split()
rng = np.random.default_rng(5)
text = " ".join(words[i] for i in rng.integers(0, len(words), 380))
ids = llm.tokenize(text.encode(), add_bos=True)
out = llama_greedy(llm, ids, n)
open(os.path.join(tmp, "prompt"), "w").write(text)
open(os.path.join(tmp, "ref"), "w").write("".join(f"{t}\n" for t in out))
print(len(ids), "prompt tokens")
EOF
NP="$(wc -w < "$PF_TMP/prompt")"

stat_of() { sed -n "s/^$1: //p" "$MNT/stats"; }

run_mount() { # run_mount LABEL [options]: s1's three turns, the fork, its reply
	local label="$1"
	shift
	pf_mount "$M" -t 2 -s mode=raw -s temperature=0 -s max_tokens=$N --batch-tokens 64 "$@"
	cat "$PF_TMP/prompt" > "$MNT/s1"
	timeout 300 cat "$MNT/s1" > /dev/null || fail "$label: cat s1"
	cut -d' ' -f2 "$MNT/s1.tokens" > "$PF_TMP/$label.r1"
	pages="$(stat_of kv_pages_used)" wp="$(stat_of kv_window_pages_used)"
	[ -n "$wp" ] || fail "$label: stats has no kv_window_pages_used: $(cat "$MNT/stats")"
	[ "$pages" -ge 7 ] && [ "$wp" -le 3 ] ||
		fail "$label: after $(xattr kv_tokens "$MNT/s1") tokens: $pages pages, $wp window pages (window of 100: at most 3)"
	ok "$label: one session of $(xattr kv_tokens "$MNT/s1") tokens holds $pages pages and $wp window pages"
	for t in 2 3; do
		echo " and then the cat ran to the old house to see what was there" >> "$MNT/s1"
		timeout 300 cat "$MNT/s1" > /dev/null || fail "$label: turn $t"
	done
}

# ---- a roomy pool
run_mount roomy
cmp -s "$PF_TMP/roomy.r1" "$PF_TMP/ref" ||
	fail "reply after a $NP-word prompt differs from llama.cpp's greedy one:
  ours: $(tr '\n' ' ' < "$PF_TMP/roomy.r1")
  ref:  $(tr '\n' ' ' < "$PF_TMP/ref")"
ok "reply after a $NP-word prompt (chunks of 64 past a window of 100) equals llama.cpp's greedy reply"
touch "$MNT/f"
setfattr -n user.fork_from -v s1@1 "$MNT/f" || fail "fork_from s1@1"
echo " what was in the house" >> "$MNT/f"
timeout 300 cat "$MNT/f" > "$PF_TMP/roomy.fork" || fail "cat f"
[ "$(stat_of kv_window_rebuilds)" = 0 ] || fail "roomy pool: $(stat_of kv_window_rebuilds) rebuilds (the window pages were free to take back)"
ok "roomy pool: the fork at turn 1 took back the window pages s1 had let go (0 rebuilds)"
# a second session with the same prompt takes s1's full pages as a shared
# prefix, as far as their window pages are there (s1 let go of the early
# ones, still unreused: taken back), and replies the same
cat "$PF_TMP/prompt" > "$MNT/s2"
timeout 300 cat "$MNT/s2" > /dev/null || fail "cat s2"
cut -d' ' -f2 "$MNT/s2.tokens" > "$PF_TMP/roomy.r2"
saved="$(xattr cached_tokens "$MNT/s2")"
[ "$saved" -ge 64 ] || fail "s2 took $saved tokens from shared pages (the prompt's full pages are s1's)"
cmp -s "$PF_TMP/roomy.r2" "$PF_TMP/ref" || fail "s2 (shared prefix) replies differently from llama.cpp"
ok "a second session took $saved prompt tokens from s1's pages and window pages, same reply"
rm "$MNT/s1" "$MNT/f" "$MNT/s2"
[ "$(stat_of kv_pages_used)" = 0 ] && [ "$(stat_of kv_window_pages_used)" = 0 ] ||
	fail "after rm: $(stat_of kv_pages_used) pages, $(stat_of kv_window_pages_used) window pages in use"
ok "rm gives every page and window page back"

# ---- a small window pool, churned
run_mount small --max-sessions 4 --window-pages 17
wtot="$(stat_of kv_window_pages_total)"
# three sessions at once (with s1, the most this mount takes) take window
# pages from the free queue's head: first those that hold nothing, then
# the oldest let go, s1's
for c in a b c; do { printf "%s house " "$c"; cat "$PF_TMP/prompt"; } > "$MNT/$c"; done # no shared prefix
for c in a b c; do timeout 300 cat "$MNT/$c" > /dev/null || fail "churn session $c"; done
rm "$MNT/a" "$MNT/b" "$MNT/c"
touch "$MNT/f"
setfattr -n user.fork_from -v s1@1 "$MNT/f" || fail "fork_from s1@1 (small pool)"
echo " what was in the house" >> "$MNT/f"
timeout 300 cat "$MNT/f" > "$PF_TMP/small.fork" || fail "cat f (small pool)"
rb="$(stat_of kv_window_rebuilds)"
[ "$rb" -ge 1 ] || fail "small pool ($wtot window pages, churned): no rebuild; the test proves nothing"
cmp -s "$PF_TMP/roomy.fork" "$PF_TMP/small.fork" ||
	fail "the fork's reply differs between the window pages taken back and the cache rebuilt"
ok "small pool ($wtot window pages, churned): the fork rebuilt its cache ($rb rebuilds), and its reply equals the roomy pool's"

# ---- page files (--state-dir): a session saved and restored keeps its
# window pages; the next turn prefills only its own tokens and replies as
# one that never restarted
STATE="$PF_TMP/state"
pf_umount
pf_mount "$M" -t 2 -s mode=raw -s temperature=0 -s max_tokens=$N --batch-tokens 64 --state-dir "$STATE"
cat "$PF_TMP/prompt" > "$MNT/k"
timeout 300 cat "$MNT/k" > /dev/null || fail "cat k"
for _ in $(seq 300); do [ "$(stat_of kv_files_saved)" -ge 1 ] && break; sleep 0.1; done
[ "$(stat_of kv_files_saved)" -ge 1 ] || fail "no page file saved"
pf_umount
pf_mount "$M" -t 2 -s mode=raw -s temperature=0 -s max_tokens=$N --batch-tokens 64 --state-dir "$STATE"
[ "$(stat_of kv_files_loaded)" = 1 ] || fail "page file not loaded: $(grep kv_files "$MNT/stats")"
echo " what was in the house" >> "$MNT/k"
timeout 300 cat "$MNT/k" > "$PF_TMP/k.after" || fail "cat k after the restart"
pf="$(xattr prefill_tokens "$MNT/k")" pt="$(xattr prompt_tokens "$MNT/k")"
[ "$pf" -le $((pt + 1)) ] || fail "after the restart the turn prefilled $pf tokens; its own are $pt"
pf_umount
pf_mount "$M" -t 2 -s mode=raw -s temperature=0 -s max_tokens=$N --batch-tokens 64
cat "$PF_TMP/prompt" > "$MNT/k"
timeout 300 cat "$MNT/k" > /dev/null || fail "cat k (no restart)"
echo " what was in the house" >> "$MNT/k"
timeout 300 cat "$MNT/k" > "$PF_TMP/k.ref" || fail "cat k (no restart, turn 2)"
cmp -s "$PF_TMP/k.after" "$PF_TMP/k.ref" || fail "reply after restoring the page file differs from no restart"
ok "page file restored with its window pages: the next turn prefilled $pf tokens for its $pt (the last reply token was not cached), same reply as without a restart"

# ---- a small pool under churn: evictions (pages and window pages), forks,
# shared prefixes, `>>` and `rm` mixed; every turn ends, nothing leaks
pf_umount
pf_mount "$M" -t 2 -s mode=raw -s temperature=0 -s max_tokens=16 --batch-tokens 64 --kv-mem 1M
wtot="$(stat_of kv_window_pages_total)" ptot="$(stat_of kv_pages_total)"
for round in 1 2 3; do
	for i in 1 2 3 4 5 6; do
		if [ $(( (i + round) % 3 )) = 0 ] && [ -e "$MNT/c$i" ]; then
			echo " and the cat ran home $round" >> "$MNT/c$i"
		else
			{ [ $((i % 2)) = 0 ] && printf 'c%d ' "$i"; head -c $(( 600 + 200 * i )) "$PF_TMP/prompt"; } > "$MNT/c$i"
		fi
	done
	for s in "$MNT"/c?; do
		timeout 300 cat "$s" > /dev/null || fail "round $round: cat $(basename "$s")"
		case "$(xattr status "$s")" in done*) ;; *) fail "round $round: $(basename "$s"): $(xattr status "$s")" ;; esac
	done
	touch "$MNT/f$round"
	setfattr -n user.fork_from -v "c$round@1" "$MNT/f$round" || fail "round $round: fork_from c$round@1"
	echo " what was there" >> "$MNT/f$round"
	timeout 300 cat "$MNT/f$round" > /dev/null || fail "round $round: cat f$round"
	case "$(xattr status "$MNT/f$round")" in done*) ;; *) fail "round $round: f$round: $(xattr status "$MNT/f$round")" ;; esac
	[ "$(stat_of kv_window_pages_used)" -le "$wtot" ] && [ "$(stat_of kv_pages_used)" -le "$ptot" ] ||
		fail "round $round: $(stat_of kv_pages_used)/$ptot pages, $(stat_of kv_window_pages_used)/$wtot window pages"
	rm -f "$MNT/c$(( round + 3 ))"
done
ev="$(stat_of evictions)" rb="$(stat_of kv_window_rebuilds)"
rm -f "$MNT"/c? "$MNT"/f?
[ "$(stat_of kv_pages_used)" = 0 ] && [ "$(stat_of kv_window_pages_used)" = 0 ] ||
	fail "after rm under churn: $(stat_of kv_pages_used) pages, $(stat_of kv_window_pages_used) window pages in use"
[ "$ev" -ge 1 ] || fail "the small pool evicted nothing: the churn proves nothing"
ok "churn on $ptot pages + $wtot window pages: every turn ended ($ev evictions, $rb rebuilds), rm gave every page back"
