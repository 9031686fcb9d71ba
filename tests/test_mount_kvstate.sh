#!/usr/bin/env bash
# test_mount_kvstate.sh — KV page files in the state directory, through a
# real mount of the real model (chat mode, greedy):
#   - two finished turns, kill -9 during the third reply, remount: both
#     finished turns are back, and the next turn prefills only its own
#     tokens (the page file is intact) with the same text as a session that
#     never restarted;
#   - a corrupted page file (bytes flipped in the middle): ignored with a log
#     line, the whole history is prefilled, and the text is again the same
#     as without a restart;
#   - the page file under another model (stories260K) is refused the same
#     way, and the journal's turns are all there.
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_MODEL:?PROMPTFS_MODEL not set}"
[ -f "$PROMPTFS_MODEL" ] || fail "the real model $PROMPTFS_MODEL is missing (scripts/fetch-model.sh)"

STATE="$PF_TMP/state"
OPTS=(-s temperature=0 -s max_tokens=24)

turn() { # SESSION TEXT [>|>>]
	if [ "${3:->>}" = ">" ]; then echo "$2" >"$MNT/$1"; else echo "$2" >>"$MNT/$1"; fi
	timeout 300 cat "$MNT/$1" >/dev/null || fail "cat $1"
	case "$(xattr status "$MNT/$1")" in done*) ;; *) fail "$1: status $(xattr status "$MNT/$1")" ;; esac
}
stat_of() { grep "^$1:" "$MNT/stats" | cut -d' ' -f2; }
wait_saved() { # N: until N page files were written
	for _ in $(seq 300); do [ "$(stat_of kv_files_saved)" -ge "$1" ] && return 0; sleep 0.1; done
	fail "page files saved: $(stat_of kv_files_saved), wanted $1"
}
extra() { [ "$(xattr status "$MNT/$1")" = "done (end of turn)" ] && echo 0 || echo 1; }

Q1="Answer in one word: what is the capital of France?"
Q2="And of Italy?"
Q3="And of Spain?"
Q4="And of Portugal?"

# ---- the reference: one mount, no restart
pf_mount "$PROMPTFS_MODEL" "${OPTS[@]}"
turn ref "$Q1" ">"
turn ref "$Q2"
turn ref "$Q3"
cat "$MNT/ref" >"$PF_TMP/ref3"
turn ref "$Q4"
cat "$MNT/ref" >"$PF_TMP/ref4"
pf_umount

# ---- two turns, kill -9 during the third
PROMPTFS_TEST_STEP_DELAY_MS=60 pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE" "${OPTS[@]}"
turn a "$Q1" ">"
turn a "$Q2"
wait_saved 2
x="$(extra a)"
cat "$MNT/history/a" >"$PF_TMP/h2"
ls "$STATE"/*.kv >/dev/null 2>&1 || fail "no page file in the state dir"
echo "$Q3" >>"$MNT/a"
for _ in $(seq 300); do [ "$(xattr status "$MNT/a")" = generating ] && break; sleep 0.02; done
[ "$(xattr status "$MNT/a")" = generating ] || fail "the third turn is not generating: $(xattr status "$MNT/a")"
{ kill -KILL "$DPID"; wait "$DPID"; } 2>/dev/null || true
fusermount3 -u -z "$MNT" 2>/dev/null || true
ok "killed during the third reply"

pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE" "${OPTS[@]}"
cmp -s "$MNT/history/a" "$PF_TMP/h2" || fail "finished turns after kill -9 differ:
$(cat "$MNT/history/a")"
[ "$(xattr turns "$MNT/a")" = 2 ] || fail "turns after restart: $(xattr turns "$MNT/a")"
[ "$(stat_of kv_files_loaded)" = 1 ] || fail "page file not loaded: $(grep kv_files "$MNT/stats")"
n_before="$(xattr tokens "$MNT/a")"
[ "$(xattr kv_tokens "$MNT/a")" -ge $((n_before - x)) ] || fail "cached $(xattr kv_tokens "$MNT/a") of $n_before"
turn a "$Q3"
pf="$(xattr prefill_tokens "$MNT/a")"
pt="$(xattr prompt_tokens "$MNT/a")"
[ "$pf" -eq $((pt + x)) ] || fail "after restart the turn prefilled $pf tokens; its own are $pt (+$x)"
cmp -s "$MNT/a" "$PF_TMP/ref3" || fail "reply after restart differs from no restart:
got:  '$(cat "$MNT/a")'
want: '$(cat "$PF_TMP/ref3")'"
ok "after kill -9: 2 turns back, next turn prefilled $pf tokens (own $pt +$x), same text as without a restart"
wait_saved 1
x="$(extra a)"
pf_umount

# ---- a corrupted page file: ignored, the whole history prefilled
f="$(ls "$STATE"/*.kv)"
size="$(stat -c %s "$f")"
printf 'garbage!' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE" "${OPTS[@]}"
grep -q "KV page file .* ignored (torn or damaged" "$PF_TMP/daemon.log" || fail "no log line for the damaged page file"
[ "$(stat_of kv_files_ignored)" = 1 ] || fail "kv_files_ignored: $(stat_of kv_files_ignored)"
[ "$(xattr kv_tokens "$MNT/a")" = 0 ] || fail "a damaged page file was used"
n_before="$(xattr tokens "$MNT/a")"
turn a "$Q4"
pf="$(xattr prefill_tokens "$MNT/a")"
pt="$(xattr prompt_tokens "$MNT/a")"
[ "$pf" -eq $((n_before + pt)) ] || fail "damaged page file: prefilled $pf, history $n_before + new $pt"
cmp -s "$MNT/a" "$PF_TMP/ref4" || fail "reply after a damaged page file differs from no restart:
got:  '$(cat "$MNT/a")'
want: '$(cat "$PF_TMP/ref4")'"
ok "damaged page file ignored with a log line; whole history prefilled ($pf tokens); same text"
wait_saved 1
pf_umount

# ---- an eviction: the next turn gets its pages back from the page file
STATE2="$PF_TMP/state2"
pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE2" --kv-mem 1536K "${OPTS[@]}" # 2 pages
[ "$(stat_of kv_pages_total)" = 2 ] || fail "--kv-mem 1536K: $(stat_of kv_pages_total) pages"
turn a "$Q1" ">"
turn a "$Q2"
wait_saved 2
x="$(extra a)"
turn b "Write one sentence about the weather in spring, and another one about the weather in autumn, please." ">"
[ "$(xattr kv_tokens "$MNT/a")" = 0 ] || fail "a was not evicted: $(xattr kv_tokens "$MNT/a") cached"
turn a "$Q3"
pf="$(xattr prefill_tokens "$MNT/a")"
pt="$(xattr prompt_tokens "$MNT/a")"
[ "$pf" -eq $((pt + x)) ] || fail "after an eviction the turn prefilled $pf tokens; its own are $pt (+$x)"
cmp -s "$MNT/a" "$PF_TMP/ref3" || fail "reply after an eviction differs:
got:  '$(cat "$MNT/a")'
want: '$(cat "$PF_TMP/ref3")'"
grep -q "evicted KV cache offered back" "$PF_TMP/daemon.log" || fail "no log line for the reload"
ok "after an eviction the next turn prefilled $pf tokens (own $pt +$x), pages from the page file; same text"
pf_umount

# ---- the same state dir under another model: its page file is refused
pf_mount "$STORIES" --state-dir "$STATE" "${OPTS[@]}"
grep -q "ignored (saved for another model file)" "$PF_TMP/daemon.log" || fail "no log line for a foreign page file"
[ "$(xattr kv_tokens "$MNT/a")" = 0 ] || fail "a foreign page file was used"
[ "$(xattr turns "$MNT/a")" = 4 ] || fail "turns lost: $(xattr turns "$MNT/a")"
ok "a page file of another model file is ignored; nothing lost"
pf_umount
ok "all"
