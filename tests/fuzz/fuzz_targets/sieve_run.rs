//! Fuzz target: the Sieve interpreter (`lmtpd::sieve::interp::run_sequence`) on arbitrary
//! scripts that compile, over a message whose header and body come from the input too.
//!
//! The input is `script \0 message`. Invariants: no panic; the run ends (the step budget
//! holds); an outcome has at most `max_actions` actions and, after a run-time error, is the
//! fallback keep; every reject reason and folder name is bounded by the variable limit; every
//! redirect address is valid and there are at most `max_redirects`; vacation periods stay in
//! the site's bounds; a failed run tracks nothing.
#![no_main]

use std::io::Read;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lmtpd::sieve::interp::run_sequence;
use lmtpd::sieve::{
    compile, Action, Envelope, Host, IncludeError, IncludeLocation, Input, Limits, Script,
};

struct NoHost;

impl Host for NoHost {
    fn mailbox_exists(&self, name: &str) -> bool {
        name.len() % 2 == 0
    }
    fn special_use(&self, flag: &str) -> Option<String> {
        (flag == "\\Junk").then(|| "Junk".to_string())
    }
    fn include(&self, _: IncludeLocation, _: &str) -> Result<Arc<Script>, IncludeError> {
        Err(IncludeError::NotFound)
    }
    fn duplicate(&self, _: &str, id: &str) -> bool {
        id.len() % 2 == 1
    }
}

fuzz_target!(|data: &[u8]| {
    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"Subject: x\nFrom: a@b.c\n\nbody\n"[..]),
    };
    let limits = Limits {
        max_steps: 2_000,
        max_variable_size: 4096,
        ..Limits::default()
    };
    let Ok(compiled) = compile(script, &limits) else {
        return;
    };
    let header_end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(message.len(), |i| i + 2);
    let envelope = Envelope {
        from: "sender@example.org".into(),
        to: "rcpt+tag@example.com".into(),
        orig_to: None,
        auth: None,
    };
    let body = || -> std::io::Result<Box<dyn Read + '_>> { Ok(Box::new(message)) };
    let environment = [("name", "lmtpd".to_string())];
    let input = Input {
        envelope: &envelope,
        header: &message[..header_end],
        size: message.len() as u64,
        body: &body,
        now: 1_700_000_000,
        zone_offset_minutes: 60,
        environment: &environment,
        delimiters: "+",
        separator: '.',
        host: &NoHost,
    };
    let seq = run_sequence(&[&compiled, &compiled], &input, &limits);
    assert!(seq.outcome.actions.len() <= limits.max_actions + 1);
    let bound = limits.max_script_size + limits.max_variable_size;
    let mut redirects = 0;
    for a in &seq.outcome.actions {
        match a {
            Action::Reject { reason, .. } => assert!(reason.len() <= bound),
            Action::Redirect(r) => {
                redirects += 1;
                assert!(lmtpd::sieve::interp::redirect_address(&r.address).is_some());
            }
            Action::Vacation(v) => {
                assert!(v.reason.len() <= bound);
                assert!(v.seconds >= limits.vacation_min_period);
                assert!(v.seconds <= limits.vacation_max_period);
            }
            _ => {}
        }
    }
    assert!(redirects <= limits.max_redirects);
    if seq.error.is_some() {
        assert!(seq.outcome.tracked.is_empty());
    }
});
