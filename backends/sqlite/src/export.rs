//! `lmtpd export`: a mailbox (or one folder of it) out of the database as an mboxrd file or
//! as one `<uid>.eml` file per message, streamed from the BLOBs in fixed-size chunks.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::time::{Duration, UNIX_EPOCH};

use lmtpd_store::mboxrd::{self, Filter};
use lmtpd_store::PumpError;
use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::deliver::{CHUNK, INBOX};
use crate::{conn, migrate};

/// The output format of [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One mboxrd file in the form the mbox store writes ([`lmtpd_store::mboxrd`]):
    /// `From <sender> <asctime>` separators (`MAILER-DAEMON` for `<>`), `>`-quoting of every
    /// `>*From ` line, reader-trusted header fields (`Status`, `X-UID`, ...) removed, a blank
    /// line after each message.
    Mbox,
    /// A directory with one `<uid>.eml` file per message (the stored bytes, LF line ends).
    Eml,
}

/// Exports the messages of `mailbox` (all folders, or only `folder`) in uid order, each as
/// its stored copy (trace headers followed by the body).
///
/// `Mbox`: `out` is a new file (an existing file is refused). `Eml`: `out` is a directory,
/// created if missing; an existing `<uid>.eml` is refused. Files are created with mode 0600.
/// The database is opened read-only and read in one snapshot. On error, the files written
/// by this call are removed. Returns the number of messages exported.
pub fn export(
    db: &Path,
    mailbox: &str,
    folder: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<usize, String> {
    if !db.is_file() {
        return Err(format!("{}: no such database file", db.display()));
    }
    let mut conn = conn::open_read_only(db)?;
    migrate::require_current(&conn, db)?;
    let tx = conn
        .transaction()
        .map_err(|e| format!("{}: {e}", db.display()))?;
    let folder = folder.map(|f| {
        if f.eq_ignore_ascii_case(INBOX) {
            INBOX
        } else {
            f
        }
    });

    let mut sink = match format {
        ExportFormat::Mbox => Sink::mbox(out)?,
        ExportFormat::Eml => Sink::eml(out)?,
    };
    match export_rows(&tx, db, mailbox, folder, &mut sink) {
        Ok(n) => {
            sink.finish()?;
            Ok(n)
        }
        Err(err) => {
            sink.discard();
            Err(err)
        }
    }
}

/// Where exported messages go.
enum Sink {
    Mbox {
        path: PathBuf,
        file: BufWriter<File>,
    },
    Eml {
        dir: PathBuf,
        written: Vec<PathBuf>,
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
    fn mbox(path: &Path) -> Result<Sink, String> {
        Ok(Sink::Mbox {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(CHUNK, create_new(path)?),
        })
    }

    fn eml(dir: &Path) -> Result<Sink, String> {
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|err| format!("{}: cannot create directory: {err}", dir.display()))?;
        }
        Ok(Sink::Eml {
            dir: dir.to_path_buf(),
            written: Vec::new(),
        })
    }

    /// Flushes and syncs the mbox file.
    fn finish(self) -> Result<(), String> {
        if let Sink::Mbox { path, file } = self {
            let at = |err: io::Error| format!("{}: {err}", path.display());
            let file = file.into_inner().map_err(|e| at(e.into_error()))?;
            file.sync_all().map_err(at)?;
        }
        Ok(())
    }

    /// Removes what this export wrote.
    fn discard(self) {
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
}

/// One row of the export query.
struct Row {
    uid: i64,
    trace: Vec<u8>,
    message: i64,
    sender: String,
    received: i64,
}

fn export_rows(
    conn: &Connection,
    db: &Path,
    mailbox: &str,
    folder: Option<&str>,
    sink: &mut Sink,
) -> Result<usize, String> {
    let sql_err = |e: rusqlite::Error| format!("{}: {e}", db.display());
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM mailboxes WHERE address = ?1",
            [mailbox],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    let Some(id) = id else {
        return Err(format!("{}: no mailbox {mailbox}", db.display()));
    };
    let mut stmt = conn
        .prepare(
            "SELECT d.uid, d.trace, m.id, m.sender, m.received \
             FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.mailbox_id = ?1 AND (?2 IS NULL OR d.folder = ?2) \
             ORDER BY d.uid",
        )
        .map_err(sql_err)?;
    let mut rows = stmt.query(params![id, folder]).map_err(sql_err)?;
    let mut buf = vec![0u8; CHUNK];
    let mut count = 0;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let row = Row {
            uid: r.get(0).map_err(sql_err)?,
            trace: r.get(1).map_err(sql_err)?,
            message: r.get(2).map_err(sql_err)?,
            sender: r.get(3).map_err(sql_err)?,
            received: r.get(4).map_err(sql_err)?,
        };
        let mut blob = conn
            .blob_open(MAIN_DB, "messages", "body", row.message, true)
            .map_err(sql_err)?;
        write_message(sink, &row, &mut blob, &mut buf)?;
        count += 1;
    }
    Ok(count)
}

fn write_message(
    sink: &mut Sink,
    row: &Row,
    body: &mut dyn Read,
    buf: &mut [u8],
) -> Result<(), String> {
    match sink {
        Sink::Mbox { path, file } => {
            let at = |err: io::Error| format!("{}: {err}", path.display());
            let sender = (!row.sender.is_empty()).then_some(row.sender.as_str());
            let received =
                UNIX_EPOCH + Duration::from_secs(u64::try_from(row.received).unwrap_or(0));
            // The same form the mbox store writes: quoting, reader-trusted fields dropped.
            let mut filter = Filter::new(&mut *file);
            filter
                .raw(mboxrd::from_line(sender, received).as_bytes())
                .map_err(at)?;
            filter.feed(&row.trace).map_err(at)?;
            pump(body, buf, |chunk| filter.feed(chunk)).map_err(at)?;
            filter.finish().map(drop).map_err(at)
        }
        Sink::Eml { dir, written } => {
            let path = dir.join(format!("{}.eml", row.uid));
            let file = create_new(&path)?;
            written.push(path.clone());
            let at = |err: io::Error| format!("{}: {err}", path.display());
            let mut w = BufWriter::with_capacity(CHUNK, file);
            w.write_all(&row.trace).map_err(at)?;
            pump(body, buf, |chunk| w.write_all(chunk)).map_err(at)?;
            w.flush().map_err(at)
        }
    }
}

/// Reads `body` to the end through `buf`, handing each chunk to `f`.
fn pump(
    body: &mut dyn Read,
    buf: &mut [u8],
    f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    lmtpd_store::pump(body, buf, f)
        .map(drop)
        .map_err(|(PumpError::Read(err) | PumpError::Sink(err))| err)
}
