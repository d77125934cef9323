# lmtpd: build, test and install. Works with GNU make (4.0 or later) and BSD make (bmake on
# FreeBSD, NetBSD and Debian; make on OpenBSD). It uses only POSIX make syntax plus the `!=`
# shell assignment, which every BSD make has always had and GNU make has had since 4.0
# (2013). No conditionals (ifeq / .if), no $(shell ...), no GNU or BSD-only functions.
#
#   make && make install                      build as yourself, then install (as root)
#   make install DESTDIR=/tmp/stage           stage for a package
#   make PREFIX=/usr SYSCONFDIR=/etc && make install PREFIX=/usr SYSCONFDIR=/etc
#
# SYSCONFDIR is compiled into the binary as its default configuration file, so give `make`
# and `make install` the same PREFIX/SYSCONFDIR. `make install` does not run cargo when the
# binary already exists (so `sudo make install` works without cargo in root's PATH); it
# builds only when $(BIN) is missing. Run `make` after changing the sources.

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
# Manual pages: share/man on Linux (and anything else), man on the BSDs, as their hier(7)
# says. `uname -s` runs once, when the Makefile is read, through `!=` (understood by GNU
# make >= 4.0, bmake and OpenBSD make alike); choosing inside the shell's `case` avoids make
# conditionals, whose syntax differs. Override either variable on the command line, e.g.
# `make install MANDIR=/usr/share/man`.
MANSUBDIR != case `uname -s` in *BSD | DragonFly) echo man ;; *) echo share/man ;; esac
MANDIR ?= $(PREFIX)/$(MANSUBDIR)
# The binary `install` copies; point it elsewhere to install a prebuilt (or stand-in) one.
BIN ?= target/release/lmtpd
CARGO ?= cargo
CARGOFLAGS ?= --locked
MANDOC ?= mandoc

# The man pages and the example configuration name /usr/local/etc and /usr/local/sbin;
# they are installed with those replaced by SYSCONFDIR and SBINDIR (identical by default).
SUBST = sed -e 's|/usr/local/etc/|$(SYSCONFDIR)/|g' -e 's|/usr/local/sbin/|$(SBINDIR)/|g'

all: build

build:
	LMTPD_DEFAULT_CONFIG=$(SYSCONFDIR)/lmtpd.conf LMTPD_DEFAULT_USERS=$(SYSCONFDIR)/lmtpd.users $(CARGO) build $(CARGOFLAGS) --release

# Only when the binary is missing (see above).
$(BIN):
	LMTPD_DEFAULT_CONFIG=$(SYSCONFDIR)/lmtpd.conf LMTPD_DEFAULT_USERS=$(SYSCONFDIR)/lmtpd.users $(CARGO) build $(CARGOFLAGS) --release

# Start a server on 127.0.0.1:2424 and run/lmtp.sock delivering into run/mail/ (see contrib/dev.conf).
run:
	mkdir -p run/spool run/mail
	$(CARGO) run $(CARGOFLAGS) --release --bin lmtpd -- -c contrib/dev.conf

test:
	$(CARGO) test $(CARGOFLAGS) --workspace

# Also builds and lints lmtpd without its default features (no SQLite store), which nothing
# else would compile.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(CARGOFLAGS) --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(CARGOFLAGS) -p lmtpd --all-targets --no-default-features -- -D warnings
	$(CARGO) build $(CARGOFLAGS) -p lmtpd --no-default-features

# The manual pages: fails on anything mandoc reports at warning level or above
# (mandoc exits 2 for warnings, 3 and up for errors). Debian package: mandoc.
lint-man:
	$(MANDOC) -T lint -W warning man/lmtpd.8 man/lmtpd.conf.5

check: lint test

# install/uninstall into a DESTDIR with GNU make and bmake (installs bmake when missing).
install-test: build
	sh contrib/install-test.sh

# The Sieve corpus through Pigeonhole's sieve-test (Debian: dovecot-sieve) and our engine:
# every difference not listed in tests/sieve/deviations.txt fails.
sieve-diff: build
	python3 tests/sieve/diff.py --lmtpd $(BIN)

# Interoperability suite (run as root): a private Postfix instance and Exim from its
# unpacked packages in front of lmtpd, swaks and smtp-source, then Python's mailbox module,
# Dovecot's doveadm and `lmtpd export` reading what was stored. Installs postfix, swaks,
# dovecot-core, dovecot-imapd and mailutils with apt-get when missing. See README
# "Interoperability".
interop: build
	BIN=$(BIN) bash contrib/interop/run.sh

# Performance, side by side with a private Dovecot instance (dovecot-core and dovecot-lmtpd
# are installed with apt-get when missing and possible; skipped otherwise), each workload
# also against the disk's own ceiling (lmtp-bench disk, run between the workloads). Prints a
# Markdown report and writes bench-out/bench-<date>.md with three SVG charts beside it (a
# complete run also copies them and the report to contrib/bench/results/); about 14 minutes
# on 2 cores. QUICK=1: small counts, one repetition, two to three minutes. Builds through `build` so the binary keeps the
# SYSCONFDIR that `make install` expects; the load generator lmtp-bench is a workspace member
# of its own (contrib/bench/lmtp-bench), built here and never installed. See
# contrib/bench/run.sh for the other knobs.
QUICK ?=
bench: build
	$(CARGO) build $(CARGOFLAGS) --release -p lmtp-bench
	QUICK="$(QUICK)" NO_BUILD=1 sh contrib/bench/run.sh

# Real-client checks (swaks, smtp-source); installs them with apt-get when missing.
peers: build
	sh contrib/peers.sh

# Installs sbin/lmtpd, the two man pages and, only when absent, etc/lmtpd.conf and
# etc/lmtpd.users from contrib/. The users file is 0644: lmtpd re-reads it on SIGHUP after
# it has dropped root, so the run user must be able to read it.
install: $(BIN)
	install -d "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(SYSCONFDIR)" "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(MANDIR)/man5"
	install -c -m 0755 "$(BIN)" "$(DESTDIR)$(SBINDIR)/lmtpd"
	$(SUBST) man/lmtpd.8 > "$(DESTDIR)$(MANDIR)/man8/lmtpd.8"
	chmod 0644 "$(DESTDIR)$(MANDIR)/man8/lmtpd.8"
	$(SUBST) man/lmtpd.conf.5 > "$(DESTDIR)$(MANDIR)/man5/lmtpd.conf.5"
	chmod 0644 "$(DESTDIR)$(MANDIR)/man5/lmtpd.conf.5"
	if [ ! -e "$(DESTDIR)$(SYSCONFDIR)/lmtpd.conf" ]; then \
		$(SUBST) contrib/lmtpd.conf.example > "$(DESTDIR)$(SYSCONFDIR)/lmtpd.conf" && \
		chmod 0644 "$(DESTDIR)$(SYSCONFDIR)/lmtpd.conf"; \
	fi
	[ -e "$(DESTDIR)$(SYSCONFDIR)/lmtpd.users" ] || install -c -m 0644 contrib/users.example "$(DESTDIR)$(SYSCONFDIR)/lmtpd.users"

# Removes exactly what `install` added: the binary and the man pages; the configuration
# files only when they are unchanged from the installed examples. Inside a DESTDIR staging
# tree it also removes the directories that are left empty (up to, not including, DESTDIR);
# on a live system (no DESTDIR) directories such as /usr/local/sbin are left alone.
uninstall:
	rm -f "$(DESTDIR)$(SBINDIR)/lmtpd" "$(DESTDIR)$(MANDIR)/man8/lmtpd.8" "$(DESTDIR)$(MANDIR)/man5/lmtpd.conf.5"
	if $(SUBST) contrib/lmtpd.conf.example | cmp -s - "$(DESTDIR)$(SYSCONFDIR)/lmtpd.conf"; then rm -f "$(DESTDIR)$(SYSCONFDIR)/lmtpd.conf"; fi
	if cmp -s contrib/users.example "$(DESTDIR)$(SYSCONFDIR)/lmtpd.users"; then rm -f "$(DESTDIR)$(SYSCONFDIR)/lmtpd.users"; fi
	@if [ -n "$(DESTDIR)" ]; then \
		for d in "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(SYSCONFDIR)" "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(MANDIR)/man5"; do \
			while [ -n "$$d" ] && [ "$$d" != "$(DESTDIR)" ] && [ "$$d" != "$(DESTDIR)/" ] && rmdir "$$d" 2>/dev/null; do \
				d=$${d%/*}; \
			done; \
		done; \
	fi

clean:
	$(CARGO) clean
	rm -rf run

.PHONY: all build run test lint lint-man check install-test interop sieve-diff bench peers install uninstall clean
