#!/usr/bin/env python3
"""
test_tokenizer_ref.py — our tokenizer (through tests/tool_tokenize) against
llama.cpp itself (llama-cpp-python, vocab_only) on every real vocabulary we
have: the five shared/models/vocab files, the default real model
($PROMPTFS_MODEL), stories260K and the real Gemma 3 ($PROMPTFS_MODEL_GEMMA3,
262,144 SentencePiece tokens).

Per vocabulary:
  * ids: 400+ strings (hand-picked hard cases plus a seeded random mix of
    ASCII, whitespace runs, numbers, contractions, code, accents, CJK,
    emoji, scripts, invalid UTF-8, special tokens in text), each tokenized
    with and without parse_special, must give exactly llama.cpp's ids;
  * pieces: every token id's piece, with and without render_special,
    equals llama_token_to_piece;
  * streaming detokeniser: the pieces of every test string's ids, pushed
    one by one, give bytes.decode("utf-8", "replace") of llama.cpp's
    concatenated pieces;
  * facts: BOS, EOS, add_bos, the end-of-generation set and the control
    set equal llama.cpp's.
And once: our Unicode class table equals the one compiled into libllama
(unicode_cpt_flags_from_cpt) for all 0x110000 code points.

Every mismatch is a failure; the first few of each kind are printed.
Run: ctest -R tokenizer_ref   (PROMPTFS_BUILD, PROMPTFS_SHARED, PROMPTFS_MODEL)
"""
import ctypes
import os
import random
import struct
import subprocess
import sys

import llama_cpp

BUILD = os.environ.get("PROMPTFS_BUILD", "build")
SHARED = os.environ.get("PROMPTFS_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
MODEL = os.environ.get("PROMPTFS_MODEL", "")
MAX_SHOW = 5

failures = 0


def fail(msg):
    global failures
    failures += 1
    if failures <= 60:
        print("FAIL", msg)


def tool_path():
    for p in (os.path.join(BUILD, "tests", "tool_tokenize"), os.path.join(BUILD, "tool_tokenize")):
        if os.path.exists(p):
            return p
    sys.exit("tool_tokenize not found under %s" % BUILD)


# ---- test strings

def aborts_llama_cpp(b):
    """llama.cpp's UTF-8 decoder accepts 4-byte forms beyond U+10FFFF and then
    aborts when re-encoding them (uncaught std::invalid_argument); such
    inputs cannot be compared, so the generators avoid them."""
    i = 0
    while i < len(b):
        c = b[i]
        if c >= 0xF0 and c < 0xF8 and i + 3 < len(b) and all(0x80 <= x < 0xC0 for x in b[i + 1:i + 4]):
            cpt = ((c & 7) << 18) | ((b[i + 1] & 0x3F) << 12) | ((b[i + 2] & 0x3F) << 6) | (b[i + 3] & 0x3F)
            if cpt > 0x10FFFF:
                return True
            i += 4
        else:
            i += 1
    return False


HAND = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", " \n \n  x", "\n\n\n", "\t\t\t", " \t \n", "\r\r\n",
    "Hello world", " Hello", "Hello  world", "Hello   world  ", "hello\tworld", "a\n\nb", "   leading",
    "trailing   ", "x \u00a0 y", "\u00a0\u00a0x", "\u3000全角\u3000", "line\u2028sep", "\x0b\x0c", "\x1c\x1d\x1e\x1f x",
    "a\x00b", "\x00", "\x7f\x01\x02",
    "it's", "IT'S", "we're", "WE'RE", "I've", "I'VE", "I'm", "I'M", "you'll", "YOU'LL", "he'd", "HE'D",
    "'s", "'", "''", "'x", "' s", "don't'", "rock'n'roll", "'Re", "'rE", "'LL'll", "x'", "'\n", " 's",
    "1", "12", "123", "1234", "12345", "123456", "1234567", "1234567890", "3.14159", "1,000,000", "-42",
    "1e10", "0x1F", " 007", "a1b22c333d4444", "\u0661\u0662\u0663", "\u00bd", "\u00b2\u00b3", "\u216b", "٣٤٥ 12",
    "def f(x):\n    return x**2\n", "int main(void) {\n\treturn 0;\n}\n", "if (a<=b && c!=d) { x += 1; }",
    '<div class="a">text</div>', "SELECT * FROM t WHERE id = 42;", "$x = @arr[0] ~ ^ | `cmd`",
    "#include <stdio.h>", "    indented\n        more\n", "a_b-c.d/e\\f", "//comment\n/* block */",
    "x=>y; z->w; a::b", "!!!", "???!!!...", "...", "—", "–-", "«»", "¿¡",
    "café", "naïve", "Äpfel", "ÅÆØ", "e\u0301", "n\u0303o", "Ελληνικά", "Привет мир", "עברית", "العربية",
    "हिन्दी", "ไทย", "Tiếng Việt", "ქართული", "Հայերեն",
    "中文字符", "日本語のテキスト", "한국어", "中文 English 混合", "。，、", "ｆｕｌｌｗｉｄｔｈ",
    "🦙", "👨\u200d👩\u200d👧\u200d👦", "🇺🇸", "😀😃😄", "❤️", "👍🏽", "🦙 llama", " 🦙", "🦙🦙🦙",
    "Hello 世界 🌍 мир!", "x²+y²=z²", "naïve café — résumé", "«quotes» „German“ ‘single’ “double”",
    "∀x∈ℝ: x²≥0", "€100 £50 ¥1000", "ℌ𝔢𝔩𝔩𝔬", "\U00010348\U0001d11e", "\ufffd", "\ufeffBOM",
    " " * 17 + "x", "a" + " " * 9, "\n" * 7 + "x", "=" * 100, "a" * 300, "0" * 200, "ab" * 150,
    "The quick brown fox jumps over the lazy dog. " * 20,
]
HAND_BYTES = [
    b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc3", b"\xe2\x82", b"\xf0\x9f\xa6", b"\xc0\x80", b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80", b"caf\xe9", b"\x80\x80\x80", b"x \xe2\x82", b"\xf0\x9f\xa6\x99\xf0\x9f", b"\xc3\xa9\xc3",
    b" \xff ", b"\xf4\x8f\xbf\xbf", b"\xe0\x80\x80", b"\xc1\xbf", b"a\xc2", b"\xe2\x82\xac\x82",
]

WORDS = ["the", "quick", "brown", "fox", "Hello", "WORLD", "llama", "tokenizer", "x", "a", "I", "don", "re",
         "café", "naïve", "Straße", "über", "garçon", "résumé", "Ωmega", "Москва", "γράμμα", "日本", "中文",
         "한국", "ภาษา", "مرحبا", "नमस्ते", "שלום", "ŁÓDŹ", "İstanbul", "ǅemal"]
WS = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000", "\u2009", " \t"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "--", "(", ")", "[", "]", "{", "}", "<", ">", "=", "+", "-",
         "*", "/", "\\", "|", "&", "%", "$", "#", "@", "^", "~", "`", "\"", "'", "_", "«", "»", "·", "§"]
CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'Ll", "'x"]
CODE = ["if (x) {", "}", "return 0;", "for i in range(10):", "    ", "x = y + 1", "def", "#define N 4",
        "a->b", "std::vector<int>", "0xFF", "printf(\"%d\\n\", x);", "// TODO", "<br/>", "&&", "||", "!="]
RANGES = [(0x41, 0x7A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
          (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF),
          (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF),
          (0x1D400, 0x1D7FF), (0x300, 0x36F), (0x20000, 0x2A6DF), (0x0, 0x20)]


def random_part(rng):
    k = rng.randrange(12)
    if k == 0:
        return rng.choice(WORDS)
    if k == 1:
        return rng.choice(WORDS).upper() if rng.random() < 0.5 else rng.choice(WORDS).capitalize()
    if k == 2:
        return rng.choice(WS) * rng.randint(1, 4)
    if k == 3:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
    if k == 4:
        return rng.choice(PUNCT) * rng.randint(1, 3)
    if k == 5:
        return rng.choice(WORDS) + rng.choice(CONTR)
    if k == 6:
        return rng.choice(CODE)
    if k == 7:
        lo, hi = rng.choice(RANGES)
        s = ""
        while len(s) < rng.randint(1, 6):
            c = rng.randint(lo, hi)
            if not 0xD800 <= c <= 0xDFFF:
                s += chr(c)
        return s
    if k == 8:
        return chr(rng.randint(0x1F300, 0x1FAFF)) + (chr(0x1F3FB + rng.randrange(5)) if rng.random() < 0.2 else "")
    if k == 9:
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 5)))
    if k == 10:
        return rng.choice(["1.5", "2,000", "3e8", "v1.2.3", "100%", "$9.99", "10:30", "2024-01-01", "½", "٣"])
    return rng.choice(WORDS) + rng.choice(PUNCT) + rng.choice(WS)


def random_strings(rng, n):
    out = []
    for _ in range(n):
        s = "".join(random_part(rng) for _ in range(rng.randint(1, 14)))
        b = s.encode("utf-8", "surrogatepass")
        if rng.random() < 0.12:  # invalid bytes spliced in
            pos = rng.randint(0, len(b))
            bad = rng.choice([b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f", b"\xc0\xaf", b"\xed\xb0\x80",
                              b"\xfe", b"\xbf\xbf"])
            b = b[:pos] + bad + b[pos:]
        if not aborts_llama_cpp(b):
            out.append(b)
    return out


def fuzz_bytes(rng, n):
    out = []
    while len(out) < n:
        b = bytes(rng.choice([rng.randrange(256), rng.randrange(0x20, 0x7F), 0x20, 0x0A, 0xC3, 0xE2, 0xF0, 0x80,
                              0xA0, 0xBF]) for _ in range(rng.randint(1, 40)))
        if not aborts_llama_cpp(b):
            out.append(b)
    return out


def special_strings(specials, rng):
    """Special token texts in text: alone, between words, adjacent, with
    surrounding spaces/newlines, truncated and nested."""
    out = []
    common = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<|eot_id|>",
              "<|begin_of_text|>", "<|end|>", "<|assistant|>", "[PAD151646]", "<|fim_prefix|>", "<tool_call>"]
    pool = list(dict.fromkeys(common + specials[:40]))
    for sp in pool:
        out += [sp, "Hello" + sp + "world", " " + sp + " ", sp + sp, "a " + sp + "\n b", sp + "\n\nx", sp[:-1],
                sp[1:], "<" + sp + ">", "x" + sp[:len(sp) // 2]]
    for _ in range(30):
        parts = [rng.choice(pool) if rng.random() < 0.4 else random_part(rng) for _ in range(rng.randint(2, 8))]
        out.append("".join(parts))
    return [s.encode() for s in out]


# ---- the two implementations

class Ours:
    def __init__(self, model):
        self.model = model
        self.tool = tool_path()

    def batch(self, reqs):
        data = b"".join(struct.pack("<cI", op, len(p)) + p for op, p in reqs)
        r = subprocess.run([self.tool, self.model, "batch"], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("tool_tokenize failed: %s" % r.stderr.decode(errors="replace")[-2000:])
        lines = r.stdout.decode().split("\n")[:-1]
        if len(lines) != len(reqs):
            raise RuntimeError("tool_tokenize answered %d of %d requests" % (len(lines), len(reqs)))
        return lines

    def info(self):
        r = subprocess.run([self.tool, self.model, "info"], stdout=subprocess.PIPE, check=True, timeout=600)
        d = {}
        for line in r.stdout.decode().split("\n"):
            if line:
                k, _, v = line.partition(" ")
                d[k] = v
        return d


class Ref:
    def __init__(self, model):
        self.llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab
        self.buf = ctypes.create_string_buffer(4096)

    def tokenize(self, b, special):
        return self.llm.tokenize(b, add_bos=False, special=special)

    def piece(self, tok, special):
        n = llama_cpp.llama_token_to_piece(self.vocab, tok, self.buf, len(self.buf), 0, special)
        assert n >= 0
        return self.buf.raw[:n]


def ids_text(ids):
    return " ".join(str(i) for i in ids)


def check_vocab(name, path, rng_seed):
    rng = random.Random(rng_seed)
    ours, ref = Ours(path), Ref(path)
    n_vocab = llama_cpp.llama_vocab_n_tokens(ref.vocab)

    # facts
    info = ours.info()
    want = {
        "n_vocab": str(n_vocab),
        "bos": str(llama_cpp.llama_vocab_bos(ref.vocab)),
        "eos": str(llama_cpp.llama_vocab_eos(ref.vocab)),
        "add_bos": str(int(llama_cpp.llama_vocab_get_add_bos(ref.vocab))),
        "eog": ids_text(i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(ref.vocab, i)),
        "control": ids_text(i for i in range(n_vocab) if llama_cpp.llama_vocab_is_control(ref.vocab, i)),
    }
    n_fact_ok = 0
    for k, v in want.items():
        if info.get(k, "").strip() != v:
            fail("%s: %s is '%s', llama.cpp '%s'" % (name, k, info.get(k, "")[:200], v[:200]))
        else:
            n_fact_ok += 1

    # strings
    specials = [ours_text for ours_text in special_texts(path)]
    strings = [s.encode() for s in HAND] + HAND_BYTES + random_strings(rng, 260) + fuzz_bytes(rng, 40) + \
        special_strings(specials, rng)
    reqs = []
    for s in strings:
        reqs.append((b"t", s))
        reqs.append((b"T", s))
    got = ours.batch(reqs)
    n_ids_ok = 0
    shown = 0
    ref_ids = []
    for i, s in enumerate(strings):
        for j, special in enumerate((False, True)):
            want_ids = ref.tokenize(s, special)
            ref_ids.append(want_ids)
            if got[2 * i + j] == ids_text(want_ids):
                n_ids_ok += 1
            else:
                shown += 1
                fail("%s: %r special=%s\n     ours %s\n     llama.cpp %s" % (
                    name, s[:120], special, got[2 * i + j][:300], ids_text(want_ids)[:300]))

    # streaming detokeniser over llama.cpp's ids
    reqs = [(b"d", ids_text(ids).encode()) for ids in ref_ids]
    got = ours.batch(reqs)
    n_detok_ok = 0
    for ids, line in zip(ref_ids, got):
        raw = b"".join(ref.piece(t, False) for t in ids)
        want_hex = raw.decode("utf-8", "replace").encode().hex()
        if line == want_hex:
            n_detok_ok += 1
        else:
            fail("%s: detok of %s: ours %r, want %r" % (name, ids[:20], bytes.fromhex(line)[:80]
                                                       if not line.startswith("ERR") else line, raw[:80]))

    # every token's piece
    reqs = []
    for t in range(n_vocab):
        reqs.append((b"p", str(t).encode()))
        reqs.append((b"P", str(t).encode()))
    got = ours.batch(reqs)
    n_piece_ok = 0
    for t in range(n_vocab):
        for j, special in enumerate((False, True)):
            want_hex = ref.piece(t, special).hex()
            if got[2 * t + j] == want_hex:
                n_piece_ok += 1
            else:
                fail("%s: piece of %d (special=%s): ours %s, llama.cpp %s" % (
                    name, t, special, got[2 * t + j][:80], want_hex[:80]))

    n_str = 2 * len(strings)
    print("%-12s ids %d/%d (%d strings x 2 modes)  detok %d/%d  pieces %d/%d  facts %d/%d" % (
        name, n_ids_ok, n_str, len(strings), n_detok_ok, len(ref_ids), n_piece_ok, 2 * n_vocab,
        n_fact_ok, len(want)))
    return n_ids_ok, n_str


def special_texts(path):
    """CONTROL / USER_DEFINED / UNKNOWN token texts, read with the gguf
    package (independent of both tokenizers)."""
    import gguf
    r = gguf.GGUFReader(path)
    toks = r.fields["tokenizer.ggml.tokens"]
    types = r.fields.get("tokenizer.ggml.token_type")
    if types is None:
        return []
    out = []
    for i, (ti, yi) in enumerate(zip(toks.data, types.data)):
        if int(types.parts[yi][0]) in (2, 3, 4):
            out.append(bytes(toks.parts[ti]).decode("utf-8", "replace"))
    return out


def check_unicode_table():
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libllama.so"))
    try:
        f = getattr(lib, "_Z26unicode_cpt_flags_from_cptj")
    except AttributeError:
        fail("libllama exports no unicode_cpt_flags_from_cpt: cannot check the Unicode table")
        return
    f.restype = ctypes.c_uint16
    f.argtypes = [ctypes.c_uint32]
    r = subprocess.run([tool_path(), "flags"], stdout=subprocess.PIPE, check=True, timeout=600)
    ours = struct.unpack("<%dH" % 0x110000, r.stdout)
    bad = [c for c in range(0x110000) if (f(c) & 0x1FF) != ours[c]]
    for c in bad[:MAX_SHOW]:
        fail("unicode flags of U+%04X: ours 0x%03x, llama.cpp 0x%03x" % (c, ours[c], f(c) & 0x1FF))
    print("unicode table: %d/%d code points agree" % (0x110000 - len(bad), 0x110000))


def main():
    vocab_dir = os.path.join(SHARED, "models", "vocab")
    vocabs = [(v, os.path.join(vocab_dir, "ggml-vocab-%s.gguf" % v))
              for v in ("qwen2", "llama-bpe", "gpt-2", "llama-spm", "phi-3")]
    vocabs.append(("stories260K", os.path.join(SHARED, "models", "stories260K.gguf")))
    if not MODEL or not os.path.exists(MODEL):
        fail("PROMPTFS_MODEL (%r) does not exist" % MODEL)
    else:
        vocabs.append(("real-model", MODEL))
    gemma3 = os.environ.get("PROMPTFS_MODEL_GEMMA3", "")
    if not gemma3 or not os.path.exists(gemma3):
        fail("PROMPTFS_MODEL_GEMMA3 (%r) does not exist (scripts/fetch-model.sh gemma3)" % gemma3)
    else:  # Gemma 3's 262k SentencePiece vocabulary
        vocabs.append(("gemma3", gemma3))
    check_unicode_table()
    total_ok = total = 0
    for k, (name, path) in enumerate(vocabs):
        ok, n = check_vocab(name, path, 1234 + k)
        total_ok += ok
        total += n
    print("ids: %d/%d tokenizations match llama.cpp over %d vocabularies (%.2f%%)" % (
        total_ok, total, len(vocabs), 100.0 * total_ok / max(total, 1)))
    if failures:
        print("%d failures" % failures)
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
