/* histogram: durations counted in buckets (see histogram.h). */
#include "histogram.h"

void histogram_observe(struct histogram *h, const uint64_t *le_us, size_t n, uint64_t us)
{
    size_t i = 0;

    if (n > HISTOGRAM_MAX)
        n = HISTOGRAM_MAX;
    while (i < n && us > le_us[i])
        i++;
    if (i < n)
        h->bucket[i]++;
    h->count++;
    h->sum_us += us;
}
