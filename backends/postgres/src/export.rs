//! `lmtpd export --postgres`: a mailbox (or one folder of it) out of the database as an
//! mboxrd file or one `<uid>.eml` file per message, read in one snapshot, the rows through a
//! cursor and each body a chunk at a time (memory stays bounded whatever the mailbox).

use std::io::{self, Read};
use std::path::Path;

use lmtpd_store::export::{ExportFormat, ExportRow, Sink};
use postgres::{NoTls, Statement, Transaction};

/// Rows fetched from the cursor at a time.
const BATCH: i32 = 256;

/// Exports the messages of `mailbox` (all folders, or only `folder`) in uid order, each as
/// its stored copy (trace headers followed by the body). `Mbox`: `out` is a new file;
/// `Eml`: `out` is a directory (created if missing). Files are created 0600 and removed when
/// the export fails. Returns the number of messages exported.
pub fn export(
    conninfo: &str,
    mailbox: &str,
    folder: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<usize, String> {
    let cfg = crate::PostgresConfig::new(conninfo)
        .client()
        .map_err(|e| e.to_string())?;
    let mut client = cfg.connect(NoTls).map_err(|e| format!("postgres: {e}"))?;
    let status = crate::migrate::schema_status_of(&mut client).map_err(|e| e.to_string())?;
    if status.version != status.known {
        return Err(format!(
            "postgres: {status}: not the schema this lmtpd knows"
        ));
    }
    let db = |e: postgres::Error| format!("postgres: {e}");
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db)?;
    let folder = folder.map(|f| {
        if f.eq_ignore_ascii_case(crate::deliver::INBOX) {
            crate::deliver::INBOX
        } else {
            f
        }
    });
    let Some(id) = tx
        .query_opt("SELECT id FROM mailboxes WHERE address = $1", &[&mailbox])
        .map_err(db)?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Err(format!("postgres: no mailbox {mailbox}"));
    };
    let mut sink = Sink::open(format, out)?;
    match rows(&mut tx, id, folder, &mut sink) {
        Ok(n) => {
            sink.finish()?;
            Ok(n)
        }
        Err(e) => {
            sink.discard();
            Err(e)
        }
    }
}

fn rows(
    tx: &mut Transaction<'_>,
    mailbox: i64,
    folder: Option<&str>,
    sink: &mut Sink,
) -> Result<usize, String> {
    let db = |e: postgres::Error| format!("postgres: {e}");
    let stmt = tx
        .prepare(
            "SELECT d.uid, d.trace, m.id, m.sender, m.received \
             FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.mailbox_id = $1 AND ($2::TEXT IS NULL OR d.folder = $2) \
             ORDER BY d.uid",
        )
        .map_err(db)?;
    let chunk = tx
        .prepare("SELECT data FROM message_chunks WHERE message_id = $1 AND seq = $2")
        .map_err(db)?;
    let portal = tx.bind(&stmt, &[&mailbox, &folder]).map_err(db)?;
    let mut count = 0;
    loop {
        let batch = tx.query_portal(&portal, BATCH).map_err(db)?;
        if batch.is_empty() {
            return Ok(count);
        }
        for r in batch {
            let trace: Vec<u8> = r.get(1);
            let sender: String = r.get(3);
            let row = ExportRow {
                uid: r.get(0),
                trace: &trace,
                sender: &sender,
                received: r.get(4),
            };
            let mut body = Chunks {
                tx: &mut *tx,
                stmt: &chunk,
                message: r.get(2),
                seq: 0,
                cur: Vec::new(),
                pos: 0,
            };
            sink.write(&row, &mut body)?;
            count += 1;
        }
    }
}

/// A body read a `message_chunks` row at a time.
struct Chunks<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    stmt: &'t Statement,
    message: i64,
    seq: i32,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Chunks<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            let row = self
                .tx
                .query_opt(self.stmt, &[&self.message, &self.seq])
                .map_err(io::Error::other)?;
            let Some(row) = row else {
                return Ok(0);
            };
            self.cur = row.get(0);
            self.pos = 0;
            self.seq += 1;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
