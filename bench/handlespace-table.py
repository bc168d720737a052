#!/usr/bin/env python3
"""Prints criterion's handlespace results as a table: median ns per operation for each
policy, operation and pool size, plus the 50,000/500 growth ratio.

Usage: cargo bench -p rserpool-bench --bench handlespace && python3 bench/handlespace-table.py
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
ops = ["resolve3", "register", "reregister", "deregister"]
sizes = ["10", "500", "50000"]
rows = []
for group in sorted(root.glob("handlespace_*")):
    policy = group.name.removeprefix("handlespace_")
    for op in ops:
        med = {}
        for n in sizes:
            est = group / op / n / "new" / "estimates.json"
            if est.exists():
                med[n] = json.loads(est.read_text())["median"]["point_estimate"]
        if med:
            rows.append((policy, op, med))
if not rows:
    sys.exit(f"no criterion results under {root}")
print(f"| policy | operation | {' | '.join(s + ' PEs' for s in sizes)} | 50k/500 |")
print("|---|---|" + "---:|" * (len(sizes) + 1))
worst = 0.0
for policy, op, med in rows:
    cells = [f"{med[n]:.0f} ns" if n in med else "–" for n in sizes]
    ratio = med["50000"] / med["500"] if "50000" in med and "500" in med else float("nan")
    worst = max(worst, ratio)
    print(f"| {policy} | {op} | {' | '.join(cells)} | {ratio:.2f}× |")
print(f"\nlargest 50k/500 growth: {worst:.2f}×")
