//! lmtpd: a small, durable LMTP (RFC 2033) delivery server.
//!
//! # Layout
//!
//! - [`proto`]: the sans-IO LMTP session (bytes in, events and replies out); std only.
//! - [`server`]: listeners and the mio accept loop, the worker pool, the per-connection
//!   driver.
//! - [`config`]: the configuration file and options.
//! - [`directory`]: the users file and recipient resolution.
//! - [`spool`]: the per-transaction body spool.
//! - [`sieve`]: the sans-IO Sieve engine (lexer, parser, validator, interpreter).
//! - [`trace`]: Return-Path / Delivered-To / Received headers.
//! - [`deliver`]: per-recipient delivery, replies and log lines.
//! - [`policy`]: Sieve at delivery: which scripts run for a recipient and what their
//!   actions mean for its copies and its reply.
//! - [`scripts`]: finding, reading and caching compiled Sieve scripts.
//! - [`submit`]: the submission path (the sendmail program) for redirects and vacation
//!   replies.
//! - [`tracking`]: the per-user vacation and duplicate tracking lists.
//! - [`doctor`]: the checks behind `lmtpd -t`.
//! - [`quota`]: quota policy (`quota_full`, `quota_grace`, `quota_warning`) per user, per
//!   domain and global, and the over-quota reply it gives.
//! - [`journal`]: the retry journal (retries after a lost reply, bounded tempfail, warning
//!   levels).
//! - [`warning`]: quota warnings delivered into the user's INBOX.
//! - [`quota_cmd`]: `lmtpd quota show|recalc ADDRESS`, a recipient's quota usage.
//! - [`logging`]: stderr or syslog.
//! - [`metrics`]: counters and histograms for `GET /metrics`.
//! - [`privileges`]: dropping root after binding.
//! - [`sys`]: the few POSIX calls std lacks (the only `unsafe` in this crate).
//!
//! The mailbox backends live in their own crates: `lmtpd-store` (the `MailStore` trait,
//! the delivery request, the per-recipient reporter and the contract suite) and
//! `lmtpd-maildir`, `lmtpd-mbox`, `lmtpd-sqlite` (optional feature `sqlite`) and
//! `lmtpd-postgres` (optional feature `postgres`).
//!
//! # The path of one message
//!
//! `server::listen` accepts, `server::pool` gives the connection a thread, and
//! `server::conn` drives a [`proto::Session`] over the socket. At RCPT, [`directory`]
//! resolves the address to a `Recipient` and a store, whose `check` decides the reply; DATA
//! streams into the [`spool`]. After the dot, [`deliver`] gives each recipient a `Delivery`
//! (trace headers from [`trace`], targets: INBOX or the `+detail` folder) and hands each run
//! of recipients of one store to `MailStore::deliver` with a `Reporter`. The store reports
//! each recipient's outcome once its copies are durable, in any order; the reporter releases
//! them in RCPT order and [`deliver`] turns each into the reply that `server::conn` writes,
//! a log line and the [`metrics`], while the store, on a helper thread, is still storing the
//! next copies.
pub mod config;
pub mod deliver;
pub mod directory;
pub mod doctor;
pub mod helper;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod privileges;
pub mod proto;
pub mod quota;
pub mod quota_cmd;
pub mod scripts;
pub mod server;
pub mod sieve;
pub mod sieve_tool;
pub mod spool;
pub mod submit;
pub mod sys;
pub mod trace;
pub mod tracking;
pub mod warning;
