#!/usr/bin/env python3
"""bench_llamacpp.py — llama.cpp's CPU speed on a model, for the side-by-side
benchmark with `promptfs bench` (same model, same thread count, same run).

  bench_llamacpp.py MODEL.gguf [--threads 2] [--pp 128] [--tg 64] [--reps 2] [--json]

Prompt processing: one llama_decode of --pp tokens (one batch, as promptfs
prefills in chunks of up to 512).  Generation: --tg tokens evaluated one at
a time after that prompt.  Token ids do not change the timing; they come
from llama.cpp's tokenizer on a fixed English text, repeated.  One warm-up
run, then the best of --reps (the machine is shared; best-of filters
interference).  Prints tokens per second:

  llama.cpp pp128: 101.3 tok/s
  llama.cpp tg64: 55.2 tok/s
"""
import argparse
import json
import sys
import time

from llama_cpp import Llama

TEXT = ("The history of computing is a story of people and machines. Early "
        "calculators were mechanical; later, electronic computers filled rooms. ")


def run_once(llm, prompt, n_tg):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for i in range(n_tg):
        llm.eval([prompt[i % len(prompt)]])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pp", type=int, default=128, help="prompt tokens")
    ap.add_argument("--tg", type=int, default=64, help="generated tokens")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    a = ap.parse_args()

    n_batch = max(a.pp, 1)
    llm = Llama(model_path=a.model, n_ctx=a.pp + a.tg + 16, n_batch=n_batch, n_ubatch=n_batch,
                n_threads=a.threads, n_threads_batch=a.threads, logits_all=False, verbose=False)
    prompt = llm.tokenize(TEXT.encode(), add_bos=True)
    while len(prompt) < a.pp:
        prompt += llm.tokenize(TEXT.encode(), add_bos=False)
    prompt = prompt[: a.pp]

    run_once(llm, prompt[: min(16, a.pp)], min(4, a.tg))  # warm-up: page in weights
    pp_s, tg_s = float("inf"), float("inf")
    for _ in range(max(a.reps, 1)):
        p, g = run_once(llm, prompt, a.tg)
        pp_s, tg_s = min(pp_s, p), min(tg_s, g)
    res = {"model": a.model, "threads": a.threads, "pp": a.pp, "tg": a.tg,
           "pp_tok_s": a.pp / pp_s, "tg_tok_s": a.tg / tg_s if a.tg else 0.0}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"llama.cpp pp{a.pp}: {res['pp_tok_s']:.1f} tok/s")
        print(f"llama.cpp tg{a.tg}: {res['tg_tok_s']:.1f} tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
