-- revokerd schema, version 5: rows whose expires_at can never fall due.
--
-- SQLite stores whatever an application writes: text ('tomorrow'), a blob,
-- 1e300, or milliseconds (1795000000000, the commonest mistake). Each sorts
-- after every real expiry time, so `expires_at <= now` never holds and such
-- a row would stay active for ever without a word. Any value at or after
-- the year 3000 in seconds (text and blobs compare greater than every
-- number) lands in this index, which is empty while applications behave:
-- the daemon converts milliseconds and fails the rest, loudly.
CREATE INDEX tokens_bad_expiry ON tokens(id) WHERE state = 'active' AND expires_at >= 32503680000;
