//! The integration tests, one test binary: `tests/it/common` is compiled once and shared by
//! the server (`lmtp`), operations (`ops`), system accounts (`accounts`), hardening,
//! end-to-end store (`stores`), Sieve at delivery (`filter`), Sieve sending and tracking
//! (`sending`), the Sieve corpus (`sieve`), and quota policy with the retry journal
//! (`quota_policy`) tests.
//! Run one group with a filter on its module, e.g. `cargo test --test it hardening::`.

mod accounts;
mod common;
mod filter;
mod hardening;
mod lmtp;
mod ops;
mod quota_policy;
mod sending;
mod sieve;
mod stores;
