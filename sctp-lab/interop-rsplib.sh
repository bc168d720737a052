#!/usr/bin/env bash
# interop-rsplib.sh - interop test of a registrar with RSPLIB pool elements and
# pool users, over kernel SCTP inside the sctp-lab VM.
#
#   interop-rsplib.sh [--out DIR] [--timeout S]     on the host: boots the VM
#   interop-rsplib.sh --in-vm [--out DIR]           already inside the VM
#                                                   (run-tests.sh uses this)
#
# The registrar under test:
#   REGISTRAR=ours (default)  ${CARGO_TARGET_DIR:-target}/release/rserpool-registrar
#                             --asap sctp://192.0.2.1:3863 --keep-alive-interval 1000
#                             --keep-alive-timeout 1000 --log-level info
#   REGISTRAR=rsplib          RSPLIB's rspregistrar (validates this script)
#   REGISTRAR_CMD="..."       any command line (run by bash from the repository
#                             root; it must serve ASAP on 192.0.2.1:3863)
#
# Steps: dummy interface 192.0.2.1/24 + 192.0.2.2/24; dumpcap on lo; registrar;
# PE1 (rspserver -echo, id 0x00001001, 192.0.2.1) registers; rspterminal gets
# its echo; PE2 (0x00001002, 192.0.2.2) registers; round robin alternates
# (seen by asap-probe.py and by rspterminal's "from PE $id"); PE1 SIGKILLed and
# removed; PE2 SIGSTOPped and removed by keep-alive timeout, SIGCONTed and
# registered again; PE2 SIGTERMed and deregistered; registrar still alive; the
# capture decodes cleanly.  Prints PASS/FAIL per step, then "N passed, N
# failed"; exit status 1 if any step failed (2: bad usage, 124/125: VM trouble).
#
# --out DIR (default target/sctp-lab/interop) receives asap.pcapng (all SCTP on
# lo), asap-messages.txt (one line per decoded ASAP message), summary.txt and
# the log of every process.  Environment: INTEROP_TIMEOUT (VM limit, default 300).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
OUT=""
IN_VM=0
TIMEOUT=${INTEROP_TIMEOUT:-300}
while (( $# )); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --in-vm) IN_VM=1; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "interop-rsplib.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

REGISTRAR=${REGISTRAR:-ours}
REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rserpool-registrar}
if [[ -z ${REGISTRAR_CMD:-} && $REGISTRAR == ours && ! -x $REGISTRAR_BIN ]]; then
  echo "interop-rsplib.sh: $REGISTRAR_BIN not found; build it (cargo build --release -p rserpool-shards --bins)" \
       "or use REGISTRAR=rsplib / REGISTRAR_CMD=..." >&2
  exit 2
fi
case $REGISTRAR in ours|rsplib) ;; *) echo "interop-rsplib.sh: REGISTRAR must be ours or rsplib" >&2; exit 2 ;; esac

# ---------------------------------------------------------------- host side --
if [[ ${SCTP_LAB_VM:-} != 1 ]]; then
  (( ! IN_VM )) || { echo "interop-rsplib.sh: --in-vm given, but this is not the sctp-lab VM" >&2; exit 2; }
  "$HERE/setup.sh" || exit 125          # also installs rsplib-* and tshark
  OUT=${OUT:-$ROOT/target/sctp-lab/interop}
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd -P)
  # --rw: the capture and logs must survive the VM.
  exec "$HERE/run.sh" --timeout "$TIMEOUT" --rw "$OUT" -- "$HERE/interop-rsplib.sh" --in-vm --out "$OUT"
fi

# --------------------------------------------------------------- guest side --
# Under TCG every fork+exec costs 0.1-0.3 s, so the helpers below use bash
# builtins (EPOCHREALTIME, mapfile, read -t) instead of date, sleep, awk, sed.
cd "$ROOT"
A1=192.0.2.1              # RFC 5737 documentation addresses on a dummy interface:
A2=192.0.2.2              # RSPLIB PEs refuse to register loopback-only addresses.
PORT=3863
POOL=EchoPool
PE1_ID=0x00001001
PE2_ID=0x00001002
if [[ -z $OUT ]]; then OUT=$(mktemp -d /tmp/interop.XXXXXX); fi
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/asap.pcapng "$OUT"/asap-messages.txt "$OUT"/summary.txt   # from an earlier run
FIFOS=$(mktemp -d /tmp/interop-fifo.XXXXXX)   # FIFOs cannot be made on a 9p share
: > "$OUT/summary.txt"
# shellcheck source=steps.sh
source "$HERE/steps.sh"
PROBE_TIMEOUT=120

fail() {
  FAILED=$((FAILED + 1)); since "$T_STEP"; say "FAIL $1 (${SINCE}s)${2:+ - $2}"
  if [[ -n ${PIDS[registrar]:-} ]]; then show_log registrar; fi
  now_us; T_STEP=$NOW
}
show_log() {
  [[ -s $OUT/$1.log ]] || return 0
  echo "    --- $1.log (last 15 lines)"
  tail -n 15 "$OUT/$1.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    | /'
}
# start NAME CMD...: run in the background, output to $OUT/NAME.log.
start() {
  local name=$1; shift
  : > "$OUT/$name.log"      # exists before the child gets to it: we poll it
  "$@" > "$OUT/$name.log" 2>&1 &
  PIDS[$name]=$!
}
# stop [-SIG] NAME...: signal (default TERM), SIGKILL after 10 s.
stop() {
  local sig=TERM name pid i
  if [[ $1 == -* ]]; then sig=${1#-}; shift; fi
  for name in "$@"; do
    [[ -n ${PIDS[$name]:-} ]] || continue
    kill "-$sig" "${PIDS[$name]}" 2>/dev/null || true
    kill -CONT "${PIDS[$name]}" 2>/dev/null || true    # in case it was SIGSTOPped
  done
  for name in "$@"; do
    pid=${PIDS[$name]:-}; [[ -n $pid ]] || continue
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; nap; done
    if kill -KILL "$pid" 2>/dev/null && [[ $sig != KILL ]]; then
      echo "note: $name ignored SIGTERM for 10 s; killed"
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
  done 2>/dev/null    # no "Killed" job notices from bash
}
cleanup() {
  local name
  # PEs before the registrar: RSPLIB PEs retry deregistration for ~15 s otherwise.
  for name in "${!PIDS[@]}"; do [[ $name == pu* ]] && stop "$name"; done
  for name in pe1 pe2 registrar probe capture; do stop "$name"; done
  rm -rf "$FIFOS"
  ip link del labnet0 2>/dev/null || true     # run-tests.sh may run us again in this VM
  if [[ -n ${DONE:-} ]]; then return; fi
  since "$T_START"
  say "(aborted after ${SINCE}s)"
  say "$PASSED passed, $((FAILED > 0 ? FAILED : 1)) failed"
}
trap cleanup EXIT

# pu_echo NAME: one rspterminal session (resolve EchoPool, connect, send one
# line).  Sets PU_PE to the id of the PE whose echo came back ("" if none).
# rspterminal never notices EOF on a pipe, so it reads a FIFO and is stopped
# once the echo is in.
pu_echo() {
  local name=$1 line="ping from $1" fifo=$FIFOS/$1 fd i l
  local -a lines
  PU_PE=""
  mkfifo "$fifo"
  : > "$OUT/$name.log"
  # The child opens the FIFO (a redirection on an async command), so this
  # shell does not block; the exec below waits until rspterminal has it open.
  stdbuf -oL rspterminal -poolhandle="$POOL" -registrar="$A1:$PORT" \
    -asapannounce=off -loglevel=2 -logcolor=off < "$fifo" > "$OUT/$name.log" 2>&1 &
  PIDS[$name]=$!
  exec {fd}>"$fifo"
  trap '' PIPE              # if rspterminal died already, the write must not kill us
  printf '%s\n' "$line" >&"$fd" || true
  trap - PIPE
  for ((i = 0; i < 150; i++)); do
    # rspterminal prints each reply as "from PE $00001001> LINE".
    mapfile -t lines < "$OUT/$name.log"
    for l in "${lines[@]}"; do
      if [[ $l =~ from\ PE\ \$([0-9A-Fa-f]+)\>\ $line ]]; then PU_PE=0x${BASH_REMATCH[1],,}; break; fi
    done
    [[ -z $PU_PE ]] || break
    alive "$name" || break
    nap
  done
  exec {fd}>&-
  stop "$name"
  rm -f "$fifo"
}

# Echo PEs; they re-register every 5 s (registration life 15 s).
PE=(rspserver -registrar="$A1:$PORT" -echo -poolhandle="$POOL" -policy=RoundRobin
    -asapannounce=off -rereginterval=5000 -loglevel=3 -logcolor=off)

# Debian's python3, not whatever is first on PATH: a pyenv shim starts ~30
# processes per call (3-25 s in the VM).  Started first, so that it is ready
# by the time the registrar is.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
coproc PROBE { exec "$PYTHON" -u "$HERE/asap-probe.py" --serve --registrar "$A1:$PORT" --pool "$POOL" 2>"$OUT/probe.log"; }
PIDS[probe]=$PROBE_PID

# --- 1. network ---------------------------------------------------------------
say "interop-rsplib: registrar=${REGISTRAR_CMD:+custom command}${REGISTRAR_CMD:-$REGISTRAR}, output in $OUT"
ip link del labnet0 2>/dev/null || true
if modprobe dummy && ip link set lo up && ip link add labnet0 type dummy \
   && ip addr add "$A1/24" dev labnet0 && ip addr add "$A2/24" dev labnet0 && ip link set labnet0 up; then
  pass "network: lo up, dummy labnet0 with $A1/24 and $A2/24"
else
  abort "network: lo up, dummy labnet0 with $A1/24 and $A2/24"
fi

# --- 2. capture ------------------------------------------------------------------
# dumpcap, not tshark: tshark loads every dissector first, which takes 10-30 s
# under TCG; dumpcap starts in ~1.5 s.
start capture dumpcap -i lo -f sctp -w "$OUT/asap.pcapng"
for ((i = 0; i < 300; i++)); do
  mapfile -t lines < "$OUT/capture.log"
  [[ " ${lines[*]} " == *"Capturing on"* ]] && break
  alive capture || break
  nap
done
if grep -q 'Capturing on' "$OUT/capture.log"; then pass "dumpcap captures SCTP on lo"
else abort "dumpcap captures SCTP on lo" "$(tail -n 3 "$OUT/capture.log")"; fi

# --- 3. registrar -----------------------------------------------------------------
if [[ -n ${REGISTRAR_CMD:-} ]]; then
  REG=(bash -c "exec $REGISTRAR_CMD")
elif [[ $REGISTRAR == rsplib ]]; then
  # ENRP on a fixed port so that "hsdump 192.0.2.1:9901" can inspect it.
  REG=(rspregistrar -asap="$A1:$PORT" -enrp="$A1:9901" -minaddressscope=loopback
       -asapannounce=off -enrpannounce=off
       -endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000
       -maxhresitems=128 -loglevel=3 -logcolor=off)
else
  REG=("$REGISTRAR_BIN" --asap "sctp://$A1:$PORT" --keep-alive-interval 1000
       --keep-alive-timeout 1000 --log-level info)
fi
say "registrar: ${REG[*]}"
start registrar "${REG[@]}"
if wait_listen "$A1" "$PORT" registrar; then pass "registrar listens on $A1:$PORT (SCTP)"
else abort "registrar listens on $A1:$PORT (SCTP)" "$(alive registrar && echo 'still running' || echo 'exited')"; fi

# --- 4. PE1 registers ----------------------------------------------------------------
start pe1 "${PE[@]}" -local="$A1" -identifier="$PE1_ID"
probe members 30 "$PE1_ID"
if [[ $ANSWER == OK* ]]; then pass "PE1 $PE1_ID ($A1) registered: $POOL resolves to {PE1}" "after ${ANSWER#OK }"
else fail "PE1 $PE1_ID ($A1) registered: $POOL resolves to {PE1}" "$ANSWER"; show_log pe1; fi

# --- 5. PU echo through PE1 --------------------------------------------------------------
pu_echo pu1
if [[ $PU_PE == "$PE1_ID" ]]; then pass "PU: rspterminal resolved $POOL, echo came back from PE1"
else fail "PU: rspterminal resolved $POOL, echo came back from PE1" "got '${PU_PE:-no echo}'"; show_log pu1; fi

# --- 6. PE2 registers -------------------------------------------------------------------
start pe2 "${PE[@]}" -local="$A2" -identifier="$PE2_ID"
probe members 30 "$PE1_ID,$PE2_ID"
if [[ $ANSWER == OK* ]]; then pass "PE2 $PE2_ID ($A2) registered: $POOL resolves to {PE1, PE2}" "after ${ANSWER#OK }"
else fail "PE2 $PE2_ID ($A2) registered: $POOL resolves to {PE1, PE2}" "$ANSWER"; show_log pe2; fi

# --- 7. round robin, registrar's view -------------------------------------------------------
# Six resolutions asking for one entry each (like rspterminal); round robin
# must alternate.  If a registrar ignores the item count, the first entry of
# each answer must still alternate.
probe resolve 6 1
read -r -a got <<< "${ANSWER#OK }"
firsts=()
for r in "${got[@]}"; do firsts+=("${r%%,*}"); done
rr_ok=0
if [[ $ANSWER == OK* && ${#firsts[@]} == 6 ]]; then
  rr_ok=1
  for i in 0 1 2 3 4 5; do
    [[ ${firsts[i]} == "$PE1_ID" || ${firsts[i]} == "$PE2_ID" ]] || rr_ok=0
    (( i == 0 )) || [[ ${firsts[i]} != "${firsts[i-1]}" ]] || rr_ok=0
  done
fi
if (( rr_ok )); then pass "round robin (ASAP probe): 6 resolutions over one association alternate" "${firsts[*]}"
else fail "round robin (ASAP probe): 6 resolutions over one association alternate" "$ANSWER"; fi

# --- 8. round robin, PU's view ----------------------------------------------------------------
# Each rspterminal session is a new association. A sharded registrar rotates round robin
# per shard (each shard answers from its own replica without waiting for the others), so
# a new session may land on either shard: among three sessions some shard serves two in
# a row, and those two must get different PEs. A registrar without round robin fails.
pu_echo pu2; a=$PU_PE
pu_echo pu3; b=$PU_PE
pu_echo pu3b; c=$PU_PE
if [[ -n $a && -n $b && -n $c ]] && { [[ $a != "$b" ]] || [[ $b != "$c" ]] || [[ $a != "$c" ]]; }; then
  pass "round robin (rspterminal): 3 sessions are answered by both PEs" "$a $b $c"
else fail "round robin (rspterminal): 3 sessions are answered by both PEs" "got '${a:-none}' '${b:-none}' '${c:-none}'"; fi

# --- 9. PE1 crashes ------------------------------------------------------------------------------
# SIGKILL: no deregistration; the registrar must notice through the association
# loss or the missing keep-alive ack (interval 1 s + timeout 1 s).
stop -KILL pe1
probe members 15 "$PE2_ID"
if [[ $ANSWER == OK* ]]; then pass "PE1 killed (SIGKILL): registrar removed it" "after ${ANSWER#OK }"
else fail "PE1 killed (SIGKILL): registrar removed it" "$ANSWER"; fi

# --- 10. only PE2 is handed out -------------------------------------------------------------------
probe resolve 4 1
pu_echo pu4
if [[ $ANSWER == "OK $PE2_ID $PE2_ID $PE2_ID $PE2_ID" && $PU_PE == "$PE2_ID" ]]; then
  pass "after removal: 4 resolutions and a PU session all get PE2"
else fail "after removal: 4 resolutions and a PU session all get PE2" "probe: $ANSWER; rspterminal: ${PU_PE:-no echo}"; fi

# --- 11. keep-alive supervision -----------------------------------------------------------------
# SIGSTOP freezes PE2, but the kernel keeps its SCTP associations up (it answers
# SCTP heartbeats itself), so only the registrar's ASAP keep-alive (1 s interval,
# 1 s timeout) can find out.
kill -STOP "${PIDS[pe2]}"
probe members 15 -
if [[ $ANSWER == OK* ]]; then pass "PE2 frozen (SIGSTOP): keep-alive timeout removed it" "after ${ANSWER#OK }"
else fail "PE2 frozen (SIGSTOP): keep-alive timeout removed it" "$ANSWER"; fi
kill -CONT "${PIDS[pe2]}"
# It re-registers when it notices the lost registrar association, or at its
# next re-registration (every 5 s) at the latest.
probe members 30 "$PE2_ID"
if [[ $ANSWER == OK* ]]; then pass "PE2 resumed (SIGCONT): registered again" "after ${ANSWER#OK }"
else fail "PE2 resumed (SIGCONT): registered again" "$ANSWER"; show_log pe2; fi

# --- 12. PE2 deregisters ----------------------------------------------------------------------------
stop pe2
probe members 15 -
if [[ $ANSWER == OK*error:0x0009* ]]; then pass "PE2 stopped (SIGTERM): deregistered, $POOL unknown" "after ${ANSWER#OK }"
else fail "PE2 stopped (SIGTERM): deregistered, $POOL unknown (cause 0x0009)" "$ANSWER"; show_log pe2; fi

# --- 13. registrar health -------------------------------------------------------------------------
if alive registrar; then pass "registrar still running"
else fail "registrar still running" "exited"; fi
stop registrar
sleep 0.5              # let the last SHUTDOWN chunks reach the capture
stop probe capture

# --- 14. the capture ------------------------------------------------------------------------------------
# One line per frame with ASAP in it; message types are ASAP codes (RFC 5352),
# several per frame when SCTP bundled them.
tshark -r "$OUT/asap.pcapng" -Y asap -T fields -E separator=/t -e frame.number -e frame.time_relative \
  -e ip.src -e sctp.srcport -e ip.dst -e sctp.dstport -e asap.message_type -e _ws.col.Info \
  > "$OUT/asap-messages.txt" 2>"$OUT/tshark-read.log" || true
declare -A seen=()
for t in $(cut -f7 "$OUT/asap-messages.txt" | tr ',' ' '); do seen[$t]=$(( ${seen[$t]:-0} + 1 )); done
missing=()
# Registration(+Response), Deregistration(+Response), Handle Resolution(+Response), Keep-Alive(+Ack)
for t in 1 3 2 4 5 6 7 8; do [[ -n ${seen[$t]:-} ]] || missing+=("$t"); done
malformed=$(grep -c 'Malformed' "$OUT/asap-messages.txt" || true)
counts=$(for t in $(printf '%s\n' "${!seen[@]}" | sort -n); do printf '%s:%s ' "$t" "${seen[$t]}"; done)
if [[ -s $OUT/asap-messages.txt && ${#missing[@]} == 0 && $malformed == 0 ]]; then
  pass "capture: tshark decodes ASAP types 1-8 cleanly" "count per type: $counts"
else
  fail "capture: tshark decodes ASAP types 1-8 cleanly" "missing types: ${missing[*]:-none}; malformed frames: $malformed; counts: ${counts:-none}"
fi

DONE=1
since "$T_START"
say "total ${SINCE}s; capture and logs in $OUT"
say "$PASSED passed, $FAILED failed"
(( FAILED == 0 ))
