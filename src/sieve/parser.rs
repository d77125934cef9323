//! The Sieve grammar (RFC 5228 §8.2/§8.3): tokens into the generic tree of [`super::ast`],
//! with `line:column` errors.

use super::ast::Command;
use super::CompileError;

/// Parses `source` into commands. Errors carry the position of the offending token.
pub fn parse(source: &str) -> Result<Vec<Command>, CompileError> {
    let _ = source;
    unimplemented!()
}
