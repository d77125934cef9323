//! Appending one copy to a locked mailbox: note the end offset, write the separator and the
//! filtered copy there; on any failure truncate back to the noted offset (and fsync) before
//! the caller unlocks. The fsync that makes the copy durable is [`sync`], run once for a
//! whole batch of copies appended under the same locks.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::SystemTime;

use lmtpd_store::{pump, Delivery, Flag, Flags, Message, PumpError, Target};

use crate::error::{io_at, Failure};
use lmtpd_store::mboxrd::{self, Filter, BUF_SIZE};

/// What an append did.
#[derive(Debug)]
pub(crate) struct Appended {
    /// The mailbox size before the append.
    pub(crate) start: u64,
    /// Bytes appended.
    pub(crate) bytes: u64,
}

/// The bytes needed before a new separator so that it follows an empty line: none for an
/// empty mailbox or one ending in an empty line, else one or two newlines.
fn padding(file: &File, end: u64, path: &Path) -> Result<&'static [u8], Failure> {
    if end == 0 {
        return Ok(b"");
    }
    let mut tail = [0u8; 2];
    let want = end.min(2) as usize;
    file.read_exact_at(&mut tail[..want], end - want as u64)
        .map_err(io_at("read end of", path))?;
    Ok(match &tail[..want] {
        b"\n\n" | b"\n" => b"",
        [_, b'\n'] => b"\n",
        _ => b"\n\n",
    })
}

/// The header lines that carry `flags` in mbox (the form mutt, Dovecot and Thunderbird
/// read): `Status: R` for `\Seen`, `X-Status:` with `A` (answered), `F` (flagged), `T`
/// (draft), `D` (deleted). Empty without flags. Written right after the separator line,
/// outside the filter that removes such fields from the incoming message.
pub(crate) fn flag_lines(flags: Flags) -> String {
    let mut out = String::new();
    if flags.contains(Flag::Seen) {
        out.push_str("Status: R\n");
    }
    let x: String = [
        (Flag::Answered, 'A'),
        (Flag::Flagged, 'F'),
        (Flag::Draft, 'T'),
        (Flag::Deleted, 'D'),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, c)| c)
    .collect();
    if !x.is_empty() {
        out.push_str("X-Status: ");
        out.push_str(&x);
        out.push('\n');
    }
    out
}

/// Writes `d`'s copy at `target` (its trace, the body of `msg` or its edited header
/// section and body, with the target's flags) at `end` of the locked, open mailbox.
fn write_copy(
    file: &File,
    end: u64,
    path: &Path,
    msg: &Message<'_>,
    d: &Delivery<'_>,
    target: &Target,
) -> Result<u64, Failure> {
    let flags = target.flags;
    let pad = padding(file, end, path)?;
    let mut out = file;
    out.seek(SeekFrom::Start(end))
        .map_err(io_at("seek in", path))?;
    let mut filter = Filter::new(out);
    let head = mboxrd::from_line(msg.envelope.sender.as_deref(), SystemTime::now());
    let write_err = |err| io_at("write", path)(err);
    filter.raw(pad).map_err(write_err)?;
    filter.raw(head.as_bytes()).map_err(write_err)?;
    filter
        .raw(flag_lines(flags).as_bytes())
        .map_err(write_err)?;
    let mut reader = d.reader_at(msg, target).map_err(|err| Failure::Io {
        what: "open message spool".into(),
        err,
    })?;
    let mut buf = vec![0u8; BUF_SIZE];
    pump(&mut reader, &mut buf, |chunk| filter.feed(chunk)).map_err(|err| match err {
        PumpError::Read(err) => Failure::Io {
            what: "read message from spool".into(),
            err,
        },
        PumpError::Sink(err) => write_err(err),
    })?;
    let (_, written) = filter.finish().map_err(write_err)?;
    Ok(written)
}

/// A failed [`append`]: why, and whether truncating back to the old size was made durable.
pub(crate) struct AppendFailed {
    /// Why the copy was not appended.
    pub(crate) failure: Failure,
    /// False when the truncation or its fsync failed: the fsync of copies appended before
    /// this one on the same descriptor may then have consumed a writeback error.
    pub(crate) clean: bool,
}

/// Truncates back to `start` if the append unwinds (a bug), so no partial copy is left for
/// a later fsync to make durable.
struct UnwindGuard<'f> {
    file: &'f File,
    start: u64,
    armed: bool,
}

impl Drop for UnwindGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.file.set_len(self.start);
        }
    }
}

/// Appends the copy (`trace` + body of `msg`, with `flags`) to the locked, open mailbox `file` at `path`, not yet
/// durable: [`sync`] must follow before the copy counts as delivered. On failure the mailbox
/// is truncated back to its previous size and fsynced.
pub(crate) fn append(
    file: &File,
    path: &Path,
    msg: &Message<'_>,
    d: &Delivery<'_>,
    target: &Target,
) -> Result<Appended, AppendFailed> {
    let start = file
        .metadata()
        .map_err(io_at("fstat", path))
        .map_err(|failure| AppendFailed {
            failure,
            clean: true,
        })?
        .len();
    let mut guard = UnwindGuard {
        file,
        start,
        armed: true,
    };
    let written = write_copy(file, start, path, msg, d, target);
    guard.armed = false;
    match written {
        Ok(bytes) => Ok(Appended { start, bytes }),
        Err(failure) => Err(AppendFailed {
            failure,
            clean: rollback(file, start, path),
        }),
    }
}

/// Truncates back to `start` and fsyncs, removing every copy appended since, and returns
/// `failure` (a batch whose durability is in doubt is given up as a whole).
pub(crate) fn discard(file: &File, start: u64, path: &Path, failure: Failure) -> Failure {
    rollback(file, start, path);
    failure
}

/// Makes every copy appended since the mailbox had `start` bytes durable; if the fsync
/// fails, truncates back to `start` (removing all of them) and reports the error.
pub(crate) fn sync(file: &File, start: u64, path: &Path) -> Result<(), Failure> {
    match file.sync_all() {
        Ok(()) => Ok(()),
        Err(err) => {
            rollback(file, start, path);
            Err(io_at("fsync", path)(err))
        }
    }
}

/// Truncates the mailbox back to `size` and fsyncs it; failures are logged loudly (the
/// mailbox may then hold a partial message). True when both succeeded.
fn rollback(file: &File, size: u64, path: &Path) -> bool {
    let result = file.set_len(size).and_then(|()| file.sync_all());
    match result {
        Ok(()) => {
            log::info!(
                "mbox: truncated {} back to {size} bytes after a failed append",
                path.display()
            );
            true
        }
        Err(err) => {
            log::error!(
                "mbox: cannot truncate {} back to {size} bytes after a failed append: {err}; \
                 the mailbox may hold a partial message",
                path.display()
            );
            false
        }
    }
}
