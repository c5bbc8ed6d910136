-- revokerd schema, version 10: the routine lane's own indexes.
--
-- The engine reads its two lanes (sql/006-urgent-lane.sql) through partial
-- indexes; the routine lane's, tokens_next and tokens_pending, held every
-- pending row, so with a million urgent rows pending (a revoke by subject:
-- "log out everywhere") each routine fetch walked past all of them (98 % of
-- a 1M revoke's time). They now hold the routine rows only: the expired ones
-- and those without a due reason, exactly the rows tokens_urgent and
-- tokens_urgent_id leave out. Same names, so what names them still works.
-- No index more: a row is in one lane's pair or the other's, never both, so
-- a promotion or an outcome writes no more index pages than before (an
-- urgent row's fewer). A read that needs all pending rows combines the two.
DROP INDEX tokens_next;
DROP INDEX tokens_pending;
CREATE INDEX tokens_next    ON tokens(next_attempt_at, id)
    WHERE state = 'pending' AND (due_reason = 'expired' OR due_reason IS NULL);
CREATE INDEX tokens_pending ON tokens(id)
    WHERE state = 'pending' AND (due_reason = 'expired' OR due_reason IS NULL);
