//! lmtpd: a small, durable LMTP (RFC 2033) delivery server.
//!
//! # Layout
//!
//! - [`proto`]: the sans-IO LMTP session (bytes in, events and replies out).
pub mod proto;
