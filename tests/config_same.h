/* config_same.h: whether two configurations hold the same settings; for
 * test_config and fuzz_config, which check that a failed load or a copy
 * leaves them alone. config_equal() compares every key of the table in
 * config-keys.h. */
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
    return config_equal(a, b);
}
