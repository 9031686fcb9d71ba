#!/usr/bin/env bash
# test_synth.sh — `promptfs synth`: synthetic models with a real model's
# exact metadata, tensor names, shapes and types, and random weights.
#
# Checks, with the `gguf` Python package as the independent reader and the
# real model ($PROMPTFS_MODEL) as the independent layout reference:
#  1. --like stories260K: every KV and every tensor (name, type, shape, order)
#     identical to the source (our reader: tool_gguf same-shape; and gguf-py),
#     data random (differs from the source), of realistic scale; same seed →
#     byte-identical file for any thread count, other seed → other file;
#     `promptfs info` reads it (once info exists).
#  2. --like … --type Q8_0: matrices Q8_0 except rows not divisible by 32 (F16).
#  3. preset qwen2.5-0.5b-instruct-q4_k_m: per-layer tensor types and shapes
#     equal the real Qwen2.5 Q4_K_M file's, tied embeddings (no output.weight,
#     token_embd Q8_0), hparams equal the real model's, tokenizer equal to the
#     vocab GGUF's; weights dequantise to N(0, 0.02)-like values.
#  4. presets q8_0 and f16: every matrix of that type.
#  5. usage errors exit 2, an unknown preset exits 1 and leaves no file.
#  6. the larger presets, written --sparse (tables only; a 145 GB model in a
#     moment): promptfs info loads each, its parameter count is the one
#     Hugging Face shows for the model (within 0.4%: one 256-wide block of
#     F or C more or less moves it by more), the 7B+ Qwen vocabulary is
#     the qwen2 one padded with [PADn] to the 152064 embedding rows, and
#     Llama 3.1's rope_freqs are the llama3 RoPE scaling's factors computed
#     here from the file's own keys, as convert_hf_to_gguf computes them.
#     (Every preset's tensor types: tests/test_synth_mix.py.)  Read with
#     tests/gguf_tables.py (struct; gguf-py's reader is too slow for these).
# Run: ctest -R '^synth$'
set -euo pipefail

BIN=${PROMPTFS_BIN:?} BUILD=${PROMPTFS_BUILD:?} SHARED=${PROMPTFS_SHARED:?}
PY=${PROMPTFS_PYTHON:?} MODEL=${PROMPTFS_MODEL:?}
TOOL=$BUILD/tests/tool_gguf
[ -x "$TOOL" ] || TOOL=$BUILD/tool_gguf
SRC=$SHARED/models/stories260K.gguf
VOCAB=$SHARED/models/vocab/ggml-vocab-qwen2.gguf
T=$(mktemp -d /tmp/test_synth.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- 1. --like stories260K
"$BIN" synth --like "$SRC" -o "$T/s.gguf" --seed 7 -q || fail "synth --like"
"$TOOL" same-shape "$SRC" "$T/s.gguf" || fail "synth --like: metadata or tensor table differs"
"$TOOL" differs "$SRC" "$T/s.gguf" || fail "synth --like: weights copied instead of random"
[ "$(stat -c %s "$SRC")" = "$(stat -c %s "$T/s.gguf")" ] || fail "size differs from the source"
"$BIN" synth --like "$SRC" -o "$T/s7b.gguf" --seed 7 -t 1 -q
"$BIN" synth --like "$SRC" -o "$T/s8.gguf" --seed 8 -t 2 -q
cmp -s "$T/s.gguf" "$T/s7b.gguf" || fail "same seed, different file"
! cmp -s "$T/s.gguf" "$T/s8.gguf" || fail "different seeds, same file"

"$PY" - "$SRC" "$T/s.gguf" <<'EOF' || fail "gguf-py check of --like"
import sys, numpy as np, gguf
src, syn = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
def fields(r):
    return {k: (f.types, f.contents()) for k, f in r.fields.items() if not k.startswith("GGUF.")}
assert fields(src) == fields(syn), "KVs differ"
assert [(t.name, t.tensor_type, list(t.shape)) for t in src.tensors] == \
       [(t.name, t.tensor_type, list(t.shape)) for t in syn.tensors], "tensor tables differ"
for t in syn.tensors:
    x = gguf.dequantize(t.data, t.tensor_type).astype(np.float64)
    assert np.isfinite(x).all(), t.name
    if "norm" in t.name:
        assert abs(x.mean() - 1.0) < 0.01 and 0.01 < x.std() < 0.03, (t.name, x.mean(), x.std())
    elif x.size >= 1024:
        assert abs(x.mean()) < 0.003 and 0.017 < x.std() < 0.023, (t.name, x.mean(), x.std())
print("gguf-py: --like stories260K matches,", len(syn.tensors), "tensors")
EOF

if out=$("$BIN" info "$T/s.gguf" 2>&1); then
	echo "$out" | grep -qi llama || fail "promptfs info does not name the architecture"
elif echo "$out" | grep -q "not built yet"; then
	echo "note: promptfs info is still a placeholder; skipped"
else
	fail "promptfs info on the synthetic model: $out"
fi

# ---- 2. --type
"$BIN" synth --like "$SRC" -o "$T/q8.gguf" --type q8_0 -q || fail "synth --type"
"$PY" - "$SRC" "$T/q8.gguf" <<'EOF' || fail "--type Q8_0 layout"
import sys, gguf
from gguf import GGMLQuantizationType as Q
src, syn = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
for a, b in zip(src.tensors, syn.tensors):
    assert a.name == b.name and list(a.shape) == list(b.shape)
    want = a.tensor_type if len(a.shape) < 2 else (Q.Q8_0 if a.shape[0] % 32 == 0 else Q.F16)
    assert b.tensor_type == want, (b.name, b.tensor_type, want)
print("gguf-py: --type Q8_0 as expected")
EOF

# ---- 3. preset q4_k_m against the real model's layout
"$BIN" synth --preset qwen2.5-0.5b-instruct-q4_k_m --vocab "$VOCAB" -o "$T/q4km.gguf" -q ||
	fail "synth --preset q4_k_m"
"$PY" - "$T/q4km.gguf" "$MODEL" "$VOCAB" <<'EOF' || fail "q4_k_m preset layout"
import sys, numpy as np, gguf
from gguf import GGMLQuantizationType as Q
syn, real, voc = (gguf.GGUFReader(p) for p in sys.argv[1:4])
S = {t.name: t for t in syn.tensors}
R = {t.name: t for t in real.tensors}
# the real file unties the LM head; everything else must match it exactly
assert set(S) == set(R) - {"output.weight"}, set(S) ^ (set(R) - {"output.weight"})
for name, t in S.items():
    if name == "token_embd.weight":
        continue
    r = R[name]
    assert t.tensor_type == r.tensor_type and list(t.shape) == list(r.shape), \
        (name, t.tensor_type.name, r.tensor_type.name, list(t.shape), list(r.shape))
e = S["token_embd.weight"]
assert e.tensor_type == Q.Q8_0 and list(e.shape) == list(R["token_embd.weight"].shape)
for k in ["block_count", "context_length", "embedding_length", "feed_forward_length",
          "attention.head_count", "attention.head_count_kv", "rope.freq_base",
          "attention.layer_norm_rms_epsilon"]:
    a, b = syn.fields["qwen2." + k], real.fields["qwen2." + k]
    assert a.types == b.types and a.contents() == b.contents(), k
for k, f in voc.fields.items():
    if k.startswith("tokenizer.") and k != "tokenizer.ggml.eos_token_id":
        assert syn.fields[k].contents() == f.contents(), k
assert syn.fields["tokenizer.ggml.eos_token_id"].contents() == 151645  # <|im_end|>
assert syn.fields["general.architecture"].contents() == "qwen2"
for name in ["blk.0.attn_v.weight", "blk.2.ffn_down.weight", "blk.3.ffn_down.weight", "blk.23.attn_q.weight"]:
    x = gguf.dequantize(S[name].data, S[name].tensor_type).astype(np.float64)
    assert abs(x.mean()) < 0.002 and 0.017 < x.std() < 0.023, (name, x.mean(), x.std())
layer = sum(int(t.n_bytes) for n, t in S.items() if n.startswith("blk.") and len(t.shape) == 2)
print("gguf-py: q4_k_m preset matches the real layout; weight bytes/token:",
      layer + int(e.n_bytes), "(layers", layer, "+ tied head", int(e.n_bytes), ")")
EOF
"$TOOL" layout "$T/q4km.gguf" > "$T/layout.txt"
grep -qx "blk.13.attn_v.weight Q8_0 896 128 1 1" "$T/layout.txt" || fail "tool_gguf layout"
rm -f "$T/q4km.gguf"

# ---- 4. presets q8_0 and f16
for p in q8_0:Q8_0 f16:F16; do
	name=${p%%:*} type=${p##*:}
	"$BIN" synth --preset "qwen2.5-0.5b-instruct-$name" --vocab "$VOCAB" -o "$T/p.gguf" -q ||
		fail "synth --preset $name"
	"$PY" - "$T/p.gguf" "$type" <<'EOF' || fail "preset $name layout"
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
assert len(r.tensors) == 290
for t in r.tensors:
    want = sys.argv[2] if len(t.shape) == 2 else "F32"
    assert t.tensor_type.name == want, (t.name, t.tensor_type.name, want)
print("gguf-py: preset", sys.argv[2], "ok")
EOF
	rm -f "$T/p.gguf"
done

# ---- 6. big presets, sparse
# parameters on the models' Hugging Face pages (safetensors), in billions
for p in qwen2.5-1.5b-instruct:1.54 qwen2.5-3b-instruct:3.09 qwen2.5-7b-instruct:7.62 \
	 qwen2.5-14b-instruct:14.8 qwen2.5-32b-instruct:32.8 qwen2.5-72b-instruct:72.7 llama-3.1-8b-instruct:8.03; do
	name=${p%%:*} want=${p##*:}
	"$BIN" synth --preset "$name-q4_k_m" --sparse -o "$T/big.gguf" -q || fail "synth --preset $name-q4_k_m --sparse"
	[ "$(du -k "$T/big.gguf" | cut -f1)" -lt 65536 ] || fail "$name: the sparse file takes disk"
	n=$("$BIN" info "$T/big.gguf" | awk '/^parameters:/ { print $2 }')
	awk -v n="$n" -v w="$want" 'BEGIN { d = n / 1e9 / w - 1; exit !(d < 0.004 && d > -0.004) }' ||
		fail "$name: $n parameters, Hugging Face shows ${want}B"
	case $name in
	qwen2.5-7b-instruct | llama-3.1-8b-instruct) mv "$T/big.gguf" "$T/$name.gguf" ;;
	*) rm -f "$T/big.gguf" ;;
	esac
done
"$PY" - "$T/qwen2.5-7b-instruct.gguf" "$VOCAB" "$T/llama-3.1-8b-instruct.gguf" <<'EOF' || fail "big presets' vocabulary / rope_freqs"
import math, os, sys, numpy as np
sys.path.insert(0, os.path.join(os.environ["PROMPTFS_SRC"], "tests"))
from gguf_tables import read_gguf  # gguf-py's reader takes ~10 s per 150k-token vocabulary
tok = lambda k: k.startswith("tokenizer.ggml.token")
(qt, _, qkv, _), (_, _, vkv, _) = (read_gguf(p, tok) for p in sys.argv[1:3])
lt, _, lkv, data = read_gguf(sys.argv[3], lambda k: k.startswith(("llama.rope", "tokenizer.ggml.eos")))
q, voc, ll = dict((k, v) for k, _, v, _ in qkv), dict((k, v) for k, _, v, _ in vkv), dict((k, v) for k, _, v, _ in lkv)
toks, vt = q["tokenizer.ggml.tokens"], voc["tokenizer.ggml.tokens"]
assert len(toks) == qt["token_embd.weight"][1][1] == 152064 and toks[:len(vt)] == vt, len(toks)
assert toks[len(vt):] == [f"[PAD{i}]" for i in range(len(vt), len(toks))]
assert len(q["tokenizer.ggml.token_type"]) == len(toks)
base, dim = np.float32(ll["llama.rope.freq_base"]), ll["llama.rope.dimension_count"]
freqs = np.float32(1.0) / base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
factor, lo, hi, orig = 8.0, 1.0, 4.0, 8192  # Llama-3.1's config.json rope_scaling
ref = []
for fr in freqs:
    wl = np.float32(2 * math.pi) / fr
    sm = (np.float32(orig) / wl - lo) / (hi - lo)
    ref.append(1.0 if wl < orig / hi else factor if wl > orig / lo else 1 / ((1 - sm) / factor + sm))
assert lt["rope_freqs.weight"] == ("F32", [dim // 2]), lt["rope_freqs.weight"]
got = np.fromfile(sys.argv[3], dtype=np.float32, count=dim // 2, offset=data["rope_freqs.weight"])
assert np.allclose(got, np.array(ref, dtype=np.float32), rtol=1e-6, atol=0), (got, ref)
assert not any(k.startswith("llama.rope.scaling") for k in ll)  # llama3 scaling: the tensor alone
assert ll["tokenizer.ggml.eos_token_id"] == 128009  # <|eot_id|>
print("7B vocabulary padded to", len(toks), "tokens; Llama 3.1 rope_freqs", got.min(), "..", got.max())
EOF
rm -f "$T/qwen2.5-7b-instruct.gguf" "$T/llama-3.1-8b-instruct.gguf"

# ---- 5. errors
set +e
"$BIN" synth --preset nope -o "$T/x.gguf" -q 2>/dev/null; rc=$?
[ $rc = 1 ] && [ ! -e "$T/x.gguf" ] || fail "unknown preset: rc $rc"
"$BIN" synth --like "$SRC" 2>/dev/null; [ $? = 2 ] || fail "missing -o"
"$BIN" synth --like "$SRC" --preset x -o "$T/x.gguf" 2>/dev/null; [ $? = 2 ] || fail "both sources"
"$BIN" synth --like "$SRC" --type Q8_K -o "$T/x.gguf" 2>/dev/null; [ $? = 2 ] || fail "activation type"
"$BIN" synth --like /nonexistent.gguf -o "$T/x.gguf" 2>/dev/null; [ $? = 1 ] || fail "missing source"
set -e
echo "test_synth: ok"
