#!/usr/bin/env python3
"""gemma3_chat_ref.py MODEL N PROMPT [SYSTEM] — llama.cpp's greedy reply in
chat mode, for tests/test_mount_gemma3.sh (a helper, not a test): the
conversation rendered by jinja2 with the public Gemma 3 template
(tests/test_template.py's GEMMA3), tokenised by llama.cpp with special
tokens parsed, then greedy (arg max) until an end-of-generation token or N
tokens; the reply's bytes go to stdout."""
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_template import GEMMA3, jinja_render  # noqa: E402


def main():
    model, n, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    msgs = [{"role": "system", "content": sys.argv[4]}] if len(sys.argv) > 4 else []
    msgs.append({"role": "user", "content": prompt})
    text = jinja_render(GEMMA3, msgs, "<bos>", "<eos>")
    llm = Llama(model_path=model, n_ctx=512, n_threads=2, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    if os.environ.get("GEMMA3_REF_IDS"):  # debugging: the prompt's ids on stderr
        print(" ".join(map(str, ids)), file=sys.stderr)
    llm.eval(ids)
    out = []
    min_gap = float("inf")
    for _ in range(n):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
        t = int(np.argmax(logits))
        top = np.sort(logits)
        min_gap = min(min_gap, float((top[-1] - top[-2]) / np.abs(logits).max()))
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t):
            break
        out.append(t)
        llm.eval([t])
    sys.stdout.buffer.write(llm.detokenize(out))
    print(f"min_gap {min_gap:.4g}", file=sys.stderr)


if __name__ == "__main__":
    main()
