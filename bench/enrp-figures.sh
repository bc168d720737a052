#!/usr/bin/env bash
# ENRP figures over loopback TCP, from one run on this machine (release build; the
# registrars, 2 shards each and unpinned, in their own processes; the load generator in
# another; all on the same cores):
#
#   bench/enrp-figures.sh [--duration S] [--out FILE.md]
#
# a. propagation: 3 registrars started here with ENRP over TCP and static peers;
#    registrations acknowledged at A, timed until B lists them, and deregistrations
#    until B no longer does, at 1,000 trials/s (`rserpool-loadgen propagation`).
# b. takeover: 500 PEs at a registrar that is killed (SIGKILL), timed until every PE has
#    answered a survivor's home-flag keep-alive, with the registrar's default ENRP
#    timers and with fast ones (`rserpool-loadgen takeover`, 3 registrars of 1 shard).
# c. resolution throughput of a registrar that applies 1,000 ENRP updates/s (A1, the
#    peer of B and C, with churn at B) against one that does not (A0, no ENRP), both of
#    1 shard, side by side, runs alternating (`resolve --rate max --no-floor`, 9 pairs,
#    median of the paired ratios). Also A1's CPU time per update (from /proc, without
#    resolutions), the core's own cost per update (criterion), and, for reference, a
#    registrar alone on an idle machine.
# Prints a Markdown report and writes it to --out (default bench/results/enrp-DATE.md),
# with the JSON of every run next to it. About 5 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5
out="bench/results/enrp-$(date +%F).md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "enrp-figures: unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p rserpool-shards -p rserpool-loadgen --bins
json_dir="${out%.md}"
mkdir -p "$json_dir"
reg=target/release/rserpool-registrar
lg=target/release/rserpool-loadgen
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
# N loopback ports free right now (picked just before use: the load generator's own
# connections take ports too).
free_ports() {
  python3 -c "
import socket
socks = [socket.socket() for _ in range($1)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))"
}
await_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "enrp-figures: nothing listens on port $1" >&2; exit 1
}
common=(--no-pin --allow-loopback --log-level warn)

# c, reference: A alone on an otherwise idle machine.
alone=$(free_ports 1)
$reg --asap "tcp://127.0.0.1:$alone" --shards 1 "${common[@]}" &
pids+=($!)
await_port "$alone"
$lg resolve --registrar "tcp://127.0.0.1:$alone" --pool Alone --pes 500 --items 3 --pus 16 \
  --rate max --duration "$duration" --json "$json_dir/resolve-alone.json"
stop_all

# The scope: A, B, C with ENRP over TCP, each with the other two as static peers.
read -r -a ports <<< "$(free_ports 6)"
asap=("${ports[0]}" "${ports[1]}" "${ports[2]}")
enrp=("${ports[3]}" "${ports[4]}" "${ports[5]}")
start_scope_member() { # index, shards, then extra flags
  local i=$1 shards=$2; shift 2
  local peers=()
  for j in 0 1 2; do
    [ "$j" != "$i" ] && peers+=(--peer "tcp://127.0.0.1:${enrp[$j]}")
  done
  $reg --id $((i + 1)) --asap "tcp://127.0.0.1:${asap[$i]}" --enrp "tcp://127.0.0.1:${enrp[$i]}" \
    "${peers[@]}" --shards "$shards" "${common[@]}" "$@" &
  pids+=($!)
}
for i in 0 1 2; do start_scope_member "$i" 2; done
for i in 0 1 2; do await_port "${asap[$i]}"; done
A="tcp://127.0.0.1:${asap[0]}"
B="tcp://127.0.0.1:${asap[1]}"

# a. propagation A -> B at 1,000 trials/s.
$lg propagation --pe-registrar "$A" --pu-registrar "$B" --rate 1000 --duration "$duration" \
  --json "$json_dir/propagation.json" --svg "$json_dir/propagation.svg"
stop_all

# c. B and C in a scope with churn at B (1,000 operations/s, each one ENRP update to
# every peer) throughout. Two registrars of 1 shard each beside them: A0 a registrar of
# its own (no ENRP), A1 their ENRP peer, applying every update. Resolution runs
# alternate between them (A0, A1, A0, ...), so both meet the same background and the
# same drift; the figure is the median of the paired ratios. Fresh ports.
read -r -a ports <<< "$(free_ports 7)"
asap=("${ports[0]}" "${ports[1]}" "${ports[2]}")
enrp=("${ports[3]}" "${ports[4]}" "${ports[5]}")
A0="tcp://127.0.0.1:${ports[6]}"
A1="tcp://127.0.0.1:${asap[0]}"
B="tcp://127.0.0.1:${asap[1]}"
for i in 1 2; do start_scope_member "$i" 2; done
start_scope_member 0 1
a1_pid=${pids[-1]}
$reg --asap "$A0" --shards 1 "${common[@]}" &
pids+=($!)
for p in "${asap[@]}" "${ports[6]}"; do await_port "$p"; done
c_runs=9
# Each resolve run (no echo floor) takes its duration plus its registrations.
$lg churn --registrar "$B" --pool Churn --pes 500 --pe-connections 8 --rate 1000 \
  --duration $(( 2 * c_runs * (duration + 4) + duration + 15 )) \
  --json "$json_dir/churn.json" > "$json_dir/churn.txt" &
churn=$!
sleep 3
# CPU seconds (user + system) a process has used, from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
cpu0=$(cpu_s "$a1_pid")
sleep "$duration"
cpu1=$(cpu_s "$a1_pid")
echo "$cpu0 $cpu1 $duration" > "$json_dir/peer-cpu.txt"
for r in $(seq $c_runs); do
  $lg resolve --registrar "$A0" --pool "Control$r" --pes 500 --items 3 --pus 16 --rate max \
    --no-floor --duration "$duration" --json "$json_dir/resolve-control-$r.json"
  $lg resolve --registrar "$A1" --pool "Peer$r" --pes 500 --items 3 --pus 16 --rate max \
    --no-floor --duration "$duration" --json "$json_dir/resolve-peer-$r.json"
done
wait "$churn"
stop_all

# c, the core's share: a peer's update applied and a resolution answered by one shard's
# Registrar, in user space only (criterion medians).
cargo bench -q -p rserpool-bench --bench enrp -- --noplot 2>/dev/null | tee "$json_dir/core.txt" | grep -E "time:" || true

# b. takeover, 500 PEs, default and fast ENRP timers (the scenario starts its own
# registrars next to the load generator's binary).
$lg takeover --pes 500 --timers default --json "$json_dir/takeover-default.json" \
  --svg "$json_dir/takeover-default.svg"
$lg takeover --pes 500 --timers fast --json "$json_dir/takeover-fast.json" \
  --svg "$json_dir/takeover-fast.svg"

python3 - "$json_dir" "$out" "$duration" <<'PY'
import json, sys, os, datetime
d, out, duration = sys.argv[1], sys.argv[2], sys.argv[3]
load = lambda n: json.load(open(os.path.join(d, n)))
def s(doc, name):
    return next(x for x in doc["series"] if x["name"].startswith(name))
def q(x, p):
    return dict((k, v) for k, v in x["latency_s"])[p]
us = lambda v: f"{v * 1e6:.0f} µs" if v < 1e-3 else f"{v * 1e3:.2f} ms"
ns = lambda v: f"{v * 1e9:.0f} ns" if v < 1e-6 else us(v)
sec = lambda v: f"{v:.2f} s" if v >= 1 else f"{v * 1e3:.0f} ms"
p = load("propagation.json")
reg, dereg, rnd = s(p, "propagation: registration"), s(p, "propagation: deregistration"), s(p, "  observer round")
td, tf = load("takeover-default.json"), load("takeover-fast.json")
alone = s(load("resolve-alone.json"), "resolution (closed loop)")
runs = lambda kind: [s(load(f"resolve-{kind}-{r}.json"), "resolution (closed loop)")
                     for r in range(1, 100) if os.path.exists(os.path.join(d, f"resolve-{kind}-{r}.json"))]
control, peer = runs("control"), runs("peer")
ratios = sorted(p["rate_per_s"] / c["rate_per_s"] for c, p in zip(control, peer))
median_ratio = ratios[len(ratios) // 2]
c = load("churn.json")
churn_ops = sum(x["count"] for x in c["series"])
churn_rate = churn_ops / max(x["elapsed_s"] for x in c["series"])
cpu0, cpu1, window = (float(v) for v in open(os.path.join(d, "peer-cpu.txt")).read().split())
per_update_us = (cpu1 - cpu0) / (churn_rate * window) * 1e6
import re
core = {}
name = None
for line in open(os.path.join(d, "core.txt")):
    if line.startswith("enrp/"):
        name = line.split("/", 1)[1].split("(")[0].strip()
    m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
    if m and name:
        v, unit = float(m.group(1)), m.group(2)
        core[name] = v * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3}[unit]
lines = [f"# ENRP figures, {datetime.date.today()}", "",
         f"`bench/enrp-figures.sh --duration {duration}` on this machine (2 cores), release build; registrars "
         "in their own processes (2 shards, unpinned, except the takeover's: 1 shard), ENRP over TCP with static "
         "peers, the load generator in another process, all sharing the 2 cores.", "",
         "## a. Propagation (3 registrars, A → B)", "",
         "| | trials | p50 | p99 | max | errors |", "|---|---:|---:|---:|---:|---:|"]
for name, x in (("registration acknowledged at A → listed at B", reg),
                ("deregistration acknowledged at A → gone at B", dereg)):
    lines.append(f"| {name} | {x['count']} at {x['rate_per_s']:.0f}/s | {us(q(x, 0.5))} | {us(q(x, 0.99))} | "
                 f"{us(q(x, 1.0))} | {x['errors']} |")
lines += ["", f"Each time ends with the observer round that saw the change, so it is late by at most one "
          f"round: rounds took p50 {us(q(rnd, 0.5))}, p99 {us(q(rnd, 0.99))} "
          f"(one connection to B, one request per waiting trial).", "",
          "## b. Takeover (3 registrars, 500 PEs at the one killed)", "",
          "| ENRP timers | PEs adopted | p50 | p99 | every PE adopted (max) | lost |", "|---|---:|---:|---:|---:|---:|"]
for name, t in (("default (heartbeat 2444 ms, max-time-last-heard 5 s, max-time-no-response 5 s, takeover expiry 5 s)", td),
                ("fast (100 ms; 200 ms; 200 ms; 200 ms)", tf)):
    a = s(t, "takeover: PE adopted")
    lines.append(f"| {name} | {t['summary']['adopted']} | {sec(q(a, 0.5))} | {sec(q(a, 0.99))} | "
                 f"{sec(t['summary']['all_adopted_s'])} | {t['summary']['lost']} |")
lines += ["", "From the SIGKILL to each PE's answer to a survivor's keep-alive with the home flag; keep-alives "
          "1000 ms / 1000 ms. Detection takes MAX-TIME-LAST-HEARD plus MAX-TIME-NO-RESPONSE after the last "
          "presence heard; the acknowledgements of the takeover come from live peers at once.", "",
          "## c. Resolution throughput while applying peers' updates (closed loop, 16 pool users, 500-PE pool, 3 items)", "",
          f"B and C form a scope; churn at B ({churn_rate:.0f} registrations, re-registrations and deregistrations "
          "per second, each one ENRP handle update to every peer) runs throughout. Beside them, two registrars of "
          "1 shard each: A0 on its own (no ENRP) and A1, their ENRP peer, which applies every update. Resolution "
          f"runs alternate between A0 and A1 ({len(peer)} pairs), so both meet the same background load and drift.", "",
          "| pair | A0 (no ENRP) resolutions/s | A1 (ENRP peer) resolutions/s | A1 / A0 |", "|---:|---:|---:|---:|"]
for i, (c0, p1) in enumerate(zip(control, peer), 1):
    lines.append(f"| {i} | {c0['rate_per_s']:.0f} | {p1['rate_per_s']:.0f} | {p1['rate_per_s'] / c0['rate_per_s']:.2f} |")
lines += ["", f"Median of the paired ratios: **{median_ratio:.2f}×** (from {ratios[0]:.2f} to {ratios[-1]:.2f}). "
          "While A0 is measured, A1 keeps applying updates in the background, which weighs on A0 too; A1's own CPU "
          "time for the updates (next line) bounds that share."]
lines += ["", f"A1's own CPU time while applying the updates without resolutions: {(cpu1 - cpu0) * 1e3:.0f} ms over "
          f"{window:.0f} s, about {per_update_us:.0f} µs per update ({(cpu1 - cpu0) / window * 100:.1f} % of one core, "
          f"{(cpu1 - cpu0) / window * 50:.1f} % of the machine's two, at this rate; /proc's 10 ms ticks bound the "
          "precision): the most resolution capacity the updates can take from A1.",
          "",
          (f"In user space alone (`cargo bench -p rserpool-bench --bench enrp`, one shard's registrar, criterion "
           f"medians) a peer's ADD_PE applied costs {ns(core['peer ADD_PE applied'])} and a 3-item resolution "
           f"{ns(core['resolution of 3'])}: at {churn_rate:.0f} updates/s the updates take "
           f"{churn_rate * core['peer ADD_PE applied'] * 100:.2f} % of one core's user time. The rest of the CPU time "
           "above is the kernel's: receiving each update and waking the shards, which a busy registrar batches."
           if len(core) == 2 else "(the core benchmark did not run)"),
          "",
          f"For reference, a registrar of 1 shard alone on an otherwise idle machine: {alone['rate_per_s']:.0f} resolutions/s "
          f"(p99 {us(q(alone, 0.99))}); A0's difference to it is the CPU that B, C, A1 and the churn "
          "generator take from the same 2 cores.", ""]
text = "\n".join(lines)
print(text)
open(out, "w").write(text)
PY
