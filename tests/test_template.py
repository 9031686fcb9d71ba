#!/usr/bin/env python3
"""test_template.py — engine/template.c against jinja2 running the real templates.

For every chat-template family, conversations (system + user, user only,
multi-turn with assistant replies, tricky whitespace and markup in the text)
are rendered twice: by our C renderer (tests/tool_template) and by jinja2
executing the template text the way Hugging Face's apply_chat_template does
(sandboxed, trim_blocks, lstrip_blocks, raise_exception, bos/eos tokens).
The strings must be identical.

Template sources: the GGUF files themselves where they carry one (the qwen2
and phi-3 vocabularies in shared/models/vocab, and the real default model
$PROMPTFS_MODEL); the well-known public Hugging Face templates of the other
families are embedded below (Llama 3, Llama 2, Mistral v0.1, Mixtral, Gemma,
Gemma 3 with string contents, Zephyr, plain ChatML).  BOS/EOS texts come from
the matching vocabulary GGUF where one exists.

Run: ctest -R template   (needs PROMPTFS_BUILD with tool_template built)
"""
import os
import subprocess
import sys
import tempfile

import gguf
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

BUILD = os.environ.get("PROMPTFS_BUILD", "build")
SHARED = os.environ.get("PROMPTFS_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
MODEL = os.environ.get("PROMPTFS_MODEL", "")
TOOL = os.path.join(BUILD, "tests", "tool_template")
if not os.path.exists(TOOL):
    TOOL = os.path.join(BUILD, "tool_template")
VOCAB = os.path.join(SHARED, "models", "vocab")

# ---- embedded public templates (tokenizer_config.json of each model)

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
          "<|end_header_id|>\\n\\n' }}{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
          "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
MISTRAL_V01 = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
               "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
               "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
MIXTRAL = MISTRAL_V01.replace("eos_token + ' ' }}", "eos_token}}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
         "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
         "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")
GEMMA3 = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] "
          "+ '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
          "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
          "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception(\"Conversation roles "
          "must alternate user/assistant/user/assistant/...\") }}{%- endif -%}{%- if (message['role'] == 'assistant') -%}"
          "{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
          "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}"
          "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endfor -%}"
          "{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
          "+ '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PHI3_SYS = ("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
            "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
            "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}"
            "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


_readers = {}


def reader(path):
    if path not in _readers:
        _readers[path] = gguf.GGUFReader(path)
    return _readers[path]


def gguf_str(path, key):
    r = reader(path)
    f = r.fields.get(key)
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def gguf_token_text(path, key):
    r = reader(path)
    f = r.fields.get(key)
    if f is None:
        return ""
    tid = int(f.parts[f.data[0]][0])
    toks = r.fields["tokenizer.ggml.tokens"]
    return bytes(toks.parts[toks.data[tid]]).decode("utf-8")


def vocab_specials(name):
    p = os.path.join(VOCAB, "ggml-vocab-%s.gguf" % name)
    return gguf_token_text(p, "tokenizer.ggml.bos_token_id"), gguf_token_text(p, "tokenizer.ggml.eos_token_id")


def jinja_render(template, messages, bos, eos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    add_gen = messages[-1]["role"] == "user"
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_gen,
                                            bos_token=bos, eos_token=eos)


def c_render(tfile, messages, bos, eos):
    data = b"".join(m["role"].encode() + b"\0" + m["content"].encode() + b"\0" for m in messages)
    out = subprocess.run([TOOL, "render", tfile, bos, eos], input=data, capture_output=True, check=True)
    return out.stdout.decode("utf-8")


def c_family(tfile):
    out = subprocess.run([TOOL, "family", tfile], capture_output=True, check=True).stdout.decode()
    fam, _, sysmsg = out.partition("\n")
    return fam, sysmsg


def conversations():
    S = {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."}
    U = lambda c: {"role": "user", "content": c}
    A = lambda c: {"role": "assistant", "content": c}
    return [
        ("system+user", [S, U("Write a haiku about autumn")]),
        ("user only", [U("Hello")]),
        ("multi-turn", [S, U("Hi there"), A("Hello! How can I help?"), U("Who are you"),
                        A("   I am an assistant   "), U("Another question")]),
        ("multi-turn, no system, ends with reply", [U("one"), A("two"), U("three"), A("four")]),
        ("whitespace and markup in text", [U("  \n leading and trailing \t\n"), A("\u2003 reply with em spaces \u00a0"),
                                           U("user says <|im_end|> and [INST] and <end_of_turn> literally"),
                                           A("ok\n\n")]),
        ("unicode", [S, U("Größe? 日本語 🙂 \u2028 end"), A("héllo wörld 🙂")]),
    ]


def main():
    if not os.path.exists(TOOL):
        print("FAIL: tool_template not built at %s" % TOOL)
        return 1
    cases = []  # (label, template text, bos, eos, expected family)
    qwen2 = os.path.join(VOCAB, "ggml-vocab-qwen2.gguf")
    phi3 = os.path.join(VOCAB, "ggml-vocab-phi-3.gguf")
    bq, eq = vocab_specials("qwen2")
    cases.append(("qwen2 vocab (GGUF)", gguf_str(qwen2, "tokenizer.chat_template"), bq, eq, "chatml"))
    if not MODEL or not os.path.exists(MODEL):
        print("FAIL: real model not found at PROMPTFS_MODEL=%r" % MODEL)
        return 1
    cases.append(("qwen2.5 real model (GGUF)", gguf_str(MODEL, "tokenizer.chat_template"),
                  gguf_token_text(MODEL, "tokenizer.ggml.bos_token_id"),
                  gguf_token_text(MODEL, "tokenizer.ggml.eos_token_id"), "chatml"))
    bp, ep = vocab_specials("phi-3")
    cases.append(("phi-3 vocab (GGUF)", gguf_str(phi3, "tokenizer.chat_template"), bp, ep, "phi3"))
    cases.append(("phi-3 with system", PHI3_SYS, bp, ep, "phi3"))
    b3, e3 = vocab_specials("llama-bpe")
    cases.append(("llama3", LLAMA3, b3, e3, "llama3"))
    b2, e2 = vocab_specials("llama-spm")
    cases.append(("llama2", LLAMA2, b2, e2, "llama2"))
    cases.append(("mistral v0.1", MISTRAL_V01, b2, e2, "mistral"))
    cases.append(("mixtral", MIXTRAL, b2, e2, "mistral"))
    cases.append(("gemma", GEMMA, "<bos>", "<eos>", "gemma"))
    cases.append(("gemma3", GEMMA3, "<bos>", "<eos>", "gemma"))
    cases.append(("zephyr", ZEPHYR, "<s>", "</s>", "zephyr"))
    cases.append(("chatml", CHATML, "<s>", "</s>", "chatml"))

    n_pass = n_fail = n_skip = 0
    with tempfile.TemporaryDirectory() as tmp:
        for label, text, bos, eos, fam in cases:
            if text is None:
                print("FAIL %s: no chat template in the GGUF" % label)
                n_fail += 1
                continue
            tfile = os.path.join(tmp, "t.jinja")
            with open(tfile, "w") as f:
                f.write(text)
            got_fam, _ = c_family(tfile)
            if got_fam != fam:
                print("FAIL %s: family %s, expected %s" % (label, got_fam, fam))
                n_fail += 1
                continue
            n_pass += 1
            for cname, msgs in conversations():
                try:
                    want = jinja_render(text, msgs, bos, eos)
                except jinja2.exceptions.TemplateError as e:
                    n_skip += 1  # the template itself refuses (e.g. no system role)
                    continue
                got = c_render(tfile, msgs, bos, eos)
                if got == want:
                    n_pass += 1
                else:
                    n_fail += 1
                    print("FAIL %s / %s:\n  jinja: %r\n  C:     %r" % (label, cname, want, got))
            # prefix stability: the render of the first k messages (ending with a
            # user turn) is a prefix of the render of the whole conversation
            msgs = conversations()[2][1]
            full = c_render(tfile, msgs + [{"role": "assistant", "content": "done"}], bos, eos)
            for k in range(len(msgs)):
                if msgs[k]["role"] != "user":
                    continue
                part = c_render(tfile, msgs[:k + 1], bos, eos)
                if full.startswith(part):
                    n_pass += 1
                else:
                    n_fail += 1
                    print("FAIL %s: render up to message %d is not a prefix of the whole" % (label, k))
        # default system prompts, read from the template text
        for label, path, want in (("qwen2 vocab", qwen2, "You are a helpful assistant"),
                                  ("qwen2.5", MODEL,
                                   "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")):
            tfile = os.path.join(tmp, "d.jinja")
            with open(tfile, "w") as f:
                f.write(gguf_str(path, "tokenizer.chat_template"))
            _, sysmsg = c_family(tfile)
            if sysmsg == want:
                n_pass += 1
            else:
                n_fail += 1
                print("FAIL %s: default system %r, expected %r" % (label, sysmsg, want))
        # no template / unknown → none
        for text in ("", "{{ messages[0]['content'] }}"):
            tfile = os.path.join(tmp, "n.jinja")
            with open(tfile, "w") as f:
                f.write(text)
            fam, _ = c_family(tfile)
            n_pass += fam == "none"
            n_fail += fam != "none"
            if fam != "none":
                print("FAIL unknown template detected as %s" % fam)
    print("%d passed, %d failed, %d skipped" % (n_pass, n_fail, n_skip))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
