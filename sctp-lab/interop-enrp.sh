#!/usr/bin/env bash
# interop-enrp.sh - ENRP interop of our registrar with RSPLIB's rspregistrar, over
# kernel SCTP (PPID 12) inside the sctp-lab VM.
#
#   interop-enrp.sh [--out DIR] [--timeout S]     on the host: boots the VM
#   interop-enrp.sh --in-vm [--out DIR]           already inside the VM
#                                                 (run-tests.sh uses this)
#
# Registrars (fixed IDs; RSPLIB's takeover tie-break is "lowest ID wins", and R's
# ID lies between A's and B's, so either side can win a race):
#   A  ours  192.0.2.1  --id 0x10  ENRP sctp://192.0.2.1:9901, ASAP sctp://192.0.2.1:3863
#   R  RSPLIB 192.0.2.3 -identifier=0x20  -enrp=192.0.2.3:9901 -asap=192.0.2.3:3863
#   B  ours  192.0.2.2  --id 0x30  ENRP sctp://192.0.2.2:9901, ASAP sctp://192.0.2.2:3863
# each with every other one as a static peer, faster ENRP timers than the defaults on
# both sides (heartbeat 1 s, last heard 2 s, no response 1.5 s, takeover expiry 3 s),
# ASAP keep-alives 2 s + 2 s.  PEs: rspserver -echo, pool EchoPool, one per registrar
# (0x1001 at A, 0x2001 at B, 0x3001 at R), re-registering every PE_REREG ms.
#
# Steps (each PASS/FAIL with its duration):
#   1  network (dummy labnet0 with 192.0.2.1-3), dumpcap on lo, A and R listen;
#      A and R peer: hsdump at A lists R (0x20, 192.0.2.3:9901) as a peer and
#      hsdump at R lists A (0x10, 192.0.2.1:9901)
#   2  PE 0x3001 registered at R resolves at A; PE 0x1001 registered at A resolves at R
#   3  hsdump 192.0.2.1:9901 lists A's handlespace: both PEs, with homes A and R
#      (and hsdump at R lists the same)
#   4  rserpool-registrar dump sctp://192.0.2.3:9901 lists R's handlespace (SKIP if
#      the binary has no dump subcommand)
#   5  three runs with the scope {A, B, R}, restarted for each: all three PEs resolve
#      at all three registrars; the victim (A, then B, then R) is SIGKILLed; every PE
#      (all three stay alive) resolves at both survivors at every poll for HOLD s
#      (longer than the registration life, so copies that merely linger would
#      expire); hsdump at each survivor shows every PE with a live home, the
#      victim's PE taken over by a survivor, and both survivors agreeing.  In the
#      run that kills A, ours detect a dead peer later (last heard 3.5 s, no
#      response 2.5 s), so that R runs that takeover; in the others ours win.
#   6  tshark decodes the capture of all SCTP on lo cleanly (no malformed frame, no
#      expert warning or error), the ENRP message types 1-9 all occur (count per type
#      in the summary), every frame with ENRP has PPID 12, none is ENRP_ERROR (10);
#      every registrar not killed on purpose was still running when it was stopped
# Ends with "N passed, N failed"; exit status 1 if any step failed (2: bad usage,
# 124/125: VM trouble).
#
# --out DIR (default target/sctp-lab/interop-enrp) receives enrp.pcapng (all SCTP on
# lo), enrp-messages.txt (one line per frame with ENRP in it), tshark.txt (those
# and every frame with expert info), summary.txt, commands.txt (the registrars'
# command lines) and the log of every process (pair.*.log for steps 1-4,
# kill-X.*.log for the run that kills X; hsdump output in *.hsdump-*.log).
#
# Environment: REGISTRAR_BIN (default ${CARGO_TARGET_DIR:-target}/release/
# rserpool-registrar), INTEROP_TIMEOUT (VM limit, default 420), ENRP_HOLD (seconds
# of polling after a kill, default 22), PE_REREG (PE re-registration interval in ms,
# default 6000: registration life 18 s), ENRP_LOG_LEVEL (ours, default debug),
# RSPLIB_LOG_LEVEL (default 4).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
OUT=""
IN_VM=0
TIMEOUT=${INTEROP_TIMEOUT:-420}
while (( $# )); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --in-vm) IN_VM=1; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "interop-enrp.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

REGISTRAR_BIN=${REGISTRAR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rserpool-registrar}
if [[ ! -x $REGISTRAR_BIN ]]; then
  echo "interop-enrp.sh: $REGISTRAR_BIN not found; build it (cargo build --release -p rserpool-shards --bins)" >&2
  exit 2
fi

# ---------------------------------------------------------------- host side --
if [[ ${SCTP_LAB_VM:-} != 1 ]]; then
  (( ! IN_VM )) || { echo "interop-enrp.sh: --in-vm given, but this is not the sctp-lab VM" >&2; exit 2; }
  "$HERE/setup.sh" || exit 125          # also installs rsplib-* and tshark
  OUT=${OUT:-$ROOT/target/sctp-lab/interop-enrp}
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd -P)
  # --rw: the capture and logs must survive the VM.
  exec "$HERE/run.sh" --timeout "$TIMEOUT" --rw "$OUT" -- "$HERE/interop-enrp.sh" --in-vm --out "$OUT"
fi

# --------------------------------------------------------------- guest side --
# Under TCG every fork+exec costs 0.1-0.3 s, so the helpers below use bash
# builtins (EPOCHREALTIME, mapfile, read -t) instead of date, sleep, awk, sed.
cd "$ROOT"
ADDR_A=192.0.2.1          # RFC 5737 documentation addresses on a dummy interface:
ADDR_B=192.0.2.2          # RSPLIB drops loopback addresses from every ENRP and
ADDR_R=192.0.2.3          # ASAP transport, and its PEs refuse to register them.
ASAP_PORT=3863
ENRP_PORT=9901
ID_A=0x00000010
ID_R=0x00000020
ID_B=0x00000030
PE_A=0x00001001
PE_B=0x00002001
PE_R=0x00003001
POOL=EchoPool
HOLD=${ENRP_HOLD:-22}
PE_REREG=${PE_REREG:-6000}
declare -A ADDR=([A]=$ADDR_A [B]=$ADDR_B [R]=$ADDR_R)
declare -A RID=([A]=$ID_A [B]=$ID_B [R]=$ID_R)
declare -A PEID=([A]=$PE_A [B]=$PE_B [R]=$PE_R)
declare -A NAME_OF_ID=([$ID_A]=A [$ID_B]=B [$ID_R]=R)
# ENRP timers, the same on both sides (RSPLIB's defaults: 2444/5000/5000/5000 ms).
HEARTBEAT=1000 LAST_HEARD=2000 NO_RESPONSE=1500 TAKEOVER_EXPIRY=3000
KEEPALIVE=2000

if [[ -z $OUT ]]; then OUT=$(mktemp -d /tmp/interop-enrp.XXXXXX); fi
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/enrp.pcapng "$OUT"/enrp-messages.txt "$OUT"/tshark.txt "$OUT"/summary.txt
FIFOS=$(mktemp -d /tmp/interop-enrp-fifo.XXXXXX)   # FIFOs cannot be made on a 9p share
: > "$OUT/summary.txt"
# shellcheck source=steps.sh
source "$HERE/steps.sh"

LOGS=()          # logs whose tails a failure shows

fail() {
  local l
  FAILED=$((FAILED + 1)); since "$T_STEP"; say "FAIL $1 (${SINCE}s)${2:+ - $2}"
  for l in "${LOGS[@]}"; do show_log "$l"; done
  now_us; T_STEP=$NOW
}
show_log() {
  [[ -s $OUT/$1.log ]] || return 0
  echo "    --- $1.log (last 15 lines)"
  tail -n 15 "$OUT/$1.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    | /' | cut -c1-400
}
# start NAME CMD...: run in the background, output to $OUT/$PREFIX.NAME.log.
PREFIX=pair
start() {
  local name=$1; shift
  : > "$OUT/$PREFIX.$name.log"      # exists before the child gets to it: we poll it
  "$@" > "$OUT/$PREFIX.$name.log" 2>&1 &
  PIDS[$name]=$!
}
# stop [-SIG] NAME...: signal (default TERM), SIGKILL after 10 s.
stop() {
  local sig=TERM name pid i
  if [[ $1 == -* ]]; then sig=${1#-}; shift; fi
  for name in "$@"; do
    [[ -n ${PIDS[$name]:-} ]] || continue
    kill "-$sig" "${PIDS[$name]}" 2>/dev/null || true
    kill -CONT "${PIDS[$name]}" 2>/dev/null || true
  done
  for name in "$@"; do
    pid=${PIDS[$name]:-}; [[ -n $pid ]] || continue
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; nap; done
    if kill -KILL "$pid" 2>/dev/null && [[ $sig != KILL ]]; then
      echo "note: $name ignored SIG$sig for 10 s; killed"
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
  done 2>/dev/null    # no "Killed" job notices from bash
}
# stop_scope: PEs first (RSPLIB PEs retry deregistration for ~15 s without a
# registrar), then the registrars.  Notes registrars that died on their own.
DIED=()
stop_scope() {
  local x
  stop peA peB peR
  for x in A B R; do
    if [[ -n ${PIDS[reg$x]:-} ]] && ! alive "reg$x" && [[ $x != "${VICTIM:-}" ]]; then
      DIED+=("$PREFIX.reg$x")
    fi
  done
  stop regA regB regR
}
cleanup() {
  stop_scope
  stop probe capture decode
  rm -rf "$FIFOS"
  ip link del labnet0 2>/dev/null || true     # run-tests.sh may run us again in this VM
  if [[ -n ${DONE:-} ]]; then return; fi
  since "$T_START"
  say "(aborted after ${SINCE}s)"
  say "$PASSED passed, $((FAILED > 0 ? FAILED : 1)) failed"
}
trap cleanup EXIT

# hsdump_at TAG X: RSPLIB's hsdump of registrar X's ENRP endpoint, output in
# $OUT/$PREFIX.hsdump-TAG.log.  Fills HS_PEER (peer ID -> addrs:port, from the
# LIST_RESPONSE) and HS_HOME (PE ID -> home registrar ID, from the handle table).
declare -A HS_PEER=() HS_HOME=()
hsdump_at() {
  local tag=$1 x=$2 l peer="" log
  local -a lines
  log=$OUT/$PREFIX.hsdump-$tag.log
  HS_PEER=(); HS_HOME=()
  timeout 20 hsdump "${ADDR[$x]}:$ENRP_PORT" -logcolor=off > "$log" 2>&1 || true
  mapfile -t lines < "$log"
  for l in "${lines[@]}"; do
    # "   - idx:#0001: $00000020 upd=... chsum=... flags=..." then "addrs: {a, b} port/SCTP"
    if [[ $l =~ idx:#[0-9]+:\ \$([0-9a-fA-F]{8})\ upd= ]]; then
      peer=0x${BASH_REMATCH[1],,}
    elif [[ -n $peer && $l =~ addrs:\ \{([^\}]*)\}\ ([0-9]+)/SCTP ]]; then
      HS_PEER[$peer]="${BASH_REMATCH[1]//[ ]/}:${BASH_REMATCH[2]}"
      peer=""
    # Ownership section: "   - $00000010 -> "EchoPool" / $00001001 flags=..."
    elif [[ $l =~ \$([0-9a-fA-F]{8})\ -\>\ \"([^\"]*)\"\ /\ \$([0-9a-fA-F]{8}) ]]; then
      HS_HOME[0x${BASH_REMATCH[3],,}]=0x${BASH_REMATCH[1],,}
    fi
  done
}
# homes_text: HS_HOME as "PE@home ..." (registrar names where known).
homes_text() {
  local pe out=""
  for pe in $(printf '%s\n' "${!HS_HOME[@]}" | sort); do
    out+="$pe@${NAME_OF_ID[${HS_HOME[$pe]}]:-${HS_HOME[$pe]}} "
  done
  HOMES=${out% }
}

# registrar_cmd X PEERS...: the command line of registrar X with static peers PEERS.
registrar_cmd() {
  local x=$1 p
  shift
  if [[ $x == R ]]; then
    REG=(rspregistrar -identifier="$ID_R" -asap="$ADDR_R:$ASAP_PORT" -enrp="$ADDR_R:$ENRP_PORT"
         -asapannounce=off -enrpannounce=off
         -peerheartbeatcycle=$HEARTBEAT -peermaxtimelastheard=$LAST_HEARD
         -peermaxtimenoresponse=$NO_RESPONSE -takeoverexpiryinterval=$TAKEOVER_EXPIRY
         -endpointkeepalivetransmissioninterval=$KEEPALIVE -endpointkeepalivetimeoutinterval=$KEEPALIVE
         -maxhresitems=128 -loglevel="${RSPLIB_LOG_LEVEL:-4}" -logcolor=off)
    for p in "$@"; do REG+=(-peer="${ADDR[$p]}:$ENRP_PORT"); done
  else
    REG=("$REGISTRAR_BIN" --id "${RID[$x]}" --asap "sctp://${ADDR[$x]}:$ASAP_PORT"
         --enrp "sctp://${ADDR[$x]}:$ENRP_PORT"
         --peer-heartbeat-cycle $HEARTBEAT --peer-max-time-last-heard "${OURS_LAST_HEARD:-$LAST_HEARD}"
         --peer-max-time-no-response "${OURS_NO_RESPONSE:-$NO_RESPONSE}" --takeover-expiry $TAKEOVER_EXPIRY
         --keep-alive-interval $KEEPALIVE --keep-alive-timeout $KEEPALIVE
         --log-level "${ENRP_LOG_LEVEL:-debug}")
    for p in "$@"; do REG+=(--peer "sctp://${ADDR[$p]}:$ENRP_PORT"); done
  fi
}
# start_registrar X PEERS...
start_registrar() {
  local x=$1
  registrar_cmd "$@"
  echo "reg$x: ${REG[*]}" >> "$OUT/commands.txt"
  start "reg$x" "${REG[@]}"
}
# start_pe X: the echo PE of registrar X (address and registrar X).
start_pe() {
  local x=$1
  start "pe$x" rspserver -registrar="${ADDR[$x]}:$ASAP_PORT" -local="${ADDR[$x]}" -identifier="${PEID[$x]}" \
    -echo -poolhandle="$POOL" -policy=RoundRobin -asapannounce=off -rereginterval="$PE_REREG" \
    -loglevel=3 -logcolor=off
}
asap_of() { local x r=""; for x in "$@"; do r+="${ADDR[$x]}:$ASAP_PORT,"; done; ASAPS=${r%,}; }

# Debian's python3, not whatever is first on PATH: a pyenv shim starts ~30
# processes per call (3-25 s in the VM).  Started first, so that it is ready
# by the time the registrars are.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
coproc PROBE { exec "$PYTHON" -u "$HERE/asap-probe.py" --serve --registrar "$ADDR_A:$ASAP_PORT" --pool "$POOL" 2>"$OUT/probe.log"; }
PIDS[probe]=$PROBE_PID
: > "$OUT/commands.txt"

# --- 1. network, capture, A and R peer ---------------------------------------------
say "interop-enrp: ours $REGISTRAR_BIN (A $ID_A, B $ID_B) with RSPLIB rspregistrar (R $ID_R); output in $OUT"
ip link del labnet0 2>/dev/null || true
if modprobe dummy && ip link set lo up && ip link add labnet0 type dummy \
   && ip addr add "$ADDR_A/24" dev labnet0 && ip addr add "$ADDR_B/24" dev labnet0 \
   && ip addr add "$ADDR_R/24" dev labnet0 && ip link set labnet0 up; then
  pass "network: lo up, dummy labnet0 with $ADDR_A, $ADDR_B, $ADDR_R"
else
  abort "network: lo up, dummy labnet0 with $ADDR_A, $ADDR_B, $ADDR_R"
fi

# dumpcap, not tshark: tshark loads every dissector first, which takes 10-30 s
# under TCG; dumpcap starts in ~1.5 s.
PREFIX=all
start capture dumpcap -i lo -f sctp -w "$OUT/enrp.pcapng"
for ((i = 0; i < 300; i++)); do
  mapfile -t lines < "$OUT/all.capture.log"
  [[ " ${lines[*]} " == *"Capturing on"* ]] && break
  alive capture || break
  nap
done
if [[ " ${lines[*]} " == *"Capturing on"* ]]; then pass "dumpcap captures SCTP on lo"
else abort "dumpcap captures SCTP on lo" "${lines[*]: -3}"; fi
# The decoder of step 6, started now: tshark spends 30-50 s (under TCG) registering
# its dissectors before it opens the file to read, here a FIFO that gets the
# capture at the end.  At the lowest priority, so that it does not slow the
# registrars down.  One pass lists every frame with ENRP in it and every frame
# with expert info or a malformed part, whatever the protocol (ASAP is decoded
# too, but listing all of it would take long).  Message types are listed per
# frame (several when SCTP bundled them); '|' separates the fields.
mkfifo "$FIFOS/decode"
start decode nice -n 19 tshark -r "$FIFOS/decode" -Y 'enrp || _ws.expert || _ws.malformed' -T fields \
  -E 'separator=|' -e frame.number -e frame.time_relative -e ip.src -e sctp.srcport -e ip.dst \
  -e sctp.dstport -e enrp.message_type -e sctp.data_payload_proto_id -e _ws.expert.severity -e _ws.col.Info

PREFIX=pair
LOGS=(pair.regA pair.regR)
start_registrar A R
start_registrar R A
ok=1
wait_listen "$ADDR_A" "$ENRP_PORT" regA && wait_listen "$ADDR_A" "$ASAP_PORT" regA || ok=0
wait_listen "$ADDR_R" "$ENRP_PORT" regR && wait_listen "$ADDR_R" "$ASAP_PORT" regR || ok=0
if (( ok )); then pass "A (ours, $ID_A) and R (rspregistrar, $ID_R) listen on ENRP :$ENRP_PORT and ASAP :$ASAP_PORT"
else abort "A (ours, $ID_A) and R (rspregistrar, $ID_R) listen on ENRP :$ENRP_PORT and ASAP :$ASAP_PORT"; fi

# Peering as a third registrar sees it: each one's LIST_RESPONSE names the other
# with its ID (RSPLIB lists a static peer with ID 0 until it has heard its PRESENCE).
# RSPLIB stays in its start-up phase for up to 5 s (it ends early once its mentor's
# handle table is in), but it answers LIST requests and PRESENCEs meanwhile.
now_us; t0=$NOW
got_a="" got_r=""
for ((try = 0; ; try++)); do
  hsdump_at A A; got_a=${HS_PEER[$ID_R]:-}
  hsdump_at R R; got_r=${HS_PEER[$ID_A]:-}
  [[ $got_a == "$ADDR_R:$ENRP_PORT" && $got_r == "$ADDR_A:$ENRP_PORT" ]] && break
  now_us; (( NOW - t0 < 30000000 )) || break
  nap 10
done
since "$t0"
if [[ $got_a == "$ADDR_R:$ENRP_PORT" && $got_r == "$ADDR_A:$ENRP_PORT" ]]; then
  pass "A and R peer: A lists R ($ID_R@$got_a), R lists A ($ID_A@$got_r)" "after ${SINCE}s, $((try + 1)) hsdump rounds"
else
  fail "A and R peer: A lists R ($ID_R@$ADDR_R:$ENRP_PORT), R lists A ($ID_A@$ADDR_A:$ENRP_PORT)" \
       "A lists R as '${got_a:-absent}', R lists A as '${got_r:-absent}' after ${SINCE}s"
fi

# --- 2. PEs at R and at A resolve at the other registrar -----------------------------
start_pe R
start_pe A
asap_of A
probe members 40 "$PE_A,$PE_R" "$ASAPS"
if [[ $ANSWER == OK* ]]; then pass "PE $PE_R registered at R resolves at A (with A's own PE $PE_A)" "after ${ANSWER#OK }"
else fail "PE $PE_R registered at R resolves at A (with A's own PE $PE_A)" "$ANSWER"; show_log pair.peR; show_log pair.peA; fi
asap_of R
probe members 20 "$PE_A,$PE_R" "$ASAPS"
if [[ $ANSWER == OK* ]]; then pass "PE $PE_A registered at A resolves at R (with R's own PE $PE_R)" "after ${ANSWER#OK }"
else fail "PE $PE_A registered at A resolves at R (with R's own PE $PE_R)" "$ANSWER"; show_log pair.peA; fi

# --- 3. hsdump lists A's handlespace ----------------------------------------------------
want="$PE_A@A $PE_R@R"
for x in A R; do
  HOMES=""
  now_us; t0=$NOW
  for ((try = 0; ; try++)); do
    hsdump_at "$x-hs" "$x"; homes_text
    [[ $HOMES == "$want" ]] && break
    now_us; (( NOW - t0 < 20000000 )) || break
    nap 10
  done
  if [[ $HOMES == "$want" ]]; then pass "hsdump ${ADDR[$x]}:$ENRP_PORT lists $x's handlespace: $want" "$((try + 1)) rounds"
  else fail "hsdump ${ADDR[$x]}:$ENRP_PORT lists $x's handlespace: $want" "got '${HOMES:-nothing}' (pair.hsdump-$x-hs.log)"; fi
done

# --- 4. our dump of R's handlespace --------------------------------------------------------
# Its table has one row per PE: "  0x00001001  0x00000010  18000 ms  ..." (PE ID, home).
if "$REGISTRAR_BIN" dump --help > "$OUT/pair.dump-help.log" 2>&1; then
  HOMES="" rc=0
  now_us; t0=$NOW
  for ((try = 0; ; try++)); do
    rc=0
    timeout 30 "$REGISTRAR_BIN" dump --timeout 20 "sctp://$ADDR_R:$ENRP_PORT" > "$OUT/pair.dump-R.log" 2>&1 || rc=$?
    HS_HOME=()
    mapfile -t lines < "$OUT/pair.dump-R.log"
    for l in "${lines[@]}"; do
      [[ $l =~ ^\ +(0x[0-9a-fA-F]{8})\ +(0x[0-9a-fA-F]{8})\  ]] && HS_HOME[${BASH_REMATCH[1],,}]=${BASH_REMATCH[2],,}
    done
    homes_text
    [[ $rc == 0 && $HOMES == "$want" ]] && break
    now_us; (( NOW - t0 < 20000000 )) || break
    nap 10
  done
  if [[ $rc == 0 && $HOMES == "$want" ]]; then
    pass "rserpool-registrar dump sctp://$ADDR_R:$ENRP_PORT lists R's handlespace: $want" "$((try + 1)) rounds"
  else
    fail "rserpool-registrar dump sctp://$ADDR_R:$ENRP_PORT lists R's handlespace: $want" \
         "exit $rc, PEs@homes '${HOMES:-none}' (pair.dump-R.log)"
    show_log pair.dump-R
  fi
else
  say "SKIP rserpool-registrar dump: $REGISTRAR_BIN has no dump subcommand (yet)"
fi
stop_scope

# --- 5. a scope of three; each registrar killed once ---------------------------------------
IDS_ALL=$(printf '%s\n' "$PE_A" "$PE_B" "$PE_R" | sort | tr '\n' ,); IDS_ALL=${IDS_ALL%,}
for VICTIM in A B R; do
  PREFIX=kill-$VICTIM
  LOGS=("$PREFIX.regA" "$PREFIX.regB" "$PREFIX.regR")
  survivors=()
  for x in A B R; do [[ $x == "$VICTIM" ]] || survivors+=("$x"); done
  # Who takes over.  Kill A: ours detect a dead peer later here (last heard 3.5 s,
  # no response 2.5 s) so that R declares A dead first and runs the takeover, B
  # acknowledges, and B must learn the new home without TAKEOVER_SERVER (RSPLIB
  # never sends it), from R's ADD_PE or an audit.  Kill B: A or R, A (0x10) on a
  # tie.  Kill R: A or B, A on a tie.  Any survivor passes; the summary shows who.
  if [[ $VICTIM == A ]]; then OURS_LAST_HEARD=3500 OURS_NO_RESPONSE=2500 EXPECT=R
  else OURS_LAST_HEARD="" OURS_NO_RESPONSE=""; EXPECT=A; fi
  start_registrar A B R
  start_registrar B A R
  start_registrar R A B
  ok=1
  for x in A B R; do wait_listen "${ADDR[$x]}" "$ENRP_PORT" "reg$x" || ok=0; done
  start_pe A; start_pe B; start_pe R
  asap_of A B R
  probe members 60 "$IDS_ALL" "$ASAPS"
  if (( ok )) && [[ $ANSWER == OK* ]]; then
    read -r _ secs _ <<< "$ANSWER"
    pass "kill $VICTIM: scope {A, B, R} up, all three PEs resolve at all three registrars" "after ${secs}s"
  else
    fail "kill $VICTIM: scope {A, B, R} up, all three PEs resolve at all three registrars" "$ANSWER"
    stop_scope
    continue
  fi
  # Let a few heartbeats go by, so that every registrar knows every other one's ID
  # (RSPLIB waits for the acknowledgements of the peers it knows by ID).
  nap 30
  stop -KILL "reg$VICTIM"
  now_us; t_kill=$NOW
  asap_of "${survivors[@]}"
  probe holds "$HOLD" "$IDS_ALL" "$ASAPS"
  since "$t_kill"
  dead=""
  for x in "${survivors[@]}"; do alive "reg$x" || dead+=" $x"; done
  if [[ $ANSWER == OK* && -z $dead ]]; then
    pass "kill $VICTIM (SIGKILL): all three PEs resolve at ${survivors[*]} at every poll for ${HOLD}s" "${ANSWER#OK } polls"
  else
    fail "kill $VICTIM (SIGKILL): all three PEs resolve at ${survivors[*]} at every poll for ${HOLD}s" \
         "${dead:+survivors that died:$dead; }probe: $ANSWER (s after the kill, registrar, what it answered)"
  fi
  # Who owns what now, as each survivor tells a third registrar.
  declare -A first=()
  detail="" bad=""
  for x in "${survivors[@]}"; do
    hsdump_at "$x" "$x"; homes_text
    detail+="$x: ${HOMES:-nothing}; "
    for pe in "$PE_A" "$PE_B" "$PE_R"; do
      home=${NAME_OF_ID[${HS_HOME[$pe]:-none}]:-?}
      if [[ $home == "?" || $home == "$VICTIM" ]]; then bad+=" $x has $pe@${HS_HOME[$pe]:-missing};"; fi
      if [[ -n ${first[$pe]:-} && ${first[$pe]} != "$home" ]]; then bad+=" homes of $pe differ;"; fi
      first[$pe]=$home
    done
  done
  unset first
  winner=${NAME_OF_ID[${HS_HOME[${PEID[$VICTIM]}]:-none}]:-none}
  [[ -n $bad || $winner == "$EXPECT" ]] || detail+="(note: $winner took over, $EXPECT was expected to); "
  if [[ -z $bad ]]; then pass "kill $VICTIM: ${PEID[$VICTIM]} taken over; both survivors agree on live homes" "${detail%; }"
  else fail "kill $VICTIM: ${PEID[$VICTIM]} taken over; both survivors agree on live homes" "${bad# } (${detail%; })"; fi
  stop_scope
done
VICTIM=""
PREFIX=all

# --- 6. the capture -------------------------------------------------------------------------
stop probe
nap 5                  # let the last SHUTDOWN chunks reach the capture
stop capture
LOGS=()
if (( ${#DIED[@]} == 0 )); then pass "every registrar (not killed on purpose) ran until it was stopped"
else fail "every registrar (not killed on purpose) ran until it was stopped" "exited early: ${DIED[*]}"; fi

# The decoder started in step 1 reads the capture from its FIFO (a FIFO blocks the
# writer until the reader opens it, so this also waits for the rest of its start-up).
now_us; t0=$NOW
if alive decode; then
  timeout 300 cat "$OUT/enrp.pcapng" > "$FIFOS/decode" || true
  pid=${PIDS[decode]}
  for ((i = 0; i < 1200; i++)); do kill -0 "$pid" 2>/dev/null || break; nap; done
  stop decode
fi
since "$t0"; t_decode=$SINCE
# Its stdout went to all.decode.log: the frames, and maybe tshark's root warning.
grep -E '^[0-9]+\|' "$OUT/all.decode.log" > "$OUT/tshark.txt" || true
declare -A seen=()
malformed=0 warned=0 frames=0 wrong_ppid=0
mapfile -t rows < "$OUT/tshark.txt"
erows=()
# Fields: frame time src sport dst dport enrp-types ppids severities info
# ('|' separates them: with a tab, read would merge empty fields).
for row in "${rows[@]}"; do
  IFS='|' read -r _ _ _ _ _ _ etypes ppids sev info <<< "$row"
  if [[ -n $etypes ]]; then
    frames=$((frames + 1))
    erows+=("$row")
    for t in ${etypes//,/ }; do seen[$t]=$(( ${seen[$t]:-0} + 1 )); done
    [[ ,$ppids, =~ ^,(12,)+$ ]] || wrong_ppid=$((wrong_ppid + 1))
  fi
  [[ $info == *Malformed* ]] && malformed=$((malformed + 1))
  # Severity: 0x00600000 = warning, 0x00800000 = error (chat and note are fine).
  for s in ${sev//,/ }; do
    if [[ $s =~ ^[0-9]+$ ]] && (( s >= 0x600000 )) || [[ $s == *[Ww]arn* || $s == *[Ee]rror* ]]; then
      warned=$((warned + 1)); break
    fi
  done
done
(( ${#erows[@]} == 0 )) || printf '%s\n' "${erows[@]}" > "$OUT/enrp-messages.txt"
names=([1]=PRESENCE [2]=HT_REQUEST [3]=HT_RESPONSE [4]=HANDLE_UPDATE [5]=LIST_REQUEST
       [6]=LIST_RESPONSE [7]=INIT_TAKEOVER [8]=INIT_TAKEOVER_ACK [9]=TAKEOVER_SERVER [10]=ERROR)
counts="" missing=()
for t in $(printf '%s\n' "${!seen[@]}" | sort -n); do counts+="${names[$t]:-type$t}:${seen[$t]} "; done
for t in 1 2 3 4 5 6 7 8 9; do [[ -n ${seen[$t]:-} ]] || missing+=("${names[$t]}"); done
say "capture: $frames frames with ENRP; ENRP messages: ${counts:-none}; decoding took ${t_decode}s after the capture ended"
if [[ -s $OUT/tshark.txt && $malformed == 0 && $warned == 0 ]]; then
  pass "capture: tshark decodes all SCTP on lo cleanly (no malformed frame, no expert warning)"
else
  fail "capture: tshark decodes all SCTP on lo cleanly (no malformed frame, no expert warning)" \
       "malformed frames: $malformed; frames with expert warnings/errors: $warned; see tshark.txt"
fi
if (( ${#missing[@]} == 0 && wrong_ppid == 0 )); then pass "capture: ENRP message types 1-9 all seen, all on PPID 12" "${counts% }"
else fail "capture: ENRP message types 1-9 all seen, all on PPID 12" \
          "missing: ${missing[*]:-none}; frames with ENRP and a PPID other than 12: $wrong_ppid; seen: ${counts:-none}"; fi
if [[ -z ${seen[10]:-} ]]; then pass "capture: no ENRP_ERROR"
else
  fail "capture: no ENRP_ERROR" "${seen[10]} ENRP_ERROR message(s): $(grep -E '\|(10|[0-9,]*,10)(,[0-9,]*)?\|' "$OUT/enrp-messages.txt" | head -n 5 | tr '\t\n' ' ;')"
fi

DONE=1
since "$T_START"
say "total ${SINCE}s; capture and logs in $OUT"
say "$PASSED passed, $FAILED failed"
(( FAILED == 0 ))
