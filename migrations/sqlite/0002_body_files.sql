-- 0002_body_files: bodies kept as files beside the database (documented in
-- backends/sqlite/SCHEMA.md). A row with body_file set has an empty body BLOB; its body is
-- the file <database>.bodies/<body_file>, written and fsync'd before the row was committed.

ALTER TABLE messages ADD COLUMN body_file TEXT;  -- NULL: the body is in the body column

-- The sweep of unreferenced body files looks names up here.
CREATE INDEX messages_by_body_file ON messages (body_file) WHERE body_file IS NOT NULL;
