/* libFuzzer target for config: each input is the text of a configuration
 * file, read by config_load() from a memfd (through /proc/self/fd/N, as
 * revokerd reads --config FILE), over the defaults. Invariants, each an
 * abort():
 *   - config_load returns 0, -EINVAL or -ENOMEM; on error err names the file
 *     first and the config is exactly what it was before the call;
 *   - an error message never carries a control character (it goes to the
 *     log and the terminal);
 *   - on success config_validate returns 0 or -EINVAL (with a message),
 *     config_copy makes an equal copy, and every duration survives
 *     config_format_duration -> config_parse_duration unchanged;
 *   - the input's first line, as a duration or a URL, parses or is refused
 *     without a crash (config_parse_duration, config_check_url).
 * Run long: fuzz_config -max_total_time=3600 -jobs=4 WORKDIR tests/fuzz/corpus/config */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "config_same.h"

static int fd = -1;
static char path[64];

/* Each key's type and member, from the table: the durations are checked. */
#define KEY_MEMBER(sec, name, type, member, ...) {#type, offsetof(struct config, member)},
static const struct {
    const char *type;
    size_t offset;
} members[] = {CONFIG_KEYS(KEY_MEMBER)};

/* A message for people: non-empty, no byte below 0x20 nor DEL. */
static void check_message(const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);

    if (n == 0 || n == errlen)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f) {
            fprintf(stderr, "control character in the message: %s\n", err);
            abort();
        }
}

static void check_duration(uint64_t ms)
{
    char text[128];
    uint64_t back = ~ms;

    config_format_duration(ms, text, sizeof(text));
    if (config_parse_duration(text, &back) != 0 || back != ms) {
        fprintf(stderr, "duration %llu ms printed as '%s' reads back as %llu\n", (unsigned long long)ms, text,
                (unsigned long long)back);
        abort();
    }
}

static void check_first_line(const uint8_t *data, size_t size)
{
    size_t n = 0;
    char line[512];
    uint64_t ms = UINT64_C(0x5a5a5a5a5a5a5a5a);
    char err[512];

    while (n < size && n + 1 < sizeof(line) && data[n] != '\n' && data[n] != '\0') {
        line[n] = (char)data[n];
        n++;
    }
    line[n] = '\0';
    int r = config_parse_duration(line, &ms);
    if (r == 0)
        check_duration(ms);
    else if (r != -EINVAL || ms != UINT64_C(0x5a5a5a5a5a5a5a5a))
        abort(); /* ret_ms written only on success */
    r = config_check_url(line, err, sizeof(err));
    if (r != 0 && r != -EINVAL)
        abort();
    if (r < 0)
        check_message(err, sizeof(err));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    config_set_url_check(config_check_url); /* as revokerd does */
    fd = memfd_create("revokerd.conf", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c, before, copy;
    char err[1024];
    int r;

    if (size > 1 << 20)
        return 0;
    if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    check_first_line(data, size);

    config_defaults(&c);
    if (config_copy(&before, &c) < 0)
        abort();
    memset(err, 0, sizeof(err));
    r = config_load(&c, path, err, sizeof(err));
    if (r != 0 && r != -EINVAL && r != -ENOMEM)
        abort();
    if (r < 0) {
        check_message(err, sizeof(err));
        if (strncmp(err, path, strlen(path)) != 0 || err[strlen(path)] != ':')
            abort(); /* FILE:LINE: ... */
        if (!config_same(&c, &before))
            abort(); /* a failed load leaves the config as it was */
    } else {
        r = config_validate(&c, err, sizeof(err));
        if (r != 0 && r != -EINVAL)
            abort();
        if (r < 0)
            check_message(err, sizeof(err));
        if (config_copy(&copy, &c) == 0) {
            if (!config_same(&copy, &c))
                abort();
            config_free(&copy);
        }
        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
            if (strcmp(members[i].type, "DURATION") == 0)
                check_duration(*(const uint64_t *)(const void *)((const char *)&c + members[i].offset));
    }
    config_free(&before);
    config_free(&c);
    return 0;
}
