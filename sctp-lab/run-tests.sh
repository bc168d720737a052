#!/usr/bin/env bash
# run-tests.sh - the SCTP test suites, in ONE boot of the sctp-lab VM.
#
#   sctp-lab/run-tests.sh [--reference] [--no-build] [--out DIR] [--timeout S]
#
# On the host: setup.sh (idempotent), then
#   cargo build --release -p rserpool-shards -p rserpool-loadgen --bins
#   cargo test --no-run -p rserpool-shards
# so that nothing gets compiled inside the (emulated, slow) VM.  Then, in the VM:
#   e2e_sctp       cargo test --offline -p rserpool-shards --test e2e_sctp
#                  (only if rserpool-shards has that test target; the test
#                  executable is run directly, as cargo would, see below)
#   interop-ours   interop-rsplib.sh against target/release/rserpool-registrar
#                  (only if that binary exists and its --help mentions --asap;
#                  the placeholder binary does not, so it is reported as SKIP)
#   loadgen-sctp   loadgen-sctp.sh: every load generator scenario over SCTP
#                  against our registrar (once both binaries exist)
#   interop-enrp   interop-enrp.sh: ENRP between our registrar and RSPLIB's
#                  rspregistrar (peering, handle updates, hsdump, takeovers);
#                  once rserpool-registrar's --help mentions --enrp
#   interop-rsplib interop-rsplib.sh against RSPLIB's own registrar: checks the
#                  lab itself.  With --reference, or when nothing else would run.
# Ends with "N passed, N failed" over all tests of all suites (a suite that
# dies without its own summary counts as one failure); exit status 1 if any
# failed.
#
#   --reference   also run interop-rsplib
#   --no-build    skip the host cargo builds (use what is in target/)
#   --out DIR     logs, captures, summary (default target/sctp-lab/run-tests)
#   --timeout S   limit for the whole VM run (default 900); each suite also
#                 gets SUITE_TIMEOUT seconds (default 600)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
REFERENCE=0
BUILD=1
OUT=""
TIMEOUT=900
IN_VM=0
while (( $# )); do
  case $1 in
    --reference) REFERENCE=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --in-vm) IN_VM=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "run-tests.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$ROOT/target/sctp-lab/run-tests}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step() { printf '\n==> %s\n' "$*"; }

# --------------------------------------------------------------- guest side --
if (( IN_VM )); then
  [[ ${SCTP_LAB_VM:-} == 1 ]] || { echo "run-tests.sh: --in-vm outside the VM" >&2; exit 2; }
  cd "$ROOT"
  total_pass=0
  total_fail=0
  : > "$OUT/summary.txt"
  note() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }
  # run_suite NAME CMD...: output to the console and $OUT/NAME.log; adds up the
  # suite's own counts (cargo's "test result:" lines, or "N passed, N failed").
  run_suite() {
    local name=$1 t0 rc p f
    shift
    step "$name: $*"
    t0=$(now)
    set +e
    timeout --kill-after=10 "${SUITE_TIMEOUT:-600}" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    read -r p f <<< "$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/$name.log" | awk '
      /^test result: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
      /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
      END { print p + 0, f + 0 }')"
    if (( rc != 0 && f == 0 )); then f=1; fi   # died without reporting a failure
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    note "$( (( rc == 0 && f == 0 )) && echo PASS || echo FAIL ) suite $name: $p passed, $f failed, exit $rc, $(since "$t0")s"
  }
  while IFS= read -r s; do [[ -z $s ]] || note "SKIP suite $s"; done <<< "${RUN_TESTS_SKIPPED:-}"
  for s in ${RUN_TESTS_SUITES:-}; do
    case $s in
      # = cargo test --offline -p rserpool-shards --test e2e_sctp, minus cargo's
      # freshness check, which takes ~30 s in the VM (it stats every source
      # file over 9p).  Same working directory and manifest variable as cargo.
      e2e_sctp) run_suite e2e_sctp env -C "$ROOT/shards" CARGO_MANIFEST_DIR="$ROOT/shards" \
                  CARGO_PKG_NAME=rserpool-shards "$RUN_TESTS_E2E_BIN" ;;
      interop-ours) REGISTRAR=ours run_suite interop-ours "$HERE/interop-rsplib.sh" --in-vm --out "$OUT/interop-ours" ;;
      loadgen-sctp) run_suite loadgen-sctp "$HERE/loadgen-sctp.sh" ;;
      interop-enrp) run_suite interop-enrp "$HERE/interop-enrp.sh" --in-vm --out "$OUT/interop-enrp" ;;
      interop-rsplib) REGISTRAR=rsplib REGISTRAR_CMD="" run_suite interop-rsplib \
                        "$HERE/interop-rsplib.sh" --in-vm --out "$OUT/interop-rsplib" ;;
    esac
  done
  note "$total_pass passed, $total_fail failed"
  (( total_fail == 0 ))
  exit
fi

# ---------------------------------------------------------------- host side --
[[ ${SCTP_LAB_VM:-} != 1 ]] || { echo "run-tests.sh: run this on the host" >&2; exit 2; }
cd "$ROOT"
T0=$(now)
step "setup (sctp-lab/setup.sh)"
"$HERE/setup.sh"
T_SETUP=$(since "$T0")

T1=$(now)
if (( BUILD )); then
  step "host build: cargo build --release -p rserpool-shards -p rserpool-loadgen --bins"
  cargo build --release -p rserpool-shards -p rserpool-loadgen --bins
  step "host build: cargo test --no-run -p rserpool-shards"
  cargo test --no-run -p rserpool-shards
fi
T_BUILD=$(since "$T1")

suites=()
skipped=()
# The e2e test exists once rserpool-shards has a test target named e2e_sctp;
# ask cargo for the path of its (already built) executable.
E2E_BIN=""
if cargo metadata --no-deps --format-version 1 --offline 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(not any(t["name"] == "e2e_sctp" and "test" in t["kind"]
                 for p in m["packages"] if p["name"] == "rserpool-shards" for t in p["targets"]))'; then
  E2E_BIN=$(cargo test --no-run -p rserpool-shards --test e2e_sctp --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "e2e_sctp":
        print(m["executable"])' | tail -n1) || true
  if [[ -z $E2E_BIN ]]; then
    echo "run-tests.sh: the e2e_sctp test does not build:" >&2
    cargo test --no-run -p rserpool-shards --test e2e_sctp >&2 || true
    exit 1
  fi
  suites+=(e2e_sctp)
else
  skipped+=("e2e_sctp: rserpool-shards has no test target e2e_sctp")
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/rserpool-registrar
if [[ -n ${REGISTRAR_CMD:-} ]]; then
  suites+=(interop-ours)
elif [[ ! -x $BIN ]]; then
  skipped+=("interop-ours: no $BIN")
elif ! "$BIN" --help 2>&1 | grep -q -- '--asap'; then
  # The placeholder main() only prints "not built yet".
  skipped+=("interop-ours: rserpool-registrar is still the placeholder (no --asap in its --help)")
else
  suites+=(interop-ours)
fi
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/rserpool-loadgen
if [[ -x $BIN && -x $LOADGEN ]] && "$LOADGEN" --help 2>&1 | grep -q failover; then
  suites+=(loadgen-sctp)
else
  skipped+=("loadgen-sctp: no $LOADGEN with failover")
fi
if [[ -x $BIN ]] && "$BIN" --help 2>&1 | grep -q -- '--enrp'; then
  suites+=(interop-enrp)
else
  skipped+=("interop-enrp: no $BIN with --enrp")
fi
if (( REFERENCE )) || (( ${#suites[@]} == 0 )); then suites+=(interop-rsplib); fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
rm -f "$OUT/summary.txt"
step "VM: ${suites[*]}"
T2=$(now)
rc=0
"$HERE/run.sh" --timeout "$TIMEOUT" --rw "$OUT" \
  --env "RUN_TESTS_SUITES=${suites[*]}" --env "RUN_TESTS_SKIPPED=$(printf '%s\n' "${skipped[@]}")" \
  --env "RUN_TESTS_E2E_BIN=$E2E_BIN" \
  -- "$HERE/run-tests.sh" --in-vm --out "$OUT" || rc=$?
T_VM=$(since "$T2")

step "done"
echo "times: setup ${T_SETUP}s, host build ${T_BUILD}s, VM ${T_VM}s, total $(since "$T0")s; logs in $OUT"
if tail -n1 "$OUT/summary.txt" 2>/dev/null | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  tail -n1 "$OUT/summary.txt"
else
  echo "run.sh exited with $rc before the suites reported (124 = timeout, 125 = VM failure)"
  echo "0 passed, 1 failed"
  (( rc != 0 )) || rc=1
fi
exit "$rc"
