/* config_same.h: whether two configurations hold the same settings; for
 * test_config and fuzz_config, which check that a failed load or a copy
 * leaves them alone. A new setting goes here once. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "config.h"

static inline bool config_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static inline bool config_same(const struct config *a, const struct config *b)
{
    return config_same_str(a->database, b->database) && config_same_str(a->socket, b->socket) &&
           config_same_str(a->control_group, b->control_group) && a->max_clients == b->max_clients &&
           a->client_idle_ms == b->client_idle_ms && a->keep_secrets == b->keep_secrets &&
           a->log_level == b->log_level && config_same_str(a->url, b->url) &&
           a->timeout_ms == b->timeout_ms && a->concurrency == b->concurrency &&
           a->rate_limit == b->rate_limit && config_same_str(a->ca_file, b->ca_file) &&
           a->down_after == b->down_after &&
           config_same_str(a->credential_header, b->credential_header) &&
           a->retry_base_ms == b->retry_base_ms && a->retry_max_delay_ms == b->retry_max_delay_ms &&
           a->max_attempts == b->max_attempts && a->retry_after_max_ms == b->retry_after_max_ms;
}
