-- revokerd schema, version 9: retention (issue 16). Finished tokens and old
-- audit rows are deleted by the daemon (daemon/retention.h).
--
-- The finished rows, oldest first, without a scan of the table.
CREATE INDEX tokens_finished ON tokens(finished_at) WHERE state IN ('revoked', 'failed');

-- Where the audit chain starts once its oldest rows are pruned: first_seq is
-- the first row kept, prev_hash the hash it chains from (that of the row
-- before it, which the same transaction deletes). `revokerctl audit
-- --verify` starts from the latest anchor (the highest id).
CREATE TABLE audit_anchor (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,       -- Unix ms of the prune
    first_seq INTEGER NOT NULL,
    prev_hash TEXT NOT NULL
);

-- Only the daemon adds an anchor: revokerd_prunes_audit() is defined on the
-- daemon's connection alone (another connection's INSERT fails with "no such
-- function"), and returns 1 only inside its pruning transaction. The anchor
-- must name a row that exists, chain from the hash of the row before it,
-- and lie after the latest anchor.
CREATE TRIGGER audit_anchor_insert BEFORE INSERT ON audit_anchor
WHEN revokerd_prunes_audit() IS NOT 1
    OR NOT EXISTS (SELECT 1 FROM audit WHERE seq = new.first_seq)
    OR new.prev_hash IS NOT (SELECT hash FROM audit WHERE seq = new.first_seq - 1)
    OR new.first_seq <= coalesce((SELECT first_seq FROM audit_anchor ORDER BY id DESC LIMIT 1), 0)
BEGIN SELECT RAISE(ABORT, 'audit_anchor: only revokerd adds an anchor, naming a row of audit and the hash before it'); END;
CREATE TRIGGER audit_anchor_no_update BEFORE UPDATE ON audit_anchor
BEGIN SELECT RAISE(ABORT, 'audit_anchor is append-only'); END;
-- The daemon keeps only the latest anchor.
CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
WHEN revokerd_prunes_audit() IS NOT 1
    OR old.id >= (SELECT max(id) FROM audit_anchor)
BEGIN SELECT RAISE(ABORT, 'audit_anchor is append-only'); END;

-- A row of audit may be deleted only below the latest anchor: rows that
-- exist only inside the daemon's pruning transaction, which added that
-- anchor. Every other DELETE is refused, as before.
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN old.seq >= coalesce((SELECT first_seq FROM audit_anchor ORDER BY id DESC LIMIT 1), 0)
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
