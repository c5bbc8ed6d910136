-- revokerd schema, version 7: the state 'held' and the audit events 'held',
-- 'released', 'dropped' (an operator's holds, daemon/hold.h). SQLite cannot
-- change a CHECK in place: both tables are rebuilt by its documented
-- procedure (lang_altertable.html: new table, copy, drop, rename, indexes and
-- triggers again), in the migration's one transaction, so a crash or a full
-- disk leaves version 6 as it was. (Editing sqlite_schema under
-- writable_schema is quicker, but a wrong byte leaves an unreadable file.)
-- The views name these tables: they go first (views.sql recreates them);
-- legacy_alter_table keeps the rename off an application's own views.
-- Columns as in 001-initial.sql.
PRAGMA legacy_alter_table = ON;
DROP VIEW IF EXISTS audit_log;
DROP VIEW IF EXISTS outcomes_per_hour;
DROP VIEW IF EXISTS failed_tokens;
DROP VIEW IF EXISTS invalid_tokens;

CREATE TABLE tokens_v7 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT,
    subject TEXT,
    expires_at INTEGER,
    flagged INTEGER NOT NULL DEFAULT 0,
    flag_reason TEXT,
    state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'pending', 'revoked', 'failed', 'held')),
    token_sha256 BLOB,
    fingerprint TEXT,
    due_reason TEXT,
    due_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_event TEXT,
    last_error TEXT,
    finished_at INTEGER
);
INSERT INTO tokens_v7 SELECT id, token, subject, expires_at, flagged, flag_reason, state, token_sha256,
    fingerprint, due_reason, due_at, attempts, next_attempt_at, last_event, last_error, finished_at
    FROM tokens ORDER BY id;
-- AUTOINCREMENT: ids of deleted rows are never reused.
INSERT INTO sqlite_sequence(name, seq) SELECT 'tokens_v7', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tokens_v7');
UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tokens'), 0))
    WHERE name = 'tokens_v7';
DROP TABLE tokens;
ALTER TABLE tokens_v7 RENAME TO tokens;

CREATE INDEX tokens_expiry ON tokens(expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
CREATE INDEX tokens_flagged ON tokens(id) WHERE state = 'active' AND flagged <> 0;
CREATE INDEX tokens_next ON tokens(next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX tokens_failed ON tokens(id) WHERE state = 'failed';
CREATE INDEX tokens_subject ON tokens(subject, id) WHERE subject IS NOT NULL;
CREATE INDEX tokens_sha256 ON tokens(token_sha256) WHERE token_sha256 IS NOT NULL;
CREATE INDEX tokens_unhashed ON tokens(token) WHERE token_sha256 IS NULL;
CREATE INDEX tokens_pending ON tokens(id) WHERE state = 'pending';
CREATE INDEX tokens_bad_expiry ON tokens(id) WHERE state = 'active' AND expires_at >= 32503680000;
CREATE INDEX tokens_urgent ON tokens(next_attempt_at, id) WHERE state = 'pending' AND due_reason <> 'expired';
CREATE INDEX tokens_urgent_id ON tokens(id) WHERE state = 'pending' AND due_reason <> 'expired';
CREATE INDEX tokens_held ON tokens(id) WHERE state = 'held';

CREATE TABLE audit_v7 (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    token_id INTEGER,
    fingerprint TEXT,
    event TEXT NOT NULL CHECK (event IN ('due', 'revoked', 'already_invalid',
    'retry', 'rejected', 'gave_up', 'requeued', 'held', 'released', 'dropped')),
    attempt INTEGER,
    http_status INTEGER,
    detail TEXT,
    duration_ms INTEGER,
    hash TEXT NOT NULL
);
-- The append-only triggers allow INSERT; DROP TABLE fires none.
INSERT INTO audit_v7 SELECT seq, at, token_id, fingerprint, event, attempt, http_status, detail,
    duration_ms, hash FROM audit ORDER BY seq;
DROP TABLE audit;
ALTER TABLE audit_v7 RENAME TO audit;

CREATE INDEX audit_token ON audit(token_id, seq);
CREATE INDEX audit_at ON audit(at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
PRAGMA legacy_alter_table = OFF;
