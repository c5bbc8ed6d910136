/* Unit tests for idset: membership, growth, deletion in the middle of
 * probe runs (backward shift), id 0, and allocation failure (calloc is
 * wrapped for this test: see tests/meson.build). */
#include <errno.h>
#include <stdint.h>

#include "idset.h"
#include "unit.h"

/* calloc fails while fail_calloc is set (-Wl,--wrap=calloc). */
static bool fail_calloc;
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
    return fail_calloc ? NULL : __real_calloc(n, size);
}

/* The home slot the set gives an id (the same multiplicative hash), so that
 * a test can build runs of colliding ids on purpose. */
static size_t home_of(int64_t id, size_t cap)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 7) & (cap - 1);
}

/* The first n ids from `from` upwards whose home slot is `home`. */
static void colliding(int64_t from, size_t home, size_t cap, int64_t *ids, size_t n)
{
    for (int64_t id = from; n > 0; id++)
        if (id != 0 && home_of(id, cap) == home) {
            *ids++ = id;
            n--;
        }
}

static void test_init(void)
{
    struct idset s;

    CHECK_INT(idset_init(&s, 0), -EINVAL);
    CHECK_INT(idset_init(&s, 1), -EINVAL);
    CHECK_INT(idset_init(&s, 12), -EINVAL);
    REQUIRE(idset_init(&s, 2) == 0);
    CHECK_INT(s.cap, 2);
    CHECK_INT(s.len, 0);
    CHECK(!idset_has(&s, 1));
    idset_free(&s);
    CHECK(s.slots == NULL);
    CHECK_INT(s.cap, 0);
    idset_free(&s); /* twice is fine */
    CHECK(!idset_has(&s, 1));
    idset_del(&s, 1);
}

static void test_add_has_del(void)
{
    struct idset s;

    REQUIRE(idset_init(&s, 1024) == 0);
    CHECK_INT(idset_add(&s, 7), 0);
    CHECK_INT(idset_add(&s, 7), 0); /* a member already: unchanged */
    CHECK_INT(s.len, 1);
    CHECK(idset_has(&s, 7));
    CHECK(!idset_has(&s, 8));
    CHECK_INT(idset_add(&s, INT64_MAX), 0);
    CHECK_INT(idset_add(&s, -1), 0); /* SQLite allows negative rowids */
    CHECK_INT(idset_add(&s, INT64_MIN), 0);
    CHECK_INT(s.len, 4);
    CHECK(idset_has(&s, INT64_MAX) && idset_has(&s, -1) && idset_has(&s, INT64_MIN));
    idset_del(&s, 8); /* not a member */
    CHECK_INT(s.len, 4);
    idset_del(&s, 7);
    CHECK_INT(s.len, 3);
    CHECK(!idset_has(&s, 7));
    idset_del(&s, 7);
    CHECK_INT(s.len, 3);
    idset_free(&s);
}

/* 0 marks an empty slot: it can be neither added nor found. */
static void test_zero(void)
{
    struct idset s;

    REQUIRE(idset_init(&s, 4) == 0);
    CHECK(!idset_has(&s, 0));
    CHECK_INT(idset_add(&s, 0), -EINVAL);
    CHECK_INT(s.len, 0);
    CHECK(!idset_has(&s, 0));
    idset_del(&s, 0);
    CHECK_INT(s.len, 0);
    idset_free(&s);
}

static void test_growth(void)
{
    struct idset s;

    REQUIRE(idset_init(&s, 2) == 0);
    CHECK_INT(idset_add(&s, 1), 0);
    CHECK_INT(s.cap, 2); /* half full: no growth yet */
    CHECK_INT(idset_add(&s, 2), 0);
    CHECK_INT(s.cap, 4);
    CHECK_INT(idset_add(&s, 3), 0);
    CHECK_INT(s.cap, 8);
    CHECK_INT(idset_add(&s, 3), 0); /* a member: never grows */
    CHECK_INT(s.cap, 8);
    for (int64_t id = 4; id <= 1000; id++)
        REQUIRE(idset_add(&s, id) == 0);
    CHECK_INT(s.len, 1000);
    CHECK_INT(s.cap, 2048);
    for (int64_t id = 1; id <= 1000; id++)
        CHECK(idset_has(&s, id));
    CHECK(!idset_has(&s, 1001));
    for (int64_t id = 1; id <= 1000; id++)
        idset_del(&s, id);
    CHECK_INT(s.len, 0);
    CHECK_INT(s.cap, 2048); /* never shrinks */
    idset_free(&s);
}

/* A run of ids with one home slot, cut in each place: the members after the
 * hole move back and stay findable. Also at the table's end, where the run
 * wraps round to slot 0. */
static void test_delete_in_runs(void)
{
    enum { CAP = 64, RUN = 6 };
    const size_t homes[] = {5, CAP - 3, CAP - 1};

    for (size_t h = 0; h < sizeof(homes) / sizeof(homes[0]); h++) {
        for (size_t cut = 0; cut < RUN; cut++) {
            int64_t ids[RUN], other[2];
            struct idset s;

            colliding(1, homes[h], CAP, ids, RUN);
            /* Neighbours whose home is in the run's way. */
            colliding(1, (homes[h] + 2) % CAP, CAP, other, 2);
            REQUIRE(idset_init(&s, CAP) == 0);
            for (size_t i = 0; i < RUN; i++)
                REQUIRE(idset_add(&s, ids[i]) == 0);
            REQUIRE(idset_add(&s, other[0]) == 0);
            REQUIRE(idset_add(&s, other[1]) == 0);
            REQUIRE(s.cap == CAP);
            idset_del(&s, ids[cut]);
            CHECK_INT(s.len, RUN + 1);
            for (size_t i = 0; i < RUN; i++)
                CHECK_INT(idset_has(&s, ids[i]), i != cut);
            CHECK(idset_has(&s, other[0]) && idset_has(&s, other[1]));
            /* The hole was filled: adding the id back finds the run's end. */
            REQUIRE(idset_add(&s, ids[cut]) == 0);
            for (size_t i = 0; i < RUN; i++)
                CHECK(idset_has(&s, ids[i]));
            idset_free(&s);
        }
    }
}

/* Random adds and deletes over a small range of ids (many collisions, runs
 * that wrap) against a plain array. */
static void test_against_model(void)
{
    enum { RANGE = 200, OPS = 200000 };
    bool member[2 * RANGE + 1] = {false};
    size_t count = 0;
    uint64_t x = 88172645463325252ull;
    struct idset s;

    REQUIRE(idset_init(&s, 8) == 0);
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t id = (int64_t)(x % (2 * RANGE + 1)) - RANGE;
        bool add = (x >> 32) % 3 != 0;
        if (id == 0)
            continue;
        if (add) {
            REQUIRE(idset_add(&s, id) == 0);
            count += !member[id + RANGE];
            member[id + RANGE] = true;
        } else {
            idset_del(&s, id);
            count -= member[id + RANGE];
            member[id + RANGE] = false;
        }
        if (op % 97 == 0)
            for (int64_t k = -RANGE; k <= RANGE; k++)
                if (idset_has(&s, k) != member[k + RANGE]) {
                    fprintf(stderr, "after op %d: id %lld: has %d, want %d\n", op, (long long)k,
                            idset_has(&s, k), member[k + RANGE]);
                    unit_failures++;
                    op = OPS;
                    break;
                }
        CHECK_INT(s.len, count);
    }
    idset_free(&s);
}

static void test_many(void)
{
    enum { N = 200000 };
    struct idset s;

    REQUIRE(idset_init(&s, 1024) == 0);
    for (int64_t id = 1; id <= N; id++)
        REQUIRE(idset_add(&s, id * 7919) == 0);
    CHECK_INT(s.len, N);
    for (int64_t id = 1; id <= N; id += 2)
        idset_del(&s, id * 7919);
    CHECK_INT(s.len, N / 2);
    for (int64_t id = 1; id <= N; id++)
        if (idset_has(&s, id * 7919) != (id % 2 == 0)) {
            CHECK_INT(idset_has(&s, id * 7919), id % 2 == 0);
            break;
        }
    idset_free(&s);
}

static void test_enomem(void)
{
    struct idset s;

    fail_calloc = true;
    CHECK_INT(idset_init(&s, 4), -ENOMEM);
    fail_calloc = false;
    REQUIRE(idset_init(&s, 4) == 0);
    REQUIRE(idset_add(&s, 1) == 0);
    REQUIRE(idset_add(&s, 2) == 0);
    fail_calloc = true;
    CHECK_INT(idset_add(&s, 3), -ENOMEM); /* would grow */
    CHECK_INT(idset_add(&s, 2), 0);       /* a member: no growth needed */
    fail_calloc = false;
    CHECK_INT(s.len, 2);
    CHECK_INT(s.cap, 4);
    CHECK(idset_has(&s, 1) && idset_has(&s, 2) && !idset_has(&s, 3));
    CHECK_INT(idset_add(&s, 3), 0);
    CHECK_INT(s.cap, 8);
    CHECK(idset_has(&s, 1) && idset_has(&s, 2) && idset_has(&s, 3));
    idset_free(&s);
}

TEST_MAIN({"init", test_init}, {"add_has_del", test_add_has_del}, {"zero", test_zero},
          {"growth", test_growth}, {"delete_in_runs", test_delete_in_runs},
          {"against_model", test_against_model}, {"many", test_many}, {"enomem", test_enomem})
