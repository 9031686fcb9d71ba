#!/usr/bin/env python3
"""test_logits.py — the CPU backend's logits and greedy decoding against
llama.cpp (llama-cpp-python), the independent reference.

  (a) stories260K (all F32): logits at every position of a 32-token prompt
      within 1e-3 relative (per position: max |ours - ref| / max |ref|), and
      a 64-token greedy continuation identical to llama.cpp's.
  (b) the real model $PROMPTFS_MODEL (Qwen2.5 Q4_K_M): the same two checks,
      with the tolerance REAL_TOL justified below.
  (c) chunked prefill (pos0 > 0, chunks crossing KV page boundaries) and two
      sequences in one batch give bit-identical logits to one-shot runs,
      and batched greedy decoding gives the same tokens as decoding alone.
  (d) the other architectures, on small models with random weights written
      here with the gguf package (a real SentencePiece vocabulary from
      shared/models/vocab so llama.cpp loads them): qwen3 (per-head Q/K
      norms, key_length * heads != embedding width, tied output, F16
      tensors), qwen2 (Q/K/V biases, one KV head, tied output) and llama
      with Llama-3.1 rope_freqs and linear RoPE scaling; logits of 40
      positions within 1e-3 of llama.cpp's.  And malformed models (an
      unsupported architecture, a missing tensor, wrong shapes) are refused
      with a log line naming the architecture or tensor.

llama.cpp's greedy: argmax of its logits (lowest id on ties, as np.argmax),
evaluating one token at a time after the prompt.  Ours: tests/tool_logits,
which prefills and then decodes through the backend's sampler at
temperature 0.  Tokens come from llama.cpp's tokenizer, so this test checks
only the transformer.

Run by ctest with PROMPTFS_BUILD, PROMPTFS_SHARED, PROMPTFS_MODEL set.
"""
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np
from llama_cpp import Llama

BUILD = os.environ["PROMPTFS_BUILD"]
TOOL = os.path.join(BUILD, "tests", "tool_logits")
STORIES = os.path.join(os.environ["PROMPTFS_SHARED"], "models", "stories260K.gguf")
SPM_VOCAB = os.path.join(os.environ["PROMPTFS_SHARED"], "models", "vocab", "ggml-vocab-llama-spm.gguf")
REAL = os.environ["PROMPTFS_MODEL"]
THREADS = 2

# stories260K has F32 weights: no activation quantisation, so the only
# differences from llama.cpp are f32 summation order and the rare F16
# rounding of Q, K, V or a probability landing on the other side of a tie.
# Observed max 1.6e-4 (6.6e-4 if the probabilities are not rounded to F16
# as llama.cpp does: the mirroring is what keeps it 6x inside the bound).
STORIES_TOL = 1e-3

# The real model quantises activations (Q8_0 / Q8_K) before every matrix
# product, as llama.cpp does, and our hidden states match llama.cpp's to
# ~1e-7 relative layer by layer (checked with llama.cpp's eval callback;
# with 2 tokens even the logits are bit-identical).  But a 1-ulp difference
# in summation order now and then moves an activation across a Q8 rounding
# boundary; Qwen2.5's massive activations (|x| ~ 1800 in one channel)
# amplify such a flip ~30x per layer, so the logits end up 1-3% apart
# (observed max 2.4-2.7% as the matmul kernels changed).  llama.cpp
# disagrees with itself by as much: the same prompt evaluated in ubatches
# of 7 differs from one batch by 2.4-2.7%, token by token by 2.3%; the
# test measures and prints that.  A real bug (wrong RoPE, missing bias,
# wrong head grouping) moves logits by O(1).
REAL_TOL = 5e-2

STORY_TEXT = (
    "Once upon a time, there was a little girl named Lily. She loved to play "
    "outside in the park with her friends. One day, she saw a big red ball "
    "under a tree. She ran to get it, but a small dog got there first. "
)
CODE_TEXT = (
    "def fibonacci(n):\n"
    "    \"\"\"Return the n-th Fibonacci number, computed iteratively.\"\"\"\n"
    "    a, b = 0, 1\n"
    "    for _ in range(n):\n"
    "        a, b = b, a + b\n"
    "    return a\n\n"
    "def is_prime(n):\n"
    "    \"\"\"Return True if n is a prime number.\"\"\"\n"
)
SECOND_TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day and"

failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def rel_err(ours, ref):
    """Per position: max |ours - ref| / max |ref|."""
    return np.abs(ours - ref).max(axis=1) / np.abs(ref).max(axis=1)


def tool(model, ids, tmp, *args, batch=None, want_logits=True):
    """Runs tool_logits; returns (logits [rows][V] or None, stdout lines)."""
    tok = os.path.join(tmp, "tokens.txt")
    with open(tok, "w") as f:
        f.write(" ".join(map(str, ids)))
    cmd = [TOOL, model, "--tokens", tok, "--threads", str(THREADS)] + list(args)
    n_rows = len(ids)
    if batch is not None:
        tok2 = os.path.join(tmp, "tokens2.txt")
        with open(tok2, "w") as f:
            f.write(" ".join(map(str, batch)))
        cmd += ["--batch", tok2]
        n_rows += len(batch)
    out = os.path.join(tmp, "logits.bin")
    if want_logits:
        cmd += ["--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise RuntimeError("tool_logits failed: " + " ".join(cmd))
    logits = None
    if want_logits:
        logits = np.fromfile(out, dtype=np.float32).reshape(n_rows, -1)
    return logits, r.stdout.split("\n")


def llama_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(t)
        llm.eval([t])
    return out


def load(model, n_ctx=512, n_batch=512):
    return Llama(model_path=model, logits_all=True, n_ctx=n_ctx, n_threads=THREADS,
                 n_batch=n_batch, n_ubatch=n_batch, verbose=False)


def prompt_ids(llm, text, n):
    ids = llm.tokenize(text.encode(), add_bos=True)
    while len(ids) < n:  # repeat the text (without a second BOS) until long enough
        ids += llm.tokenize(text.encode(), add_bos=False)
    return ids[:n]


def logits_and_greedy(name, model, text, tol, tmp, llm):
    ids = prompt_ids(llm, text, 32)
    ref = llama_logits(llm, ids)
    ours, _ = tool(model, ids, tmp)
    err = rel_err(ours, ref)
    check(err.max() <= tol,
          f"{name}: logits of {len(ids)} positions, max rel err {err.max():.3g} "
          f"(mean {err.mean():.3g}, tol {tol:g})")
    same_top = int((ours.argmax(1) == ref.argmax(1)).sum())
    if tol <= 1e-3:
        check(same_top == len(ids), f"{name}: arg max at every position")
    else:  # top-2 gaps of 0.3 occur in this prompt, near the noise above: info only
        print(f"info {name}: arg max agrees at {same_top}/{len(ids)} positions")

    ref_gen = llama_greedy(llm, ids, 64)
    _, lines = tool(model, ids, tmp, "--greedy", "64", want_logits=False)
    ours_gen = [int(x) for x in lines[0].split()]
    same = ours_gen == ref_gen
    first = next((i for i, (a, b) in enumerate(zip(ours_gen, ref_gen)) if a != b), None)
    check(same, f"{name}: 64-token greedy continuation identical to llama.cpp's"
          + ("" if same else f" (first difference at {first}: ours {ours_gen[first:first+5]}, "
                             f"llama.cpp {ref_gen[first:first+5]})"))
    return ids, err.max()


def llama_self_disagreement(model, ids, ref):
    """llama.cpp against itself: the same prompt in ubatches of 7."""
    llm7 = load(model, n_batch=7)
    other = llama_logits(llm7, ids)
    del llm7
    return rel_err(other, ref).max()


def invariance(name, model, ids_a, ids_b, tmp, chunks):
    """(c): chunked and two-sequence batches against one-shot runs.

    Bit-identical by design: every op computes a token's row from that
    token's inputs alone (matrix products per activation row, attention per
    token and head over the same cached K/V), in an order that does not
    depend on how many tokens or sequences share the batch.  This is what
    lets a session's text not depend on which sessions it is batched with."""
    one_a, _ = tool(model, ids_a, tmp)
    one_b, _ = tool(model, ids_b, tmp)
    for k in chunks:
        ch, _ = tool(model, ids_a, tmp, "--chunk", str(k))
        d = np.abs(ch - one_a).max()
        check(d == 0.0, f"{name}: prefill in chunks of {k} ({len(ids_a)} tokens, crossing "
              f"page boundaries) bit-identical to one-shot (max diff {d:.3g})")
    both, _ = tool(model, ids_a, tmp, batch=ids_b)
    d = max(np.abs(both[: len(ids_a)] - one_a).max(), np.abs(both[len(ids_a):] - one_b).max())
    check(d == 0.0, f"{name}: two sequences in one batch bit-identical to each alone (max diff {d:.3g})")
    both, _ = tool(model, ids_a, tmp, "--chunk", str(chunks[0]), batch=ids_b)
    d = max(np.abs(both[: len(ids_a)] - one_a).max(), np.abs(both[len(ids_a):] - one_b).max())
    check(d == 0.0, f"{name}: two sequences, chunked, bit-identical to each alone (max diff {d:.3g})")

    _, la = tool(model, ids_a, tmp, "--greedy", "24", want_logits=False)
    _, lb = tool(model, ids_b, tmp, "--greedy", "24", want_logits=False)
    _, lab = tool(model, ids_a, tmp, "--greedy", "24", batch=ids_b, want_logits=False)
    check(lab[0] == la[0] and lab[1] == lb[0],
          f"{name}: greedy decoding of two sequences in one batch equals each alone")


def synth_model(path, arch, seed, C, H, G, D, F, L=2, f16=(), skip=(), reshape=None,
                rope_factor=None, rope_freqs=False):
    """A small model of `arch` with random weights and a real vocabulary;
    tensors whose name ends with one of `f16` are stored as F16.  No
    output.weight: the LM head is the (tied) embedding.  For the refusal
    checks: tensors named in `skip` are left out, and reshape = (name,
    shape) writes that tensor with a wrong shape."""
    rng = np.random.default_rng(seed)
    voc = gguf.GGUFReader(SPM_VOCAB)
    toks = voc.fields["tokenizer.ggml.tokens"].contents()
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(G)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    if rope_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_factor)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(voc.fields["tokenizer.ggml.scores"].contents())
    w.add_token_types(voc.fields["tokenizer.ggml.token_type"].contents())
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name, shape, scale, center=0.0):
        if name in skip:
            return
        if reshape and reshape[0] == name:
            shape = reshape[1]
        a = (center + scale * rng.standard_normal(shape)).astype(np.float32)
        w.add_tensor(name, a.astype(np.float16) if name.endswith(f16) else a)

    t("token_embd.weight", (len(toks), C), 1.0)
    t("output_norm.weight", (C,), 0.1, 1.0)
    if rope_freqs:  # Llama 3.1 style: low frequencies divided by up to 8
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, D // 2).astype(np.float32))
    for il in range(L):
        p = f"blk.{il}."
        t(p + "attn_norm.weight", (C,), 0.1, 1.0)
        t(p + "attn_q.weight", (H * D, C), C ** -0.5)
        t(p + "attn_k.weight", (G * D, C), C ** -0.5)
        t(p + "attn_v.weight", (G * D, C), C ** -0.5)
        if arch == "qwen2":
            for n, rows in (("q", H * D), ("k", G * D), ("v", G * D)):
                t(p + f"attn_{n}.bias", (rows,), 0.5)
        if arch == "qwen3":
            t(p + "attn_q_norm.weight", (D,), 0.1, 1.0)
            t(p + "attn_k_norm.weight", (D,), 0.1, 1.0)
        t(p + "attn_output.weight", (C, H * D), (H * D) ** -0.5)
        t(p + "ffn_norm.weight", (C,), 0.1, 1.0)
        t(p + "ffn_gate.weight", (F, C), C ** -0.5)
        t(p + "ffn_up.weight", (F, C), C ** -0.5)
        t(p + "ffn_down.weight", (C, F), F ** -0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return len(toks)


def other_archs(tmp):
    """(d): qwen3, qwen2 and scaled-RoPE llama (all tied) on random weights.  F32/F16 weights, so
    the tolerance is stories260K's (observed 7e-5 qwen3, 5e-5 qwen2)."""
    cases = [
        ("qwen3", dict(seed=1, C=64, H=4, G=2, D=32, F=96, f16=("ffn_up.weight", "token_embd.weight"))),
        ("qwen2", dict(seed=2, C=64, H=4, G=1, D=16, F=96)),
        ("llama", dict(seed=4, C=64, H=4, G=2, D=16, F=96, rope_factor=4.0, rope_freqs=True)),
    ]
    for arch, kw in cases:
        path = os.path.join(tmp, f"synth-{arch}.gguf")
        n_vocab = synth_model(path, arch, **kw)
        ids = [int(x) for x in np.random.default_rng(7).integers(3, n_vocab, 40)]
        llm = load(path)
        ref = llama_logits(llm, ids)
        del llm
        ours, _ = tool(path, ids, tmp)
        err = rel_err(ours, ref)
        check(err.max() <= STORIES_TOL,
              f"synthetic {arch}: logits of {len(ids)} positions, max rel err {err.max():.3g} "
              f"(tol {STORIES_TOL:g})")


def refusals(tmp):
    """Bad models are refused with a log line naming what is wrong."""
    small = dict(seed=3, C=32, H=2, G=1, D=16, F=64)
    cases = [
        ("falcon", {}, "unsupported architecture 'falcon' (supported: llama, qwen2, qwen3, gemma3, gemma2, phi3, qwen3moe)"),
        ("qwen3", dict(skip=("blk.1.attn_k_norm.weight",)),
         "tensor 'blk.1.attn_k_norm.weight' is missing"),
        ("qwen2", dict(reshape=("blk.1.attn_k.weight", (24, 32))),
         "tensor 'blk.1.attn_k.weight' has shape [32, 24, 1, 1], expected [32, 16]"),
        ("qwen2", dict(reshape=("blk.0.ffn_down.weight", (32, 48))),
         "tensor 'blk.0.ffn_down.weight' has shape [48, 32, 1, 1], expected [64, 32]"),
    ]
    for arch, kw, want in cases:
        path = os.path.join(tmp, "bad.gguf")
        synth_model(path, arch, **small, **kw)
        r = subprocess.run([TOOL, path, "1", "2"], capture_output=True, text=True)
        check(r.returncode != 0 and want in r.stderr,
              f"refused: {want}" + ("" if want in r.stderr else f" (stderr: {r.stderr.strip()!r})"))


def main():
    for path in (TOOL, STORIES, REAL, SPM_VOCAB):
        if not os.path.exists(path):
            print(f"FAIL missing {path}")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        # (a) stories260K
        llm = load(STORIES)
        logits_and_greedy("stories260K", STORIES, STORY_TEXT, STORIES_TOL, tmp, llm)
        long_a = prompt_ids(llm, STORY_TEXT, 150)
        long_b = prompt_ids(llm, SECOND_TEXT, 70)
        del llm
        # (c) on stories260K: 150 tokens = three pages, chunks straddle 64 and 128
        invariance("stories260K", STORIES, long_a, long_b, tmp, [17, 64, 1])

        # (d) qwen3 and qwen2 on random weights; malformed models
        other_archs(tmp)
        refusals(tmp)

        # (b) the real model
        llm = load(REAL)
        ids, err = logits_and_greedy("real model", REAL, CODE_TEXT, REAL_TOL, tmp, llm)
        self_err = llama_self_disagreement(REAL, ids, llama_logits(llm, ids))
        print(f"info real model: ours vs llama.cpp {err:.3g}; llama.cpp ubatch 7 vs one batch "
              f"{self_err:.3g}")
        real_a = prompt_ids(llm, CODE_TEXT, 80)
        real_b = prompt_ids(llm, SECOND_TEXT, 20)
        del llm
        # (c) on the real model: 80 tokens cross one page boundary
        invariance("real model", REAL, real_a, real_b, tmp, [30])

    print("PASS" if not failures else f"FAIL: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
