/* Tests of token_stdin: what `revoke --token-stdin` accepts from a pipe. */
#include <errno.h>
#include <unistd.h>

#include "secret.h"
#include "token_stdin.h"
#include "unit.h"

/* stdin becomes a pipe holding len bytes of input, then EOF. */
static void feed(const char *input, size_t len)
{
    int p[2];

    REQUIRE(pipe(p) == 0);
    REQUIRE(len < 65536); /* fits the pipe: no writer needed after this */
    REQUIRE(write(p[1], input, len) == (ssize_t)len);
    close(p[1]);
    REQUIRE(dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
    close(p[0]);
}

static void test_cases(void)
{
    static const struct {
        const char *input;
        size_t len;
        int ret;
        const char *token;
    } cases[] = {
        {"tok-1", 5, 0, "tok-1"},
        {"tok-1\n", 6, 0, "tok-1"},
        {"tok-1\r\n", 7, 0, "tok-1"},     /* a CRLF from another system */
        {"tok-1\n\n", 7, -EBADMSG, NULL}, /* only one newline is taken off */
        {"", 0, -ENODATA, NULL},
        {"\n", 1, -ENODATA, NULL},
        {"one\ntwo\n", 8, -EBADMSG, NULL},
        {"a\0b", 3, -EILSEQ, NULL},
        {" spaced ", 8, 0, " spaced "}, /* kept as given: the daemon decides */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = NULL;
        size_t len = 0;

        feed(cases[i].input, cases[i].len);
        int r = token_stdin_read(&tok, &len);
        if (r != cases[i].ret) {
            fprintf(stderr, "case %zu: got %d, expected %d\n", i, r, cases[i].ret);
            unit_failures++;
        }
        if (r == 0 && cases[i].token) {
            CHECK_INT(len, strlen(cases[i].token));
            CHECK(memcmp(tok, cases[i].token, len) == 0);
        }
        if (r < 0)
            CHECK(tok == NULL && len == 0); /* untouched on error */
        if (tok)
            secret_wipe(tok, len);
        free(tok);
    }
}

static void test_length_limit(void)
{
    static char big[SECRET_MAX_LEN + 2];
    char *tok = NULL;
    size_t len = 0;

    memset(big, 'x', sizeof(big));
    feed(big, SECRET_MAX_LEN);
    CHECK_INT(token_stdin_read(&tok, &len), 0);
    CHECK_INT(len, SECRET_MAX_LEN);
    free(tok);
    big[SECRET_MAX_LEN] = '\n'; /* the newline does not count */
    feed(big, SECRET_MAX_LEN + 1);
    CHECK_INT(token_stdin_read(&tok, &len), 0);
    CHECK_INT(len, SECRET_MAX_LEN);
    free(tok);
    tok = NULL;
    feed(big, SECRET_MAX_LEN + 2);
    CHECK_INT(token_stdin_read(&tok, &len), -EMSGSIZE);
    memset(big, 'x', sizeof(big));
    feed(big, sizeof(big));
    CHECK_INT(token_stdin_read(&tok, &len), -EMSGSIZE);
    CHECK(tok == NULL);
}

TEST_MAIN(CASE(test_cases), CASE(test_length_limit))
