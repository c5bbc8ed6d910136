/* Tests of call: revokerctl's side of the control socket, against a
 * socketpair or a listening socket in /tmp standing in for revokerd. */
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "call.h"
#include "secret.h"
#include "unit.h"

static const char request[] = "{\"op\":\"ping\"}\n";

/* sv[0] for call (non-blocking, as call_connect makes it), sv[1] for the
 * stand-in daemon, which has already written `answer`. */
static void pair(int sv[2], const char *answer)
{
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    if (answer)
        REQUIRE(write(sv[1], answer, strlen(answer)) == (ssize_t)strlen(answer));
}

static void test_encode(void)
{
    char *msg = NULL;
    size_t len = 0;

    CHECK_INT(call_encode(json_pack("{s:s}", "op", "ping"), &msg, &len), 0);
    CHECK_STR(msg, request);
    CHECK_INT(len, strlen(request));
    secret_free(msg);
    CHECK_INT(call_encode(NULL, &msg, &len), -ENOMEM); /* json_pack failed */
}

static void test_exchange(void)
{
    struct call_reply reply = {0};
    char got[64] = "";
    int sv[2];

    pair(sv, "{\"ok\":true,\"version\":\"0.1.0\"}\n");
    CHECK_INT(call_exchange(sv[0], request, strlen(request), call_deadline(2000), &reply), 0);
    CHECK_STR(reply.line, "{\"ok\":true,\"version\":\"0.1.0\"}");
    CHECK(json_is_true(json_object_get(reply.json, "ok")));
    CHECK(read(sv[1], got, sizeof(got) - 1) == (ssize_t)strlen(request));
    CHECK_STR(got, request);
    call_reply_free(&reply);
    CHECK(reply.line == NULL && reply.json == NULL);
    close(sv[0]);
    close(sv[1]);

    /* an error reply is a reply: the command tells it */
    pair(sv, "{\"ok\":false,\"error\":\"permission denied\"}\n");
    close(sv[1]); /* refused and gone before the request was read */
    CHECK_INT(call_exchange(sv[0], request, strlen(request), call_deadline(2000), &reply), 0);
    CHECK_STR(json_string_value(json_object_get(reply.json, "error")), "permission denied");
    call_reply_free(&reply);
    close(sv[0]);
}

static void test_exchange_errors(void)
{
    static const struct {
        const char *answer;
        bool close_after;
        int ret;
    } cases[] = {
        {"not json\n", false, -EPROTO},
        {"[true]\n", false, -EPROTO},
        {"{\"ok\":1}\n", false, -EPROTO},
        {"{\"error\":\"x\"}\n", false, -EPROTO},
        {"{\"ok\":true}", true, -ECONNRESET}, /* closed before the newline */
        {NULL, true, -ECONNRESET},
        {NULL, false, -ETIMEDOUT}, /* a daemon that never answers */
        {"{\"ok\":tr", false, -ETIMEDOUT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct call_reply reply = {0};
        int sv[2];

        pair(sv, cases[i].answer);
        if (cases[i].close_after)
            close(sv[1]);
        int r = call_exchange(sv[0], request, strlen(request), call_deadline(100), &reply);
        if (r != cases[i].ret) {
            fprintf(stderr, "case %zu: got %d, expected %d\n", i, r, cases[i].ret);
            unit_failures++;
        }
        CHECK(reply.line == NULL && reply.json == NULL); /* untouched on error */
        close(sv[0]);
        if (!cases[i].close_after)
            close(sv[1]);
    }
}

static void test_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[] = "/tmp/test_call.XXXXXX", path[128], longpath[200];
    int fd = -1, lfd;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sock", dir);
    CHECK_INT(call_connect(path, call_deadline(1000), &fd), -ENOENT);
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    CHECK_INT(call_connect(longpath, call_deadline(1000), &fd), -ENAMETOOLONG);

    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd >= 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    REQUIRE(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK_INT(call_connect(path, call_deadline(1000), &fd), -ECONNREFUSED); /* bound, not listening */
    CHECK_INT(fd, -1);
    REQUIRE(listen(lfd, 4) == 0);
    CHECK_INT(call_connect(path, call_deadline(1000), &fd), 0);
    CHECK(fd >= 0);
    close(fd);
    close(lfd);
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(CASE(test_encode), CASE(test_exchange), CASE(test_exchange_errors), CASE(test_connect))
