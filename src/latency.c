/*
 * latency.c — the per-packet publish-to-acknowledgement latency ring. See latency.h.
 */
#include "latency.h"

#include <stdlib.h>

#include "util.h"

void latency_begin(struct latency *l, double t0)
{
    if (!l->ring && !(l->ring = calloc(LATENCY_RING, sizeof *l->ring)))
        return;
    struct latency_slot *s = &l->ring[++l->seq % LATENCY_RING];
    if (s->open)
        l->lost_track++;
    *s = (struct latency_slot){.seq = l->seq, .t0 = t0, .pending = 0, .open = true};
    l->current = l->seq;
}

uint64_t latency_token(struct latency *l)
{
    if (!l->current || !l->ring)
        return 0;
    l->ring[l->current % LATENCY_RING].pending++;
    return l->current;
}

void latency_unsent(struct latency *l, uint64_t token)
{
    if (token && l->ring)
        l->ring[token % LATENCY_RING].pending--;
}

void latency_end(struct latency *l)
{
    if (!l->current)
        return;
    struct latency_slot *s = &l->ring[l->current % LATENCY_RING];
    l->current = 0;
    if (s->open && s->pending == 0)
        s->open = false; /* nothing published for this packet */
}

static void latency_sample(struct latency *l, double v)
{
    if (!l->samples && !(l->samples = malloc(LATENCY_SAMPLES * sizeof *l->samples)))
        return;
    if (l->nsamples < LATENCY_SAMPLES)
        l->samples[l->nsamples++] = v;
}

void latency_ack(struct latency *l, uint64_t token)
{
    if (!token || !l->ring)
        return;
    struct latency_slot *s = &l->ring[token % LATENCY_RING];
    if (!s->open || s->seq != token || s->pending == 0)
        return;
    /* The packet being ruled may still publish more (a QoS 0 message can be acknowledged
     * inside the publish call): such a packet is not sampled, latency_end forgets it. */
    if (--s->pending == 0 && l->current != token) {
        s->open = false;
        latency_sample(l, util_mono() - s->t0);
    }
}

static int latency_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void latency_peek(struct latency *l, double *p50, double *p99, double *max, size_t *n)
{
    *p50 = *p99 = *max = 0;
    *n = l->nsamples;
    if (!l->nsamples)
        return;
    /* The samples are a bag: sorting them in place loses nothing. */
    qsort(l->samples, l->nsamples, sizeof *l->samples, latency_cmp);
    *p50 = l->samples[(l->nsamples - 1) / 2] * 1e3;
    *p99 = l->samples[(size_t)((double)(l->nsamples - 1) * 0.99)] * 1e3;
    *max = l->samples[l->nsamples - 1] * 1e3;
}

void latency_report(struct latency *l, double *p50, double *p99, double *max, size_t *n)
{
    latency_peek(l, p50, p99, max, n);
    l->nsamples = 0;
}

void latency_free(struct latency *l)
{
    free(l->ring);
    free(l->samples);
    l->ring = NULL;
    l->samples = NULL;
}
