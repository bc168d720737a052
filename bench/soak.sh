#!/usr/bin/env bash
# Soak test: the registrar binary (release, 2 shards, TCP on loopback) under load for a
# long time, with churn, failovers and abusive clients beside the legitimate ones.
#
#   bench/soak.sh [--duration S] [--shards N] [--load P] [--no-abuse] [--out DIR]
#
# 1. Measures the maximum resolution rate (closed loop, 5 s), then for --duration seconds
#    (default 3600) runs at once: resolutions at --load % of it (default 80, open loop,
#    500-PE pool); registration churn (200-PE pool, 200 operations/s); failovers
#    (`rserpool-loadgen failover`, crash and hang in turn, 50-PE pool); legitimate PEs
#    that answer their keep-alives (bench/soak-clients.py: 20 PEs in pool SoakLegit); and,
#    unless --no-abuse, abusive clients (slowloris, never-reading pipelined resolutions,
#    re-registration of the legitimate PEs' ids, unreachable-report floods, garbage).
# 2. Samples the registrar's RSS every --duration/120 s (at least 2 s) and scrapes its
#    Prometheus metrics (--metrics) at the start and the end.
# 3. Prints RSS drift after warm-up (the first 20 %; goal < 5 %), errors (goal 0: the load
#    generator's failed operations, commands that failed, a registrar that died) and lost
#    PEs (goal 0: legitimate PEs no longer resolvable at the end, or resolvable with
#    another PE's transport after a hijack), plus what the abusive clients saw and the
#    metrics' deltas. Exits non-zero if a goal is missed.
# Everything goes to --out (default bench/results/soak-DATE-TIME/): logs, JSON, rss.csv,
# metrics-start.txt, metrics-loaded.txt (shortly before the end, under load),
# metrics-end.txt (after every client closed), summary.txt. Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=3600 shards=2 load=80 abuse=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --no-abuse) abuse=0; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 60 ]] || { echo "soak: --duration must be ≥ 60 s" >&2; exit 2; }
out=${out:-bench/results/soak-$(date +%F-%H%M)}
mkdir -p "$out"

cargo build --release -q -p rserpool-shards -p rserpool-loadgen --bins
asap=$(port) metrics=$(port)
reg="tcp://127.0.0.1:$asap"
lg=target/release/rserpool-loadgen
# Keep-alives every second, 1 s to answer: hung PEs go within 2 s, and supervision runs
# all the time. Logs at info: refusals of abusive clients are logged there.
target/release/rserpool-registrar --asap "$reg" --shards "$shards" --allow-loopback \
  --keep-alive-interval 1000 --keep-alive-timeout 1000 --resolution-items-limit 1024 \
  --metrics "127.0.0.1:$metrics" --log-level info >"$out/registrar.log" 2>&1 &
registrar=$!
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$registrar" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$metrics/metrics" >/dev/null && break
  sleep 0.1
done

echo "soak: measuring the maximum resolution rate" >&2
$lg resolve --registrar "$reg" --pool MaxPool --pes 500 --items 3 --pus 16 --rate max \
  --duration 5 --no-floor --json "$out/max.json" >"$out/max.txt"
max=$(python3 -c "import json; print(int(json.load(open('$out/max.json'))['summary']['max_rate_per_s']))")
rate=$((max * load / 100))
echo "soak: maximum $max/s; running ${duration}s at $rate/s ($load %)" >&2

start=$(date +%s)
end=$((start + duration))
curl -sf "http://127.0.0.1:$metrics/metrics" >"$out/metrics-start.txt"

$lg resolve --registrar "$reg" --pool SoakPool --pes 500 --items 3 --pus 2 --rate "$rate" \
  --duration "$duration" --no-floor --json "$out/resolve.json" >"$out/resolve.txt" 2>&1 &
pids+=($!)
$lg churn --registrar "$reg" --pool ChurnPool --pes 200 --rate 200 --duration "$duration" \
  --json "$out/churn.json" >"$out/churn.txt" 2>&1 &
pids+=($!)
clients=(--registrar "127.0.0.1:$asap" --duration "$duration" --json "$out/clients.json")
((abuse)) || clients+=(--no-abuse)
python3 bench/soak-clients.py "${clients[@]}" >"$out/clients.txt" 2>&1 &
pids+=($!)
(
  # Failover runs back to back, crash and hang in turn, until the end; each is bounded.
  i=0 failed=0
  while (($(date +%s) + 20 < end)); do
    mode=$([ $((i % 2)) = 0 ] && echo crash || echo hang)
    $lg failover --registrar "$reg" --pool "FailPool$i" --pes 50 --mode "$mode" --trials 10 \
      --keep-alive-interval 1000 --keep-alive-timeout 1000 \
      --json "$out/failover-$i.json" >"$out/failover-$i.txt" 2>&1 || failed=$((failed + 1))
    i=$((i + 1))
  done
  echo "$i $failed" >"$out/failover-runs"
) &
pids+=($!)

# RSS every interval while the load runs.
interval=$((duration / 120 > 2 ? duration / 120 : 2))
echo "seconds,rss_kib" >"$out/rss.csv"
loaded=0
while (($(date +%s) < end + 5)) && kill -0 "$registrar" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$registrar/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(($(date +%s) - start)),$rss" >>"$out/rss.csv"
  # Once more shortly before the end, while everything still runs (the gauges then).
  if ((!loaded && $(date +%s) + 3 * interval >= end)); then
    curl -sf "http://127.0.0.1:$metrics/metrics" >"$out/metrics-loaded.txt" || true
    loaded=1
  fi
  sleep "$interval"
done

failed_cmds=0
for p in "${pids[@]}"; do wait "$p" || failed_cmds=$((failed_cmds + 1)); done
pids=()
alive=1
kill -0 "$registrar" 2>/dev/null || alive=0
if ((alive)); then
  curl -sf "http://127.0.0.1:$metrics/metrics" >"$out/metrics-end.txt" || : >"$out/metrics-end.txt"
else
  : >"$out/metrics-end.txt"
fi

python3 - "$out" "$duration" "$failed_cmds" "$alive" "$max" "$rate" <<'PY' | tee "$out/summary.txt"
import csv, glob, json, os, re, statistics, sys
out, duration, failed_cmds, alive, mx, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ok = True

rows = [(int(r["seconds"]), int(r["rss_kib"])) for r in csv.DictReader(open(f"{out}/rss.csv"))]
warm = [kib for t, kib in rows if t >= duration * 0.2]
if len(warm) >= 6:
    first, last = statistics.median(warm[:3]), statistics.median(warm[-3:])
    drift = (last - first) / first * 100
    print(f"RSS after warm-up: {first / 1024:.1f} MiB -> {last / 1024:.1f} MiB, drift {drift:+.2f} % (goal < 5 %)"
          f"; peak {max(k for _, k in rows) / 1024:.1f} MiB over {len(rows)} samples")
    ok &= drift < 5
else:
    print(f"RSS: too few samples after warm-up ({len(warm)})")
    ok = False

errors, ops = 0, 0
for path in sorted(glob.glob(f"{out}/resolve.json") + glob.glob(f"{out}/churn.json") + glob.glob(f"{out}/failover-*.json")):
    doc = json.load(open(path))
    for s in doc["series"]:
        errors += s.get("errors", 0)
        ops += s.get("count", 0)
runs, fo_failed = (open(f"{out}/failover-runs").read().split() + ["0", "0"])[:2] if os.path.exists(f"{out}/failover-runs") else ("0", "0")
total = errors + failed_cmds + (0 if alive else 1)
print(f"errors: {total} (goal 0): {errors} failed operations of {ops}, {failed_cmds} commands failed"
      f" ({fo_failed} of {runs} failover runs), registrar {'alive' if alive else 'DIED'}")
ok &= total == 0
print(f"load: maximum {mx}/s, resolutions at {rate}/s")

try:
    c = json.load(open(f"{out}/clients.json"))
    lost, hijacked = c["lost"], c["hijacked"]
    print(f"lost PEs: {len(lost)} of {c['legit_pes']} legitimate (goal 0){': ' + str(lost) if lost else ''}"
          f"; hijacked: {len(hijacked)}{': ' + str(hijacked) if hijacked else ''}"
          + (f"; final check failed: {c['check_error']}" if c.get("check_error") else ""))
    ok &= not lost and not hijacked
    print("clients: " + ", ".join(f"{k} {v}" for k, v in c["counts"].items()))
except (OSError, ValueError, KeyError) as e:
    print(f"lost PEs: unknown (soak-clients gave no result: {e})")
    ok = False

def scrape(path):
    m = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        # The registrar's figure is the sum over shards (no precomputed total).
        key = re.sub(r'shard="[0-9]+",?', "", name).replace(",}", "}").replace("{}", "")
        try:
            m[key] = m.get(key, 0.0) + float(value)
        except ValueError:
            pass
    return m
a, b = scrape(f"{out}/metrics-start.txt"), scrape(f"{out}/metrics-end.txt")
loaded = scrape(f"{out}/metrics-loaded.txt") if os.path.exists(f"{out}/metrics-loaded.txt") else {}
gauges = re.compile(r"^rserpool_(associations|pools|pool_elements|supervised_pool_elements)$")
print("under load, shortly before the end: " + ", ".join(f"{k.removeprefix('rserpool_')} {v:g}" for k, v in sorted(loaded.items()) if gauges.match(k)))
wanted = re.compile(r"^rserpool_(asap_malformed|asap_errors|pe_removals|mesh_|associations|pool_elements|pools|supervised)")
lines = []
for k in sorted(b):
    if wanted.match(k) and not k.endswith(("_bucket", "_sum", "_count")):
        d = b[k] - a.get(k, 0)
        if d or gauges.match(k):
            lines.append(f"  {k} {a.get(k, 0):g} -> {b[k]:g}")
print("metrics (start -> end):" + ("\n" + "\n".join(lines) if lines else " none scraped at the end"))
print("soak: " + ("all goals met" if ok else "GOALS MISSED") + f" (files in {out})")
sys.exit(0 if ok else 1)
PY
