//! The interpreter: runs a validated [`Script`] (or the global-before, user, global-after
//! sequence) over one message and recipient into an [`Outcome`] (RFC 5228 §2.10 implicit
//! keep and duplicate actions, the extensions' run-time rules).

use super::{Input, Limits, Outcome, RuntimeError, Script};

/// Runs one script.
pub fn run(script: &Script, input: &Input<'_>, limits: &Limits) -> Result<Outcome, RuntimeError> {
    let _ = (script, input, limits);
    unimplemented!()
}
