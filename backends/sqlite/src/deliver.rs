//! One recipient's delivery, run inside its savepoint of the group transaction
//! (`group.rs`): checks the quota, creates the mailbox row if needed, stores the shared body
//! (once per `deliver` call) by incremental BLOB I/O or as a row naming the call's body
//! file (`bodies.rs`), inserts the delivery row and bumps
//! `next_uid`.

use std::io::{Read, Write};

use lmtpd_store::{pump, Delivery, Folder, Message, PumpError, Target};
use rusqlite::blob::ZeroBlob;
use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::error::Failure;
use lmtpd_store::headers::Meta;

/// Size of the buffer the body is copied through.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The folder of INBOX (the default of `deliveries.folder`).
pub(crate) const INBOX: &str = "INBOX";

/// What one successful delivery produced, for the log.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) uid: i64,
    pub(crate) folder: String,
    pub(crate) message: i64,
    /// The copy's body row names the call's body file.
    pub(crate) in_file: bool,
}

/// Per-`deliver` call state shared by its recipients.
pub(crate) struct Shared<'m> {
    pub(crate) msg: &'m Message<'m>,
    pub(crate) meta: Meta,
    /// Unix time of the `deliver` call (`messages.received`).
    pub(crate) received: i64,
    /// The `messages` row of this call, once a recipient's step stored it.
    pub(crate) body_row: Option<i64>,
    /// The call's durable body file (`bodies.rs`), when the body is large enough for one.
    pub(crate) body_file: Option<&'m str>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stores one copy of `d` at `target` on `tx`, which is inside the copy's savepoint of an
/// open transaction; the body row is inserted by the first copy whose step gets that far
/// (and is rolled back with that step), so no copy's failure can leave an orphan body.
/// The copy is durable only once the group transaction commits.
pub(crate) fn stage_one(
    tx: &Connection,
    shared: &mut Shared<'_>,
    d: &Delivery<'_>,
    target: &Target,
    now: i64,
) -> Result<Stored, Failure> {
    let rcpt = d.rcpt;
    let size = d.copy_size_at(shared.msg, target);

    let row: Option<(i64, i64, i64, i64)> = tx
        .query_row(
            "SELECT id, used_bytes, used_messages, next_uid FROM mailboxes WHERE address = ?1",
            [&rcpt.user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(Failure::sql("read mailbox"))?;
    let (used_bytes, used_messages) = row.map_or((0, 0), |(_, b, m, _)| {
        (u64::try_from(b).unwrap_or(0), u64::try_from(m).unwrap_or(0))
    });
    if rcpt.quota.would_exceed(used_bytes, used_messages, size) {
        return Err(Failure::OverQuota(format!(
            "{size}-byte copy exceeds the quota of {} ({used_bytes} bytes, {used_messages} \
             messages used; limits {:?} bytes (grace {}), {:?} messages)",
            rcpt.user, rcpt.quota.bytes, rcpt.quota.grace, rcpt.quota.messages
        )));
    }

    let (mailbox, uid) = match row {
        Some((id, _, _, next_uid)) => (id, next_uid),
        None => {
            tx.execute(
                "INSERT INTO mailboxes (address, created) VALUES (?1, ?2)",
                params![rcpt.user, now],
            )
            .map_err(Failure::sql("create mailbox"))?;
            (tx.last_insert_rowid(), 1)
        }
    };
    let folder = resolve_folder(tx, mailbox, &target.folder, now)?;

    // A copy whose header section a filter edited has a body row of its own: the trace
    // column holds the trace and the edited header section, the row the rest of the body.
    let skip = target.edit.as_ref().map_or(0, |e| e.replaces);
    let message = match shared.body_row {
        Some(id) if skip == 0 && body_exists(tx, id)? => id,
        _ => match shared.body_file.filter(|_| skip == 0) {
            Some(name) => insert_body_file(tx, shared, name)?,
            None => insert_body(tx, shared, skip)?,
        },
    };

    tx.execute(
        "INSERT INTO deliveries \
         (mailbox_id, message_id, folder, uid, recipient, size, flags, delivered, trace) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            mailbox,
            message,
            folder,
            uid,
            rcpt.address,
            to_i64(size),
            target.flags.imap_list(),
            now,
            d.prefix(target).as_ref()
        ],
    )
    .map_err(Failure::sql("insert delivery"))?;
    tx.execute(
        "UPDATE mailboxes SET next_uid = ?2, quota_bytes = ?3, quota_messages = ?4 \
         WHERE id = ?1",
        params![
            mailbox,
            uid + 1,
            rcpt.quota.bytes.map(to_i64),
            rcpt.quota.messages.map(to_i64)
        ],
    )
    .map_err(Failure::sql("update mailbox"))?;
    if skip == 0 {
        shared.body_row = Some(message);
    }
    Ok(Stored {
        uid,
        folder,
        message,
        in_file: skip == 0 && shared.body_file.is_some(),
    })
}

/// The folder a target names: INBOX for the inbox (or an empty name); a named folder with
/// `create` (recording it in `folders`), or without when the folder already exists (a
/// `folders` row or any delivery in it), else INBOX.
fn resolve_folder(
    tx: &Connection,
    mailbox: i64,
    folder: &Folder,
    now: i64,
) -> Result<String, Failure> {
    let (name, create) = match folder {
        Folder::Named { name, create } if !name.is_empty() => (name.as_str(), *create),
        _ => return Ok(INBOX.to_string()),
    };
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    match create {
        true => {
            tx.execute(
                "INSERT OR IGNORE INTO folders (mailbox_id, name, created) VALUES (?1, ?2, ?3)",
                params![mailbox, name, now],
            )
            .map_err(Failure::sql("create folder"))?;
            Ok(name.to_string())
        }
        false => {
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM folders WHERE mailbox_id = ?1 AND name = ?2) \
                     OR EXISTS (SELECT 1 FROM deliveries WHERE mailbox_id = ?1 AND folder = ?2)",
                    params![mailbox, name],
                    |r| r.get(0),
                )
                .map_err(Failure::sql("look up folder"))?;
            Ok(if exists { name } else { INBOX }.to_string())
        }
    }
}

/// True when the body row stored by an earlier recipient of this call is still there (a
/// client may have expunged that recipient's copy in between, which removes the body).
fn body_exists(tx: &Connection, id: i64) -> Result<bool, Failure> {
    tx.query_row("SELECT 1 FROM messages WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(Failure::sql("look up body"))
}

/// Inserts the `messages` row of a body kept in the (already durable) body file `name`: an
/// empty `body` BLOB and `body_file` naming the file.
fn insert_body_file(tx: &Connection, shared: &Shared<'_>, name: &str) -> Result<i64, Failure> {
    let env = shared.msg.envelope;
    tx.execute(
        "INSERT INTO messages \
         (received, sender, transaction_id, size, message_id, subject, body, body_file) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, X'', ?7)",
        params![
            shared.received,
            env.sender_or_empty(),
            env.id,
            to_i64(shared.msg.body.len()),
            shared.meta.message_id,
            shared.meta.subject,
            name
        ],
    )
    .map_err(Failure::sql("insert message"))?;
    Ok(tx.last_insert_rowid())
}

/// Inserts the `messages` row with a zero-filled BLOB of the body's size (without its first
/// `skip` bytes, the header section an edited copy replaces) and streams the spooled body
/// into it through a fixed buffer.
fn insert_body(tx: &Connection, shared: &Shared<'_>, skip: u64) -> Result<i64, Failure> {
    let body = shared.msg.body;
    let len = body.len().saturating_sub(skip);
    let blob_len = i32::try_from(len)
        .map_err(|_| Failure::TooBig(format!("{len}-byte body exceeds the largest SQLite BLOB")))?;
    let env = shared.msg.envelope;
    tx.execute(
        "INSERT INTO messages \
         (received, sender, transaction_id, size, message_id, subject, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            shared.received,
            env.sender_or_empty(),
            env.id,
            to_i64(len),
            shared.meta.message_id,
            shared.meta.subject,
            ZeroBlob(blob_len)
        ],
    )
    .map_err(Failure::sql("insert message"))?;
    let id = tx.last_insert_rowid();
    let mut blob = tx
        .blob_open(MAIN_DB, "messages", "body", id, false)
        .map_err(Failure::sql("open body blob"))?;
    let mut reader = body.open().map_err(|err| Failure::Io {
        what: "open spooled body",
        err,
    })?;
    std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).map_err(|err| {
        Failure::Io {
            what: "read spooled body",
            err,
        }
    })?;
    copy_exact(&mut reader, &mut blob, len, "write body blob")?;
    blob.close().map_err(Failure::sql("close body blob"))?;
    Ok(id)
}

/// Copies exactly `len` bytes from `reader` to `out` through a [`CHUNK`]-sized buffer;
/// a body that turns out shorter or longer than announced is an error. `what` names the
/// write in errors.
pub(crate) fn copy_exact(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    len: u64,
    what: &'static str,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    pump(reader, &mut buf, |chunk| {
        if done + chunk.len() as u64 > len {
            return Err(Failure::Local(format!(
                "spooled body is longer than its recorded {len} bytes"
            )));
        }
        out.write_all(chunk)
            .map_err(|err| Failure::Io { what, err })?;
        done += chunk.len() as u64;
        Ok(())
    })
    .map_err(|err| match err {
        PumpError::Read(err) => Failure::Io {
            what: "read spooled body",
            err,
        },
        PumpError::Sink(failure) => failure,
    })?;
    if done != len {
        return Err(Failure::Local(format!(
            "spooled body has {done} bytes, expected {len}"
        )));
    }
    Ok(())
}
