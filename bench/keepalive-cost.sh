#!/usr/bin/env bash
# What the registrar spends at rest, keeping PEs alive, end to end through the real
# binary: one shard, loopback TCP, 500 PEs (one connection each, as RSPLIB's PEs have)
# that register, then only answer keep-alives.
#
#   bench/keepalive-cost.sh [--pes N] [--interval MS] [--timeout MS] [--rest A,B]
#                           [--repeat N] [--native] [--keep DIR] [-- REGISTRAR-FLAGS...]
#
# Instructions (default): the registrar runs under valgrind's callgrind twice, with
# the PEs held for A and for B seconds of rest (default 10 and 25; the PE farm
# re-registers every 30 s, so both stay below to measure keep-alives alone). Counting
# starts once every PE is registered (callgrind_control --zero) and stops at the end
# of the rest (--dump); the difference of the two instruction totals is divided
#   - by B - A: user-space instructions per second at rest;
#   - by the difference of the keep-alives acknowledged in the two (the calls of
#     `AsapMessage::decode`: at rest the registrar receives nothing else):
#     instructions per keep-alive (send, acknowledgement, timers, wake-ups), also
#     times the nominal rate (PEs / interval: at rest the registrar does nothing else)
#     for a per-second figure that a round of keep-alives straddling the end of a run
#     does not blur;
# and wake-ups per second at rest, the calls in run B of `Registrar::handle_timeout` (a
# loop turn with a timer due) and of the runtime's `Shard::turn` (every loop turn) by B
# (wake-ups depend on how the registrations happened to spread out, so they are not
# differenced across runs). Callgrind counts user space only (all threads; the
# kernel's side of each syscall is not in it); counts are repeatable on a shared
# machine, unlike timings. Under callgrind the registrar runs ~50x slower, which
# batches more work per wake-up than natively.
#
# --native: the registrar runs as it is, once per repetition for B seconds of rest,
# and the figures are its threads' CPU time (user + system, /proc/PID/task/*/schedstat)
# and voluntary context switches (each a sleep, so a wake-up) over the rest, per second
# and per keep-alive (the farm's count), with the user share of the CPU time (from
# clock ticks, coarse). CPU time moves with the machine's load: alternate builds
# (REGISTRAR=) run by run to compare them.
#
# --repeat N measures N times and prints the medians too. The keep-alive interval and
# timeout are the registrar's defaults, 5 s (--interval MS, --timeout MS for others).
# REGISTRAR=path measures another build of the registrar (e.g. an older commit's).
# --keep DIR keeps the files (callgrind_annotate DIR/cg.B.1.1 shows where the
# instructions go).
set -euo pipefail
cd "$(dirname "$0")/.."
pes=500 interval="" timeout="" rest=10,25 repeat=1 native="" keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pes) pes=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --rest) rest=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --native) native=1; shift ;;
    --keep) keep=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "keepalive-cost: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r a b <<<"$rest"
[ "$b" -gt "$a" ] || { echo "keepalive-cost: --rest A,B needs B > A" >&2; exit 2; }
[ -n "$native" ] || command -v valgrind >/dev/null ||
  { echo "keepalive-cost: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
flags=()
[ -z "$interval" ] || flags+=(--keep-alive-interval "$interval")
[ -z "$timeout" ] || flags+=(--keep-alive-timeout "$timeout")
registrar=${REGISTRAR:-target/release/rserpool-registrar}
[ -n "${REGISTRAR:-}" ] || cargo build --release -q -p rserpool-shards --bin rserpool-registrar
cargo build --release -q -p rserpool-bench --bin restcost
out=${keep:-$(mktemp -d)}
mkdir -p "$out"
[ -n "$keep" ] || trap 'rm -rf "$out"' EXIT

. bench/lib.sh

calls() { # callgrind file, function name pattern -> calls of the matching functions
  # A call line ("calls=N ...") follows the "cfn=" line naming the callee. Names are
  # compressed: "(id) name" the first time (in an "fn=" or "cfn=" line), "(id)" after.
  awk -v pat="$2" '
    /^c?fn=/ {
      name = $0; sub(/^c?fn=/, "", name)
      id = name; sub(/\).*/, ")", id)
      if (name != id) { sub(/^\([0-9]+\) /, "", name); names[id] = name }
      else if (id in names) name = names[id]
      callee = ($0 ~ /^cfn=/) ? name : ""
      next
    }
    /^c(fi|fl|ob)=/ { next }
    /^calls=/ { if (callee ~ pat) { split($0, f, /[= ]/); n += f[2] } callee = ""; next }
    { callee = "" }
    END { print n + 0 }' "$1"
}

start() { # name, seconds of rest, command prefix...: registrar and PEs, until registered
  name=$1 s=$2
  shift 2
  p=$(port)
  "$@" "$registrar" --shards 1 --no-pin --allow-loopback --asap "tcp://127.0.0.1:$p" \
    --log-level error "${flags[@]}" "${extra[@]}" >"$out/registrar.$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/registrar.$name.log" >&2; exit 1; }
    sleep 0.1
  done
  rm -f "$out/go"
  mkfifo "$out/go"
  target/release/restcost "127.0.0.1:$p" "$pes" "$s" >"$out/client.$name" <"$out/go" &
  cpid=$!
  exec 4>"$out/go"
  client_says registered
}

stop() { # lets the PEs go, then the registrar; sets farm_ka, the farm's keep-alive count
  echo go >&4
  exec 4>&-
  wait "$cpid"
  kill -TERM "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" || true
  farm_ka=$(awk '/^keep_alives/ { print $2 }' "$out/client.$name")
}

measure() { # name, seconds -> "instructions keep-alives timeouts turns farm-keep-alives"
  local f="$out/cg.$1" got
  start "$1" "$2" valgrind --tool=callgrind --callgrind-out-file="$f"
  # Counted: from every PE registered (zero) to the end of the rest (dump, to $f.1).
  control -z
  client_says rested
  control --dump
  stop
  f="$f.1"
  got=$(calls "$f" 'AsapMessage::decode$')
  [ "$got" -gt 0 ] || { echo "keepalive-cost: no AsapMessage::decode calls in $f (inlined?)" >&2; exit 1; }
  echo "$(total "$f") $got $(calls "$f" 'Registrar::handle_timeout$') $(calls "$f" 'Shard::turn$') $farm_ka"
}

snapshot() { # -> "cpu-ns voluntary-switches user-ticks system-ticks" of the registrar
  local t ns v st cpu=0 vol=0 ut=0 kt=0
  for t in "/proc/$pid/task/"*; do
    read -r ns _ <"$t/schedstat" || continue
    v=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status" 2>/dev/null) || continue
    st=$(sed 's/.*) //' "$t/stat" 2>/dev/null) || continue
    read -r -a st <<<"$st"
    # After the name: state is field 3, utime and stime fields 14 and 15.
    cpu=$((cpu + ns)) vol=$((vol + ${v:-0})) ut=$((ut + st[11])) kt=$((kt + st[12]))
  done
  echo "$cpu $vol $ut $kt"
}

measure_native() { # name, seconds -> "cpu-ns switches keep-alives user-ticks sys-ticks"
  local x y c0 v0 u0 k0 c1 v1 u1 k1
  start "$1" "$2"
  x=$(snapshot)
  client_says rested
  y=$(snapshot)
  read -r c0 v0 u0 k0 <<<"$x"
  read -r c1 v1 u1 k1 <<<"$y"
  stop
  echo "$((c1 - c0)) $((v1 - v0)) $farm_ka $((u1 - u0)) $((k1 - k0))"
}

client_says() { # word: waits for restcost to print it
  until grep -q "^$1" "$out/client.$name" 2>/dev/null; do
    kill -0 "$cpid" 2>/dev/null || { wait "$cpid"; echo "keepalive-cost: restcost failed" >&2; exit 1; }
    sleep 0.05
  done
}

control() { # callgrind_control option: served once the registrar runs
  # Valgrind serves the request at once (ptrace) or when the registrar next wakes up:
  # a connection wakes it (the same in every run, so it cancels out).
  callgrind_control "$1" "$pid" >/dev/null 2>&1 &
  local c=$!
  sleep 0.1
  while kill -0 "$c" 2>/dev/null; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || true
    sleep 0.2
  done
  wait "$c"
}

extra=("$@")
printf '%d PEs, keep-alive interval %s, timeout %s (one shard, TCP), at rest:\n' \
  "$pes" "${interval:-5000 (default)} ms" "${timeout:-5000 (default)} ms"
rate=$(awk -v p="$pes" -v i="${interval:-5000}" 'BEGIN { print p * 1000 / i }')
if [ -n "$native" ]; then
  fmt='  %-6s %10s %7s %9s %7s %10s\n'
  cols=5
  printf "$fmt" run 'CPU µs/s' 'user %' 'wakes/s' 'KA/s' 'CPU µs/KA'
else
  fmt='  %-6s %10s %7s %9s %12s %13s %8s\n'
  cols=6
  printf "$fmt" run 'instr/s' 'KA/s' 'instr/KA' "instr/s@$rate" 'timer wakes/s' 'turns/s'
fi
rows=""
: >"$out/raw"
for r in $(seq 1 "$repeat"); do
  if [ -n "$native" ]; then
    rb=$(measure_native "$b.$r" "$b")
    row=$(awk -v b="$b" -v rb="$rb" 'BEGIN {
      split(rb, y, " ")
      printf "%.0f %.0f %.1f %.1f %.1f", y[1] / 1000 / b, (y[4] + y[5] > 0) ? 100 * y[4] / (y[4] + y[5]) : 0,
        y[2] / b, y[3] / b, (y[3] > 0) ? y[1] / 1000 / y[3] : 0
    }')
    echo "      ($b s: $rb)" >>"$out/raw"
  else
    ra=$(measure "$a.$r" "$a")
    rb=$(measure "$b.$r" "$b")
    row=$(awk -v a="$a" -v b="$b" -v ra="$ra" -v rb="$rb" -v rate="$rate" 'BEGIN {
      split(ra, x, " "); split(rb, y, " ")
      per = (y[2] > x[2]) ? (y[1] - x[1]) / (y[2] - x[2]) : 0
      printf "%.0f %.1f %.0f %.0f %.1f %.1f", (y[1] - x[1]) / (b - a), (y[2] - x[2]) / (b - a),
        per, per * rate, y[3] / b, y[4] / b
    }')
    echo "      ($a s: $ra; $b s: $rb)" >>"$out/raw"
  fi
  rows+="$row"$'\n'
  # shellcheck disable=SC2059,SC2086
  printf "$fmt" "$r" $row
done
if [ "$repeat" -gt 1 ]; then
  med=$(for c in $(seq 1 "$cols"); do
    printf '%s' "$rows" | awk -v c="$c" 'NF { print $c }' | sort -g |
      awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
  done | tr '\n' ' ')
  # shellcheck disable=SC2059,SC2086
  printf "$fmt" median $med
fi
if [ -n "$native" ]; then
  echo "  (over B seconds of rest; CPU: user + system of every registrar thread; user %: its"
  echo "   user share in clock ticks (coarse); wakes: voluntary context switches; KA: the"
  echo "   farm's count. Raw per run: CPU ns, switches, keep-alives, user and system ticks:)"
else
  echo "  (run B less run A, per second of rest or per keep-alive; wake-ups and turns: run B"
  echo "   per second of rest; instr/s@$rate: instr/KA at the nominal rate, PEs / interval,"
  echo "   not blurred by a round of keep-alives straddling the end of a run. Raw per run:"
  echo "   instructions, keep-alives (decode calls), handle_timeout calls, turns; then the"
  echo "   farm's count from registration to the end:)"
fi
cat "$out/raw"
