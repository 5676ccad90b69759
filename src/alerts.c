/*
 * alerts.c — the count of firing alerts, from the rules' retained messages. See alerts.h.
 *
 * The firing topics are a chained hash set (FNV-1a, power-of-two buckets, doubled when the
 * load passes 1), so one publish costs O(1) expected whatever the number of alert topics a
 * rule has made; the set holds at most ALERTS_MAX_ACTIVE topics so a rule minting a new alert
 * topic per packet cannot grow it without bound (refusals are counted).
 */
#include "alerts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct alert_ent {
    struct alert_ent *next;
    uint32_t hash;
    char topic[];
};

void alerts_init(struct alerts *a, const char *prefix)
{
    memset(a, 0, sizeof *a);
    snprintf(a->prefix, sizeof a->prefix, "%s/alerts/", prefix);
    a->prefix_len = strlen(a->prefix);
}

bool alerts_match(const struct alerts *a, const char *topic)
{
    return strncmp(topic, a->prefix, a->prefix_len) == 0;
}

static uint32_t alerts_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Double the bucket array (or make the first one). Out of memory keeps the old one. */
static void alerts_grow(struct alerts *a)
{
    size_t nb = a->nbuckets ? a->nbuckets * 2 : 64;
    struct alert_ent **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct alert_ent *e = a->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(a->buckets);
    a->buckets = b;
    a->nbuckets = nb;
}

void alerts_track(struct alerts *a, const char *topic, const char *payload, size_t len)
{
    if (!alerts_match(a, topic))
        return;
    static const char needle[] = "\"state\":\"firing\"";
    bool firing = memmem(payload, len, needle, sizeof needle - 1) != NULL;
    size_t tlen = strlen(topic);
    uint32_t h = alerts_hash(topic, tlen);
    if (a->nbuckets) {
        struct alert_ent **pp = &a->buckets[h & (a->nbuckets - 1)];
        for (; *pp; pp = &(*pp)->next) {
            if ((*pp)->hash != h || strcmp((*pp)->topic, topic) != 0)
                continue;
            if (!firing) {
                struct alert_ent *e = *pp;
                *pp = e->next;
                free(e);
                a->nactive--;
            }
            return;
        }
    }
    if (!firing)
        return;
    if (a->nactive >= ALERTS_MAX_ACTIVE) {
        a->refused++;
        return;
    }
    if (a->nactive >= a->nbuckets)
        alerts_grow(a);
    if (!a->nbuckets)
        return;
    struct alert_ent *e = malloc(sizeof *e + tlen + 1);
    if (!e)
        return;
    e->hash = h;
    memcpy(e->topic, topic, tlen + 1);
    e->next = a->buckets[h & (a->nbuckets - 1)];
    a->buckets[h & (a->nbuckets - 1)] = e;
    a->nactive++;
}

void alerts_free(struct alerts *a)
{
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct alert_ent *e = a->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(a->buckets);
    a->buckets = NULL;
    a->nbuckets = 0;
    a->nactive = 0;
}
