//! `lmtpd export`'s output side, shared by the SQL stores: messages written as one mboxrd
//! file (the form the mbox store writes) or as one `<uid>.eml` file each, streamed through a
//! fixed buffer, files created 0600 and removed again when the export fails.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::mboxrd::{self, Filter};
use crate::PumpError;

/// Size of the buffers messages are copied through.
const CHUNK: usize = 64 * 1024;

/// The output format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One mboxrd file in the form the mbox store writes ([`crate::mboxrd`]):
    /// `From <sender> <asctime>` separators (`MAILER-DAEMON` for `<>`), `>`-quoting of every
    /// `>*From ` line, reader-trusted header fields (`Status`, `X-UID`, ...) removed, a blank
    /// line after each message.
    Mbox,
    /// A directory with one `<uid>.eml` file per message (the stored bytes, LF line ends).
    Eml,
}

/// One exported message: its uid, its trace header block (the body follows it), its
/// envelope sender (empty for `<>`) and when it was received (Unix seconds).
pub struct ExportRow<'a> {
    /// The message's uid in its mailbox.
    pub uid: i64,
    /// The copy's trace header block.
    pub trace: &'a [u8],
    /// The envelope sender, empty for `<>`.
    pub sender: &'a str,
    /// Unix seconds.
    pub received: i64,
}

/// Where exported messages go.
pub enum Sink {
    /// One mbox file.
    Mbox {
        /// Its path.
        path: PathBuf,
        /// The open file.
        file: BufWriter<File>,
    },
    /// A directory of `.eml` files.
    Eml {
        /// The directory.
        dir: PathBuf,
        /// The files written so far.
        written: Vec<PathBuf>,
        /// The copy buffer.
        buf: Vec<u8>,
    },
}

fn create_new(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("{}: cannot create: {err}", path.display()))
}

impl Sink {
    /// `Mbox`: `out` is a new file (an existing file is refused). `Eml`: `out` is a
    /// directory, created if missing; an existing `<uid>.eml` is refused.
    pub fn open(format: ExportFormat, out: &Path) -> Result<Sink, String> {
        match format {
            ExportFormat::Mbox => Ok(Sink::Mbox {
                path: out.to_path_buf(),
                file: BufWriter::with_capacity(CHUNK, create_new(out)?),
            }),
            ExportFormat::Eml => {
                if !out.is_dir() {
                    DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(out)
                        .map_err(|err| {
                            format!("{}: cannot create directory: {err}", out.display())
                        })?;
                }
                Ok(Sink::Eml {
                    dir: out.to_path_buf(),
                    written: Vec::new(),
                    buf: vec![0u8; CHUNK],
                })
            }
        }
    }

    /// Flushes and syncs the mbox file.
    pub fn finish(self) -> Result<(), String> {
        if let Sink::Mbox { path, file } = self {
            let at = |err: io::Error| format!("{}: {err}", path.display());
            let file = file.into_inner().map_err(|e| at(e.into_error()))?;
            file.sync_all().map_err(at)?;
        }
        Ok(())
    }

    /// Removes what this export wrote.
    pub fn discard(self) {
        match self {
            Sink::Mbox { path, file } => {
                drop(file);
                let _ = fs::remove_file(path);
            }
            Sink::Eml { written, .. } => {
                for p in written {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }

    /// Writes one message: `row`'s trace block, then `body` read to its end.
    pub fn write(&mut self, row: &ExportRow<'_>, body: &mut dyn Read) -> Result<(), String> {
        let mut buf = vec![0u8; CHUNK];
        match self {
            Sink::Mbox { path, file } => {
                let at = |err: io::Error| format!("{}: {err}", path.display());
                let sender = (!row.sender.is_empty()).then_some(row.sender);
                let received =
                    UNIX_EPOCH + Duration::from_secs(u64::try_from(row.received).unwrap_or(0));
                // The same form the mbox store writes: quoting, reader-trusted fields dropped.
                let mut filter = Filter::new(&mut *file);
                filter
                    .raw(mboxrd::from_line(sender, received).as_bytes())
                    .map_err(at)?;
                filter.feed(row.trace).map_err(at)?;
                pump(body, &mut buf, |chunk| filter.feed(chunk)).map_err(at)?;
                filter.finish().map(drop).map_err(at)
            }
            Sink::Eml { dir, written, buf } => {
                let path = dir.join(format!("{}.eml", row.uid));
                let file = create_new(&path)?;
                written.push(path.clone());
                let at = |err: io::Error| format!("{}: {err}", path.display());
                let mut w = BufWriter::with_capacity(CHUNK, file);
                w.write_all(row.trace).map_err(at)?;
                pump(body, buf, |chunk| w.write_all(chunk)).map_err(at)?;
                w.flush().map_err(at)
            }
        }
    }
}

/// Reads `body` to the end through `buf`, handing each chunk to `f`.
fn pump(
    body: &mut dyn Read,
    buf: &mut [u8],
    f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    crate::pump(body, buf, f)
        .map(drop)
        .map_err(|(PumpError::Read(err) | PumpError::Sink(err))| err)
}
