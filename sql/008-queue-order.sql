-- revokerd schema, version 8: the operator's views of the queue.
--
-- `revokerctl queue` lists pending and held tokens oldest due first and
-- pages through them by (due_at, id); `revokerctl shape` counts the pending
-- ones by age since due_at and by due reason. Both read this index only
-- (due_reason and state are in it), so that neither sorts nor reads the
-- table for rows a filter leaves out, however large the backlog. A retry
-- does not touch it: attempts, next_attempt_at and last_event are not in it.
-- ('held' is the state of issue 14's holds.)
CREATE INDEX tokens_queue ON tokens(due_at, id, due_reason, state) WHERE state IN ('pending', 'held');
