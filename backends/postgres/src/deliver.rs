//! One [`lmtpd_store::MailStore::deliver`] call as one transaction: the body stored first
//! (once), then the recipients' mailbox rows created and locked in one global order, then
//! every recipient copy in a savepoint of its own (quota check with the counter update,
//! folder, the delivery row), then one `COMMIT`.

use std::collections::HashMap;
use std::io::Read;

use lmtpd_store::headers::Meta;
use lmtpd_store::{pump, Delivery, Folder, PumpError, Request, Target};
use postgres::{Client, Statement, Transaction};

use crate::{Failure, CHUNK};

/// The folder of INBOX (the default of `deliveries.folder`).
pub(crate) const INBOX: &str = "INBOX";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The statements every copy runs, prepared once per call.
struct Statements {
    mailbox_insert: Statement,
    mailbox_lock: Statement,
    take_uid: Statement,
    usage: Statement,
    delivery: Statement,
    chunk: Statement,
}

/// Per-call state: the message, its listing fields and the body rows stored so far (one
/// per number of header octets an edited copy leaves out; 0 for the message as received).
struct Call<'r> {
    req: &'r Request<'r>,
    meta: &'r Meta,
    received: i64,
    bodies: HashMap<u64, i64>,
    /// The locked mailbox rows of the call's recipients, by address.
    mailboxes: HashMap<String, i64>,
    st: Statements,
}

/// One copy's result: the delivery's index, the target (for the log) and what happened.
pub(crate) type Staged = (usize, String, Result<(), Failure>);

/// Stages every copy of `req` in one transaction and commits it. Returns each copy's own
/// result and the commit's (an `Ok` copy is durable only when the commit is `Ok`); `Err`
/// when the transaction could not even start.
pub(crate) fn stage_all(
    client: &mut Client,
    req: &Request<'_>,
    meta: &Meta,
    now: i64,
) -> Result<(Vec<Staged>, Result<(), String>), Failure> {
    let mut tx = client
        .transaction()
        .map_err(Failure::sql("begin transaction"))?;
    let st = prepare(&mut tx)?;
    let mut call = Call {
        req,
        meta,
        received: now,
        bodies: HashMap::new(),
        mailboxes: HashMap::new(),
        st,
    };
    // The body first, before any lock another delivery could wait for.
    let plain = req
        .deliveries
        .iter()
        .flat_map(|d| &d.targets)
        .any(|t| t.edit.is_none());
    if plain {
        let id = insert_body(&mut tx, &call, 0)?;
        call.bodies.insert(0, id);
    }
    lock_mailboxes(&mut tx, &mut call, now)?;
    let mut out = Vec::new();
    let mut stored_any = false;
    let mut plain_used = false;
    for (i, d) in req.deliveries.iter().enumerate() {
        for target in &d.targets {
            let result = match tx.savepoint("copy") {
                Ok(mut sp) => {
                    let bodies_before = call.bodies.clone();
                    match stage_one(&mut sp, &mut call, d, target, now) {
                        Ok(()) => sp.commit().map_err(Failure::sql("release savepoint")),
                        Err(f) => {
                            // Dropping the savepoint rolls it back, with any body row it
                            // stored: forget those.
                            call.bodies = bodies_before;
                            Err(f)
                        }
                    }
                }
                Err(err) => Err(Failure::Sql {
                    what: "savepoint",
                    err,
                }),
            };
            if result.is_ok() {
                stored_any = true;
                plain_used |= target.edit.is_none();
            }
            out.push((i, target.folder.to_string(), result));
        }
    }
    if !stored_any {
        // Nothing to keep: the body goes with the transaction.
        let _ = tx.rollback();
        return Ok((out, Ok(())));
    }
    if let (false, Some(&id)) = (plain_used, call.bodies.get(&0)) {
        tx.execute("DELETE FROM messages WHERE id = $1", &[&id])
            .map_err(Failure::sql("remove the unused body"))?;
    }
    let commit = tx.commit().map_err(|e| match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    });
    Ok((out, commit))
}

/// Creates the mailbox rows of every recipient that lacks one and locks all of them, both
/// in one global order (addresses sorted, then ids), so that concurrent deliveries with
/// overlapping recipients wait for each other instead of deadlocking.
fn lock_mailboxes(tx: &mut Transaction<'_>, call: &mut Call<'_>, now: i64) -> Result<(), Failure> {
    let mut users: Vec<&str> = call
        .req
        .deliveries
        .iter()
        .map(|d| d.rcpt.user.as_str())
        .collect();
    users.sort_unstable();
    users.dedup();
    for u in &users {
        tx.execute(&call.st.mailbox_insert, &[u, &now])
            .map_err(Failure::sql("create mailbox"))?;
    }
    let rows = tx
        .query(&call.st.mailbox_lock, &[&users])
        .map_err(Failure::sql("lock mailboxes"))?;
    for row in rows {
        call.mailboxes.insert(row.get(1), row.get(0));
    }
    Ok(())
}

fn prepare(tx: &mut Transaction<'_>) -> Result<Statements, Failure> {
    let p = |tx: &mut Transaction<'_>, sql: &str| tx.prepare(sql).map_err(Failure::sql("prepare"));
    Ok(Statements {
        mailbox_insert: p(
            tx,
            "INSERT INTO mailboxes (address, created) VALUES ($1, $2) \
             ON CONFLICT (address) DO NOTHING",
        )?,
        mailbox_lock: p(
            tx,
            "SELECT id, address FROM mailboxes WHERE address = ANY($1) ORDER BY id FOR UPDATE",
        )?,
        // The quota check and the counter update in one statement on the locked row: two
        // nodes delivering at once cannot both pass a check their sum fails. The rule of
        // `Quota::would_exceed`: with a byte limit $3 the usage must be below it and the
        // copy ($2) may end at most the grace ($5) above it (written as a subtraction so
        // that a huge grace cannot overflow BIGINT).
        take_uid: p(
            tx,
            "UPDATE mailboxes SET used_bytes = used_bytes + $2, used_messages = used_messages + 1, \
             next_uid = next_uid + 1, quota_bytes = $3, quota_messages = $4 \
             WHERE id = $1 \
             AND ($3::BIGINT IS NULL OR (used_bytes < $3 AND used_bytes + $2 - $5::BIGINT <= $3)) \
             AND ($4::BIGINT IS NULL OR used_messages + 1 <= $4) \
             RETURNING next_uid - 1",
        )?,
        usage: p(
            tx,
            "SELECT used_bytes, used_messages FROM mailboxes WHERE id = $1",
        )?,
        delivery: p(
            tx,
            "INSERT INTO deliveries \
             (mailbox_id, message_id, folder, uid, recipient, size, flags, delivered, trace) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )?,
        chunk: p(
            tx,
            "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
        )?,
    })
}

fn stage_one(
    tx: &mut Transaction<'_>,
    call: &mut Call<'_>,
    d: &Delivery<'_>,
    target: &Target,
    now: i64,
) -> Result<(), Failure> {
    let rcpt = d.rcpt;
    let size = d.copy_size_at(&call.req.message, target);
    let mailbox = *call
        .mailboxes
        .get(&rcpt.user)
        .ok_or_else(|| Failure::Local(format!("mailbox row of {} not locked", rcpt.user)))?;
    let quota_bytes = rcpt.quota.bytes.map(to_i64);
    let quota_messages = rcpt.quota.messages.map(to_i64);
    let uid: i64 = match tx
        .query_opt(
            &call.st.take_uid,
            &[
                &mailbox,
                &to_i64(size),
                &quota_bytes,
                &quota_messages,
                &to_i64(rcpt.quota.grace),
            ],
        )
        .map_err(Failure::sql("update mailbox"))?
    {
        Some(row) => row.get(0),
        None => {
            let usage = tx
                .query_one(&call.st.usage, &[&mailbox])
                .map_err(Failure::sql("read mailbox usage"))?;
            let (b, m): (i64, i64) = (usage.get(0), usage.get(1));
            return Err(Failure::OverQuota(format!(
                "{size}-byte copy exceeds the quota of {} ({b} bytes, {m} messages used; \
                 limits {:?} bytes (grace {}), {:?} messages)",
                rcpt.user, rcpt.quota.bytes, rcpt.quota.grace, rcpt.quota.messages
            )));
        }
    };
    let folder = resolve_folder(tx, mailbox, &target.folder, now)?;
    // A copy whose header section a filter edited has a body row of its own without the
    // original header section; its trace column holds the trace and the edited header.
    let skip = target.edit.as_ref().map_or(0, |e| e.replaces);
    let message = match call.bodies.get(&skip) {
        Some(&id) => id,
        None => {
            let id = insert_body(tx, call, skip)?;
            call.bodies.insert(skip, id);
            id
        }
    };
    let prefix = d.prefix(target);
    tx.execute(
        &call.st.delivery,
        &[
            &mailbox,
            &message,
            &folder,
            &uid,
            &rcpt.address,
            &to_i64(size),
            &target.flags.imap_list(),
            &now,
            &prefix.as_ref(),
        ],
    )
    .map_err(Failure::sql("insert delivery"))?;
    Ok(())
}

/// The folder a target names: INBOX for the inbox (or an empty name); a named folder with
/// `create` (recording it in `folders`), or without when the folder already exists (a
/// `folders` row or any delivery in it), else INBOX.
fn resolve_folder(
    tx: &mut Transaction<'_>,
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
    if create {
        tx.execute(
            "INSERT INTO folders (mailbox_id, name, created) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&mailbox, &name, &now],
        )
        .map_err(Failure::sql("create folder"))?;
        return Ok(name.to_string());
    }
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM folders WHERE mailbox_id = $1 AND name = $2) \
             OR EXISTS (SELECT 1 FROM deliveries WHERE mailbox_id = $1 AND folder = $2)",
            &[&mailbox, &name],
        )
        .map_err(Failure::sql("look up folder"))?
        .get(0);
    Ok(if exists { name } else { INBOX }.to_string())
}

/// Inserts the `messages` row and streams the spooled body (without its first `skip`
/// bytes) into `message_chunks` rows of at most [`CHUNK`] bytes: memory stays one chunk
/// whatever the message size.
fn insert_body(tx: &mut Transaction<'_>, call: &Call<'_>, skip: u64) -> Result<i64, Failure> {
    let body = call.req.message.body;
    let env = call.req.message.envelope;
    let len = body.len().saturating_sub(skip);
    let id: i64 = tx
        .query_one(
            "INSERT INTO messages (received, sender, transaction_id, size, message_id, subject) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &call.received,
                &env.sender_or_empty(),
                &env.id,
                &to_i64(len),
                &call.meta.message_id,
                &call.meta.subject,
            ],
        )
        .map_err(Failure::sql("insert message"))?
        .get(0);
    let io = |what: &'static str| move |err| Failure::Io { what, err };
    let mut reader = body.open().map_err(io("open spooled body"))?;
    std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
        .map_err(io("read spooled body"))?;
    // Fill whole chunks before each insert (the spool hands out smaller reads).
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut seq: i32 = 0;
    let mut done: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut flush = |chunk: &mut Vec<u8>, tx: &mut Transaction<'_>| -> Result<(), Failure> {
        if chunk.is_empty() {
            return Ok(());
        }
        tx.execute(&call.st.chunk, &[&id, &seq, &chunk.as_slice()])
            .map_err(Failure::sql("insert body chunk"))?;
        seq += 1;
        chunk.clear();
        Ok(())
    };
    pump(&mut reader, &mut buf, |piece| {
        done += piece.len() as u64;
        let mut rest = piece;
        while !rest.is_empty() {
            let room = CHUNK - chunk.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            chunk.extend_from_slice(now);
            rest = later;
            if chunk.len() == CHUNK {
                flush(&mut chunk, tx)?;
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        PumpError::Read(err) => Failure::Io {
            what: "read spooled body",
            err,
        },
        PumpError::Sink(f) => f,
    })?;
    flush(&mut chunk, tx)?;
    if done != len {
        return Err(Failure::Local(format!(
            "spooled body has {done} bytes, expected {len}"
        )));
    }
    Ok(id)
}
