/* test_lanes: the two-lane queue: urgent first whenever both have work,
 * each lane in the order it was filled. */
#include <errno.h>

#include "lanes.h"
#include "unit.h"
#include "util.h"

static struct job *job_of(int64_t id, bool urgent)
{
    const struct pending_row row = {.id = id, .token = "t", .token_len = 1, .urgent = urgent};
    struct job *j;

    REQUIRE(job_new(&row, NULL, &j) == 0);
    return j;
}

static void test_urgent_first(void)
{
    /* Pushed: r1 u2 r3 u4 r5; popped: u2 u4 r1 r3 r5. */
    static const struct {
        int64_t id;
        bool urgent;
    } in[] = {{1, false}, {2, true}, {3, false}, {4, true}, {5, false}};
    static const int64_t out[] = {2, 4, 1, 3, 5};
    struct lanes l = {0};
    struct job *j;

    CHECK(lanes_head(&l) == NULL);
    CHECK(lanes_pop(&l) == NULL);
    for (size_t i = 0; i < ARRAY_SIZE(in); i++)
        lanes_push(&l, job_of(in[i].id, in[i].urgent));
    CHECK_INT(lanes_len(&l), 5);
    CHECK_INT(l.urgent.len, 2);
    CHECK_INT(l.routine.len, 3);
    for (size_t i = 0; i < ARRAY_SIZE(out); i++) {
        CHECK_INT(lanes_head(&l)->id, out[i]);
        j = lanes_pop(&l);
        REQUIRE(j);
        CHECK_INT(j->id, out[i]);
        CHECK(j->urgent == (out[i] == 2 || out[i] == 4));
        job_free(j);
    }
    CHECK_INT(lanes_len(&l), 0);
    CHECK(lanes_pop(&l) == NULL);
}

/* Urgent work that arrives while routine work waits goes before it. */
static void test_urgent_overtakes(void)
{
    struct lanes l = {0};
    struct job *j;

    lanes_push(&l, job_of(1, false));
    lanes_push(&l, job_of(2, false));
    j = lanes_pop(&l);
    CHECK_INT(j->id, 1);
    job_free(j);
    lanes_push(&l, job_of(3, true));
    j = lanes_pop(&l);
    CHECK_INT(j->id, 3);
    job_free(j);
    j = lanes_pop(&l);
    CHECK_INT(j->id, 2);
    job_free(j);
    CHECK(lanes_head(&l) == NULL);
}

/* An operator's hold or drop takes a queued job back from either lane (the
 * head, the middle, the tail); a job held but in no lane is in flight. */
static void test_recall(void)
{
    static const struct {
        int64_t id;
        int rc;
        unsigned urgent_len, routine_len; /* after */
    } cases[] = {
        {3, 0, 2, 2},            /* routine, middle */
        {5, 0, 2, 1},            /* routine, tail */
        {2, 0, 1, 1},            /* urgent, head */
        {9, -EINPROGRESS, 1, 1}, /* held, no lane: sent */
        {42, 0, 1, 1},           /* not held at all */
        {3, 0, 1, 1},            /* again: gone already */
    };
    static const int64_t left[] = {4, 1};
    struct lanes l = {0};
    struct idset held;
    struct job *j;

    REQUIRE(idset_init(&held, 16) == 0);
    for (int64_t id = 1; id <= 5; id++) {
        lanes_push(&l, job_of(id, id % 2 == 0));
        REQUIRE(idset_add(&held, id) == 0);
    }
    REQUIRE(idset_add(&held, 9) == 0);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        CHECK_INT(lanes_recall(&l, &held, cases[i].id), cases[i].rc);
        CHECK_INT(l.urgent.len, cases[i].urgent_len);
        CHECK_INT(l.routine.len, cases[i].routine_len);
        CHECK(idset_has(&held, cases[i].id) == (cases[i].rc == -EINPROGRESS));
    }
    /* What is left keeps its order, and the tail still takes a push. */
    lanes_push(&l, job_of(7, false));
    for (size_t i = 0; i < ARRAY_SIZE(left); i++) {
        j = lanes_pop(&l);
        REQUIRE(j);
        CHECK_INT(j->id, left[i]);
        job_free(j);
    }
    j = lanes_pop(&l);
    REQUIRE(j);
    CHECK_INT(j->id, 7);
    job_free(j);
    CHECK(lanes_pop(&l) == NULL);
    idset_free(&held);
}

TEST_MAIN(CASE(test_urgent_first), CASE(test_urgent_overtakes), CASE(test_recall))
