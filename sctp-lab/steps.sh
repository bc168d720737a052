# steps.sh - helpers the interop scripts share (sourced, never run): time without
# forking, PASS/FAIL lines into $OUT/summary.txt, child processes by name, and waiting
# for an SCTP listener. Under TCG every fork+exec costs 0.1-0.3 s, so these use bash
# builtins (EPOCHREALTIME, mapfile, read -t) instead of date, sleep, awk, sed.
#
# The sourcing script sets OUT and FIFOS (a directory for FIFOs) first, and defines
# fail/show_log/start/stop, which differ per script.

PASSED=0
FAILED=0
declare -A PIDS=()
now_us() { NOW=${EPOCHREALTIME/./}; }
now_us; T_START=$NOW; T_STEP=$NOW
# since START_US: seconds since then, one decimal, in $SINCE.
since() { now_us; local d=$(( (NOW - $1) / 100000 )); SINCE=$((d / 10)).$((d % 10)); }
# nap [N]: sleep N (default 1) tenths of a second without starting a process
# (read times out on a silent FIFO).
mkfifo "$FIFOS/nap"
exec {NAP_FD}<>"$FIFOS/nap"
nap() { local i; for ((i = 0; i < ${1:-1}; i++)); do read -r -t 0.1 -u "$NAP_FD" _ || true; done; }

say() { printf '%s\n' "$*"; printf '%s\n' "$*" >> "$OUT/summary.txt"; }
pass() { PASSED=$((PASSED + 1)); since "$T_STEP"; say "PASS $1 (${SINCE}s)${2:+ - $2}"; now_us; T_STEP=$NOW; }
abort() { fail "$1" "${2:-}"; say "(remaining steps skipped)"; exit 1; }
alive() { [[ -n ${PIDS[$1]:-} ]] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# Wait until an SCTP endpoint listens on ADDR:PORT, as long as process NAME
# lives.  /proc/net/sctp/eps: ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...
wait_listen() {
  local addr=$1 port=$2 name=$3 i f
  local -a lines words
  for ((i = 0; i < 300; i++)); do
    mapfile -t lines < /proc/net/sctp/eps
    for f in "${lines[@]:1}"; do
      read -r -a words <<< "$f"
      [[ ${words[5]} == "$port" && " ${words[*]:8} " == *" $addr "* ]] && return 0
    done
    alive "$name" || return 1
    nap
  done
  return 1
}

# probe CMD...: one request to the asap-probe.py coprocess (PROBE); answer in $ANSWER.
probe() {
  ANSWER="NOANSWER (probe not running)"
  alive probe || return 0
  printf '%s\n' "$*" >&"${PROBE[1]}"
  IFS= read -r -t "${PROBE_TIMEOUT:-180}" ANSWER <&"${PROBE[0]}" || ANSWER="NOANSWER (probe timed out)"
}
