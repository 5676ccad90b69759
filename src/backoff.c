/*
 * backoff.c — exponential backoff with equal jitter; see backoff.h for the policy.
 */
#include "backoff.h"

#include "util.h"

void backoff_init(struct backoff *b, double base, double max, double stable)
{
    b->base = base > 0 ? base : 1.0;
    b->max = max >= b->base ? max : b->base;
    b->stable = stable;
    b->rng = util_seed();
    b->healthy_at = -1;
    backoff_reset(b);
}

void backoff_reset(struct backoff *b)
{
    b->nominal = b->base;
    b->attempts = 0;
}

void backoff_success(struct backoff *b, double now)
{
    b->healthy_at = now;
}

double backoff_next(struct backoff *b, double now)
{
    if (b->healthy_at >= 0 && now - b->healthy_at >= b->stable)
        backoff_reset(b);
    b->healthy_at = -1;

    double nominal = b->nominal;
    /* Uniform in [nominal/2, nominal]. */
    double frac = (double)(util_rand(&b->rng) % 10001u) / 10000.0;
    double delay = nominal / 2 + frac * nominal / 2;

    b->attempts++;
    b->nominal = nominal * 2 > b->max ? b->max : nominal * 2;
    return delay;
}
