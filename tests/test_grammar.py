#!/usr/bin/env python3
"""test_grammar — engine/grammar.* against llama.cpp's own grammar engine.

Reference: llama.cpp's grammar sampler (llama-cpp-python 0.3.36,
llama_sampler_init_grammar on the real Qwen2 vocabulary, vocab_only).

1. Every .gbnf of llama.cpp's grammars/ folder (copied in tests/grammars/)
   parses, and on a corpus per grammar (hand-written sentences, all their
   prefixes, seeded single-byte mutations, insertions and deletions, random
   junk) both engines agree byte for byte: the index of the first byte the
   grammar rejects (each byte fed as its single-byte token, so UTF-8
   characters arrive split as they do from a model) and whether the whole
   string is a complete sentence (EOS allowed).
2. Grammars llama.cpp refuses (syntax errors, undefined rules, no root,
   left recursion) are refused by ours, with line:column in the log for the
   syntax errors; small grammars that exercise every construct ({m,n},
   classes, negation, escapes, Unicode, nesting) agree on their corpus.
3. The vocabulary mask (trie walk) allows exactly the tokens llama.cpp's
   llama_sampler_apply leaves finite, over all 151,936 tokens, after
   several JSON prefixes (control tokens excluded: llama.cpp matches their
   rendered text "<|im_start|>" against the grammar, promptfs never lets a
   control token through a grammar; EOG tokens compared separately).
"""
import ctypes
import math
import os
import random
import subprocess
import sys

import llama_cpp

SRC = os.environ["PROMPTFS_SRC"]
BUILD = os.environ["PROMPTFS_BUILD"]
SHARED = os.environ["PROMPTFS_SHARED"]
TOOL = os.path.join(BUILD, "tests", "tool_grammar")
VOCAB = os.path.join(SHARED, "models", "vocab", "ggml-vocab-qwen2.gguf")
GDIR = os.path.join(SRC, "tests", "grammars")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


class Ref:
    def __init__(self):
        llama_cpp.llama_log_set(LOG_CB, ctypes.c_void_p(0))
        self.llm = llama_cpp.Llama(model_path=VOCAB, vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        buf = ctypes.create_string_buffer(256)
        self.byte_tok = {}
        self.control = set()
        self.eog = set()
        for t in range(self.n_vocab):
            if llama_cpp.llama_vocab_is_control(self.vocab, t):
                self.control.add(t)
            if llama_cpp.llama_vocab_is_eog(self.vocab, t):
                self.eog.add(t)
            n = llama_cpp.llama_token_to_piece(self.vocab, t, buf, 256, 0, False)
            if n == 1 and buf.raw[0] not in self.byte_tok:
                self.byte_tok[buf.raw[0]] = t
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        if self.eos < 0:
            self.eos = llama_cpp.llama_vocab_eot(self.vocab)
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_arr = llama_cpp.llama_token_data_array(self.one, 1, -1, False)

    def grammar(self, text):
        s = llama_cpp.llama_sampler_init_grammar(self.vocab, text, b"root")
        return s if s else None

    def allowed(self, smpl, tok):
        self.one[0].id = tok
        self.one[0].logit = 1.0
        self.one[0].p = 0.0
        self.one_arr.size = 1
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(self.one_arr))
        return not math.isinf(self.one[0].logit)

    def check(self, smpl, data):
        """(index of first rejected byte or -1, complete)"""
        llama_cpp.llama_sampler_reset(smpl)
        for i, b in enumerate(data):
            tok = self.byte_tok.get(b)
            if tok is None or not self.allowed(smpl, tok):
                return (i, 0)
            llama_cpp.llama_sampler_accept(smpl, tok)
        return (-1, 1 if self.allowed(smpl, self.eos) else 0)

    def mask(self, smpl, prefix):
        llama_cpp.llama_sampler_reset(smpl)
        for b in prefix:
            llama_cpp.llama_sampler_accept(smpl, self.byte_tok[b])
        V = self.n_vocab
        data = (llama_cpp.llama_token_data * V)()
        for i in range(V):
            data[i].id = i
            data[i].logit = 1.0
        arr = llama_cpp.llama_token_data_array(data, V, -1, False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
        return {data[i].id for i in range(V) if not math.isinf(data[i].logit)}


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def LOG_CB(level, text, user):
    pass


def record_stream(strings):
    out = bytearray()
    for s in strings:
        out += b"%d\n" % len(s) + s
    return bytes(out)


def ours_check(path, strings):
    r = subprocess.run([TOOL, "check", path], input=record_stream(strings), capture_output=True, timeout=300)
    if r.returncode != 0:
        fail(f"tool_grammar check {path}: rc {r.returncode}: {r.stderr.decode()[-300:]}")
        return None, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    if lines[0] == "REFUSED":
        return "REFUSED", r.stderr.decode()
    return [tuple(int(x) for x in ln.split()) for ln in lines if ln], r.stderr.decode()


SENTENCES = {
    "arithmetic.gbnf": ["1+2=3\n", "x = (a+b)*c\n", "a=b\nc1 = ( d ) / 2\n", "foo_1*7-3 = 4\n"],
    "c.gbnf": ["int main(){return 0;}", "float f(int x){x = x+1;while(x<3){x = x*2;}}",
               "char c(){// hi\n/* a * b */if(a==b){c = 1;}else{d(1, 2);}}",
               "int g(){for(int i = 0; i<10; i = i+1){h();}}"],
    "chess.gbnf": ["1. e4 e5\n2. Nf3 Nc6\n", "1. d4 d5\n2. c4 dxc4\n3. O-O O-O-O\n", "1. e4 e5\n12. Qxf7# Ke7\n",
                   "1. a8=Q+ h1=N\n2. Rae1 Nbd7\n"],
    "english.gbnf": ["Hello, world!", "The quick brown fox.\nJumps over 2 lazy dogs?", "a\tb c"],
    "japanese.gbnf": ["こんにちは", "カタカナ 漢字\nひらがな、。", "日本語"],
    "json.gbnf": ['{"a": 1, "b": [true, false, null], "c": {"d": "e\\n\\u00e9"}}',
                  '{}', '{"x":-0.5e+3}', '{ "k" : "v" }\n', '{"nested": [[], {}, [1, 2.25, "s"]]}',
                  '{"ü": "日本", "e": 12345678901234567}'],
    "json_arr.gbnf": ['[\n1,\n"two",\n{"three": 3}]', '[\n]', '[\n  [1, 2],\n  {"a": null}]'],
    "list.gbnf": ["- one\n- two\n", "- ünïcödé ☃\n", "- a\n- b\n- c\n"],
}

JUNK = [b"", b" ", b"\n", b"\x00", b"\xff", b"\xc3", b"\xe2\x98", b"{", b"[", b"\"", b"- ", b"1. ", b"abc",
        "é".encode(), "日".encode(), b"\xed\xa0\x80"]


def corpus(name, rng):
    out = []
    for s in SENTENCES.get(name, []):
        b = s.encode()
        for k in range(len(b) + 1):
            out.append(b[:k])
        for _ in range(40):
            m = bytearray(b)
            op = rng.randrange(3)
            i = rng.randrange(len(m) + (op == 1))
            if op == 0 and m:
                m[i] = rng.choice(b" \n\t\"{}[]:,.-+=()*/#abcxyz0123456789\xc3\xa9\x80")
            elif op == 1:
                m.insert(i, rng.choice(b" \n\t\"{}[],0aZ\xe6"))
            elif m:
                del m[i]
            out.append(bytes(m))
    out += JUNK
    for _ in range(30):
        out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
    return out


def compare(ref, name, text, strings):
    path = os.path.join(GDIR, name) if text is None else write_tmp(name, text)
    if text is None:
        text = open(path, "rb").read()
    smpl = ref.grammar(text)
    got, log = ours_check(path, strings)
    if got is None:
        return 0
    if smpl is None:
        if got != "REFUSED":
            fail(f"{name}: llama.cpp refuses the grammar, promptfs accepts it")
        return 0
    if got == "REFUSED":
        fail(f"{name}: promptfs refuses a grammar llama.cpp accepts: {log.strip()[-300:]}")
        llama_cpp.llama_sampler_free(smpl)
        return 0
    n_ok = n_complete = n_rejected = 0
    for s, mine in zip(strings, got):
        want = ref.check(smpl, s)
        if mine != want:
            fail(f"{name}: {s!r}: promptfs {mine}, llama.cpp {want}")
        else:
            n_ok += 1
            n_complete += want == (-1, 1)
            n_rejected += want[0] >= 0
    print(f"  {name}: {n_ok}/{len(strings)} strings agree ({n_complete} complete sentences, "
          f"{n_rejected} rejected, the rest prefixes)")
    if len(got) != len(strings):
        fail(f"{name}: {len(got)} answers for {len(strings)} strings")
    llama_cpp.llama_sampler_free(smpl)
    return n_ok


TMP = os.path.join(BUILD, "tests", "grammar_tmp")


def write_tmp(name, text):
    os.makedirs(TMP, exist_ok=True)
    p = os.path.join(TMP, name)
    with open(p, "wb") as f:
        f.write(text)
    return p


REFUSED = {
    "syntax-missing-eq.gbnf": (b'root ::= "a"\nfoo "b"\n', "2:5"),
    "syntax-unterminated.gbnf": (b'root ::= "abc\n', None),
    "syntax-bad-escape.gbnf": (b'root ::= "a\\q"\n', "1:12"),
    "syntax-bad-class.gbnf": (b'root ::= [a-\n', None),
    "syntax-paren.gbnf": (b'root ::= ("a" "b"\n', None),
    "syntax-rep.gbnf": (b'root ::= * "a"\n', "1:10"),
    "syntax-braces.gbnf": (b'root ::= "a"{2,x}\n', "1:16"),
    "syntax-hex.gbnf": (b'root ::= "\\x4"\n', None),
    "undefined.gbnf": (b'root ::= foo "a"\n', None),
    "no-root.gbnf": (b'start ::= "a"\n', None),
    "empty.gbnf": (b'# nothing\n', None),
    "left-rec.gbnf": (b'root ::= root "a" | "b"\n', None),
    "left-rec-indirect.gbnf": (b'root ::= x\nx ::= y "a"\ny ::= "c"? x | "b"\n', None),
    "too-many.gbnf": (b'root ::= "a"{3000}\n', None),
}

CONSTRUCTS = {
    "reps.gbnf": (b'root ::= "a"{2,4} "b"{3} "c"{1,} [0-9]? "d"*\n',
                  ["aabbbc", "aaaabbbccc7dd", "abbbc", "aaaaabbbc", "aabbbc77", "aabbbcd"]),
    "classes.gbnf": (b'root ::= [^a-c\\n] [\\x41-\\x43\\u00e9] [\\-\\]\\\\] . [\\U0001F600-\\U0001F64F]\n',
                     ["dA-x\U0001F600", "aA-x\U0001F600", "zé]é\U0001F64F", "z\\\\\\x\U0001F650", "\nA-x\U0001F600"]),
    "nested.gbnf": (b'root ::= ( "x" ( "y" | "z" )+ ( "," ws )? )* "!"\nws ::= [ \\t]*\n',
                    ["!", "xy!", "xyzzy, xz\t!", "xx!", "x!", "xy,!"]),
    "unicode.gbnf": ('root ::= "ü" [α-ω]+ "☃"? "日本"\n'.encode(), ["üαω☃日本", "üβ日本", "u日本", "üα☃☃日本"]),
    "crlf.gbnf": (b'root ::= a b\r\na ::= "a" # comment\r\nb ::= "b"\r\n', ["ab", "a", "ba"]),
    "empty-alt.gbnf": (b'root ::= "a" x "b"\nx ::= | "c" | "dd"\n', ["ab", "acb", "addb", "adb", "accb"]),
}


def check_refusals(ref):
    for name, (text, pos) in REFUSED.items():
        path = write_tmp(name, text)
        smpl = ref.grammar(text)
        got, log = ours_check(path, [])
        if smpl is not None:
            llama_cpp.llama_sampler_free(smpl)
            fail(f"{name}: llama.cpp accepts it (test grammar wrong)")
            continue
        if got != "REFUSED":
            fail(f"{name}: promptfs accepts a grammar llama.cpp refuses")
        elif pos and f"{name}:{pos}:" not in log:
            fail(f"{name}: log does not name line:column {pos}: {log.strip()}")
        else:
            print(f"  refused {name}: {log.strip().splitlines()[-1] if log.strip() else ''}")


def check_masks(ref):
    path = os.path.join(GDIR, "json.gbnf")
    prefixes = [b"", b"{", b'{"', b'{"a', b'{"a":', b'{"a": 1', b'{"a": tr', b'{"a": "\xc3', b'{"a": [1, 2]}',
                b'{"a": -', b'{"a": "x\\', b'{"a": "x\\u00']
    r = subprocess.run([TOOL, "mask", VOCAB, path], input=record_stream(prefixes), capture_output=True,
                       timeout=600)
    if r.returncode != 0:
        fail(f"tool_grammar mask: rc {r.returncode}: {r.stderr.decode()[-300:]}")
        return
    lines = r.stdout.decode().split("\n")
    smpl = ref.grammar(open(path, "rb").read())
    for k, p in enumerate(prefixes):
        trie = {int(x) for x in lines[2 * k].split()}
        each = {int(x) for x in lines[2 * k + 1].split()}
        want = ref.mask(smpl, p)
        if trie != each:
            fail(f"mask {p!r}: trie walk and per-token check differ in {len(trie ^ each)} tokens")
        text_want = {t for t in want if t not in ref.control and t not in ref.eog}
        text_mine = {t for t in trie if t not in ref.eog}
        if text_mine != text_want:
            d = sorted(text_mine ^ text_want)[:10]
            fail(f"mask {p!r}: {len(text_mine)} allowed vs llama.cpp {len(text_want)}; differ e.g. {d}")
        eog_want = {t for t in want if t in ref.eog}
        eog_mine = {t for t in trie if t in ref.eog}
        if eog_mine != eog_want:
            fail(f"mask {p!r}: EOG allowed {sorted(eog_mine)} vs llama.cpp {sorted(eog_want)}")
        print(f"  mask after {p!r}: {len(text_mine)} text tokens allowed (llama.cpp {len(text_want)}), "
              f"EOG {len(eog_mine)}")
    llama_cpp.llama_sampler_free(smpl)


def main():
    ref = Ref()
    rng = random.Random(12)
    total = 0
    names = sorted(f for f in os.listdir(GDIR) if f.endswith(".gbnf"))
    if len(names) < 8:
        fail(f"only {len(names)} grammars in {GDIR}")
    for name in names:
        strings = corpus(name, rng)
        n = compare(ref, name, None, strings)
        total += n
    for name, (text, strings) in CONSTRUCTS.items():
        bs = []
        for s in strings:
            b = s.encode()
            bs += [b[:k] for k in range(len(b) + 1)]
        n = compare(ref, name, text, bs)
        total += n
    check_refusals(ref)
    check_masks(ref)
    print(f"{total} strings agree; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
