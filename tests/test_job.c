/* Unit tests for job: a held token's copy of the secret, and the FIFO
 * job list. */
#include <errno.h>

#include "job.h"
#include "unit.h"

static void test_new_and_free(void)
{
    const struct pending_row row = {.id = 7, .token = "tok-abc\0garbage", .token_len = 7,
                                    .fingerprint = "0123456789abcdef", .attempts = 3};
    struct job *j = NULL;
    int owner;

    REQUIRE(job_new(&row, &owner, &j) == 0);
    CHECK_INT(j->id, 7);
    CHECK_STR(j->token, "tok-abc"); /* a copy, NUL-terminated */
    CHECK(j->token != row.token);
    CHECK_INT(j->token_len, 7);
    CHECK_STR(j->fingerprint, "0123456789abcdef");
    CHECK_INT(j->attempts, 3);
    CHECK(j->owner == &owner);
    CHECK(j->next == NULL);

    struct outcome_job in = job_outcome_input(j);
    CHECK_INT(in.id, 7);
    CHECK(in.token == j->token && in.token_len == 7);
    CHECK(in.fingerprint == j->fingerprint);
    CHECK_INT(in.attempts, 3);

    job_wipe_secret(j);
    CHECK_INT(j->token_len, 7);
    for (size_t i = 0; i < 7; i++)
        CHECK_INT(j->token[i], 0);
    job_free(j);
    job_free(NULL);

    /* No fingerprint yet: an empty one. */
    const struct pending_row bare = {.id = 8, .token = "x", .token_len = 1};
    REQUIRE(job_new(&bare, NULL, &j) == 0);
    CHECK_STR(j->fingerprint, "");
    job_free(j);
}

static void test_list(void)
{
    struct job_list l = {0};
    struct job *jobs[5];

    CHECK(job_list_pop(&l) == NULL);
    for (int i = 0; i < 5; i++) {
        const struct pending_row row = {.id = i + 1, .token = "t", .token_len = 1};
        REQUIRE(job_new(&row, NULL, &jobs[i]) == 0);
    }
    job_list_push(&l, jobs[0]);
    job_list_push(&l, jobs[1]);
    job_list_push(&l, jobs[2]);
    CHECK_INT(l.len, 3);
    CHECK(l.head == jobs[0] && l.tail == jobs[2]);
    CHECK(job_list_pop(&l) == jobs[0]);
    CHECK(jobs[0]->next == NULL);
    CHECK_INT(l.len, 2);
    job_list_push(&l, jobs[3]);
    CHECK(job_list_pop(&l) == jobs[1]);
    CHECK(job_list_pop(&l) == jobs[2]);
    CHECK(job_list_pop(&l) == jobs[3]);
    CHECK_INT(l.len, 0);
    CHECK(l.head == NULL && l.tail == NULL);
    CHECK(job_list_pop(&l) == NULL);
    /* A job moves from one list to another (queue -> batch). */
    struct job_list other = {0};
    job_list_push(&l, jobs[4]);
    job_list_push(&other, job_list_pop(&l));
    CHECK(other.head == jobs[4] && other.len == 1 && l.len == 0);
    for (int i = 0; i < 5; i++)
        job_free(jobs[i]);
}

TEST_MAIN(CASE(test_new_and_free), CASE(test_list))
