#!/usr/bin/env python3
"""test_gemma3.py — the real Gemma 3 270M (Q4_K_M, $PROMPTFS_MODEL_GEMMA3,
fetched by scripts/fetch-model.sh gemma3) on the CPU backend against
llama.cpp (llama-cpp-python) on the same file:

  - logits at every position of a 32-token prompt within GEMMA3_TOL
    (justified below), with llama.cpp's disagreement with itself printed;
  - 64-token greedy continuations: identical to llama.cpp's on the fox
    prompt; on the code prompt identical or differing first at a near tie
    (see greedy_check; it differs at step 57, where llama.cpp's own top two
    logits are 1.1% apart);
  - a prompt longer than the 512-token sliding window (600 tokens, in
    chunks of 200), so the sliding layers' window and the global layers'
    full attention both matter: logits of its last 8 positions and a
    16-token greedy continuation;
  - `promptfs info` shows the architecture and its sliding window.

Tokens come from llama.cpp's tokenizer, so this checks the transformer;
the mount test (test_mount_gemma3.sh) checks tokenizer and template.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_logits import (CODE_TEXT, SECOND_TEXT, STORY_TEXT, check, failures,  # noqa: E402
                         llama_greedy, llama_logits, load, prompt_ids, rel_err, tool)

GEMMA3 = os.environ.get("PROMPTFS_MODEL_GEMMA3") or os.path.join(
    os.environ["PROMPTFS_CACHE"], "models", "gemma-3-270m-q4_k_m.gguf")

# Gemma 3 quantises activations (Q8_0 / Q8_K) before every matrix product,
# as llama.cpp does; a single token other than BOS gives logits within
# 2.2e-7 of llama.cpp's (measured: [2063] alone).  But Gemma's residual
# stream carries very large activations (the embedding is scaled by
# sqrt(640) and BOS acts as an attention sink), so an ulp of summation
# order that moves one activation across a Q8 rounding step grows to
# several percent of the logits.  llama.cpp itself, given the same 32
# tokens in ubatches of 7 instead of one batch, differs from itself by
# 6.9% (mean 4.5%); ours vs llama.cpp measured 7.3% (mean 4.8%).  And
# ours against ours: multiplying the embedding scale by (1 + 2e-7), one
# ulp, moves the logits of [BOS, 2063] by 1.7% and 7.5%.  The
# bound is 1e-1 and the test also requires ours to stay within 1.5x
# llama.cpp's own disagreement.  A real bug (a wrong RoPE base on the
# global layers, a missing post-norm, SiLU for GELU) moves logits by O(1).
GEMMA3_TOL = 1e-1


def greedy_check(llm, ids, tmp, name, n=64, require_identical=False):
    """Our greedy continuation against llama.cpp's.  Identical, or (unless
    require_identical) the first difference falls where llama.cpp's own
    top-2 logits are closer than the noise GEMMA3_TOL measures: a near tie
    that an ulp decides (the logits at that step are then compared)."""
    ref_gen = llama_greedy(llm, ids, n)
    _, lines = tool(GEMMA3, ids, tmp, "--greedy", str(n), want_logits=False)
    ours_gen = [int(x) for x in lines[0].split()]
    first = next((i for i, (a, b) in enumerate(zip(ours_gen, ref_gen)) if a != b), None)
    if first is None:
        check(ours_gen == ref_gen, f"gemma3 {name}: {n}-token greedy continuation identical to llama.cpp's")
        return
    row = np.array(llm.scores[len(ids) - 1 + first], dtype=np.float32)
    top = np.sort(row)
    gap = (top[-1] - top[-2]) / np.abs(row).max()
    msg = (f"gemma3 {name}: {n}-token greedy continuation first differs at {first} "
           f"(ours {ours_gen[first:first + 3]}, llama.cpp {ref_gen[first:first + 3]}); llama.cpp's "
           f"top-2 gap there {gap:.3g} of max |logit|")
    if require_identical:
        check(False, msg)
    else:
        check(gap < GEMMA3_TOL, msg + f" < tol {GEMMA3_TOL:g}: a near tie")


def self_disagreement(ids, ref):
    llm7 = load(GEMMA3, n_batch=7)
    other = llama_logits(llm7, ids)
    del llm7
    return rel_err(other, ref)


def main():
    if not os.path.exists(GEMMA3):
        print(f"FAIL missing {GEMMA3} (bash scripts/fetch-model.sh gemma3)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        llm = load(GEMMA3, n_ctx=512)
        ids = prompt_ids(llm, CODE_TEXT, 32)
        ref = llama_logits(llm, ids)
        ours, _ = tool(GEMMA3, ids, tmp)
        err = rel_err(ours, ref)
        self_err = self_disagreement(ids, ref)
        check(err.max() <= GEMMA3_TOL,
              f"gemma3: logits of {len(ids)} positions, max rel err {err.max():.3g} "
              f"(mean {err.mean():.3g}, tol {GEMMA3_TOL:g})")
        check(err.max() <= 1.5 * self_err.max(),
              f"gemma3: within 1.5x llama.cpp's own disagreement (ubatch 7 vs one batch: "
              f"max {self_err.max():.3g}, mean {self_err.mean():.3g})")
        same_top = int((ours.argmax(1) == ref.argmax(1)).sum())
        print(f"info gemma3: arg max agrees at {same_top}/{len(ids)} positions")

        greedy_check(llm, ids, tmp, "code prompt")
        greedy_check(llm, prompt_ids(llm, SECOND_TEXT, 32), tmp, "fox prompt", require_identical=True)
        del llm

        # past the sliding window: 600 tokens, so the sliding layers drop the
        # first positions and the global ones keep them
        llm = load(GEMMA3, n_ctx=640)
        long_ids = prompt_ids(llm, STORY_TEXT, 600)
        ref_long = llama_logits(llm, long_ids)[-8:]
        ours_long, _ = tool(GEMMA3, long_ids, tmp, "--chunk", "200")
        err_long = rel_err(ours_long[-8:], ref_long)
        check(err_long.max() <= GEMMA3_TOL,
              f"gemma3: 600-token prompt (window 512, prefilled in chunks of 200), logits of the last "
              f"8 positions max rel err {err_long.max():.3g} (tol {GEMMA3_TOL:g})")
        check(bool((ours_long[-8:].argmax(1) == ref_long.argmax(1)).all()),
              "gemma3: 600-token prompt, arg max of the last 8 positions as llama.cpp's")
        greedy_check(llm, long_ids, tmp, "600-token prompt", n=16)
        del llm

        r = subprocess.run([os.environ["PROMPTFS_BIN"], "info", GEMMA3], capture_output=True, text=True)
        check(r.returncode == 0 and "architecture:    gemma3" in r.stdout and "sliding_window:  512" in r.stdout,
              "gemma3: promptfs info names the architecture and the 512-token window")
    print("PASS" if not failures else f"FAIL: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
