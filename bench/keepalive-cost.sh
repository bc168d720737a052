#!/usr/bin/env bash
# User-space instructions the registrar executes at rest, keeping PEs alive, end to end
# through the real binary: one shard, loopback TCP, 500 PEs (one connection each, as
# RSPLIB's PEs have) that register, then only answer keep-alives.
#
#   bench/keepalive-cost.sh [--pes N] [--interval MS] [--timeout MS] [--rest A,B]
#                           [--repeat N] [--keep DIR] [-- REGISTRAR-FLAGS...]
#
# The registrar runs under valgrind's callgrind twice, with the PEs held for A and for
# B seconds of rest (default 10 and 25; the PE farm re-registers every 30 s, so both
# stay below to measure keep-alives alone). Counting starts once every PE is registered
# (callgrind_control --zero) and stops at the end of the rest (--dump); the difference
# of the two instruction totals is divided
#   - by B - A: instructions per second at rest;
#   - by the difference of the keep-alives acknowledged in the two (the calls of
#     `AsapMessage::decode`: at rest the registrar receives nothing else):
#     instructions per keep-alive (send, acknowledgement, timers, wake-ups), also
#     times the nominal rate (PEs / interval: at rest the registrar does nothing else)
#     for a per-second figure that a round of keep-alives straddling the end of a run
#     does not blur;
# and wake-ups per second at rest, the calls in run B of `Registrar::handle_timeout` (a
# loop turn with a timer due) and of the runtime's `Shard::turn` (every loop turn) by B
# (wake-ups depend on how the registrations happened to spread out, so they are not
# differenced across runs). --repeat N measures N pairs and prints the medians too.
# The keep-alive interval is the registrar's default, 5 s (--interval MS for another);
# the timeout its default too. Callgrind counts user space only (all threads; the
# kernel's side of each syscall is not in it); counts are repeatable on a shared
# machine, unlike timings. Under callgrind the registrar runs ~50x slower, which
# batches more work per wake-up than natively. --keep DIR keeps the callgrind files
# (callgrind_annotate DIR/cg.B) to see where the instructions go.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "keepalive-cost: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
pes=500 interval="" timeout="" rest=10,25 repeat=1 keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pes) pes=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --rest) rest=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "keepalive-cost: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r a b <<<"$rest"
[ "$b" -gt "$a" ] || { echo "keepalive-cost: --rest A,B needs B > A" >&2; exit 2; }
flags=()
[ -z "$interval" ] || flags+=(--keep-alive-interval "$interval")
[ -z "$timeout" ] || flags+=(--keep-alive-timeout "$timeout")
cargo build --release -q -p rserpool-shards --bin rserpool-registrar
cargo build --release -q -p rserpool-bench --bin restcost
out=${keep:-$(mktemp -d)}
mkdir -p "$out"
[ -n "$keep" ] || trap 'rm -rf "$out"' EXIT

# A free loopback port (the kernel picks it; it stays free long enough in practice).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

total() { # callgrind file -> instructions (the "summary:" line)
  awk '/^summary:/ { print $2; exit }' "$1"
}

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

measure() { # name, seconds of rest -> "instructions keep-alives timeouts turns" of a run
  local name=$1 s=$2 p f pid cpid zpid ka
  shift 2
  p=$(port)
  f="$out/cg.$name"
  valgrind --tool=callgrind --callgrind-out-file="$f" \
    target/release/rserpool-registrar --shards 1 --no-pin --allow-loopback \
      --asap "tcp://127.0.0.1:$p" --log-level error "${flags[@]}" "$@" \
      >"$out/registrar.$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/registrar.$name.log" >&2; exit 1; }
    sleep 0.1
  done
  # Counted: from every PE registered (zero) to the end of the rest (dump, to $f.1).
  rm -f "$out/go"
  mkfifo "$out/go"
  target/release/restcost "127.0.0.1:$p" "$pes" "$s" >"$out/client.$name" <"$out/go" &
  cpid=$!
  exec 4>"$out/go"
  client_says registered
  control -z
  client_says rested
  control --dump
  echo go >&4
  exec 4>&-
  wait "$cpid"
  ka=$(awk '/^keep_alives/ { print $2 }' "$out/client.$name")
  kill -TERM "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" || true
  f="$f.1"
  local got
  got=$(calls "$f" 'AsapMessage::decode$')
  [ "$got" -gt 0 ] || { echo "keepalive-cost: no AsapMessage::decode calls in $f (inlined?)" >&2; exit 1; }
  echo "$(total "$f") $got $(calls "$f" 'Registrar::handle_timeout$') $(calls "$f" 'Shard::turn$') $ka"
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

printf '%d PEs, keep-alive interval %s, timeout %s (one shard, TCP), at rest:\n' \
  "$pes" "${interval:-5000 (default)} ms" "${timeout:-5000 (default)} ms"
rate=$(awk -v p="$pes" -v i="${interval:-5000}" 'BEGIN { print p * 1000 / i }')
fmt='  %-6s %10s %7s %9s %12s %13s %8s\n'
printf "$fmt" run 'instr/s' 'KA/s' 'instr/KA' "instr/s@$rate" 'timer wakes/s' 'turns/s'
rows=""
: >"$out/raw"
for r in $(seq 1 "$repeat"); do
  ra=$(measure "$a.$r" "$a" "$@")
  rb=$(measure "$b.$r" "$b" "$@")
  row=$(awk -v a="$a" -v b="$b" -v ra="$ra" -v rb="$rb" -v rate="$rate" 'BEGIN {
    split(ra, x, " "); split(rb, y, " ")
    per = (y[2] > x[2]) ? (y[1] - x[1]) / (y[2] - x[2]) : 0
    printf "%.0f %.1f %.0f %.0f %.1f %.1f", (y[1] - x[1]) / (b - a), (y[2] - x[2]) / (b - a),
      per, per * rate, y[3] / b, y[4] / b
  }')
  rows+="$row"$'\n'
  # shellcheck disable=SC2086
  printf "$fmt" "$r" $row
  echo "      ($a s: $ra; $b s: $rb)" >>"$out/raw"
done
if [ "$repeat" -gt 1 ]; then
  med=$(for c in 1 2 3 4 5 6; do
    printf '%s' "$rows" | awk -v c="$c" 'NF { print $c }' | sort -g |
      awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
  done | tr '\n' ' ')
  # shellcheck disable=SC2086
  printf "$fmt" median $med
fi
echo "  (run B less run A, per second of rest or per keep-alive; wake-ups and turns: run B"
echo "   per second of rest; instr/s@$rate: instr/KA at"
echo "   the nominal rate, PEs / interval, not blurred by a round of keep-alives straddling"
echo "   the end of a run. Raw per run: instructions, keep-alives (decode calls),"
echo "   handle_timeout calls, turns; then the farm's count from registration to the end:)"
cat "$out/raw"
