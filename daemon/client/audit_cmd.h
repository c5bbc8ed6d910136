/* audit_cmd: `revokerctl audit`, the audit log read straight from the
 * database, read-only, so that it works while the daemon is down: rows by
 * time, token or event, or the hash chain verified (--verify, and against
 * a head recorded outside the file with --head N:H), or the current head
 * (--head). Exit status 0, 1 when the chain is damaged or the database
 * cannot be read, 2 for a usage error. */
#pragma once

#include "cli.h"

extern const struct command audit_cmd;
