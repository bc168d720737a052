#!/usr/bin/env bash
# System calls the registrar makes per handle resolution under load, counted by
# strace (-f -c: every thread, a count per call): one shard, loopback TCP, 500 PEs
# (round robin), P pool users resolving closed loop (3 PEs each), for each I/O mode.
#
#   bench/syscalls.sh [--pus P] [--duration S] [--modes interrupt,busy-poll]
#
# The load generator counts the resolutions (its JSON), strace the registrar's system
# calls over its whole run (registration, connections and their teardown included,
# so the figure is if anything high). strace slows every
# system call down, so the rate here is not the registrar's; the ratio is what counts.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || { echo "syscalls: needs strace (apt-get install strace)" >&2; exit 2; }
pus=16 duration=5 modes=interrupt,busy-poll
while [ $# -gt 0 ]; do
  case "$1" in
    --pus) pus=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "syscalls: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p rserpool-shards -p rserpool-loadgen --bins
out=$(mktemp -d)
trap 'rm -rf "$out"; kill $(jobs -p) 2>/dev/null || true' EXIT
. bench/lib.sh

printf '| mode | pool users | resolutions | system calls | per resolution | top calls |\n|---|---:|---:|---:|---:|---|\n'
IFS=, read -ra list <<<"$modes"
for mode in "${list[@]}"; do
  flag=""
  [ "$mode" = busy-poll ] && flag=--busy-poll
  p=$(port)
  target/release/rserpool-registrar --shards 1 --no-pin --allow-loopback $flag \
    --asap "tcp://127.0.0.1:$p" --log-level error >"$out/registrar.log" 2>&1 &
  reg=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.05; done
  strace -f -c -p "$reg" -o "$out/strace.txt" 2>/dev/null &
  st=$!
  sleep 1
  target/release/rserpool-loadgen resolve --registrar "tcp://127.0.0.1:$p" --pes 500 \
    --pe-connections 8 --pus "$pus" --items 3 --duration "$duration" --no-floor \
    --json "$out/run.json" >"$out/loadgen.txt" 2>&1 &
  lg=$!
  wait "$lg"
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  kill "$reg"; wait "$reg" 2>/dev/null || true
  n=$(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
def walk(x):
    if isinstance(x,dict):
        if "resolution" in str(x.get("name","")) and "count" in x: yield x
        for v in x.values(): yield from walk(v)
    elif isinstance(x,list):
        for v in x: yield from walk(v)
print(max((s["count"] for s in walk(d)), default=0))' "$out/run.json")
  calls=$(awk '/^[ 0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" { } /total$/ { print $4 }' "$out/strace.txt" | tail -1)
  top=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { printf "%s %s, ", $NF, $4 }' "$out/strace.txt" | head -c 120)
  awk -v m="$mode" -v p="$pus" -v n="$n" -v c="${calls:-0}" -v t="$top" \
    'BEGIN { printf "| %s | %d | %d | %d | %.3f | %s |\n", m, p, n, c, (n > 0 ? c / n : 0), t }'
done
