#!/usr/bin/env bash
# Resident memory of an idle registrar (no PE, no connection) by shard count: what the
# shards, their rings and the mesh between them cost before any work.
#
#   bench/idle-rss.sh [--shards 1,2,16,64,256] [--bin PATH] [-- REGISTRAR-FLAGS...]
#
# For each count it starts the registrar with --no-pin on loopback TCP, waits until its
# metrics endpoint reports every shard up (the endpoint starts once all shards run),
# lets it idle one second, reads VmRSS from /proc/PID/status and stops it. --bin
# measures another build (e.g. an older one).
set -euo pipefail
cd "$(dirname "$0")/.."
counts=1,2,16,64,256 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) counts=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "idle-rss: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -q -p rserpool-shards --bin rserpool-registrar
  bin=target/release/rserpool-registrar
fi
log=$(mktemp)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

. bench/lib.sh

printf '%6s %12s\n' shards rss_kib
IFS=, read -ra list <<<"$counts"
for n in "${list[@]}"; do
  p=$(port) m=$(port)
  "$bin" --shards "$n" --no-pin --allow-loopback --asap "tcp://127.0.0.1:$p" \
    --metrics "127.0.0.1:$m" --log-level error "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do
    up=$(curl -s "http://127.0.0.1:$m/metrics" 2>/dev/null | grep -c '^rserpool_shard_up{.*} 1$' || true)
    [ "$up" = "$n" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ "$up" = "$n" ] || { echo "idle-rss: $n shards did not come up" >&2; exit 1; }
  sleep 1
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  printf '%6s %12s\n' "$n" "$rss"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
done
