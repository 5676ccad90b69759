/*
 * hadisc.h — Home Assistant MQTT discovery: the gateway, its sensor nodes and what the rule
 * declares, announced as Home Assistant devices (opt-in, config ha_discovery = true).
 *
 * Device-based discovery: one retained QoS 1 message per device on
 * <discovery_prefix>/device/<object_id>/config whose `cmps` map holds one component per
 * entity. The gateway is a device (its diagnostics: packets, dead-letters, active alerts, rule
 * error); every node named by the rule is a device `via_device` the gateway, holding
 *   - a `sensor` per metric the rule maps (rules_entities(): gw.mapper entries with a topic),
 *   - a `binary_sensor` per alert (gw.describe_alert, or any retained <prefix>/alerts/ topic
 *     seen published: hadisc_seen_alert()),
 *   - a `number` per tunable parameter (a `switch` for a boolean one, a `select` for an
 *     enum; hadisc_set_numbers()), entity_category config.
 * Every device carries the origin block and the gateway's status topic as availability.
 *
 * Changes: hadisc_update() rebuilds the wanted components, publishes each device whose payload
 * changed; a component that disappeared stays in its device's `cmps` as {"p": platform} (the
 * documented removal of one component of a device); a device left without components gets an
 * empty retained payload, which removes it. hadisc_republish() sends every device again (Home
 * Assistant announced "online" on <discovery_prefix>/status, or the broker connection came
 * back, which may be a broker that lost its retained messages).
 *
 * Output goes through the publish callback given to hadisc_new (the gateway's own output path).
 *
 * Ownership: hadisc_new() returns an object owned by the caller (hadisc_free()); every string
 * of the config and of the entity/number arrays is copied. Not re-entrant (one loop thread).
 */
#ifndef IIOTGW_HADISC_H
#define IIOTGW_HADISC_H

#include <stdbool.h>
#include <stddef.h>

#include "rules.h"

#define HADISC_DEFAULT_PREFIX "homeassistant"

struct hadisc_config {
    const char *discovery_prefix; /* default "homeassistant" */
    const char *prefix;           /* the gateway's topic prefix (gw.prefix) */
    const char *gateway_id;       /* identifies the gateway device (config gateway_id) */
    const char *status_topic;     /* <prefix>/gateway/status: availability */
    const char *stats_topic;      /* <prefix>/gateway/stats: the gateway's diagnostic sensors */
    const char *rules_topic;      /* <prefix>/gateway/rules: the rule-error binary_sensor */
    const char *sw_version;       /* origin and gateway device sw_version */
    const char *support_url;      /* origin support_url; NULL = omitted */
};

/* A tunable parameter as a `number` (number, integer), `switch` (boolean: payloads "true" /
 * "false") or `select` (enum: its values as options) entity. */
enum hadisc_param_kind { HADISC_PARAM_NUMBER, HADISC_PARAM_SWITCH, HADISC_PARAM_SELECT };

struct hadisc_number {
    enum hadisc_param_kind kind;
    const char *const *options; /* select: the values, noptions of them */
    size_t noptions;
    const char *name;  /* parameter name (unique with node) */
    const char *node;  /* NULL: a gateway-wide parameter (on the gateway device) */
    const char *label; /* entity name shown; NULL = name */
    const char *unit;  /* NULL = none */
    double min, max, step;
    const char *command_topic; /* where Home Assistant sends the new value (plain text) */
    const char *state_topic;   /* retained applied value (plain text) */
};

/* Publish one retained QoS 1 message (payload may be empty). Return 0 or a negative errno. */
typedef int (*hadisc_publish_fn)(void *ud, const char *topic, const char *payload, size_t len);

struct hadisc;

/* Returns 0, -EINVAL (a required field missing, or a discovery prefix with wildcards) or
 * -ENOMEM. Publishes nothing yet. */
int hadisc_new(struct hadisc **out, const struct hadisc_config *cfg, hadisc_publish_fn publish,
               void *ud);

/* Begin publishing (every device once); until then the update functions only record, so
 * that the first announcement is complete. Returns 0 or -ENOMEM. */
int hadisc_start(struct hadisc *h);

/* "<discovery_prefix>/status": subscribe to it; Home Assistant announces "online" there. */
const char *hadisc_ha_status_topic(const struct hadisc *h);

/*
 * Replace the rule's entities (after a load or a successful reload) and publish what changed.
 * Returns 0 or -ENOMEM (then the previous announcement stays).
 */
int hadisc_update(struct hadisc *h, const struct rules_entity *ents, size_t n);

/* Replace the parameters announced as `number` entities and publish what changed. */
int hadisc_set_numbers(struct hadisc *h, const struct hadisc_number *nums, size_t n);

struct params;

/*
 * hadisc_set_numbers() from the registry: one entity per slot of every declared param (a
 * `number` for number and integer, a `switch` for boolean, a `select` for enum; orphaned
 * ones cannot be set and are left out), with the MQTT layout of params_topic(). Call it
 * after every commit (the params_listener's `declared`). Returns 0 or -ENOMEM.
 */
int hadisc_set_params(struct hadisc *h, const struct params *p);

/* A retained message was published on `topic`: if it is an alert topic not yet announced,
 * announce it. Cheap for known topics. */
void hadisc_seen_alert(struct hadisc *h, const char *topic);

/* Publish every device again. */
void hadisc_republish(struct hadisc *h);

/*
 * An inbound message: on the Home Assistant status topic, "online" republishes everything.
 * Returns true when the message was for hadisc (whatever its payload).
 */
bool hadisc_on_message(struct hadisc *h, const char *topic, const void *payload, size_t len);

void hadisc_free(struct hadisc *h);

#endif
