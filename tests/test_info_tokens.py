#!/usr/bin/env python3
"""
test_info_tokens.py — `promptfs info MODEL --tokens-containing STR` against
the gguf package's reading of the same vocabulary.

For each of the five shared/models/vocab files and stories260K, and each of
a set of strings (JSON punctuation, a space before a brace, a newline, a
multi-byte character, a word), the ids promptfs prints must be exactly the
ids whose piece contains the string, the piece computed here from the
GGUF's tokenizer.ggml.tokens / token_type with the gguf package:
  BPE (tokenizer.ggml.model gpt2): NORMAL tokens byte-level decoded (GPT-2's
      bytes_to_unicode table, inverted); USER_DEFINED ones their text;
  SPM (llama): NORMAL tokens with U+2581 as a space, BYTE tokens <0xXX> the
      byte, USER_DEFINED ones their text;
  CONTROL, UNKNOWN, UNUSED tokens: no piece (they write nothing in a reply).
The '}' list of the qwen2 vocabulary (what scripts/bench-grammar.sh biases
away) must not be empty, and bad usage (an empty string, with --all) must
exit with status 2.
Run: ctest -R info_tokens   (PROMPTFS_BIN, PROMPTFS_SHARED)
"""
import os
import subprocess
import sys

import gguf

BIN = os.environ["PROMPTFS_BIN"]
SHARED = os.environ["PROMPTFS_SHARED"]
VOCAB = os.path.join(SHARED, "models", "vocab")
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
STRINGS = ["}", "{", " {", '"', ":", "\n", "é", "the"]

failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL", msg)


def bytes_to_unicode():
    """GPT-2's byte → printable character table (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_OF = {c: b for b, c in bytes_to_unicode().items()}


def pieces(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.ggml.model"]
    model = bytes(f.parts[f.data[0]]).decode()
    toks = r.fields["tokenizer.ggml.tokens"]
    texts = [bytes(toks.parts[i]).decode("utf-8") for i in toks.data]
    tt = r.fields.get("tokenizer.ggml.token_type")
    types = [int(tt.parts[i][0]) for i in tt.data] if tt else [NORMAL] * len(texts)
    out = []
    for text, t in zip(texts, types):
        if t in (CONTROL, UNKNOWN, UNUSED):
            out.append(b"")
        elif t == USER_DEFINED:
            out.append(text.encode())
        elif model == "gpt2":
            out.append(bytes(BYTE_OF[c] for c in text) if t == NORMAL else b"")
        elif t == BYTE:
            out.append(bytes([int(text[3:5], 16)]))
        else:
            out.append(text.replace("\u2581", " ").encode())
    return model, out


def ours(path, s):
    p = subprocess.run([BIN, "info", path, "--tokens-containing", s], capture_output=True)
    if p.returncode != 0:
        fail("%s %r: exit %d: %s" % (os.path.basename(path), s, p.returncode, p.stderr.decode()[-200:]))
        return []
    return [int(x) for x in p.stdout.split()]


files = sorted(os.path.join(VOCAB, f) for f in os.listdir(VOCAB) if f.endswith(".gguf"))
files.append(os.path.join(SHARED, "models", "stories260K.gguf"))
for path in files:
    model, pcs = pieces(path)
    counts = []
    for s in STRINGS:
        want = [i for i, p in enumerate(pcs) if s.encode() in p]
        got = ours(path, s)
        if got != want:
            extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            fail("%s %r: %d ids, the gguf reading gives %d (extra %s, missing %s)" %
                 (os.path.basename(path), s, len(got), len(want), extra[:5], missing[:5]))
        counts.append("%r %d" % (s, len(got)))
        if s == "}" and "qwen2" in path and not got:
            fail("no token of the qwen2 vocabulary contains '}'")
    print("%s (%s, %d tokens): %s" % (os.path.basename(path), model, len(pcs), ", ".join(counts)))

q = os.path.join(VOCAB, "ggml-vocab-qwen2.gguf")
for args in (["--tokens-containing", ""], ["--tokens-containing", "}", "--all"]):
    rc = subprocess.run([BIN, "info", q] + args, capture_output=True).returncode
    if rc != 2:
        fail("promptfs info %s: exit %d, not 2" % (" ".join(repr(a) for a in args), rc))

print("info_tokens: %s" % ("FAIL (%d)" % failures if failures else "ok"))
sys.exit(1 if failures else 0)
