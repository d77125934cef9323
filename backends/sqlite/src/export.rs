//! `lmtpd export`: a mailbox (or one folder of it) out of the database as an mboxrd file or
//! as one `<uid>.eml` file per message, streamed from the BLOBs (or the body files,
//! `bodies.rs`) in fixed-size chunks.

use std::io::Read;
use std::path::Path;

pub use lmtpd_store::export::ExportFormat;
use lmtpd_store::export::{ExportRow, Sink};
use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::deliver::INBOX;
use crate::{bodies, conn, migrate};

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

    let mut sink = Sink::open(format, out)?;
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

/// One row of the export query.
struct Row {
    uid: i64,
    trace: Vec<u8>,
    message: i64,
    sender: String,
    received: i64,
    size: i64,
    body_file: Option<String>,
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
            "SELECT d.uid, d.trace, m.id, m.sender, m.received, m.size, m.body_file \
             FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.mailbox_id = ?1 AND (?2 IS NULL OR d.folder = ?2) \
             ORDER BY d.uid",
        )
        .map_err(sql_err)?;
    let mut rows = stmt.query(params![id, folder]).map_err(sql_err)?;
    let mut count = 0;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let row = Row {
            uid: r.get(0).map_err(sql_err)?,
            trace: r.get(1).map_err(sql_err)?,
            message: r.get(2).map_err(sql_err)?,
            sender: r.get(3).map_err(sql_err)?,
            received: r.get(4).map_err(sql_err)?,
            size: r.get(5).map_err(sql_err)?,
            body_file: r.get(6).map_err(sql_err)?,
        };
        let mut body: Box<dyn Read> = match &row.body_file {
            Some(name) => {
                let size = u64::try_from(row.size).unwrap_or(0);
                Box::new(bodies::open_body(db, name, size).map_err(|e| {
                    format!("{}: message {}: body file: {e}", db.display(), row.message)
                })?)
            }
            None => Box::new(
                conn.blob_open(MAIN_DB, "messages", "body", row.message, true)
                    .map_err(sql_err)?,
            ),
        };
        let export_row = ExportRow {
            uid: row.uid,
            trace: &row.trace,
            sender: &row.sender,
            received: row.received,
        };
        sink.write(&export_row, &mut body)?;
        count += 1;
    }
    Ok(count)
}
