/* socket_cmds: option parsing, the request, and the reply's human form for
 * each command; ask() is the one place a failed call becomes a message and
 * an exit status. */
#include "socket_cmds.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "db.h"
#include "names.h"
#include "secret.h"
#include "timearg.h"
#include "token_stdin.h"

enum { OPT_ID = 256, OPT_SUBJECT, OPT_TOKEN_STDIN, OPT_TOKEN, OPT_REASON, OPT_FAILED, OPT_EXPIRES_AT, OPT_ALL };

/* ---- the call and the reply ---- */

/* Sends req (consumed) and waits for the reply: 0 with *ret, or the exit
 * status after saying what failed (2: the config file; 69: the daemon
 * cannot be reached or does not answer in time; 1: out of memory, or what
 * came back is not a protocol reply). */
static int ask(struct cli *c, json_t *req, struct call_reply *ret)
{
    uint64_t deadline = call_deadline(c->timeout_ms);
    const char *path;
    char *msg;
    size_t len;
    int fd, r;

    if (cli_socket(c, &path) < 0) {
        json_decref(req);
        return EXIT_USAGE;
    }
    if (call_encode(req, &msg, &len) < 0) {
        cli_error("out of memory");
        return EXIT_ANSWERED_ERROR;
    }
    r = call_connect(path, deadline, &fd);
    if (r < 0) {
        secret_free(msg);
        if (r == -ETIMEDOUT)
            cli_error("cannot reach revokerd at %s: it did not accept the connection within %" PRIu64
                      " ms", path, c->timeout_ms);
        else
            cli_error("cannot reach revokerd at %s: %s%s", path, strerror(-r),
                      r == -ENOENT || r == -ECONNREFUSED ? " (is revokerd running? --socket PATH)" : "");
        return EXIT_UNREACHABLE;
    }
    r = call_exchange(fd, msg, len, deadline, ret);
    secret_free(msg);
    close(fd);
    if (r == -EPROTO) {
        cli_error("revokerd at %s sent a reply that is not a protocol reply", path);
        return EXIT_ANSWERED_ERROR;
    }
    if (r == -ETIMEDOUT) {
        cli_error("no reply from revokerd at %s within %" PRIu64 " ms", path, c->timeout_ms);
        return EXIT_UNREACHABLE;
    }
    if (r < 0) {
        cli_error("lost the connection to revokerd at %s: %s", path, strerror(-r));
        return EXIT_UNREACHABLE;
    }
    return 0;
}

static const char *jstr(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* --json: prints the reply as it came; otherwise the daemon's error, if it
 * answered one. The exit status (0 or 1); *ret_human says whether the
 * caller prints the human form. */
static int answer(const struct cli *c, const struct call_reply *reply, bool *ret_human)
{
    bool ok = json_is_true(json_object_get(reply->json, "ok"));

    *ret_human = ok && !c->json;
    if (c->json)
        printf("%s\n", reply->line);
    else if (!ok)
        cli_error("revokerd: %s", jstr(reply->json, "error", "(no message)"));
    return ok ? 0 : EXIT_ANSWERED_ERROR;
}

static void iso_to_local(json_t *o, const char *key, char *buf, size_t len)
{
    int64_t ms;
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || timearg_parse(s, &ms) < 0)
        snprintf(buf, len, "-");
    else
        timearg_local(ms, buf, len);
}

/* The options of a command that has none of its own (status, stats, ping):
 * 0 with *ret_help, or -EINVAL after a usage error. */
static int plain_options(struct cli *c, const char *cmd, int argc, char **argv, bool *ret_help)
{
    static const struct option opts[] = {CLI_OPTIONS, {NULL, 0, NULL, 0}};
    bool help = false;
    int opt, r = 0;

    while (!help && (r = cli_next_option(c, cmd, argc, argv, opts, &opt)) == 0 && opt != -1)
        help = opt == 'h'; /* the help, whatever follows */
    if (r < 0)
        return r;
    *ret_help = help;
    return 0;
}

/* ---- revoke ---- */

static const char revoke_help[] =
    "Usage: revokerctl revoke --id N | --subject S | --token-stdin [--reason R]\n"
    "\n"
    "Queue tokens for revocation. Once it says \"queued\", the request is committed.\n"
    "\n"
    "    --id N          the token with id N, if it is active\n"
    "    --subject S     every active token of subject S\n"
    "    --token-stdin   a secret read from standard input (never from argv)\n"
    "    --reason R      why, kept with the token (flag_reason)\n"
    "\n"
    "See revokerctl(1).\n";

/* A problem with the token on standard input, as the user of cmd is told it. */
static int token_error(const char *cmd, int r)
{
    switch (r) {
    case -ENOMEM: cli_error("out of memory"); return EXIT_ANSWERED_ERROR;
    case -ENODATA: return cli_usage_error(cmd, "no token on standard input");
    case -EMSGSIZE:
        return cli_usage_error(cmd, "the token on standard input is longer than %d bytes", SECRET_MAX_LEN);
    case -EBADMSG: return cli_usage_error(cmd, "standard input holds more than one line; give one token");
    case -EILSEQ: return cli_usage_error(cmd, "the token on standard input contains a NUL byte");
    case -EINVAL: /* secret_token_ok() */
        return cli_usage_error(cmd,
                               "the token on standard input must be printable ASCII without spaces or "
                               "control characters");
    default:
        cli_error("cannot read the token from standard input: %s", strerror(-r));
        return EXIT_USAGE;
    }
}

/* A held token keeps a revocation for its release (hold.h). */
static void print_held(long long id)
{
    printf("token %lld is held; the revocation is kept and sent once it is released "
           "('revokerctl release --id %lld')\n", id, id);
}

static void print_ids(const char *prefix, json_t *ids)
{
    json_t *v;
    size_t i;

    fputs(prefix, stdout);
    json_array_foreach(ids, i, v)
        printf(" %lld", (long long)json_integer_value(v));
    putchar('\n');
}

/* The human form: which of --token-stdin, --id and --subject was given
 * decides what the reply holds. */
static void print_revoke(json_t *reply, bool from_stdin, const char *id_arg, int64_t id,
                         const char *subject)
{
    const char *state = jstr(reply, "state", "?");
    enum token_state ts = 0;
    (void)token_state_from_name(state, &ts);

    if (from_stdin) {
        long long tid = jint(reply, "id");
        if (ts == TOKEN_PENDING)
            printf("token %lld queued for revocation (pending)\n", tid);
        else if (ts == TOKEN_FAILED)
            printf("token %lld failed earlier; 'revokerctl retry %lld' queues it again\n", tid, tid);
        else if (ts == TOKEN_HELD)
            print_held(tid);
        else
            printf("token %lld is already %s\n", tid, state);
    } else if (id_arg) {
        if (jint(reply, "count") > 0)
            printf("token %" PRId64 " queued for revocation (pending)\n", id);
        else if (ts == TOKEN_HELD)
            print_held(id);
        else
            printf("token %" PRId64 " was not active (state: %s); nothing queued\n", id, state);
    } else {
        char prefix[384];
        if (jint(reply, "count") == 0)
            printf("no active token of subject '%s'; nothing queued\n", subject);
        else {
            snprintf(prefix, sizeof(prefix), "%lld token(s) of subject '%s' queued for revocation:",
                     jint(reply, "count"), subject);
            print_ids(prefix, json_object_get(reply, "ids"));
        }
        if (json_array_size(json_object_get(reply, "held")) > 0)
            print_ids("held, the revocation kept for their release:", json_object_get(reply, "held"));
    }
}

/* --token: refused, whatever it holds. */
static int token_in_argv(const char *cmd)
{
    return cli_usage_error(cmd, "a token is never taken from the command line (every user can read it with ps); "
                                "use --token-stdin");
}

/* An argument after the options: not echoed, it may be a token typed by mistake. */
static int stray_argument(const char *cmd)
{
    return cli_usage_error(cmd, "unexpected argument; a token is read with --token-stdin, never from the command "
                                "line");
}

/* The request's "token": read, copied into req, wiped. 0 or an exit status. */
static int add_token(const char *cmd, json_t *req)
{
    char *token;
    size_t len;
    int r = token_stdin_read(&token, &len);
    if (r < 0)
        return token_error(cmd, r);
    /* The daemon refuses it by the same rule: it need not travel. */
    bool sendable = secret_token_ok(token, len);
    json_t *v = sendable ? json_stringn(token, len) : NULL;
    secret_wipe(token, len);
    free(token);
    if (!v || json_object_set_new(req, "token", v) < 0)
        return token_error(cmd, sendable ? -ENOMEM : -EINVAL);
    return 0;
}

static int revoke_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS,
        {"id", required_argument, NULL, OPT_ID},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"token-stdin", no_argument, NULL, OPT_TOKEN_STDIN},
        {"token", optional_argument, NULL, OPT_TOKEN},
        {"reason", required_argument, NULL, OPT_REASON},
        {NULL, 0, NULL, 0},
    };
    const char *subject = NULL, *reason = NULL, *id_arg = NULL;
    bool from_stdin = false, human;
    int64_t id = 0;
    int opt, r;

    while ((r = cli_next_option(c, "revoke", argc, argv, opts, &opt)) == 0 && opt != -1) {
        switch (opt) {
        case OPT_ID: id_arg = optarg; break;
        case OPT_SUBJECT: subject = optarg; break;
        case OPT_TOKEN_STDIN: from_stdin = true; break;
        case OPT_REASON: reason = optarg; break;
        case OPT_TOKEN:
            return token_in_argv("revoke");
        case 'h': fputs(revoke_help, stdout); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind < argc)
        return stray_argument("revoke");
    if ((id_arg != NULL) + (subject != NULL) + from_stdin != 1)
        return cli_usage_error("revoke", "give exactly one of --id N, --subject S or --token-stdin");
    if (id_arg && cli_parse_id(id_arg, &id) < 0)
        return cli_usage_error("revoke", "invalid --id '%s' (a positive integer)", id_arg);
    if (subject && !*subject)
        return cli_usage_error("revoke", "--subject must not be empty");

    json_t *req = json_pack("{s:s}", "op", "revoke");
    if (!req)
        return EXIT_ANSWERED_ERROR;
    if (reason && *reason && json_object_set_new(req, "reason", json_string(reason)) < 0) {
        json_decref(req);
        return cli_usage_error("revoke", "--reason must be UTF-8 text");
    }
    if (id_arg)
        json_object_set_new(req, "id", json_integer(id));
    if (subject && json_object_set_new(req, "subject", json_string(subject)) < 0) {
        json_decref(req);
        return cli_usage_error("revoke", "--subject must be UTF-8 text");
    }
    if (from_stdin && (r = add_token("revoke", req)) != 0) {
        json_decref(req);
        return r;
    }

    struct call_reply reply;
    if ((r = ask(c, req, &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human)
        print_revoke(reply.json, from_stdin, id_arg, id, subject);
    call_reply_free(&reply);
    return r;
}

const struct command socket_cmd_revoke = {
    "revoke", "queue tokens for revocation: --id N, --subject S or --token-stdin", revoke_help,
    revoke_run,
};

/* ---- track ---- */

static const char track_help[] =
    "Usage: revokerctl track --token-stdin [--subject S] [--expires-at TIME]\n"
    "\n"
    "Hand a live token to revokerd for revocation at its expiry. Once it says\n"
    "\"tracked\", the row is committed. A token handed over before keeps its row.\n"
    "\n"
    "    --token-stdin      the secret, read from standard input (never from argv)\n"
    "    --subject S        its owner, for revoke --subject\n"
    "    --expires-at TIME  when it expires: Unix seconds, \"2026-11-27 10:00\",\n"
    "                       an ISO time, or a span ahead such as \"1h\"; without\n"
    "                       it, the exp claim of a JWT (an earlier exp wins)\n"
    "\n"
    "See revokerctl(1).\n";

/* A token already past active (revoked, pending, failed) says so. */
static void print_track(json_t *reply)
{
    const char *state = jstr(reply, "state", "?");
    char exp[64];
    iso_to_local(reply, "expires_at", exp, sizeof(exp));
    if (strcmp(state, "active") == 0)
        printf("token %lld tracked\n", jint(reply, "id"));
    else
        printf("token %lld is already %s\n", jint(reply, "id"), state);
    printf("  %-13s %s\n", "state", jstr(reply, "state", "?"));
    printf("  %-13s %s\n", "expires", exp);
}

static int track_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS,
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"token-stdin", no_argument, NULL, OPT_TOKEN_STDIN},
        {"token", optional_argument, NULL, OPT_TOKEN},
        {"expires-at", required_argument, NULL, OPT_EXPIRES_AT},
        {NULL, 0, NULL, 0},
    };
    const char *subject = NULL, *expires_arg = NULL;
    bool from_stdin = false, human;
    int64_t expires_at = 0;
    int opt, r;

    while ((r = cli_next_option(c, "track", argc, argv, opts, &opt)) == 0 && opt != -1) {
        switch (opt) {
        case OPT_SUBJECT: subject = optarg; break;
        case OPT_TOKEN_STDIN: from_stdin = true; break;
        case OPT_EXPIRES_AT: expires_arg = optarg; break;
        case OPT_TOKEN:
            return token_in_argv("track");
        case 'h': fputs(track_help, stdout); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind < argc)
        return stray_argument("track");
    if (!from_stdin)
        return cli_usage_error("track", "track needs --token-stdin");
    if (subject && !*subject)
        return cli_usage_error("track", "--subject must not be empty");
    if (expires_arg && timearg_until(expires_arg, db_now_ms(), &expires_at) < 0)
        return cli_usage_error("track",
                               "invalid --expires-at '%s' (Unix seconds, \"2026-11-27 10:00\", an ISO "
                               "time, or a span ahead such as \"1h\")",
                               expires_arg);

    json_t *req = json_pack("{s:s}", "op", "track");
    if (!req)
        return EXIT_ANSWERED_ERROR;
    if (expires_arg)
        json_object_set_new(req, "expires_at", json_integer((json_int_t)expires_at));
    if (subject && json_object_set_new(req, "subject", json_string(subject)) < 0) {
        json_decref(req);
        return cli_usage_error("track", "--subject must be UTF-8 text");
    }
    if ((r = add_token("track", req)) != 0) {
        json_decref(req);
        return r;
    }

    struct call_reply reply;
    if ((r = ask(c, req, &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human)
        print_track(reply.json);
    call_reply_free(&reply);
    return r;
}

const struct command socket_cmd_track = {
    "track",
    "hand a live token over for revocation at its expiry: --token-stdin",
    track_help,
    track_run,
};

/* ---- status ---- */

static const char status_help[] =
    "Usage: revokerctl status ID\n"
    "\n"
    "Show token ID: state, subject, fingerprint, the reason given with its\n"
    "revocation, attempts, last event and error, when it became due, the next\n"
    "attempt, when it finished. Times are local.\n"
    "\n"
    "See revokerctl(1).\n";

static void print_status(json_t *reply)
{
    char next[64], due[64], fin[64], exp[64];
    iso_to_local(reply, "next_attempt_at", next, sizeof(next));
    iso_to_local(reply, "due_at", due, sizeof(due));
    iso_to_local(reply, "finished_at", fin, sizeof(fin));
    iso_to_local(reply, "expires_at", exp, sizeof(exp));
    printf("token %lld\n", jint(reply, "id"));
    printf("  %-13s %s\n", "state", jstr(reply, "state", "?"));
    printf("  %-13s %s\n", "subject", jstr(reply, "subject", "-"));
    printf("  %-13s %s\n", "fingerprint", jstr(reply, "fingerprint", "-"));
    printf("  %-13s %s\n", "reason", jstr(reply, "reason", "-"));
    printf("  %-13s %lld\n", "attempts", jint(reply, "attempts"));
    printf("  %-13s %s\n", "last event", jstr(reply, "last_event", "-"));
    printf("  %-13s %s\n", "last error", jstr(reply, "last_error", "-"));
    printf("  %-13s %s\n", "due since", due);
    printf("  %-13s %s\n", "next attempt", next);
    printf("  %-13s %s\n", "finished", fin);
    printf("  %-13s %s\n", "expires", exp);
}

static int status_run(struct cli *c, int argc, char **argv)
{
    bool help, human;
    int64_t id;
    int r;

    if (plain_options(c, "status", argc, argv, &help) < 0)
        return EXIT_USAGE;
    if (help) {
        fputs(status_help, stdout);
        return 0;
    }
    if (optind >= argc)
        return cli_usage_error("status", "status needs a token ID");
    if (cli_parse_id(argv[optind], &id) < 0)
        return cli_usage_error("status", "invalid token ID '%s' (a positive integer)", argv[optind]);
    if (optind + 1 < argc)
        return cli_usage_error("status", "unexpected argument '%s'", argv[optind + 1]);

    struct call_reply reply;
    if ((r = ask(c, json_pack("{s:s,s:I}", "op", "status", "id", (json_int_t)id), &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human)
        print_status(reply.json);
    call_reply_free(&reply);
    return r;
}

const struct command socket_cmd_status = {
    "status", "show a token: state, attempts, last event and error, times", status_help, status_run,
};

/* ---- retry ---- */

static const char retry_help[] =
    "Usage: revokerctl retry ID | --failed\n"
    "\n"
    "Put failed tokens back in the queue with their attempts reset: token ID,\n"
    "or with --failed every failed token. A token whose secret is no longer\n"
    "stored cannot be retried.\n"
    "\n"
    "See revokerctl(1).\n";

static int retry_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS, {"failed", no_argument, NULL, OPT_FAILED}, {NULL, 0, NULL, 0}};
    bool failed = false, human;
    int64_t id = 0;
    int opt, r;

    while ((r = cli_next_option(c, "retry", argc, argv, opts, &opt)) == 0 && opt != -1) {
        if (opt == 'h') {
            fputs(retry_help, stdout);
            return 0;
        }
        failed = failed || opt == OPT_FAILED;
    }
    if (r < 0)
        return EXIT_USAGE;
    if (failed == (optind < argc))
        return cli_usage_error("retry", "give a token ID or --failed (not both)");
    if (!failed) {
        if (cli_parse_id(argv[optind], &id) < 0)
            return cli_usage_error("retry", "invalid token ID '%s' (a positive integer)", argv[optind]);
        if (optind + 1 < argc)
            return cli_usage_error("retry", "unexpected argument '%s'", argv[optind + 1]);
    }

    struct call_reply reply;
    json_t *req = failed ? json_pack("{s:s,s:b}", "op", "retry", "failed", 1)
                         : json_pack("{s:s,s:I}", "op", "retry", "id", (json_int_t)id);
    if ((r = ask(c, req, &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human) {
        long long n = jint(reply.json, "count");
        if (!failed)
            printf("token %" PRId64 " queued again (pending)\n", id);
        else if (n == 0)
            printf("no failed token; nothing queued\n");
        else
            printf("%lld failed token(s) queued again\n", n);
    }
    call_reply_free(&reply);
    return r;
}

const struct command socket_cmd_retry = {
    "retry", "queue a failed token again, or every failed one (--failed)", retry_help, retry_run,
};

/* ---- hold, release, drop ---- */

static const char hold_help[] =
    "Usage: revokerctl hold --id N | --subject S [--reason R]\n"
    "\n"
    "Hold active or pending tokens: token N, or every one of subject S. A held\n"
    "token is never sent, whether it expires, is flagged or is revoked over the\n"
    "socket meanwhile, until 'revokerctl release'. A token whose request is in\n"
    "flight cannot be held. The audit log records your uid and the reason.\n"
    "\n"
    "See revokerctl(1).\n";

static const char release_help[] =
    "Usage: revokerctl release --id N | --subject S | --all\n"
    "\n"
    "Release held tokens: token N, every held token of subject S, or every held\n"
    "token. One that is due (it was pending, expired, or was flagged or revoked\n"
    "while held) is pending again with its attempts; the others are active.\n"
    "\n"
    "See revokerctl(1).\n";

static const char drop_help[] =
    "Usage: revokerctl drop --id N --reason R\n"
    "\n"
    "Give up on pending or held token N without sending it: it is failed, its\n"
    "secret is erased (unless keep_secrets), and the audit log records 'dropped'\n"
    "with your uid and the reason.\n"
    "\n"
    "See revokerctl(1).\n";

/* What each of the three takes and says. */
struct steer {
    const char *op, *done; /* "hold", "held" */
    bool subject, all;     /* --subject S, --all allowed */
    bool reason_required;  /* drop */
    bool reason;           /* --reason allowed */
};

static const struct steer steer_hold = {"hold", "held", true, false, false, true};
static const struct steer steer_release = {"release", "released", true, true, false, false};
static const struct steer steer_drop = {"drop", "dropped", false, false, true, true};

static void print_steer(const struct steer *s, json_t *reply, const char *id_arg)
{
    long long n = jint(reply, "count");
    json_t *in_flight = json_object_get(reply, "in_flight");
    size_t i;
    json_t *v;

    if (id_arg && strcmp(s->op, "drop") == 0)
        printf("token %s dropped (failed); no request was sent\n", id_arg);
    else if (id_arg && json_object_get(reply, "state"))
        printf("token %s %s (%s)\n", id_arg, s->done, jstr(reply, "state", "?"));
    else if (id_arg)
        printf("token %s %s\n", id_arg, s->done);
    else if (n == 0)
        printf("no token %s\n", s->done);
    else
        printf("%lld token(s) %s\n", n, s->done);
    json_array_foreach(in_flight, i, v)
        printf("token %lld is being sent now and could not be held; its outcome is recorded as usual\n",
               (long long)json_integer_value(v));
}

static int steer_run(const struct steer *s, const char *help, struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTIONS,
        {"id", required_argument, NULL, OPT_ID},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"all", no_argument, NULL, OPT_ALL},
        {"reason", required_argument, NULL, OPT_REASON},
        {NULL, 0, NULL, 0},
    };
    const char *subject = NULL, *reason = NULL, *id_arg = NULL;
    bool all = false, human;
    int64_t id = 0;
    int opt, r, selectors = 0; /* a second --id is not the last one silently */

    while ((r = cli_next_option(c, s->op, argc, argv, opts, &opt)) == 0 && opt != -1) {
        selectors += opt == OPT_ID || opt == OPT_SUBJECT || opt == OPT_ALL;
        switch (opt) {
        case OPT_ID: id_arg = optarg; break;
        case OPT_SUBJECT: subject = optarg; break;
        case OPT_ALL: all = true; break;
        case OPT_REASON: reason = optarg; break;
        case 'h': fputs(help, stdout); return 0;
        }
    }
    if (r < 0)
        return EXIT_USAGE;
    if (optind < argc)
        return cli_usage_error(s->op, "unexpected argument '%s'", argv[optind]);
    if ((subject && !s->subject) || (all && !s->all) || (reason && !s->reason))
        return cli_usage_error(s->op, "%s is not an option of %s (see revokerctl %s --help)",
                               subject ? "--subject" : all ? "--all" : "--reason", s->op, s->op);
    if (selectors != 1)
        return cli_usage_error(s->op, "give exactly one of --id N%s%s", s->subject ? ", --subject S" : "",
                               s->all ? " or --all" : "");
    if (id_arg && cli_parse_id(id_arg, &id) < 0)
        return cli_usage_error(s->op, "invalid --id '%s' (a positive integer)", id_arg);
    if (subject && !*subject)
        return cli_usage_error(s->op, "--subject must not be empty");
    if (s->reason_required && (!reason || !*reason))
        return cli_usage_error(s->op, "--reason R is required: it is recorded in the audit log");

    json_t *req = json_pack("{s:s}", "op", s->op);
    if (!req)
        return EXIT_ANSWERED_ERROR;
    if (id_arg)
        json_object_set_new(req, "id", json_integer(id));
    if (all)
        json_object_set_new(req, "all", json_true());
    if ((subject && json_object_set_new(req, "subject", json_string(subject)) < 0) ||
        (reason && *reason && json_object_set_new(req, "reason", json_string(reason)) < 0)) {
        json_decref(req);
        return cli_usage_error(s->op, "--subject and --reason must be UTF-8 text");
    }

    struct call_reply reply;
    if ((r = ask(c, req, &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human)
        print_steer(s, reply.json, id_arg);
    call_reply_free(&reply);
    return r;
}

static int hold_run(struct cli *c, int argc, char **argv)
{
    return steer_run(&steer_hold, hold_help, c, argc, argv);
}

static int release_run(struct cli *c, int argc, char **argv)
{
    return steer_run(&steer_release, release_help, c, argc, argv);
}

static int drop_run(struct cli *c, int argc, char **argv)
{
    return steer_run(&steer_drop, drop_help, c, argc, argv);
}

const struct command socket_cmd_hold = {
    "hold", "never send tokens until released: --id N or --subject S [--reason R]", hold_help, hold_run,
};
const struct command socket_cmd_release = {
    "release", "release held tokens: --id N, --subject S or --all", release_help, release_run,
};
const struct command socket_cmd_drop = {
    "drop", "give up on a pending or held token without sending it: --id N --reason R", drop_help, drop_run,
};

/* ---- stats and ping: no argument, one request, one printer ---- */

static int run_plain(struct cli *c, const struct command *cmd, int argc, char **argv,
                     void (*print)(const struct cli *c, json_t *reply))
{
    bool help, human;
    int r;

    if (plain_options(c, cmd->name, argc, argv, &help) < 0)
        return EXIT_USAGE;
    if (help) {
        fputs(cmd->help, stdout);
        return 0;
    }
    if (optind < argc)
        return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);

    struct call_reply reply;
    if ((r = ask(c, json_pack("{s:s}", "op", cmd->name), &reply)) != 0)
        return r;
    r = answer(c, &reply, &human);
    if (human)
        print(c, reply.json);
    call_reply_free(&reply);
    return r;
}

static const char stats_help[] =
    "Usage: revokerctl stats\n"
    "\n"
    "Show the tokens per state, requests queued and in flight, outcomes since\n"
    "the daemon started, the endpoint's health and last error, and uptime.\n"
    "\n"
    "See revokerctl(1).\n";

static void print_stats(const struct cli *c, json_t *reply)
{
    json_t *st = json_object_get(reply, "states");
    json_t *tot = json_object_get(reply, "totals");
    json_t *ep = json_object_get(reply, "endpoint");
    char up[64];

    (void)c;
    config_format_duration((uint64_t)jint(reply, "uptime_s") * 1000, up, sizeof(up));
    printf("%-12s %lld active, %lld pending, %lld revoked, %lld failed, %lld held\n", "tokens",
           jint(st, "active"), jint(st, "pending"), jint(st, "revoked"), jint(st, "failed"),
           jint(st, "held"));
    printf("%-12s %lld queued, %lld in flight, %lld outcomes not yet committed\n", "engine",
           jint(reply, "queued"), jint(reply, "in_flight"), jint(reply, "uncommitted"));
    printf("%-12s %lld requests: %lld revoked, %lld already invalid, %lld rejected, "
           "%lld gave up, %lld retried, %lld dropped; %lld new tokens hashed\n",
           "since start", jint(tot, "sent"), jint(tot, "revoked"), jint(tot, "already_invalid"),
           jint(tot, "rejected"), jint(tot, "gave_up"), jint(tot, "retried"), jint(tot, "dropped"),
           jint(tot, "hashed"));
    const char *last = jstr(ep, "last_error", NULL);
    if (last)
        printf("%-12s %s (last error: %s)\n", "endpoint", jstr(ep, "health", "?"), last);
    else
        printf("%-12s %s\n", "endpoint", jstr(ep, "health", "?"));
    json_t *bad = json_object_get(reply, "bad_expires_at");
    if (jint(bad, "converted_from_ms") || jint(bad, "rejected"))
        printf("%-12s %lld read as milliseconds and converted, %lld rejected (view invalid_tokens)\n",
               "expires_at", jint(bad, "converted_from_ms"), jint(bad, "rejected"));
    const char *dberr = jstr(reply, "db_error", NULL);
    printf("%-12s %s (%lld failed commits since start)\n", "database", dberr ? dberr : "ok",
           jint(reply, "db_errors"));
    json_t *db = json_object_get(reply, "database");
    json_t *pruned = json_object_get(db, "pruned");
    if (db)
        printf("%-12s %.1f MB, %.1f MB of it free; pruned since start: %lld tokens, %lld audit rows\n",
               "file", (double)jint(db, "size_bytes") / 1e6, (double)jint(db, "free_bytes") / 1e6,
               jint(pruned, "tokens"), jint(pruned, "audit"));
    printf("%-12s %s\n", "uptime", up);
}

static int stats_run(struct cli *c, int argc, char **argv)
{
    return run_plain(c, &socket_cmd_stats, argc, argv, print_stats);
}

const struct command socket_cmd_stats = {
    "stats", "tokens per state, the engine, the endpoint's health, uptime", stats_help, stats_run,
};

static const char metrics_help[] =
    "Usage: revokerctl metrics\n"
    "\n"
    "Print revokerd's metrics in the Prometheus text format (0.0.4): ready for\n"
    "node_exporter's textfile collector, e.g.\n"
    "  revokerctl metrics > DIR/revokerd.prom.$$ && mv DIR/revokerd.prom.$$ DIR/revokerd.prom\n"
    "Read from memory: no table scan. --json prints the reply as it came.\n"
    "\n"
    "See revokerctl(1).\n";

/* The text as it came: it ends with a newline already. */
static void print_metrics(const struct cli *c, json_t *reply)
{
    (void)c;
    fputs(jstr(reply, "text", ""), stdout);
}

static int metrics_run(struct cli *c, int argc, char **argv)
{
    return run_plain(c, &socket_cmd_metrics, argc, argv, print_metrics);
}

const struct command socket_cmd_metrics = {
    "metrics", "the metrics in the Prometheus text format (for node_exporter's textfile collector)",
    metrics_help, metrics_run,
};

static const char ping_help[] =
    "Usage: revokerctl ping\n"
    "\n"
    "Check that revokerd answers on its control socket; prints its version and\n"
    "uptime. Exit status 0 if it does, 69 if it cannot be reached.\n"
    "\n"
    "See revokerctl(1).\n";

static void print_ping(const struct cli *c, json_t *reply)
{
    char up[64];
    config_format_duration((uint64_t)jint(reply, "uptime_s") * 1000, up, sizeof(up));
    printf("revokerd %s is up at %s (uptime %s)\n", jstr(reply, "version", "?"), c->socket, up);
}

static int ping_run(struct cli *c, int argc, char **argv)
{
    return run_plain(c, &socket_cmd_ping, argc, argv, print_ping);
}

const struct command socket_cmd_ping = {
    "ping", "check that the daemon answers", ping_help, ping_run,
};

int socket_cmds_ask(struct cli *c, json_t *req, struct call_reply *ret)
{
    return ask(c, req, ret);
}

void socket_cmds_local_time(json_t *o, const char *key, char *buf, size_t len)
{
    iso_to_local(o, key, buf, len);
}
