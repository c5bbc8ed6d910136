-- revokerd schema, version 3: a token is hashed once, soon after it is written.
--
-- In version 2 the outcome of every revocation moved the row from the secret
-- index to the hash index: two random index pages per revocation in a large
-- table, most of the drain's database cost. Now the daemon hashes each new
-- row in the background, shortly after an application writes it (the rows
-- without a hash are few and recent, so their index is small and hot), and
-- neither making a token due nor revoking it touches a lookup index.

-- Lookup by hash: every row the daemon has hashed, whether or not its secret
-- is still there.
DROP INDEX tokens_sha256;
CREATE INDEX tokens_sha256 ON tokens(token_sha256) WHERE token_sha256 IS NOT NULL;

-- Lookup by secret, and the hasher's work list: rows not hashed yet.
-- (A secret is written once. An application that writes a new one into a
-- row leaves its old hash there until the row is made due, which checks the
-- hash against the secret it sends; a lookup by the new secret before then
-- does not find the row. No trigger catches that: a trigger on the token
-- column costs every revocation about a third of its CPU time.)
DROP INDEX tokens_secret;
CREATE INDEX tokens_unhashed ON tokens(token) WHERE token_sha256 IS NULL;
