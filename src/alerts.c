/*
 * alerts.c — the count of firing alerts, from the rules' retained messages. See alerts.h.
 */
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void alerts_track(struct alerts *a, const char *topic, const char *payload, size_t len)
{
    if (!alerts_match(a, topic))
        return;
    static const char needle[] = "\"state\":\"firing\"";
    bool firing = memmem(payload, len, needle, sizeof needle - 1) != NULL;
    for (size_t i = 0; i < a->nactive; i++) {
        if (strcmp(a->active[i], topic) == 0) {
            if (!firing) {
                free(a->active[i]);
                a->active[i] = a->active[--a->nactive];
            }
            return;
        }
    }
    if (!firing)
        return;
    char **v = realloc(a->active, (a->nactive + 1) * sizeof *v);
    if (!v)
        return;
    a->active = v;
    if ((v[a->nactive] = strdup(topic)))
        a->nactive++;
}

void alerts_free(struct alerts *a)
{
    for (size_t i = 0; i < a->nactive; i++)
        free(a->active[i]);
    free(a->active);
    a->active = NULL;
    a->nactive = 0;
}
