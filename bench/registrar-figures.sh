#!/usr/bin/env bash
# The registrar's headline figures over loopback TCP, from one run on this machine:
# the registrar binary (2 shards, pinned) in its own process, the load generator in
# another, both on the same 2 cores.
#
#   bench/registrar-figures.sh [--duration S] [--rounds N] [--out FILE.md]
#
# 1. resolution: 500-PE pool, 3 items. Closed loop with 16 pool users gives the maximum
#    rate (and its p99) against the echo responder's closed-loop rate with as many
#    users: N rounds (default 10) of 1 s on the registrar then 1 s on the responder,
#    the ratio the median of the rounds' ratios. The responder runs in a process of
#    its own, as the registrar does; a second such run with the responder inside the
#    load generator (no address-space switch between its threads) is reported too.
#    Then open loop at 50 % of the maximum from 2 pool users for S seconds gives
#    p50/p99, divided by the echo floor measured the same way at the same rate.
# 2. failover: crash (close the connection) 500 single PEs; hang 20 × 10 PEs with
#    keep-alive interval 100 ms and timeout 100 ms; per PE, failure until no answer on
#    any of 8 observer connections names it (see the README's failover scenario).
# Prints a Markdown table and writes it to --out (default bench/results/registrar-DATE.md),
# with the JSON of every run next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5
rounds=10
out="bench/results/registrar-$(date +%F).md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "registrar-figures: unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p rserpool-shards -p rserpool-loadgen --bins
json_dir="${out%.md}"
mkdir -p "$json_dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/rserpool-registrar --asap "tcp://127.0.0.1:$port" --shards 2 --allow-loopback \
  --keep-alive-interval 100 --keep-alive-timeout 100 --log-level warn &
registrar=$!
trap 'kill $registrar 2>/dev/null; wait $registrar 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
lg=target/release/rserpool-loadgen
reg="tcp://127.0.0.1:$port"
$lg resolve --registrar "$reg" --pool MaxPool --pes 500 --items 3 --pus 16 --rate max \
  --duration 1 --rounds "$rounds" --json "$json_dir/max.json"
$lg resolve --registrar "$reg" --pool MaxPool2 --pes 500 --items 3 --pus 16 --rate max \
  --duration 1 --rounds "$rounds" --floor-in-process --json "$json_dir/max-floor-in-process.json"
half=$(python3 -c "import json; print(int(json.load(open('$json_dir/max.json'))['summary']['max_rate_per_s'] / 2))")
$lg resolve --registrar "$reg" --pes 500 --items 3 --pus 2 --rate "$half" --duration "$duration" \
  --json "$json_dir/resolve.json" --svg "$json_dir/resolve.svg"
$lg failover --registrar "$reg" --pool CrashPool --pes 500 --mode crash --trials 500 \
  --keep-alive-interval 100 --keep-alive-timeout 100 --json "$json_dir/crash.json"
$lg failover --registrar "$reg" --pool HangPool --pes 500 --mode hang --trials 20 --batch 10 \
  --keep-alive-interval 100 --keep-alive-timeout 100 --json "$json_dir/hang.json"

python3 - "$json_dir" "$out" "$duration" "$rounds" <<'PY'
import json, sys, os, datetime
d, out, duration, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
load = lambda n: json.load(open(os.path.join(d, n)))
m, r, c, h = load("max.json"), load("resolve.json"), load("crash.json"), load("hang.json")
mi = load("max-floor-in-process.json")
def s(doc, prefix):
    return next(x for x in doc["series"] if x["name"].startswith(prefix))
def q(x, p):
    return dict((k, v) for k, v in x["latency_s"])[p]
us = lambda v: f"{v * 1e6:.1f} µs"
ms = lambda v: f"{v * 1e3:.2f} ms"
closed = s(m, "resolution (closed loop)")
echo_max = s(m, "echo floor (closed loop)")
opn, floor = s(r, "resolution (open"), s(r, "echo floor (open")
lag = s(r, "  generator send lag")
cr, hg = s(c, "failover"), s(h, "failover")
rows = [
    ("max resolutions/s (closed loop, 16 PUs)", f"{closed['rate_per_s']:.0f}/s, p99 {us(q(closed, 0.99))}",
     "≥ 100,000/s with p99 < 1 ms", closed["rate_per_s"] >= 100_000 and q(closed, 0.99) < 1e-3),
    ("registrar ÷ echo responder (own process), same 16 PUs, closed loop: median of the rounds",
     f"{m['summary']['max_rate_over_floor']:.2f}× (rounds {min(m['summary']['max_rate_over_floor_rounds']):.2f}–{max(m['summary']['max_rate_over_floor_rounds']):.2f}×); "
     f"echo {echo_max['rate_per_s']:.0f}/s, p99 {us(q(echo_max, 0.99))}",
     "≥ 0.95×", m['summary']['max_rate_over_floor'] >= 0.95),
    ("registrar ÷ echo responder inside the load generator, same (second run)",
     f"{mi['summary']['max_rate_over_floor']:.2f}× (rounds {min(mi['summary']['max_rate_over_floor_rounds']):.2f}–{max(mi['summary']['max_rate_over_floor_rounds']):.2f}×); "
     f"registrar {s(mi, 'resolution (closed loop)')['rate_per_s']:.0f}/s, echo {s(mi, 'echo floor (closed loop)')['rate_per_s']:.0f}/s",
     "(reported)", None),
    (f"resolution p50 at 50 % ({opn['rate_per_s']:.0f}/s, open loop, 2 PUs) ÷ echo floor",
     f"{us(q(opn, 0.5))} / {us(q(floor, 0.5))} = {q(opn, 0.5) / q(floor, 0.5):.2f}×", "≤ 1.5×",
     q(opn, 0.5) / q(floor, 0.5) <= 1.5),
    ("resolution p99 at 50 % ÷ echo floor",
     f"{us(q(opn, 0.99))} / {us(q(floor, 0.99))} = {q(opn, 0.99) / q(floor, 0.99):.2f}×", "(reported)", None),
    ("crashed PE gone from all answers, p99", f"{ms(q(cr, 0.99))} (p50 {ms(q(cr, 0.5))}, max {ms(q(cr, 1.0))}, n={cr['count']})",
     "≤ 1 ms", q(cr, 0.99) <= 1e-3),
    ("hung PE gone, max", f"{ms(q(hg, 1.0))} (p50 {ms(q(hg, 0.5))}, p99 {ms(q(hg, 0.99))}, n={hg['count']})",
     "≤ 100 + 100 + 10 ms", q(hg, 1.0) <= 0.210),
]
lines = [f"# Registrar figures, {datetime.date.today()}", "",
         f"`bench/registrar-figures.sh --duration {duration} --rounds {rounds}` on this machine (2 cores); registrar: 2 pinned shards, "
         "keep-alive 100 ms / 100 ms, in its own process; load generator in another; the echo responder in a third "
         "unless said otherwise. Closed loop: rounds of 1 s on the registrar then 1 s on the responder.", "",
         "| figure | measured | target | met |", "|---|---|---|---|"]
for name, val, target, met in rows:
    lines.append(f"| {name} | {val} | {target} | {'' if met is None else ('yes' if met else 'NO')} |")
lines += ["", f"Generator send lag at 50 % (the load generator's own scheduling delay, included in both open-loop series): "
          f"p50 {us(q(lag, 0.5))}, p99 {us(q(lag, 0.99))}.", ""]
text = "\n".join(lines)
print(text)
open(out, "w").write(text)
PY
