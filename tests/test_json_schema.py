#!/usr/bin/env python3
"""test_json_schema — engine/json_schema.* (JSON Schema → GBNF) against
llama.cpp's converter and against the `jsonschema` validator.

1. llama.cpp's own conversion tests (tests/json_schema/test-json-schema-
   to-grammar.cpp, copied unchanged from llama.cpp as vendored by the
   llama-cpp-python 0.3.36 sdist): every schema llama.cpp converts and we
   accept gives exactly llama.cpp's expected grammar (compared as its test
   compares, lines trimmed); every schema llama.cpp refuses we refuse; the
   schemas we refuse where llama.cpp converts are exactly the listed
   DIVERGENT ones (each a case where llama.cpp drops a keyword and its
   grammar can produce values that do not validate), and our log line names
   the keyword.
2. Soundness on a corpus of schemas (the mount test's five included): 150
   random sentences of each schema's grammar (seeded walks through our
   grammar engine, so whitespace, escapes and Unicode vary) all parse with
   Python's json and validate with jsonschema (Draft 2020-12).
3. Hand-written valid instances of each corpus schema are accepted by its
   grammar, and hand-written invalid ones (that a grammar can tell apart:
   wrong types, missing required properties, bounds) are rejected.
4. Unsupported keywords are refused with the keyword named in the log.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema

SRC = os.environ["PROMPTFS_SRC"]
BUILD = os.environ["PROMPTFS_BUILD"]
TOOL = os.path.join(BUILD, "tests", "tool_grammar")
CPP = os.path.join(SRC, "tests", "json_schema", "test-json-schema-to-grammar.cpp")
TMP = tempfile.mkdtemp(prefix="promptfs-jsonschema.")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    return p


def convert(text, name="s.json"):
    """(grammar text or None if refused, stderr)"""
    p = write(name, text)
    r = subprocess.run([TOOL, "schema", p], capture_output=True, timeout=60)
    out, err = r.stdout.decode(), r.stderr.decode()
    if r.returncode != 0:
        fail(f"tool_grammar schema: rc {r.returncode}: {err[-300:]}")
        return None, err
    return (None if out == "REFUSED\n" else out), err


def records(strings):
    out = bytearray()
    for s in strings:
        b = s.encode()
        out += b"%d\n" % len(b) + b
    return bytes(out)


def accepts(schema_text, strings):
    p = write("c.json", schema_text)
    r = subprocess.run([TOOL, "check-schema", p], input=records(strings), capture_output=True, timeout=60)
    lines = r.stdout.decode().split("\n")
    return [ln.split() == ["-1", "1"] for ln in lines if ln]


def samples(schema_text, n, seed):
    p = write("w.json", schema_text)
    r = subprocess.run([TOOL, "sample", str(n), str(seed), p], capture_output=True, timeout=300)
    if r.returncode != 0:
        fail(f"tool_grammar sample: rc {r.returncode}: {r.stderr.decode()[-300:]}")
        return []
    data, out, i = r.stdout, [], 0
    while i < len(data):
        j = data.index(b"\n", i)
        n = int(data[i:j])
        out.append(data[j + 1:j + 1 + n].decode())
        i = j + 2 + n
    return out


# ---- 1. llama.cpp's conversion tests

def cpp_strings(block):
    """The string literals of one test({...}) block: name, schema, grammar."""
    out, p = [], 0
    while p < len(block):
        if block.startswith('R"""(', p):
            e = block.index(')"""', p + 5)
            out.append(block[p + 5:e])
            p = e + 4
        elif block[p] == '"':
            e = p + 1
            while block[e] != '"':
                e += 2 if block[e] == "\\" else 1
            out.append(block[p + 1:e].encode().decode("unicode_escape"))
            p = e + 1
        else:
            p += 1
    return out


def llama_cases():
    src = open(CPP, encoding="utf-8").read()
    src = src[:src.index("int main()")]
    cases, i = [], 0
    while (j := src.find("test({", i)) >= 0:
        k = src.index("\n    });", j)
        block = src[j:k]
        status = re.search(r"\b(SUCCESS|FAILURE)\b", block).group(1)
        name, schema, grammar = cpp_strings(block)[:3]
        cases.append((status, name, schema, grammar))
        i = k
    return cases


def trim(s):
    s = s.strip(" \n\r\t")
    return re.sub(r"(^|\n)[ \t]+", r"\1", s)


# llama.cpp converts these, we refuse them (the keyword our log must name):
# its grammar ignores the keyword, so its output need not validate.
DIVERGENT = {
    "simple regexp": "pattern",
    "regexp escapes": "pattern",
    "regexp quote": "pattern",
    "regexp with top-level alternation": "pattern",
    "regexp": "pattern",
    "regexp with non-capturing group": "pattern",
    "regexp with nested non-capturing groups": "pattern",
    "unanchored regexp": "pattern",
    "regexp with unsupported shorthand": "pattern",
    "regexp with escaped hyphen in a character class": "pattern",
    "regexp with escaped hyphen outside a character class": "pattern",
    "unsupported regexp in a property": "pattern",
    # prefixItems would be ignored next to items (2020-12: prefixItems validates the first items)
    "array with empty items and prefixItems": "prefixItems",
    # anyOf inside allOf: llama.cpp makes every alternative's properties optional
    "mix of allOf, anyOf and $ref (similar to https://json.schemastore.org/tsconfig.json)": "anyOf inside allOf",
}


# Converted by both, one rule different by design: llama.cpp's date rule
# allows days 29-31 in every month and year 0000; ours is a calendar date
# (so Python's date.fromisoformat accepts every date the grammar makes).
# And llama.cpp's additionalProperties key rule (_not_strings) lets a raw
# control character or a lone backslash start the rest of a key: its
# negated class [^"…] gets char's exclusions in ours.
DIFFERENT_RULES = {
    "exotic formats": {"date"},
    "required + additional props": {"additional-k"},
    "optional + additional props": {"additional-k"},
    "required + optional + additional props": {"additional-k"},
    "optional props with empty name": {"additional-k"},
    "optional props with nested names": {"additional-k"},
    "optional props with common prefix": {"additional-k"},
}


def rules_of(text):
    return dict(ln.split(" ::= ", 1) for ln in trim(text).split("\n") if ln)


def part1():
    cases = llama_cases()
    same = one_rule = refused_both = divergent = 0
    for status, name, schema, grammar in cases:
        ours, err = convert(schema)
        if status == "FAILURE":
            if ours is not None:
                fail(f"llama.cpp refuses {name!r}, we convert it")
            else:
                refused_both += 1
            continue
        if ours is None:
            want = DIVERGENT.get(name)
            if not want:
                fail(f"we refuse {name!r}, llama.cpp converts it: {err.strip()[-300:]}")
            elif want not in err:
                fail(f"{name!r} refused without naming {want!r}: {err.strip()[-300:]}")
            else:
                divergent += 1
            continue
        if name in DIVERGENT:
            fail(f"{name!r} is listed as refused but converts")
        if name in DIFFERENT_RULES:
            a, b = rules_of(ours), rules_of(grammar)
            diff = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
            if diff != DIFFERENT_RULES[name]:
                fail(f"{name!r}: rules {sorted(diff)} differ, expected only {sorted(DIFFERENT_RULES[name])}")
            else:
                one_rule += 1
        elif trim(ours) != trim(grammar):
            fail(f"{name!r}: grammar differs\n--- llama.cpp\n{trim(grammar)}\n--- ours\n{trim(ours)}")
        else:
            same += 1
    print(f"llama.cpp cases: {len(cases)}; identical grammar {same}, identical but for the listed rule {one_rule}, "
          f"refused by both {refused_both}, refused by us only (listed) {divergent}")
    if same + one_rule + refused_both + divergent != len(cases):
        fail("not every llama.cpp case is accounted for")


# ---- 2./3. soundness and acceptance on a corpus

CORPUS = {
    # the five of tests/test_mount_schema.sh
    "person": ({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }, ['{"name":"Ann","age":30}', '{ "name": "Bo", "age": 0 }'],
       ['{"name":"","age":3}', '{"name":"A","age":131}', '{"age":3}', '{"name":"A","age":-1}', '{"name":"A","age":1.5}']),
    "colour": ({
        "type": "object",
        "properties": {
            "colour": {"enum": ["red", "green", "blue"]},
            "shade": {"type": "string", "maxLength": 12},
        },
        "required": ["colour"],
    }, ['{"colour":"red"}', '{"colour":"blue","shade":"dark"}'],
       ['{"colour":"pink"}', '{"shade":"dark"}', '{"colour":"red","shade":"aaaaaaaaaaaaa"}']),
    "list": ({
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 1, "maxItems": 3},
        },
        "required": ["items"],
    }, ['{"items":["a"]}', '{"items":["a","b","c"]}'],
       ['{"items":[]}', '{"items":["a","b","c","d"]}', '{"items":[1]}']),
    "point": ({
        "$defs": {"coord": {"type": "integer", "minimum": -100, "maximum": 100}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/coord"}, "y": {"$ref": "#/$defs/coord"},
                       "label": {"type": ["string", "null"], "maxLength": 10}},
        "required": ["x", "y"],
    }, ['{"x":1,"y":-100}', '{"x":100,"y":0,"label":null}', '{"x":3,"y":4,"label":"p"}'],
       ['{"x":101,"y":0}', '{"x":1}', '{"x":1,"y":2,"label":3}']),
    "event": ({
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date"},
            "kind": {"oneOf": [{"const": "meeting"}, {"const": "call"}]},
            "people": {"type": "object", "properties": {"lead": {"type": "string", "maxLength": 20}},
                       "required": ["lead"]},
            "done": {"type": "boolean"},
        },
        "required": ["date", "kind", "people"],
    }, ['{"date":"2024-02-29","kind":"call","people":{"lead":"X"}}',
        '{"date":"2024-12-01","kind":"meeting","people":{"lead":"Y"},"done":true}'],
       ['{"date":"2024-13-01","kind":"call","people":{"lead":"X"}}', '{"date":"2024-02-01","kind":"lunch","people":{"lead":"X"}}',
        '{"date":"2024-02-01","kind":"call","people":{}}']),
    # more shapes
    "numbers": ({"type": "array", "items": {"type": "number"}, "maxItems": 4},
                ['[]', '[1,2.5,-3e2,0.125]'], ['[1,2,3,4,5]', '["1"]']),
    "anyof": ({"anyOf": [{"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                         {"type": "string", "minLength": 2, "maxLength": 3}, {"type": "null"}]},
              ['1', '9', '"ab"', 'null'], ['0', '10', '"a"', '"abcd"', 'true']),
    "tuple": ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False},
              ['[1,true]'], ['[true,1]', '[1,true,3]']),
    "additional": ({"type": "object", "properties": {"id": {"type": "integer"}},
                    "required": ["id"], "additionalProperties": {"type": "string", "maxLength": 5}},
                   ['{"id":1}', '{"id":1,"note":"hi"}'], ['{"id":1,"note":5}', '{"note":"x"}']),
    "tree": ({"$ref": "#/$defs/node",
              "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                                   "kids": {"type": "array", "items": {"$ref": "#/$defs/node"},
                                                                            "maxItems": 2}},
                                 "required": ["v"], "additionalProperties": False}}},
             ['{"v":1}', '{"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]}'], ['{"v":1,"kids":[{}]}', '{"kids":[]}']),
    "uuid-time": ({"type": "object", "properties": {"id": {"type": "string", "format": "uuid"},
                                                     "at": {"type": "string", "format": "date-time"}},
                   "required": ["id", "at"]},
                  ['{"id":"123e4567-e89b-12d3-a456-426614174000","at":"2024-01-02T03:04:05Z"}'],
                  ['{"id":"123","at":"2024-01-02T03:04:05Z"}']),
    "allof": ({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                         {"properties": {"b": {"enum": [1, 2]}}}]},
              ['{"a":5,"b":2}'], ['{"a":5,"b":3}', '{"a":"x","b":1}']),
    "any": ({}, ['1', '"x"', '{"a":[null,true]}'], []),
}


def part2_3():
    validator_cls = jsonschema.Draft202012Validator
    n_sentences = 0
    for name, (schema, good, bad) in CORPUS.items():
        text = json.dumps(schema)
        validator_cls.check_schema(schema)
        v = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
        grammar, err = convert(text, name + ".json")
        if grammar is None:
            fail(f"corpus schema {name} refused: {err.strip()[-300:]}")
            continue
        sents = samples(text, 150, 1234 + len(name))
        if len(sents) < 100:
            fail(f"{name}: only {len(sents)} of 150 walks ended")
        for s in sents:
            try:
                inst = json.loads(s)
            except ValueError as e:
                fail(f"{name}: a sentence of its grammar is not JSON ({e}): {s[:200]!r}")
                continue
            errs = list(v.iter_errors(inst))
            if errs:
                fail(f"{name}: a sentence of its grammar does not validate ({errs[0].message}): {s[:200]!r}")
        n_sentences += len(sents)
        for s in good:
            jsonschema.validate(json.loads(s), schema, cls=validator_cls)  # the corpus itself is right
        for s in bad:
            assert not v.is_valid(json.loads(s)), (name, s)
        for s, ok in zip(good, accepts(text, good)):
            if not ok:
                fail(f"{name}: valid {s} rejected by the grammar")
        for s, ok in zip(bad, accepts(text, bad)):
            if ok:
                fail(f"{name}: invalid {s} accepted by the grammar")
    print(f"soundness: {n_sentences} grammar sentences of {len(CORPUS)} schemas parse and validate; "
          f"{sum(len(g) for _, g, _ in CORPUS.values())} valid instances accepted, "
          f"{sum(len(b) for _, _, b in CORPUS.values())} invalid rejected")


# ---- 4. refusals

REFUSED = [
    ({"type": "string", "pattern": "^a+$"}, '"pattern"'),
    ({"not": {"type": "null"}}, '"not"'),
    ({"type": "object", "properties": {"a": {}}, "if": {"required": ["a"]}, "then": {}}, '"if"'),
    ({"type": "array", "uniqueItems": True}, '"uniqueItems"'),
    ({"type": "object", "minProperties": 1}, '"minProperties"'),
    ({"type": "object", "patternProperties": {"^x": {}}}, '"patternProperties"'),
    ({"type": "number", "multipleOf": 2}, '"multipleOf"'),
    ({"type": "number", "minimum": 0}, "minimum on a number"),
    ({"type": "string", "format": "email"}, 'format "email"'),
    ({"type": "string", "format": "date", "maxLength": 3}, "maxLength next to format"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, 'required names "b"'),
    ({"$ref": "#/$defs/a", "$defs": {"a": {}}, "type": "string"}, "type next to $ref"),
    ({"$ref": "http://example.com/s.json"}, "same document"),
    ({"$ref": "#/$defs/missing", "$defs": {}}, '"missing" not found'),
    ({"enum": ["a", 1], "type": "string"}, "enum value 1 does not match the type"),
    ({"minimum": 3}, "minimum without a type"),
    ({"additionalProperties": True, "maxItems": 3}, "maxItems without a type"),
    ({"type": "array", "prefixItems": [{}], "minItems": 1}, "minItems next to a tuple"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer lies between"),
    ({"type": "kaboom"}, 'unknown type "kaboom"'),
    (False, "no value validates"),
    ({"anyOf": []}, "anyOf must be a non-empty array"),
    ({"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 2}, "minItems 3 > maxItems 2"),
]


def part4():
    n = 0
    for schema, want in REFUSED:
        ours, err = convert(json.dumps(schema))
        if ours is not None:
            fail(f"{json.dumps(schema)} was converted, expected a refusal naming {want!r}")
        elif want not in err:
            fail(f"{json.dumps(schema)}: refusal does not name {want!r}: {err.strip()[-200:]}")
        else:
            n += 1
    for text, want in [('{"a":1,"a":2}', "duplicate key"), ('{"type":"object",}', "byte 17"),
                       ('{"type":"string"} x', "text after the JSON value"), ('"\\ud800"', "lone high surrogate")]:
        ours, err = convert(text)
        if ours is not None or want not in err:
            fail(f"bad JSON {text!r}: expected a refusal naming {want!r}: {err.strip()[-200:]}")
        else:
            n += 1
    print(f"refusals: {n}/{len(REFUSED) + 4} refused with the keyword or byte named")


part1()
part2_3()
part4()
if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("all JSON schema checks passed")
