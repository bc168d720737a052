#!/usr/bin/env python3
"""Prints the results of bench/vm-compare.sh as Markdown: every run, then each
registrar at its best closed-loop rate with the ratios ours/floor and
ours/RSPLIB, the same at equal pool-user counts, the latency at 50 % of each
registrar's maximum (open loop), and the registrars' CPU at rest (keep-alives
only).

Usage: python3 bench/vm-compare-report.py DIR   (DIR: vm-compare.sh's --out)
"""
import json
import pathlib
import re
import statistics
import sys

NAMES = {
    "floor": "floor (echo responder)",
    "ours": "ours (rserpool-registrar)",
    "ours_1shard": "ours, --shards 1",
    "ours_nopin": "ours, --no-pin",
    "rsplib": "RSPLIB rspregistrar",
}
ORDER = {"floor": 0, "ours": 1, "ours_1shard": 2, "ours_nopin": 3, "rsplib": 4}
# What ours is compared with, in this order, and how a ratio row names it.
BASES = {"floor": "floor", "rsplib": "RSPLIB"}
MODES = {"max": "max", "half": "50 %"}


def human(s):
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def cpu_window(c, p):
    """Shares of one vCPU (registrar, load generator) and of the VM in window p."""
    if f"{p}_window_us" not in c:
        return None
    secs = c[f"{p}_window_us"] / 1e6
    tck = c["clk_tck"]

    def share(k):
        return c[f"{p}_{k}_ticks"] / tck / secs

    w = {
        "reg_user": share("registrar_user"),
        "reg": share("registrar_user") + share("registrar_system"),
        "lg_user": share("loadgen_user"),
        "lg": share("loadgen_user") + share("loadgen_system"),
    }
    vm = {k: c[f"{p}_vm_{k}_ticks"] for k in ("user", "system", "softirq", "idle")}
    total = sum(vm.values())
    if total:
        w.update({"vm_" + k: v / total for k, v in vm.items()})
    return w


def load(out):
    runs = []
    for f in sorted(out.glob("*.json")):
        m = re.fullmatch(r"(\w+)-(\w+)-p(\d+)-(\d+)", f.stem)
        if not m:
            continue
        doc = json.loads(f.read_text())
        # A max run's only resolution series is closed loop; a half run (--rate 50%)
        # has its closed loop first, then the open loop at half of it.
        resolutions = [s for s in doc["series"] if s["name"].startswith("resolution")]
        if not resolutions:
            continue
        res = next((s for s in resolutions if "open" in s["name"]), resolutions[0])
        if m[2] == "max":
            res = resolutions[0]
        q = {round(k, 4): v for k, v in res["latency_s"]}
        run = {
            "registrar": m[1],
            "mode": m[2],
            "pus": int(m[3]),
            "run": int(m[4]),
            "rate": res["rate_per_s"],
            "errors": res["errors"],
            "p50": q[0.5],
            "p99": q[0.99],
            "p999": q[0.999],
            "max_then": resolutions[0]["rate_per_s"],
        }
        lag = next((s for s in doc["series"] if "send lag" in s["name"]), None)
        if lag and m[2] != "max":
            lq = {round(k, 4): v for k, v in lag["latency_s"]}
            run["lag_p50"], run["lag_p99"] = lq[0.5], lq[0.99]
        cpu = f.with_suffix(".cpu")
        if cpu.exists():
            c = {}
            for line in cpu.read_text().split():
                k, _, v = line.partition("=")
                c[k] = int(v)
            run["busy"] = cpu_window(c, "busy")
            run["rest"] = cpu_window(c, "rest")
            if run["busy"] and run["rate"]:
                b = run["busy"]
                run["reg_us"] = b["reg"] / run["rate"] * 1e6
                run["reg_user_us"] = b["reg_user"] / run["rate"] * 1e6
                run["lg_us"] = b["lg"] / run["rate"] * 1e6
                if run["rest"]:
                    run["reg_net_us"] = (b["reg"] - run["rest"]["reg"]) / run["rate"] * 1e6
        runs.append(run)
    return runs


def pct(x):
    return f"{x * 100:.0f} %"


def every_run(runs):
    print("### Every run\n")
    print(
        "| registrar | load | PUs | run | resolutions/s | p50 | p99 | p99.9 | errors "
        "| registrar CPU (user) | load gen. CPU (user) | VM user / sys / softirq / idle "
        "| registrar CPU at rest | registrar CPU per resolution (user; net of rest) "
        "| load gen. CPU per resolution |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in runs:
        cpu = lg = vm = rest = per = lgper = "–"
        b = r.get("busy")
        if b:
            cpu = f"{pct(b['reg'])} ({pct(b['reg_user'])})"
            lg = f"{pct(b['lg'])} ({pct(b['lg_user'])})"
            if "vm_user" in b:
                vm = " / ".join(
                    f"{b['vm_' + k] * 100:.0f}" for k in ("user", "system", "softirq", "idle")
                ) + " %"
        if r.get("rest"):
            rest = pct(r["rest"]["reg"])
        if "reg_us" in r:
            per = f"{r['reg_us']:.0f} µs ({r['reg_user_us']:.0f}"
            per += f"; {r['reg_net_us']:.0f} µs)" if "reg_net_us" in r else ")"
            lgper = f"{r['lg_us']:.0f} µs"
        print(
            f"| {r['registrar']} | {MODES.get(r['mode'], r['mode'])} | {r['pus']} | {r['run']} "
            f"| {r['rate']:.0f} | {human(r['p50'])} "
            f"| {human(r['p99'])} | {human(r['p999'])} | {r['errors']} | {cpu} | {lg} | {vm} "
            f"| {rest} | {per} | {lgper} |"
        )
    print(
        "\nCPU shares are of one vCPU (100 % = one vCPU busy), the user-space part in "
        "brackets; the VM columns are shares of all vCPUs. Busy = while the pool users "
        "resolve; rest = after they stopped, the 500 PEs still registered (keep-alives "
        "only; the floor sends none). Load max = closed loop; 50 % = open loop at half the "
        "maximum the same run measured first (no CPU samples). CPU per resolution = CPU time / resolutions; it includes the kernel's SCTP "
        "work done in the process's system calls (on loopback a sender also runs the "
        "receiver's SCTP input); 'net of rest' subtracts the keep-alive load. A rest "
        "sample is dropped ('–') when a PE was lost during it.\n"
    )


def best_run(rs):
    """The fastest of the repeated runs: the host's other load can only slow a run
    down, so the best one is the least disturbed."""
    return max(rs, key=lambda r: r["rate"])


def ratio(a, b, key):
    if a.get(key) and b.get(key):
        return f"{a[key] / b[key]:.2f}x"
    return "–"


def summary(runs):
    closed = [r for r in runs if r["mode"] == "max"]
    if not closed:
        return
    points = {}
    for r in closed:
        points.setdefault((r["registrar"], r["pus"]), []).append(r)
    med = {k: best_run(v) for k, v in points.items()}
    repeats = max(len(v) for v in points.values())
    best = {}
    for (reg, _), r in med.items():
        if reg not in best or r["rate"] > best[reg]["rate"]:
            best[reg] = r
    bases = [b for b in BASES if b in best]
    ours = [r for r in sorted(best, key=lambda r: ORDER.get(r, 9)) if r not in BASES]
    what = f"best of {repeats} runs" if repeats > 1 else "one run"
    print(f"### Best closed-loop rate of each registrar ({what} per pool-user count)\n")
    print(
        "| registrar | max resolutions/s | at PUs | p50 | p99 | p99.9 "
        "| registrar CPU per resolution | user space | net of rest |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(best.values(), key=lambda r: ORDER.get(r["registrar"], 9)):
        us = [f"{r[k]:.0f} µs" if k in r else "–" for k in ("reg_us", "reg_user_us", "reg_net_us")]
        print(
            f"| {NAMES.get(r['registrar'], r['registrar'])} | {r['rate']:.0f} | {r['pus']} "
            f"| {human(r['p50'])} | {human(r['p99'])} | {human(r['p999'])} | {' | '.join(us)} |"
        )
    for base in bases:
        s = best[base]
        # RSPLIB against the floor too: how far the reference is from the transport.
        for reg in ours + [b for b in bases if b != base and base == "floor"]:
            o = best[reg]
            bold = "**" if reg == "ours" else ""
            print(
                f"| {bold}{reg} / {BASES[base]}{bold} | {bold}{o['rate'] / s['rate']:.2f}x{bold} | "
                f"| {o['p50'] / s['p50']:.2f}x | {o['p99'] / s['p99']:.2f}x | {o['p999'] / s['p999']:.2f}x "
                f"| {ratio(o, s, 'reg_us')} | {ratio(o, s, 'reg_user_us')} | {ratio(o, s, 'reg_net_us')} |"
            )
    print(
        "\nThe latency ratios in this table compare different loads (each registrar at its "
        "own best pool-user count); the next table compares equal loads.\n"
    )
    if not bases:
        return
    print("### Ours / floor and ours / RSPLIB at the same number of pool users\n")
    print("| registrar | PUs | rate | p50 | p99 | p99.9 | registrar CPU per resolution | net of rest |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for base in bases:
        for reg in ours:
            for p in sorted({p for _, p in med}):
                if (reg, p) not in med or (base, p) not in med:
                    continue
                a, b = med[(reg, p)], med[(base, p)]
                print(
                    f"| {reg} / {BASES[base]} | {p} | {a['rate'] / b['rate']:.2f}x "
                    f"| {a['p50'] / b['p50']:.2f}x | {a['p99'] / b['p99']:.2f}x "
                    f"| {a['p999'] / b['p999']:.2f}x "
                    f"| {ratio(a, b, 'reg_us')} | {ratio(a, b, 'reg_net_us')} |"
                )
    print("\nRate ratio above 1 = ours faster; latency and CPU ratios below 1 = ours lower.\n")


def half_load(runs):
    """Open loop at half of each registrar's maximum: the median of its runs, per
    figure (the runs are few and their latencies vary with the host's load)."""
    by_reg = {}
    for r in runs:
        if r["mode"] == "half":
            by_reg.setdefault(r["registrar"], []).append(r)
    if not by_reg:
        return
    regs = sorted(by_reg, key=lambda r: ORDER.get(r, 9))
    m = {}
    for reg in regs:
        rs = by_reg[reg]
        m[reg] = {k: statistics.median(r[k] for r in rs) for k in ("rate", "p50", "p99", "p999")}
        m[reg]["pus"] = rs[0]["pus"]
        m[reg]["n"] = len(rs)
        m[reg]["max_then"] = statistics.median(r["max_then"] for r in rs)
        for k in ("lag_p50", "lag_p99"):
            if all(k in r for r in rs):
                m[reg][k] = statistics.median(r[k] for r in rs)
    n = max(v["n"] for v in m.values())
    print(f"### At 50 % load: open loop at half of each registrar's maximum (median of {n} runs)\n")
    print(
        "| registrar | PUs | maximum then | resolutions/s | p50 | p99 | p99.9 | p99.9 ÷ p50 "
        "| generator send lag p50 / p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for reg in regs:
        v = m[reg]
        lag = f"{human(v['lag_p50'])} / {human(v['lag_p99'])}" if "lag_p99" in v else "–"
        print(
            f"| {NAMES.get(reg, reg)} | {v['pus']} | {v['max_then']:.0f} | {v['rate']:.0f} "
            f"| {human(v['p50'])} | {human(v['p99'])} | {human(v['p999'])} "
            f"| {v['p999'] / v['p50']:.1f} | {lag} |"
        )
    for base in (b for b in BASES if b in m):
        for reg in (r for r in regs if r not in BASES):
            a, b = m[reg], m[base]
            bold = "**" if reg == "ours" else ""
            print(
                f"| {bold}{reg} / {BASES[base]}{bold} | | {a['max_then'] / b['max_then']:.2f}x "
                f"| {a['rate'] / b['rate']:.2f}x "
                f"| {a['p50'] / b['p50']:.2f}x | {a['p99'] / b['p99']:.2f}x "
                f"| {a['p999'] / b['p999']:.2f}x | {(a['p999'] / a['p50']) / (b['p999'] / b['p50']):.2f}x "
                f"| |"
            )
    print(
        "\nEach run (`--rate 50%`) measures its maximum closed loop first ('maximum then') "
        "and then runs open loop at half of it, so the rates differ between registrars; the "
        "ratios compare each at the same relative load. Open-loop latency counts from each "
        "request's intended send time, so it includes the load generator's own send lag "
        "(how late its sleeps let it send; large when the VM starves it).\n"
    )


def settings(out):
    """PEs and keep-alive interval from settings.txt (defaults: 500, 1000 ms)."""
    pes, interval = 500, 1000
    f = out / "settings.txt"
    if f.exists():
        t = f.read_text()
        if m := re.search(r"(\d+) PEs", t):
            pes = int(m[1])
        if m := re.search(r"keep-alive: interval (\d+) ms", t):
            interval = int(m[1])
    return pes, interval


def at_rest(runs, out):
    """The registrar's CPU with only keep-alives to answer, over every rest sample."""
    by_reg = {}
    for r in runs:
        if r.get("rest"):
            by_reg.setdefault(r["registrar"], []).append(r["rest"]["reg"])
    if not by_reg:
        return
    pes, interval = settings(out)
    per_s = pes * 1000 / interval
    print(f"### At rest: {pes} PEs registered, keep-alives only ({per_s:.0f} per second)\n")
    print("| registrar | samples | registrar CPU (median) | min – max | CPU per keep-alive exchange |")
    print("|---|---:|---:|---:|---:|")
    for reg in sorted(by_reg, key=lambda r: ORDER.get(r, 9)):
        v = by_reg[reg]
        med = statistics.median(v)
        per = "–" if reg == "floor" else f"{med / per_s * 1e6:.0f} µs"
        print(f"| {NAMES.get(reg, reg)} | {len(v)} | {pct(med)} | {pct(min(v))} – {pct(max(v))} | {per} |")
    print(
        "\nShares of one vCPU, sampled over 2 s after each run's pool users stopped (the "
        "load generator's PE threads answer the keep-alives meanwhile). The floor sends no "
        "keep-alives: its row is the idle cost.\n"
    )


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    runs = load(out)
    if not runs:
        sys.exit(f"no results in {out}")
    runs.sort(
        key=lambda r: (list(MODES).index(r["mode"]) if r["mode"] in MODES else 9, r["pus"],
                       r["run"], ORDER.get(r["registrar"], 9))
    )
    every_run(runs)
    summary(runs)
    half_load(runs)
    at_rest(runs, out)


if __name__ == "__main__":
    main()
