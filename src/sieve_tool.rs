//! The admin tools behind `lmtpd sieve check FILE...` and `lmtpd sieve test SCRIPT MESSAGE`:
//! the I/O around the sans-IO engine in [`crate::sieve`] (reading scripts and messages,
//! `include` from files, the clock), printing in Pigeonhole `sieve-test` fashion.
//!
//! Scripts are read, checked and compiled by [`ScriptCache`] exactly as at delivery, the
//! header section is taken as delivery takes it, and the `environment` items are those of a
//! delivery ([`crate::policy`]). `test` runs without delivering and prints what
//! `sieve-test` (without `-e`) shows, so that `tests/sieve/diff.py` can compare the two:
//! mailbox names use `.` as the hierarchy separator (Maildir++), `+` is the recipient
//! delimiter, only INBOX and the `--folder`s exist, dates without `:zone` are in UTC.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::scripts::{Found, ScriptCache, ScriptError};
use crate::sieve::{self, Envelope, Host, IncludeError, IncludeLocation, Input, Limits, Script};

/// What `lmtpd sieve test` runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestArgs {
    /// The script file.
    pub script: PathBuf,
    /// The message file (RFC 5322, LF or CRLF line ends).
    pub message: PathBuf,
    /// The envelope sender (`--from`); empty is the null sender.
    pub from: String,
    /// The envelope recipient (`--to`).
    pub to: String,
    /// The original recipient (`--orcpt`, DSN ORCPT); `envelope "to"` then tests it.
    pub orcpt: Option<String>,
    /// The directory of `include :global` scripts (`NAME.sieve`); none: every global
    /// include is missing.
    pub global_dir: Option<PathBuf>,
    /// The mailboxes that exist besides INBOX (`mailboxexists`; `:specialuse "\\Junk"` maps
    /// to an existing folder named `Junk`, case-insensitively). Default none, like
    /// `sieve-test` over an empty mail store.
    pub folders: Vec<String>,
    /// "Now" in seconds since the Unix epoch for `currentdate`; default the system clock.
    pub now: Option<i64>,
    /// The engine's limits (`lmtpd sieve test -c FILE` takes them from the configuration).
    pub limits: Limits,
    /// `redirect_envelope_from` (from the configuration with `-c`).
    pub redirect_from: crate::config::RedirectFrom,
}

/// `lmtpd sieve check`: compiles each file and prints every error as
/// `PATH:LINE:COLUMN: message` on stderr. Returns the exit status: 0 when all compile,
/// 1 otherwise (a file that cannot be read is an error too).
pub fn check(paths: &[PathBuf], limits: &Limits) -> i32 {
    let cache = ScriptCache::new(limits.clone());
    let mut status = 0;
    for path in paths {
        if let Err(lines) = load(&cache, path) {
            for l in lines {
                eprintln!("{l}");
            }
            status = 1;
        }
    }
    status
}

/// The compiled script at `path`, or the lines saying why not (`PATH:LINE:COLUMN: message`
/// for each compile error).
fn load(cache: &ScriptCache, path: &Path) -> Result<Arc<Script>, Vec<String>> {
    match cache.global(path) {
        Found::Script(script, _) => Ok(script),
        Found::Missing => Err(vec![format!("{}: no such file", path.display())]),
        Found::Failed(_, ScriptError::Compile(errors)) => Err(errors
            .iter()
            .map(|e| format!("{}:{}: {}", path.display(), e.pos, e.message))
            .collect()),
        Found::Failed(real, err) => Err(vec![format!("{}: {err}", real.display())]),
    }
}

/// `lmtpd sieve test`: runs the script over the message and prints the actions it would
/// take ([`sieve::print::render`]) on stdout; notes and errors go to stderr. Returns 0 when
/// the script ran, 1 when it could not be read or compiled (stderr says `failed to compile`)
/// or failed at run time (stderr says `final result: failed; resolved with implicit keep`,
/// which is what delivery would do).
pub fn test(args: &TestArgs) -> i32 {
    let report = run_test(args);
    print!("{}", report.stdout);
    eprint!("{}", report.stderr);
    report.status
}

/// What [`test`] prints and returns, captured (for the corpus tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    /// The exit status.
    pub status: i32,
    /// The standard output: the rendered outcome, or nothing on failure.
    pub stdout: String,
    /// The standard error: notes, errors and the final-result line on failure.
    pub stderr: String,
}

/// [`test`] without printing: the same run, its output returned.
pub fn run_test(args: &TestArgs) -> TestReport {
    let mut report = TestReport::default();
    let status = run_into(args, &mut report);
    report.status = status;
    report
}

fn run_into(args: &TestArgs, report: &mut TestReport) -> i32 {
    use std::fmt::Write as _;
    let err = &mut report.stderr;
    let limits = args.limits.clone();
    let cache = ScriptCache::new(limits.clone());
    let script = match load(&cache, &args.script) {
        Ok(s) => s,
        Err(lines) => {
            for l in lines {
                let _ = writeln!(err, "{l}");
            }
            let _ = writeln!(err, "lmtpd sieve test: failed to compile sieve script");
            return 1;
        }
    };
    let message = match std::fs::read(&args.message) {
        Ok(m) => lmtpd_store::MemoryBody(m),
        Err(e) => {
            let _ = writeln!(err, "{}: {e}", args.message.display());
            return 1;
        }
    };
    let (header, _) = crate::policy::read_header(&message, limits.max_header_octets);
    let envelope = Envelope {
        from: args.from.clone(),
        to: args.to.clone(),
        orig_to: args.orcpt.clone(),
        auth: None,
    };
    let personal_dir = args
        .script
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let host = FileHost {
        personal_dir,
        global_dir: args.global_dir.clone(),
        folders: args.folders.clone(),
        cache: &cache,
    };
    let environment = crate::policy::environment(&crate::config::system_hostname(), None);
    let body = || -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::io::Cursor::new(message.0.as_slice())))
    };
    let now = args.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    });
    let input = Input {
        envelope: &envelope,
        header: &header,
        size: message.0.len() as u64,
        body: &body,
        now,
        zone_offset_minutes: 0,
        environment: &environment,
        delimiters: "+",
        separator: '.',
        host: &host,
    };
    match sieve::interp::run(&script, &input, &limits) {
        Ok(outcome) => {
            for note in &outcome.notes {
                let _ = writeln!(err, "{}: {note}", args.script.display());
            }
            report.stdout = sieve::print::render(&outcome);
            report.stdout.push_str(&would_send(args, &header, &outcome));
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{}:{}: {}", args.script.display(), e.pos, e.message);
            let _ = writeln!(
                err,
                "lmtpd sieve test: final result: failed; resolved with implicit keep"
            );
            1
        }
    }
}

/// The messages delivery would send for `outcome`, with their envelopes, and why one would
/// not be sent (a forwarding loop, a vacation rule); empty when there are none. The once
/// per period rule of vacation needs the tracking list and is not applied here.
fn would_send(args: &TestArgs, header: &[u8], outcome: &sieve::Outcome) -> String {
    use std::fmt::Write as _;
    let headers = sieve::message::Headers::parse(header);
    let mut own = vec![args.to.as_str()];
    if let Some(o) = &args.orcpt {
        own.push(o);
    }
    let from = |s: &str| {
        if s.is_empty() {
            "<>".to_string()
        } else {
            format!("<{s}>")
        }
    };
    let mut out = String::new();
    for action in &outcome.actions {
        match action {
            sieve::Action::Redirect(r) => {
                let sender = match args.redirect_from {
                    _ if args.from.is_empty() => String::new(),
                    crate::config::RedirectFrom::Sender => args.from.clone(),
                    _ => args.to.clone(),
                };
                let _ = write!(
                    out,
                    "  redirect: MAIL FROM:{} RCPT TO:<{}>",
                    from(&sender),
                    r.address
                );
                if crate::policy::delivered_to(&headers, &own) {
                    let _ = write!(
                        out,
                        " (not sent: the message already has Delivered-To: {}, a loop)",
                        args.to
                    );
                }
                out.push('\n');
            }
            sieve::Action::Vacation(v) => {
                match sieve::vacation::refusal(v, &args.from, &own, &headers) {
                    Some(why) => {
                        let _ = writeln!(out, "  vacation: no reply ({why})");
                    }
                    None => {
                        let _ = writeln!(out, "  vacation: MAIL FROM:<> RCPT TO:<{}>", args.from);
                        let reply = sieve::vacation::compose(
                            v,
                            &headers,
                            &sieve::vacation::ReplyTo {
                                from: &args.to,
                                to: &args.from,
                                date: "(the time of delivery)",
                                message_id: "<(made at delivery)>",
                            },
                        );
                        for line in String::from_utf8_lossy(&reply).lines() {
                            let _ = writeln!(out, "    | {line}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("Would send (lmtpd sieve test sends nothing):\n\n{out}\n")
}

/// The [`Host`] of `lmtpd sieve test`: the given folder list, and `include` from files.
struct FileHost<'c> {
    personal_dir: PathBuf,
    global_dir: Option<PathBuf>,
    folders: Vec<String>,
    cache: &'c ScriptCache,
}

impl Host for FileHost<'_> {
    fn mailbox_exists(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("INBOX") || self.folders.iter().any(|f| f == name)
    }

    fn special_use(&self, flag: &str) -> Option<String> {
        let wanted = flag.strip_prefix('\\')?;
        self.folders
            .iter()
            .find(|f| f.eq_ignore_ascii_case(wanted))
            .cloned()
    }

    /// `sieve test` has no tracking list: nothing was delivered before (as in `sieve-test`).
    fn duplicate(&self, _handle: &str, _id: &str) -> bool {
        false
    }

    fn include(&self, location: IncludeLocation, name: &str) -> Result<Arc<Script>, IncludeError> {
        match location {
            IncludeLocation::Personal => self.cache.include(&self.personal_dir, name, true),
            IncludeLocation::Global => match &self.global_dir {
                Some(dir) => self.cache.include(dir, name, false),
                None => Err(IncludeError::NotFound),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_always_exists_and_folders_are_listed() {
        let cache = ScriptCache::new(Limits::default());
        let host = FileHost {
            personal_dir: PathBuf::from("."),
            global_dir: None,
            folders: vec!["Junk".into()],
            cache: &cache,
        };
        assert!(host.mailbox_exists("INBOX"));
        assert!(host.mailbox_exists("Junk"));
        assert!(!host.mailbox_exists("Work"));
        assert_eq!(host.special_use("\\Junk").as_deref(), Some("Junk"));
        assert_eq!(
            host.include(IncludeLocation::Global, "x").err(),
            Some(IncludeError::NotFound)
        );
        assert!(matches!(
            host.include(IncludeLocation::Personal, "../x"),
            Err(IncludeError::Failed(_))
        ));
    }
}
