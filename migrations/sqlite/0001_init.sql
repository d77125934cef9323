-- 0001_init: the initial lmtpd mail schema (documented in backends/sqlite/SCHEMA.md).
-- Applied by lmtpd-sqlite inside one transaction; the schema version (user_version) is
-- set by the migration runner, never by a migration file.

-- Marks the file as an lmtpd mail database ('lmtp' = 0x6C6D7470).
PRAGMA application_id = 1819112560;

-- One row per mailbox (created on its first delivery). The usage counters are kept up to
-- date by the triggers below, in the same transaction as the deliveries rows they count,
-- so a quota check never scans messages.
CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    address        TEXT    NOT NULL UNIQUE,     -- canonical user address (users file)
    created        INTEGER NOT NULL,            -- Unix time, seconds
    used_bytes     INTEGER NOT NULL DEFAULT 0,  -- sum of deliveries.size
    used_messages  INTEGER NOT NULL DEFAULT 0,  -- count of deliveries
    next_uid       INTEGER NOT NULL DEFAULT 1,  -- the uid the next delivery gets
    quota_bytes    INTEGER,                     -- informational: limits from the users file
    quota_messages INTEGER                      --   at the last delivery (NULL = unlimited)
);

-- Folders that exist without (or before) any message in them. INBOX is implicit.
CREATE TABLE folders (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, name)
) WITHOUT ROWID;

-- One row per received message body, shared by all its recipients' deliveries.
-- body is the last column on purpose: listing queries never walk its overflow pages.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    received       INTEGER NOT NULL,            -- Unix time, seconds
    sender         TEXT    NOT NULL,            -- envelope MAIL FROM, '' for <>
    transaction_id TEXT    NOT NULL,            -- lmtpd transaction id (Received, log)
    size           INTEGER NOT NULL,            -- length(body)
    message_id     TEXT,                        -- Message-ID header, raw, NULL if absent
    subject        TEXT,                        -- Subject header, unfolded, not decoded
    body           BLOB    NOT NULL             -- header + content, LF line endings
);

-- One row per recipient copy: the copy is trace || messages.body.
CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    message_id INTEGER NOT NULL REFERENCES messages (id),
    folder     TEXT    NOT NULL DEFAULT 'INBOX',
    uid        INTEGER NOT NULL,                -- increases per mailbox, never reused
    recipient  TEXT    NOT NULL,                -- RCPT TO forward-path as given
    size       INTEGER NOT NULL,                -- length(trace) + messages.size
    flags      TEXT    NOT NULL DEFAULT '',
    delivered  INTEGER NOT NULL,                -- Unix time, seconds
    trace      BLOB    NOT NULL,                -- this copy's trace header block
    UNIQUE (mailbox_id, uid)
);

CREATE INDEX deliveries_by_date   ON deliveries (mailbox_id, delivered);
CREATE INDEX deliveries_by_folder ON deliveries (mailbox_id, folder, uid);
CREATE INDEX deliveries_by_message ON deliveries (message_id);

CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
BEGIN
    UPDATE mailboxes
       SET used_bytes = used_bytes + NEW.size, used_messages = used_messages + 1
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
BEGIN
    UPDATE mailboxes
       SET used_bytes = max(used_bytes - OLD.size, 0),
           used_messages = max(used_messages - 1, 0)
     WHERE id = OLD.mailbox_id;
    DELETE FROM messages
     WHERE id = OLD.message_id
       AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = OLD.message_id);
END;

CREATE TRIGGER deliveries_count_update AFTER UPDATE OF mailbox_id, size ON deliveries
BEGIN
    UPDATE mailboxes
       SET used_bytes = max(used_bytes - OLD.size, 0),
           used_messages = max(used_messages - 1, 0)
     WHERE id = OLD.mailbox_id;
    UPDATE mailboxes
       SET used_bytes = used_bytes + NEW.size, used_messages = used_messages + 1
     WHERE id = NEW.mailbox_id;
END;
