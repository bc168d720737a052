#!/usr/bin/env bash
# Instructions and simulated cache misses per handlespace operation at 500 and 50,000
# PEs, counted by valgrind (callgrind with cache simulation): repeatable, and it shows
# whether time grows with work or with memory traffic.
#   bench/opcount.sh [POLICY...]     (default: ROUND_ROBIN RANDOM LEAST_USED WEIGHTED_RANDOM)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "opcount: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cargo build --release -q -p rserpool-bench --bin opcount
policies=("$@")
[ ${#policies[@]} -gt 0 ] || policies=(ROUND_ROBIN RANDOM LEAST_USED WEIGHTED_RANDOM)
k=10000  # deregister runs min(k, N) operations; figures are per operation run
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '| policy | operation | PEs | instructions/op | D1 misses/op | LL misses/op |\n|---|---|---:|---:|---:|---:|\n'
for p in "${policies[@]}"; do
  for op in resolve register reregister deregister; do
    for n in 500 50000; do
      f="$out/cg.$p.$op.$n"
      ops=$(valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*measured*' \
        --callgrind-out-file="$f" target/release/opcount "$op" "$p" "$n" "$k" 2>/dev/null)
      # Totals line, columns: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw (each with a "(x%)").
      read -r ir _dr _dw _i1 d1r d1w _il dlr dlw < <(callgrind_annotate "$f" 2>/dev/null \
        | awk '/PROGRAM TOTALS/ { gsub(/\([^)]*\)/, ""); gsub(",", ""); for (i = 1; i <= 9; i++) if ($i == ".") $i = 0; print $1, $2, $3, $4, $5, $6, $7, $8, $9; exit }')
      awk -v p="$p" -v op="$op" -v n="$n" -v k="$ops" -v ir="$ir" -v d1="$((d1r + d1w))" -v ll="$((dlr + dlw))" \
        'BEGIN { printf "| %s | %s | %d | %.0f | %.1f | %.1f |\n", p, op, n, ir / k, d1 / k, ll / k }'
    done
  done
done
