#!/usr/bin/env python3
"""test_sampler_ref — engine/sampler.c's knobs against llama.cpp's own samplers.

Reference: llama.cpp's sampler API (llama-cpp-python 0.3.36 through ctypes:
llama_sampler_init_logit_bias / penalties / dry / top_k / typical / top_p /
min_p / xtc / temp in a chain, llama_sampler_accept for the history,
llama_sampler_apply on a llama_token_data_array over the whole Qwen2
vocabulary, 151,936 tokens).

For each case (seeded random logits over the real vocabulary, a token
history with repeats, DRY breakers from the real vocabulary) both chains
run; the surviving token set must be identical and the final
probabilities (softmax of logit / T over the survivors) equal within 1e-5.
The raw log-probabilities promptfs reports (NAME.tokens' source) are
checked against numpy's log-softmax of the same logits within 1e-4, and the
top-K alternatives against numpy's ordering.
XTC runs at probability 1 (llama.cpp's coin uses its own RNG; at 1 both
always fire).
"""
import ctypes
import math
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import llama_cpp

BUILD = os.environ["PROMPTFS_BUILD"]
SHARED = os.environ["PROMPTFS_SHARED"]
VOCAB = os.path.join(SHARED, "models", "vocab", "ggml-vocab-qwen2.gguf")
TOOL = os.path.join(BUILD, "tests", "tool_sample")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def LOG_CB(level, text, user):
    pass


class Ref:
    def __init__(self):
        llama_cpp.llama_log_set(LOG_CB, ctypes.c_void_p(0))
        self.llm = llama_cpp.Llama(model_path=VOCAB, vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab
        self.V = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def survivors(self, c, logits):
        params = llama_cpp.llama_sampler_chain_default_params()
        ch = llama_cpp.llama_sampler_chain_init(params)
        add = lambda s: llama_cpp.llama_sampler_chain_add(ch, s)
        if c["bias"]:
            arr = (llama_cpp.llama_logit_bias * len(c["bias"]))()
            for i, (t, b) in enumerate(c["bias"]):
                arr[i].token = t
                arr[i].bias = b
            add(llama_cpp.llama_sampler_init_logit_bias(self.V, len(c["bias"]), arr))
        add(llama_cpp.llama_sampler_init_penalties(self.V, c["last_n"], c["repeat"], c["freq"], c["present"]))
        if c["dry_mult"] > 0:
            br = [b"\n", b":", b"\"", b"*"]
            brs = (ctypes.c_char_p * 4)(*br)
            add(llama_cpp.llama_sampler_init_dry(self.vocab, c["dry_mult"], c["dry_base"], c["dry_allowed"],
                                                 c["dry_last_n"], brs, 4))
        if c["top_k"] > 0:
            add(llama_cpp.llama_sampler_init_top_k(c["top_k"]))
        add(llama_cpp.llama_sampler_init_typical(c["typical"], 1))
        add(llama_cpp.llama_sampler_init_top_p(c["top_p"], 1))
        add(llama_cpp.llama_sampler_init_min_p(c["min_p"], 1))
        if c["xtc_p"] > 0:
            add(llama_cpp.llama_sampler_init_xtc(c["xtc_p"], c["xtc_t"], 1, 1234))
        add(llama_cpp.llama_sampler_init_temp(c["temp"]))
        for t in c["hist"]:
            llama_cpp.llama_sampler_accept(ch, t)
        data = (llama_cpp.llama_token_data * self.V)()
        ctypes.memmove(data, np.ascontiguousarray(
            np.rec.fromarrays([np.arange(self.V, dtype=np.int32), logits, np.zeros(self.V, np.float32)],
                              dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])).tobytes(),
            ctypes.sizeof(data))
        arr = llama_cpp.llama_token_data_array(data, self.V, -1, False)
        llama_cpp.llama_sampler_apply(ch, ctypes.byref(arr))
        n = arr.size
        out = {}
        ptr = arr.data
        for i in range(n):
            out[ptr[i].id] = ptr[i].logit
        llama_cpp.llama_sampler_free(ch)
        ls = np.array(list(out.values()), dtype=np.float64)
        finite = np.isfinite(ls)
        m = ls[finite].max() if finite.any() else 0.0
        e = np.where(finite, np.exp(ls - m), 0.0)
        q = e / e.sum()
        return {t: float(q[i]) for i, t in enumerate(out.keys())}


def case_text(c, path):
    parts = [c["temp"], c["top_k"], c["top_p"], c["min_p"], c["repeat"], c["present"], c["freq"], c["typical"],
             c["dry_mult"], c["dry_base"], c["dry_allowed"], c["xtc_p"], c["xtc_t"], c["seed"], c["draw"],
             c["n_top"]]
    rec = c["hist"][-c["last_n"]:] if c["last_n"] > 0 else []
    dry = c["hist"][-c["dry_last_n"]:] if c["dry_mult"] > 0 and c["dry_last_n"] > 0 else []
    s = " ".join(str(x) for x in parts)
    s += f"\n{len(rec)} " + " ".join(map(str, rec))
    s += f"\n{len(dry)} " + " ".join(map(str, dry))
    s += f"\n{len(c['bias'])} " + " ".join(f"{t} {b}" for t, b in c["bias"])
    return s + f"\n{path}\n"


def parse_out(lines):
    n = int(lines.pop(0))
    surv = {}
    for _ in range(max(n, 1)):
        t, q = lines.pop(0).split()
        surv[int(t)] = float(q)
    lp = float(lines.pop(0).split()[1])
    top = lines.pop(0).split()[1:]
    top = [(int(top[i]), float(top[i + 1])) for i in range(0, len(top), 2)]
    tok = int(lines.pop(0).split()[1])
    return surv, lp, top, tok


def make_cases(rng, V):
    base = dict(temp=0.8, top_k=0, top_p=1.0, min_p=0.0, repeat=1.0, present=0.0, freq=0.0, typical=1.0,
                dry_mult=0.0, dry_base=1.75, dry_allowed=2, dry_last_n=0, xtc_p=0.0, xtc_t=0.1, seed=7, draw=0,
                n_top=5, bias=[], last_n=64)
    # a history with repeats: a few tokens used often, a repeated phrase
    phrase = [rng.randrange(1000, 5000) for _ in range(6)]
    common = [rng.randrange(0, 3000) for _ in range(10)]
    hist = [rng.choice(common) for _ in range(30)] + phrase + [rng.randrange(V) for _ in range(20)] + phrase[:4]
    cases = []

    def add(name, **kw):
        c = dict(base)
        c.update(kw)
        c["hist"] = kw.get("hist", hist)
        c["name"] = name
        cases.append(c)

    add("presence", present=0.7, top_k=50)
    add("frequency", freq=0.4, top_k=50)
    add("repeat+freq+presence", repeat=1.3, freq=0.2, present=0.3, top_k=100)
    add("penalties short window", freq=1.5, present=0.5, last_n=8, top_k=40)
    add("typical 0.5", typical=0.5)
    add("typical 0.9 after top_k", typical=0.9, top_k=200)
    add("typical 0.2 peaked", typical=0.2, top_k=30, peaked=True)
    add("dry", dry_mult=0.8, dry_last_n=128, top_k=60)
    add("dry base 2 allowed 1", dry_mult=1.5, dry_base=2.0, dry_allowed=1, dry_last_n=64, top_k=60)
    add("dry short window", dry_mult=0.8, dry_last_n=12, top_k=60)
    add("xtc", xtc_p=1.0, xtc_t=0.1, top_k=40, peaked=True)
    add("xtc threshold 0.05", xtc_p=1.0, xtc_t=0.05, top_k=40, peaked=True)
    add("xtc threshold above 0.5 (off)", xtc_p=1.0, xtc_t=0.6, top_k=40, peaked=True)
    add("logit_bias", bias=[(11, 8.0), (12, -float("inf")), (500, 3.5), (151000, -2.0)], top_k=40)
    add("everything", repeat=1.1, freq=0.1, present=0.2, dry_mult=0.5, dry_last_n=64, typical=0.95, top_k=40,
        top_p=0.9, min_p=0.02, xtc_p=1.0, xtc_t=0.15, bias=[(100, 2.0), (101, -1.0)], temp=0.7, peaked=True)
    add("top_p + min_p + temperature 1.5", top_p=0.8, min_p=0.05, top_k=0, temp=1.5)
    add("logprobs 20", n_top=20, top_k=40)
    return cases


def logits_for(rng_np, V, peaked, hist):
    l = rng_np.normal(0, 2.0, V).astype(np.float32)
    if peaked:
        top = rng_np.choice(V, 8, replace=False)
        l[top] += np.float32(9.0) + rng_np.uniform(0, 2, 8).astype(np.float32)
    # make the history's tokens competitive so the penalties matter
    for t in set(hist[-20:]):
        l[t] += np.float32(6.0)
    return l


def main():
    ref = Ref()
    rng = random.Random(2026)
    rng_np = np.random.default_rng(2026)
    tmp = tempfile.mkdtemp(prefix="sampler_ref.")
    cases = make_cases(rng, ref.V)
    stdin = ""
    logits = []
    for k, c in enumerate(cases):
        l = logits_for(rng_np, ref.V, c.get("peaked", False), c["hist"])
        path = os.path.join(tmp, f"{k}.f32")
        l.tofile(path)
        logits.append(l)
        stdin += case_text(c, path)
    r = subprocess.run([TOOL, VOCAB], input=stdin.encode(), capture_output=True, timeout=600)
    if r.returncode != 0:
        print(r.stderr.decode()[-2000:])
        fail(f"tool_sample rc {r.returncode}")
        return 1
    lines = r.stdout.decode().split("\n")
    for c, l in zip(cases, logits):
        mine, lp, top, tok = parse_out(lines)
        want = ref.survivors(c, l)
        if set(mine) != set(want):
            only_m = sorted(set(mine) - set(want))[:8]
            only_w = sorted(set(want) - set(mine))[:8]
            fail(f"{c['name']}: survivors {len(mine)} vs llama.cpp {len(want)}; only ours {only_m}, only llama {only_w}")
            continue
        worst = max(abs(mine[t] - want[t]) for t in mine)
        if worst > 1e-5:
            fail(f"{c['name']}: probabilities differ by {worst:.3g}")
        # raw log-probabilities (before any step) against numpy
        l64 = l.astype(np.float64)
        lse = l64.max() + math.log(np.exp(l64 - l64.max()).sum())
        if abs(lp - (l64[tok] - lse)) > 1e-4:
            fail(f"{c['name']}: logprob of token {tok} {lp} vs numpy {l64[tok] - lse}")
        order = np.lexsort((np.arange(ref.V), -l64))[:c["n_top"]]
        if [t for t, _ in top] != [int(x) for x in order]:
            fail(f"{c['name']}: top-{c['n_top']} ids {[t for t, _ in top][:5]}... vs numpy {list(order[:5])}...")
        elif max(abs(v - (l64[t] - lse)) for t, v in top) > 1e-4:
            fail(f"{c['name']}: top-K logprobs off by more than 1e-4")
        if tok not in mine:
            fail(f"{c['name']}: drew token {tok} outside the survivors")
        print(f"  {c['name']}: {len(mine)} survivors, identical to llama.cpp (max |dq| {worst:.2g}); "
              f"drew {tok}, logprob {lp:.4f}")
    print(f"{len(cases)} cases; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
