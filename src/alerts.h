/*
 * alerts.h — which alerts are firing, as far as the rules' own messages say.
 *
 * Alert logic lives entirely in the rules: a retained message under <prefix>/alerts/ whose
 * payload carries "state":"firing" marks its topic active; any other retained payload there
 * clears it. The gateway only counts (stats field alerts_active) and spools messages under
 * the prefix as alerts (never dropped by the spool's byte bound).
 *
 * At most ALERTS_MAX_ACTIVE topics are tracked as firing at once: a firing alert on a new
 * topic beyond that is not counted (alerts_refused in the stats); its message is still sent
 * and spooled as an alert. Each publish costs O(1) expected (hash set).
 *
 * Ownership: struct alerts is embedded by its user; alerts_free() releases the topic copies.
 */
#ifndef IIOTGW_ALERTS_H
#define IIOTGW_ALERTS_H

#include <stdbool.h>
#include <stddef.h>

#define ALERTS_MAX_ACTIVE 65536 /* firing topics tracked at once */

struct alert_ent;

struct alerts {
    char prefix[256]; /* "<prefix>/alerts/" */
    size_t prefix_len;
    struct alert_ent **buckets; /* hash set of the topics whose last retained payload said
                                   "firing"; nbuckets is 0 or a power of two */
    size_t nbuckets;
    size_t nactive;
    unsigned long long refused; /* firing topics not tracked: the set was full */
};

/* Start empty, with topic prefix "<prefix>/alerts/". */
void alerts_init(struct alerts *a, const char *prefix);

/* `topic` lies under the alerts prefix. */
bool alerts_match(const struct alerts *a, const char *topic);

/* Note one publish (call it for retained ones). Out of memory, or a full set (counted in
 * `refused`), only loses the count. */
void alerts_track(struct alerts *a, const char *topic, const char *payload, size_t len);

void alerts_free(struct alerts *a);

#endif
