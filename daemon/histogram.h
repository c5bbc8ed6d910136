/* histogram: counts of durations in fixed buckets, for the metrics'
 * Prometheus histograms (metrics.c renders them). The owner of what is timed
 * keeps one and observes into it; a scrape copies it. The bounds are the
 * caller's table (upper bounds in us, ascending, at most HISTOGRAM_MAX).
 *
 * Lifecycle: zero-initialised; histogram_observe()*. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_MAX 12

/* A commit of the loop's connection: 0.1 ms .. 1 s. */
#define HISTOGRAM_COMMIT_US {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000}
/* A WAL checkpoint pass: 1 ms .. 30 s. */
#define HISTOGRAM_CHECKPOINT_US \
    {1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000, 30000000}

struct histogram {
    uint64_t bucket[HISTOGRAM_MAX]; /* not cumulative: bucket i counts (le[i-1], le[i]] */
    uint64_t count;                 /* all, also those above the last bound */
    uint64_t sum_us;
};

void histogram_observe(struct histogram *h, const uint64_t *le_us, size_t n, uint64_t us);
