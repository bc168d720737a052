#!/usr/bin/env bash
# Resident memory of the real registrar holding 1 M pool elements (2,000 pools × 500 PEs,
# round robin, one SCTP address each) with 2 shards, and the bytes each PE costs.
#
#   bench/memory.sh [--shards N] [--pools N] [--pes N] [--conns N] [--policy rr|random|wrr|lu]
#                   [--bin PATH] [-- REGISTRAR-FLAGS...]
#
# Starts target/release/rserpool-registrar on loopback TCP with keep-alives every 10
# minutes (none falls inside the run), reads its VmRSS from /proc, registers every PE
# with bench/src/bin/memfill.rs over a few pipelined connections, waits (on the metrics
# endpoint) until every shard's replica holds every PE, and reads VmRSS again.
# bytes_per_pe = (after - before) / PEs; hwm is the peak (VmHWM). --bin measures another
# build of the registrar (e.g. an older one).
set -euo pipefail
cd "$(dirname "$0")/.."
shards=2 fill=() bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards=$2; shift 2 ;;
    --pools|--pes|--conns|--policy) fill+=("$1" "$2"); shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -q -p rserpool-shards --bin rserpool-registrar
  bin=target/release/rserpool-registrar
fi
cargo build --release -q -p rserpool-bench --bin memfill
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh

p=$(port) m=$(port)
"$bin" --shards "$shards" --allow-loopback \
  --asap "tcp://127.0.0.1:$p" --metrics "127.0.0.1:$m" \
  --keep-alive-interval 600000 --keep-alive-timeout 600000 \
  --max-pes-per-association 100000000 --max-pools-per-association 100000000 \
  --log-level error "$@" >"$out/registrar.log" 2>&1 &
pid=$!
# Up once the metrics endpoint (started after every shard) reports every shard.
up=0
for _ in $(seq 1 600); do
  up=$(curl -s "http://127.0.0.1:$m/metrics" 2>/dev/null | grep -c '^rserpool_shard_up{.*} 1$' || true)
  [ "$up" = "$shards" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out/registrar.log" >&2; exit 1; }
  sleep 0.1
done
[ "$up" = "$shards" ] || { echo "memory: the registrar did not come up" >&2; exit 1; }
echo "shards $shards"
target/release/memfill "127.0.0.1:$p" "$pid" "127.0.0.1:$m" "${fill[@]}"
# memfill's exit closed the connections: the registrar drops every PE. Then stop it
# (SIGTERM) and make sure it does stop.
t0=$(date +%s.%N)
kill -TERM "$pid"
for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  echo "memory: the registrar did not stop within 60 s of SIGTERM" >&2
  kill -KILL "$pid"
  exit 1
fi
awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "stopped_s %.1f\n", t1 - t0 }'
