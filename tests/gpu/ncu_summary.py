#!/usr/bin/env python3
"""ncu_summary.py — per-kernel time from `ncu --csv --metrics gpu__time_duration.sum`:
kernels grouped by name (templates folded), total and mean duration, calls per
step.  Usage: ncu_summary.py NCU.csv STEPS"""
import csv
import re
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if r]
steps = int(sys.argv[2])
hdr = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
cols = rows[hdr]
kn, mv, mu = cols.index("Kernel Name"), cols.index("Metric Value"), cols.index("Metric Unit")
agg = {}
for r in rows[hdr + 1:]:
    if len(r) <= mv:
        continue
    name = re.sub(r"<.*", "", r[kn]).replace("void ", "").split("(")[0]
    v = float(r[mv].replace(",", ""))
    unit = r[mu]
    us = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[unit] * v
    t, n = agg.get(name, (0.0, 0))
    agg[name] = (t + us, n + 1)
total = sum(t for t, _ in agg.values())
print("%-28s %8s %10s %10s %7s" % ("kernel", "calls/st", "us/call", "us/step", "share"))
for name, (t, n) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
    print("%-28s %8.1f %10.2f %10.2f %6.1f%%" % (name[:28], n / steps, t / n, t / steps, 100 * t / total))
print("%-28s %8s %10s %10.2f   (sum of kernel durations per step)" % ("total", "", "", total / steps))
