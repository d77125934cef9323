-- 0001_init: the initial lmtpd mail schema for PostgreSQL (documented in
-- backends/postgres/SCHEMA.md; the same data model as migrations/sqlite/0001_init.sql).
-- Applied by lmtpd-postgres inside one transaction while it holds the migration advisory
-- lock; the schema version (lmtpd_schema) is set by the migration runner, never here.

-- One row per mailbox (created on its first delivery). The usage counters are updated by
-- the delivering transaction itself, in the same statement that checks the quota, so a
-- quota check never scans messages and two nodes cannot both pass a check the sum fails.
CREATE TABLE mailboxes (
    id             BIGSERIAL PRIMARY KEY,
    address        TEXT    NOT NULL UNIQUE,     -- canonical user address (users file)
    created        BIGINT  NOT NULL,            -- Unix time, seconds
    used_bytes     BIGINT  NOT NULL DEFAULT 0,  -- sum of deliveries.size
    used_messages  BIGINT  NOT NULL DEFAULT 0,  -- count of deliveries
    next_uid       BIGINT  NOT NULL DEFAULT 1,  -- the uid the next delivery gets
    quota_bytes    BIGINT,                      -- informational: limits from the users file
    quota_messages BIGINT                       --   at the last delivery (NULL = unlimited)
);

-- Folders that exist without (or before) any message in them. INBOX is implicit.
CREATE TABLE folders (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    created    BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);

-- One row per received message body, shared by all its recipients' deliveries; the bytes
-- are in message_chunks.
CREATE TABLE messages (
    id             BIGSERIAL PRIMARY KEY,
    received       BIGINT NOT NULL,             -- Unix time, seconds
    sender         TEXT   NOT NULL,             -- envelope MAIL FROM, '' for <>
    transaction_id TEXT   NOT NULL,             -- lmtpd transaction id (Received, log)
    size           BIGINT NOT NULL,             -- total length of the chunks
    message_id     TEXT,                        -- Message-ID header, raw, NULL if absent
    subject        TEXT                         -- Subject header, unfolded, not decoded
);

-- The body (header + content, LF line endings) in pieces of at most 256 KiB, in seq
-- order, so that no statement ever carries a whole large message.
CREATE TABLE message_chunks (
    message_id BIGINT  NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BYTEA   NOT NULL,
    PRIMARY KEY (message_id, seq)
);

-- One row per recipient copy: the copy is trace || the message's chunks.
CREATE TABLE deliveries (
    id         BIGSERIAL PRIMARY KEY,
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    message_id BIGINT NOT NULL REFERENCES messages (id),
    folder     TEXT   NOT NULL DEFAULT 'INBOX',
    uid        BIGINT NOT NULL,                 -- increases per mailbox, never reused
    recipient  TEXT   NOT NULL,                 -- RCPT TO forward-path as given
    size       BIGINT NOT NULL,                 -- length(trace) + messages.size
    flags      TEXT   NOT NULL DEFAULT '',
    delivered  BIGINT NOT NULL,                 -- Unix time, seconds
    trace      BYTEA  NOT NULL,                 -- this copy's trace header block
    UNIQUE (mailbox_id, uid)
);

CREATE INDEX deliveries_by_date    ON deliveries (mailbox_id, delivered);
CREATE INDEX deliveries_by_folder  ON deliveries (mailbox_id, folder, uid);
CREATE INDEX deliveries_by_message ON deliveries (message_id);
