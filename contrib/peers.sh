#!/bin/sh
# Real LMTP clients against the release binary: swaks (--protocol LMTP) over TCP and a Unix
# socket, and Postfix's smtp-source -L. Installs swaks and postfix with apt-get when they are
# missing (Debian). Prints one PASS/FAIL line per step and "N passed, N failed" last.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${BIN:-target/release/lmtpd}

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    return 1
}
if ! need swaks || ! need smtp-source; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing swaks and postfix (for smtp-source)..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null 2>&1
        apt-get install -y -q swaks postfix >/dev/null 2>&1 || echo "apt-get install failed"
    fi
fi
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)

work=$(mktemp -d /tmp/lmtpd-peers.XXXXXX)
port=$((20000 + $$ % 20000))
cat > "$work/users" <<EOF
alice@example.org
bob@example.org
full@example.org quota=1K
load@example.org
EOF
cat > "$work/lmtpd.conf" <<EOF
listen = 127.0.0.1:$port
listen = unix:$work/lmtp.sock
users = $work/users
maildir = $work/mail/%d/%n/Maildir
spool_dir = $work/spool
retry_journal = $work/state/retry.db
hostname = peers.test
workers = 16
detail_mailbox = create
log_level = warn
allow_root = yes
EOF
mkdir -p "$work/spool"
# Fill full@'s mailbox past its 1K quota so its RCPT is refused with 452 4.2.2.
mkdir -p "$work/mail/example.org/full/Maildir/new" "$work/mail/example.org/full/Maildir/cur" "$work/mail/example.org/full/Maildir/tmp"
head -c 2000 /dev/zero | tr '\0' 'x' > "$work/mail/example.org/full/Maildir/new/1.M1P1.peers,S=2000"

"$BIN" -c "$work/lmtpd.conf" 2> "$work/server.log" &
pid=$!
i=0
while [ ! -S "$work/lmtp.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

passed=0
failed=0
skipped=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); [ -n "${2:-}" ] && sed 's/^/    /' "$2" | tail -30; }
skip() { echo "SKIP: $1"; skipped=$((skipped + 1)); }
count() { find "$work/mail/example.org/$1/Maildir/$2" -type f 2>/dev/null | wc -l | tr -d ' '; }

if need swaks; then
    # 1. Three recipients over TCP: one delivered, one unknown (550 at RCPT), one over quota (452).
    swaks --protocol LMTP --server 127.0.0.1 --port "$port" --from sender@example.net \
        --to alice@example.org,nobody@example.org,full@example.org \
        --header "Subject: peers 1" --body "hello from swaks" > "$work/s1.out" 2>&1
    if grep -q '<-  250 2.0.0 <alice@example.org>' "$work/s1.out" &&
        grep -q '<\*\* 550 5.1.1' "$work/s1.out" && grep -q '<\*\* 452 4.2.2' "$work/s1.out" &&
        [ "$(count alice new)" = 1 ] && [ "$(count full new)" = 1 ]; then
        pass "swaks TCP: 250 for alice, 550 5.1.1 unknown, 452 4.2.2 over quota, one file stored"
    else
        fail "swaks TCP per-recipient replies" "$work/s1.out"
    fi
    # 2. Pipelined over the Unix socket, two recipients, one with +detail.
    swaks --protocol LMTP --socket "$work/lmtp.sock" --pipeline --from sender@example.net \
        --to alice@example.org,bob+lists@example.org \
        --header "Subject: peers 2" --body "pipelined" > "$work/s2.out" 2>&1
    if [ "$(grep -c '<-  250 2.0.0' "$work/s2.out")" = 2 ] && [ "$(count alice new)" = 2 ] &&
        [ "$(find "$work/mail/example.org/bob/Maildir/.lists/new" -type f | wc -l | tr -d ' ')" = 1 ]; then
        pass "swaks Unix socket, pipelined: two 250 replies after the dot, +detail in .lists"
    else
        fail "swaks Unix socket pipelined" "$work/s2.out"
    fi
    # 3. The stored copy starts with our trace headers and keeps the body.
    f=$(find "$work/mail/example.org/alice/Maildir/new" -type f | head -1)
    if [ -n "$f" ] && head -1 "$f" | grep -q '^Return-Path: <sender@example.net>$' &&
        grep -q '^Delivered-To: alice@example.org$' "$f" && grep -q 'with LMTP id' "$f" &&
        grep -q '^hello from swaks$\|^pipelined$' "$f"; then
        pass "stored copy has Return-Path, Delivered-To, Received and the body"
    else
        fail "trace headers in the stored copy" "${f:-/dev/null}"
    fi
else
    skip "swaks not available"
fi

if [ -x "$SMTP_SOURCE" ]; then
    # 4. smtp-source -L: 8 sessions x 200 messages of 4 KiB, all must be on disk.
    start=$(date +%s.%N)
    "$SMTP_SOURCE" -L -s 8 -m 200 -l 4096 -f sender@example.net -t load@example.org \
        "unix:$work/lmtp.sock" > "$work/ss.out" 2>&1
    rc=$?
    end=$(date +%s.%N)
    n=$(count load new)
    rate=$(echo "$start $end $n" | awk '{ if ($2 > $1) printf "%.0f", $3 / ($2 - $1); else print "?" }')
    if [ $rc = 0 ] && [ "$n" = 200 ]; then
        pass "smtp-source -L -s 8 -m 200: 200 messages on disk ($rate deliveries/s)"
    else
        fail "smtp-source -L: rc=$rc, $n of 200 on disk" "$work/ss.out"
    fi
else
    skip "smtp-source not available"
fi

kill -TERM "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ ! -e "$work/lmtp.sock" ]; then
    pass "SIGTERM: server exited and removed its socket"
else
    fail "SIGTERM cleanup" "$work/server.log"
fi
if [ "$(find "$work/mail" -path "$work/mail/*/tmp/*" -type f | wc -l | tr -d ' ')" = 0 ]; then
    pass "no files left in any tmp/"
else
    fail "files left in tmp/"
fi

if [ $failed = 0 ]; then rm -rf "$work"; else echo "kept $work for inspection"; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
