#!/bin/sh
# make bench: lmtpd (Maildir, mbox, SQLite) side by side with a private Dovecot instance.
#
# Builds the release binaries (lmtpd, and the load generator lmtp-bench, a workspace member of
# its own in contrib/bench/lmtp-bench that `make install` never installs), probes the disk,
# then for every workload and store starts a fresh server with a throw-away configuration in
# a temporary directory, drives it with lmtp-bench over a Unix socket, reads the server's CPU
# time and peak RSS from /proc, stops it and checks that the number of stored messages equals
# the number acknowledged. Dovecot (dovecot-core + dovecot-lmtpd; installed with apt-get when
# missing and possible) runs the same workloads on its own config, base_dir and mail
# directory; the system's Dovecot service is never used. Prints a Markdown report and writes
# it to bench-out/bench-<date>.md, with three SVG charts beside it (bench-out/<date>-
# {throughput,latency,rss}.svg, drawn by `lmtp-bench chart` from the raw results); a complete
# run (QUICK=0, Dovecot ran, no SIEVE_ONLY, JOURNAL_ONLY or ONLY) also copies them to
# contrib/bench/results/{throughput,latency,rss}.svg with the report as report.md, for the
# README.
#
# Measured per run: deliveries/s and messages/s, latency per recipient reply (from the final
# dot, or BDAT LAST, to that recipient's reply: p50, p90, p99, max), the server's user and
# system CPU per delivery and peak RSS, and stored = acknowledged.
#
# The disk's ceiling: after every repetition of a main workload (a, b, b-bdat, b8, c, c8, d)
# the disk probe (lmtp-bench disk) runs three times with that workload's sessions as threads,
# its message size and its mailboxes, on the same disk as the mail: --kind file (a durable
# Maildir delivery: create, write, fsync, rename, fsync new/), --kind append (mbox: flock,
# append, fsync, unlock) and --kind commit (SQLite: one WAL commit, synchronous=FULL), each
# for PROBE_SECS. The report sets each store against its probe. The start of the run also
# probes 4 KiB files from 1 and 4 threads, as before.
#
# Environment:
#   QUICK=1          small counts, one repetition (two to three minutes)
#   REPS=N           repetitions per workload, medians reported (default 3; QUICK: 1)
#   DOVECOT=0        skip Dovecot
#   BENCH_TMPDIR=D   where the temporary directory goes (default /var/tmp, on disk)
#   BENCH_USER=U     when run as root, the unprivileged user both servers deliver as
#                    (default nobody; Dovecot refuses to deliver as uid 0)
#   SIEVE_ONLY=1     only the Sieve pairs (s, s0) and the 10 MiB RSS runs (rss8, rss8s)
#   JOURNAL_ONLY=1   only the retry-journal pairs (j, j0)
#   ONLY=a,d         only these main workloads (comma list of a, b, b-bdat, b8, c, c8, d);
#                    e, f, s, j and the RSS runs are skipped
#   POSTGRES=0       skip the PostgreSQL rows (otherwise run on a private cluster when
#                    Debian's postgresql package is installed)
#   NO_BUILD=1       use the binaries in ${CARGO_TARGET_DIR:-target}/release as they are
#                    (`make bench` builds both, then runs this with NO_BUILD=1)
#
# Workload e is 100 sessions at once against lmtpd's shipped default for workers (no workers
# line) and Dovecot's shipped limits, counting the sessions each refuses; f is workload b on a
# server holding 1000 idle connections (lmtpd with workers = 1100, Dovecot with service lmtp
# { process_limit = 1100 }), each run paired with the same one without them (f0) on a fresh
# server, for the throughput ratio, and the peak RSS.
#
# Workload b-bdat is workload b with every message sent as BDAT (RFC 3030 CHUNKING: MAIL,
# RCPT and one `BDAT 4096 LAST` chunk pipelined in one write; lmtp-bench --bdat) instead of
# DATA, on both servers, right after b, for the BDAT row beside b's.
#
# Workload s is workload b with Sieve: a global sieve_before spam script (mail-in-a-box /
# mailcow style: X-Spam-Flag, X-Spam-Status :regex) and a 50-rule user script (header,
# address, envelope, :regex, variables; none matches, so every message ends in the implicit
# keep), each run paired with b without any Sieve configuration (s0) on a fresh server, in
# alternating order like f. rss8s is rss8 with a user script holding one `body :text
# :contains` rule, which reads every 10 MiB message through the MIME walker.
#
# Workload j is workload b with the retry journal (retry_journal, the default: every other
# lmtpd row runs with it too), each run paired with b without it (j0: retry_journal empty)
# on a fresh server, in alternating order like f, for the journal's cost.
#
# Exit status: 0 when every run delivered and stored everything it acknowledged, 1 otherwise.
# Missed performance targets are reported, not failed.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
QUICK=${QUICK:-0}
case $QUICK in 1 | yes | true) QUICK=1 ;; *) QUICK=0 ;; esac
if [ $QUICK = 1 ]; then REPS=${REPS:-1}; else REPS=${REPS:-3}; fi
DOVECOT=${DOVECOT:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/release/lmtpd
GEN=$TARGET_DIR/release/lmtp-bench
OUT_DIR=$ROOT/bench-out
STAMP=$(date -u +%Y-%m-%d-%H%M%S)
REPORT=$OUT_DIR/bench-$STAMP.md

log() { echo "bench: $*" >&2; }

# Open files: both servers and the generator inherit this shell's limit, and workload f holds
# 1000 connections open. Raise the soft limit to the hard one (lmtp-bench raises its own too).
NOFILE_HARD=$(ulimit -Hn 2>/dev/null)
case $NOFILE_HARD in
unlimited) ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null ;;
[0-9]*) ulimit -n "$NOFILE_HARD" 2>/dev/null ;;
esac
NOFILE=$(ulimit -n 2>/dev/null)

# ---------------------------------------------------------------------------------------
# Build.
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building release binaries (cargo build --release --locked -p lmtpd -p lmtp-bench)"
    cargo build --release --locked -p lmtpd -p lmtp-bench >&2 || { log "build failed"; exit 1; }
fi
for b in "$BIN" "$GEN"; do
    [ -x "$b" ] || { log "missing $b"; exit 1; }
done
case $BIN in /*) ;; *) BIN=$ROOT/$BIN GEN=$ROOT/$GEN ;; esac

# ---------------------------------------------------------------------------------------
# Dovecot: installed, or installable with apt-get, or skipped.
DOVECOT_BIN=
DOVECOT_WHY=
if [ "$DOVECOT" = 1 ]; then
    if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ] ||
        [ ! -x /usr/lib/dovecot/lmtp ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing dovecot-core dovecot-lmtpd with apt-get"
            # The package may try to start the system service; a policy-rc.d or a missing
            # init system prevents that, and run.sh never uses that service anyway.
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-core dovecot-lmtpd \
                >/dev/null 2>&1 || log "apt-get install dovecot-core dovecot-lmtpd failed"
        fi
    fi
    DOVECOT_BIN=$(command -v dovecot 2>/dev/null || echo /usr/sbin/dovecot)
    if [ ! -x "$DOVECOT_BIN" ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
        DOVECOT_BIN=
        DOVECOT_WHY="dovecot-core/dovecot-lmtpd not installed and not installable here"
    fi
else
    DOVECOT_WHY="DOVECOT=0"
fi
[ -z "$DOVECOT_BIN" ] && echo "SKIP: Dovecot ($DOVECOT_WHY)"

# ---------------------------------------------------------------------------------------
# Who delivers. Root runs both servers as an unprivileged user (lmtpd: user =; Dovecot: the
# passwd-file uid), everyone else as themselves.
if [ "$(id -u)" = 0 ]; then
    RUN_USER=${BENCH_USER:-nobody}
    RUN_UID=$(id -u "$RUN_USER") || { log "no user $RUN_USER (set BENCH_USER)"; exit 1; }
    RUN_GID=$(id -g "$RUN_USER")
    DV_INTERNAL_USER=dovecot
    DV_INTERNAL_GROUP=dovecot
    DV_LOGIN_USER=dovenull
    id dovenull >/dev/null 2>&1 || DV_LOGIN_USER=dovecot
else
    RUN_USER=$(id -un)
    RUN_UID=$(id -u)
    RUN_GID=$(id -g)
    DV_INTERNAL_USER=$RUN_USER
    DV_INTERNAL_GROUP=$(id -gn)
    DV_LOGIN_USER=$RUN_USER
fi

# ---------------------------------------------------------------------------------------
# Work directory (on disk: /var/tmp, not a tmpfs /tmp) and cleanup.
W=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/lmtpd-bench.XXXXXX") || exit 1
chmod 0755 "$W"
SERVER_PID=
PG_CTL=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    [ -n "$PG_CTL" ] && pg_as "$PG_CTL" -D "$W/pg/data" stop -m fast >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR"
RESULTS=$W/results.txt
: > "$RESULTS"
FAILED=0

# PostgreSQL (POSTGRES=0 skips it): a private cluster in $W/pg on the same disk, Unix socket
# only, fsync and synchronous_commit as shipped; every lmtpd postgres run gets a fresh
# database. Without Debian's postgresql package the PostgreSQL rows are left out.
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_PORT=54410
if [ "${POSTGRES:-1}" != 0 ] && [ -x "$PG_BIN/initdb" ]; then
    mkdir -p "$W/pg/data"
    chmod 0755 "$W/pg"
    [ "$(id -u)" = 0 ] && chown -R postgres "$W/pg"
    if pg_as "$PG_BIN/initdb" -D "$W/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null 2>&1 &&
        pg_as "$PG_BIN/pg_ctl" -D "$W/pg/data" -w -l "$W/pg/server.log" \
            -o "-k $W/pg -p $PG_PORT -c listen_addresses=" start >/dev/null 2>&1; then
        PG_CTL=$PG_BIN/pg_ctl
        log "postgres: private cluster $($PG_BIN/postgres --version | awk '{ print $3 }') in $W/pg"
    else
        log "postgres: the private cluster did not start; no PostgreSQL rows"
    fi
fi
pg_sql() { psql -h "$W/pg" -p $PG_PORT -U postgres -d "${2:-postgres}" -tAqc "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# Workloads: name sessions messages recipients size mailboxes description.
# A name ending in -bdat sends the content with BDAT (CHUNKING, lmtp-bench --bdat) instead
# of DATA: b-bdat is workload b that way, run right after b, on both servers (Dovecot's LMTP
# offers CHUNKING too).
# "mailboxes": recipient j of message i goes to mailbox (i*R + j) mod K, so R = K gives
# R distinct mailboxes per message and R = 1, K = 8 spreads messages over 8 mailboxes.
if [ $QUICK = 1 ]; then
    MAX_TIME=4
    PROBE_SECS=1
    WORKLOADS="a 1 300 1 4K 1
b 8 600 1 4K 1
b-bdat 8 600 1 4K 1
b8 8 600 1 4K 8
c 8 150 5 4K 5
c8 8 100 8 4K 8
d 2 6 1 10M 1"
    RSS_RUNS="rss8 8 8 1 10M 1
rss1 1 2 1 1M 1
rss10 1 2 1 10M 1
rss100 1 1 1 100M 1"
    E_SPEC="e 100 400 1 4K 8"
    F_SPEC="f 8 600 1 4K 1"
    F_IDLE=200
    S_SPEC="s 8 600 1 4K 1"
    J_SPEC="j 8 600 1 4K 1"
    RSS_SIEVE="rss8s 8 8 1 10M 1"
else
    MAX_TIME=12
    PROBE_SECS=2
    WORKLOADS="a 1 2000 1 4K 1
b 8 4000 1 4K 1
b-bdat 8 4000 1 4K 1
b8 8 4000 1 4K 8
c 8 1000 5 4K 5
c8 8 500 8 4K 8
d 2 20 1 10M 1"
    RSS_RUNS="rss8 8 16 1 10M 1
rss1 1 4 1 1M 1
rss10 1 4 1 10M 1
rss100 1 2 1 100M 1"
    E_SPEC="e 100 4000 1 4K 8"
    F_SPEC="f 8 4000 1 4K 1"
    F_IDLE=1000
    S_SPEC="s 8 4000 1 4K 1"
    J_SPEC="j 8 4000 1 4K 1"
    RSS_SIEVE="rss8s 8 16 1 10M 1"
fi
ALL_USERS=8
if [ "${SIEVE_ONLY:-0}" = 1 ]; then
    WORKLOADS=
    E_SPEC=
    F_SPEC=
    J_SPEC=
    RSS_RUNS=$(echo "$RSS_RUNS" | grep '^rss8 ')
fi
if [ "${JOURNAL_ONLY:-0}" = 1 ]; then
    WORKLOADS=
    E_SPEC=
    F_SPEC=
    S_SPEC=
    RSS_RUNS=
    RSS_SIEVE=
fi
ONLY=${ONLY:-}
if [ -n "$ONLY" ]; then
    for o in $(echo "$ONLY" | tr ',' ' '); do
        echo "$WORKLOADS" | grep -q "^$o " || log "ONLY: no main workload '$o' (ignored)"
    done
    WORKLOADS=$(echo "$WORKLOADS" | while read -r wl rest; do
        case ",$ONLY," in *",$wl,"*) echo "$wl $rest" ;; esac
    done)
    E_SPEC=
    F_SPEC=
    S_SPEC=
    J_SPEC=
    RSS_RUNS=
    RSS_SIEVE=
fi
# lmtpd's sqlite_body_files (its default, written into every lmtpd configuration): SQLite
# rows of workloads with messages this large are set against the file probe.
SQLITE_BODY_FILES=262144
# Per-run knobs, set around run_one: lmtpd's workers line (empty: none, the shipped
# default), extra Dovecot configuration, extra lmtp-bench options.
LM_WORKERS=16
LM_SIEVE=
LM_JOURNAL=
DV_EXTRA=
GEN_EXTRA=
# f: room for the idle connections plus the load. lmtpd runs a session per worker thread;
# Dovecot one lmtp process per connection, each of which also connects to its log, config
# and auth services (whose client limit is default_client_limit, 1000 as shipped).
F_WORKERS=1100
F_DV_EXTRA="# workload f: room for $F_IDLE idle connections and the load
service lmtp {
  process_limit = 1100
}
default_client_limit = 2300"

describe() {
    case $1 in
    a) echo "a: 1 session, $3 msgs x 1 rcpt" ;;
    b) echo "b: 8 sessions, $3 x 1 rcpt, one mailbox" ;;
    b-bdat) echo "b-bdat: as b, sent with BDAT (one 4 KiB chunk, LAST) instead of DATA" ;;
    b8) echo "b8: as b, over 8 mailboxes" ;;
    c) echo "c: 8 sessions, $3 x 5 distinct rcpts" ;;
    c8) echo "c8: 8 sessions, $3 x 8 distinct rcpts" ;;
    d) echo "d: 2 sessions, $3 x 10 MiB" ;;
    e) echo "e: $2 sessions at once, $(($3 / $2)) msgs each x 1 rcpt, 8 mailboxes" ;;
    f) echo "f: b ($2 sessions, $3 x 1 rcpt, one mailbox) with $F_IDLE idle connections" ;;
    rss8) echo "8 sessions x 10 MiB ($3 msgs)" ;;
    rss8s) echo "8 sessions x 10 MiB ($3 msgs), user script with body :text :contains" ;;
    s) echo "s: b with Sieve (global spam script + 50-rule user script)" ;;
    s0) echo "s0: b without Sieve, paired with s" ;;
    j) echo "j: b with the retry journal (the default)" ;;
    j0) echo "j0: b without the retry journal, paired with j" ;;
    rss1) echo "1 session x 1 MiB ($3 msgs)" ;;
    rss10) echo "1 session x 10 MiB ($3 msgs)" ;;
    rss100) echo "1 session x 100 MiB ($3 msgs)" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Servers.

# wait_socket PATH PID: up to 10 s for the socket to appear while the server lives.
wait_socket() {
    i=0
    while [ ! -S "$1" ] && [ $i -lt 100 ]; do
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    [ -S "$1" ]
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# write_sieve DIR rules|body: the scripts of workloads s and rss8s, one per load user.
write_sieve() {
    mkdir -p "$1"
    cat > "$1/spam.sieve" <<'EOF'
require ["fileinto", "mailbox", "imap4flags", "regex"];
if anyof (header :is "X-Spam-Flag" "YES",
          header :regex "X-Spam-Status" "^Yes, score=[0-9]+") {
    addflag "\\Seen";
    fileinto :create "Junk";
    stop;
}
EOF
    {
        if [ "$2" = body ]; then
            echo 'require ["body", "fileinto"];'
            echo 'if body :text :contains "a phrase no bench message holds" { fileinto "Found"; }'
        else
            echo 'require ["fileinto", "envelope", "subaddress", "variables", "regex", "imap4flags", "relational", "comparator-i;ascii-numeric"];'
            n=1
            while [ $n -le 50 ]; do
                case $((n % 5)) in
                0) echo "if header :contains \"subject\" \"project-$n\" { fileinto \"Projects.p$n\"; stop; }" ;;
                1) echo "if address :domain :is \"from\" \"list$n.example.net\" { fileinto \"Lists.l$n\"; stop; }" ;;
                2) echo "if header :regex \"list-id\" \"<[a-z]+$n\\\\.lists\\\\.example\\\\.com>\" { fileinto \"Lists.r$n\"; stop; }" ;;
                3) echo "if envelope :detail :is \"to\" \"tag$n\" { addflag \"\\\\Flagged\"; fileinto \"Tags.t$n\"; stop; }" ;;
                4) echo "if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-priority-$n\" \"3\" { set \"p\" \"\${1}\"; fileinto \"Low\"; stop; }" ;;
                esac
                n=$((n + 1))
            done
        fi
    } > "$1/rules.sieve"
    i=0
    while [ $i -lt $ALL_USERS ]; do cp "$1/rules.sieve" "$1/load$i.sieve"; i=$((i + 1)); done
}

# start_lmtpd STORE: fresh directory $W/lm, config, users; sets SERVER_PID and SOCKET.
start_lmtpd() {
    d=$W/lm
    rm -rf "$d"
    # The previous run's thousands of unlinks are flushed now, not during this run.
    sync
    mkdir -p "$d/mail" "$d/spool"
    i=0
    : > "$d/users"
    while [ $i -lt $ALL_USERS ]; do echo "load$i@example.org" >> "$d/users"; i=$((i + 1)); done
    {
        echo "listen = unix:$d/lmtp.sock"
        echo "hostname = bench.localhost"
        echo "users = $d/users"
        echo "store = $1"
        echo "maildir = $d/mail/%d/%n/Maildir"
        echo "mbox = $d/mail/%d/%n"
        echo "sqlite = $d/mail/mail.db"
        echo "sqlite_body_files = $SQLITE_BODY_FILES"
        echo "postgres = host=$W/pg port=$PG_PORT user=postgres dbname=bench"
        echo "spool_dir = $d/spool"
        echo "max_message_size = 200M"
        [ -n "$LM_WORKERS" ] && echo "workers = $LM_WORKERS"
        case $LM_SIEVE in
        "") echo "sieve =" ;;
        rules | body)
            echo "sieve = $d/sieve/%n.sieve"
            [ "$LM_SIEVE" = rules ] && echo "sieve_before = $d/sieve/spam.sieve"
            ;;
        esac
        echo "log_level = info"
        # The retry journal, fresh for each run (j0: none).
        if [ "$LM_JOURNAL" = off ]; then echo "retry_journal ="; else echo "retry_journal = $d/state/retry.db"; fi
        [ "$(id -u)" = 0 ] && echo "user = $RUN_USER"
    } > "$d/lmtpd.conf"
    [ -n "$LM_SIEVE" ] && write_sieve "$d/sieve" "$LM_SIEVE"
    if [ "$1" = postgres ]; then
        pg_sql "DROP DATABASE IF EXISTS bench"
        pg_sql "CREATE DATABASE bench"
    fi
    chmod 0644 "$d/users" "$d/lmtpd.conf"
    mkdir -p "$d/state"
    chown -R "$RUN_UID:$RUN_GID" "$d/mail" "$d/spool" "$d/state"
    "$BIN" -c "$d/lmtpd.conf" < /dev/null 2>> "$d/lmtpd.log" &
    SERVER_PID=$!
    SOCKET=$d/lmtp.sock
    STORE_DIR=$d/mail
    wait_socket "$SOCKET" "$SERVER_PID" || {
        log "lmtpd did not start:"
        tail -5 "$d/lmtpd.log" >&2
        return 1
    }
}

# start_dovecot STORE: private instance under $W/dv; sets SERVER_PID and SOCKET.
start_dovecot() {
    d=$W/dv
    rm -rf "$d"
    # The previous run's thousands of unlinks are flushed now, not during this run.
    sync
    mkdir -p "$d/mail"
    case $1 in
    maildir) loc="maildir:$d/mail/%d/%n/Maildir" ;;
    mbox) loc="mbox:$d/mail/%d/%n:INBOX=$d/mail/%d/%n/inbox" ;;
    esac
    i=0
    : > "$d/users"
    while [ $i -lt $ALL_USERS ]; do
        echo "load$i@example.org:{PLAIN}unused:$RUN_UID:$RUN_GID::$d/mail/example.org/load$i::" >> "$d/users"
        i=$((i + 1))
    done
    sed -e "s|@DIR@|$d|g" -e "s|@STORE@|$1|g" -e "s|@UID@|$RUN_UID|g" -e "s|@GID@|$RUN_GID|g" \
        -e "s|@INTERNAL_USER@|$DV_INTERNAL_USER|g" -e "s|@INTERNAL_GROUP@|$DV_INTERNAL_GROUP|g" \
        -e "s|@LOGIN_USER@|$DV_LOGIN_USER|g" -e "s|@MAIL_LOCATION@|$loc|g" \
        "$ROOT/contrib/bench/dovecot.conf.in" > "$d/dovecot.conf"
    [ -n "$DV_EXTRA" ] && printf '%s\n' "$DV_EXTRA" >> "$d/dovecot.conf"
    chmod 0644 "$d/users" "$d/dovecot.conf"
    chown -R "$RUN_UID:$RUN_GID" "$d/mail"
    "$DOVECOT_BIN" -c "$d/dovecot.conf" -F < /dev/null 2>> "$d/stderr.log" &
    SERVER_PID=$!
    SOCKET=$d/lmtp
    STORE_DIR=$d/mail
    wait_socket "$SOCKET" "$SERVER_PID" || {
        log "dovecot did not start:"
        tail -5 "$d/stderr.log" "$d/dovecot.log" >&2 2>/dev/null
        return 1
    }
}

# count_stored SERVER STORE: messages on disk in $STORE_DIR (all mailboxes).
count_stored() {
    case $2 in
    maildir)
        find "$STORE_DIR" -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l | tr -d ' ' ;;
    mbox)
        n=0
        for f in $(find "$STORE_DIR" -type f \( -name 'load[0-9]' -o -name inbox \)); do
            n=$((n + $(grep -c '^From ' "$f")))
        done
        echo $n ;;
    sqlite)
        db=$STORE_DIR/mail.db
        if [ ! -e "$db" ]; then
            echo 0
        elif command -v python3 >/dev/null 2>&1; then
            python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select count(*) from deliveries").fetchone()[0])' "$db"
        else
            sqlite3 "$db" 'select count(*) from deliveries'
        fi ;;
    postgres) pg_sql "SELECT count(*) FROM deliveries" bench ;;
    esac
}

kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# idle_note RESULT_LINE: ", idle greeted/refused/waiting/dropped a/b/c/d" when --idle was used.
idle_note() {
    case $(kv "$1" idle) in "" | 0) return ;; esac
    echo ", idle $(kv "$1" idle) greeted/refused/waiting/dropped $(kv "$1" idle_greeted)/$(kv "$1" idle_refused)/$(kv "$1" idle_waiting)/$(kv "$1" idle_dropped)"
}

# run_one SERVER STORE WORKLOAD REP S M R SIZE K: one server start, one load run, one check.
run_one() {
    server=$1 store=$2 wl=$3 rep=$4
    case $server in
    lmtpd) start_lmtpd "$store" ;;
    dovecot) start_dovecot "$store" ;;
    esac || { stop_server; FAILED=1; echo "$wl $server $store $rep START_FAILED" >> "$RESULTS"; return; }
    proto=
    case $wl in *-bdat) proto=--bdat ;; esac
    # GEN_EXTRA is a list of options, proto one or none: split on purpose.
    # shellcheck disable=SC2086
    line=$("$GEN" load --connect "unix:$SOCKET" -s "$5" -m "$6" -r "$7" -l "$8" \
        --mailboxes "$9" --max-time "$MAX_TIME" --timeout 120 --pid "$SERVER_PID" \
        --label "$server-$store-$wl" $proto $GEN_EXTRA < /dev/null 2> "$W/gen.err")
    rc=$?
    stop_server
    [ -s "$W/gen.err" ] && sed 's/^/    /' "$W/gen.err" | head -5 >&2
    stored=$(count_stored "$server" "$store")
    acked=$(kv "$line" deliveries)
    ok=yes
    if [ $rc != 0 ] || [ -z "$acked" ] || [ "$stored" != "$acked" ]; then
        ok=no
        FAILED=1
    fi
    log "$server $store $wl #$rep: $(kv "$line" dps) deliveries/s, $(kv "$line" mps) msgs/s," \
        "p50/p90/p99/max $(kv "$line" p50_ms)/$(kv "$line" p90_ms)/$(kv "$line" p99_ms)/$(kv "$line" max_ms) ms," \
        "cpu $(kv "$line" cpu_ms_per_delivery) ms/delivery, rss $(kv "$line" rss_kib) KiB," \
        "refused $(kv "$line" refused)$(idle_note "$line"), stored $stored / acked ${acked:-?} ($ok)"
    echo "$wl $server $store $rep $line stored=$stored ok=$ok" >> "$RESULTS"
}

# ---------------------------------------------------------------------------------------
# Go.
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
log "work directory $W (deliveries as $RUN_USER, uid $RUN_UID, open files limit ${NOFILE:-?})"

PROBE=
for spec in "1 " "4 " "4 --no-dirsync"; do
    # shellcheck disable=SC2086
    p=$("$GEN" disk --dir "$W" --seconds "$PROBE_SECS" --threads $spec) || p=
    PROBE="$PROBE$p
"
done
# probe_field THREADS DIRSYNC KEY: a value from the disk probe's DISK lines.
probe_field() {
    echo "$PROBE" | awk -v t="threads=$1" -v d="dirsync=$2" -v k="$3" '$2 == t && $3 == d {
        for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }'
}
probe_rate() { probe_field "$1" "$2" per_s; }
log "disk: $(probe_rate 1 1)/s (1 thread), $(probe_rate 4 1)/s (4 threads), $(probe_rate 4 0)/s (4 threads, no dir fsync)"

TARGETS="lmtpd maildir
lmtpd mbox
lmtpd sqlite"
[ -n "$DOVECOT_BIN" ] && TARGETS="lmtpd maildir
dovecot maildir
lmtpd mbox
dovecot mbox
lmtpd sqlite"
# The memory runs (rss*) and their table cover the file stores and SQLite only.
RSS_TARGETS=$TARGETS
[ -n "$PG_CTL" ] && TARGETS="$TARGETS
lmtpd postgres"

# probe_set WORKLOAD REP SESSIONS SIZE MAILBOXES: the disk's ceiling for that workload, right
# after its servers ran: one probe per store's durable unit (file: Maildir, append: mbox,
# commit: SQLite) with the workload's sessions as threads, its size and its mailboxes, in a
# scratch directory on the same disk as the mail. Each is a results line
# "WL probe KIND REP DISK threads=... kind=... per_s=...".
probe_set() {
    mkdir -p "$W/probe"
    sync
    for kind in file append commit; do
        p=$("$GEN" disk --dir "$W/probe" --seconds "$PROBE_SECS" --kind $kind --threads "$3" \
            --size "$4" --files "$5" 2> "$W/probe.err") || {
            log "probe $kind for $1 #$2 failed: $(head -1 "$W/probe.err")"
            continue
        }
        echo "$1 probe $kind $2 $p" >> "$RESULTS"
        log "probe $kind ($3 threads, $4, $5 files) after $1 #$2: $(kv "$p" per_s)/s"
    done
}

# For each workload, each repetition runs every server back to back, so the numbers that are
# compared were measured minutes apart at most (the host's speed drifts). With PROBE=1 (the
# main workloads) each repetition ends with the workload's disk probes (probe_set).
# run_set WORKLOADS REPS [TARGETS] [PROBE]
run_set() {
    targets=${3:-$TARGETS}
    echo "$1" | while read -r wl s m r size k; do
        [ -n "$wl" ] || continue
        rep=1
        while [ $rep -le "$2" ]; do
            echo "$targets" | while read -r server store; do
                run_one "$server" "$store" "$wl" "$rep" "$s" "$m" "$r" "$size" "$k"
                # FAILED is set in a subshell here: record it in the results file instead.
            done
            [ "${4:-0}" = 1 ] && probe_set "$wl" "$rep" "$s" "$size" "$k"
            rep=$((rep + 1))
        done
    done
}
run_set "$WORKLOADS" "$REPS" "$TARGETS" 1

# e: Maildir only, both servers as shipped (no workers line: lmtpd's default is the point).
E_TARGETS="lmtpd maildir"
[ -n "$DOVECOT_BIN" ] && E_TARGETS="lmtpd maildir
dovecot maildir"
LM_WORKERS=
run_set "$E_SPEC" "$REPS" "$E_TARGETS"
LM_WORKERS=16

# f: each server and store runs b without (f0) and with the idle connections (f), on two
# fresh servers with the same configuration, back to back, in alternating order. Not Dovecot's mbox: b on one mbox
# is lock-bound there (a dozen deliveries per second), which idle connections cannot change.
F_TARGETS="lmtpd maildir
lmtpd mbox
lmtpd sqlite"
[ -n "$DOVECOT_BIN" ] && F_TARGETS="lmtpd maildir
dovecot maildir
lmtpd mbox
lmtpd sqlite"
# run_pairs SPEC TARGETS WITH WITHOUT: for every repetition and target, workload W of SPEC
# with a setting (W) and without it (W0), on two fresh servers back to back, in alternating
# order. WITH and WITHOUT are shell assignments, evaluated before each run. The order
# alternates because this virtual disk is fast for a burst and then slows down, so whichever
# run came second was measured on a slower disk (seen: f always after f0 gave Maildir 0.5x,
# the same pair by hand in either order ~1x); pair_ratios takes the geometric mean.
run_pairs() {
    echo "$1" | while read -r pwl s m r size k; do
        [ -n "$pwl" ] || continue
        rep=1
        while [ $rep -le "$REPS" ]; do
            echo "$2" | while read -r pserver pstore; do
                for which in $(if [ $((rep % 2)) = 1 ]; then echo "${pwl}0 $pwl"; else echo "$pwl ${pwl}0"; fi); do
                    if [ "$which" = "${pwl}0" ]; then eval "$4"; else eval "$3"; fi
                    run_one "$pserver" "$pstore" "$which" "$rep" "$s" "$m" "$r" "$size" "$k"
                done
            done
            rep=$((rep + 1))
        done
    done
}

LM_WORKERS=$F_WORKERS
DV_EXTRA=$F_DV_EXTRA
run_pairs "$F_SPEC" "$F_TARGETS" 'GEN_EXTRA="--idle $F_IDLE --idle-lhlo"' 'GEN_EXTRA='
LM_WORKERS=16
DV_EXTRA=
GEN_EXTRA=

# s: b with and without Sieve (s0), lmtpd only.
LMTPD_TARGETS="lmtpd maildir
lmtpd mbox
lmtpd sqlite"
run_pairs "$S_SPEC" "$LMTPD_TARGETS" 'LM_SIEVE=rules' 'LM_SIEVE='
LM_SIEVE=

# j: b with the retry journal (the default) and without it (j0), lmtpd only.
run_pairs "$J_SPEC" "$LMTPD_TARGETS" 'LM_JOURNAL=' 'LM_JOURNAL=off'
LM_JOURNAL=

run_set "$RSS_RUNS" 1 "$RSS_TARGETS"
LM_SIEVE=body
run_set "$RSS_SIEVE" 1 "$LMTPD_TARGETS"
LM_SIEVE=
grep -q ' ok=no$\|START_FAILED' "$RESULTS" && FAILED=1
ELAPSED=$(($(date +%s) - START))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# ---------------------------------------------------------------------------------------
# Report.

# med WORKLOAD SERVER STORE KEY: median over the repetitions ("-" when absent).
# pair_rows W: one report row per store of an lmtpd pair W / W0 (s/s0, j/j0): deliveries/s
# of both, CPU per delivery, the geometric mean of the pairs' ratios, stored = acked.
pair_rows() {
    for store in maildir mbox sqlite; do
        pr=$(pair_ratios lmtpd $store "$1")
        echo "| $store | $(fmt "$(med "${1}0" lmtpd $store dps)" 0) | $(fmt "$(med "$1" lmtpd $store dps)" 0) | $(fmt "$(med "${1}0" lmtpd $store cpu_ms_per_delivery)" 2) → $(fmt "$(med "$1" lmtpd $store cpu_ms_per_delivery)" 2) | $(fmt "${pr%% *}" 2)× (pairs ${pr#* }) | $(stored_ok "$1" lmtpd $store) |"
    done
}

# pair_ratios SERVER STORE: "GEOMEAN R1/R2/..": each repetition's f / f0 deliveries/s and
# their geometric mean. The order of f and f0 alternates between repetitions, so the mean
# cancels much of this disk's "the second run is slower" effect, which medians do not.
pair_ratios() {
    awk -v sv="$1" -v st="$2" -v w="${3:-f}" '
        ($1 == w || $1 == w "0") && $2 == sv && $3 == st {
            for (i = 5; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "dps") v[$1 "," $4] = kv[2] + 0
            }
        }
        END {
            n = 0; lg = 0; s = ""
            for (r = 1; (w "0," r) in v || (w "," r) in v; r++) {
                if (v[w "0," r] > 0 && v[w "," r] > 0) {
                    q = v[w "," r] / v[w "0," r]
                    s = s (n ? "/" : "") sprintf("%.2f", q)
                    lg += log(q)
                    n++
                }
            }
            if (n == 0) print "- -"; else printf "%.4f %s\n", exp(lg / n), s
        }' "$RESULTS"
}

med() {
    awk -v wl="$1" -v sv="$2" -v st="$3" -v key="$4" '
        $1 == wl && $2 == sv && $3 == st && $NF != "ok=no" {
            for (i = 5; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == key && kv[2] != "-") v[n++] = kv[2] + 0
            }
        }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            if (n % 2) m = v[(n - 1) / 2]; else m = (v[n / 2 - 1] + v[n / 2]) / 2
            print m
        }' "$RESULTS"
}
# agg MODE WORKLOAD SERVER STORE KEY: min, max or list ("a/b/c") over the repetitions.
agg() {
    awk -v mode="$1" -v wl="$2" -v sv="$3" -v st="$4" -v key="$5" '
        $1 == wl && $2 == sv && $3 == st {
            for (i = 5; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] != key || kv[2] == "-") continue
                x = kv[2] + 0
                if (n == 0 || x < lo) lo = x
                if (n == 0 || x > hi) hi = x
                l = l (n ? "/" : "") kv[2]
                n++
            }
        }
        END {
            if (n == 0) print "-"
            else if (mode == "min") print lo
            else if (mode == "max") print hi
            else print l
        }' "$RESULTS"
}
# stored_ok WORKLOAD SERVER STORE: "yes" when every repetition stored what was acked.
stored_ok() {
    awk -v wl="$1" -v sv="$2" -v st="$3" '
        $1 == wl && $2 == sv && $3 == st { n++; if ($NF != "ok=yes") bad++
            for (i = 5; i <= NF; i++) if ($i ~ /^stored=/) { sub("stored=", "", $i); s = s (s == "" ? "" : "/") $i } }
        END { if (n == 0) print "-"; else if (bad) print "**NO**"; else printf "yes (%s)\n", s }' "$RESULTS"
}
fmt() { # fmt VALUE DECIMALS
    case $1 in -|"") echo "–" ;; *) awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f\n", d, v }' ;; esac
}
ratio() { # ratio A B -> A/B with "×"
    case "$1$2" in *-*|"") echo "–" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×\n", a / b; else print "–" }' ;; esac
}
pct() { # pct A B -> A/B in % ("–" when either is missing)
    case "$1$2" in *-*|"") echo "–" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "–"; else if (a < 0.1 * b) printf "%.1f %%\n", 100 * a / b; else printf "%.0f %%\n", 100 * a / b }' ;; esac
}
mib() { case $1 in -|"") echo "–" ;; *) awk -v v="$1" 'BEGIN { printf "%.1f\n", v / 1024 }' ;; esac; }

kernel=$(uname -sr)
cpus=$(nproc 2>/dev/null || echo "?")
mem=$(free -h 2>/dev/null | awk '/^Mem:/ { print $2 }')
fs=$(df -PT "$W" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }')
rev=$(git describe --always --dirty 2>/dev/null || echo "?")
dv_version=$([ -n "$DOVECOT_BIN" ] && "$DOVECOT_BIN" --version 2>/dev/null | awk '{ print $1 }')

report() {
    echo "# lmtpd benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC"
    echo
    echo "Machine: $cpus CPUs, ${mem:-?} RAM, $kernel; mail on ${fs:-?}. lmtpd $rev;" \
        "Dovecot ${dv_version:-not run ($DOVECOT_WHY)}. QUICK=$QUICK, medians of $REPS run(s)," \
        "runs capped at $MAX_TIME s; total $ELAPSED s. Both servers deliver as uid $RUN_UID" \
        "with their shipped durability settings, over a Unix socket, one fresh server per run." \
        "Load average before/after: ${LOAD_BEFORE:-?} / ${LOAD_AFTER:-?} (anything else running" \
        "on the machine shows up in every number; compare only within one report)."
    echo
    echo "Disk probe (one 4 KiB file: create, write, fsync, rename into new/, fsync new/):" \
        "$(probe_rate 1 1)/s from 1 thread, $(probe_rate 4 1)/s from 4 threads;" \
        "$(probe_rate 4 0)/s from 4 threads without the directory fsync. The kernel charges the" \
        "probing process $(probe_field 1 1 cpu_sys_ms_per_op) ms of system CPU per cycle from 1 thread," \
        "$(probe_field 4 1 cpu_sys_ms_per_op) ms from 4 threads."
    echo
    echo "| workload | store | lmtpd deliveries/s | messages/s | p50 ms | p90 ms | p99 ms | max ms | CPU user s/1000 deliveries | CPU sys s/1000 | peak RSS MiB | stored = acked | Dovecot deliveries/s | Dovecot CPU user s/1000 | Dovecot CPU sys s/1000 | lmtpd / Dovecot deliveries/s | Dovecot CPU / lmtpd CPU |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    echo "$WORKLOADS" | while read -r wl s m r size k; do
        for store in maildir mbox sqlite postgres; do
            [ $store = postgres ] && [ -z "$PG_CTL" ] && continue
            dvs=$store
            case $store in sqlite | postgres) dvs=maildir ;; esac
            dps=$(med "$wl" lmtpd $store dps)
            cpu=$(med "$wl" lmtpd $store cpu_ms_per_delivery)
            ddps=$(med "$wl" dovecot $dvs dps)
            dcpu=$(med "$wl" dovecot $dvs cpu_ms_per_delivery)
            dlabel=$(fmt "$ddps" 0)
            [ $dvs != $store ] && [ "$ddps" != - ] && dlabel="$dlabel (Maildir)"
            dok=
            [ "$ddps" != - ] && [ $dvs = $store ] && [ "$(stored_ok "$wl" dovecot $dvs)" = "**NO**" ] && dok=" (**lost**)"
            lat=
            for q in p50_ms p90_ms p99_ms max_ms; do lat="$lat $(fmt "$(med "$wl" lmtpd $store $q)" 1) |"; done
            echo "| $(describe "$wl" "$s" "$m") | $store | $(fmt "$dps" 0) | $(fmt "$(med "$wl" lmtpd $store mps)" 0) |$lat $(fmt "$(med "$wl" lmtpd $store cpu_user_ms_per_delivery)" 2) | $(fmt "$(med "$wl" lmtpd $store cpu_sys_ms_per_delivery)" 2) | $(mib "$(med "$wl" lmtpd $store rss_kib)") | $(stored_ok "$wl" lmtpd $store) | $dlabel$dok | $(fmt "$(med "$wl" dovecot $dvs cpu_user_ms_per_delivery)" 2) | $(fmt "$(med "$wl" dovecot $dvs cpu_sys_ms_per_delivery)" 2) | $(ratio "$dps" "$ddps") | $(ratio "$dcpu" "$cpu") |"
        done
    done
    echo
    echo "Latency: per recipient reply, from writing the final dot (b-bdat: the LAST chunk) to" \
        "reading that recipient's reply, so c and c8 give 5 and 8 samples per message."
    echo
    echo "### Against the disk's ceiling"
    echo
    echo "The ceiling is what the disk probe (lmtp-bench disk) achieved right after each" \
        "repetition's servers, on the same disk, with the workload's sessions as threads, its" \
        "message size and its mailboxes, doing one store's durable unit per cycle with one fsync" \
        "each: Maildir against --kind file (create in tmp/, write, fsync, rename into new/, fsync" \
        "new/), mbox against --kind append (flock, append, fsync, unlock), SQLite against --kind" \
        "commit (BEGIN IMMEDIATE, INSERT the message as a blob, COMMIT; WAL, synchronous=FULL;" \
        "the threads take turns on an in-process lock, as one database has one writer; a" \
        "server's commit may carry several deliveries, e.g. every copy of a c or c8 message);" \
        "SQLite rows whose messages are $SQLITE_BODY_FILES bytes or more (d) against --kind file," \
        "since those bodies are body files (sqlite_body_files) and the commit naming one is" \
        "small." \
        "Ceiling: the median of those probes, cycles/s. Dovecot's SQLite cells are Dovecot" \
        "Maildir against the file ceiling. A ratio above 100 % is possible: the probe does one" \
        "fsync per cycle, while a server can let concurrent deliveries share one (lmtpd does)." \
        "Rows where lmtpd is below 75 % of the ceiling are marked."
    echo
    echo "| workload | store | lmtpd deliveries/s | ceiling ops/s | lmtpd / ceiling | Dovecot deliveries/s | Dovecot / ceiling | probe CPU per cycle user / sys ms |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "$WORKLOADS" | while read -r wl s m r size k; do
        [ -n "$wl" ] || continue
        for t in "maildir file maildir" "mbox append mbox" "sqlite commit maildir"; do
            set -- $t
            store=$1 kind=$2 dvs=$3
            # Bodies of SQLITE_BODY_FILES or more are SQLite body files: a file per delivery.
            [ $store = sqlite ] && [ "$(med "$wl" lmtpd sqlite size)" != - ] &&
                awk -v s="$(med "$wl" lmtpd sqlite size)" -v t="$SQLITE_BODY_FILES" \
                    'BEGIN { exit !(t > 0 && s >= t) }' && kind=file
            dps=$(med "$wl" lmtpd $store dps)
            ceil=$(med "$wl" probe $kind per_s)
            ddps=$(med "$wl" dovecot $dvs dps)
            # Dovecot Maildir (the SQLite rows) is set against the file ceiling.
            dceil=$ceil
            [ $store = sqlite ] && dceil=$(med "$wl" probe file per_s)
            lpct=$(pct "$dps" "$ceil")
            below=
            [ "$lpct" != "–" ] && awk -v a="$dps" -v b="$ceil" 'BEGIN { exit !(a < 0.75 * b) }' && below=" **below 75 %**"
            dlabel=$(fmt "$ddps" 0)
            dpct=$(pct "$ddps" "$dceil")
            if [ $store = sqlite ] && [ "$ddps" != - ]; then
                dlabel="$dlabel (Maildir)"
                dpct="$dpct (of file)"
            fi
            echo "| $wl | $store | $(fmt "$dps" 0) | $(fmt "$ceil" 0) | $lpct$below | $dlabel | $dpct | $(fmt "$(med "$wl" probe $kind cpu_user_ms_per_op)" 3) / $(fmt "$(med "$wl" probe $kind cpu_sys_ms_per_op)" 3) |"
        done
    done
    echo
    echo "### Latency"
    echo
    echo "Milliseconds, p50 / p90 / p99 / max per recipient reply (each the median over the" \
        "repetitions)."
    echo
    echo "| workload | lmtpd Maildir | lmtpd mbox | lmtpd SQLite | Dovecot Maildir | Dovecot mbox |"
    echo "|---|---|---|---|---|---|"
    echo "$WORKLOADS" | while read -r wl s m r size k; do
        [ -n "$wl" ] || continue
        row="| $wl |"
        for t in "lmtpd maildir" "lmtpd mbox" "lmtpd sqlite" "dovecot maildir" "dovecot mbox"; do
            set -- $t
            if [ "$(med "$wl" "$1" "$2" p50_ms)" = - ]; then row="$row – |"; continue; fi
            row="$row $(fmt "$(med "$wl" "$1" "$2" p50_ms)" 1) / $(fmt "$(med "$wl" "$1" "$2" p90_ms)" 1) / $(fmt "$(med "$wl" "$1" "$2" p99_ms)" 1) / $(fmt "$(med "$wl" "$1" "$2" max_ms)" 1) |"
        done
        echo "$row"
    done
    if [ -n "$CHARTS" ]; then
        echo
        echo "### Charts"
        echo
        for c in throughput latency rss; do
            echo "![$c]($STAMP-$c.svg)"
        done
    fi
    echo
    echo "Many sessions at once (e) and idle connections (f): e runs both servers with their shipped" \
        "limits (lmtpd: no workers line; Dovecot: process_limit 100); f runs lmtpd with" \
        "workers = $F_WORKERS and Dovecot with service lmtp { process_limit = 1100 } and" \
        "default_client_limit = 2300, and pairs every run with one of the same configuration" \
        "without the idle connections (f0), on a fresh server minutes apart at most. The idle" \
        "connections are opened, greeted and sent LHLO before the load starts, then stay silent" \
        "until it ends. Refused: sessions answered 421 (or closed before the greeting), per run;" \
        "their messages are not sent. Peak RSS: the largest of the runs (Dovecot's is summed over" \
        "its master and every lmtp process, one per connection)."
    echo
    echo "| workload | server | store | deliveries/s | p50 ms | p99 ms | sessions refused (421) | idle greeted / refused / waiting / dropped | peak RSS MiB | stored = acked | without idle (f0) deliveries/s | with / without idle (geometric mean of the pairs) | lmtpd / Dovecot deliveries/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for t in "e lmtpd maildir" "e dovecot maildir" "f lmtpd maildir" "f dovecot maildir" \
        "f lmtpd mbox" "f lmtpd sqlite"; do
        set -- $t
        dps=$(med "$1" "$2" "$3" dps)
        [ "$dps" = - ] && continue
        spec=$E_SPEC
        [ "$1" = f ] && spec=$F_SPEC
        set -- $t $spec
        wl=$1 sv=$2 st=$3
        idle="–" f0="–" wo="–" vs="–"
        if [ "$wl" = f ]; then
            idle="$(agg min f "$sv" "$st" idle_greeted) / $(agg max f "$sv" "$st" idle_refused) / $(agg max f "$sv" "$st" idle_waiting) / $(agg max f "$sv" "$st" idle_dropped) of $F_IDLE"
            f0=$(fmt "$(med f0 "$sv" "$st" dps)" 0)
            pr=$(pair_ratios "$sv" "$st")
            wo="$(fmt "${pr%% *}" 2)× (pairs ${pr#* })"
        fi
        label=$sv
        [ "$wl" = f ] && [ "$sv" = dovecot ] && label="dovecot (process_limit 1100)"
        if [ "$sv" = lmtpd ] && [ "$st" != mbox ]; then
            vs=$(ratio "$dps" "$(med "$wl" dovecot maildir dps)")
            [ "$st" = sqlite ] && [ "$vs" != "–" ] && vs="$vs (Maildir)"
        fi
        echo "| $(describe "$wl" "$5" "$6") | $label | $st | $(fmt "$dps" 0) | $(fmt "$(med "$wl" "$sv" "$st" p50_ms)" 1) | $(fmt "$(med "$wl" "$sv" "$st" p99_ms)" 1) | $(agg list "$wl" "$sv" "$st" refused) | $idle | $(mib "$(agg max "$wl" "$sv" "$st" rss_kib)") | $(stored_ok "$wl" "$sv" "$st") | $f0 | $wo | $vs |"
    done
    echo
    echo "Sieve (s): workload b with a global spam script and a 50-rule user script (no rule" \
        "matches: every message takes all rules and the implicit keep), each run paired with b" \
        "without Sieve (s0) on a fresh server, in alternating order."
    echo
    echo "| store | without Sieve (s0) deliveries/s | with Sieve (s) deliveries/s | CPU s/1000 s0 → s | with / without (geometric mean of the pairs) | stored = acked |"
    echo "|---|---|---|---|---|---|"
    pair_rows s
    if [ -n "$J_SPEC" ]; then
        echo
        echo "Retry journal (j): workload b with the retry journal (the default, as in every other" \
            "lmtpd row), each run paired with b without it (j0) on a fresh server, in alternating order."
        echo
        echo "| store | without the journal (j0) deliveries/s | with the journal (j) deliveries/s | CPU s/1000 j0 → j | with / without (geometric mean of the pairs) | stored = acked |"
        echo "|---|---|---|---|---|---|"
        pair_rows j
    fi
    echo
    echo "CPU: user + system seconds of the server process (Dovecot: master and all its children)" \
        "over the run, from /proc/PID/stat, per 1000 deliveries (= ms per delivery); the main" \
        "table shows user and system time apart, the pair tables their sum."
    echo
    echo "Peak RSS (VmHWM of a fresh server per run, MiB; Dovecot: summed over its master and all" \
        "child processes, so shared libraries count once per process) and messages/s:"
    echo
    echo "| run | lmtpd Maildir | lmtpd mbox | lmtpd SQLite | Dovecot Maildir | Dovecot mbox |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n%s\n' "$RSS_RUNS" "$RSS_SIEVE" | while read -r wl s m r size k; do
        row="| $(describe "$wl" "$s" "$m") |"
        for t in "lmtpd maildir" "lmtpd mbox" "lmtpd sqlite" "dovecot maildir" "dovecot mbox"; do
            set -- $t
            rss=$(med "$wl" "$1" "$2" rss_kib)
            if [ "$rss" = - ]; then row="$row – |"; continue; fi
            okc=$(stored_ok "$wl" "$1" "$2")
            lost=
            [ "$okc" = "**NO**" ] && lost=", **lost mail**"
            row="$row $(mib "$rss") ($(fmt "$(med "$wl" "$1" "$2" mps)" 1)/s$lost) |"
        done
        echo "$row"
    done
    echo
    echo "Targets (issue 7; the disk's ceiling and SQLite d: Performance round 2):"
    echo
    tgt() { # tgt TEXT VALUE OP BOUND
        if [ "$2" = - ] || [ -z "$2" ]; then echo "- $1: not measured"; return; fi
        if awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN { exit !((op == ">=" && v >= b) || (op == "<" && v < b) || (op == "<=" && v <= b)) }'; then
            echo "- $1: **met**"
        else
            echo "- $1: not met"
        fi
    }
    for wl in a b c; do
        l=$(med $wl lmtpd maildir dps) d=$(med $wl dovecot maildir dps)
        x=$(case "$l$d" in *-*) echo - ;; *) awk -v a="$l" -v b="$d" 'BEGIN { print a / b }' ;; esac)
        tgt "Maildir $wl ≥ 2× Dovecot: $(ratio "$l" "$d")" "$x" ">=" 2
    done
    l=$(med b lmtpd mbox dps) d=$(med b dovecot mbox dps)
    x=$(case "$l$d" in *-*) echo - ;; *) awk -v a="$l" -v b="$d" 'BEGIN { print a / b }' ;; esac)
    tgt "one mbox, 8 sessions (b) ≥ 30× Dovecot: $(ratio "$l" "$d")" "$x" ">=" 30
    for wl in a b c d; do
        l=$(med $wl lmtpd sqlite dps) d=$(med $wl dovecot maildir dps)
        x=$(case "$l$d" in *-*) echo - ;; *) awk -v a="$l" -v b="$d" 'BEGIN { print a / b }' ;; esac)
        tgt "SQLite $wl ≥ Dovecot Maildir: $(ratio "$l" "$d")" "$x" ">=" 1
    done
    # The ceiling of b and b8: their own interleaved 8-thread file probes (b8: 8 directories).
    for wl in b b8; do
        l=$(med $wl lmtpd maildir dps) c=$(med $wl probe file per_s)
        x=$(case "$l$c" in *-*) echo - ;; *) awk -v a="$l" -v b="$c" 'BEGIN { print a / b }' ;; esac)
        tgt "Maildir $wl ≥ 90 % of the 8-thread file ceiling: $(fmt "$l" 0) vs $(fmt "$c" 0)/s, $(pct "$l" "$c")" "$x" ">=" 0.9
    done
    for wl in a b c; do
        l=$(med $wl lmtpd maildir cpu_ms_per_delivery) d=$(med $wl dovecot maildir cpu_ms_per_delivery)
        x=$(case "$l$d" in *-*) echo - ;; *) awk -v a="$l" -v b="$d" 'BEGIN { if (a > 0) print b / a; else print 1e9 }' ;; esac)
        tgt "CPU per delivery ≤ 1/5 of Dovecot's, Maildir $wl: $(fmt "$l" 2) vs $(fmt "$d" 2) ms" "$x" ">=" 5
        # One session cannot share syncs: the probe's single-thread cycle (create, write,
        # fsync, rename, fsync new/) is the least a durable delivery costs the kernel.
        floor=$(probe_field 1 1 cpu_sys_ms_per_op)
        if [ "$wl" = a ] && [ -n "$floor" ] && [ "$d" != - ] &&
            awk -v f="$floor" -v d="$d" 'BEGIN { exit !(f > d / 5) }'; then
            echo "  (floor: the disk probe's own single-thread cycle cost $floor ms of system CPU in this run, more than 1/5 of Dovecot's $(fmt "$d" 2) ms)"
        fi
    done
    for store in maildir mbox sqlite; do
        r8=$(med rss8 lmtpd $store rss_kib)
        tgt "peak RSS < 16 MiB at 8 sessions × 10 MiB, $store: $(mib "$r8") MiB" "$r8" "<" 16384
    done
    for store in maildir mbox sqlite; do
        r1=$(med rss1 lmtpd $store rss_kib) r100=$(med rss100 lmtpd $store rss_kib)
        # "Not growing": 100 MiB messages need at most 2 MiB more than 1 MiB messages.
        x=$(case "$r1$r100" in *-*) echo - ;; *) awk -v a="$r1" -v b="$r100" 'BEGIN { print b - a }' ;; esac)
        tgt "RSS flat from 1 MiB to 100 MiB messages (≤ +2 MiB), $store: $(mib "$r1") → $(mib "$(med rss10 lmtpd $store rss_kib)") → $(mib "$r100") MiB" "$x" "<=" 2048
    done
    if [ -n "$J_SPEC" ]; then
        for store in maildir mbox sqlite; do
            pr=$(pair_ratios lmtpd $store j)
            tgt "retry journal on (j) ≥ 95 % of off (j0), $store: $(fmt "${pr%% *}" 2)× (pairs ${pr#* })" "${pr%% *}" ">=" 0.95
        done
    fi
    for store in maildir mbox sqlite; do
        pr=$(pair_ratios lmtpd $store s)
        tgt "Sieve (s) ≥ 90 % of b without Sieve (s0), $store: $(fmt "${pr%% *}" 2)× (pairs ${pr#* })" "${pr%% *}" ">=" 0.9
        r8=$(med rss8s lmtpd $store rss_kib)
        tgt "peak RSS < 16 MiB at 8 sessions × 10 MiB with a body :text rule, $store: $(mib "$r8") MiB" "$r8" "<" 16384
    done
    if grep -q ' ok=no$\|START_FAILED' "$RESULTS"; then
        echo "- stored = acked in every run: **NO** (see the tables)"
    else
        echo "- stored = acked in every run: **met**"
    fi
    echo
    echo "Targets for e and f:"
    echo
    verdict() { if "$@"; then echo "**met**"; else echo "not met"; fi; }
    awk_true() { awk "BEGIN { exit !($1) }"; }
    l=$(med e lmtpd maildir dps) d=$(med e dovecot maildir dps)
    lr=$(agg max e lmtpd maildir refused) dr=$(agg list e dovecot maildir refused)
    if [ "$l" = - ] || [ "$d" = - ]; then
        echo "- e: refuses none, ≥ 2× Dovecot: not measured (lmtpd refused $(agg list e lmtpd maildir refused), Dovecot ${dr})"
    else
        # A refused session's messages are not sent: the ratio then covers fewer messages.
        echo "- e: refuses none (421s per run: lmtpd $(agg list e lmtpd maildir refused), Dovecot $dr;" \
            "deliveries: lmtpd $(agg list e lmtpd maildir deliveries), Dovecot $(agg list e dovecot maildir deliveries))," \
            "≥ 2× Dovecot ($(ratio "$l" "$d")): $(verdict awk_true "$lr == 0 && $l >= 2 * $d")"
    fi
    for store in maildir mbox sqlite; do
        w=$(med f lmtpd $store dps) wo=$(med f0 lmtpd $store dps) rss=$(agg max f lmtpd $store rss_kib)
        g=$(agg min f lmtpd $store idle_greeted) dr=$(agg max f lmtpd $store idle_dropped)
        if [ "$w" = - ] || [ "$wo" = - ] || [ "$rss" = - ]; then
            echo "- f, $store: ≥ 90 % of b, peak RSS < 64 MiB: not measured"
            continue
        fi
        pr=$(pair_ratios lmtpd $store)
        gm=${pr%% *}
        pct=$(awk -v q="$gm" 'BEGIN { printf "%.1f", 100 * q }')
        echo "- f, $store: ≥ 90 % of b with $F_IDLE idle connections held ($pct %, geometric mean" \
            "of the pairs ${pr#* }; medians $(fmt "$w" 0) vs $(fmt "$wo" 0)/s;" \
            "all greeted, none dropped: $g greeted, $dr dropped), peak RSS < 64 MiB ($(mib "$rss") MiB):" \
            "$(verdict awk_true "$gm >= 0.9 && $rss < 65536 && $g == $F_IDLE && $dr == 0")"
    done
}

# Charts, from the raw results (lmtp-bench chart takes its own medians).
note="lmtpd $rev, $(date -u '+%Y-%m-%d %H:%M') UTC, $cpus CPUs, $kernel, mail on ${fs:-?}"
[ $QUICK = 1 ] && note="$note (QUICK=1)"
CHARTS=
COMPLETE=
RESULTS_DIR=$ROOT/contrib/bench/results
if "$GEN" chart --results "$RESULTS" --out "$W/charts" --note "$note" \
    --sqlite-body-files "$SQLITE_BODY_FILES" 2> "$W/chart.err"; then
    CHARTS=yes
    for c in throughput latency rss; do cp "$W/charts/$c.svg" "$OUT_DIR/$STAMP-$c.svg"; done
    # A complete run's charts go where the README shows them from.
    if [ $QUICK = 0 ] && [ "${SIEVE_ONLY:-0}" != 1 ] && [ "${JOURNAL_ONLY:-0}" != 1 ] &&
        [ -z "$ONLY" ] && [ -n "$DOVECOT_BIN" ]; then
        COMPLETE=yes
        mkdir -p "$RESULTS_DIR"
        for c in throughput latency rss; do cp "$W/charts/$c.svg" "$RESULTS_DIR/$c.svg"; done
        log "charts copied to $RESULTS_DIR/"
    fi
else
    log "charts failed: $(head -3 "$W/chart.err")"
fi

report | tee "$REPORT"
{
    echo
    echo "<details><summary>raw results</summary>"
    echo
    echo '```'
    echo "$PROBE" | sed '/^$/d'
    cat "$RESULTS"
    echo '```'
    echo "</details>"
} >> "$REPORT"
log "report written to $REPORT"
# A complete run's report goes beside its charts, the chart links made relative to them.
if [ -n "$COMPLETE" ]; then
    sed "s#($STAMP-\(throughput\|latency\|rss\)\.svg)#(\1.svg)#" "$REPORT" > "$RESULTS_DIR/report.md"
    log "report copied to $RESULTS_DIR/report.md"
fi
[ -n "$CHARTS" ] && log "charts: $OUT_DIR/$STAMP-{throughput,latency,rss}.svg"
exit $FAILED
