-- revokerd schema, version 4: pending rows in id order too.
--
-- A backlog (the endpoint comes back after an outage, or many tokens are
-- flagged at once) is a set of overdue pending rows whose retry times follow
-- no order of the table: fetched by retry time, each outcome dirties a page
-- of its own, and each page is written once per outcome on it. Fetched in id
-- order, neighbours share their pages and their commit. An index on id alone:
-- a retry changes next_attempt_at without touching it.
CREATE INDEX tokens_pending ON tokens(id) WHERE state = 'pending';
