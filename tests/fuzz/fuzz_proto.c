/* libFuzzer target for the control protocol: each input is one request line
 * handed to proto_handle() against a real database (a store without a loop,
 * no engine), exactly as ctl does after cutting a line. Invariants, each an
 * abort():
 *   - there is always a reply: one JSON object, no newline, "ok" a boolean,
 *     and ok:false carries a non-empty "error" string;
 *   - a token in the request never appears in the reply;
 *   - the audit chain stays intact (checked every 4096 inputs and at exit).
 * Run long: fuzz_proto -max_total_time=3600 -jobs=4 WORKDIR tests/fuzz/corpus/proto */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "auditverify.h"
#include "db.h"
#include "log.h"
#include "proto.h"
#include "secret.h"
#include "store.h"

static char dir[64];
static char path[128];
static struct proto_env env;
static unsigned long runs;

static void check_chain(void)
{
    int64_t rows = 0, bad = 0;
    char why[256];
    if (auditverify_chain(store_db(env.store), &rows, &bad, why, sizeof(why)) != 0) {
        fprintf(stderr, "audit chain broken at %lld: %s\n", (long long)bad, why);
        abort();
    }
}

static void cleanup(void)
{
    char p[160];
    if (!env.store)
        return;
    check_chain();
    store_close(env.store, NULL, NULL);
    env.store = NULL;
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    rmdir(dir);
}

static void seed_rows(void)
{
    /* Rows in every state, so that ids 1..8 hit each branch. */
    static const char *const sql =
        "INSERT INTO tokens (token, subject, state) VALUES "
        "('seed-active-1', 'alice', 'active'), ('seed-active-2', 'alice', 'active'), "
        "('seed-pending-3', 'bob', 'pending'), ('seed-revoked-4', 'bob', 'revoked'), "
        "('seed-failed-5', 'carol', 'failed'), (NULL, 'carol', 'failed'), "
        "('seed-active-7', NULL, 'active'), ('seed-active-8', 'dave', 'active');";
    if (sqlite3_exec(store_db(env.store)->conn, sql, NULL, NULL, NULL) != SQLITE_OK)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct store *s;
    (void)argc;
    (void)argv;

    log_set_level(LOG_ERR); /* not a line per request */
    snprintf(dir, sizeof(dir), "/tmp/fuzz_proto.XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/fuzz.db", dir);
    if (store_open(NULL, path, NULL, NULL, &s, NULL, 0) < 0)
        abort();
    env = (struct proto_env){.store = s, .revoke = NULL};
    seed_rows();
    /* libcrypto registers its own exit handler at first use; it must run
     * after ours (handlers run in reverse order), so use it first. */
    uint8_t digest[SECRET_SHA256_LEN];
    secret_sha256("init", 4, digest);
    atexit(cleanup);
    return 0;
}

/* A token the reply could not contain by accident: long, and without the
 * characters of JSON structure and of our messages. */
static bool distinctive(const char *s, size_t len)
{
    if (len < 20)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ' || s[i] == '"' || s[i] == ':' || s[i] == '\\' || s[i] == '\0')
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PROTO_MAX_LINE) /* ctl refuses longer lines before parsing */
        return 0;
    char *reply = proto_handle(&env, (const char *)data, size);
    if (!reply || strchr(reply, '\n'))
        abort();

    json_t *r = json_loads(reply, 0, NULL);
    json_t *ok = json_object_get(r, "ok");
    if (!json_is_object(r) || !json_is_boolean(ok))
        abort();
    if (json_is_false(ok)) {
        const char *e = json_string_value(json_object_get(r, "error"));
        if (!e || !*e)
            abort();
    }
    json_decref(r);

    json_t *req = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    const char *tok = json_string_value(json_object_get(req, "token"));
    if (tok && distinctive(tok, json_string_length(json_object_get(req, "token"))) &&
        strstr(reply, tok)) {
        fprintf(stderr, "reply echoes the token: %s\n", reply);
        abort();
    }
    json_decref(req);
    free(reply);

    if (++runs % 4096 == 0)
        check_chain();
    return 0;
}
