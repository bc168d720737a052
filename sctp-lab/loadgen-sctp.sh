#!/usr/bin/env bash
# The load generator over kernel SCTP, inside the VM: our registrar (2 shards) on a
# dummy interface, then each scenario small and short. Each scenario is one check; the
# load generator's own checks decide (every answer positive, every PE registered,
# every failed PE gone). Then the SCTP echo floor: in the same run as a resolution,
# and standalone (echo --listen) in place of a registrar. Ends with "N passed, M failed".
#   sctp-lab/run.sh -- sctp-lab/loadgen-sctp.sh      (run-tests.sh runs it as a suite)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"
[[ ${SCTP_LAB_VM:-} == 1 ]] || { echo "loadgen-sctp.sh: run inside the VM (sctp-lab/run.sh -- $0)" >&2; exit 2; }
A1=192.0.2.1
REG=target/release/rserpool-registrar
LG=target/release/rserpool-loadgen
pass=0 fail=0
check() {
  local name=$1; shift
  printf '\n==> %s: %s\n' "$name" "$*"
  # A shell function bounds its own commands.
  if declare -F "$1" > /dev/null; then "$@"; else timeout 120 "$@"; fi
  if (( $? == 0 )); then pass=$((pass + 1)); echo "PASS $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
ip link del lgnet0 2>/dev/null || true
modprobe dummy && ip link set lo up && ip link add lgnet0 type dummy \
  && ip addr add "$A1/24" dev lgnet0 && ip link set lgnet0 up \
  || { echo "loadgen-sctp: cannot set up the dummy interface"; echo "0 passed, 1 failed"; exit 1; }
$REG --asap "sctp://$A1:3863" --shards 2 --keep-alive-interval 300 --keep-alive-timeout 300 --log-level warn &
reg=$!
trap 'kill $reg 2>/dev/null; wait $reg 2>/dev/null; ip link del lgnet0 2>/dev/null' EXIT
sleep 1
R="sctp://$A1:3863"
check resolve-closed $LG resolve --registrar "$R" --pes 50 --pus 2 --duration 1 --no-floor
# The floor in the same run: every answer from the SCTP echo responder is a positive
# resolution with the registrar's 3 PEs.
floor_in_run() {
  local json=/tmp/loadgen-sctp-floor.json
  timeout 120 $LG resolve --registrar "$R" --pool Floor --pes 20 --pus 2 --duration 1 --json "$json" || return 1
  jq -e '[.series[] | select(.name | startswith("echo floor"))] | length == 1 and .[0].count > 0 and .[0].errors == 0' "$json" \
    && jq -e '.summary.floor | startswith("sctp://")' "$json"
}
check floor-in-run floor_in_run
# The floor standalone, as bench/vm-compare.sh runs it: PEs register at it and pool
# users resolve there, closed loop, then open loop at half the maximum.
floor_standalone() {
  local out=/tmp/loadgen-sctp-echo.txt line="" i rc=0
  $LG echo --listen "sctp://$A1:3864" > "$out" 2>&1 &
  local echo_pid=$!
  for ((i = 0; i < 100; i++)); do
    [[ -s $out ]] && { read -r line < "$out" || true; }
    [[ $line == *"sctp://$A1:3864"* ]] && break
    kill -0 "$echo_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$line"
  if [[ $line == *"sctp://$A1:3864"* ]]; then
    timeout 120 $LG resolve --registrar "sctp://$A1:3864" --pes 20 --pus 2 --duration 1 --rate 50% --no-floor || rc=1
  else
    cat "$out"; rc=1
  fi
  kill "$echo_pid" 2>/dev/null; wait "$echo_pid" 2>/dev/null
  return "$rc"
}
check floor-standalone floor_standalone
check resolve-open $LG resolve --registrar "$R" --pool Open --pes 20 --rate 200 --duration 1
check churn $LG churn --registrar "$R" --pool Churn --pes 30 --rate 100 --duration 1
check failover-crash $LG failover --registrar "$R" --pool Crash --pes 30 --trials 5 \
  --keep-alive-interval 300 --keep-alive-timeout 300
check failover-hang $LG failover --registrar "$R" --pool Hang --pes 30 --mode hang --trials 1 --batch 3 \
  --keep-alive-interval 300 --keep-alive-timeout 300
echo "$pass passed, $fail failed"
(( fail == 0 ))
