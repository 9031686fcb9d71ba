#!/usr/bin/env python3
"""ref_check.py — proves the llama.cpp reference (llama-cpp-python) before the
tests rely on it: one multi-token batch through llama_decode, on F32 weights
and on quantised ones (a Q8_0 copy of the model made with llama.cpp's own
llama_model_quantize, plus any models named after the first).

  ref_check.py MODEL.gguf [MORE.gguf ...]

Each evaluation runs in a child process, so that a crash (the GGML_NATIVE
build's AMX kernels on GCC 12 died with SIGSEGV here) is reported with the
signal and the model instead of killing the caller.  Exit 0 when every
evaluation returned finite logits, 1 otherwise, with one line per model.
"""
import math
import os
import signal
import subprocess
import sys
import tempfile

N_TOKENS = 48


def child(path):
    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=128, n_batch=64, n_ubatch=64, n_threads=2,
                logits_all=True, verbose=False)
    text = b"The quick brown fox jumps over the lazy dog. " * 8
    toks = llm.tokenize(text, add_bos=True)[:N_TOKENS]
    if len(toks) < 8:
        print(f"only {len(toks)} tokens", file=sys.stderr)
        return 1
    llm.eval(toks)  # one llama_decode of len(toks) tokens
    row = llm.scores[len(toks) - 1]
    bad = [x for x in row if not math.isfinite(float(x))]
    if bad or max(abs(float(x)) for x in row) == 0.0:
        print("logits are not finite or all zero", file=sys.stderr)
        return 1
    print(f"{len(toks)} tokens in one batch, finite logits "
          f"({llama_cpp.llama_print_system_info().decode().strip()})")
    return 0


def quantize_q8_0(src, dst):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    p.nthread = 2
    return llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)


def run_child(*args):
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       timeout=600)
    if r.returncode == 0:
        return True, r.stdout.strip().splitlines()[-1]
    if r.returncode < 0:
        why = f"killed by {signal.Signals(-r.returncode).name}"
    else:
        why = f"exit {r.returncode}"
    tail = (r.stderr.strip().splitlines() or [""])[-1]
    return False, f"{why} {tail}".strip()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    if len(sys.argv) == 4 and sys.argv[1] == "--quantize":
        rc = quantize_q8_0(sys.argv[2], sys.argv[3])
        print(f"llama_model_quantize returned {rc}")
        return 0 if rc == 0 else 1
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        models = [sys.argv[1]]
        q8 = os.path.join(tmp, "q8_0.gguf")
        ok, msg = run_child("--quantize", sys.argv[1], q8)
        if not ok:
            print(f"ref_check: llama_model_quantize to Q8_0 failed: {msg}")
            ok_all = False
        else:
            models.append(q8)
        models += sys.argv[2:]
        for m in models:
            ok, msg = run_child("--child", m)
            name = "Q8_0 copy" if m == q8 else os.path.basename(m)
            print(f"ref_check: {name}: {'ok' if ok else 'FAILED'}: {msg}")
            ok_all &= ok
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
