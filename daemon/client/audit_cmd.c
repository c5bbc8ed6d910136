/* audit_cmd: options into an audit_filter, then audit_query or
 * auditverify_chain (auditverify_head with a recorded head), each row printed
 * as a table line or a JSON object; or the chain's head (--head). */
#include "audit_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auditverify.h"
#include "db.h"
#include "names.h"
#include "timearg.h"

enum { OPT_SINCE = 256, OPT_TOKEN, OPT_EVENT, OPT_LIMIT, OPT_VERIFY, OPT_HEAD };

static const char audit_help[] =
    "Usage: revokerctl audit [--since TIME] [--token ID] [--event E] [--limit N]\n"
    "       revokerctl audit --verify [--head N:H]\n"
    "       revokerctl audit --head\n"
    "\n"
    "Show the audit log from the database (read-only; the daemon need not run).\n"
    "\n"
    "    --since TIME  rows from TIME on: \"2026-11-27\", \"2026-11-27 10:00\", an\n"
    "                  ISO 8601 time, or a span back from now (\"1h\", \"30min\")\n"
    "    --token ID    rows of token ID only\n"
    "    --event E     rows of one event: due revoked already_invalid retry\n"
    "                  rejected gave_up requeued\n"
    "    --limit N     the newest N matching rows (still printed oldest first)\n"
    "    --verify      walk the hash chain instead; exit 1 naming the first row\n"
    "                  that was altered, inserted or deleted\n"
    "    --head N:H    with --verify: also check that row N still has hash H, a head\n"
    "                  revokerd logged (\"audit head: seq N hash H\"); catches the\n"
    "                  newest rows deleted or rewritten\n"
    "    --head        alone: print the current head as N:H\n"
    "\n"
    "See revokerctl(1).\n";

/* The names --event takes, from the one table of audit events. */
static void event_names(char *buf, size_t len)
{
    buf[0] = '\0';
    for (enum audit_event_kind k = 1; k <= AUDIT_EVENT_MAX; k++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", k > 1 ? " " : "", audit_event_name(k));
}

static int print_row_json(const struct audit_row *row)
{
    char *s;
    int r = audit_row_json(row, &s);

    if (r < 0)
        return r;
    puts(s);
    free(s);
    return 0;
}

static void print_row_table(const struct audit_row *row)
{
    char when[64], tok[24] = "-", att[16] = "-", http[16] = "-", dur[24] = "-";
    struct tm tm;
    time_t t = (time_t)(row->at_ms / 1000);

    if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(when, sizeof(when), "?");
    if (row->token_id)
        snprintf(tok, sizeof(tok), "%" PRId64, row->token_id);
    if (row->attempt)
        snprintf(att, sizeof(att), "%d", row->attempt);
    if (row->http_status)
        snprintf(http, sizeof(http), "%ld", row->http_status);
    if (row->duration_ms >= 0)
        snprintf(dur, sizeof(dur), "%" PRId64, row->duration_ms);
    printf("%-19s %7" PRId64 " %7s %-16s %-15s %3s %4s %6s %s\n", when, row->seq, tok,
           row->fingerprint ? row->fingerprint : "-", row->event ? row->event : "?", att, http,
           dur, row->detail ? row->detail : "");
}

static int print_row(void *ud, const struct audit_row *row)
{
    const bool *json = ud;

    if (*json)
        return print_row_json(row);
    print_row_table(row);
    return 0;
}

/* --verify, with the recorded head or NULL: the exit status. */
static int verify(const struct cli *c, struct db *db, const char *path, const struct audit_head *head)
{
    int64_t rows = 0, bad = 0;
    char why[512] = "";
    /* The anchor printed is the one the check started from: one snapshot. */
    sqlite3_exec(db->conn, "BEGIN", NULL, NULL, NULL);
    int r = head ? auditverify_head(db, head, &rows, &bad, why, sizeof(why))
                 : auditverify_chain(db, &rows, &bad, why, sizeof(why));

    if (r == 0 && head) {
        if (c->json)
            printf("{\"ok\":true,\"rows\":%" PRId64 ",\"head_seq\":%" PRId64 "}\n", rows, head->seq);
        else
            printf("audit log intact: %" PRId64 " rows, hash chain verified, seq %" PRId64
                   " holds the recorded head's hash\n",
                   rows, head->seq);
        return 0;
    }
    if (r == 0) {
        /* After a prune the chain starts at the latest audit anchor. */
        struct audit_anchor an;
        bool anchored = auditverify_get_anchor(db, &an) == 0;
        if (c->json && anchored)
            printf("{\"ok\":true,\"rows\":%" PRId64 ",\"from_seq\":%" PRId64 ",\"anchor_at_ms\":%" PRId64
                   "}\n",
                   rows, an.first_seq, an.at_ms);
        else if (c->json)
            printf("{\"ok\":true,\"rows\":%" PRId64 "}\n", rows);
        else if (anchored)
            printf("audit log intact: %" PRId64 " rows from seq %" PRId64
                   " (the audit anchor: older rows pruned), hash chain verified\n",
                   rows, an.first_seq);
        else
            printf("audit log intact: %" PRId64 " rows, hash chain verified\n", rows);
        return 0;
    }
    if (r == -EBADMSG && c->json) {
        json_t *j = json_pack("{s:b,s:I,s:s}", "ok", 0, "bad_seq", (json_int_t)bad, "error", why);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        printf("%s\n", s ? s : "{\"ok\":false}");
        free(s);
        json_decref(j);
    } else if (r == -EBADMSG) {
        cli_error("audit log damaged at seq %" PRId64 ": %s", bad, why);
    } else {
        cli_error("cannot verify the audit log in %s: %s (%s)", path, strerror(-r), db_errmsg(db));
    }
    return EXIT_ANSWERED_ERROR;
}

/* --head alone: the exit status. */
static int print_head(const struct cli *c, struct db *db, const char *path)
{
    struct audit_head h;
    int r = audit_get_head(db, &h);

    if (r < 0) {
        cli_error("cannot read the audit log in %s: %s (%s)", path, strerror(-r), db_errmsg(db));
        return EXIT_ANSWERED_ERROR;
    }
    if (c->json)
        printf("{\"seq\":%" PRId64 ",\"hash\":\"%s\"}\n", h.seq, h.hash);
    else
        printf("%" PRId64 ":%s\n", h.seq, h.hash);
    return 0;
}

/* The rows matching f: the exit status. */
static int list(const struct cli *c, struct db *db, const char *path, const struct audit_filter *f)
{
    bool json = c->json;

    if (!c->json)
        printf("%-19s %7s %7s %-16s %-15s %3s %4s %6s %s\n", "TIME", "SEQ", "TOKEN",
               "FINGERPRINT", "EVENT", "ATT", "HTTP", "MS", "DETAIL");
    int r = audit_query(db, f, print_row, &json);
    if (r < 0) {
        cli_error("cannot read the audit log in %s: %s (%s)", path, strerror(-r), db_errmsg(db));
        return EXIT_ANSWERED_ERROR;
    }
    return 0;
}

static int audit_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS,
        {"since", required_argument, NULL, OPT_SINCE},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"event", required_argument, NULL, OPT_EVENT},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"verify", no_argument, NULL, OPT_VERIFY},
        {"head", optional_argument, NULL, OPT_HEAD},
        {NULL, 0, NULL, 0},
    };
    struct audit_filter f = {0};
    struct audit_head head;
    bool do_verify = false, do_head = false;
    const char *path, *head_arg = NULL;
    int opt, r;
    int64_t v;

    while ((r = cli_next_option(c, "audit", argc, argv, opts, &opt)) == 0 && opt != -1) {
        switch (opt) {
        case OPT_SINCE:
            if (timearg_since(optarg, db_now_ms(), &f.since_ms) < 0)
                return cli_usage_error("audit", "invalid --since '%s' (\"2026-11-27\", "
                                                "\"2026-11-27 10:00\", an ISO time, or \"1h\")", optarg);
            break;
        case OPT_TOKEN:
            if (cli_parse_id(optarg, &f.token_id) < 0)
                return cli_usage_error("audit", "invalid --token '%s' (a token ID)", optarg);
            break;
        case OPT_EVENT:
            if (audit_event_from_name(optarg, &f.event) < 0) {
                char names[128];
                event_names(names, sizeof(names));
                return cli_usage_error("audit", "unknown --event '%s' (%s)", optarg, names);
            }
            break;
        case OPT_LIMIT:
            if (cli_parse_id(optarg, &v) < 0 || v > UINT32_MAX)
                return cli_usage_error("audit", "invalid --limit '%s' (a positive integer)", optarg);
            f.limit = (unsigned)v;
            break;
        case OPT_VERIFY: do_verify = true; break;
        case OPT_HEAD:
            do_head = true;
            head_arg = optarg;
            break;
        case 'h': fputs(audit_help, stdout); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (do_head && !head_arg && optind < argc)
        head_arg = argv[optind++]; /* --head N:H, as well as --head=N:H */
    if (optind < argc)
        return cli_usage_error("audit", "unexpected argument '%s'", argv[optind]);
    if (do_verify && (f.since_ms || f.token_id || f.event || f.limit))
        return cli_usage_error("audit", "--verify checks the whole chain; it takes no filter");
    if (do_head && (f.since_ms || f.token_id || f.event || f.limit))
        return cli_usage_error("audit", "--head takes no filter");
    if (do_head && !do_verify && head_arg)
        return cli_usage_error("audit",
                               "--head N:H is checked with --verify; --head alone prints the current "
                               "head");
    if (do_verify && do_head && !head_arg)
        return cli_usage_error("audit", "--verify --head needs the recorded head, N:H");
    if (head_arg && audit_head_parse(head_arg, &head) < 0)
        return cli_usage_error("audit",
                               "invalid --head '%s' (expected N:H, the seq and the 64 hex digits of "
                               "a line \"audit head: seq N hash H\")",
                               head_arg);
    if (cli_database(c, &path) < 0)
        return EXIT_USAGE;
    if (!path)
        return cli_usage_error("audit", "no database configured; use --database PATH");

    struct db *db;
    r = db_open(path, DB_READONLY, &db);
    if (r < 0) {
        const char *why = db_open_error();
        cli_error("cannot open the database %s: %s%s%s%s", path, strerror(-r),
                  why && *why ? " (" : "", why && *why ? why : "", why && *why ? ")" : "");
        return EXIT_ANSWERED_ERROR;
    }
    r = do_verify ? verify(c, db, path, head_arg ? &head : NULL)
        : do_head ? print_head(c, db, path)
                  : list(c, db, path, &f);
    db_close(db);
    return r;
}

const struct command audit_cmd = {
    "audit", "show the audit log from the database, or verify its hash chain", audit_help,
    audit_run,
};
