//! The submission path: every message lmtpd sends (Sieve `redirect`s and vacation replies)
//! is handed to the configured sendmail program as `PROGRAM -i -f SENDER -- RECIPIENT`
//! (the interface Postfix, Exim and OpenSMTPD install), without a shell, with a clean
//! environment, as the user lmtpd runs as, with the message streamed into its standard
//! input and a time limit. Its exit status decides success.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How the null sender is written after `-f` (`sendmail_null_sender`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullSender {
    /// `-f <>` (Postfix, Exim and OpenSMTPD all take it).
    Angle,
    /// `-f ''`.
    Empty,
}

/// The configured program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitter {
    /// The sendmail program (`sendmail`).
    pub program: PathBuf,
    /// How long one submission may take (`sendmail_timeout`); then the program is killed.
    pub timeout: Duration,
    /// How `<>` is passed.
    pub null_sender: NullSender,
}

/// Why a submission failed.
#[derive(Debug)]
pub enum SubmitError {
    /// The program could not be started.
    Spawn(io::Error),
    /// Writing the message to it failed (other than its exiting early).
    Write(io::Error),
    /// Reading the message to send failed.
    Read(io::Error),
    /// It ran longer than the timeout and was killed.
    Timeout(Duration),
    /// It exited with a failure status; the first line it wrote to standard error.
    Exit(ExitStatus, String),
    /// An argument would have been taken as an option (begins with `-`) or holds a
    /// control character.
    BadArgument(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Spawn(e) => write!(f, "cannot start the sendmail program: {e}"),
            SubmitError::Write(e) => write!(f, "writing to the sendmail program: {e}"),
            SubmitError::Read(e) => write!(f, "reading the message: {e}"),
            SubmitError::Timeout(d) => {
                write!(f, "the sendmail program took longer than {}s", d.as_secs())
            }
            SubmitError::Exit(status, err) if err.is_empty() => {
                write!(f, "the sendmail program failed ({status})")
            }
            SubmitError::Exit(status, err) => {
                write!(f, "the sendmail program failed ({status}): {err}")
            }
            SubmitError::BadArgument(a) => write!(f, "refusing the address '{a}'"),
        }
    }
}

/// Copies `message` into the program's standard input and closes it. A program that exits
/// without reading everything is not a write error: its exit status says what happened.
///
/// When the message cannot be read to its end the program is killed before its input is
/// closed, so that it never sees a truncated message as a whole one.
fn write_all(
    stdin: Option<std::process::ChildStdin>,
    pid: u32,
    message: &mut dyn Read,
) -> Result<(), SubmitError> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match message.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = crate::sys::kill_process(pid);
                return Err(SubmitError::Read(e));
            }
        };
        match stdin.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(SubmitError::Write(e)),
        }
    }
}

/// The most standard error output kept for the log.
const STDERR_KEEP: usize = 512;

impl Submitter {
    /// Sends `message` (a whole RFC 5322 message, LF line ends) from `sender` (`None`:
    /// `<>`) to `rcpt`.
    pub fn send(
        &self,
        sender: Option<&str>,
        rcpt: &str,
        message: &mut dyn Read,
    ) -> Result<(), SubmitError> {
        let bad = |a: &str| a.starts_with('-') || a.is_empty() || a.chars().any(char::is_control);
        if bad(rcpt) {
            return Err(SubmitError::BadArgument(rcpt.to_string()));
        }
        let from = match (sender, self.null_sender) {
            (Some(s), _) if bad(s) => return Err(SubmitError::BadArgument(s.to_string())),
            (Some(s), _) => s.to_string(),
            (None, NullSender::Angle) => "<>".to_string(),
            (None, NullSender::Empty) => String::new(),
        };
        let mut child = Command::new(&self.program)
            .arg("-i")
            .arg("-f")
            .arg(&from)
            .arg("--")
            .arg(rcpt)
            .env_clear()
            .env(
                "PATH",
                "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin",
            )
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SubmitError::Spawn)?;
        // Standard error is read on a thread of its own that may outlive this call (a
        // grandchild can hold the pipe open); only its first bytes are kept.
        let (tx, rx) = mpsc::channel();
        if let Some(mut err) = child.stderr.take() {
            let _ = thread::Builder::new()
                .name("lmtpd-sendmail-err".into())
                .spawn(move || {
                    let mut kept = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = err.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let room = STDERR_KEEP.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    let _ = tx.send(kept);
                });
        }
        let deadline = Instant::now() + self.timeout;
        let pid = child.id();
        let stdin = child.stdin.take();
        let timeout = self.timeout;
        // The message is written on this thread (the reader need not be `Send`); a watcher
        // thread waits for the program and kills it at the deadline, which also ends a write
        // blocked on a program that stopped reading.
        let outcome = thread::scope(|scope| {
            let watcher = scope.spawn(move || -> Result<ExitStatus, SubmitError> {
                let mut pause = Duration::from_millis(1);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => return Ok(status),
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(SubmitError::Timeout(timeout));
                        }
                        Ok(None) => {
                            thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_millis(50));
                        }
                        Err(e) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(SubmitError::Spawn(e));
                        }
                    }
                }
            });
            let written = write_all(stdin, pid, message);
            let status = watcher
                .join()
                .unwrap_or_else(|_| Err(SubmitError::Spawn(io::Error::other("watcher panicked"))));
            (status, written)
        });
        let status = outcome.0?;
        if status.success() {
            // A message that could not be read whole must not count as sent, even when the
            // program accepted what it got.
            return outcome.1;
        }
        let err = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        let first = String::from_utf8_lossy(&err)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        Err(SubmitError::Exit(status, first))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A sendmail stand-in: a shell script writing its arguments and input under `dir`.
    fn fake(dir: &std::path::Path, body: &str) -> Submitter {
        let path = dir.join("sendmail");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Submitter {
            program: path,
            timeout: Duration::from_secs(10),
            null_sender: NullSender::Angle,
        }
    }

    #[test]
    fn the_program_gets_i_f_sender_and_the_recipient_after_double_dash() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let s = fake(
            dir.path(),
            &format!(
                "printf '%s|' \"$@\" > {0}.args; cat > {0}.msg",
                out.display()
            ),
        );
        s.send(
            Some("bob@example.com"),
            "carol@example.net",
            &mut &b"Subject: x\n\nhi\n"[..],
        )
        .unwrap();
        let args = std::fs::read_to_string(dir.path().join("out.args")).unwrap();
        assert_eq!(args, "-i|-f|bob@example.com|--|carol@example.net|");
        let msg = std::fs::read(dir.path().join("out.msg")).unwrap();
        assert_eq!(msg, b"Subject: x\n\nhi\n");
        s.send(None, "carol@example.net", &mut &b"x\n"[..]).unwrap();
        let args = std::fs::read_to_string(dir.path().join("out.args")).unwrap();
        assert_eq!(args, "-i|-f|<>|--|carol@example.net|", "null sender as <>");
        let empty = Submitter {
            null_sender: NullSender::Empty,
            ..s
        };
        empty
            .send(None, "carol@example.net", &mut &b"x\n"[..])
            .unwrap();
        let args = std::fs::read_to_string(dir.path().join("out.args")).unwrap();
        assert_eq!(args, "-i|-f||--|carol@example.net|", "null sender as ''");
    }

    #[test]
    fn a_large_message_is_streamed_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let s = fake(dir.path(), "wc -c > \"$0.count\"");
        // 8 MiB from a reader that produces it on the fly.
        let mut big = std::io::repeat(b'x').take(8 << 20);
        s.send(Some("a@b.c"), "d@e.f", &mut big).unwrap();
        let count = std::fs::read_to_string(dir.path().join("sendmail.count")).unwrap();
        assert_eq!(count.trim(), (8u64 << 20).to_string());
    }

    #[test]
    fn a_failing_exit_status_is_an_error_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let s = fake(
            dir.path(),
            "cat >/dev/null; echo 'sendmail: fatal: no' >&2; exit 75",
        );
        match s.send(Some("a@b.c"), "d@e.f", &mut &b"x\n"[..]) {
            Err(SubmitError::Exit(status, text)) => {
                assert_eq!(status.code(), Some(75));
                assert_eq!(text, "sendmail: fatal: no");
            }
            other => panic!("{other:?}"),
        }
        // Exiting without reading the message is the status's business, not a write error.
        let quits = fake(dir.path(), "exit 1");
        let mut big = std::io::repeat(b'x').take(4 << 20);
        assert!(matches!(
            quits.send(Some("a@b.c"), "d@e.f", &mut big),
            Err(SubmitError::Exit(..))
        ));
    }

    #[test]
    fn a_hanging_program_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fake(dir.path(), "exec sleep 30");
        s.timeout = Duration::from_millis(300);
        let r = s.send(Some("a@b.c"), "d@e.f", &mut &b"x\n"[..]);
        assert!(matches!(r, Err(SubmitError::Timeout(_))), "{r:?}");
    }

    #[test]
    fn a_missing_program_and_option_like_addresses_are_refused() {
        let s = Submitter {
            program: "/nonexistent/sendmail".into(),
            timeout: Duration::from_secs(1),
            null_sender: NullSender::Angle,
        };
        assert!(matches!(
            s.send(None, "a@b.c", &mut &b""[..]),
            Err(SubmitError::Spawn(_))
        ));
        assert!(matches!(
            s.send(None, "-oQ/tmp@x", &mut &b""[..]),
            Err(SubmitError::BadArgument(_))
        ));
        assert!(matches!(
            s.send(Some("-bs"), "a@b.c", &mut &b""[..]),
            Err(SubmitError::BadArgument(_))
        ));
    }
}
