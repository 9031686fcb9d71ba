#!/usr/bin/env bash
# test_mount_tokens.sh — NAME.tokens through a real FUSE mount on the real
# default model (2 threads, as tool_logits):
#   - streams: a cat of s.tokens started right after the prompt waits while
#     the turn is live and ends with EOF; a second reader and a re-read get
#     the same bytes; stat's size is the view's; ls does not list it;
#     writing it is EACCES;
#   - every line: INDEX ID PIECE LOGPROB, then logprobs = K alternatives;
#     the pieces (unescaped) concatenate to the reply exactly;
#   - ids equal llama.cpp's tokenisation of the reply (greedy sessions) and
#     llama.cpp's detokenisation of the ids is the reply (every session);
#   - each LOGPROB, and each alternative's, equals log-softmax of the CPU
#     backend's logits at that position within 1e-4 (tool_logits on the
#     prompt + the sampled ids: the prompt in one forward pass, then one
#     token per pass, as the scheduler ran the session), and the
#     alternatives are the K most likely tokens (ties within 1e-4 aside);
#   - with logprobs 0, log-probabilities come once the view was asked for
#     (the sessions here ask before the prompt); a session whose view is
#     asked for only after its turn lists the sampled ids from the history
#     with "-".
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_MODEL:?PROMPTFS_MODEL not set}"
: "${PROMPTFS_PYTHON:?PROMPTFS_PYTHON not set}"
[ -f "$PROMPTFS_MODEL" ] || fail "the real model $PROMPTFS_MODEL is missing (scripts/fetch-model.sh)"
TOOL_LOGITS="$PROMPTFS_BUILD/tests/tool_logits"
TOOL_TOK="$PROMPTFS_BUILD/tests/tool_tokenize"

pf_mount "$PROMPTFS_MODEL" -t 2 -s mode=raw

# one session at a time, so each ran alone in its batches (as tool_logits does)
run_session() { # NAME PROMPT TEMPERATURE SEED LOGPROBS MAX_TOKENS
	local s="$1"
	: >"$MNT/$s"
	setfattr -n user.temperature -v "$3" "$MNT/$s"
	setfattr -n user.seed -v "$4" "$MNT/$s"
	setfattr -n user.logprobs -v "$5" "$MNT/$s"
	setfattr -n user.max_tokens -v "$6" "$MNT/$s"
	# with logprobs 0 they are computed once the view was asked for: ask
	# now (an empty session's view: EOF at once), not after the prompt
	[ "$5" = 0 ] && { [ -z "$(timeout 10 cat "$MNT/$s.tokens")" ] || fail "$s.tokens not empty before a prompt"; }
	printf '%s' "$2" >"$PF_TMP/$s.prompt"
	echo "$2" >"$MNT/$s"
	timeout 300 cat "$MNT/$s.tokens" >"$PF_TMP/$s.tokens.live" &
	local reader=$!
	timeout 300 cat "$MNT/$s" >"$PF_TMP/$s.reply" || fail "cat $s"
	wait "$reader" || fail "the live cat of $s.tokens failed"
	timeout 30 cat "$MNT/$s.tokens" >"$PF_TMP/$s.tokens" || fail "re-read of $s.tokens"
	cmp -s "$PF_TMP/$s.tokens" "$PF_TMP/$s.tokens.live" || fail "$s.tokens: the live read and the re-read differ"
	[ "$(stat -c %s "$MNT/$s.tokens")" = "$(stat -c %s "$PF_TMP/$s.tokens")" ] || fail "size of $s.tokens"
	xattr prompt_tokens "$MNT/$s" >"$PF_TMP/$s.ptok"
	xattr status "$MNT/$s" >"$PF_TMP/$s.status"
}

run_session g1 "The capital of France is" 0 1 3 24
run_session g2 "def fibonacci(n):" 0 1 5 32
run_session t1 "Once upon a time, a little robot" 0.8 7 0 32
run_session t2 "My favourite colours are" 1.0 11 2 32
ok "4 sessions: live reads of NAME.tokens end with EOF and equal a re-read and stat's size"

ls "$MNT" | grep -q '\.tokens$' && fail "ls lists a .tokens view: $(ls "$MNT")"
if echo x >"$MNT/g1.tokens" 2>/dev/null; then fail "writing g1.tokens was allowed"; fi
ok "NAME.tokens is not listed and is read-only"

# ---- a view asked for only after the turn: ids from the history, "-"
: >"$MNT/late"
setfattr -n user.temperature -v 0 "$MNT/late"
setfattr -n user.max_tokens -v 12 "$MNT/late"
echo "Two plus two is" >"$MNT/late"
timeout 300 cat "$MNT/late" >"$PF_TMP/late.reply" || fail "cat late"
timeout 30 cat "$MNT/late.tokens" >"$PF_TMP/late.tokens" || fail "cat late.tokens"
printf '%s' "Two plus two is" >"$PF_TMP/late.prompt"
echo 0 >"$PF_TMP/late.lp"

for s in g1 g2 t1 t2; do
	"$TOOL_TOK" "$PROMPTFS_MODEL" text "$(cat "$PF_TMP/$s.prompt")" >"$PF_TMP/$s.ptok.ids" 2>/dev/null \
		|| fail "tool_tokenize of $s's prompt"
done

"$PROMPTFS_PYTHON" - "$PF_TMP" "$PROMPTFS_MODEL" "$TOOL_LOGITS" <<'EOF' || fail "token views do not match"
import ctypes, os, re, subprocess, sys
import numpy as np
import llama_cpp

d, model, tool_logits = sys.argv[1:4]
bad = []

@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def quiet(level, text, user):
    pass
llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)

def unescape(p):
    if p == '""':
        return b""
    out, i, b = bytearray(), 0, p.encode()
    while i < len(b):
        if b[i:i + 2] == b"\\x":
            out.append(int(b[i + 2:i + 4], 16)); i += 4
        else:
            out.append(b[i]); i += 1
    return bytes(out)

def parse(path, k):
    rows = []
    for n, line in enumerate(open(path, "rb").read().decode("utf-8").split("\n")[:-1]):
        f = line.split(" ")
        if len(f) != 4 + 3 * k:
            bad.append(f"{path}: line {n} has {len(f)} fields, expected {4 + 3 * k}: {line!r}"); continue
        if int(f[0]) != n:
            bad.append(f"{path}: line {n} has index {f[0]}")
        alts = [(int(f[4 + 3 * j]), unescape(f[5 + 3 * j]), float(f[6 + 3 * j])) for j in range(k)]
        rows.append((int(f[1]), unescape(f[2]), None if f[3] == "-" else float(f[3]), alts))
    return rows

def piece(i):
    return llm.detokenize([i])

def check(s, k, greedy, want_lp):
    reply = open(f"{d}/{s}.reply", "rb").read()
    rows = parse(f"{d}/{s}.tokens", k)
    ids = [r[0] for r in rows]
    if not rows:
        bad.append(f"{s}: empty view"); return 0
    if b"".join(r[1] for r in rows) != reply:
        bad.append(f"{s}: pieces do not concatenate to the reply")
    for i, p, _, alts in rows:
        if p != piece(i):
            bad.append(f"{s}: piece of {i} is {p!r}, llama.cpp says {piece(i)!r}")
    if llm.detokenize(ids) != reply:
        bad.append(f"{s}: llama.cpp's detokenisation of the ids is not the reply")
    retok = llm.tokenize(reply, add_bos=False, special=False)
    if greedy and retok != ids:
        bad.append(f"{s}: ids {ids} differ from llama.cpp's tokenisation of the reply {retok}")
    if not want_lp:
        if any(r[2] is not None for r in rows):
            bad.append(f"{s}: log-probabilities computed for a view asked for after the turn")
        return 0
    prompt = [int(x) for x in re.findall(r"^\s*(\d+)", open(f"{d}/{s}.ptok.ids").read(), re.M)]
    if len(prompt) != int(open(f"{d}/{s}.ptok").read()):
        bad.append(f"{s}: {len(prompt)} prompt ids but user.prompt_tokens {open(f'{d}/{s}.ptok').read()}")
    if prompt != llm.tokenize(open(f"{d}/{s}.prompt", "rb").read(), add_bos=False, special=False):
        bad.append(f"{s}: our prompt ids differ from llama.cpp's")
    seq = prompt + ids
    with open(f"{d}/{s}.seq", "w") as f:
        f.write(" ".join(map(str, seq)))
    subprocess.run([tool_logits, model, "--tokens", f"{d}/{s}.seq", "--first", str(len(prompt)), "--chunk", "1",
                    "--threads", "2", "--out", f"{d}/{s}.logits"], check=True, capture_output=True)
    V = llm.n_vocab()
    L = np.fromfile(f"{d}/{s}.logits", dtype=np.float32).reshape(len(seq), V).astype(np.float64)
    worst = 0.0
    for n, (i, _, lp, alts) in enumerate(rows):
        row = L[len(prompt) + n - 1]
        ref = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        worst = max(worst, abs(ref[i] - lp))
        if abs(ref[i] - lp) > 1e-4:
            bad.append(f"{s}: token {n} ({i}): logprob {lp} vs CPU softmax {ref[i]:.6f}")
        kth = np.sort(ref)[-k] if k else None
        for j, (a, ap, alp) in enumerate(alts):
            worst = max(worst, abs(ref[a] - alp))
            if abs(ref[a] - alp) > 1e-4:
                bad.append(f"{s}: token {n} alternative {j} ({a}): {alp} vs {ref[a]:.6f}")
            if ref[a] < kth - 1e-4:
                bad.append(f"{s}: token {n} alternative {a} is not among the {k} most likely")
            if ap != piece(a):
                bad.append(f"{s}: alternative piece of {a}")
        if k and [a for a, _, _ in alts] != sorted([a for a, _, _ in alts], key=lambda a: -ref[a]) and \
           max(abs(ref[alts[j][0]] - ref[alts[j + 1][0]]) for j in range(k - 1)) > 1e-4:
            bad.append(f"{s}: token {n}: alternatives not in descending order")
    return len(rows), worst

total = 0
for s, k, greedy in (("g1", 3, True), ("g2", 5, True), ("t1", 0, False), ("t2", 2, False)):
    n, worst = check(s, k, greedy, True)
    total += n
    print(f"{s}: {n} tokens, logprobs within {worst:.2e} of the CPU backend's softmax (top-{k})")
check("late", 0, True, False)
for b in bad[:20]:
    print("MISMATCH:", b, file=sys.stderr)
print(f"{total} token lines checked against the CPU softmax and llama.cpp's tokenizer; {len(bad)} mismatches")
sys.exit(1 if bad else 0)
EOF
ok "ids = llama.cpp's tokenisation of the reply, logprobs = CPU softmax within 1e-4, top-K = the K most likely"
