#!/bin/sh
# `make install` / `make uninstall` into a DESTDIR with GNU make and with bmake: both must
# install the same files with the same modes, and uninstall must leave nothing behind.
# Installs bmake with apt-get when it is missing (Debian).
set -u
cd "$(dirname "$0")/.." || exit 1
if ! command -v bmake >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q bmake >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q bmake >/dev/null 2>&1; }
fi
BIN=${BIN:-target/release/lmtpd}
[ -x "$BIN" ] || { echo "FAIL: $BIN is missing (run make first)"; exit 1; }
t=$(mktemp -d /tmp/lmtpd-install.XXXXXX)
failed=0
passed=0
listing() { (cd "$1" && find . -print | sort | while read -r f; do
    printf '%s %s\n' "$(stat -c %a "$f" 2>/dev/null || stat -f %Lp "$f")" "$f"; done); }
for mk in make bmake; do
    if ! command -v $mk >/dev/null 2>&1; then
        echo "FAIL: $mk is not installed"; failed=$((failed + 1)); continue
    fi
    mkdir -p "$t/$mk"
    if $mk install DESTDIR="$t/$mk" BIN="$BIN" > "$t/$mk.log" 2>&1; then
        listing "$t/$mk" > "$t/$mk.list"
        echo "PASS: $mk install DESTDIR ($(grep -c . "$t/$mk.list") entries)"; passed=$((passed + 1))
    else
        echo "FAIL: $mk install"; sed 's/^/    /' "$t/$mk.log"; failed=$((failed + 1))
    fi
done
if [ -f "$t/make.list" ] && [ -f "$t/bmake.list" ]; then
    if cmp -s "$t/make.list" "$t/bmake.list"; then
        echo "PASS: GNU make and bmake install the same files with the same modes"; passed=$((passed + 1))
    else
        echo "FAIL: installed file lists differ"; diff "$t/make.list" "$t/bmake.list"; failed=$((failed + 1))
    fi
    for f in ./usr/local/sbin/lmtpd ./usr/local/etc/lmtpd.conf ./usr/local/etc/lmtpd.users; do
        grep -q " $f\$" "$t/make.list" || { echo "FAIL: $f not installed"; failed=$((failed + 1)); }
    done
    # The load generator behind make bench is never installed.
    if grep -q 'lmtp-bench' "$t/make.list"; then
        echo "FAIL: lmtp-bench installed"; failed=$((failed + 1))
    else
        echo "PASS: lmtp-bench not installed"; passed=$((passed + 1))
    fi
    # The installed binary carries no debug info (the release profile has none).
    if command -v readelf >/dev/null 2>&1; then
        if readelf -S "$t/make/usr/local/sbin/lmtpd" 2>/dev/null | grep -q '\.debug_info'; then
            echo "FAIL: the installed lmtpd carries debug info"; failed=$((failed + 1))
        else
            echo "PASS: the installed lmtpd carries no debug info"; passed=$((passed + 1))
        fi
    fi
fi
for mk in make bmake; do
    [ -d "$t/$mk" ] || continue
    $mk uninstall DESTDIR="$t/$mk" BIN="$BIN" > "$t/$mk.un.log" 2>&1
    left=$(cd "$t/$mk" && find . -mindepth 1 | head -5)
    if [ -z "$left" ]; then
        echo "PASS: $mk uninstall leaves nothing"; passed=$((passed + 1))
    else
        echo "FAIL: $mk uninstall left: $left"; failed=$((failed + 1))
    fi
done
[ $failed = 0 ] && rm -rf "$t"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
