#!/usr/bin/env python3
"""test_arch.py — the architectures added after llama/qwen2/qwen3, on small
random-weight models written here with the gguf package (the real
SentencePiece vocabulary of shared/models/vocab/ggml-vocab-llama-spm.gguf,
so llama.cpp loads them), against llama.cpp (llama-cpp-python): logits at
40 positions within 1e-3 relative (per position: max |ours - ref| /
max |ref|).  F32/F16 weights, so the tolerance is stories260K's
(tests/test_logits.py).

  gemma2  soft-capped attention scores (cap 1.5) and logits (cap 2; caps this
          small so that they change the result), sliding window
          of 16 on the even layers (40 tokens: the window matters), pre- and
          post-norms, GELU-gated FFN, embedding x sqrt(C), tied output
  gemma3  per-head Q/K norms, window 8 on 5 of 6 layers with RoPE base
          10000 against 1e6 on the global one, no soft-caps
  qwen3moe  8 experts, 3 per token (router softmax, top-k, renormalised),
          experts narrower than feed_forward_length, Q/K norms
  llama   Mixtral-style: ffn_*_exps tensors, 4 experts, 2 per token
  phi3    fused QKV and gate/up tensors, LongRoPE (short and long factor
          tensors, rope.scaling.attn_factor), with the phi-3 vocabulary; once
          with the short factors in use, once with the long
And malformed or unsupported files are refused with a log line naming the
key or tensor: an unknown tensor, a RoPE scaling type we do not implement,
a gemma3 file with attention soft-capping.

Run by ctest (PROMPTFS_BUILD, PROMPTFS_SHARED).  The real Gemma 3 model is
tests/test_gemma3.py's.
"""
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_logits import (SPM_VOCAB, STORIES_TOL, TOOL, check, failures, llama_greedy,  # noqa: E402
                         llama_logits, load, rel_err, tool)


PHI3_VOCAB = os.path.join(os.path.dirname(SPM_VOCAB), "ggml-vocab-phi-3.gguf")


def write_model(path, arch, seed, C, H, G, D, F, L, keys=(), extra_tensors=(), f16=(),
                layer_tensors=None, vocab=SPM_VOCAB):
    """A model of `arch` with random weights: the common keys, `keys`
    (name → (writer method, value)), a tied LM head, and per layer the
    tensors layer_tensors(il) lists as (name, shape, scale, center)."""
    rng = np.random.default_rng(seed)
    voc = gguf.GGUFReader(vocab)
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
    for k, (kind, v) in keys:
        getattr(w, "add_" + kind)(k, v)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(voc.fields["tokenizer.ggml.scores"].contents())
    w.add_token_types(voc.fields["tokenizer.ggml.token_type"].contents())
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name, shape, scale, center=0.0):
        a = (center + scale * rng.standard_normal(shape)).astype(np.float32)
        w.add_tensor(name, a.astype(np.float16) if name.endswith(f16) else a)

    t("token_embd.weight", (len(toks), C), C ** -0.5)
    t("output_norm.weight", (C,), 0.1, 1.0)
    for spec in extra_tensors:
        if len(spec) == 2:  # (name, array)
            w.add_tensor(*spec)
        else:
            t(*spec)
    for il in range(L):
        for spec in layer_tensors(il):
            t(f"blk.{il}." + spec[0], *spec[1:])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return len(toks)


def gemma_layer(C, H, G, D, F, qk_norm):
    def f(il):
        ts = [("attn_norm.weight", (C,), 0.1, 1.0),
              ("attn_q.weight", (H * D, C), C ** -0.5),
              ("attn_k.weight", (G * D, C), C ** -0.5),
              ("attn_v.weight", (G * D, C), C ** -0.5),
              ("attn_output.weight", (C, H * D), (H * D) ** -0.5),
              ("post_attention_norm.weight", (C,), 0.1, 1.0),
              ("ffn_norm.weight", (C,), 0.1, 1.0),
              ("ffn_gate.weight", (F, C), C ** -0.5),
              ("ffn_up.weight", (F, C), C ** -0.5),
              ("ffn_down.weight", (C, F), F ** -0.5),
              ("post_ffw_norm.weight", (C,), 0.1, 1.0)]
        if qk_norm:
            ts += [("attn_q_norm.weight", (D,), 0.1, 1.0), ("attn_k_norm.weight", (D,), 0.1, 1.0)]
        return ts
    return f


def phi3_layer(C, H, G, D, F):
    def f(il):
        return [("attn_norm.weight", (C,), 0.1, 1.0),
                ("attn_qkv.weight", ((H + 2 * G) * D, C), C ** -0.5),
                ("attn_output.weight", (C, H * D), (H * D) ** -0.5),
                ("ffn_norm.weight", (C,), 0.1, 1.0),
                ("ffn_up.weight", (2 * F, C), C ** -0.5),
                ("ffn_down.weight", (C, F), F ** -0.5)]
    return f


def moe_layer(C, H, G, D, E, Fe, qk_norm):
    def f(il):
        ts = [("attn_norm.weight", (C,), 0.1, 1.0),
              ("attn_q.weight", (H * D, C), C ** -0.5),
              ("attn_k.weight", (G * D, C), C ** -0.5),
              ("attn_v.weight", (G * D, C), C ** -0.5),
              ("attn_output.weight", (C, H * D), (H * D) ** -0.5),
              ("ffn_norm.weight", (C,), 0.1, 1.0),
              ("ffn_gate_inp.weight", (E, C), 2.0 * C ** -0.5),
              ("ffn_gate_exps.weight", (E, Fe, C), C ** -0.5),
              ("ffn_up_exps.weight", (E, Fe, C), C ** -0.5),
              ("ffn_down_exps.weight", (E, C, Fe), Fe ** -0.5)]
        if qk_norm:
            ts += [("attn_q_norm.weight", (D,), 0.1, 1.0), ("attn_k_norm.weight", (D,), 0.1, 1.0)]
        return ts
    return f


def moe_case(arch, seed, E, K):
    m = dict(C=64, H=4, G=2, D=16, F=80, L=2)
    keys = [(f"{arch}.expert_count", ("uint32", E)), (f"{arch}.expert_used_count", ("uint32", K))]
    Fe = m["F"]
    if arch == "qwen3moe":  # its experts are narrower than the (unused) dense width
        Fe = 48
        keys.append(("qwen3moe.expert_feed_forward_length", ("uint32", Fe)))
    return dict(seed=seed, **m, keys=keys, f16=("ffn_up_exps.weight",),
                layer_tensors=moe_layer(m["C"], m["H"], m["G"], m["D"], E, Fe, arch == "qwen3moe"))


def phi3_case(seed, orig_ctx):
    """Fused QKV and gate/up, LongRoPE: short and long factor tensors and an
    attn_factor; llama.cpp (context 512) and ours (context 40) take the long
    factors when the original context is shorter than both, else the short."""
    p3 = dict(C=96, H=4, G=2, D=24, F=128, L=2)
    rng = np.random.default_rng(seed + 100)
    return dict(seed=seed, **p3, vocab=PHI3_VOCAB,
                keys=[("phi3.rope.scaling.attn_factor", ("float32", 1.19)),
                      ("phi3.rope.scaling.original_context_length", ("uint32", orig_ctx))],
                extra_tensors=[("rope_factors_long.weight", rng.uniform(1.0, 40.0, 12).astype(np.float32)),
                               ("rope_factors_short.weight", rng.uniform(1.0, 3.0, 12).astype(np.float32))],
                layer_tensors=phi3_layer(**{k: p3[k] for k in "CHGDF"}))


def cases():
    g2 = dict(C=64, H=4, G=2, D=16, F=96, L=4)
    g3 = dict(C=64, H=4, G=1, D=32, F=128, L=6)
    return [
        ("gemma2", dict(seed=11, **g2, f16=("ffn_up.weight",),
                        keys=[("gemma2.attention.sliding_window", ("uint32", 16)),
                              ("gemma2.attn_logit_softcapping", ("float32", 1.5)),
                              ("gemma2.final_logit_softcapping", ("float32", 2.0))],
                        layer_tensors=gemma_layer(qk_norm=False, **{k: g2[k] for k in "CHGDF"}))),
        ("gemma3", dict(seed=12, **g3,
                        keys=[("gemma3.attention.sliding_window", ("uint32", 8))],
                        layer_tensors=gemma_layer(qk_norm=True, **{k: g3[k] for k in "CHGDF"}))),
        ("phi3", phi3_case(13, 4096)),
        ("phi3", phi3_case(14, 16)),
        ("qwen3moe", moe_case("qwen3moe", 15, E=8, K=3)),
        ("llama", moe_case("llama", 16, E=4, K=2)),  # Mixtral-style: llama with ffn_*_exps
    ]


def logits_vs_llama(tmp):
    for arch, kw in cases():
        path = os.path.join(tmp, f"synth-{arch}-{kw['seed']}.gguf")
        label = arch + (f" (original context {kw['keys'][1][1][1]})" if arch == "phi3" else
                        " (Mixtral-style MoE)" if arch == "llama" else "")
        n_vocab = write_model(path, arch, **kw)
        ids = [int(x) for x in np.random.default_rng(7).integers(3, n_vocab, 40)]
        llm = load(path)
        ref = llama_logits(llm, ids)
        del llm
        ours, _ = tool(path, ids, tmp)
        err = rel_err(ours, ref)
        check(err.max() <= STORIES_TOL,
              f"synthetic {label}: logits of {len(ids)} positions, max rel err {err.max():.3g} "
              f"(tol {STORIES_TOL:g})")
        chunked, _ = tool(path, ids, tmp, "--chunk", "7")
        check(np.abs(chunked - ours).max() == 0.0,
              f"synthetic {label}: prefill in chunks of 7 bit-identical to one-shot")
        if "expert_count" in kw["keys"][0][0]:  # experts shared by two sequences' rows
            other = [int(x) for x in np.random.default_rng(8).integers(3, n_vocab, 23)]
            alone, _ = tool(path, other, tmp)
            both, _ = tool(path, ids, tmp, "--chunk", "5", batch=other)
            d = max(np.abs(both[:len(ids)] - ours).max(), np.abs(both[len(ids):] - alone).max())
            check(d == 0.0, f"synthetic {label}: two sequences in one batch (chunks of 5) "
                  f"bit-identical to each alone (max diff {d:.3g})")


def window_pages(tmp):
    """Sliding-window layers keep only their window (backend.h, engine/
    window.c): with tool_logits --window-ring their KV lives in the fewest
    window pages a window and a chunk span, reused as a ring, so the pages
    that left the window are overwritten.  Windows of 100 (gemma3) and 80
    (gemma2, with its real soft-caps 50 and 30) over 400 positions (7 pages): the logits equal
    llama.cpp's within the tolerance, and the ring runs (chunks of 1 and 32)
    are bit-identical to the one-shot prefill; a 48-token greedy
    continuation through the ring equals llama.cpp's."""
    g2 = dict(C=64, H=4, G=2, D=16, F=96, L=4)
    g3 = dict(C=64, H=4, G=1, D=32, F=128, L=6)
    for arch, kw in [
        ("gemma3", dict(seed=21, **g3, keys=[("gemma3.attention.sliding_window", ("uint32", 100))],
                        layer_tensors=gemma_layer(qk_norm=True, **{k: g3[k] for k in "CHGDF"}))),
        ("gemma2", dict(seed=22, **g2, f16=("ffn_up.weight",),
                        keys=[("gemma2.attention.sliding_window", ("uint32", 80)),
                              ("gemma2.attn_logit_softcapping", ("float32", 50.0)),
                              ("gemma2.final_logit_softcapping", ("float32", 30.0))],
                        layer_tensors=gemma_layer(qk_norm=False, **{k: g2[k] for k in "CHGDF"}))),
    ]:
        path = os.path.join(tmp, f"window-{arch}.gguf")
        n_vocab = write_model(path, arch, **kw)
        ids = [int(x) for x in np.random.default_rng(9).integers(3, n_vocab, 400)]
        llm = load(path, n_ctx=1024)
        ref = llama_logits(llm, ids)
        ref_greedy = llama_greedy(llm, ids[:300], 48)
        del llm
        ours, _ = tool(path, ids, tmp)
        err = rel_err(ours, ref)
        check(err.max() <= STORIES_TOL, f"{arch} window {kw['keys'][0][1][1]}: logits of 400 positions, "
              f"max rel err {err.max():.3g} (tol {STORIES_TOL:g})")
        for chunk in ("1", "32"):
            ring, _ = tool(path, ids, tmp, "--chunk", chunk, "--window-ring")
            d = np.abs(ring - ours).max()
            check(d == 0.0, f"{arch}: window pages reused as a ring (chunks of {chunk}) bit-identical "
                  f"to the one-shot prefill (max diff {d:.3g})")
        _, out = tool(path, ids[:300], tmp, "--chunk", "16", "--window-ring", "--greedy", "48", want_logits=False)
        got = [int(x) for x in [ln for ln in out if ln.strip()][-1].split()]
        check(got == ref_greedy, f"{arch}: 48 greedy tokens after 300 through the window ring equal "
              f"llama.cpp's" + ("" if got == ref_greedy else f" ({got} vs {ref_greedy})"))


def refusals(tmp):
    g3 = dict(C=32, H=2, G=1, D=16, F=64, L=2)
    base = gemma_layer(qk_norm=True, **{k: g3[k] for k in "CHGDF"})
    bad = [
        ("an unused tensor", dict(extra_tensors=[("dense_2_out.weight", (32, 32), 0.1)]),
         "tensor 'dense_2_out.weight' is not used by architecture 'gemma3'"),
        ("yarn RoPE scaling", dict(keys=[("gemma3.rope.scaling.type", ("string", "yarn"))]),
         "gemma3.rope.scaling.type = 'yarn' is not supported"),
        ("attention soft-capping on gemma3", dict(keys=[("gemma3.attn_logit_softcapping", ("float32", 50.0))]),
         "gemma3.attn_logit_softcapping = 50: gemma3 has no attention soft-capping"),
        ("a shared expert on qwen3moe", None, "tensor 'blk.0.ffn_up_shexp.weight' is not used by architecture 'qwen3moe'"),
        ("a missing post-norm", dict(layer_tensors=lambda il: [x for x in base(il) if x[0] != "post_ffw_norm.weight"]),
         "tensor 'blk.0.post_ffw_norm.weight' is missing"),
    ]
    for what, kw, want in bad:
        path = os.path.join(tmp, "bad.gguf")
        if kw is None:  # qwen3moe with a Qwen2-MoE-style shared expert
            arch, args = "qwen3moe", moe_case("qwen3moe", 3, E=4, K=2)
            layer = args["layer_tensors"]
            args["layer_tensors"] = lambda il: layer(il) + [("ffn_up_shexp.weight", (80, 64), 0.1)]
        else:
            arch, args = "gemma3", dict(seed=3, **g3, layer_tensors=base)
            args.update(kw)
        write_model(path, arch, **args)
        r = subprocess.run([TOOL, path, "1", "2"], capture_output=True, text=True)
        check(r.returncode != 0 and want in r.stderr,
              f"refused ({what}): {want}" + ("" if want in r.stderr else f" (stderr: {r.stderr.strip()!r})"))


def synth_moe_preset(tmp):
    """`promptfs synth --preset mixtral-small-q4_k_m`: loads in llama.cpp's
    gguf package with ffn_*_exps of 8 experts, and `promptfs info` shows the
    experts and the active parameters, counted here from the file (every
    tensor's elements, less 6/8 of the expert tensors')."""
    path = os.path.join(tmp, "mixtral-small.gguf")
    r = subprocess.run([os.environ["PROMPTFS_BIN"], "synth", "--preset", "mixtral-small-q4_k_m", "-o", path,
                        "-t", "2"], capture_output=True, text=True)
    check(r.returncode == 0, "synth --preset mixtral-small-q4_k_m" + ("" if r.returncode == 0 else f": {r.stderr}"))
    if r.returncode:
        return
    rd = gguf.GGUFReader(path)
    total = sum(int(t.n_elements) for t in rd.tensors)
    exps = sum(int(t.n_elements) for t in rd.tensors if "_exps." in t.name)
    E = int(rd.fields["llama.expert_count"].contents())
    K = int(rd.fields["llama.expert_used_count"].contents())
    active = total - exps // E * (E - K)
    r = subprocess.run([os.environ["PROMPTFS_BIN"], "info", path], capture_output=True, text=True)
    want = [f"parameters:      {total} ", f"experts:         {E}, {K} used per token", f"active_params:   {active} "]
    missing = [w for w in want if w not in r.stdout]
    check(r.returncode == 0 and not missing and E == 8 and K == 2,
          f"promptfs info on the Mixtral-shaped preset: {total} parameters, {E} experts, {K} used, "
          f"{active} active" + ("" if not missing else f" (missing {missing} in {r.stdout!r})"))
    os.unlink(path)


def main():
    for path in (TOOL, SPM_VOCAB):
        if not os.path.exists(path):
            print(f"FAIL missing {path}")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        logits_vs_llama(tmp)
        window_pages(tmp)
        refusals(tmp)
        synth_moe_preset(tmp)
    print("PASS" if not failures else f"FAIL: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
