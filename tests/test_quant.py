#!/usr/bin/env python3
"""test_quant.py — gguf/quant.c against the `gguf` Python package.

Checks, through tests/tool_dequant.c:
  1. dequantisation of random blocks of every weight type (random bytes,
     with the f16 scale fields replaced by finite random halves) is exactly
     equal, element for element, to gguf.quants.dequantize;
  2. quantisation of random rows gives the same bytes as gguf.quants.quantize
     for the types the package implements (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
     BF16, F16);  Q8_K (activations of the K types) against a numpy
     transcription of ggml's quantize_row_q8_K_ref;
  3. quantise -> dequantise round trips of the K types (the package has no
     quantiser for them), dequantised by gguf-py, within a bound per type;
  4. half and bfloat16 conversion on all 65536 bit patterns, and rounding
     of random f32 bit patterns and of exact halfway points, against numpy;
  5. the CPU activation quantiser (cpu_quantize_act) for Q8_0/Q8_1 against
     a numpy transcription of ggml-cpu's x86 quantize_row_q8_0/_q8_1, and
     for Q8_K against the transcription of quantize_row_q8_K_ref.
Run: ctest -R quant (or PROMPTFS_BUILD=build python3 tests/test_quant.py).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

BUILD = os.environ.get("PROMPTFS_BUILD", os.path.join(os.path.dirname(__file__), "..", "build"))
TOOL = os.path.join(BUILD, "tests", "tool_dequant")
RNG = np.random.default_rng(1234)
FAILS = []

# block bytes and the byte offsets of f16 scale fields
LAYOUT = {
    "Q4_0": (18, [0]), "Q4_1": (20, [0, 2]), "Q5_0": (22, [0]), "Q5_1": (24, [0, 2]),
    "Q8_0": (34, [0]), "Q2_K": (84, [80, 82]), "Q3_K": (110, [108]),
    "Q4_K": (144, [0, 2]), "Q5_K": (176, [0, 2]), "Q6_K": (210, [208]),
}
BLOCK = {k: (256 if k.endswith("_K") else 32) for k in LAYOUT}


def tool(mode, typ, data):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(data.tobytes())
        subprocess.run([TOOL, mode, typ, src, dst], check=True)
        with open(dst, "rb") as f:
            return f.read()


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        FAILS.append(name)


def random_halves(n, lo=-8.0, hi=8.0):
    """Finite, sane f16 scales: sign * 2^U(lo, hi) with random mantissa."""
    mag = np.exp2(RNG.uniform(lo, hi, n)).astype(np.float16)
    return (mag * RNG.choice([-1, 1], n).astype(np.float16)).astype(np.float16)


def random_blocks(typ, nblocks):
    size, offs = LAYOUT[typ]
    raw = RNG.integers(0, 256, (nblocks, size), dtype=np.uint8)
    for o in offs:
        # K-type super-block scales are multiplied by 6-bit sub-scales; keep
        # them moderate.  Include a few zero and subnormal scales.
        h = random_halves(nblocks, -10, 6)
        h[:3] = np.array([0.0, 6.0e-8, -3.0e-5], dtype=np.float16)[: min(3, nblocks)]
        raw[:, o:o + 2] = h.view(np.uint8).reshape(nblocks, 2)
    return raw


def same_floats(a, b):
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    if a.shape != b.shape:
        return False, f"shape {a.shape} vs {b.shape}"
    # exactly equal values (+0 == -0 allowed: the float product order may
    # give either sign of zero), NaN nowhere
    bad = ~(a == b)
    return (not bad.any()), f"{int(bad.sum())} of {a.size} differ" + (
        f"; first at {int(np.argmax(bad))}: {a[bad][0]!r} vs {b[bad][0]!r}" if bad.any() else "")


def test_dequant():
    for typ in LAYOUT:
        raw = random_blocks(typ, 512)
        ours = np.frombuffer(tool("dequant", typ, raw), dtype=np.float32)
        ref = quants.dequantize(raw.ravel(), QT[typ])
        ok, det = same_floats(ours, ref)
        check(f"dequant {typ}", ok, det)
    # F16 / BF16 / F32 rows
    h = RNG.integers(0, 65536, 4096, dtype=np.uint16)
    h = h[~np.isnan(h.view(np.float16))]
    ours = np.frombuffer(tool("dequant", "F16", h), dtype=np.float32)
    check("dequant F16", *same_floats(ours, quants.dequantize(h.view(np.uint8), QT.F16)))
    b = RNG.integers(0, 65536, 4096, dtype=np.uint16)
    b = b[~np.isnan((b.astype(np.uint32) << 16).view(np.float32))]
    ours = np.frombuffer(tool("dequant", "BF16", b), dtype=np.float32)
    check("dequant BF16", *same_floats(ours, quants.dequantize(b.view(np.uint8), QT.BF16)))
    f = RNG.standard_normal(1024).astype(np.float32)
    check("dequant F32", *same_floats(np.frombuffer(tool("dequant", "F32", f), np.float32), f))
    # Q8_1 and Q8_K (activation types; not in gguf-py): d * qs
    raw = RNG.integers(0, 256, (64, 36), dtype=np.uint8)
    raw[:, 0:2] = random_halves(64).view(np.uint8).reshape(64, 2)
    ref = raw[:, 0:2].copy().view(np.float16).astype(np.float32) * raw[:, 4:].view(np.int8).astype(np.float32)
    check("dequant Q8_1", *same_floats(np.frombuffer(tool("dequant", "Q8_1", raw), np.float32), ref))
    raw = RNG.integers(0, 256, (16, 292), dtype=np.uint8)
    raw[:, 0:4] = RNG.standard_normal(16).astype(np.float32).view(np.uint8).reshape(16, 4)
    ref = raw[:, 0:4].copy().view(np.float32) * raw[:, 4:260].view(np.int8).astype(np.float32)
    check("dequant Q8_K", *same_floats(np.frombuffer(tool("dequant", "Q8_K", raw), np.float32), ref))


def test_rows(n):
    """Rows with varied magnitudes, an all-zero block, repeated values, ties."""
    x = RNG.standard_normal(n).astype(np.float32) * np.exp2(RNG.integers(-6, 6, n // 32).repeat(32)).astype(np.float32)
    x[:32] = 0.0
    x[32:64] = 1.0
    x[64:96] = np.linspace(-4, 4, 32, dtype=np.float32)
    return x


def test_quant_vs_gguf():
    x = test_rows(32 * 2048)
    for typ in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16", "F16"]:
        ours = np.frombuffer(tool("quant", typ, x), dtype=np.uint8)
        ref = quants.quantize(x.reshape(-1, 256), QT[typ]).view(np.uint8).ravel()
        bad = int((ours != ref).sum()) if ours.shape == ref.shape else -1
        check(f"quantize {typ} == gguf", bad == 0, f"{bad} bytes differ of {ref.size}")


def q8_K_ref(x):
    """numpy transcription of ggml quantize_row_q8_K_ref."""
    blocks = x.reshape(-1, 256)
    out = bytearray()
    for b in blocks:
        imax = int(np.argmax(np.abs(b)))
        mx = b[imax]
        if np.abs(b).max() == 0:
            out += np.zeros(1, np.float32).tobytes() + bytes(256) + bytes(32)
            continue
        iscale = np.float32(-127.0) / mx
        q = np.minimum(127, np.rint((iscale * b).astype(np.float32))).astype(np.int8)
        bs = q.astype(np.int32).reshape(16, 16).sum(axis=1).astype(np.int16)
        out += np.float32(np.float32(1) / iscale).tobytes() + q.tobytes() + bs.tobytes()
    return np.frombuffer(bytes(out), dtype=np.uint8)


def test_q8_K():
    x = test_rows(256 * 64)
    ours = np.frombuffer(tool("quant", "Q8_K", x), dtype=np.uint8)
    ref = q8_K_ref(x)
    bad = int((ours != ref).sum()) if ours.shape == ref.shape else -1
    check("quantize Q8_K == ggml ref (numpy)", bad == 0, f"{bad} bytes differ")


# Round trip bound, relative to the largest magnitude of each 256-block.
# A b-bit quantiser is off by at most half a step, plus (K types) the error
# of rounding each sub-block's scale to its few bits:
#   Q4_0/Q5_0 map the signed extreme to -8/-16, so the opposite extreme is
#   clamped: up to 1/8 and 1/16 of the max;  Q4_1/Q5_1 step = range/15,
#   /31 with range <= 2 max: half a step is 1/15, 1/31, plus the f16 min;
#   Q8_0: 1/254;  Q2_K…Q6_K: half a step of 3, 7, 15, 31, 63 levels over
#   the range plus 4/6/8-bit scale rounding.
RT_BOUND = {"Q2_K": 0.40, "Q3_K": 0.30, "Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03,
            "Q4_0": 0.126, "Q4_1": 0.07, "Q5_0": 0.0626, "Q5_1": 0.035, "Q8_0": 0.005}


def test_roundtrip():
    x = test_rows(256 * 256)
    for typ, bound in RT_BOUND.items():
        q = np.frombuffer(tool("quant", typ, x), dtype=np.uint8)
        y = quants.dequantize(q, QT[typ]).astype(np.float32)
        err = np.abs(y - x).reshape(-1, 256).max(axis=1)
        scale = np.maximum(np.abs(x).reshape(-1, 256).max(axis=1), 1e-30)
        worst = float((err / scale).max())
        # and the mean error must be well below the bound (a broken layout
        # fails this even where the bound is loose)
        mean = float((np.abs(y - x).reshape(-1, 256).mean(axis=1) / scale).mean())
        check(f"round trip {typ}", worst <= bound and mean <= bound / 3,
              f"max {worst:.4f} mean {mean:.4f} (bound {bound})")


def test_half():
    allh = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    ours = np.frombuffer(tool("h2f", "-", allh), dtype=np.float32)
    ref = allh.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    ok = np.array_equal(ours[~nan].view(np.uint32), ref[~nan].view(np.uint32)) and np.isnan(ours[nan]).all()
    check("half -> f32, all 65536", ok)
    # f32 -> half: every half value back, all halfway points, random bits
    fin = ref[~nan]
    srt = np.unique(fin[fin >= 0].astype(np.float64))
    mids = ((srt[:-1] + srt[1:]) / 2).astype(np.float32)  # exact in f32
    mids = np.concatenate([mids, -mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    rnd = RNG.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    extra = np.array([65504, 65519.99, 65520, 65536, 1e9, np.inf, -np.inf, 2**-25, 2**-24, 2**-26, 5.96e-8],
                     dtype=np.float32)
    allf = np.concatenate([fin, mids, rnd, extra]).astype(np.float32)
    ours = np.frombuffer(tool("f2h", "-", allf), dtype=np.uint16)
    with np.errstate(over="ignore"):
        ref = allf.astype(np.float16).view(np.uint16)
    nan = np.isnan(allf)
    ok_nan = np.isnan(ours[nan].view(np.float16)).all()
    bad = int((ours[~nan] != ref[~nan]).sum())
    check("f32 -> half rounding", bad == 0 and ok_nan, f"{bad} of {allf.size} differ")


def test_bf16():
    allb = np.arange(65536, dtype=np.uint32)
    ours = np.frombuffer(tool("bf2f", "-", allb.astype(np.uint16)), dtype=np.uint32)
    check("bf16 -> f32, all 65536", np.array_equal(ours, allb << 16))
    rnd = RNG.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32)
    ties = (RNG.integers(0, 2**16, 20000, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000
    allf = np.concatenate([rnd, ties, allb << 16]).view(np.float32)
    ours = np.frombuffer(tool("f2bf", "-", allf), dtype=np.uint16)
    ref = quants.quantize(allf, QT.BF16).view(np.uint16).ravel()
    bad = int((ours != ref).sum())
    check("f32 -> bf16 (gguf BF16 quantize)", bad == 0, f"{bad} of {allf.size} differ")


def q8_x86(x, with_sum):
    """numpy transcription of ggml-cpu x86 quantize_row_q8_0/_q8_1 (AVX2):
    d = amax/127 (half), q = round-half-even(x * (127/amax))."""
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint((b * idv[:, None]).astype(np.float32)).astype(np.int8)
    d = (amax / np.float32(127)).astype(np.float32)
    parts = [d.astype(np.float16).view(np.uint8).reshape(-1, 2)]
    if with_sum:
        s = (d * q.astype(np.int32).sum(axis=1).astype(np.float32)).astype(np.float32)
        parts.append(s.astype(np.float16).view(np.uint8).reshape(-1, 2))
    parts.append(q.view(np.uint8))
    return np.concatenate(parts, axis=1).ravel()


def test_act():
    x = test_rows(32 * 4096)
    ours = np.frombuffer(tool("act", "Q8_K", x), dtype=np.uint8)
    ref = q8_K_ref(x)
    bad = int((ours != ref).sum()) if ours.shape == ref.shape else -1
    check("activation quantiser Q8_K == ggml ref (numpy)", bad == 0, f"{bad} bytes differ")
    for typ, ws in (("Q8_0", False), ("Q8_1", True)):
        ours = np.frombuffer(tool("act", typ, x), dtype=np.uint8)
        ref = q8_x86(x, ws)
        bad = int((ours != ref).sum()) if ours.shape == ref.shape else -1
        check(f"activation quantiser {typ} == ggml-cpu x86", bad == 0, f"{bad} bytes differ")


def main():
    if not os.path.exists(TOOL):
        print(f"FAIL: {TOOL} not built")
        return 1
    test_dequant()
    test_quant_vs_gguf()
    test_q8_K()
    test_roundtrip()
    test_half()
    test_bf16()
    test_act()
    print(f"{len(FAILS)} failed: {FAILS}" if FAILS else "all quant checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
