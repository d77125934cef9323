#!/bin/sh
# What a global `if duplicate { discard; stop; }` (mailcow's sieve_after) costs: workload b
# of `make bench` (8 sessions, 4000 x 1 recipient, 4 KiB, one Maildir) on a fresh lmtpd
# without Sieve and with that script, alternating, REPS pairs (default 3). Prints one line
# per run: the pair, the variant, the messages on disk and lmtp-bench's RESULT figures.
# Runs as root or any user; needs the release binaries (cargo build --release --workspace).
# Usage: [REPS=n] [BENCH_TMPDIR=/var/tmp] sh contrib/bench/duplicate-pairs.sh
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=$PWD/target/release/lmtpd
GEN=$PWD/target/release/lmtp-bench
for b in "$BIN" "$GEN"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; done
d=${BENCH_TMPDIR:-/var/tmp}/lmtpd-duplicate-pairs.$$
rep=1
while [ "$rep" -le "${REPS:-3}" ]; do
    for variant in none duplicate; do
        rm -rf "$d"
        sync
        mkdir -p "$d/mail" "$d/spool"
        echo "load0@example.org" >"$d/users"
        cat >"$d/lmtpd.conf" <<C
listen = unix:$d/lmtp.sock
hostname = bench.localhost
users = $d/users
maildir = $d/mail/%d/%n/Maildir
spool_dir = $d/spool
retry_journal = $d/retry.db
workers = 16
allow_root = yes
log_level = warn
sieve =
sieve_state_dir = $d/state
C
        if [ $variant = duplicate ]; then
            printf 'require "duplicate";\nif duplicate { discard; stop; }\n' >"$d/dup.sieve"
            echo "sieve_after = $d/dup.sieve" >>"$d/lmtpd.conf"
        fi
        "$BIN" -c "$d/lmtpd.conf" </dev/null 2>>"$d/lmtpd.log" &
        pid=$!
        i=0
        while [ ! -S "$d/lmtp.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        line=$("$GEN" load --connect "unix:$d/lmtp.sock" -s 8 -m 4000 -r 1 -l 4K --mailboxes 1 \
            --max-time 300 --timeout 120 --pid "$pid" --label "$variant" 2>/dev/null)
        kill -TERM "$pid"
        wait "$pid"
        n=$(find "$d/mail" -path '*/new/*' -type f | wc -l | tr -d ' ')
        echo "pair=$rep variant=$variant stored=$n $line"
    done
    rep=$((rep + 1))
done
rm -rf "$d"
