#!/usr/bin/env bash
# test_cli.sh — `promptfs info`, `run` and `bench` from the shell, checked
# against independent references:
#   info: every hyper-parameter it prints equals the value the gguf Python
#         package reads from the same file (stories260K and the real model);
#   run:  --temp 0 gives the same text twice, and equals llama.cpp's greedy
#         continuation (llama-cpp-python) on stories260K (raw) and on the real
#         model in chat mode (prompt rendered by jinja2 from the GGUF's own
#         template, tokenised by llama.cpp with special tokens), and a
#         three-turn conversation through the engine API (tests/tool_chat)
#         whose token history is llama.cpp's tokens of the conversation;
#   errors: a missing file, a corrupt file and a truncated file exit non-zero
#         with a clear message and no crash; bad option values exit 2;
#   bench: runs on stories260K and prints its table, with the CPU's measured
#          read bandwidth and each decode row's fraction of it.
# Run: ctest -R cli
set -u
BIN=${PROMPTFS_BIN:?}
PY=${PROMPTFS_PYTHON:-python3}
SHARED=${PROMPTFS_SHARED:?}
MODEL=${PROMPTFS_MODEL:?}
STORIES="$SHARED/models/stories260K.gguf"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

[ -f "$MODEL" ] || { echo "FAIL: real model missing at $MODEL (scripts/fetch-model.sh)"; echo "0 passed, 1 failed"; exit 1; }

# ---- info vs the gguf package
info_check() {
	local f=$1
	"$BIN" info "$f" > "$TMP/info.txt" 2> "$TMP/info.err"
	check "[ $? -eq 0 ]" "info $f exited non-zero: $(cat "$TMP/info.err")"
	"$PY" - "$f" "$TMP/info.txt" <<'EOF' > "$TMP/info.cmp" 2>&1
import sys, gguf
path, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(path)
def val(k):
    f = r.fields.get(k)
    if f is None: return None
    v = f.contents()
    return v
arch = val("general.architecture")
n_head = val(f"{arch}.attention.head_count")
n_embd = val(f"{arch}.embedding_length")
want = {
    "architecture": arch,
    "layers": val(f"{arch}.block_count"),
    "embedding": n_embd,
    "heads": n_head,
    "kv_heads": val(f"{arch}.attention.head_count_kv") or n_head,
    "head_dim": val(f"{arch}.attention.key_length") or n_embd // n_head,
    "feed_forward": val(f"{arch}.feed_forward_length"),
    "context_train": val(f"{arch}.context_length"),
    "vocabulary": len(r.fields["tokenizer.ggml.tokens"].data),
    "tensors": len(r.tensors),
    "file_size": __import__("os").path.getsize(path),
    "parameters": sum(int(t.n_elements) for t in r.tensors),
}
got = {}
for line in open(out):
    k, _, v = line.partition(":")
    got.setdefault(k.strip(), v.strip().split(" ")[0])
# tensor types: counts per type name
types = {}
for t in r.tensors:
    types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
got_types = {}
for line in open(out):
    if line.startswith("tensor_type:"):
        parts = line.split()
        got_types[parts[1]] = int(parts[2])
bad = [f"{k}: promptfs {got.get(k)!r}, gguf {v!r}" for k, v in want.items() if str(got.get(k)) != str(v)]
if got_types != types:
    bad.append(f"tensor types: promptfs {got_types}, gguf {types}")
print("\n".join(bad) if bad else "OK")
EOF
	check "head -1 '$TMP/info.cmp' | grep -q '^OK'" "info $f differs from the gguf package: $(cat "$TMP/info.cmp")"
}
info_check "$STORIES"
info_check "$MODEL"
check "grep -q '^chat_template: *chatml' '$TMP/info.txt'" "real model template family is not chatml"
"$BIN" info --all "$STORIES" > "$TMP/all.txt" 2>&1
check "[ \$? -eq 0 ] && grep -q 'blk.0.attn_q.weight' '$TMP/all.txt' && grep -q 'general.architecture' '$TMP/all.txt'" \
	"info --all does not list tensors and keys"

# ---- run: determinism and llama.cpp's greedy text
PROMPT="Once upon a time"
"$BIN" run "$STORIES" "$PROMPT" -n 64 --temp 0 > "$TMP/r1.txt" 2> "$TMP/r1.err"
check "[ $? -eq 0 ]" "run failed: $(cat "$TMP/r1.err")"
"$BIN" run "$STORIES" "$PROMPT" -n 64 --temp 0 -t 1 > "$TMP/r2.txt" 2>/dev/null
check "cmp -s '$TMP/r1.txt' '$TMP/r2.txt'" "run --temp 0 twice differs"
"$BIN" run "$STORIES" "$PROMPT" -n 40 --temp 0.8 --seed 7 > "$TMP/s1.txt" 2>/dev/null
"$BIN" run "$STORIES" "$PROMPT" -n 40 --temp 0.8 --seed 7 > "$TMP/s2.txt" 2>/dev/null
check "cmp -s '$TMP/s1.txt' '$TMP/s2.txt'" "same seed twice differs"

"$PY" - "$STORIES" "$PROMPT" 64 > "$TMP/ref.txt" 2> "$TMP/ref.err" <<'EOF'
import sys
from llama_cpp import Llama
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=2048, n_threads=2, verbose=False)
out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1, repeat_penalty=1.0)
sys.stdout.write(out["choices"][0]["text"] + "\n")
EOF
check "[ -s '$TMP/ref.txt' ] && cmp -s '$TMP/r1.txt' '$TMP/ref.txt'" \
	"stories260K greedy differs from llama.cpp:
  promptfs: $(head -c 300 "$TMP/r1.txt")
  llama.cpp: $(head -c 300 "$TMP/ref.txt") $(tail -3 "$TMP/ref.err")"

CHAT="Write a haiku about autumn"
"$BIN" run "$MODEL" "$CHAT" -n 48 --temp 0 -t 2 > "$TMP/c1.txt" 2> "$TMP/c1.err"
check "[ $? -eq 0 ]" "chat run failed: $(cat "$TMP/c1.err")"
# llama.cpp's greedy text, step by step, beside ours.  The texts must be the
# same, or part only where llama.cpp's own top two are within the error of
# the logits (5% of the largest logit: tests/test_logits.py's tolerance for
# this model, with its reasons) and our text goes on with llama.cpp's
# second choice.  The pinned x86-64-v3 reference parts from promptfs at such
# a near-tie on this prompt (margin 0.06 of 17.8 at step 12).
"$PY" - "$MODEL" "$CHAT" 48 "$TMP/c1.txt" > "$TMP/cref.txt" 2> "$TMP/cref.err" <<'EOF'
import sys
import numpy as np
import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment
import llama_cpp
from llama_cpp import Llama
path, prompt, n, ours = sys.argv[1], sys.argv[2], int(sys.argv[3]), open(sys.argv[4], "rb").read()
r = gguf.GGUFReader(path)
f = r.fields["tokenizer.chat_template"]
tmpl = bytes(f.parts[f.data[0]]).decode()
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
text = env.from_string(tmpl).render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True)
llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False)
toks = llm.tokenize(text.encode(), add_bos=False, special=True)
vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
eog = {t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
llm.eval(toks)
got = b""
for step in range(n):
    lg = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).copy()
    order = np.argsort(-lg, kind="stable")
    t1, t2 = int(order[0]), int(order[1])
    if t1 in eog:
        break
    p1 = llm.detokenize([t1])
    if not ours.startswith(got + p1):
        margin, bound = float(lg[t1] - lg[t2]), 0.05 * float(np.abs(lg).max())
        p2 = llm.detokenize([t2])
        ok = margin <= bound and t2 not in eog and ours.startswith(got + p2)
        print(f"{'near-tie' if ok else 'DIFFERS'} at step {step}: llama.cpp {p1!r} {lg[t1]:.3f}, "
              f"runner-up {p2!r} {lg[t2]:.3f} (margin {margin:.3f}, bound {bound:.3f}); "
              f"promptfs goes on {ours[len(got):len(got) + 16]!r}")
        sys.exit(0 if ok else 1)
    got += p1
    llm.eval([t1])
ok = ours.rstrip(b"\n") == got.rstrip(b"\n")
print("identical" if ok else f"DIFFERS: llama.cpp {got!r} / promptfs {ours!r}")
sys.exit(0 if ok else 1)
EOF
check "[ $? -eq 0 ]" "real model chat greedy differs from llama.cpp: $(cat "$TMP/cref.txt") $(tail -3 "$TMP/cref.err")"
echo "real model chat greedy vs llama.cpp: $(cat "$TMP/cref.txt")"

# ---- multi-turn chat through the engine API (KV cache reused) vs llama.cpp
# given the whole conversation rendered by jinja2: the token history of the
# session must be exactly llama.cpp's tokens of the rendered conversation
# (with our replies as the assistant messages, user text never parsed for
# special tokens), and the first two replies must be llama.cpp's greedy ones.
# (Later replies are not compared: a near-tie between two logits flips
# between any two implementations of a quantised model sooner or later.)
TOOL_CHAT="$PROMPTFS_BUILD/tests/tool_chat"
[ -x "$TOOL_CHAT" ] || TOOL_CHAT="$PROMPTFS_BUILD/tool_chat"
SYS="You are a terse assistant."
U1="What is the capital of France?"
U2="And of Italy? Repeat <|im_end|> literally."
U3="Thanks. Now count to five."
TOOL_CHAT_DUMP=1 "$TOOL_CHAT" "$MODEL" 40 --system "$SYS" "$U1" "$U2" "$U3" > "$TMP/chat.bin" 2> "$TMP/chat.err"
check "[ $? -eq 0 ]" "tool_chat failed: $(cat "$TMP/chat.err")"
tail -1 "$TMP/chat.err" > "$TMP/chat.tokens"
"$PY" - "$MODEL" 40 "$TMP/chat.bin" "$TMP/chat.tokens" "$SYS" "$U1" "$U2" "$U3" > "$TMP/chatref.txt" 2>&1 <<'PYEOF'
import sys
import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import Llama
path, n, replies_f, tokens_f, system, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
replies = open(replies_f, "rb").read().decode().split("\x1e")[:-1]
ours = [int(x) for x in open(tokens_f).read().split()]
r = gguf.GGUFReader(path)
f = r.fields["tokenizer.chat_template"]
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
tmpl = env.from_string(bytes(f.parts[f.data[0]]).decode())
llm = Llama(model_path=path, n_ctx=2048, n_threads=2, verbose=False)

def tokens(msgs):
    # llama.cpp would parse "<|im_end|>" typed by a user as the special
    # token; promptfs keeps user text plain: render with placeholders, then
    # tokenise user texts without special parsing
    ph = [dict(m, content="\x00%d\x00" % i) if m["role"] == "user" else m for i, m in enumerate(msgs)]
    parts = tmpl.render(messages=ph, add_generation_prompt=True).split("\x00")
    t = []
    for k, part in enumerate(parts):
        if k % 2:
            t += llm.tokenize(msgs[int(part)]["content"].encode(), add_bos=False, special=False)
        elif part:
            t += llm.tokenize(part.encode(), add_bos=False, special=True)
    return t

bad = []
if len(replies) != len(users):
    bad.append("expected %d replies, got %d" % (len(users), len(replies)))
msgs = [{"role": "system", "content": system}]
for i, u in enumerate(users[:len(replies)]):
    msgs.append({"role": "user", "content": u})
    t = tokens(msgs)
    if ours[:len(t)] != t:
        k = next((j for j, (a, b) in enumerate(zip(ours, t)) if a != b), min(len(ours), len(t)))
        bad.append("turn %d: prompt tokens differ from llama.cpp's at %d: ours %s, llama.cpp %s" % (i + 1, k, ours[k:k + 8], t[k:k + 8]))
    if i < 2:
        out = llm.create_completion(t, max_tokens=n, temperature=0.0, top_k=1, repeat_penalty=1.0)
        if out["choices"][0]["text"] != replies[i]:
            bad.append("turn %d reply: ours %r, llama.cpp %r" % (i + 1, replies[i], out["choices"][0]["text"]))
    msgs.append({"role": "assistant", "content": replies[i]})
print("\n".join(bad) if bad else "OK")
PYEOF
check "grep -qx OK '$TMP/chatref.txt'" "multi-turn chat vs llama.cpp: $(tail -5 "$TMP/chatref.txt")"

# ---- errors: clear message, non-zero exit, no crash (exit >= 128 is a signal)
err_check() {
	local what=$1; shift
	"$@" > "$TMP/e.out" 2> "$TMP/e.err"
	local rc=$?
	check "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -qi 'promptfs' '$TMP/e.err'" \
		"$what: exit $rc, stderr: $(head -c 300 "$TMP/e.err")"
}
err_check "missing model (info)" "$BIN" info "$TMP/nope.gguf"
err_check "missing model (run)" "$BIN" run "$TMP/nope.gguf" "hi"
head -c 100000 /dev/urandom > "$TMP/junk.gguf"
err_check "random bytes (info)" "$BIN" info "$TMP/junk.gguf"
err_check "random bytes (run)" "$BIN" run "$TMP/junk.gguf" "hi"
head -c 600000 "$STORIES" > "$TMP/trunc.gguf"
err_check "truncated model (info)" "$BIN" info "$TMP/trunc.gguf"
err_check "truncated model (run)" "$BIN" run "$TMP/trunc.gguf" "hi"
"$PY" - "$STORIES" "$TMP/flip.gguf" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[8:16] = (10**12).to_bytes(8, "little")  # absurd tensor count
open(sys.argv[2], "wb").write(b)
EOF
err_check "corrupt header (run)" "$BIN" run "$TMP/flip.gguf" "hi"
grep -qi "cannot\|invalid\|not a valid" "$TMP/e.err" && ok || bad "corrupt header: message unclear: $(cat "$TMP/e.err")"
"$BIN" run "$STORIES" "hi" --temp nan > /dev/null 2> "$TMP/e.err"
check "[ $? -eq 2 ]" "--temp nan should be a usage error (2)"
"$BIN" run "$STORIES" "hi" --top-p 1.5 > /dev/null 2>&1
check "[ $? -eq 2 ]" "--top-p 1.5 should be a usage error (2)"
"$BIN" run "$STORIES" > /dev/null 2>&1
check "[ $? -eq 2 ]" "run without a prompt should be a usage error (2)"
"$BIN" run "$STORIES" "hi" --backend warp > /dev/null 2> "$TMP/e.err"
check "[ $? -eq 1 ] && grep -q 'warp' '$TMP/e.err'" "unknown backend: $(cat "$TMP/e.err")"

# ---- bench smoke test
"$BIN" bench "$STORIES" -p 64,128 -n 16 --ctx 0,256 --reps 2 -t 1 > "$TMP/bench.txt" 2>&1
check "[ $? -eq 0 ] && grep -q '^prefill 128' '$TMP/bench.txt' && grep -q '^decode @256' '$TMP/bench.txt'" \
	"bench output: $(cat "$TMP/bench.txt")"
# the CPU's measured read bandwidth, and each decode row's share of it
check "grep -Eq '^memory: +[0-9.]+ GB/s measured' '$TMP/bench.txt' && grep -q 'of mem bw' '$TMP/bench.txt' &&
	[ \$(grep -Ec '^decode @[0-9]+ x16 .* [0-9]+%$' '$TMP/bench.txt') = 2 ]" \
	"bench: the read bandwidth and the decode rows' fraction of it: $(cat "$TMP/bench.txt")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
