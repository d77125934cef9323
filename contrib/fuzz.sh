#!/bin/sh
# Runs every cargo-fuzz target of tests/fuzz for FUZZ_SECONDS seconds each (default 60).
# Needs cargo-fuzz (cargo install cargo-fuzz --locked); on a stable toolchain the nightly
# sanitizer flags are unlocked with RUSTC_BOOTSTRAP=1. Crashes land in
# tests/fuzz/artifacts/<target>/; turn each into a regression test in tests/it/hardening.rs.
# Usage: [FUZZ_SECONDS=n] contrib/fuzz.sh [seconds] [target...]
set -eu
cd "$(dirname "$0")/.."
secs=${1:-${FUZZ_SECONDS:-60}}
[ $# -gt 0 ] && shift
targets=${*:-"command address data session sieve sieve_run"}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
status=0
for t in $targets; do
    mkdir -p "tests/fuzz/corpus/$t"
    echo "== $t: $secs s"
    if ! cargo fuzz run --fuzz-dir tests/fuzz "$t" "tests/fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 2>"tests/fuzz/$t.log"; then
        echo "!! $t FAILED: see tests/fuzz/$t.log and tests/fuzz/artifacts/$t/"
        status=1
    fi
    grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "tests/fuzz/$t.log" | tail -2 || true
done
exit $status
