#!/usr/bin/env bash
# run.sh - run one command inside a throw-away qemu VM whose kernel has SCTP
#          (KVM when the host has hardware KVM, otherwise TCG emulation).
#
#   run.sh [options] -- COMMAND [ARGS...]
#
#   --timeout SECONDS  kill the VM after this many seconds (boot included);
#                      exit 124.  Default 600 (env SCTP_LAB_TIMEOUT); 0 = none.
#   --cwd DIR          working directory inside the VM (default: current one)
#   --rw DIR           make host directory DIR writable inside the VM, at the
#                      same path (writes reach the host).  Repeatable.
#   --env NAME=VALUE   set an environment variable inside the VM.  Repeatable.
#   --mem SIZE         VM memory, qemu syntax (default 2G, env SCTP_LAB_MEM)
#   --cpus N           VM CPUs (default 2, env SCTP_LAB_CPUS)
#   -v, --verbose      print the VM console (kernel, init) and timings to stderr
#   --keep             keep the per-run directory (console log, outputs)
#
# The host filesystem is visible read-only, with a RAM overlay on top: inside
# the VM everything is writable, but writes vanish when the VM stops (except in
# --rw directories).  The caller's environment is passed in; SCTP_LAB_VM=1 is
# set.  stdin is /dev/null.  stdout/stderr of the command go to run.sh's
# stdout/stderr.  Exit status: the command's; 124 on timeout; 125 when the VM
# itself failed (then the console log is printed).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
CACHE=${SCTP_LAB_CACHE:-/var/cache/sctp-lab}
TIMEOUT=${SCTP_LAB_TIMEOUT:-600}
MEM=${SCTP_LAB_MEM:-2G}
CPUS=${SCTP_LAB_CPUS:-2}
CWD=$PWD
VERBOSE=0
KEEP=0
RW_DIRS=()
ENV_SET=()

die() { echo "sctp-lab: $*" >&2; exit 125; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while (( $# )); do
  case $1 in
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --cwd) CWD=${2:?--cwd needs a value}; shift 2 ;;
    --cwd=*) CWD=${1#*=}; shift ;;
    --rw) RW_DIRS+=("${2:?--rw needs a value}"); shift 2 ;;
    --rw=*) RW_DIRS+=("${1#*=}"); shift ;;
    --env) ENV_SET+=("${2:?--env needs a value}"); shift 2 ;;
    --env=*) ENV_SET+=("${1#*=}"); shift ;;
    --mem) MEM=${2:?}; shift 2 ;;
    --cpus) CPUS=${2:?}; shift 2 ;;
    -v|--verbose) VERBOSE=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "sctp-lab: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
(( $# )) || { usage >&2; exit 2; }
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a whole number of seconds"

# Make sure the kernel and initramfs exist and match this version of setup.sh.
READY=$(SCTP_LAB_CACHE=$CACHE "$HERE/setup.sh" --no-extras --print-ready) || die "setup.sh failed"
# shellcheck disable=SC1090
. "$READY" || die "cannot read $READY"

CWD=$(cd "$CWD" 2>/dev/null && pwd -P) || die "no such directory: $CWD"

QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (run setup.sh)"
# KVM needs a hardware-virtualization KVM (kvm_intel / kvm_amd).  Some cloud
# sandboxes offer /dev/kvm backed by kvm_pvm, which only boots PVM-patched
# guest kernels: a stock kernel hangs there, so use TCG instead.
ACCEL_MODE=${SCTP_LAB_ACCEL:-auto}
if [[ $ACCEL_MODE == auto ]]; then
  ACCEL_MODE=tcg
  if [[ -r /dev/kvm && -w /dev/kvm ]] && [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
    ACCEL_MODE=kvm
  fi
fi
case $ACCEL_MODE in
  kvm) ACCEL=(-accel kvm -cpu host) ;;
  tcg) ACCEL=(-accel "tcg,thread=multi,tb-size=256" -cpu max)
       (( VERBOSE )) && echo "sctp-lab: no hardware KVM here; using TCG emulation (slower)" >&2 ;;
  *) die "SCTP_LAB_ACCEL must be auto, kvm or tcg" ;;
esac

RUN=$(mktemp -d "${TMPDIR:-/tmp}/sctp-lab.XXXXXX") || die "mktemp failed"
CTL=$RUN/ctl
mkdir -p "$CTL"
: > "$CTL/stdout"
: > "$CTL/stderr"

QPID=""
TAIL_PIDS=()
WD_PID=""
# shellcheck disable=SC2317  # called through the traps below
cleanup() {
  [[ -n $QPID ]] && kill -KILL "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
  [[ -n $WD_PID ]] && kill "$WD_PID" 2>/dev/null
  local p
  for p in "${TAIL_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if (( KEEP )); then echo "sctp-lab: run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- files read by the guest ----------------------------------------------------
q() { printf '%q' "$1"; }
modtarget=$(realpath -m "/lib/modules/$KVER")
{
  echo "LAB_KVER=$(q "$KVER")"
  echo "LAB_MODDIR=$(q "$MODDIR")"
  echo "LAB_MODTARGET=$(q "$modtarget")"
  echo "LAB_RW_COUNT=${#RW_DIRS[@]}"
} > "$CTL/guest.conf"

# q35, not microvm: microvm has no HPET/ACPI PM timer, and under TCG the kernel's
# PIT-based TSC calibration sometimes fails, which then hangs the boot (~5% of runs).
MACHINE=q35
V9P=virtio-9p-pci
RW_ARGS=()
i=0
for d in "${RW_DIRS[@]}"; do
  rd=$(cd "$d" 2>/dev/null && pwd -P) || die "--rw: no such directory: $d"
  echo "LAB_RW_$i=$(q "$rd")" >> "$CTL/guest.conf"
  RW_ARGS+=(-fsdev "local,id=rw$i,path=${rd//,/,,},security_model=none,multidevs=remap"
            -device "$V9P,fsdev=rw$i,mount_tag=rw$i")
  i=$((i + 1))
done

{
  echo "# generated by sctp-lab run.sh"
  while IFS= read -r -d '' kv; do
    name=${kv%%=*}
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    case $name in
      PWD|OLDPWD|SHLVL|_|DISPLAY|WAYLAND_DISPLAY|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|\
      SSH_AUTH_SOCK|SSH_AGENT_PID|SSH_CONNECTION|SSH_CLIENT|SSH_TTY|TMUX|TMUX_PANE) continue ;;
    esac
    echo "export $name=$(q "${kv#*=}")"
  done < <(env -0)
  for kv in "${ENV_SET[@]}"; do
    [[ $kv == *=* && ${kv%%=*} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env wants NAME=VALUE, got: $kv"
    echo "export ${kv%%=*}=$(q "${kv#*=}")"
  done
  echo "export SCTP_LAB_VM=1"
  echo "cd -- $(q "$CWD") || { echo 'sctp-lab: cannot cd to '$(q "$CWD")' in the VM' >&2; exit 125; }"
  printf 'exec --'
  for a in "$@"; do printf ' %s' "$(q "$a")"; done
  echo
} > "$CTL/cmd.sh"
chmod 600 "$CTL/cmd.sh"

# --- boot -------------------------------------------------------------------------
APPEND="console=ttyS0 quiet loglevel=3 panic=-1 oops=panic 8250.nr_uarts=1 tsc=reliable no_timer_check ${SCTP_LAB_KERNEL_ARGS:-}"
t_start=$(date +%s.%N)
setpriv --pdeathsig KILL -- "$QEMU" \
  -nodefaults -no-user-config -machine "$MACHINE" -smp "$CPUS" -m "$MEM" "${ACCEL[@]}" \
  -display none -no-reboot \
  -chardev "file,id=con,path=$RUN/console.log" -serial chardev:con \
  -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" \
  -fsdev "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap" \
  -device "$V9P",fsdev=root,mount_tag=hostroot \
  -fsdev "local,id=ctl,path=$CTL,security_model=none" \
  -device "$V9P",fsdev=ctl,mount_tag=labctl \
  "${RW_ARGS[@]}" \
  </dev/null >"$RUN/qemu.log" 2>&1 &
QPID=$!

# Helpers die with run.sh even if it is SIGKILLed (qemu too, see above).
setpriv --pdeathsig KILL -- tail -s 0.05 -c +1 -f --pid="$QPID" "$CTL/stdout" & TAIL_PIDS+=($!)
setpriv --pdeathsig KILL -- tail -s 0.05 -c +1 -f --pid="$QPID" "$CTL/stderr" >&2 & TAIL_PIDS+=($!)

timed_out=0
if (( TIMEOUT > 0 )); then
  setpriv --pdeathsig KILL -- sleep "$TIMEOUT" & WD_PID=$!
  wait -n "$QPID" "$WD_PID"
  if kill -0 "$QPID" 2>/dev/null && ! kill -0 "$WD_PID" 2>/dev/null; then
    timed_out=1
    kill -TERM "$QPID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$QPID" 2>/dev/null
  fi
  kill "$WD_PID" 2>/dev/null; wait "$WD_PID" 2>/dev/null; WD_PID=""
fi
wait "$QPID"; qrc=$?
QPID=""
t_end=$(date +%s.%N)
wait "${TAIL_PIDS[@]}" 2>/dev/null
TAIL_PIDS=()

if (( VERBOSE )); then
  echo "---- sctp-lab: VM console ----" >&2
  cat "$RUN/console.log" >&2
  echo "---- sctp-lab: kernel $KVER; guest uptime at command start $(cat "$CTL/boot_uptime" 2>/dev/null)s," \
       "at command end $(cat "$CTL/end_uptime" 2>/dev/null)s; host wall time of the VM" \
       "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN{printf "%.2f", b-a}')s" >&2
fi

# A guest clock at the wrong rate makes every timeout in the guest wrong.
# Compare the guest's uptime with the RTC (which follows the host's clock) and
# with the host's wall time of the whole VM.
clock_rate_check() {
  local b_up e_up b_rtc e_rtc verdict
  b_up=$(cat "$CTL/boot_uptime" 2>/dev/null) && e_up=$(cat "$CTL/end_uptime" 2>/dev/null) || return 0
  b_rtc=$(cat "$CTL/boot_rtc" 2>/dev/null) || b_rtc=""
  e_rtc=$(cat "$CTL/end_rtc" 2>/dev/null) || e_rtc=""
  verdict=$(awk -v bu="$b_up" -v eu="$e_up" -v br="$b_rtc" -v er="$e_rtc" \
                -v wall="$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { print b - a }')" 'BEGIN {
      g = eu - bu
      if (eu > wall + 2) { printf "guest uptime %.1fs > host wall time %.1fs", eu, wall; exit }
      if (br != "" && er != "" && er - br >= 5 && (g > 1.25 * (er - br) + 2 || g < 0.8 * (er - br) - 2))
        printf "guest measured %.1fs while the RTC (host clock) advanced %ds", g, er - br }')
  if [[ -n $verdict ]]; then
    echo "sctp-lab: WARNING: the guest clock ran at the wrong rate ($verdict);" \
         "timeouts inside the VM were wrong, so timing-dependent results are unreliable." >&2
    sed 's/^/sctp-lab:   /' "$CTL/clock.log" >&2 2>/dev/null
  fi
}
clock_rate_check

if (( timed_out )); then
  echo "sctp-lab: timed out after ${TIMEOUT}s; VM killed" >&2
  if [[ ! -f $CTL/boot_uptime ]]; then
    echo "sctp-lab: the command had not started yet; VM console (last 30 lines):" >&2
    tail -n 30 "$RUN/console.log" >&2
  fi
  exit 124
fi
if [[ -f $CTL/rc ]]; then
  rc=$(cat "$CTL/rc")
  [[ $rc =~ ^[0-9]+$ ]] || rc=125
  exit "$rc"
fi
{
  echo "sctp-lab: the VM stopped without reporting an exit status (qemu exit $qrc)."
  echo "---- qemu output ----"; cat "$RUN/qemu.log"
  echo "---- VM console (last 60 lines) ----"; tail -n 60 "$RUN/console.log"
} >&2
exit 125
