/* queue_cmds: revokerctl queue and shape (see queue_cmds.h). */
#include "queue_cmds.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "socket_cmds.h"
#include "util.h"

enum { OPT_REASON = 256, OPT_STATE, OPT_LIMIT, OPT_BY };

static const char *text(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

/* A column of the table: what an application wrote (subject) or an error
 * quoted from the endpoint must not drive the terminal. */
static void print_clean(const char *s)
{
    for (; *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

/* ---- queue ---- */

static const char queue_help[] =
    "Usage: revokerctl queue [--reason R] [--state S] [--limit N]\n"
    "\n"
    "List the pending and held tokens, oldest due first: id, state, due reason,\n"
    "lane, since when due, attempts, next attempt, last event, fingerprint,\n"
    "subject, last error. Times are local. With --json, one object per token.\n"
    "\n"
    "    --reason R   only tokens due for R: expired, flagged or requested\n"
    "    --state S    only pending or only held tokens\n"
    "    --limit N    at most N tokens (default: all)\n"
    "\n"
    "See revokerctl(1).\n";

static void print_row(json_t *row)
{
    char due[64], next[64];

    socket_cmds_local_time(row, "due_at", due, sizeof(due));
    socket_cmds_local_time(row, "next_attempt_at", next, sizeof(next));
    printf("%-8lld %-7s %-9s %-7s %-23s %3lld  %-23s %-15s %-16s ",
           (long long)json_integer_value(json_object_get(row, "id")),
           json_is_true(json_object_get(row, "held")) ? "held" : "pending", text(row, "reason"),
           text(row, "lane"), due, (long long)json_integer_value(json_object_get(row, "attempts")), next,
           text(row, "last_event"), text(row, "fingerprint"));
    print_clean(text(row, "subject"));
    putchar(' ');
    print_clean(text(row, "last_error"));
    putchar('\n');
}

/* The ids listed without a due_at (held while active: they come first, in
 * id order). One released while revokerctl pages is due now and comes
 * again at the end: that second listing is left out. */
struct undue {
    int64_t *ids;
    size_t n, cap;
};

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* true: row was listed already (as one without a due_at). */
static bool listed_before(struct undue *u, json_t *row)
{
    int64_t id = (int64_t)json_integer_value(json_object_get(row, "id"));

    if (!json_is_null(json_object_get(row, "due_at")))
        return u->n && bsearch(&id, u->ids, u->n, sizeof(id), cmp_id);
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 64;
        int64_t *ids = realloc(u->ids, cap * sizeof(*ids));
        if (!ids)
            return false; /* then it may be listed twice, as the daemon pages */
        u->ids = ids;
        u->cap = cap;
    }
    if (!u->n || u->ids[u->n - 1] < id)
        u->ids[u->n++] = id;
    return false;
}

/* One page from the daemon: 0 with the rows printed, *ret_n their count and
 * *ret_next the cursor (malloc'd, NULL at the end); or an exit status. */
static int page(struct cli *c, json_t *filter, unsigned limit, const char *after, struct undue *undue,
                unsigned *ret_n, char **ret_next)
{
    unsigned n = 0;
    struct call_reply reply;
    json_t *req = json_deep_copy(filter), *row;
    size_t i;
    int r;

    if (!req || json_object_set_new(req, "limit", json_integer(limit)) < 0 ||
        (after && json_object_set_new(req, "after", json_string(after)) < 0)) {
        json_decref(req);
        cli_error("out of memory");
        return EXIT_ANSWERED_ERROR;
    }
    if ((r = socket_cmds_ask(c, req, &reply)) != 0)
        return r;
    if (!json_is_true(json_object_get(reply.json, "ok"))) {
        if (c->json)
            printf("%s\n", reply.line);
        else
            cli_error("revokerd: %s", text(reply.json, "error"));
        call_reply_free(&reply);
        return EXIT_ANSWERED_ERROR;
    }
    json_t *rows = json_object_get(reply.json, "rows");
    if (!after && !c->json)
        printf("%-8s %-7s %-9s %-7s %-23s %3s  %-23s %-15s %-16s %s %s\n", "ID", "STATE", "REASON", "LANE",
               "DUE SINCE", "ATT", "NEXT ATTEMPT", "LAST EVENT", "FINGERPRINT", "SUBJECT", "LAST ERROR");
    json_array_foreach(rows, i, row)
    {
        if (listed_before(undue, row))
            continue;
        n++;
        if (c->json) {
            char *line = json_dumps(row, JSON_COMPACT);
            if (line)
                printf("%s\n", line);
            free(line);
        } else {
            print_row(row);
        }
    }
    const char *next = json_string_value(json_object_get(reply.json, "next"));
    *ret_n = n;
    *ret_next = next ? strdup(next) : NULL;
    call_reply_free(&reply);
    return 0;
}

static int queue_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS,
        {"reason", required_argument, NULL, OPT_REASON},
        {"state", required_argument, NULL, OPT_STATE},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {NULL, 0, NULL, 0},
    };
    const char *reason = NULL, *state = NULL;
    int64_t limit = INT64_MAX;
    int opt, r;

    while ((r = cli_next_option(c, "queue", argc, argv, opts, &opt)) == 0 && opt != -1) {
        switch (opt) {
        case OPT_REASON: reason = optarg; break;
        case OPT_STATE: state = optarg; break;
        case OPT_LIMIT:
            if (cli_parse_id(optarg, &limit) < 0)
                return cli_usage_error("queue", "invalid --limit '%s' (a positive integer)", optarg);
            break;
        case 'h': fputs(queue_help, stdout); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind < argc)
        return cli_usage_error("queue", "unexpected argument '%s'", argv[optind]);

    /* The daemon checks the names and says what it takes. */
    json_t *filter = json_pack("{s:s}", "op", "queue");
    if (!filter || (reason && json_object_set_new(filter, "reason", json_string(reason)) < 0) ||
        (state && json_object_set_new(filter, "state", json_string(state)) < 0)) {
        json_decref(filter);
        return cli_usage_error("queue", "--reason and --state must be UTF-8 text");
    }
    char *after = NULL;
    struct undue undue = {0};
    int64_t shown = 0;
    do {
        unsigned n = 0, want = limit - shown < QUEUE_CMDS_PAGE ? (unsigned)(limit - shown) : QUEUE_CMDS_PAGE;
        char *next = NULL;
        r = page(c, filter, want, after, &undue, &n, &next);
        /* A cursor that does not move would page for ever. */
        if (r == 0 && next && after && strcmp(next, after) == 0) {
            cli_error("revokerd answered the same page twice (cursor %s); stopping", next);
            r = EXIT_ANSWERED_ERROR;
        }
        free(after);
        after = next;
        shown += n;
    } while (r == 0 && after && shown < limit);
    free(after);
    free(undue.ids);
    json_decref(filter);
    if (r == 0 && !c->json)
        printf("-- %" PRId64 " token(s)%s\n", shown, shown == limit ? " (--limit reached)" : "");
    return r;
}

const struct command queue_cmd = {
    "queue",
    "list pending and held tokens, oldest due first",
    queue_help,
    queue_run,
};

/* ---- shape ---- */

static const char shape_help[] = "Usage: revokerctl shape [--by reason|event]\n"
                                 "\n"
                                 "Count the pending tokens by how long they have been due, in buckets of\n"
                                 "5 min doubling up to 1280 min (T: the total), one row per due reason\n"
                                 "(default) or per last event (--by event), like Postfix's qshape. The\n"
                                 "first line says how long the oldest pending token has been due.\n"
                                 "\n"
                                 "See revokerctl(1).\n";

static void print_shape(json_t *reply)
{
    json_t *heads = json_object_get(reply, "buckets"), *rows = json_object_get(reply, "rows"), *v, *row;
    size_t i, j, nw = 8;
    int w[16] = {0};

    if (json_is_null(json_object_get(reply, "oldest_due_at"))) {
        printf("nothing pending\n");
    } else {
        char since[64], age[64];
        socket_cmds_local_time(reply, "oldest_due_at", since, sizeof(since));
        config_format_duration((uint64_t)json_integer_value(json_object_get(reply, "oldest_age_s")) * 1000,
                               age, sizeof(age));
        printf("oldest pending token: due for %s (since %s)\n", age, since);
    }
    json_array_foreach(rows, i, row) if (strlen(text(row, "name")) > nw) nw = strlen(text(row, "name"));
    /* Each column as wide as its head or the TOTAL row's count, and a space. */
    json_array_foreach(heads, j, v)
    {
        char n[24];
        const char *h = json_string_value(v);
        if (j >= ARRAY_SIZE(w) || !h)
            break;
        snprintf(n, sizeof(n), "%lld",
                 (long long)json_integer_value(json_object_get(json_array_get(rows, 0), h)));
        w[j] = (int)(strlen(h) > strlen(n) ? strlen(h) : strlen(n)) + 1;
    }
    printf("%*s", (int)nw, "");
    json_array_foreach(heads, j, v) if (j < ARRAY_SIZE(w)) printf("%*s", w[j], json_string_value(v));
    putchar('\n');
    json_array_foreach(rows, i, row)
    {
        printf("%*s", (int)nw, text(row, "name"));
        json_array_foreach(heads, j, v) if (j < ARRAY_SIZE(w))
            printf("%*lld", w[j], (long long)json_integer_value(json_object_get(row, json_string_value(v))));
        putchar('\n');
    }
}

static int shape_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS, {"by", required_argument, NULL, OPT_BY}, {NULL, 0, NULL, 0}};
    const char *by = NULL;
    struct call_reply reply;
    int opt, r;

    while ((r = cli_next_option(c, "shape", argc, argv, opts, &opt)) == 0 && opt != -1) {
        if (opt == 'h') {
            fputs(shape_help, stdout);
            return 0;
        }
        if (opt == OPT_BY)
            by = optarg;
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind < argc)
        return cli_usage_error("shape", "unexpected argument '%s'", argv[optind]);
    json_t *req = json_pack("{s:s}", "op", "shape");
    if (!req || (by && json_object_set_new(req, "by", json_string(by)) < 0)) {
        json_decref(req);
        return cli_usage_error("shape", "--by must be UTF-8 text");
    }
    if ((r = socket_cmds_ask(c, req, &reply)) != 0)
        return r;
    bool ok = json_is_true(json_object_get(reply.json, "ok"));
    if (c->json)
        printf("%s\n", reply.line);
    else if (ok)
        print_shape(reply.json);
    else
        cli_error("revokerd: %s", text(reply.json, "error"));
    call_reply_free(&reply);
    return ok ? 0 : EXIT_ANSWERED_ERROR;
}

const struct command shape_cmd = {
    "shape",
    "pending tokens by age and due reason (or last event), like qshape",
    shape_help,
    shape_run,
};
