#!/usr/bin/env bash
# vm-compare.sh - our registrar against RSPLIB's rspregistrar and against the
# echo floor on the same workload, over kernel SCTP inside the sctp-lab VM:
# maximum handle-resolution rate and its latency, the latency at half of each
# one's maximum, as ratios ours/floor and ours/RSPLIB, and where the CPU goes.
#
#   bench/vm-compare.sh [--out DIR] [--pus LIST] [--half-pus P] [--repeat N]
#                       [--duration S] [--pe-connections N] [--registrars LIST]
#                       [--cpus N] [--timeout S] [--no-build]
#   bench/vm-compare.sh --in-vm [same options]     already inside the VM
#
# On the host: cargo build --release -p rserpool-shards -p rserpool-loadgen --bins,
# sctp-lab/setup.sh, then this script again inside the VM (run.sh --cpus N).
# In the VM: dummy interface labnet0 with 192.0.2.1/24 and 192.0.2.2/24 (RSPLIB
# refuses loopback-only addresses); then for each pool-user count P in LIST
# and each registrar (alternating the order per repetition, so that a change
# of the host's load hits all alike) a fresh registrar on
# sctp://192.0.2.1:3863 and the same load generator command:
#
#   rserpool-loadgen resolve --registrar sctp://192.0.2.1:3863 --pool LoadPool
#     --pes 500 --pe-connections N --pus P --items 3 --duration S --hold H
#     --no-floor --json FILE
#
# (500 PEs register, round robin, several per association, from 192.0.2.1, and
# answer keep-alives; then P pool users resolve closed loop, one association
# each, asking for 3 PEs; every answer must hold 3.)  After that sweep, each
# registrar runs the same command with --rate 50% (its maximum measured again,
# then open loop at half of it) and --half-pus pool users (the same for all,
# so the load generator's own share is alike), --repeat times, interleaved as
# well: p50, p99 and p99.9 at 50 % load.  The registrars:
#
#   floor   target/release/rserpool-loadgen echo --listen sctp://192.0.2.1:3863
#           --items 3 --pool LoadPool: the echo floor, no registrar at all.  One
#           thread, one one-to-many socket, one io_uring (as one shard of ours):
#           every resolution gets a canned 3-PE answer of a real answer's size,
#           every registration a positive answer; it sends no keep-alives.
#   ours    target/release/rserpool-registrar --asap sctp://192.0.2.1:3863
#           --shards N --keep-alive-interval 1000 --keep-alive-timeout 1000
#           --max-resolution-items 3 --log-level warn,...shard=debug
#   rsplib  rspregistrar -asap=192.0.2.1:3863 -enrp=192.0.2.1:9901
#           -minaddressscope=loopback -asapannounce=off -enrpannounce=off
#           -endpointkeepalivetransmissioninterval=1000
#           -endpointkeepalivetimeoutinterval=1000 -maxhresitems=3 -loglevel=2
#   ours_1shard ours with --shards 1
#   ours_nopin  ours with --no-pin (only if named in --registrars)
#
# All get the whole VM: N vCPUs (default 2, = our shard count; RSPLIB's
# registrar and the floor are single-threaded), shared with the load
# generator.  The script samples CPU time from /proc: the registrar's, the
# load generator's and the VM's (user/system/softirq/idle), while the pool
# users resolve ("busy") and after they stopped while the PEs are still
# registered ("rest": keep-alives only, the 500 PEs' 500 per second; the load
# generator holds its PEs registered for it, --hold; the floor has none); in
# the closed-loop runs only.  A busy sample is dropped when the pool users'
# associations were not all up at its end.  A run fails if an answer held
# fewer PEs, or if while resolving a PE's association was lost (the load
# generator reports it) or a PE was removed by a keep-alive timeout.  The rest
# sample is dropped if that happened during it.
#
# A registrar's "max" rate is its best closed-loop rate over LIST and the
# repetitions (the host's other load only ever slows a run down, so the best
# run is the least disturbed); the tables show every run, then the ratios at
# each registrar's best and at equal pool-user counts (best run of each),
# the latency at 50 % load (median of the repetitions), and the CPU at rest.
#
#   --out DIR          results (default bench/results/vm-compare-DATE): per run
#                      <registrar>-<max|half>-p<P>-<run>.json (the load
#                      generator's), .cpu, .loadgen.txt, .registrar.log;
#                      probe-*.txt (one answer: PE ids and addresses);
#                      settings.txt; host.txt (the host's load average before
#                      and after); summary.md (the tables, also printed)
#   --pus LIST         pool-user counts, comma-separated (default 1,4,16)
#   --half-pus P       pool users of the 50 % runs (default 4)
#   --repeat N         runs per registrar and count, and at 50 % (default 2)
#   --duration S       seconds of resolution per run (default 5, at least 3)
#   --pe-connections N associations the 500 PEs share (default 8)
#   --registrars LIST  default floor,ours,ours_1shard,rsplib
#   --cpus N           VM vCPUs and our shard count (default 2)
#   --timeout S        VM limit (default 1500; a default run takes ~10 min)
#   --no-build         use what is in target/release
#
# The VM is software-emulated (TCG, ~15x slower than the host; the kernel's
# SCTP work dominates): absolute numbers are far below the host's; only the
# ratios mean something, and a busy host makes single runs noisy.  Exit
# status 1 if a run failed, 2 for bad usage, 124/125 for VM trouble.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
OUT=""
IN_VM=0
BUILD=1
TIMEOUT=1500
CPUS=2
PUS_LIST=1,4,16
HALF_PUS=4
DURATION=5
PE_CONNS=8
REPEAT=2
REG_LIST=floor,ours,ours_1shard,rsplib
ARGS=("$@")
while (( $# )); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --pus) PUS_LIST=${2:?}; shift 2 ;;
    --half-pus) HALF_PUS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --pe-connections) PE_CONNS=${2:?}; shift 2 ;;
    --cpus) CPUS=${2:?}; shift 2 ;;
    --repeat) REPEAT=${2:?}; shift 2 ;;
    --registrars) REG_LIST=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --in-vm) IN_VM=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "vm-compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $PUS_LIST =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "vm-compare.sh: --pus wants a list like 1,4,16" >&2; exit 2; }
if [[ ! $DURATION =~ ^[0-9]+$ ]] || (( DURATION < 3 )); then echo "vm-compare.sh: --duration wants whole seconds >= 3" >&2; exit 2; fi
[[ $PE_CONNS =~ ^[0-9]+$ && $CPUS =~ ^[0-9]+$ && $REPEAT =~ ^[1-9][0-9]*$ && $HALF_PUS =~ ^[1-9][0-9]*$ ]] \
  || { echo "vm-compare.sh: --pe-connections, --cpus, --repeat and --half-pus want numbers" >&2; exit 2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
REGISTRAR_BIN=$TARGET/rserpool-registrar
LOADGEN_BIN=$TARGET/rserpool-loadgen

# ---------------------------------------------------------------- host side --
if [[ ${SCTP_LAB_VM:-} != 1 ]]; then
  (( ! IN_VM )) || { echo "vm-compare.sh: --in-vm given, but this is not the sctp-lab VM" >&2; exit 2; }
  cd "$ROOT"
  if (( BUILD )); then
    cargo build --release -p rserpool-shards -p rserpool-loadgen --bins
  fi
  "$ROOT/sctp-lab/setup.sh" || exit 125      # also installs rsplib-registrar
  OUT=${OUT:-$ROOT/bench/results/vm-compare-$(date +%F)}
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd -P)
  # The host's load sets how fast the emulated VM runs: noted before and after.
  host_load() { echo "host load average $1: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"; }
  host_load "before" > "$OUT/host.txt"
  # --rw: the results must survive the VM.
  rc=0
  "$ROOT/sctp-lab/run.sh" --timeout "$TIMEOUT" --cpus "$CPUS" --rw "$OUT" -- \
    "$HERE/vm-compare.sh" "${ARGS[@]}" --in-vm --out "$OUT" || rc=$?
  host_load "after" >> "$OUT/host.txt"
  cat "$OUT/host.txt"
  exit "$rc"
fi

# --------------------------------------------------------------- guest side --
# Under TCG every fork+exec costs 0.1-0.3 s: the polling below uses bash
# builtins (EPOCHREALTIME, mapfile, read -t on a FIFO), as interop-rsplib.sh.
cd "$ROOT"
for b in "$REGISTRAR_BIN" "$LOADGEN_BIN"; do
  [[ -x $b ]] || { echo "vm-compare.sh: $b missing; build on the host first" >&2; exit 2; }
done
command -v rspregistrar > /dev/null || { echo "vm-compare.sh: rspregistrar missing (sctp-lab/setup.sh installs it)" >&2; exit 2; }
OUT=${OUT:-/tmp/vm-compare}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.cpu "$OUT"/*.loadgen.txt "$OUT"/*.registrar.log "$OUT"/summary.md "$OUT"/probe-*.txt
IFS=, read -r -a PUS <<< "$PUS_LIST"
IFS=, read -r -a REGISTRARS <<< "$REG_LIST"

ADDR=192.0.2.1
PORT=3863
POOL=LoadPool
PES=500
ITEMS=3
KA_INTERVAL=1000          # ms, both registrars
KA_TIMEOUT=1000
SHARDS=$CPUS
VCPUS=$(nproc)
CLK_TCK=$(getconf CLK_TCK)

OURS="$REGISTRAR_BIN --asap sctp://$ADDR:$PORT --shards $SHARDS --keep-alive-interval $KA_INTERVAL --keep-alive-timeout $KA_TIMEOUT --max-resolution-items $ITEMS --log-level warn,rserpool_shards::runtime::shard=debug"
# Variants: one shard (RSPLIB's registrar is one thread too; the load
# generator gets the other vCPU), and shards not pinned to cores.
declare -A REG_CMD=(
  [floor]="$LOADGEN_BIN echo --listen sctp://$ADDR:$PORT --items $ITEMS --pool $POOL"
  [ours]="$OURS"
  [ours_1shard]="${OURS/--shards $SHARDS/--shards 1}"
  [ours_nopin]="$OURS --no-pin"
  [rsplib]="rspregistrar -asap=$ADDR:$PORT -enrp=$ADDR:9901 -minaddressscope=loopback -asapannounce=off -enrpannounce=off -endpointkeepalivetransmissioninterval=$KA_INTERVAL -endpointkeepalivetimeoutinterval=$KA_TIMEOUT -maxhresitems=$ITEMS -loglevel=2 -logcolor=off"
)
for r in "${REGISTRARS[@]}"; do
  [[ -n ${REG_CMD[$r]:-} ]] || { echo "vm-compare.sh: unknown registrar $r (${!REG_CMD[*]})" >&2; exit 2; }
done

FIFOS=$(mktemp -d /tmp/vm-compare.XXXXXX)   # FIFOs cannot be made on a 9p share
mkfifo "$FIFOS/nap"
exec {NAP_FD}<>"$FIFOS/nap"
nap() { read -r -t "${1:-0.1}" -u "$NAP_FD" _ || true; }
now_us() { NOW=${EPOCHREALTIME/./}; }
REG_PID=""
LG_PID=""
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; nap; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  # The load generator (its PEs) before the registrar: RSPLIB PEs would retry.
  stop_pid "$LG_PID"
  stop_pid "$REG_PID"
  rm -rf "$FIFOS"
  ip link del labnet0 2>/dev/null || true
}
trap cleanup EXIT

# Associations in the VM (each appears twice: the client's and the registrar's end).
assocs() { local -a l; mapfile -t l < /proc/net/sctp/assocs; ASSOCS=$(( ${#l[@]} - 1 )); }
# Waits until an SCTP endpoint listens on ADDR:PORT (as interop-rsplib.sh).
wait_listen() {
  local i f
  local -a lines words
  for ((i = 0; i < 300; i++)); do
    mapfile -t lines < /proc/net/sctp/eps
    for f in "${lines[@]:1}"; do
      read -r -a words <<< "$f"
      [[ ${words[5]} == "$PORT" && " ${words[*]:8} " == *" $ADDR "* ]] && return 0
    done
    kill -0 "$REG_PID" 2>/dev/null || return 1
    nap
  done
  return 1
}
# CPU ticks of a process, all threads: user in UTICKS, system in STICKS
# (fields 14 and 15 of its stat).
proc_ticks() {
  local s
  local -a f
  UTICKS=0 STICKS=0
  s=$(< "/proc/$1/stat") || return 0
  read -r -a f <<< "${s##*) }"
  UTICKS=${f[11]} STICKS=${f[12]}
}
# The VM's CPU line: cpu user nice system idle iowait irq softirq steal ...
sys_ticks() { read -r -a SYS < /proc/stat; }

FAILED=0
say() { printf '%s\n' "$*"; }

# CPU window: sample_begin, ..., sample_end PREFIX prints PREFIX_* lines
# (ticks of the registrar and the load generator, user and system; the VM's
# user, system, softirq and idle ticks) into $WINDOW.
sample_begin() {
  now_us; W_T0=$NOW; sys_ticks; W_S0=("${SYS[@]}")
  proc_ticks "$REG_PID"; W_R0=("$UTICKS" "$STICKS")
  proc_ticks "$LG_PID"; W_L0=("$UTICKS" "$STICKS")
}
sample_end() {
  local p=$1 t1
  local -a s1 r1 l1
  now_us; t1=$NOW; sys_ticks; s1=("${SYS[@]}")
  proc_ticks "$REG_PID"; r1=("$UTICKS" "$STICKS")
  proc_ticks "$LG_PID"; l1=("$UTICKS" "$STICKS")
  WINDOW=$(
    echo "${p}_window_us=$(( t1 - W_T0 ))"
    echo "${p}_registrar_user_ticks=$(( r1[0] - W_R0[0] ))"
    echo "${p}_registrar_system_ticks=$(( r1[1] - W_R0[1] ))"
    echo "${p}_loadgen_user_ticks=$(( l1[0] - W_L0[0] ))"
    echo "${p}_loadgen_system_ticks=$(( l1[1] - W_L0[1] ))"
    echo "${p}_vm_user_ticks=$(( s1[1] + s1[2] - W_S0[1] - W_S0[2] ))"
    echo "${p}_vm_system_ticks=$(( s1[3] - W_S0[3] ))"
    echo "${p}_vm_idle_ticks=$(( s1[4] + s1[5] - W_S0[4] - W_S0[5] ))"
    echo "${p}_vm_softirq_ticks=$(( s1[6] + s1[7] - W_S0[6] - W_S0[7] ))"
  )
}
# PEs our registrar removed for a missed keep-alive (RSPLIB aborts the
# association instead, which the association count shows).
count_removed() {
  REMOVED=$(grep -c 'PE removed.*\(KeepAliveTimeout\|Expired\|Unreachable\)' "$1" || true)
}
# wait_assocs OP N: until the association count is OP N (ge or le), as long
# as the load generator runs (at most 120 s).
wait_assocs() {
  local i
  for ((i = 0; i < 1200; i++)); do
    assocs
    if [[ $1 == ge ]]; then (( ASSOCS < $2 )) || return 0; else (( ASSOCS > $2 )) || return 0; fi
    kill -0 "$LG_PID" 2>/dev/null || return 1
    nap
  done
  return 1
}

# run_one REGISTRAR MODE PUS RUN [EXTRA LOADGEN ARGS...]: a fresh registrar,
# the load generator against it, CPU samples while the pool users run ("busy")
# and after they stopped while the PEs are still registered ("rest": only
# keep-alives reach the registrar then).  MODE names the run in the file names
# ("max": closed loop; "half": open loop at --rate, half the best maximum).
run_one() {
  local reg=$1 mode=$2 pus=$3 run=$4 name rc=0 want rest removed=0 lost=0
  shift 4
  name=$reg-$mode-p$pus-$run
  CPU_FILE=$OUT/$name.cpu
  say "--- $name: ${REG_CMD[$reg]%% *} with $pus pool users"
  # shellcheck disable=SC2086  # the command lines above are plain words
  ${REG_CMD[$reg]} > "$OUT/$name.registrar.log" 2>&1 &
  REG_PID=$!
  if ! wait_listen; then
    say "FAIL $name: the registrar does not listen on $ADDR:$PORT"; FAILED=1
    stop_pid "$REG_PID"; REG_PID=""
    return
  fi
  assocs; local base=$ASSOCS
  LG=("$LOADGEN_BIN" resolve --registrar "sctp://$ADDR:$PORT" --pool "$POOL" --pes "$PES"
      --pe-connections "$PE_CONNS" --pus "$pus" --items "$ITEMS" --duration "$DURATION"
      --hold "$(( DURATION > 4 ? 4 : DURATION ))" --no-floor --json "$OUT/$name.json" "$@")
  printf '%s\n' "${LG[*]}" > "$OUT/$name.loadgen.txt"
  "${LG[@]}" >> "$OUT/$name.loadgen.txt" 2>&1 &
  LG_PID=$!
  # Associations (each counted at both ends): the PEs' first, then the PUs'.
  want=$(( base + 2 * (PE_CONNS + pus) ))
  rest=$(( base + 2 * PE_CONNS ))
  printf 'clk_tck=%s\nvcpus=%s\nassocs_expected=%s\n' "$CLK_TCK" "$VCPUS" "$want" > "$CPU_FILE"
  # CPU samples in closed-loop runs only: a --rate 50% run's pool users connect
  # twice (closed loop, then open loop), so the association count cannot tell
  # its phases apart.
  if [[ $mode == max ]] && wait_assocs ge "$want"; then
    # busy: from 0.3 s after the pool users connected to 0.7 s before they stop.
    nap 0.3
    sample_begin
    nap "$(( DURATION - 1 ))"
    sample_end busy
    assocs
    count_removed "$OUT/$name.registrar.log"
    # Fewer associations: pool users had finished (the script woke late on a
    # starved VM) or a PE's association was lost (the load generator reports
    # those): the window was not all busy.
    if (( ASSOCS >= want )); then printf '%s\n' "$WINDOW" >> "$CPU_FILE"; else echo "busy_discarded=1" >> "$CPU_FILE"; fi
    echo "assocs_at_busy_end=$ASSOCS" >> "$CPU_FILE"
    removed=$REMOVED
    # rest: the pool users are gone, the PEs stay (--hold).  Kept only if no
    # PE went meanwhile.
    if wait_assocs le "$rest"; then
      nap 0.3
      sample_begin
      nap "$(( DURATION > 4 ? 2 : DURATION - 2 ))"
      sample_end rest
      assocs
      count_removed "$OUT/$name.registrar.log"
      if (( ASSOCS >= rest && REMOVED == removed )); then
        printf '%s\n' "$WINDOW" >> "$CPU_FILE"
      else
        echo "rest_discarded=1" >> "$CPU_FILE"
      fi
      # One look at what the registrar hands out (PE ids and addresses).
      if [[ $run == 1 && $pus == "${PUS[0]}" ]]; then
        /usr/bin/python3 sctp-lab/asap-probe.py --registrar "$ADDR:$PORT" --pool "$POOL" \
          --count 1 --items "$ITEMS" > "$OUT/probe-$reg.txt" 2>&1 || true
      fi
    fi
  fi
  wait "$LG_PID" || rc=$?
  LG_PID=""
  stop_pid "$REG_PID"; REG_PID=""
  if [[ $mode != max ]]; then count_removed "$OUT/$name.registrar.log"; removed=$REMOVED; fi
  if [[ -s $OUT/$name.json ]]; then lost=$(jq '.summary.pes_lost_resolving // 0' "$OUT/$name.json"); fi
  if (( rc != 0 )); then
    say "FAIL $name: the load generator exited with $rc:"; sed 's/^/    | /' "$OUT/$name.loadgen.txt" | tail -n 5; FAILED=1
  elif (( lost > 0 )); then
    say "FAIL $name: $lost PE(s) lost their association while resolving (RSPLIB aborts a PE association on a keep-alive timeout)"; FAILED=1
  elif (( removed > 0 )); then
    say "FAIL $name: the registrar removed $removed PE(s) during the run (keep-alive timeout)"; FAILED=1
  else
    say "$(grep -E '^resolution( \([^)]*\))? +[0-9]' "$OUT/$name.loadgen.txt" | tr -s ' ')"
  fi
}

# --- network ------------------------------------------------------------------
ip link del labnet0 2>/dev/null || true
if ! { modprobe dummy && ip link set lo up && ip link add labnet0 type dummy \
        && ip addr add "$ADDR/24" dev labnet0 && ip addr add 192.0.2.2/24 dev labnet0 \
        && ip link set labnet0 up; }; then
  echo "vm-compare.sh: cannot set up labnet0" >&2; exit 1
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "vm: $VCPUS vCPUs, $(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 )) MiB, kernel $(uname -r), TCG unless the host has KVM"
  echo "rsplib: $(dpkg-query -W -f '${Version}' rsplib-registrar 2>/dev/null || echo unknown)"
  echo "pool: $POOL, $PES PEs (round robin) on $PE_CONNS associations, $ITEMS items per resolution"
  echo "keep-alive: interval $KA_INTERVAL ms, timeout $KA_TIMEOUT ms (both registrars)"
  echo "closed loop, $DURATION s per run, pool users: ${PUS[*]}, $REPEAT run(s) each, registrars alternating;" \
       "then --rate 50% (the maximum again, then open loop at half of it) with $HALF_PUS pool users, $REPEAT run(s) each"
  echo "CPU sampled while resolving (busy: from 0.3 s after the pool users connected, for $(( DURATION - 1 )) s)" \
       "and after (rest: PEs registered, keep-alives only, for $(( DURATION > 4 ? 2 : DURATION - 2 )) s)"
  for r in "${REGISTRARS[@]}"; do echo "registrar $r: ${REG_CMD[$r]}"; done
  echo "load generator: $LOADGEN_BIN resolve --registrar sctp://$ADDR:$PORT --pool $POOL --pes $PES --pe-connections $PE_CONNS --pus P --items $ITEMS --duration $DURATION --hold $(( DURATION > 4 ? 4 : DURATION )) --no-floor --json OUT.json [--rate 50%]"
} > "$OUT/settings.txt"
cat "$OUT/settings.txt"
echo

# Interleaved (per pool-user count: each registrar, the order alternating per
# repetition), so that a change in the host's load hits all alike.
in_order() {
  if (( $1 % 2 )); then ORDERED=("${REGISTRARS[@]}"); else
    ORDERED=(); for ((i = ${#REGISTRARS[@]} - 1; i >= 0; i--)); do ORDERED+=("${REGISTRARS[i]}"); done
  fi
}
for ((k = 1; k <= REPEAT; k++)); do
  for p in "${PUS[@]}"; do
    in_order "$k"
    for r in "${ORDERED[@]}"; do run_one "$r" max "$p" "$k"; done
  done
done
# Each registrar's best closed-loop run: its rate and pool-user count.
declare -A BEST_RATE=() BEST_PUS=()
while read -r r rate p; do
  BEST_RATE[$r]=$rate; BEST_PUS[$r]=$p
done < <(/usr/bin/python3 - "$OUT" <<'PY'
import json, pathlib, re, sys
best = {}
for f in pathlib.Path(sys.argv[1]).glob("*-max-p*-*.json"):
    m = re.fullmatch(r"(\w+)-max-p(\d+)-\d+", f.stem)
    res = [s for s in json.loads(f.read_text())["series"] if s["name"].startswith("resolution")]
    if m and res and res[0]["rate_per_s"] > best.get(m[1], (0, 0))[0]:
        best[m[1]] = (res[0]["rate_per_s"], int(m[2]))
for r, (rate, p) in best.items():
    print(r, int(rate), p)
PY
)
for r in "${REGISTRARS[@]}"; do
  [[ -z ${BEST_RATE[$r]:-} ]] || echo "best closed-loop rate of $r: ${BEST_RATE[$r]}/s with ${BEST_PUS[$r]} pool users"
done
# At 50 % load: --rate 50% measures the maximum again and runs open loop at
# half of it, in the same run (half of the sweep's best would overload a
# registrar whose best was a lucky run).
for ((k = 1; k <= REPEAT; k++)); do
  in_order "$k"
  for r in "${ORDERED[@]}"; do run_one "$r" half "$HALF_PUS" "$k" --rate 50%; done
done
echo
/usr/bin/python3 "$HERE/vm-compare-report.py" "$OUT" | tee "$OUT/summary.md"
exit "$FAILED"
