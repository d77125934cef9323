//! Fuzz target: the Sieve compiler (`lmtpd::sieve::compile`: lexer, parser, validator) on
//! arbitrary bytes.
//!
//! The first byte picks the nesting limit (1..=16) and whether the script size limit is
//! tight. Invariants: no panic and no stack overflow; a failed compile gives at least one
//! and at most `MAX_ERRORS` errors, each one line with a 1-based position; a script larger
//! than the size limit never compiles; an accepted script's blocks nest no deeper than the
//! limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::sieve::ast::Command;
use lmtpd::sieve::validate::MAX_ERRORS;
use lmtpd::sieve::{compile, Limits};

fn depth(cmds: &[Command]) -> usize {
    cmds.iter()
        .map(|c| c.block.as_deref().map_or(0, |b| 1 + depth(b)))
        .max()
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_nesting: usize::from(first & 0x0f) + 1,
        max_script_size: if first & 0x80 != 0 { 64 } else { 1 << 20 },
        ..Limits::default()
    };
    match compile(script, &limits) {
        Ok(s) => {
            assert!(script.len() <= limits.max_script_size);
            assert!(depth(&s.commands) <= limits.max_nesting);
        }
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS);
            for e in &errors {
                assert!(e.pos.line >= 1 && e.pos.column >= 1, "{e}");
                assert!(
                    !e.message.contains('\n') && !e.message.contains('\r'),
                    "{e}"
                );
            }
        }
    }
});
