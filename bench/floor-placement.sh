#!/usr/bin/env bash
# Where the TCP echo floor runs, and what that does to its rate: the same responder
# on threads of the load generator's own process (`rserpool-loadgen echo`) against the
# same responder in a process of its own (`echo --listen`, timed by `resolve
# --no-floor`), closed loop with the same pool users, taking turns.
#
#   bench/floor-placement.sh [--rounds N] [--pus P] [--duration S]
#
# Prints each round's two rates and their ratio, then the median ratio. A ratio above
# 1 means the in-process floor is faster: a round trip between two threads of one
# process switches no address space, and a registrar is always in another process,
# which is why `resolve` runs its floor in a process of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=8
pus=16
duration=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --pus) pus="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "floor-placement: unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p rserpool-loadgen --bins
lg=target/release/rserpool-loadgen
# The responder's first line, printed once it listens, names its address (the word
# after "on"); it prints nothing else.
coproc ECHO { exec "$lg" echo --listen tcp://127.0.0.1:0; }
echo_pid=$ECHO_PID
trap 'kill $echo_pid 2>/dev/null; wait $echo_pid 2>/dev/null || true' EXIT
read -r _ _ _ uri _ <&"${ECHO[0]}"
# The rate column of the closed-loop row.
rate() { awk '/closed loop\)|transport floor\)/ { print $(NF-11) }'; }
ratios=()
for i in $(seq "$rounds"); do
  here=$($lg echo --pus "$pus" --duration "$duration" | rate)
  apart=$($lg resolve --registrar "$uri" --pool "Round$i" --pes 20 \
    --pus "$pus" --duration "$duration" --no-floor | rate)
  r=$(python3 -c "print(f'{$here / $apart:.3f}')")
  ratios+=("$r")
  echo "round $i: in the load generator's process $here/s, in its own $apart/s: $r×"
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
r = sorted(map(float, sys.argv[1:]))
print(f"in-process ÷ own-process floor: median {statistics.median(r):.2f}× over {len(r)} rounds ({r[0]:.2f}–{r[-1]:.2f}×)")
PY
