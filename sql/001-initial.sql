-- revokerd schema, version 1.
--
-- Applications write: id, token, subject, expires_at, flagged, flag_reason.
-- The daemon owns every other column of tokens, and all of audit.

CREATE TABLE tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: audit rows name it
    token           TEXT,               -- the bearer secret; NULL once revoked
    subject         TEXT,               -- owner (user or client id)
    expires_at      INTEGER,            -- Unix seconds; NULL: never expires
    flagged         INTEGER NOT NULL DEFAULT 0,  -- set 1 to revoke now
    flag_reason     TEXT,

    -- Owned by revokerd.
    state           TEXT NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'pending', 'revoked', 'failed')),
    token_sha256    BLOB,               -- SHA-256 of token, kept after the secret is gone
    fingerprint     TEXT,               -- first 16 hex digits of token_sha256
    due_reason      TEXT,               -- expired, flagged, requested
    due_at          INTEGER,            -- Unix ms the token became pending
    attempts        INTEGER NOT NULL DEFAULT 0,  -- token-level failures so far
    next_attempt_at INTEGER,            -- Unix ms of the next attempt (pending only)
    last_event      TEXT,               -- last audit event of this token
    last_error      TEXT,               -- why the last attempt failed
    finished_at     INTEGER             -- Unix ms it became revoked or failed
);

-- "What is due next" is always an index lookup, never a scan.
CREATE INDEX tokens_expiry  ON tokens(expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
CREATE INDEX tokens_flagged ON tokens(id)         WHERE state = 'active' AND flagged <> 0;
CREATE INDEX tokens_next    ON tokens(next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX tokens_failed  ON tokens(id)         WHERE state = 'failed';
CREATE INDEX tokens_subject ON tokens(subject, id) WHERE state = 'active';
-- Finding a token handed over again: by hash once the daemon has seen it,
-- by the secret itself before that.
CREATE INDEX tokens_sha256   ON tokens(token_sha256) WHERE token_sha256 IS NOT NULL;
CREATE INDEX tokens_unhashed ON tokens(token)        WHERE token_sha256 IS NULL;

CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,       -- Unix ms
    token_id    INTEGER,
    fingerprint TEXT,
    event       TEXT NOT NULL CHECK (event IN ('due', 'revoked', 'already_invalid',
                    'retry', 'rejected', 'gave_up', 'requeued')),
    attempt     INTEGER,
    http_status INTEGER,                -- NULL without a response
    detail      TEXT,
    duration_ms INTEGER,
    hash        TEXT NOT NULL           -- hex SHA-256 over this row and the previous hash
);
CREATE INDEX audit_token ON audit(token_id, seq);
CREATE INDEX audit_at    ON audit(at);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
