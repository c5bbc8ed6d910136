/* unit.h: the few macros our C tests need. A failed check prints where and
 * what, and the test exits 1 at the end; TEST_MAIN runs the listed cases. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            unit_failures++;                                                         \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                              \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) {                                                              \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,    \
                    __LINE__, #a, a_, #b, b_);                                       \
            unit_failures++;                                                         \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,      \
                    __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");           \
            unit_failures++;                                                         \
        }                                                                            \
    } while (0)

/* Fatal: for setup that later checks depend on. */
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

struct unit_case {
    const char *name;
    void (*fn)(void);
};

#define TEST_MAIN(...)                                                               \
    int main(void)                                                                   \
    {                                                                                \
        static const struct unit_case cases[] = {__VA_ARGS__};                       \
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {             \
            int before = unit_failures;                                              \
            cases[i].fn();                                                           \
            printf("%s %s\n", unit_failures == before ? "ok  " : "FAIL", cases[i].name); \
        }                                                                            \
        return unit_failures ? 1 : 0;                                                \
    }
#define CASE(fn) {#fn, fn}
