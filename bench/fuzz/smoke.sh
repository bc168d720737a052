#!/usr/bin/env bash
# Fuzz smoke run: bench/fuzz/smoke.sh SECONDS (default 10) runs every cargo-fuzz target for
# SECONDS each (the stateful `registrar` target for FUZZ_REGISTRAR_SECONDS, default twice
# SECONDS) and exits non-zero if any target crashes, times out or fails to build.
#
# Works on stable Rust: `--sanitizer none` needs no -Z flag (the core forbids unsafe, so
# AddressSanitizer would add little). Coverage instrumentation and debug assertions /
# overflow checks stay on (cargo-fuzz defaults). Installs cargo-fuzz if it is missing.
# FUZZ_SANITIZER=address opts into ASan; on stable that needs RUSTC_BOOTSTRAP=1 for -Z.
set -euo pipefail

san=${FUZZ_SANITIZER:-none}
[[ $san == none ]] || export RUSTC_BOOTSTRAP=1

secs=${1:-10}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: $0 SECONDS" >&2; exit 2; }
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# Seed corpus, rewritten at every start (libFuzzer adds its finds next to these; corpus/
# is not committed, except the registrar target's seed-* inputs, operation sequences that
# cannot be written as hex messages). §N: sections of the protocol reference (shared/spec/rserpool-reference.md).
seed() { # target name hex
    mkdir -p "corpus/$1"
    local hex=${3//[[:space:]]/}
    printf "$(sed 's/../\\x&/g' <<<"$hex")" >"corpus/$1/seed-$2"
}
ph="0009000c 4563686f 506f6f6c" # Pool Handle "EchoPool"
pe="000a0028 1a2b3c4d 0a0b0c0d 00015f90 00040010 23280000 00010008 c000020a 00080008 00000001"
seed asap_decode registration "01000038 $ph 000a0028 1a2b3c4d 00000000 00015f90 00040010
    23280000 00010008 c000020a 00080008 00000001"                                 # §9.1
seed asap_decode registration-response "03000018 $ph 000e0008 1a2b3c4d"          # §9.2
seed asap_decode registration-rejected "0301002c $ph 000e0008 1a2b3c4d 000c0014 00050010
    0008000c 40000001 00000000"                                                   # §9.2
seed asap_decode handle-resolution "05000010 $ph"                                 # §9.3
seed asap_decode handle-resolution-hropt "05000018 $ph 803f0008 00000003"         # §9.3
seed asap_decode handle-resolution-response "06000040 $ph 00080008 00000001 $pe"  # §9.4
seed asap_decode handle-resolution-negative "06000018 $ph 000c0008 00090004"      # §9.4
seed asap_decode keep-alive "0700001c 0a0b0c0d $ph 000e0008 1a2b3c4d"             # §9.4
ids="0a0b0c0d 0f0e0d0c"
seed enrp_decode presence "0100002c $ids 000f0006 3bd90000 000b0018 0a0b0c0d 00040010
    26ad0000 00010008 c0000201"                                                   # §9.5
# Built from the §3.3 layouts with the §9 values (no worked example in the reference).
seed enrp_decode handle-table-request "0200000c $ids"
seed enrp_decode handle-table-response "03000040 $ids $ph $pe"
seed enrp_decode handle-update "04000044 $ids 00000000 $ph $pe"
seed enrp_decode list-request "0500000c $ids"
seed enrp_decode init-takeover "07000010 $ids 0a0b0c0d"

targets=$(cargo fuzz list)
cargo fuzz build --sanitizer "$san"

# The stateful registrar target runs twice as long: each of its inputs is a whole session.
registrar_secs=${FUZZ_REGISTRAR_SECONDS:-$((secs * 2))}

failed=()
for t in $targets; do
    t_secs=$secs extra=()
    # -max_len: longer inputs only repeat operations (the registrar target reads at most
    # 64) and slow the run down.
    [[ $t == registrar ]] && t_secs=$registrar_secs extra=(-max_len=1024)
    echo "smoke: fuzzing $t for ${t_secs}s" >&2
    # -timeout: an input that takes 10 s is a hang, and fails the run like a crash.
    if ! cargo fuzz run --sanitizer "$san" "$t" -- \
        -max_total_time="$t_secs" -timeout=10 -print_final_stats=1 "${extra[@]}"; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "smoke: FAILED: ${failed[*]} (inputs in $(pwd)/artifacts/)" >&2
    exit 1
fi
echo "smoke: ok:" $targets >&2
