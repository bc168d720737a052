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
# c. resolution throughput of one registrar alone (no ENRP) against the same registrar
#    with two ENRP peers, idle and exchanging 1,000 updates/s (churn at a peer while
#    `resolve --rate max` measures the registrar).
# Prints a Markdown report and writes it to --out (default bench/results/enrp-DATE.md),
# with the JSON of every run next to it. About 2 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5
out="bench/results/enrp-$(date +%F).md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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
common=(--shards 2 --no-pin --allow-loopback --log-level warn)

# c, alone: one registrar without ENRP.
alone=$(free_ports 1)
$reg --asap "tcp://127.0.0.1:$alone" "${common[@]}" &
pids+=($!)
await_port "$alone"
$lg resolve --registrar "tcp://127.0.0.1:$alone" --pool Alone --pes 500 --items 3 --pus 16 \
  --rate max --duration "$duration" --json "$json_dir/resolve-alone.json"
stop_all

# The scope: A, B, C with ENRP over TCP, each with the other two as static peers.
read -r -a ports <<< "$(free_ports 6)"
asap=("${ports[0]}" "${ports[1]}" "${ports[2]}")
enrp=("${ports[3]}" "${ports[4]}" "${ports[5]}")
for i in 0 1 2; do
  peers=()
  for j in 0 1 2; do
    [ "$j" != "$i" ] && peers+=(--peer "tcp://127.0.0.1:${enrp[$j]}")
  done
  $reg --id $((i + 1)) --asap "tcp://127.0.0.1:${asap[$i]}" --enrp "tcp://127.0.0.1:${enrp[$i]}" \
    "${peers[@]}" "${common[@]}" &
  pids+=($!)
done
for i in 0 1 2; do await_port "${asap[$i]}"; done
A="tcp://127.0.0.1:${asap[0]}"
B="tcp://127.0.0.1:${asap[1]}"

# a. propagation A -> B at 1,000 trials/s.
$lg propagation --pe-registrar "$A" --pu-registrar "$B" --rate 1000 --duration "$duration" \
  --json "$json_dir/propagation.json" --svg "$json_dir/propagation.svg"

# c, with peers: idle, then with churn at B (1,000 operations/s, each one ENRP update to
# A and to C) running across the whole resolution measurement.
$lg resolve --registrar "$A" --pool Idle --pes 500 --items 3 --pus 16 --rate max \
  --duration "$duration" --json "$json_dir/resolve-peers-idle.json"
$lg churn --registrar "$B" --pool Churn --pes 500 --pe-connections 8 --rate 1000 \
  --duration $((2 * duration + 4)) --json "$json_dir/churn.json" > "$json_dir/churn.txt" &
churn=$!
sleep 2
$lg resolve --registrar "$A" --pool Busy --pes 500 --items 3 --pus 16 --rate max \
  --duration "$duration" --json "$json_dir/resolve-peers-churn.json"
wait $churn
stop_all

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
sec = lambda v: f"{v:.2f} s" if v >= 1 else f"{v * 1e3:.0f} ms"
p = load("propagation.json")
reg, dereg, rnd = s(p, "propagation: registration"), s(p, "propagation: deregistration"), s(p, "  observer round")
td, tf = load("takeover-default.json"), load("takeover-fast.json")
alone, idle, busy = (s(load(f), "resolution (closed loop)") for f in
                     ("resolve-alone.json", "resolve-peers-idle.json", "resolve-peers-churn.json"))
c = load("churn.json")
churn_ops = sum(x["count"] for x in c["series"])
churn_rate = churn_ops / max(x["elapsed_s"] for x in c["series"])
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
          "## c. Resolution throughput with ENRP peers (closed loop, 16 pool users, 500-PE pool, 3 items)", "",
          "| registrar A | resolutions/s | p99 | ratio to alone |", "|---|---:|---:|---:|"]
for name, x in (("alone (no ENRP)", alone), ("with 2 ENRP peers, idle", idle),
                (f"with 2 ENRP peers, churn at B ({churn_rate:.0f} updates/s to A)", busy)):
    lines.append(f"| {name} | {x['rate_per_s']:.0f} | {us(q(x, 0.99))} | {x['rate_per_s'] / alone['rate_per_s']:.2f}× |")
lines += ["", "On 2 cores the peers, the churn generator and the pool users compete with A for CPU, so the "
          "ratio is an upper bound on what applying 1,000 updates/s costs A itself.", ""]
text = "\n".join(lines)
print(text)
open(out, "w").write(text)
PY
