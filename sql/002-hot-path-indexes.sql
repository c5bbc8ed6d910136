-- revokerd schema, version 2: indexes that a token's revocation touches less.
--
-- Promotion (active -> pending) no longer moves a row between the lookup
-- indexes: in a large table each such move dirties one random index page,
-- and every dirty page is written to the WAL and then to the database.
-- The secret and the hash indexes now split on whether the secret is still
-- there, which changes once, when the outcome is committed; the subject index
-- does not depend on the state at all.

-- Revocation by subject: every row of the subject, whatever its state (the
-- query filters on state; a subject's finished rows are read, not changed).
DROP INDEX tokens_subject;
CREATE INDEX tokens_subject ON tokens(subject, id) WHERE subject IS NOT NULL;

-- Lookup by secret: every row that still holds one.
DROP INDEX tokens_unhashed;
CREATE INDEX tokens_secret ON tokens(token) WHERE token IS NOT NULL;

-- Lookup by hash: rows whose secret is gone (revoked), by what it was.
DROP INDEX tokens_sha256;
CREATE INDEX tokens_sha256 ON tokens(token_sha256) WHERE token IS NULL;
