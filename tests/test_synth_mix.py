#!/usr/bin/env python3
"""test_synth_mix.py — every `promptfs synth` preset has, tensor by tensor,
the types llama.cpp's own llama-quantize gives that model.  Nothing expected
is written here: the expected type of every tensor comes from llama-quantize
(the llama.cpp that llama-cpp-python 0.3.36 vendors, built CPU-only by
scripts/llama-quantize.sh), the actual one from the file synth writes, read
with the `gguf` package.

 A. Full shapes, every preset.  synth writes MODEL-f16 as a sparse file
    (--sparse: real header and tensor table, the weights a hole);
    `llama-quantize --dry-run` on it prints the type it would give every
    tensor for each file type (the same llama_tensor_get_type result a real
    run writes; B shows that); synth writes MODEL-<that type> sparse; the
    two tables must agree name by name, shapes and general.file_type too.
 B. A real run.  A slice of each model in F16 — every tensor, every name,
    the real hyper-parameters and tokenizer, but rows cut to 4, experts to
    2, and row lengths over 512 to 256 + (length mod 256) — is quantized
    by llama-quantize for real to Q4_K_M; the types in the file it writes
    must equal A's dry-run types for the full model.  The cut keeps what
    the rules read: names, layer count, expert and head counts (the
    metadata), and the row length modulo 256 (the block fallbacks); the
    row count and the number of experts are never read.
 C. qwen2.5-0.5b-instruct mirrors the published Qwen2.5 GGUFs, made by a
    llama.cpp that counted layers in name order (blk.0, blk.1, blk.10, …;
    tests/test_synth.sh checks the Q4_K_M preset against the real file).
    This llama.cpp counts by layer number, so the K_M presets of that model
    are checked on a slice whose layers are renumbered in name order
    (blk.k holds the k-th layer by name), quantized for real; its other
    file types do not depend on the order and are checked as in A.

Run by ctest, or by hand for some models: test_synth_mix.py [MODEL…]
(PROMPTFS_BIN, PROMPTFS_SRC, PROMPTFS_CACHE, PROMPTFS_SHARED).
The one-time llama-quantize build (scripts/llama-quantize.sh, several
minutes) happens in scripts/deps.sh; this test runs it if it has not.
"""
import os
import re
import subprocess
import sys
import tempfile

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_tables import read_gguf  # noqa: E402

BIN = os.environ["PROMPTFS_BIN"]
SRC = os.environ["PROMPTFS_SRC"]
FTYPES = {"f16": ("F16", 1), "bf16": ("BF16", 32), "q8_0": ("Q8_0", 7), "q6_k": ("Q6_K", 18),
          "q5_k_m": ("Q5_K_M", 17), "q4_k_m": ("Q4_K_M", 15), "q4_0": ("Q4_0", 2)}
NAME_ORDER = {"qwen2.5-0.5b-instruct"}  # C
LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[([^\]]*)\], type =\s*(\S+), size =\s*[\d.]+ MiB"
                  r"(?: ->\s*[\d.]+ MiB \((\S+)\))?")
failures = []
counts = {"tensors": 0, "files": 0}


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL", what)


def llama_quantize():
    path = os.path.join(os.environ.get("PROMPTFS_CACHE", os.path.expanduser("~/.cache/promptfs")),
                        "llama.cpp-quantize-0.3.36", "build", "bin", "llama-quantize")
    if not os.access(path, os.X_OK):
        print("building llama-quantize (scripts/llama-quantize.sh, once)", flush=True)
        r = subprocess.run(["bash", os.path.join(SRC, "scripts", "llama-quantize.sh")],
                           capture_output=True, text=True)
        path = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
        if not path:
            print(r.stderr)
    return path


def synth(preset, out, sparse=True):
    r = subprocess.run([BIN, "synth", "--preset", preset, "-o", out, "-q"] + (["--sparse"] if sparse else []),
                       capture_output=True, text=True)
    check(r.returncode == 0, f"synth --preset {preset}: {r.stderr.strip()}")
    return r.returncode == 0


def dry_run(lq, f16, ftype):
    """{name: type} llama-quantize would write for f16 quantized to ftype."""
    r = subprocess.run([lq, "--dry-run", f16, ftype, "2"], capture_output=True, text=True)
    types = {}
    for line in (r.stdout + r.stderr).splitlines():
        m = LINE.match(line.strip())
        if m:
            types[m.group(1)] = (m.group(4) or m.group(3)).upper()
    check(r.returncode == 0 and types, f"llama-quantize --dry-run {os.path.basename(f16)} {ftype}: "
          f"rc {r.returncode}, {len(types)} tensors" + ("" if types else f"\n{r.stderr[-2000:]}"))
    return types


def compare(label, want, got, rename=lambda n: n):
    """want: {name: type} from llama-quantize; got: {name: (type, shape)} from synth."""
    got_names = {rename(n) for n in got}
    check(set(want) == got_names, f"{label}: tensor names differ: {sorted(set(want) ^ got_names)[:8]}")
    bad = [(n, want[rename(n)], t) for n, (t, _) in got.items() if rename(n) in want and want[rename(n)] != t]
    check(not bad, f"{label}: {len(bad)} of {len(got)} tensors differ from llama-quantize, e.g. {bad[:6]}")
    counts["tensors"] += len(got)
    counts["files"] += 1
    return len(bad)


def cut(n):
    return n if n <= 512 else 256 + n % 256


def write_slice(f16, out, rename=lambda n: n):
    """The F16 file with every row length cut (keeping it mod 256), rows
    cut to 4 and experts to 2; the metadata copied except the tokenizer
    (quantizing does not load it: a rule that read it would show up as a
    difference from the full model's dry run); tensors renamed."""
    tensors, _, kvs, _ = read_gguf(f16, keep_kv=lambda k: not k.startswith("tokenizer."))
    arch = next(v for k, _, v, _ in kvs if k == "general.architecture")
    w = gguf.GGUFWriter(out, arch)
    for key, vt, v, et in kvs:
        if key != "general.architecture":
            w.add_key_value(key, v, gguf.GGUFValueType(vt), sub_type=None if et is None else gguf.GGUFValueType(et))
    rng = np.random.default_rng(1)
    for name, (ty, ne) in tensors.items():
        shape = [cut(ne[0])] + [min(x, 4) for x in ne[1:2]] + [min(x, 2) for x in ne[2:]]
        dt = np.float16 if ty == "F16" else np.float32
        data = (rng.standard_normal(int(np.prod(shape))) * 0.02).astype(dt).reshape(shape[::-1])
        w.add_tensor(rename(name), data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(lq, src, dst, ftype):
    r = subprocess.run([lq, src, dst, ftype, "2"], capture_output=True, text=True)
    check(r.returncode == 0, f"llama-quantize {os.path.basename(src)} {ftype}: {r.stderr[-1500:]}")
    return r.returncode == 0


def name_order_rename(n_layer):
    """blk.<k-th layer in name order> → blk.k, and back."""
    by_name = sorted(range(n_layer), key=str)
    fwd = {old: k for k, old in enumerate(by_name)}
    back = {k: old for old, k in fwd.items()}

    def sub(table):
        return lambda n: re.sub(r"^blk\.(\d+)\.", lambda m: f"blk.{table[int(m.group(1))]}.", n)
    return sub(fwd), sub(back)


def check_model(lq, model, presets, tmp):
    f16 = os.path.join(tmp, f"{model}-source-f16.gguf")
    if not synth(f"{model}-f16", f16):
        return
    f16_table, _, kvs, _ = read_gguf(f16, keep_kv=lambda k: k.endswith(".block_count"))
    n_layer = int(kvs[0][2])
    mismatches = 0
    dry = {}
    for suffix in presets:
        lq_type, ft_id = FTYPES[suffix]
        path = os.path.join(tmp, f"{model}-{suffix}.gguf")
        if not synth(f"{model}-{suffix}", path):
            continue
        got, ft, _, _ = read_gguf(path)
        check(ft == ft_id, f"{model}-{suffix}: general.file_type {ft}, llama.cpp's {lq_type} is {ft_id}")
        check({n: s for n, (_, s) in got.items()} == {n: s for n, (_, s) in f16_table.items()},
              f"{model}-{suffix}: shapes differ from the f16 preset's")
        if model in NAME_ORDER and suffix in ("q4_k_m", "q5_k_m"):
            continue  # C
        os.unlink(path)
        dry[suffix] = dry_run(lq, f16, lq_type)
        mismatches += compare(f"{model}-{suffix} (A, full shapes, dry run)", dry[suffix], got)
    # B / C: real runs on a slice
    sl = os.path.join(tmp, f"{model}-slice-f16.gguf")
    if model in NAME_ORDER:
        fwd, back = name_order_rename(n_layer)
        write_slice(f16, sl, rename=fwd)
        for suffix in ("q4_k_m", "q5_k_m"):
            path = os.path.join(tmp, f"{model}-{suffix}.gguf")
            out = os.path.join(tmp, f"{model}-slice-{suffix}.gguf")
            if os.path.exists(path) and quantize(lq, sl, out, FTYPES[suffix][0]):
                real = {back(n): t for n, (t, _) in read_gguf(out)[0].items()}
                mismatches += compare(f"{model}-{suffix} (C, slice in name order, real run)", real,
                                      read_gguf(path)[0])
                counts["real"] = counts.get("real", 0) + len(real)
                os.unlink(out)
            if os.path.exists(path):
                os.unlink(path)
    else:
        write_slice(f16, sl)
        out = os.path.join(tmp, f"{model}-slice-q4_k_m.gguf")
        if "q4_k_m" in dry and quantize(lq, sl, out, "Q4_K_M"):
            real = {n: t for n, (t, _) in read_gguf(out)[0].items()}
            bad = sorted((n, t, dry["q4_k_m"].get(n)) for n, t in real.items() if dry["q4_k_m"].get(n) != t)
            check(real.keys() == dry["q4_k_m"].keys() and not bad,
                  f"{model}: the real Q4_K_M run on the slice gives other types than the dry run: {bad[:6]}")
            counts["real"] = counts.get("real", 0) + len(real)
            os.unlink(out)
    for p in (f16, sl):
        os.unlink(p)
    print(f"{model}: {len(f16_table)} tensors x {len(presets)} file types, {mismatches} mismatches", flush=True)


def main():
    lq = llama_quantize()
    if not lq:
        print("FAIL: no llama-quantize (scripts/llama-quantize.sh)")
        return 1
    r = subprocess.run([BIN, "synth", "--list-presets"], capture_output=True, text=True, check=True)
    models = {}
    for name in r.stdout.split():
        model, suffix = name.rsplit("-", 1)
        models.setdefault(model, []).append(suffix)
    for m, s in models.items():
        check(set(s) <= set(FTYPES), f"{m}: file types {s} not all known to this test")
    with tempfile.TemporaryDirectory(prefix="test_synth_mix.") as tmp:
        for model, presets in models.items():
            if sys.argv[1:] and model not in sys.argv[1:]:
                continue
            check_model(lq, model, [s for s in presets if s in FTYPES], tmp)
    print(f"compared {counts['tensors']} tensor types in {counts['files']} preset files with llama-quantize; "
          f"a real Q4_K_M run on slices agreed with the dry run on {counts.get('real', 0)} tensors")
    print("PASS" if not failures else f"FAIL: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
