# lmtpd — works with GNU make and BSD make.
PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
CARGO ?= cargo
CARGOFLAGS ?= --locked

all: build

build:
	LMTPD_DEFAULT_CONFIG=$(SYSCONFDIR)/lmtpd.conf $(CARGO) build $(CARGOFLAGS) --release

# Start a server on 127.0.0.1:2424 and run/lmtp.sock delivering into run/mail/ (see contrib/dev.conf).
run:
	mkdir -p run/spool run/mail
	$(CARGO) run $(CARGOFLAGS) --release --bin lmtpd -- -c contrib/dev.conf

test:
	$(CARGO) test $(CARGOFLAGS) --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(CARGOFLAGS) --workspace --all-targets -- -D warnings

check: lint test

# Real-client checks (swaks, smtp-source); installs them with apt-get when missing.
peers: build
	sh contrib/peers.sh

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)
	install -m 0755 target/release/lmtpd $(DESTDIR)$(SBINDIR)/lmtpd
	[ -e $(DESTDIR)$(SYSCONFDIR)/lmtpd.conf ] || install -m 0644 contrib/lmtpd.conf.example $(DESTDIR)$(SYSCONFDIR)/lmtpd.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/lmtpd.users ] || install -m 0640 contrib/users.example $(DESTDIR)$(SYSCONFDIR)/lmtpd.users

# Removes the binary; configuration files are kept unless unchanged from the examples.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/lmtpd
	if cmp -s contrib/lmtpd.conf.example $(DESTDIR)$(SYSCONFDIR)/lmtpd.conf; then rm -f $(DESTDIR)$(SYSCONFDIR)/lmtpd.conf; fi
	if cmp -s contrib/users.example $(DESTDIR)$(SYSCONFDIR)/lmtpd.users; then rm -f $(DESTDIR)$(SYSCONFDIR)/lmtpd.users; fi

clean:
	$(CARGO) clean
	rm -rf run

.PHONY: all build run test lint check peers install uninstall clean
