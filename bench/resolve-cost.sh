#!/usr/bin/env bash
# User-space instructions the registrar executes per handle resolution, end to end
# through the real binary: one shard, loopback TCP, a pool of 500 PEs (round robin,
# 8 connections), one pool user with one request in flight asking for 3 PEs.
#
#   bench/resolve-cost.sh [--pes N] [--items K] [--runs A,B] [--pause US] [--keep DIR] [--bin PATH] [-- REGISTRAR-FLAGS...]
#
# The registrar runs under valgrind's callgrind twice, once for A and once for B
# resolutions (default 1000 and 6000); the figure is the difference of the two
# instruction totals divided by B - A, so start-up and registration cancel out
# (instrumentation is on only while the client resolves: neither the registrations,
# whose cost depends on how the PEs' messages happen to arrive, nor the shutdown is in
# either total). Callgrind counts user space only (all threads; the kernel's side of
# each syscall is not in it). Keep-alives are set to 10 minutes so that none falls inside
# the measurement. Instruction counts are repeatable on a shared machine, unlike
# timings. --keep DIR keeps the callgrind files (callgrind_annotate DIR/cg.B) to see
# where the instructions go. --bin measures another build of the registrar (e.g. an
# older commit's). --pause US (default 1000) is the client's pause between an answer
# and its next request, so that every request finds the registrar asleep and takes
# the same path: back to back (--pause 0), whether the next request is already there
# when the registrar has sent an answer depends on the two sides' speeds under
# callgrind, and moves the figure by about 150 from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "resolve-cost: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
pes=500 items=3 runs=1000,6000 pause=1000 keep="" bin=target/release/rserpool-registrar
while [ $# -gt 0 ]; do
  case "$1" in
    --pes) pes=$2; shift 2 ;;
    --items) items=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --pause) pause=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "resolve-cost: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r a b <<<"$runs"
[ "$b" -gt "$a" ] || { echo "resolve-cost: --runs A,B needs B > A" >&2; exit 2; }
cargo build --release -q -p rserpool-shards --bin rserpool-registrar
cargo build --release -q -p rserpool-bench --bin resolvecost
out=${keep:-$(mktemp -d)}
mkdir -p "$out"
[ -n "$keep" ] || trap 'rm -rf "$out"' EXIT

. bench/lib.sh

measure() { # resolutions -> instruction total of one registrar run
  local n=$1 p f pid
  shift
  p=$(port)
  f="$out/cg.$n"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$f" \
    "$bin" --shards 1 --no-pin --allow-loopback \
      --asap "tcp://127.0.0.1:$p" --keep-alive-interval 600000 --keep-alive-timeout 600000 \
      --log-level error "$@" >"$out/registrar.$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/registrar.$n.log" >&2; exit 1; }
    sleep 0.1
  done
  rm -f "$out/done.$n" "$out/done.$n.ready" "$out/done.$n.go"
  target/release/resolvecost "127.0.0.1:$p" "$pes" "$n" "$items" "$out/done.$n" "$pause" &
  client=$!
  while [ ! -e "$out/done.$n.ready" ]; do
    kill -0 "$client" 2>/dev/null || { echo "resolve-cost: the client failed" >&2; kill "$pid"; exit 1; }
    sleep 0.1
  done
  callgrind_control --instr=on "$pid" >/dev/null
  touch "$out/done.$n.go"
  while [ ! -e "$out/done.$n" ]; do
    kill -0 "$client" 2>/dev/null || { echo "resolve-cost: the client failed" >&2; kill "$pid"; exit 1; }
    sleep 0.1
  done
  # Instrumentation off before the registrar stops: what its shutdown does (closing
  # the client's connections may or may not remove the 500 PEs first, depending on
  # timing) is then in neither run, so the two runs differ by the resolutions alone.
  callgrind_control --instr=off "$pid" >/dev/null
  # The registrar stops while the client still holds its connections; once callgrind
  # has written its totals, the client goes too (a process whose io_uring still holds
  # open sockets can take a while to be reaped under valgrind).
  kill -TERM "$pid"
  for _ in $(seq 1 600); do
    grep -q "Collected :" "$out/registrar.$n.log" && break
    sleep 0.1
  done
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  total "$f"
}

ia=$(measure "$a" "$@")
ib=$(measure "$b" "$@")
awk -v a="$a" -v b="$b" -v ia="$ia" -v ib="$ib" -v pes="$pes" -v items="$items" 'BEGIN {
  printf "user-space instructions per %d-item resolution at %d PEs (one shard, TCP, one in flight): %.0f\n", items, pes, (ib - ia) / (b - a)
  printf "  (%d resolutions: %d; %d resolutions: %d)\n", a, ia, b, ib
}'
