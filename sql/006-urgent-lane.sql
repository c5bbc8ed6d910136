-- revokerd schema, version 6: the urgent lane.
--
-- A token flagged or requested over the socket must not wait behind a
-- backlog of expired ones (20,000 at 350 requests/s: a minute). The engine
-- serves pending work in two lanes and reads the urgent one first, through
-- these indexes: every pending row whose due reason is not 'expired', in
-- retry-time order and, for a backlog of them (many flagged at once), in id
-- order (as sql/004 for all). They hold only urgent rows, so they are small
-- and hot even under a million-row routine backlog, and an expired row's
-- promotion or outcome never touches them.
CREATE INDEX tokens_urgent    ON tokens(next_attempt_at, id) WHERE state = 'pending' AND due_reason <> 'expired';
CREATE INDEX tokens_urgent_id ON tokens(id)                  WHERE state = 'pending' AND due_reason <> 'expired';
