#!/usr/bin/env bash
# The README's demo: revokerd revoking sample tokens live against the stand-in
# endpoint (tests/endpoint.py), then the audit log.
#
#   tests/demo.sh BUILD_DIR
#
# A fresh database in a temporary directory: the daemon creates the schema,
# then this script writes tokens with the sqlite3 command line, as an
# application would: some expire within seconds, some are flagged while the
# daemon runs, some are answered 401, 422, 500 and 503. Everything started here
# is stopped and removed at the end. Needs python3 and sqlite3.
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REVOKERD=${REVOKERD:-$BUILD/daemon/revokerd}
ENDPOINT=${ENDPOINT:-$HERE/endpoint.py}
[ -x "$REVOKERD" ] || { echo "demo: $REVOKERD not found (build first)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "demo: the sqlite3 command line is needed" >&2; exit 1; }

DIR=$(mktemp -d /tmp/revokerd-demo.XXXXXX)
DB=$DIR/demo.db
EP_PID=
D_PID=

cleanup() {
    local rc=$?
    set +e
    if [ -n "$D_PID" ]; then kill "$D_PID" 2>/dev/null; wait "$D_PID" 2>/dev/null; fi
    if [ -n "$EP_PID" ]; then kill "$EP_PID" 2>/dev/null; wait "$EP_PID" 2>/dev/null; fi
    rm -rf "$DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
say() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
sql() { sqlite3 -cmd '.timeout 5000' "$DB" "$@"; }

# Poll a command until it succeeds, at most $1 seconds.
wait_for() {
    local secs=$1; shift
    local end=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || { echo "demo: timed out waiting for: $*" >&2; return 1; }
        sleep 0.1
    done
}

say "starting the stand-in logout endpoint"
python3 "$ENDPOINT" --port 0 --port-file "$DIR/port" --log "$DIR/endpoint.jsonl" >/dev/null &
EP_PID=$!
wait_for 10 test -s "$DIR/port"
PORT=$(cat "$DIR/port")
echo "listening on 127.0.0.1:$PORT"

cat >"$DIR/revokerd.conf" <<EOF
[daemon]
database = $DB
socket = $DIR/revokerd.sock
[logout]
url = http://127.0.0.1:$PORT/v2/token/logout
timeout = 2s
down_after = 3
[retry]
base = 200ms
max_delay = 2s
max_attempts = 4
EOF

say "starting revokerd (its log follows)"
"$REVOKERD" --config "$DIR/revokerd.conf" 2> >(sed -u -e 's/^<[0-7]>//' -e 's/^/    revokerd: /' >&2) &
D_PID=$!
alive() { kill -0 "$D_PID" 2>/dev/null || { echo "demo: revokerd exited" >&2; exit 1; }; }
schema_ready() { alive && [ "$(sql "SELECT count(*) FROM sqlite_master WHERE name = 'tokens'" 2>/dev/null)" = 1 ]; }
wait_for 15 schema_ready

say "an application writes sample tokens"
NOW=$(date +%s)
sql <<EOF
INSERT INTO tokens (token, subject, expires_at) VALUES
  ('demo-$RANDOM$RANDOM-a', 'alice', $NOW + 2),   -- expires in 2 s
  ('demo-$RANDOM$RANDOM-b', 'bob',   $NOW + 4),   -- expires in 4 s
  ('demo-$RANDOM$RANDOM-c', 'carol', $NOW + 6),   -- expires in 6 s
  ('demo-$RANDOM$RANDOM-d', 'dave',  $NOW + 3600),-- not due: stays active
  ('demo-$RANDOM$RANDOM-e', 'erin',  NULL),       -- flagged below, while running
  ('demo-$RANDOM$RANDOM-f', 'frank', NULL),       -- flagged below, while running
  ('demo-$RANDOM$RANDOM-g', 'grace', NULL);       -- never expires, never flagged
INSERT INTO tokens (token, subject, expires_at, flagged, flag_reason) VALUES
  ('s401-$RANDOM$RANDOM', 'heidi', NULL, 1, 'logout'),   -- answered 401: already invalid
  ('s422-$RANDOM$RANDOM', 'ivan',  NULL, 1, 'leaked'),   -- answered 422: rejected
  ('s503x3-$RANDOM$RANDOM', 'judy', $NOW + 1, 0, NULL),  -- 503 three times, then 200
  ('s500x2-$RANDOM$RANDOM', 'mallory', NULL, 1, 'leaked'); -- 500 twice, then 200
EOF
sql -box "SELECT id, subject, expires_at - $NOW AS expires_in_s, flagged, state FROM tokens"

sleep 3
say "the application flags erin's and frank's tokens"
sql "UPDATE tokens SET flagged = 1, flag_reason = 'user logged out' WHERE subject IN ('erin', 'frank')"

settled() {
    alive && [ "$(sql "SELECT count(*) FROM tokens WHERE state = 'pending'
              OR (state = 'active' AND (flagged <> 0 OR expires_at <= strftime('%s', 'now')))")" = 0 ] &&
    [ "$(date +%s)" -gt $((NOW + 6)) ]
}
wait_for 60 settled

say "stopping revokerd"
kill -TERM "$D_PID"
wait "$D_PID" || echo "revokerd exited with $?"
D_PID=

say "tokens"
sql -box "SELECT id, subject, state, fingerprint, attempts, last_event, token IS NULL AS secret_removed FROM tokens"
say "audit log (SELECT * FROM audit_log)"
sql -box "SELECT * FROM audit_log"
say "failed tokens (SELECT * FROM failed_tokens)"
sql -box "SELECT * FROM failed_tokens"
