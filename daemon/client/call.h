/* call: one request to revokerd over its control socket, and its reply.
 *
 * A request is one JSON object on one line; the reply is one line back
 * (revokerd(8), CONTROL SOCKET). One deadline covers connecting (a full
 * backlog is retried until then), writing and reading. The request is wiped
 * once sent: it may hold a token. Lifecycle: call_encode, call_connect,
 * call_exchange, close the fd, call_reply_free. Every function returns 0 or
 * -errno and prints nothing; the command says what failed. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct call_reply {
    char *line;   /* the reply as it came, without its '\n' (for --json) */
    json_t *json; /* an object with a boolean "ok" */
};

/* Now plus timeout_ms on the monotonic clock. */
uint64_t call_deadline(uint64_t timeout_ms);
/* req (consumed, also on error) as one line with its '\n'; free it with
 * secret_free. 0 or -ENOMEM. */
int call_encode(json_t *req, char **ret_msg, size_t *ret_len);
/* 0, -ENAMETOOLONG (the path does not fit sun_path), -ETIMEDOUT (the
 * backlog stayed full), or connect's -errno (-ENOENT, -ECONNREFUSED,
 * -EACCES...). */
int call_connect(const char *path, uint64_t deadline, int *ret_fd);
/* Writes msg and reads one reply line. 0, -ETIMEDOUT, -ECONNRESET (closed
 * before a whole line), -EMSGSIZE (a line over 64 MiB), -ENOMEM, -EPROTO
 * (the line is not a protocol reply), or send's and recv's -errno. A refusal
 * the daemon sends before closing (permission denied, too many clients) is
 * read even if writing the request failed. */
int call_exchange(int fd, const char *msg, size_t len, uint64_t deadline, struct call_reply *ret);
void call_reply_free(struct call_reply *r);
