//! Renders an [`super::Outcome`] the way Pigeonhole's `sieve-test` prints its result, for
//! `lmtpd sieve test` and the differential tests against Pigeonhole.
