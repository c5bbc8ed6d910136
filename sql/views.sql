-- Views for people reading the database with the sqlite3 command line.
-- Recreated at every start, so they always match the binary.
DROP VIEW IF EXISTS audit_log;
DROP VIEW IF EXISTS outcomes_per_hour;
DROP VIEW IF EXISTS failed_tokens;
DROP VIEW IF EXISTS invalid_tokens;

-- The audit log with readable UTC times.
CREATE VIEW audit_log AS
SELECT seq,
       strftime('%Y-%m-%d %H:%M:%f', at / 1000.0, 'unixepoch') || 'Z' AS time_utc,
       token_id, fingerprint, event, attempt, http_status, detail, duration_ms
  FROM audit;

-- Final outcomes and retries per UTC hour.
CREATE VIEW outcomes_per_hour AS
SELECT strftime('%Y-%m-%d %H:00', at / 1000, 'unixepoch') AS hour_utc,
       event, count(*) AS events
  FROM audit
 WHERE event <> 'due'
 GROUP BY hour_utc, event
 ORDER BY hour_utc, event;

-- Tokens that failed, and why.
CREATE VIEW failed_tokens AS
SELECT id, subject, fingerprint, attempts, last_event, last_error,
       strftime('%Y-%m-%d %H:%M:%SZ', finished_at / 1000, 'unixepoch') AS failed_utc
  FROM tokens
 WHERE state = 'failed';

-- Rows whose expires_at is not a plausible Unix time in seconds (before
-- 2000, at or after 3000, text, a blob), whatever their state now: what an
-- application wrote wrong. revokerd rewrites milliseconds in seconds (those
-- rows leave this view), revokes times before 2000 as expired and fails the
-- rest with "expires_at is not a time" (README, the table contract).
CREATE VIEW invalid_tokens AS
SELECT id, subject, state, typeof(expires_at) AS expires_at_type,
       CASE WHEN typeof(expires_at) IN ('integer', 'real') THEN expires_at END AS expires_at,
       last_error
  FROM tokens
 WHERE expires_at < 946684800 OR expires_at >= 32503680000;
