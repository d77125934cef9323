#!/usr/bin/env bash
# Interoperability suite (`make interop`): lmtpd behind real MTAs (a private Postfix
# instance, Exim from its unpacked Debian packages), real LMTP clients (swaks, smtp-source)
# and real readers (Python's mailbox module, Dovecot's doveadm, lmtpd export), on loopback
# and Unix sockets only. Private instances with their own directories under one temp dir;
# the system's Postfix/Dovecot/Exim and port 25 are never used.
#
# Runs as root (CI); installs postfix, swaks, dovecot-core, dovecot-imapd and mailutils with
# apt-get when missing. Adds (and removes at the end) a throw-away Unix account, lmtpacct.
# BIN=path skips the cargo build. KEEP=1 keeps the temp dir.
# Prints one PASS/FAIL/SKIP line per step and "N passed, N failed, N skipped" last; exits
# non-zero on any FAIL.
set -u
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
here=$top/contrib/interop
export LC_ALL=C

passed=0
failed=0
skipped=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL: $1"
    failed=$((failed + 1))
    local f
    shift
    for f in "$@"; do [ -s "$f" ] && { echo "    --- $f"; tail -25 "$f" | sed 's/^/    /'; }; done
    return 0
}
skip() { echo "SKIP: $1"; skipped=$((skipped + 1)); }
note() { echo "  .. $*"; }

# ---------------------------------------------------------------- tools
export DEBIAN_FRONTEND=noninteractive
pkgs=""
command -v swaks >/dev/null 2>&1 || pkgs="$pkgs swaks"
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] || pkgs="$pkgs postfix"
command -v doveadm >/dev/null 2>&1 || pkgs="$pkgs dovecot-core dovecot-imapd"
command -v prometheus >/dev/null 2>&1 || pkgs="$pkgs prometheus"
command -v curl >/dev/null 2>&1 || pkgs="$pkgs curl"
command -v openssl >/dev/null 2>&1 || pkgs="$pkgs openssl"
# GNU mailutils' mail reads the system account's mbox (pf_accounts).
[ -x /usr/bin/mail.mailutils ] || pkgs="$pkgs mailutils"
if [ -n "$pkgs" ]; then
    note "installing$pkgs"
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends $pkgs >/tmp/lmtpd-interop-apt.log 2>&1 ||
        note "apt-get install failed: see /tmp/lmtpd-interop-apt.log"
fi
# Installing the packages may have started the system services; this suite never uses them.

if [ -z "${BIN:-}" ]; then
    note "building the release binary"
    if ! cargo build --release --locked -q >/tmp/lmtpd-interop-build.log 2>&1; then
        fail "cargo build --release --locked" /tmp/lmtpd-interop-build.log
        echo "$passed passed, $failed failed, $skipped skipped"
        exit 1
    fi
    BIN=$top/target/release/lmtpd
fi
case $BIN in /*) ;; *) BIN=$top/$BIN ;; esac

# ---------------------------------------------------------------- the throw-away server
work=$(mktemp -d /tmp/lmtpd-interop.XXXXXX)
chmod 755 "$work"
port=$((20000 + $$ % 20000))
sock=$work/run/lmtp.sock
mail=$work/mail
sent=$work/sent
# Messages the SQLite user sq@ holds at the export check (swaks: 2; pf_sqlite_big adds one).
sq_count=2
RUN_USER=nobody
RUN_GROUP=$(id -gn nobody)
mkdir -p "$work/run" "$work/spool" "$mail/mbox" "$sent"
# lmtpd binds as root, then runs as nobody (as it would as vmail in production).
cat >"$work/users" <<EOF
good@example.org
full@example.org quota=1K
slowreply@example.org
sized@example.org quota=2K
sender@example.org
burst@example.org
exim@example.org
box@example.org quota=10M quota_messages=1000
mb@example.org store=mbox
sq@example.org store=sqlite
load@example.org
many@example.org
sv@example.org
svrej@example.org
rd@example.org
fw@example.org
fwd@example.org
vac@example.org
tls@example.org
chunk@example.org
EOF
cat >"$work/lmtpd.conf" <<EOF
user = $RUN_USER
group = $RUN_GROUP
listen = 127.0.0.1:$port
listen = unix:$sock
socket_mode = 0666
users = $work/users
store = maildir
maildir = $mail/%d/%n/Maildir
mbox = $mail/mbox/%n
sqlite = $mail/mail.db
spool_dir = $work/spool
retry_journal = $work/state/retry.db
hostname = lmtpd.interop.test
metrics = 127.0.0.1:1
detail_mailbox = create
quota_full = tempfail
log_level = info
sieve = $mail/%d/%n/.dovecot.sieve
sieve_dir = $mail/%d/%n/sieve
sieve_before = $work/sieve/spam.sieve
sendmail = $work/pf-sendmail
sieve_state_dir = $work/state
tls_cert = $work/tls/cert.pem
tls_key = $work/tls/key.pem
EOF
# STARTTLS on the TCP listener: a self-signed certificate made here.
mkdir -p "$work/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=lmtpd.interop.test" \
    -addext "subjectAltName=DNS:lmtpd.interop.test,IP:127.0.0.1" \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" >"$work/openssl.log" 2>&1
chmod 0644 "$work/tls/cert.pem" "$work/tls/key.pem"
# Sieve sending: rd redirects, fw redirects a copy, both to fwd; vac has a vacation
# script. What they send goes through the private Postfix's sendmail (below) and comes back
# through Postfix's LMTP client.
pf=$work/postfix
cat >"$work/pf-sendmail" <<EOF
#!/bin/sh
exec /usr/sbin/sendmail -C $pf/etc "\$@"
EOF
chmod 755 "$work/pf-sendmail"
mkdir -p "$work/state" "$mail/example.org/rd" "$mail/example.org/fw" "$mail/example.org/vac"
echo 'redirect "fwd@example.org";' >"$mail/example.org/rd/.dovecot.sieve"
printf 'require "copy";\nredirect :copy "fwd@example.org";\n' >"$mail/example.org/fw/.dovecot.sieve"
cat >"$mail/example.org/vac/.dovecot.sieve" <<'EOF'
require "vacation";
vacation :days 1 :subject "Out of office" "I am away this week.";
EOF
# Sieve: a global spam script before every user's (mailcow / mail-in-a-box style), sv's
# script in Dovecot's ManageSieve layout (sieve/*.sieve, the active one linked from
# .dovecot.sieve: tag folders from the +detail, flags), and svrej's reject.
mkdir -p "$work/sieve" "$mail/example.org/sv/sieve" "$mail/example.org/svrej"
cat >"$work/sieve/spam.sieve" <<'EOF'
require ["fileinto", "mailbox", "imap4flags"];
if header :is "X-Spam-Flag" "YES" {
    addflag "\\Seen";
    fileinto :create "Junk";
    stop;
}
EOF
cat >"$mail/example.org/sv/sieve/roundcube.sieve" <<'EOF'
require ["fileinto", "envelope", "subaddress", "variables", "mailbox", "imap4flags"];
# rule:[tag folders]
if envelope :detail :matches "to" "*" {
    set :lower "tag" "${1}";
}
if not string :is "${tag}" "" {
    addflag "\\Flagged";
    fileinto :create "Tags.${tag}";
    stop;
}
EOF
ln -s sieve/roundcube.sieve "$mail/example.org/sv/.dovecot.sieve"
cat >"$mail/example.org/svrej/.dovecot.sieve" <<'EOF'
require "reject";
reject "I do not accept mail from this sender.";
EOF
# full@ is over its 1K quota before anything arrives: refused at RCPT with 452 4.2.2.
full=$mail/example.org/full/Maildir
mkdir -p "$full/new" "$full/cur" "$full/tmp"
head -c 2000 /dev/zero | tr '\0' x >"$full/new/1.M1P1.interop,S=2000"
chown -R "$RUN_USER:$RUN_GROUP" "$work/run" "$work/spool" "$mail" "$work/state"

lmtpd_pid=""
pf_started=""
acd_set=""
pg_ctl_bin=""
pg_nodes=""
# pf_accounts' throw-away Unix account and its lmtpd (accounts = passwd).
acct_name=lmtpacct
acct_added=""
acct_pid=""
cleanup() {
    [ -n "$pf_started" ] && postfix -c "$pf/etc" stop >/dev/null 2>&1
    for p in $pg_nodes; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    if [ -n "$acct_pid" ]; then
        kill -TERM "$acct_pid" 2>/dev/null
        wait "$acct_pid" 2>/dev/null
        acct_pid=""
    fi
    if [ -n "$acct_added" ]; then
        userdel "$acct_name" >/dev/null 2>&1 || note "userdel $acct_name failed"
        acct_added=""
    fi
    [ -n "$pg_ctl_bin" ] && runuser -u postgres -- "$pg_ctl_bin" -D "$work/pg/data" stop -m fast >/dev/null 2>&1
    # Give the system's Postfix its alternate_config_directories back.
    if [ -n "$acd_set" ]; then
        if [ -n "$acd_old" ]; then
            postconf -e "alternate_config_directories = $acd_old"
        else
            postconf -X alternate_config_directories
        fi
    fi
    if [ -n "$lmtpd_pid" ] && kill -0 "$lmtpd_pid" 2>/dev/null; then
        kill -TERM "$lmtpd_pid" 2>/dev/null
        wait "$lmtpd_pid" 2>/dev/null
    fi
}
trap cleanup EXIT

# A busy port makes lmtpd exit (71): try another one, three times at most.
for try in 1 2 3; do
    sed -i -e "s/^listen = 127.0.0.1:.*/listen = 127.0.0.1:$port/" \
        -e "s/^metrics = 127.0.0.1:.*/metrics = 127.0.0.1:$((port + 1))/" "$work/lmtpd.conf"
    # The test hook of pf_retry (src/deliver.rs): slowreply@'s first reply waits 6 s.
    LMTPD_TEST_REPLY_DELAY=slowreply:6 "$BIN" -c "$work/lmtpd.conf" 2>"$work/lmtpd.log" &
    lmtpd_pid=$!
    i=0
    while [ ! -S "$sock" ] && [ $i -lt 100 ] && kill -0 "$lmtpd_pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -S "$sock" ] && break
    kill -TERM "$lmtpd_pid" 2>/dev/null
    wait "$lmtpd_pid" 2>/dev/null
    lmtpd_pid=""
    port=$((20000 + (port + 7919) % 20000))
done
if [ ! -S "$sock" ]; then
    fail "lmtpd did not start" "$work/lmtpd.log"
    echo "kept $work for inspection"
    echo "$passed passed, $failed failed, $skipped skipped"
    exit 1
fi

count() { find "$1" -type f 2>/dev/null | wc -l | tr -d ' '; }
newcount() { count "$mail/example.org/$1/Maildir/new"; }
mboxcount() { if [ -f "$1" ]; then grep -c "^From " "$1"; else echo 0; fi; }

# mkmsg ID TO: writes $sent/ID.msg, a message with awkward but legal content: lines that
# an mbox must quote, dot lines, 8-bit UTF-8, trailing blanks, empty lines.
mkmsg() {
    cat >"$sent/$1.msg" <<EOF
From: Interop Sender <sender@example.org>
To: <$2>
Subject: interop $1
Message-ID: <$1@interop.test>
X-Interop-Id: $1
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Message $1.
From the start of a line: an mbox must quote this one.
>From already quoted once
>>From twice
.
..two dots
. a dot and a space
trailing blanks   
UTF-8: Grüße, ÆØÅ, 日本語

the last line
EOF
}

# ---------------------------------------------------------------- 1. Postfix
pflog=$work/postfix.log
mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
chown postfix "$pf/data"
cat >"$pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.interop.test
mydomain = interop.test
myorigin = interop.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery in the interop test
default_transport = error:5.4.4 no outside delivery in the interop test
relay_transport = error:5.4.4 no outside delivery in the interop test
virtual_mailbox_domains = example.org
virtual_transport = lmtp:unix:$sock
lmtp_destination_concurrency_limit = 4
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
maillog_file = $pflog
maillog_file_prefixes = $work
biff = no
# lmtpd offers XFORWARD to local clients: Postfix then sends its queue id and the client.
lmtp_send_xforward_command = yes
EOF
# One smtpd on loopback (for mail that arrives with a client, as XFORWARD needs); every
# service unchrooted (the socket lives in $work).
cat >"$pf/etc/master.cf" <<EOF
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
127.0.0.1:$((port + 30)) inet n -       n       -       -       smtpd
EOF

# qid_of MESSAGE-ID: the queue id cleanup logged for it (waits up to 20 s).
qid_of() {
    local q i=0
    while [ $i -lt 100 ]; do
        q=$(grep -o "[0-9A-F]\{6,\}: message-id=<$1>" "$pflog" 2>/dev/null | head -1 | cut -d: -f1)
        [ -n "$q" ] && { echo "$q"; return; }
        sleep 0.2
        i=$((i + 1))
    done
}
# pf_status QID RCPT: the status= word Postfix logged for that recipient (waits up to 30 s).
pf_status() {
    local s i=0
    while [ $i -lt 150 ]; do
        s=$(grep "$1: to=<$2>" "$pflog" 2>/dev/null | grep -o 'status=[a-z]*' | head -1)
        [ -n "$s" ] && { echo "${s#status=}"; return; }
        sleep 0.2
        i=$((i + 1))
    done
    echo none
}
# pf_round TAG NAME WANT_RELAY: one message for good, unknown, full through the private Postfix.
pf_round() {
    local id=pf-$1 qid sg su sf
    shift
    mkmsg "$id" good@example.org
    # -i: a line with a single dot is content, not the end of the input.
    sendmail -C "$pf/etc" -i -f sender@example.org -- good@example.org unknown@example.org \
        full@example.org <"$sent/$id.msg"
    qid=$(qid_of "$id@interop.test")
    if [ -z "$qid" ]; then
        fail "postfix via $1 message not picked up" "$pflog"
        return
    fi
    sg=$(pf_status "$qid" good@example.org)
    su=$(pf_status "$qid" unknown@example.org)
    sf=$(pf_status "$qid" full@example.org)
    if [ "$sg" = sent ] && [ "$su" = bounced ] && [ "$sf" = deferred ] &&
        grep "$qid: to=<good@example.org>" "$pflog" | grep -qF -- "$2" &&
        grep "$qid: to=<full@example.org>" "$pflog" | grep -q '452 4.2.2' &&
        grep "$qid: to=<unknown@example.org>" "$pflog" | grep -q '550 5.1.1'; then
        pass "postfix via $1 status=sent good, bounced unknown (550 5.1.1), deferred full (452 4.2.2)"
    else
        fail "postfix via $1 good=$sg unknown=$su full=$sf (want sent/bounced/deferred via $2)" "$pflog"
    fi
    # XFORWARD: mail that Postfix's smtpd received (so it has a client) arrives with the
    # original client on lmtpd's log line and in the Received header. (Locally submitted
    # mail has no client: Postfix then forwards SOURCE=LOCAL only.)
    swaks --server 127.0.0.1 --port $((port + 30)) --from sender@example.org --to good@example.org \
        --helo client.interop.test --header "Message-ID: <$id-xf@interop.test>" \
        --body "xforward $1" >"$work/swaks-xf-$1.out" 2>&1
    local xq line
    xq=$(qid_of "$id-xf@interop.test")
    pf_status "$xq" good@example.org >/dev/null
    line=$(grep 'to=<good@example.org>' "$work/lmtpd.log" | grep 'orig_client=localhost\[127.0.0.1\]' | tail -1)
    if [ -n "$line" ] &&
        grep -l "Message-ID: <$id-xf@interop.test>" "$mail/example.org/good/Maildir/new/"* 2>/dev/null |
        xargs grep -q '(originally localhost\[127.0.0.1\])'; then
        pass "postfix via $1 + XFORWARD: lmtpd's line for good@ has $(echo "$line" | grep -o 'orig_queue_id=[^ ]*' || echo 'no queue id (Postfix sent none)') $(echo "$line" | grep -o 'orig_client=[^ ]*'), the copy's Received names it"
    else
        fail "postfix via $1 + XFORWARD: no orig_client on lmtpd's line for good@ (queue id $xq)" "$work/lmtpd.log" "$pflog"
    fi
}

# pf_retry: retry-safe delivery with the real Postfix. lmtpd stores slowreply@'s copy, then
# (LMTPD_TEST_REPLY_DELAY) holds its reply for 6 s; Postfix gives up after
# lmtp_data_done_timeout = 2s ("message may be sent more than once"), defers the message
# and retries it. The retry has the same key (XFORWARD IDENT, sender, recipient, SHA-256 of
# the message): lmtpd answers 250 "Saved before" and the Maildir holds exactly one copy.
pf_retry() {
    local qid i=0 sent="" n
    postconf -c "$pf/etc" -e "lmtp_data_done_timeout = 2s"
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
    mkmsg pf-retry slowreply@example.org
    sendmail -C "$pf/etc" -i -f sender@example.org -- slowreply@example.org <"$sent/pf-retry.msg"
    qid=$(qid_of "pf-retry@interop.test")
    while [ -n "$qid" ] && [ $i -lt 200 ]; do
        sent=$(grep "$qid: to=<slowreply@example.org>" "$pflog" 2>/dev/null | grep 'status=sent' | head -1)
        [ -n "$sent" ] && break
        sleep 0.2
        i=$((i + 1))
        [ $((i % 25)) = 0 ] && postqueue -c "$pf/etc" -f
    done
    n=$(newcount slowreply)
    if [ -n "$sent" ] && [ "$n" = 1 ] &&
        grep "$qid: to=<slowreply@example.org>" "$pflog" | grep 'status=deferred' | grep -q 'timed out' &&
        echo "$sent" | grep -q 'Saved before' &&
        grep 'to=<slowreply@example.org>' "$work/lmtpd.log" | grep -q 'retry of the copy stored'; then
        pass "postfix retry after a lost reply: deferred ($(grep "$qid: to=<slowreply@example.org>" "$pflog" | grep -o 'conversation with [^)]*timed out[^)]*' | head -1 | cut -c1-60)...), retried, answered '$(echo "$sent" | grep -o '250 2.0.0 [^)]*' | head -1)', exactly 1 copy in the Maildir"
    else
        fail "postfix retry after a lost reply: qid=$qid sent=${sent:+yes} copies=$n" "$pflog" "$work/lmtpd.log"
    fi
    postconf -c "$pf/etc" -X lmtp_data_done_timeout
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
}

# pf_sized: Postfix declares SIZE= in MAIL; sized@ (quota 2K) gets 552 5.2.2 at RCPT for a
# message larger than its whole quota, before the body is sent, and Postfix bounces it for
# that recipient only while good@ gets the same message.
pf_sized() {
    local qid ss sg
    mkmsg pf-sized sized@example.org
    # Whole lines (fold leaves the last one without its newline), so the stored body can be
    # compared with what was sent.
    { head -c 6000 /dev/zero | tr '\0' y | fold -w 70; echo; } >>"$sent/pf-sized.msg"
    sendmail -C "$pf/etc" -i -f sender@example.org -- sized@example.org good@example.org \
        <"$sent/pf-sized.msg"
    qid=$(qid_of "pf-sized@interop.test")
    ss=$(pf_status "$qid" sized@example.org)
    sg=$(pf_status "$qid" good@example.org)
    if [ "$ss" = bounced ] && [ "$sg" = sent ] &&
        grep "$qid: to=<sized@example.org>" "$pflog" | grep -q '552 5.2.2' &&
        grep 'rcpt=<sized@example.org>' "$work/lmtpd.log" | grep -q 'refused at RCPT.*whole quota'; then
        pass "postfix SIZE= above the whole quota: sized@ bounced with 552 5.2.2 at RCPT (lmtpd: $(grep 'rcpt=<sized@example.org>' "$work/lmtpd.log" | grep -o 'SIZE=[0-9]* is above[^)]*' | head -1)), good@ sent"
    else
        fail "postfix SIZE= above the whole quota: sized=$ss good=$sg" "$pflog" "$work/lmtpd.log"
    fi
}

# pf_sqlite_big: Postfix delivers a 1 MiB message to the SQLite user sq@; lmtpd keeps its
# body as a file in mail.db.bodies/ (sqlite_body_files, default 256K), and the export round
# trip below reads it back through python's mailbox module with the other sq@ messages.
pf_sqlite_big() {
    local qid st before after
    mkmsg pf-sqlite-big sq@example.org
    { head -c 1048576 /dev/zero | tr '\0' q | fold -w 72; echo; } >>"$sent/pf-sqlite-big.msg"
    before=$(find "$mail/mail.db.bodies" -maxdepth 1 -type f 2>/dev/null | wc -l)
    sendmail -C "$pf/etc" -i -f sender@example.org -- sq@example.org <"$sent/pf-sqlite-big.msg"
    qid=$(qid_of "pf-sqlite-big@interop.test")
    st=$(pf_status "$qid" sq@example.org)
    after=$(find "$mail/mail.db.bodies" -maxdepth 1 -type f 2>/dev/null | wc -l)
    if [ "$st" = sent ] && [ "$after" = $((before + 1)) ]; then
        sq_count=$((sq_count + 1))
        pass "postfix 1 MiB message into SQLite: sent, body kept as one file in mail.db.bodies/ ($after there)"
    else
        fail "postfix 1 MiB message into SQLite: status=$st, body files $before -> $after" "$pflog" "$work/lmtpd.log"
    fi
}

# wait_new USER N: waits up to 30 s until USER's Maildir new/ holds N messages.
wait_new() {
    local i=0
    while [ "$(newcount "$1")" -lt "$2" ] && [ $i -lt 150 ]; do
        sleep 0.2
        i=$((i + 1))
        [ $((i % 25)) = 0 ] && postqueue -c "$pf/etc" -f
    done
    newcount "$1"
}

# Two lmtpd nodes on one private PostgreSQL database behind Postfix's list of LMTP next hops:
# a burst to pgu@ starts on node 1; node 1 is SIGKILLed part-way; Postfix goes on with node 2.
pf_postgres_nodes() {
    local pgbin pgd conn n i k t1 t2 rows distinct p1 p2
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ ! -x "$pgbin/initdb" ]; then
        skip "postfix + two postgres nodes (postgresql is not installed)"
        return
    fi
    pgd=$work/pg
    mkdir -p "$pgd/data"
    chown -R postgres "$pgd"
    runuser -u postgres -- "$pgbin/initdb" -D "$pgd/data" -U postgres --auth=trust -E UTF8 \
        >"$work/pg-initdb.log" 2>&1
    pg_ctl_bin=$pgbin/pg_ctl
    if ! runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgd/data" -w -l "$pgd/server.log" \
        -o "-k $pgd -p 5499 -c listen_addresses=" start >/dev/null 2>&1; then
        fail "postfix + two postgres nodes: the private PostgreSQL did not start" "$pgd/server.log"
        return
    fi
    psql -h "$pgd" -p 5499 -U postgres -qc "CREATE DATABASE mail" >/dev/null
    conn="host=$pgd port=5499 user=postgres dbname=mail"
    p1=$((port + 10))
    p2=$((port + 11))
    for k in 1 2; do
        mkdir -p "$work/pgnode$k/spool"
        chown "$RUN_USER:$RUN_GROUP" "$work/pgnode$k/spool"
        echo "pgu@example.org store=postgres" >"$work/pgnode$k/users"
        cat >"$work/pgnode$k/lmtpd.conf" <<EOF
user = $RUN_USER
group = $RUN_GROUP
listen = 127.0.0.1:$((port + 9 + k))
users = $work/pgnode$k/users
spool_dir = $work/pgnode$k/spool
retry_journal = $work/pgnode$k/spool/retry.db
hostname = node$k.interop.test
postgres = $conn
sieve =
log_level = info
EOF
        "$BIN" -c "$work/pgnode$k/lmtpd.conf" 2>"$work/pgnode$k/lmtpd.log" &
        pg_nodes="$pg_nodes $!"
    done
    set -- $pg_nodes
    n1=$1
    sleep 1
    printf 'pgu@example.org lmtp:[127.0.0.1]:%s, [127.0.0.1]:%s\n' "$p1" "$p2" \
        >"$pf/etc/transport"
    postconf -c "$pf/etc" -e "transport_maps = texthash:$pf/etc/transport"
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
    pgcount() { psql -h "$pgd" -p 5499 -U postgres -d mail -tAc "$1" 2>/dev/null; }
    pgsend() {
        for i in $(seq "$1" "$2"); do
            printf 'Subject: pg %d\nMessage-ID: <pg-%d@interop.test>\n\npostgres message %d\n' \
                "$i" "$i" "$i" | sendmail -C "$pf/etc" -i -f sender@example.org pgu@example.org
        done
    }
    pgwait() {
        i=0
        while [ "$(pgcount 'SELECT count(DISTINCT m.message_id) FROM deliveries d JOIN messages m ON m.id = d.message_id')" -lt "$1" ] 2>/dev/null && [ $i -lt 300 ]; do
            sleep 0.2
            i=$((i + 1))
            [ $((i % 25)) = 0 ] && postqueue -c "$pf/etc" -f
        done
    }
    # The first half goes to node 1 (first in the list); then node 1 is killed and the
    # second half must go to node 2.
    pgsend 1 30
    pgwait 30
    kill -KILL "$n1"
    pgsend 31 60
    pgwait 60
    rows=$(pgcount 'SELECT count(*) FROM deliveries')
    distinct=$(pgcount 'SELECT count(DISTINCT m.message_id) FROM deliveries d JOIN messages m ON m.id = d.message_id')
    t1=$(grep -c 'to=<pgu@example.org>.*status=250' "$work/pgnode1/lmtpd.log")
    t2=$(grep -c 'to=<pgu@example.org>.*status=250' "$work/pgnode2/lmtpd.log")
    if [ "$distinct" = 60 ] && [ "$t1" -gt 0 ] && [ "$t2" -gt 0 ] && [ $((rows - distinct)) -le 4 ] &&
        [ "$(grep -c 'to=<pgu@example.org>.*status=sent' "$pflog")" -ge 60 ]; then
        pass "postfix + two postgres nodes: 60 of 60 messages in the database, $t1 through node 1 until its SIGKILL, $t2 through node 2 (Postfix's next hop list), $((rows - distinct)) delivered again after the kill"
    else
        fail "postfix + two postgres nodes: $distinct distinct of 60 ($rows rows), node 1 $t1, node 2 $t2" "$pflog" "$work/pgnode1/lmtpd.log" "$work/pgnode2/lmtpd.log"
    fi
    postconf -c "$pf/etc" -X transport_maps
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
}

# An alias Postfix expands (alias@ -> good@): lmtpd offers DSN, so Postfix sends the alias as
# ORCPT, and the copy carries it as X-Original-To.
pf_alias_orcpt() {
    local qid f
    echo "alias@example.org good@example.org" >"$pf/etc/virtual"
    postconf -c "$pf/etc" -e "virtual_alias_maps = texthash:$pf/etc/virtual"
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
    mkmsg pf-alias alias@example.org
    sendmail -C "$pf/etc" -i -f sender@example.org -- alias@example.org <"$sent/pf-alias.msg"
    qid=$(qid_of "pf-alias@interop.test")
    f=""
    if [ "$(pf_status "$qid" good@example.org)" = sent ]; then
        f=$(grep -l 'Message-ID: <pf-alias@interop.test>' "$mail/example.org/good/Maildir/new/"* 2>/dev/null | head -1)
    fi
    if [ -n "$f" ] && grep -q '^X-Original-To: alias@example.org$' "$f" &&
        grep "$qid: to=<good@example.org>" "$pflog" | grep -q 'orig_to=<alias@example.org>'; then
        pass "postfix alias + DSN: alias@ expanded to good@ by Postfix arrives with X-Original-To: alias@example.org (ORCPT)"
    else
        fail "postfix alias + DSN: no X-Original-To: alias@example.org in good's copy (${f:-not delivered})" "$pflog" "$work/lmtpd.log"
    fi
    postconf -c "$pf/etc" -X virtual_alias_maps
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
}

# vac_replies: vac's vacation replies in sender's INBOX.
vac_replies() {
    grep -l '^Subject: Out of office' "$mail/example.org/sender/Maildir/new/"* 2>/dev/null | wc -l | tr -d ' '
}

# Sieve redirect and vacation with the private Postfix as the submission path.
pf_sieve_sending() {
    local qid f1 r1 w1 n replies suppressed i
    # redirect and redirect :copy, one transaction: fwd gets both through Postfix.
    mkmsg pf-redir rd@example.org
    sendmail -C "$pf/etc" -i -f sender@example.org -- rd@example.org fw@example.org \
        <"$sent/pf-redir.msg"
    f1=$(wait_new fwd 2)
    r1=$(newcount rd)
    w1=$(newcount fw)
    n=$(grep -c 'to=<fwd@example.org>.*status=sent' "$pflog")
    if [ "$f1" = 2 ] && [ "$r1" = 0 ] && [ "$w1" = 1 ] && [ "$n" = 2 ] &&
        grep -l 'Delivered-To: rd@example.org' "$mail/example.org/fwd/Maildir/new/"* >/dev/null 2>&1 &&
        grep -q 'sieve: .*redirected to <fwd@example.org>' "$work/lmtpd.log"; then
        pass "postfix + sieve redirect: rd's and fw's redirects reached fwd through Postfix (2 x status=sent), rd kept nothing, fw kept its :copy"
    else
        fail "postfix + sieve redirect: fwd=$f1 rd=$r1 fw=$w1 sent-to-fwd=$n (want 2/0/1/2)" "$pflog" "$work/lmtpd.log"
    fi
    # vacation: one reply to sender, none for the second message, a list message or a bounce.
    mkmsg pf-vac1 vac@example.org
    sendmail -C "$pf/etc" -i -f sender@example.org -- vac@example.org <"$sent/pf-vac1.msg"
    # (sender's INBOX also holds Postfix's bounces from the earlier rounds.)
    i=0
    while [ "$(vac_replies)" = 0 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
    sed 's/pf-vac1@/pf-vac2@/' "$sent/pf-vac1.msg" >"$sent/pf-vac2.msg"
    sendmail -C "$pf/etc" -i -f sender@example.org -- vac@example.org <"$sent/pf-vac2.msg"
    { echo "List-Id: <dev.lists.example.org>"; sed 's/pf-vac1@/pf-vac3@/' "$sent/pf-vac1.msg"; } \
        >"$sent/pf-vac3.msg"
    sendmail -C "$pf/etc" -i -f sender@example.org -- vac@example.org <"$sent/pf-vac3.msg"
    sed 's/pf-vac1@/pf-vac4@/' "$sent/pf-vac1.msg" >"$sent/pf-vac4.msg"
    sendmail -C "$pf/etc" -i -f '<>' -- vac@example.org <"$sent/pf-vac4.msg"
    wait_new vac 4 >/dev/null
    sleep 2
    replies=$(vac_replies)
    suppressed=$(grep -c 'vacation: no reply\|answered within the last' "$work/lmtpd.log")
    if [ "$replies" = 1 ] && [ "$(newcount vac)" = 4 ] && [ "$suppressed" -ge 3 ] &&
        grep -q 'from=<>' "$pflog" &&
        grep -l '^Subject: Out of office' "$mail/example.org/sender/Maildir/new/"* |
        xargs grep -q '^In-Reply-To: <pf-vac1@interop.test>'; then
        pass "postfix + sieve vacation: one reply (from <>, In-Reply-To the first message) reached the sender through Postfix; none for the second message, the list message or the bounce"
    else
        fail "postfix + sieve vacation: $replies replies (want 1), vac has $(newcount vac) of 4, $suppressed suppressed (want 3)" "$pflog" "$work/lmtpd.log"
    fi
    # A sendmail that fails: the redirected message lands in rd's INBOX, Postfix sees 250.
    sed -i "s|^sendmail = .*|sendmail = /bin/false|" "$work/lmtpd.conf"
    kill -HUP "$lmtpd_pid"
    sleep 1
    mkmsg pf-redir-fail rd@example.org
    sendmail -C "$pf/etc" -i -f sender@example.org -- rd@example.org <"$sent/pf-redir-fail.msg"
    qid=$(qid_of "pf-redir-fail@interop.test")
    if [ "$(pf_status "$qid" rd@example.org)" = sent ] && [ "$(wait_new rd 1)" = 1 ] &&
        grep -q 'redirect to <fwd@example.org> failed' "$work/lmtpd.log"; then
        pass "postfix + sieve redirect with a failing sendmail: the message is in rd's INBOX and Postfix got 250 (status=sent)"
    else
        fail "postfix + sieve redirect with a failing sendmail: rd=$(newcount rd)" "$pflog" "$work/lmtpd.log"
    fi
    sed -i "s|^sendmail = .*|sendmail = $work/pf-sendmail|" "$work/lmtpd.conf"
    kill -HUP "$lmtpd_pid"
    sleep 1
}

# System accounts: a throw-away Unix account (lmtpacct), an alias to it in Postfix's own
# aliases file, and a second lmtpd with accounts = passwd behind mailbox_transport. Postfix's
# local(8) expands alias-acct@interop.test to lmtpacct@interop.test and hands the mailbox
# delivery to lmtpd over LMTP; lmtpd's account helper writes the mbox (in a private
# /var/mail: root:mail 2775) as lmtpacct, who then reads it with GNU mailutils' mail.
pf_accounts() {
    local a=$work/acct qid rqid st rst line mbox=$work/varmail/$acct_name owner i why=""
    local asock=$work/acct/run/lmtp.sock
    if getent passwd "$acct_name" >/dev/null; then
        # Left by a run that was killed before its cleanup (ours by its comment field).
        if [ "$(getent passwd "$acct_name" | cut -d: -f5)" = "lmtpd interop throw-away" ]; then
            userdel "$acct_name" >/dev/null 2>&1
        else
            fail "postfix + system account: an account $acct_name exists and is not the suite's"
            return
        fi
    fi
    mkdir -p "$a/run" "$a/spool"
    if ! useradd -c "lmtpd interop throw-away" -d "$a/home" -M -U -s /usr/sbin/nologin \
        -K UID_MIN=1000 -K UID_MAX=59999 "$acct_name" >"$a/useradd.log" 2>&1; then
        fail "postfix + system account: useradd $acct_name failed" "$a/useradd.log"
        return
    fi
    acct_added=1
    install -d -o "$acct_name" -g "$acct_name" -m 0700 "$a/home"
    # The account's own Sieve script in Dovecot's ManageSieve layout, in a 0700 home with
    # 0600 files, so lmtpd (nobody) cannot read it: only the helper, as lmtpacct, can. The
    # active script includes a personal one that rejects pf-acct-rej.
    install -d -o "$acct_name" -g "$acct_name" -m 0700 "$a/home/sieve"
    printf 'require "include";\ninclude :personal "policy";\n' >"$a/home/sieve/main.sieve"
    printf 'require "reject";\nif header :contains "subject" "pf-acct-rej" {\n  reject "lmtpacct does not want this";\n}\n' \
        >"$a/home/sieve/policy.sieve"
    chown "$acct_name:$acct_name" "$a/home/sieve/main.sieve" "$a/home/sieve/policy.sieve"
    chmod 0600 "$a/home/sieve/main.sieve" "$a/home/sieve/policy.sieve"
    ln -s sieve/main.sieve "$a/home/.dovecot.sieve"
    chown -h "$acct_name:$acct_name" "$a/home/.dovecot.sieve"
    install -d -o root -g mail -m 2775 "$work/varmail"
    chown "$RUN_USER:$RUN_GROUP" "$a/run" "$a/spool"
    : >"$a/users"
    cat >"$a/lmtpd.conf" <<EOF
user = $RUN_USER
group = $RUN_GROUP
listen = unix:$asock
socket_mode = 0666
users = $a/users
spool_dir = $a/spool
retry_journal = $a/spool/retry.db
hostname = host.interop.test
accounts = passwd
local_domains = interop.test
account_store = mbox
account_mbox = $work/varmail/%n
account_mail_group = mail
sieve =
log_level = info
EOF
    "$BIN" -c "$a/lmtpd.conf" 2>"$a/lmtpd.log" &
    acct_pid=$!
    i=0
    while [ ! -S "$asock" ] && [ $i -lt 100 ] && kill -0 "$acct_pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ ! -S "$asock" ]; then
        fail "postfix + system account: lmtpd with accounts = passwd did not start" "$a/lmtpd.log"
        return
    fi
    printf 'alias-acct: %s\n' "$acct_name" >"$pf/etc/aliases"
    postalias -c "$pf/etc" "hash:$pf/etc/aliases"
    postconf -c "$pf/etc" -e "mydestination = interop.test" "alias_maps = hash:$pf/etc/aliases" \
        "alias_database = hash:$pf/etc/aliases" "local_transport = local" \
        "mailbox_transport = lmtp:unix:$asock"
    postconf -c "$pf/etc" -M "local/unix=local unix - n n - - local"
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
    sleep 1
    mkmsg pf-acct alias-acct@interop.test
    sendmail -C "$pf/etc" -i -f sender@example.org -- alias-acct@interop.test <"$sent/pf-acct.msg"
    # The rejected one is not in $sent (check.py compares every mbox message with $sent).
    mkmsg pf-acct-rej alias-acct@interop.test
    mv "$sent/pf-acct-rej.msg" "$a/pf-acct-rej.msg"
    sendmail -C "$pf/etc" -i -f sender@example.org -- alias-acct@interop.test <"$a/pf-acct-rej.msg"
    qid=$(qid_of "pf-acct@interop.test")
    rqid=$(qid_of "pf-acct-rej@interop.test")
    rst=$(pf_status "$rqid" "$acct_name@interop.test")
    st=$(pf_status "$qid" "$acct_name@interop.test")
    line=$(grep "$qid: to=<$acct_name@interop.test>" "$pflog" | grep 'status=sent' | head -1)
    i=0
    while ! grep -q '^X-Interop-Id: pf-acct$' "$mbox" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    owner=$(stat -c '%U %a' "$mbox" 2>/dev/null)
    # As the account, with a real MUA: mail -H lists the headers of the mbox and exits.
    if [ -x /usr/bin/mail.mailutils ]; then
        timeout 30 su -s /bin/sh "$acct_name" \
            -c "cd / && MAIL='$mbox' /usr/bin/mail.mailutils -H -f '$mbox'" </dev/null \
            >"$a/mail-H.out" 2>&1
    else
        echo "mail.mailutils is not installed (mailutils)" >"$a/mail-H.out"
    fi
    [ -n "$qid" ] || why="$why, not picked up"
    [ "$st" = sent ] || why="$why, status=$st"
    grep "$qid: passing <$acct_name@interop.test> to transport=lmtp" "$pflog" |
        grep -q 'postfix/local\[' || why="$why, local(8) did not pass $acct_name@ to lmtp"
    case $line in
    *" postfix/lmtp["*"orig_to=<alias-acct@interop.test>, relay="*"[$asock]"*) ;;
    *) why="$why, no lmtp line for $acct_name@ (orig_to=<alias-acct@>) via $asock" ;;
    esac
    grep "to=<$acct_name@interop.test> user=$acct_name@interop.test store=mbox" "$a/lmtpd.log" |
        grep -q 'status=250' || why="$why, no 250 for $acct_name@ in lmtpd's log"
    [ "$owner" = "$acct_name 600" ] || why="$why, mbox '${owner:-missing}' (want $acct_name 600)"
    grep -q '^X-Interop-Id: pf-acct$' "$mbox" 2>/dev/null || why="$why, not in the mbox"
    python3 "$here/check.py" mbox "$sent" "$mbox=1" >"$a/py-mbox.out" 2>&1 ||
        why="$why, python mailbox.mbox"
    grep -q 'interop pf-acct' "$a/mail-H.out" || why="$why, mail -H does not list it"
    [ "$rst" = bounced ] || why="$why, pf-acct-rej status=$rst (want bounced by $acct_name's script)"
    grep "$rqid: to=<$acct_name@interop.test>" "$pflog" |
        grep -q '550 5.7.1 lmtpacct does not want this' ||
        why="$why, Postfix did not log the account script's 550 5.7.1 reason"
    ! grep -q '^X-Interop-Id: pf-acct-rej$' "$mbox" 2>/dev/null ||
        why="$why, the rejected message is in the mbox"
    if [ -z "$why" ]; then
        pass "postfix + system account: local(8) expanded alias-acct@ to $acct_name@ and passed it to lmtpd (accounts = passwd) over lmtp:unix: (status=sent); the mbox is $acct_name's, 0600, and mail -H run as $acct_name lists '$(grep -o 'interop pf-acct' "$a/mail-H.out" | head -1)'; $acct_name's own ~/.dovecot.sieve (0600 in a 0700 home, read as $acct_name, include :personal) rejected pf-acct-rej: Postfix bounced it with 550 5.7.1"
    else
        fail "postfix + system account:${why#,}" "$pflog" "$a/lmtpd.log" "$a/mail-H.out" \
            "$a/py-mbox.out"
    fi
    kill -TERM "$acct_pid" 2>/dev/null
    wait "$acct_pid" 2>/dev/null
    acct_pid=""
    postconf -c "$pf/etc" -e "mydestination =" "alias_maps =" "alias_database =" \
        "local_transport = error:5.1.1 no local delivery in the interop test"
    postconf -c "$pf/etc" -X mailbox_transport
    postconf -c "$pf/etc" -MX local/unix
    postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
}

if [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/sendmail ]; then
    export PATH=/usr/sbin:$PATH
    # lmtpd submits Sieve's redirects and vacation replies as nobody through this private
    # instance's sendmail (pf-sendmail: sendmail -C $pf/etc); Postfix lets a user other than
    # root name a configuration directory only when the default main.cf lists it. Restored
    # by cleanup.
    if [ -f /etc/postfix/main.cf ]; then
        acd_old=$(postconf -h alternate_config_directories 2>/dev/null)
        postconf -e "alternate_config_directories = ${acd_old:+$acd_old, }$pf/etc" && acd_set=1
    fi
    if postfix -c "$pf/etc" start >"$work/postfix-start.log" 2>&1; then
        pf_started=1
        pf_round unix "lmtp:unix:" "[$sock]"
        postconf -c "$pf/etc" -e "virtual_transport = lmtp:inet:127.0.0.1:$port"
        postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
        sleep 1
        pf_round inet "lmtp:inet:127.0.0.1:$port" "relay=127.0.0.1[127.0.0.1]:$port,"
        pf_sized
        pf_retry
        pf_sqlite_big

        # The same over STARTTLS: Postfix with lmtp_tls_security_level = encrypt (TLS or no
        # delivery; the certificate is not verified at this level).
        postconf -c "$pf/etc" -e "lmtp_tls_security_level = encrypt" "lmtp_tls_loglevel = 1"
        postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
        sleep 1
        mkmsg pf-tls good@example.org
        sendmail -C "$pf/etc" -i -f sender@example.org -- good@example.org <"$sent/pf-tls.msg"
        qid=$(qid_of "pf-tls@interop.test")
        st=$(pf_status "$qid" good@example.org)
        if [ "$st" = sent ] &&
            grep -q 'TLS connection established to 127.0.0.1\[127.0.0.1\]:'"$port"': TLSv1' "$pflog" &&
            grep -q 'STARTTLS: TLSv1_' "$work/lmtpd.log"; then
            pass "postfix over STARTTLS (lmtp_tls_security_level = encrypt): status=sent, $(grep -o 'TLS connection established to 127.0.0.1[^:]*:[0-9]*: [^ ]*' "$pflog" | head -1 | awk '{ print $NF }') in Postfix's log, lmtpd logged $(grep -o 'STARTTLS: [^ ]* [^ ]*' "$work/lmtpd.log" | head -1)"
        else
            fail "postfix over STARTTLS: status=$st" "$pflog" "$work/lmtpd.log"
        fi
        postconf -c "$pf/etc" -e "lmtp_tls_security_level = none"
        postfix -c "$pf/etc" reload >>"$work/postfix-start.log" 2>&1
        sleep 1

        # A burst of 200 through Postfix's LMTP connection cache (over TCP). They are
        # queued while Postfix is stopped (sendmail leaves them in the maildrop), so at start
        # the queue manager has all 200 at once and the lmtp client reuses its connections.
        postfix -c "$pf/etc" stop >>"$work/postfix-start.log" 2>&1
        for n in $(seq 1 200); do
            printf 'Subject: burst %d\nX-Burst: %d\n\nburst message %d\n' "$n" "$n" "$n" |
                sendmail -C "$pf/etc" -i -f sender@example.org burst@example.org 2>>"$work/sendmail.err"
        done
        postfix -c "$pf/etc" start >>"$work/postfix-start.log" 2>&1
        postqueue -c "$pf/etc" -f
        i=0
        while [ "$(newcount burst)" -lt 200 ] && [ $i -lt 120 ]; do
            sleep 0.5
            i=$((i + 1))
            [ $((i % 20)) = 0 ] && postqueue -c "$pf/etc" -f
        done
        n=$(newcount burst)
        sent200=$(grep -c 'to=<burst@example.org>.*status=sent' "$pflog")
        reused=$(grep 'to=<burst@example.org>.*status=sent' "$pflog" | grep -c 'conn_use=')
        if [ "$n" = 200 ] && [ "$sent200" = 200 ] && [ "$reused" -gt 0 ]; then
            pass "postfix burst: 200 of 200 on disk, $reused deliveries over a cached connection (conn_use=)"
        else
            fail "postfix burst: $n of 200 on disk, $sent200 status=sent, $reused over a cached connection" "$pflog"
        fi

        # Sieve through Postfix: one message for sv+lists (user script: tag folder), svrej
        # (reject) and good (no script) in one LMTP transaction; then a spam-flagged one
        # for sv (the global script).
        mkmsg pf-sieve sv+lists@example.org
        sendmail -C "$pf/etc" -i -f sender@example.org -- sv+lists@example.org \
            svrej@example.org good@example.org <"$sent/pf-sieve.msg"
        { echo "X-Spam-Flag: YES"; cat "$sent/pf-sieve.msg"; } | sed 's/pf-sieve@/pf-spam@/' \
            >"$sent/pf-spam.msg"
        sendmail -C "$pf/etc" -i -f sender@example.org -- sv@example.org <"$sent/pf-spam.msg"
        qid=$(qid_of "pf-sieve@interop.test")
        qspam=$(qid_of "pf-spam@interop.test")
        ss=$(pf_status "$qid" sv+lists@example.org)
        sr=$(pf_status "$qid" svrej@example.org)
        sg=$(pf_status "$qid" good@example.org)
        sj=$(pf_status "$qspam" sv@example.org)
        if [ "$ss" = sent ] && [ "$sr" = bounced ] && [ "$sg" = sent ] && [ "$sj" = sent ] &&
            grep "$qid: to=<svrej@example.org>" "$pflog" | grep -q '550 5.7.1 I do not accept mail' &&
            ! grep "$qid: to=<sv+lists@example.org>" "$pflog" | grep -q '5.7.1'; then
            pass "postfix + sieve: reject gives svrej 550 5.7.1 (bounced), sv+lists and good sent in the same transaction"
        else
            fail "postfix + sieve: sv+lists=$ss svrej=$sr good=$sg spam=$sj (want sent/bounced/sent/sent)" "$pflog" "$work/lmtpd.log"
        fi
        pf_alias_orcpt
        pf_sieve_sending
        pf_postgres_nodes
        pf_accounts
        postfix -c "$pf/etc" stop >>"$work/postfix-start.log" 2>&1
        pf_started=""
    else
        # Postfix reports a fatal start-up error only on a terminal (or to syslog).
        command -v script >/dev/null 2>&1 &&
            script -qc "postfix -c $pf/etc check" /dev/null >>"$work/postfix-start.log" 2>&1
        fail "postfix -c $pf/etc start" "$work/postfix-start.log" "$pflog"
        skip "postfix lmtp:inet: (no private Postfix)"
        skip "postfix burst (no private Postfix)"
        skip "postfix + system account (no private Postfix)"
    fi
else
    fail "postfix is not installed (apt-get install postfix failed)"
fi

# ---------------------------------------------------------------- 2. Exim
# Exim conflicts with Postfix as a Debian package: run it from the unpacked .debs, with
# its own configuration and spool. The binary resolves its compiled-in user Debian-exim
# at start-up, so it runs in a private mount namespace where /etc/passwd and /etc/group
# (bind-mounted copies) map Debian-exim to nobody.
ex=$work/exim
exim_skip=""
mkdir -p "$ex/deb" "$ex/root" "$ex/spool" "$ex/log"
if ! command -v unshare >/dev/null 2>&1; then
    exim_skip="unshare(1) is missing"
elif ! (cd "$ex/deb" && { apt-get download exim4-daemon-light exim4-base libidn12 >"$ex/download.log" 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get download exim4-daemon-light exim4-base libidn12 >>"$ex/download.log" 2>&1; }; }); then
    exim_skip="apt-get download exim4-daemon-light exim4-base libidn12 failed"
else
    for d in "$ex"/deb/*.deb; do dpkg -x "$d" "$ex/root"; done
    # Libraries from the downloaded packages (libidn12) are found through a private
    # ld.so.cache (bind-mounted like passwd; LD_LIBRARY_PATH would not survive Exim's re-exec).
    printf 'include /etc/ld.so.conf\n%s\n' "$ex/root/usr/lib/x86_64-linux-gnu" >"$ex/ld.so.conf"
    ldconfig -X -C "$ex/ld.so.cache" -f "$ex/ld.so.conf" 2>"$ex/ldconfig.log"
    cp /etc/passwd "$ex/passwd"
    cp /etc/group "$ex/group"
    echo "Debian-exim:x:$(id -u nobody):$(id -g nobody)::/nonexistent:/usr/sbin/nologin" >>"$ex/passwd"
    echo "Debian-exim:x:$(id -g nobody):" >>"$ex/group"
    chown -R nobody:"$RUN_GROUP" "$ex/spool" "$ex/log"
    cat >"$ex/exim.conf" <<EOF
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = $ex/spool
log_file_path = $ex/log/%slog
exim_path = $ex/root/usr/sbin/exim4
primary_hostname = exim.interop.test
qualify_domain = interop.test
keep_environment =
daemon_smtp_ports =
begin routers
lmtpd_tcp:
  driver = accept
  domains = example.org
  local_parts = chunk
  transport = lmtpd_smtp
lmtpd:
  driver = accept
  domains = example.org
  transport = lmtpd_lmtp
begin transports
lmtpd_lmtp:
  driver = lmtp
  socket = $sock
  batch_max = 10
  user = Debian-exim
# The smtp transport speaking LMTP over TCP: it uses BDAT whenever the server offers
# CHUNKING (hosts_try_chunking defaults to *).
lmtpd_smtp:
  driver = smtp
  protocol = lmtp
  hosts = 127.0.0.1
  port = $port
  hosts_override
  allow_localhost
  hosts_avoid_tls = *
  user = Debian-exim
begin retry
* * F,1h,10m
EOF
    if ! unshare -m true 2>/dev/null; then
        exim_skip="cannot create a mount namespace (unshare -m) for the Debian-exim user"
    fi
fi
exim_run() {
    unshare -m sh -c 'mount --bind "$1/passwd" /etc/passwd && mount --bind "$1/group" /etc/group &&
        mount --bind "$1/ld.so.cache" /etc/ld.so.cache && d=$1 && shift && exec "$d/root/usr/sbin/exim4" "$@"' \
        sh "$ex" "$@"
}
if [ -z "$exim_skip" ]; then
    if ! exim_run -C "$ex/exim.conf" -bV >"$ex/bV.log" 2>&1; then
        exim_skip="exim4 -bV failed: $(head -1 "$ex/bV.log")"
    fi
fi
if [ -n "$exim_skip" ]; then
    skip "exim lmtp transport, batch_max = 10 ($exim_skip)"
else
    mkmsg exim good@example.org
    g0=$(newcount good)
    m0=$(mboxcount "$mail/mbox/mb")
    # -odi: deliver before returning; -oi: a lone dot is content. Exim logs "exim user lost
    # privilege for using -C option" (an untrusted configuration): harmless here, the lmtp
    # transport runs as Debian-exim (nobody) either way.
    exim_run -C "$ex/exim.conf" -odi -oi -f exim@example.org good@example.org mb@example.org \
        unknown@example.org <"$sent/exim.msg" >"$ex/inject.log" 2>&1
    i=0
    while ! grep -q 'Completed' "$ex/log/mainlog" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    sleep 0.5
    g1=$(newcount good)
    m1=$(mboxcount "$mail/mbox/mb")
    # One LMTP transaction for both good recipients: same lmtpd transaction id.
    tg=$(grep 'to=<good@example.org>' "$work/lmtpd.log" | grep 'from=<exim@example.org>' | grep -o ' id=[^ ]*' | head -1)
    tm=$(grep 'to=<mb@example.org>' "$work/lmtpd.log" | grep 'from=<exim@example.org>' | grep -o ' id=[^ ]*' | head -1)
    if [ $((g1 - g0)) = 1 ] && [ $((m1 - m0)) = 1 ] && [ -n "$tg" ] && [ "$tg" = "$tm" ] &&
        grep -q '=> good <good@example.org> .*T=lmtpd_lmtp' "$ex/log/mainlog" &&
        grep -q -- '-> mb <mb@example.org> .*T=lmtpd_lmtp' "$ex/log/mainlog" &&
        grep -q '\*\* unknown@example.org.*550 5.1.1' "$ex/log/mainlog"; then
        pass "exim lmtp transport (batch_max = 10): good (maildir) and mb (mbox) in one transaction,$tg; unknown bounced 550 5.1.1"
    else
        fail "exim: good +$((g1 - g0)), mb +$((m1 - m0)), ids '$tg' '$tm'" "$ex/log/mainlog" "$ex/inject.log" "$ex/log/paniclog"
    fi
    # Exim's smtp transport with protocol = lmtp over TCP sends the message with BDAT: its
    # debug output shows the chunk, its log marks the delivery K (CHUNKING).
    mkmsg exim-bdat chunk@example.org
    c0=$(newcount chunk)
    exim_run -C "$ex/exim.conf" -d+transport -odi -oi -f exim@example.org chunk@example.org \
        <"$sent/exim-bdat.msg" >"$ex/bdat-debug.log" 2>&1
    i=0
    while [ "$(newcount chunk)" = "$c0" ] && [ $i -lt 100 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    if [ "$(newcount chunk)" = $((c0 + 1)) ] && grep -Eq 'SMTP[>|+]*> BDAT [0-9]+ LAST' "$ex/bdat-debug.log" &&
        grep -E '=> chunk@example.org .*T=lmtpd_smtp.* K ' "$ex/log/mainlog" >/dev/null; then
        pass "exim smtp transport, protocol = lmtp over TCP: '$(grep -Eo 'BDAT [0-9]+ LAST' "$ex/bdat-debug.log" | head -1)' in Exim's debug output, delivery logged K (CHUNKING), the copy on disk"
    else
        fail "exim BDAT: chunk +$(($(newcount chunk) - c0))" "$ex/bdat-debug.log" "$ex/log/mainlog" "$work/lmtpd.log"
    fi
fi

# ---------------------------------------------------------------- 3. swaks, smtp-source
swaks_send() { # ID SERVER-ARGS... -- TO
    local id=$1 to
    shift
    to=${*: -1}
    mkmsg "$id" "${to%%,*}"
    # swaks ends the data with CRLF . CRLF itself: send the file without its last newline.
    head -c -1 "$sent/$id.msg" >"$work/$id.swaks"
    swaks --protocol LMTP "${@:1:$#-1}" --from sender@example.net --to "$to" \
        --data "@$work/$id.swaks" >"$work/swaks-$id.out" 2>&1
}
if command -v swaks >/dev/null 2>&1; then
    swaks_send swaks-maildir --socket "$sock" box@example.org,box+lists@example.org,nobody@example.org
    if [ "$(grep -c '<-  250 2.0.0' "$work/swaks-swaks-maildir.out")" = 2 ] &&
        grep -q '<\*\* 550 5.1.1' "$work/swaks-swaks-maildir.out" &&
        [ "$(newcount box)" = 1 ] && [ "$(count "$mail/example.org/box/Maildir/.lists/new")" = 1 ]; then
        pass "swaks maildir (Unix socket): 250 box, 250 box+lists (into .lists), 550 5.1.1 unknown"
    else
        fail "swaks maildir" "$work/swaks-swaks-maildir.out"
    fi
    m0=$(mboxcount "$mail/mbox/mb")
    swaks_send swaks-mbox --server 127.0.0.1 --port "$port" --pipeline mb@example.org,mb+x@example.org
    if [ "$(grep -c '<-  250 2.0.0' "$work/swaks-swaks-mbox.out")" = 2 ] &&
        grep -q 'PIPELINING' "$work/swaks-swaks-mbox.out" &&
        [ "$(mboxcount "$mail/mbox/mb")" = $((m0 + 2)) ]; then
        pass "swaks mbox (TCP, --pipeline): two 250 after the dot, two messages appended"
    else
        fail "swaks mbox pipelined" "$work/swaks-swaks-mbox.out"
    fi
    swaks_send swaks-sqlite --socket "$sock" --pipeline sq@example.org,sq+archive@example.org
    if [ "$(grep -c '<-  250 2.0.0' "$work/swaks-swaks-sqlite.out")" = 2 ]; then
        pass "swaks sqlite (Unix socket, --pipeline): 250 sq, 250 sq+archive"
    else
        fail "swaks sqlite" "$work/swaks-swaks-sqlite.out"
    fi
    # STARTTLS over TCP; the LHLO after the handshake no longer offers it, and the Unix
    # socket never does.
    swaks_send swaks-tls --server 127.0.0.1 --port "$port" --tls tls@example.org
    swaks --protocol LMTP --socket "$sock" --quit-after LHLO >"$work/swaks-unix-lhlo.out" 2>&1
    if grep -q '=== TLS started with cipher TLSv1' "$work/swaks-swaks-tls.out" &&
        grep -q '<~  250 2.0.0' "$work/swaks-swaks-tls.out" &&
        ! grep -q '<~  250.STARTTLS' "$work/swaks-swaks-tls.out" &&
        grep -q '<-  250.STARTTLS' "$work/swaks-swaks-tls.out" &&
        ! grep -q 'STARTTLS' "$work/swaks-unix-lhlo.out"; then
        pass "swaks --tls (TCP): $(grep -o 'TLS started with cipher [^ ]*' "$work/swaks-swaks-tls.out"), 250 after the dot inside TLS; STARTTLS offered on TCP only and not again after the handshake"
    else
        fail "swaks --tls" "$work/swaks-swaks-tls.out" "$work/swaks-unix-lhlo.out"
    fi
else
    fail "swaks is not installed"
fi

if [ -x /usr/sbin/smtp-source ]; then
    start=$(date +%s.%N)
    timeout 300 /usr/sbin/smtp-source -L -s 8 -m 4000 -l 2048 -S "interop smtp-source" \
        -f sender@example.net -t load@example.org "unix:$sock" >"$work/smtp-source.out" 2>&1
    rc=$?
    end=$(date +%s.%N)
    n=$(newcount load)
    rate=$(echo "$start $end $n" | awk '{ if ($2 > $1) printf "%.0f", $3 / ($2 - $1); else print "?" }')
    if [ $rc = 0 ] && [ "$n" = 4000 ]; then
        pass "smtp-source -L -s 8 -m 4000: 4000 messages on disk ($rate deliveries/s)"
    else
        fail "smtp-source -L: rc=$rc, $n of 4000 on disk" "$work/smtp-source.out"
    fi
else
    fail "smtp-source is not installed"
fi

# 100 sessions at once with the default workers (issue 12: 16 workers and a queue of 16
# answered every connection past the 32nd with 421).
if [ -x /usr/sbin/smtp-source ]; then
    timeout 300 /usr/sbin/smtp-source -L -s 100 -m 2000 -l 4096 -S "interop 100 sessions" \
        -f sender@example.net -t many@example.org "unix:$sock" >"$work/smtp-source-100.out" 2>&1
    rc=$?
    n=$(newcount many)
    refused=$(grep -c '421' "$work/smtp-source-100.out")
    if [ $rc = 0 ] && [ "$n" = 2000 ] && [ "$refused" = 0 ]; then
        pass "smtp-source -L -s 100 -m 2000 (default workers): 2000 on disk, no 421"
    else
        fail "smtp-source -s 100: rc=$rc, $n of 2000 on disk, $refused lines with 421" \
            "$work/smtp-source-100.out" "$work/lmtpd.log"
    fi
fi

# A real Prometheus server scrapes /metrics and sees what was delivered.
mport=$(sed -n 's/^metrics = 127.0.0.1://p' "$work/lmtpd.conf")
if command -v prometheus >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
    pp=$((port + 2))
    mkdir -p "$work/prom"
    cat >"$work/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: lmtpd
    static_configs:
      - targets: ['127.0.0.1:$mport']
EOF
    prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
        --web.listen-address="127.0.0.1:$pp" >"$work/prom/log" 2>&1 &
    prom_pid=$!
    q() { curl -fsS "http://127.0.0.1:$pp/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
        sed -n 's/.*"value":\[[^,]*,"\([^"]*\)".*/\1/p'; }
    want=$(($(newcount many) + $(newcount load)))
    got=""
    i=0
    while [ $i -lt 60 ]; do
        got=$(q 'sum(lmtpd_deliveries_total{store="maildir",status="2.0.0"})')
        [ -n "$got" ] && [ "$got" -ge "$want" ] 2>/dev/null && break
        sleep 0.5
        i=$((i + 1))
    done
    up=$(q 'up{job="lmtpd"}')
    refused=$(q 'sum(lmtpd_sessions_refused_total)')
    kill "$prom_pid" 2>/dev/null
    wait "$prom_pid" 2>/dev/null
    if [ "$up" = 1 ] && [ -n "$got" ] && [ "$got" -ge "$want" ] 2>/dev/null && [ "$refused" = 0 ]; then
        pass "prometheus scraped /metrics: up=1, $got maildir deliveries (>= $want on disk), 0 refused"
    else
        fail "prometheus scrape: up=$up deliveries=$got (want >= $want) refused=$refused" \
            "$work/prom/log"
    fi
else
    skip "prometheus scrape (prometheus or curl not installed)"
fi

# ---------------------------------------------------------------- 4. readers
# The server stops first: everything below reads finished files.
kill -TERM "$lmtpd_pid" 2>/dev/null
wait "$lmtpd_pid" 2>/dev/null
lmtpd_pid=""
if [ ! -e "$sock" ] && [ "$(find "$mail" -path "$mail/*/tmp/*" -type f | wc -l)" = 0 ]; then
    pass "lmtpd SIGTERM: exited, removed its socket, nothing left in any tmp/"
else
    fail "lmtpd shutdown: socket or tmp/ files left" "$work/lmtpd.log"
fi

md() { echo "$mail/example.org/$1/Maildir=$2"; }
specs=()
[ -d "$mail/example.org/good" ] && specs+=("$(md good "$(count "$mail/example.org/good/Maildir/new")")")
for u in burst box load sender; do
    [ -d "$mail/example.org/$u" ] && specs+=("$(md $u "$(find "$mail/example.org/$u/Maildir" -path '*/new/*' -type f | wc -l)")")
done
if python3 "$here/check.py" maildir "$sent" "${specs[@]}" >"$work/py-maildir.out" 2>&1; then
    pass "python mailbox.Maildir: $(tail -1 "$work/py-maildir.out")"
else
    fail "python mailbox.Maildir" "$work/py-maildir.out"
fi
if python3 "$here/check.py" mbox "$sent" "$mail/mbox/mb=$(mboxcount "$mail/mbox/mb")" >"$work/py-mbox.out" 2>&1; then
    pass "python mailbox.mbox: $(tail -1 "$work/py-mbox.out")"
else
    fail "python mailbox.mbox" "$work/py-mbox.out"
fi

# lmtpd export round trip for the SQLite user.
if "$BIN" export --db "$mail/mail.db" --mailbox sq@example.org --mbox "$work/sq.mbox" >"$work/export.out" 2>&1 &&
    python3 "$here/check.py" mbox "$sent" "$work/sq.mbox=$sq_count" >>"$work/export.out" 2>&1; then
    pass "lmtpd export --mbox (sqlite) read by python mailbox.mbox: $(tail -1 "$work/export.out")"
else
    fail "lmtpd export round trip" "$work/export.out"
fi

# Dovecot: doveadm with a private configuration and no auth service (USER=, no userdb
# lookup); mail is accessed as nobody, the owner. Maildir++ quota: no quota_rule, so Dovecot
# takes the limits from lmtpd's maildirsize (with a differing rule it would rewrite it). The
# Maildir control files stay in the Maildir, where Dovecot looks for maildirsize.
dv=$work/dovecot
if command -v doveadm >/dev/null 2>&1; then
    mkdir -p "$dv/base" "$dv/state" "$dv/home" "$dv/idx" "$dv/mbroot"
    chown nobody:"$RUN_GROUP" "$dv/home" "$dv/idx" "$dv/mbroot"
    cat >"$dv/dovecot.conf" <<EOF
base_dir = $dv/base
state_dir = $dv/state
log_path = $dv/dovecot.log
protocols =
ssl = no
mail_location = maildir:~/Maildir
mail_uid = nobody
mail_gid = $RUN_GROUP
mail_home = $dv/home
mail_plugins = quota
plugin {
  quota = maildir:User quota
}
EOF
    boxmd=$mail/example.org/box/Maildir
    loc_box="maildir:$boxmd:INDEX=$dv/idx/box"
    loc_mb="mbox:$dv/mbroot:INBOX=$mail/mbox/mb:INDEX=$dv/idx/mb"
    if python3 "$here/check.py" doveadm "$sent" "$dv/dovecot.conf" box@example.org "$loc_box" \
        INBOX=1 lists=1 >"$work/dv-maildir.out" 2>&1; then
        pass "doveadm Maildir: INBOX and +detail folder 'lists' listed, 1 message each, $(tail -1 "$work/dv-maildir.out")"
    else
        fail "doveadm Maildir" "$work/dv-maildir.out" "$dv/dovecot.log"
    fi
    burstmd=$mail/example.org/burst/Maildir
    if [ -d "$burstmd" ] && python3 "$here/check.py" doveadm "$sent" "$dv/dovecot.conf" burst@example.org \
        "maildir:$burstmd:INDEX=$dv/idx/burst" INBOX=200 >"$work/dv-burst.out" 2>&1; then
        pass "doveadm Maildir (Postfix burst): INBOX $(tail -1 "$work/dv-burst.out")"
    else
        fail "doveadm Maildir (Postfix burst)" "$work/dv-burst.out" "$dv/dovecot.log"
    fi
    if python3 "$here/check.py" doveadm-mbox "$sent" "$dv/dovecot.conf" mb@example.org "$loc_mb" \
        "INBOX=$(mboxcount "$mail/mbox/mb")" >"$work/dv-mbox.out" 2>&1; then
        pass "doveadm mbox: $(tail -1 "$work/dv-mbox.out")"
    else
        fail "doveadm mbox" "$work/dv-mbox.out" "$dv/dovecot.log"
    fi
    if python3 "$here/check.py" quota "$dv/dovecot.conf" box@example.org "$loc_box" "$boxmd" \
        >"$work/dv-quota.out" 2>&1; then
        pass "doveadm quota get (Maildir++): $(tail -1 "$work/dv-quota.out")"
    else
        fail "doveadm quota get" "$work/dv-quota.out" "$dv/dovecot.log"
    fi
    # What Sieve filed, as Dovecot sees it: folder, flags and message per mailbox of sv.
    svmd=$mail/example.org/sv/Maildir
    # As check.py does: USER= instead of -u (no userdb to ask), from a directory nobody can enter.
    (cd "$work" && USER=sv@example.org doveadm -c "$dv/dovecot.conf" \
        -o "mail_location=maildir:$svmd:INDEX=$dv/idx/sv" \
        fetch 'mailbox flags hdr.message-id' all >"$work/dv-sieve.out" 2>&1)
    tags=$(grep -A2 '^mailbox: Tags.lists$' "$work/dv-sieve.out" | tr '\n' ' ')
    junk=$(grep -A2 '^mailbox: Junk$' "$work/dv-sieve.out" | tr '\n' ' ')
    case "$tags|$junk" in
    *'\Flagged'*'pf-sieve@interop.test'*'|'*'\Seen'*'pf-spam@interop.test'*)
        pass "doveadm + sieve: sv's tagged copy in Tags.lists (\\Flagged, fileinto :create from envelope :detail), the spam copy in Junk (\\Seen, global sieve_before)" ;;
    *)
        fail "doveadm + sieve: Tags.lists='$tags' Junk='$junk'" "$work/dv-sieve.out" "$dv/dovecot.log" "$work/lmtpd.log" ;;
    esac
else
    fail "doveadm is not installed (dovecot-core)"
fi

trap - EXIT
cleanup
if [ $failed = 0 ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$work"
else
    echo "kept $work for inspection"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
