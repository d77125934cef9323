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
//! - [`trace`]: Return-Path / Delivered-To / Received headers.
//! - [`deliver`]: per-recipient delivery, replies and log lines.
//! - [`doctor`]: the checks behind `lmtpd -t`.
//! - [`logging`]: stderr or syslog.
//! - [`metrics`]: counters and histograms for `GET /metrics`.
//! - [`privileges`]: dropping root after binding.
//! - [`sys`]: the few POSIX calls std lacks (the only `unsafe` in this crate).
//!
//! The mailbox backends live in their own crates: `lmtpd-store` (the `MailStore` trait)
//! and `lmtpd-maildir`, `lmtpd-mbox`, `lmtpd-sqlite` (optional feature `sqlite`).
pub mod config;
pub mod deliver;
pub mod directory;
pub mod doctor;
pub mod logging;
pub mod metrics;
pub mod privileges;
pub mod proto;
pub mod server;
pub mod spool;
pub mod sys;
pub mod trace;
