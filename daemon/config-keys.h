/* config-keys.h: the table of revokerd's configuration keys, the one place a
 * key is written down.
 *
 * One row per key: X(section, name, type, member, default, min, max, what):
 * the INI section and key name, the type (below), the member of struct
 * config that holds it, the default as it is written in the file, the
 * limits (min and max for UINT and DURATION, in ms for DURATION; 0, 0
 * otherwise) and a one-line description. From these rows come struct
 * config's members (config.h), the defaults, copy and free of the strings,
 * the parser's key lookup and its "keys in [s]" lists, --check-config's
 * output (config_print) and config_equal. test_config checks the shipped
 * systemd/revokerd.conf and revokerd.conf(5)'s KEYS (doc/revokerd.conf.5.scd)
 * against it, and tests/man_check.py the rendered page: a new key goes here,
 * and those tests say what the two files must show.
 *
 * Row order is the order of struct config, of --check-config, of the lists
 * in messages and of both files.
 *
 * Types, with their member's C type:
 *   PATH       char *    a non-empty string
 *   SOCKET     char *    a non-empty path that fits sun_path (107 bytes)
 *   OPT_PATH   char *    any string; empty: unset (NULL)
 *   GROUP      char *    a group name or number; empty: unset
 *   HEADER     char *    an HTTP header name but Authorization; empty: unset
 *   LISTEN     char *    listenaddr_parse(): IPv4:PORT, [IPv6]:PORT or /path; empty: unset
 *   URL        char *    config_check_url(): https, or http to loopback
 *   UINT       unsigned  a decimal number from min to max
 *   BOOL       bool      true false yes no on off 1 0
 *   DURATION   uint64_t  a systemd time span, in ms, from min to max
 *   KEEP       uint64_t  a DURATION; empty or 0: kept forever (0)
 *   LOG_LEVEL  int       crit err warning notice info debug (syslog's) */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_S UINT64_C(1000)
#define CONFIG_MIN (60 * CONFIG_S)
#define CONFIG_H (60 * CONFIG_MIN)
#define CONFIG_D (24 * CONFIG_H)

/* clang-format off */
#define CONFIG_KEYS(X)                                                                                        \
    X("daemon", "database", PATH, database, "/var/lib/revokerd/revokerd.db", 0, 0,                            \
      "the SQLite file: tokens and audit log (mode 0600; 0660 in control_group when set)")                   \
    X("daemon", "socket", SOCKET, socket, "/run/revokerd.sock", 0, 0,                                         \
      "control socket path (at most 107 bytes; mode 0660)")                                                  \
    X("daemon", "control_group", GROUP, control_group, "", 0, 0,                                              \
      "group allowed on the socket and in the table besides root and the daemon's own user")                 \
    X("daemon", "max_clients", UINT, max_clients, "64", 1, 65536,                                            \
      "control clients at once")                                                                             \
    X("daemon", "client_idle", DURATION, client_idle_ms, "30s", 1, CONFIG_D,                                 \
      "an idle control client is closed after this")                                                         \
    X("daemon", "keep_secrets", BOOL, keep_secrets, "false", 0, 0,                                            \
      "false: erase the token text once revoked (its hash stays)")                                           \
    X("daemon", "jwt_expiry", BOOL, jwt_expiry, "true", 0, 0,                                                 \
      "true: a JWT's exp claim sets a NULL expires_at and lowers a later one")                               \
    X("daemon", "log_level", LOG_LEVEL, log_level, "info", 0, 0,                                              \
      "crit, err, warning, notice, info, debug")                                                             \
    X("logout", "url", URL, url, "https://api.loyalty.dog/v2/token/logout", 0, 0,                             \
      "https, or http only to localhost, 127.0.0.0/8 or ::1; no user:password")                              \
    X("logout", "timeout", DURATION, timeout_ms, "10s", 1, CONFIG_H,                                          \
      "per request, connecting included")                                                                    \
    X("logout", "concurrency", UINT, concurrency, "16", 1, 1024,                                              \
      "requests in flight and connections kept alive")                                                       \
    X("logout", "rate_limit", UINT, rate_limit, "0", 0, 1000000,                                              \
      "requests per second, 0 = no limit")                                                                   \
    X("logout", "ca_file", OPT_PATH, ca_file, "", 0, 0,                                                       \
      "PEM CA bundle; empty: the system's store; peer and host verification are always on")                  \
    X("logout", "down_after", UINT, down_after, "5", 1, 1000,                                                 \
      "endpoint-level failures in a row before the endpoint counts as down")                                 \
    X("logout", "credential_header", HEADER, credential_header, "", 0, 0,                                     \
      "an extra header name whose value is read from `$CREDENTIALS_DIRECTORY/logout-credential` "            \
      "(systemd `LoadCredential=`); never from argv or the environment")                                     \
    X("retry", "base", DURATION, retry_base_ms, "1s", 1, CONFIG_D,                                            \
      "first backoff")                                                                                       \
    X("retry", "max_delay", DURATION, retry_max_delay_ms, "15min", 1, 30 * CONFIG_D,                          \
      "backoff cap (at least base)")                                                                         \
    X("retry", "max_attempts", UINT, max_attempts, "8", 1, 1000,                                              \
      "token-level failures before `gave_up`")                                                               \
    X("retry", "retry_after_max", DURATION, retry_after_max_ms, "1h", 0, 30 * CONFIG_D,                       \
      "cap on a Retry-After pause")                                                                          \
    X("audit", "anchor_interval", DURATION, audit_anchor_interval_ms, "1h", CONFIG_S, 30 * CONFIG_D,          \
      "how often the audit log's chain head is logged (also at start and stop), for a record outside "        \
      "the file")                                                                                            \
    X("metrics", "listen", LISTEN, metrics_listen, "", 0, 0,                                                  \
      "HTTP listener for Prometheus (GET /metrics): IPv4:PORT, [IPv6]:PORT or a UNIX socket path; empty: off") \
    X("retention", "tokens", KEEP, retention_tokens_ms, "30d", 0, 36500 * CONFIG_D,                       \
      "a revoked or failed row finished longer ago is deleted; 0 or empty: kept forever")                              \
    X("retention", "audit", KEEP, retention_audit_ms, "400d", 0, 36500 * CONFIG_D,                        \
      "audit rows older than this are pruned, oldest first, behind an audit anchor; 0 or empty: kept forever")        \
    X("retention", "batch", UINT, retention_batch, "1000", 1, 100000,                                         \
      "rows deleted per transaction, at most (fewer when a transaction would take more than a few ms)")      \
    X("retention", "audit_export", OPT_PATH, retention_audit_export, "", 0, 0,                                \
      "JSON-lines file the pruned audit rows are appended to (and fsynced) before they are deleted; empty: none")
/* clang-format on */

#define CONFIG_CTYPE_PATH char *
#define CONFIG_CTYPE_SOCKET char *
#define CONFIG_CTYPE_OPT_PATH char *
#define CONFIG_CTYPE_GROUP char *
#define CONFIG_CTYPE_HEADER char *
#define CONFIG_CTYPE_LISTEN char *
#define CONFIG_CTYPE_URL char *
#define CONFIG_CTYPE_UINT unsigned
#define CONFIG_CTYPE_BOOL bool
#define CONFIG_CTYPE_DURATION uint64_t
#define CONFIG_CTYPE_KEEP uint64_t
#define CONFIG_CTYPE_LOG_LEVEL int
