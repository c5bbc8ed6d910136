/* ctl: the control socket. A UNIX stream socket served on the loop
 * (uv_pipe_t): bound at the configured path (mode 0660, a stale file from a
 * crashed run replaced, a live daemon there detected) or taken from systemd
 * (LISTEN_FDS). Each connection's peer is checked (SO_PEERCRED: root, the
 * daemon's own uid, members of the control group); lines are cut at '\n'
 * and handed to proto_batch_line(); replies go back in request order (a
 * reply that comes later, from an op run off the loop, holds the client's
 * next requests until it is sent). Caps:
 * PROTO_MAX_LINE per line, max_clients connections, idle_ms without a request.
 *
 * The process must ignore SIGPIPE (main does): a peer that leaves before its
 * reply must cost an EPIPE, not the process. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "proto.h"

struct ctl_options {
    const char *path;         /* socket path (bound unless listen_fd >= 0) */
    int listen_fd;            /* from sd_listen_fds, or -1 */
    unsigned max_clients;
    uint64_t idle_ms;
    gid_t control_gid;        /* (gid_t)-1: none */
};

struct ctl;

/* err gets a message for the operator ("another revokerd is listening on
 * /run/revokerd.sock"). 0, -EADDRINUSE, -errno. */
int ctl_new(uv_loop_t *loop, const struct ctl_options *o, const struct proto_env *env,
            struct ctl **ret_ctl, char *err, size_t errlen);
/* Reload: new caps apply to new connections. */
void ctl_configure(struct ctl *c, unsigned max_clients, uint64_t idle_ms, gid_t control_gid);
unsigned ctl_clients(const struct ctl *c);
/* Connections refused since ctl_new, by reason (for the metrics). NULL: 0s. */
struct ctl_refusals {
    uint64_t uid, too_many, line_too_long;
};
struct ctl_refusals ctl_get_refusals(const struct ctl *c);
/* Close the listener and every client; unlink the path if ctl bound it. */
void ctl_close(struct ctl *c, void (*cb)(void *data), void *data);
