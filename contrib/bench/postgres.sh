#!/bin/sh
# The PostgreSQL store under the workloads of make bench (a, b, c, and 8 sessions x 10 MiB),
# on a private PostgreSQL cluster in a temporary directory (Unix socket only, as the
# postgres user when run as root; stopped and removed at the end), then workload b over two
# lmtpd nodes on the one database. PG_OPTIONS adds server settings (e.g.
# "-c commit_delay=200 -c commit_siblings=2" to try PostgreSQL's commit grouping delay).
# Prints lmtp-bench's
# figures per workload (deliveries/s, latency percentiles, lmtpd's peak RSS) and the rows
# stored. Needs the release binaries (cargo build --release --workspace) and Debian's
# postgresql package. Not part of make bench yet.
# Usage: [BENCH_TMPDIR=/var/tmp] sh contrib/bench/postgres.sh
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=$PWD/target/release/lmtpd
GEN=$PWD/target/release/lmtp-bench
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "postgresql is not installed" >&2; exit 1; }
d=${BENCH_TMPDIR:-/var/tmp}/lmtpd-bench-pg.$$
port=54400
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$d/data" "$d/spool"
[ "$(id -u)" = 0 ] && chown postgres "$d" "$d/data"
as_pg "$PGBIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$d/data" -o "-k $d -p $port -c listen_addresses= ${PG_OPTIONS:-}" -l "$d/pg.log" -w start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$d/data" stop -m fast >/dev/null; rm -rf "$d"' EXIT
psql -h "$d" -p $port -U postgres -qc "CREATE DATABASE mail"
i=0
: >"$d/users"
while [ $i -lt 8 ]; do echo "load$i@example.org store=postgres" >>"$d/users"; i=$((i + 1)); done
cat >"$d/lmtpd.conf" <<C
listen = unix:$d/lmtp.sock
hostname = bench.localhost
users = $d/users
spool_dir = $d/spool
retry_journal = $d/retry.db
max_message_size = 200M
workers = 16
allow_root = yes
log_level = warn
sieve =
postgres = host=$d port=$port user=postgres dbname=mail
C
"$BIN" -c "$d/lmtpd.conf" </dev/null 2>"$d/lmtpd.log" &
pid=$!
while [ ! -S "$d/lmtp.sock" ]; do sleep 0.1; done
for wl in "a 1 2000 1 4K 1" "b 8 4000 1 4K 1" "c 8 1000 5 4K 8" "rss8 8 16 1 10M 8"; do
    set -- $wl
    "$GEN" load --connect "unix:$d/lmtp.sock" -s "$2" -m "$3" -r "$4" -l "$5" --mailboxes "$6" \
        --max-time 300 --timeout 120 --pid "$pid" --label "$1" 2>/dev/null |
        grep -o 'label=[a-z0-9]*\|errors=[0-9]*\|dps=[0-9.]*\|p50_ms=[0-9.]*\|p99_ms=[0-9.]*\|rss_kib=[0-9]*' |
        tr '\n' ' '
    echo
done
# b over two nodes on the same database: a second lmtpd, 4 sessions against each.
sed -e "s|$d/lmtp.sock|$d/lmtp2.sock|" "$d/lmtpd.conf" >"$d/lmtpd2.conf"
"$BIN" -c "$d/lmtpd2.conf" </dev/null 2>"$d/lmtpd2.log" &
pid2=$!
while [ ! -S "$d/lmtp2.sock" ]; do sleep 0.1; done
t0=$(date +%s.%N)
"$GEN" load --connect "unix:$d/lmtp.sock" -s 4 -m 2000 -r 1 -l 4K --mailboxes 1 --max-time 300 \
    --timeout 120 --label b2-node1 >"$d/b2-1.out" 2>/dev/null &
g1=$!
"$GEN" load --connect "unix:$d/lmtp2.sock" -s 4 -m 2000 -r 1 -l 4K --mailboxes 1 --max-time 300 \
    --timeout 120 --label b2-node2 >"$d/b2-2.out" 2>/dev/null &
g2=$!
wait "$g1" "$g2"
t1=$(date +%s.%N)
cat "$d/b2-1.out" "$d/b2-2.out" | awk -v t0="$t0" -v t1="$t1" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "deliveries") n += kv[2]; if (kv[1] == "errors") e += kv[2] } }
    END { printf "label=b2 (b over two nodes, 4 sessions each) errors=%d deliveries=%d dps=%.1f\n", e, n, n / (t1 - t0) }'
kill -TERM "$pid" "$pid2"
wait "$pid" "$pid2"
echo "rows: $(psql -h "$d" -p $port -U postgres -d mail -tAc \
    "SELECT count(*) || ' deliveries, ' || (SELECT count(*) FROM messages) || ' bodies' FROM deliveries")"
