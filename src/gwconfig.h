/*
 * gwconfig.h — the translation of the gateway's configuration (config.h) into each module's
 * own config struct: done here once, for the daemon (gateway.c) and for `--check` (main.c),
 * so both parse the MQTT URL and derive the windows the same way.
 *
 * Every function only fills structs: strings point into `c` (or into `storage` where
 * given), which must outlive their use. Nothing is opened or allocated.
 */
#ifndef IIOTGW_GWCONFIG_H
#define IIOTGW_GWCONFIG_H

#include <stddef.h>

#include "config.h"

struct forward_config;
struct influx_config;
struct mqtt_config;
struct rules_config;

/* The gateway's own topics, "[<replay.prefix>/]<prefix>/gateway/<name>". */
struct gw_topics {
    char status[256];
    char stats[256];
    char rules[256];
    char deadletter[256];
    char spool[256];
};

void gwconfig_topics(const struct config *c, struct gw_topics *t);

/*
 * MQTT sink config: the URL parsed into `storage` (1 KiB is plenty), then the mqtt.* options;
 * status_topic as given (may be NULL). Returns 0 or -EINVAL with err set (mqtt_parse_url's
 * message).
 */
int gwconfig_mqtt(const struct config *c, const char *status_topic, struct mqtt_config *mc,
                  char *storage, size_t storagelen, char *err, size_t errlen);

void gwconfig_influx(const struct config *c, struct influx_config *ic);

/* Spool and pump: the windows follow from the sinks' limits (see gwconfig.c). */
void gwconfig_forward(const struct config *c, const char *status_topic, struct forward_config *fc);

void gwconfig_rules(const struct config *c, struct rules_config *rc);

#endif
