//! The admin tools behind `lmtpd sieve check FILE...` and `lmtpd sieve test SCRIPT MESSAGE`:
//! the I/O around the sans-IO engine in [`crate::sieve`] (reading scripts and messages,
//! `include` from files, the clock), printing in Pigeonhole `sieve-test` fashion.
//!
//! `test` runs without delivering and matches what `sieve-test` (without `-e`) shows, so
//! that `tests/sieve/diff.py` can compare the two: mailbox names use `.` as the hierarchy
//! separator (Maildir++), `+` is the recipient delimiter, only INBOX and the `--folder`s
//! exist, dates without `:zone` are in UTC, and the `environment` items are Pigeonhole's
//! values for a delivery (`location` "MS", `phase` "post") except `name` and `version`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

/// `lmtpd sieve check`: compiles each file and prints every error as
/// `PATH:LINE:COLUMN: message` on stderr. Returns the exit status: 0 when all compile,
/// 1 otherwise (a file that cannot be read is an error too).
pub fn check(paths: &[PathBuf], limits: &Limits) -> i32 {
    let mut status = 0;
    for path in paths {
        match read_script(path, limits) {
            Ok(source) => {
                if let Err(errors) = sieve::compile(&source, limits) {
                    for e in errors {
                        eprintln!("{}:{}: {}", path.display(), e.pos, e.message);
                    }
                    status = 1;
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                status = 1;
            }
        }
    }
    status
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
    let source = match read_script(&args.script, &limits) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{}: {e}", args.script.display());
            let _ = writeln!(err, "lmtpd sieve test: failed to compile sieve script");
            return 1;
        }
    };
    let script = match sieve::compile(&source, &limits) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                let _ = writeln!(err, "{}:{}: {}", args.script.display(), e.pos, e.message);
            }
            let _ = writeln!(err, "lmtpd sieve test: failed to compile sieve script");
            return 1;
        }
    };
    let message = match std::fs::read(&args.message) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(err, "{}: {e}", args.message.display());
            return 1;
        }
    };
    let header_len = header_section_len(&message).min(limits.max_header_octets);
    let header = message.get(..header_len).unwrap_or(&message);
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
        limits: limits.clone(),
    };
    let hostname = hostname();
    let domain = hostname
        .split_once('.')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| hostname.clone());
    let environment: Vec<(&str, String)> = vec![
        ("domain", domain),
        ("host", hostname),
        ("location", "MS".to_string()),
        ("name", "lmtpd".to_string()),
        ("phase", "post".to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let body = || -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::io::Cursor::new(message.as_slice())))
    };
    let now = args.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    });
    let input = Input {
        envelope: &envelope,
        header,
        size: message.len() as u64,
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

/// Reads a script, refusing one larger than [`Limits::max_script_size`] without reading it
/// all.
fn read_script(path: &Path, limits: &Limits) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut source = Vec::new();
    let cap = u64::try_from(limits.max_script_size)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(cap).read_to_end(&mut source)?;
    if source.len() > limits.max_script_size {
        return Err(std::io::Error::other(format!(
            "script larger than {} bytes",
            limits.max_script_size
        )));
    }
    Ok(source)
}

/// The length of the header section including the empty line that ends it (LF or CRLF); the
/// whole message when it has no body.
fn header_section_len(message: &[u8]) -> usize {
    let mut i = 0;
    let mut line_start = true;
    while i < message.len() {
        if line_start {
            if message.get(i..i + 2) == Some(b"\r\n") {
                return i + 2;
            }
            if message.get(i) == Some(&b'\n') {
                return i + 1;
            }
        }
        line_start = message.get(i) == Some(&b'\n');
        i += 1;
    }
    message.len()
}

/// This machine's name, for the `environment` items `host` and `domain`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// The [`Host`] of `lmtpd sieve test`: the given folder list, and `include` from files.
struct FileHost {
    personal_dir: PathBuf,
    global_dir: Option<PathBuf>,
    folders: Vec<String>,
    limits: Limits,
}

impl Host for FileHost {
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

    fn include(&self, location: IncludeLocation, name: &str) -> Result<Arc<Script>, IncludeError> {
        // RFC 6609 §3.2: a script name, not a path.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(IncludeError::Failed(format!(
                "invalid script name {name:?}"
            )));
        }
        let dir = match location {
            IncludeLocation::Personal => &self.personal_dir,
            IncludeLocation::Global => self.global_dir.as_ref().ok_or(IncludeError::NotFound)?,
        };
        let path = dir.join(format!("{name}.sieve"));
        let source = match read_script(&path, &self.limits) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IncludeError::NotFound)
            }
            Err(e) => return Err(IncludeError::Failed(format!("{}: {e}", path.display()))),
        };
        sieve::compile(&source, &self.limits)
            .map(Arc::new)
            .map_err(|errors| {
                let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                IncludeError::Failed(format!("{}:{first}", path.display()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_section_ends_at_the_empty_line() {
        assert_eq!(header_section_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_section_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_section_len(b"A: b\n"), 5);
    }

    #[test]
    fn inbox_always_exists_and_folders_are_listed() {
        let host = FileHost {
            personal_dir: PathBuf::from("."),
            global_dir: None,
            folders: vec!["Junk".into()],
            limits: Limits::default(),
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
