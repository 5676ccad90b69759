/*
 * hadisc.c — Home Assistant MQTT discovery (see hadisc.h for what is announced and when).
 *
 * Why device-based discovery: a node has several entities, and one retained message per
 * device states its identity, origin and availability once; removing a single entity is done
 * by sending that component with only its platform, and removing a device by an empty
 * payload, both as Home Assistant's MQTT discovery documentation describes.
 *
 * Model: three input lists of components (the rule's metrics and alerts, the parameters,
 * alerts only seen published), each component a ready cJSON config with the device it
 * belongs to. hd_sync() groups them by device, adds the tombstones of components that
 * disappeared, renders each device's payload and publishes the ones whose text changed (or
 * all of them when forced). Everything is rebuilt from the inputs on each change: changes
 * are rare (a reload, a parameter set, a new alert topic), never per packet.
 */
#include "hadisc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "params.h"

enum hd_platform { HD_SENSOR, HD_BINARY_SENSOR, HD_NUMBER, HD_SWITCH, HD_SELECT };

static const char *const hd_platform_name[] = {"sensor", "binary_sensor", "number", "switch",
                                               "select"};

/* Alerts announced only because they were seen published: each one re-renders its device, so
 * a rule inventing alert topics must not make this grow (or cost) without end. */
#define HADISC_MAX_SEEN 256

/* One wanted component. */
struct hd_comp {
    char *id;    /* component id in `cmps`, unique over all devices ([a-zA-Z0-9_-]) */
    char *node;  /* device: NULL = the gateway */
    char *topic; /* state topic (alerts: to recognise one seen again) */
    enum hd_platform platform;
    cJSON *cfg; /* the component's config, without device/origin (shared at the root) */
};

struct hd_list {
    struct hd_comp *v;
    size_t n;
};

/* A device announced at least once: what it had, for tombstones and change detection. */
struct hd_device {
    char *node; /* NULL = the gateway */
    char *last; /* last payload published */
    char **ids; /* components live in `last` */
    enum hd_platform *plat;
    size_t nids;
    char **tomb; /* components removed since the device was first announced */
    enum hd_platform *tomb_plat;
    size_t ntomb;
};

struct hadisc {
    char *dprefix, *prefix, *gwid, *gw_oid, *status_topic, *stats_topic, *rules_topic;
    char *version, *support_url, *ha_status;
    hadisc_publish_fn publish;
    void *ud;
    struct hd_list diag, rule, nums, seen; /* inputs: the gateway's own, the rule's, ... */
    bool started;                          /* hadisc_start() called: publish changes */
    bool seen_full_logged;                 /* HADISC_MAX_SEEN reached and said so */
    struct hd_device *dev;
    size_t ndev;
};

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

/* Copy `s` keeping [a-zA-Z0-9_-], every other byte becoming '_' (discovery ids and object
 * ids allow only those). */
static char *hd_sane(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        d[i] = (char)(isalnum(c) || c == '_' || c == '-' ? c : '_');
    }
    d[n] = '\0';
    return d;
}

static char *hd_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *hd_fmt(const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, fmt, a, b ? b : "");
    return d;
}

/* `topic` relative to "<prefix>/" (or the whole topic). */
static const char *hd_rel(const struct hadisc *h, const char *topic)
{
    size_t pl = strlen(h->prefix);
    if (strncmp(topic, h->prefix, pl) == 0 && topic[pl] == '/')
        return topic + pl + 1;
    return topic;
}

/* "gas_resistance" -> "Gas resistance". */
static char *hd_label(const char *s)
{
    char *d = strdup(s);
    if (!d)
        return NULL;
    for (char *p = d; *p; p++)
        if (*p == '_' || *p == '/')
            *p = ' ';
    d[0] = (char)toupper((unsigned char)d[0]);
    return d;
}

static void hd_comp_clear(struct hd_comp *c)
{
    free(c->id);
    free(c->node);
    free(c->topic);
    cJSON_Delete(c->cfg);
    memset(c, 0, sizeof *c);
}

static void hd_list_clear(struct hd_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        hd_comp_clear(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static bool hd_list_has_id(const struct hd_list *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].id, id) == 0)
            return true;
    return false;
}

/*
 * Append a component to l, taking ownership of cfg (freed on failure). `base` is sanitised into
 * the component id, made unique within l with a numeric suffix; unique_id is derived from it.
 * Returns 0 or -ENOMEM.
 */
static int hd_list_add(struct hadisc *h, struct hd_list *l, const char *base, const char *node,
                       const char *topic, enum hd_platform p, cJSON *cfg)
{
    char *sane = hd_sane(base), *id = sane ? strdup(sane) : NULL, *uid = NULL;
    struct hd_comp c = {.platform = p, .cfg = cfg};
    if (!id || !cfg)
        goto fail;
    for (int k = 2; hd_list_has_id(l, id); k++) {
        char sfx[16];
        snprintf(sfx, sizeof sfx, "_%d", k);
        free(id);
        if (!(id = hd_fmt("%s%s", sane, sfx)))
            goto fail;
    }
    uid = hd_fmt("%s_%s", h->gw_oid, id);
    if (!uid || !cJSON_AddStringToObject(cfg, "unique_id", uid))
        goto fail;
    c.node = hd_strdup(node);
    c.topic = hd_strdup(topic);
    struct hd_comp *v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v || (node && !c.node) || (topic && !c.topic)) {
        if (v)
            l->v = v;
        goto fail;
    }
    l->v = v;
    c.id = id;
    l->v[l->n++] = c;
    free(sane);
    free(uid);
    return 0;
fail:
    free(sane);
    free(id);
    free(uid);
    free(c.node);
    free(c.topic);
    cJSON_Delete(cfg);
    return -ENOMEM;
}

/* A component config: {"p": platform, "name": label}. */
static cJSON *hd_cfg(enum hd_platform p, const char *label)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "p", hd_platform_name[p]) ||
        !cJSON_AddStringToObject(o, "name", label)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Add a string member when v is non-NULL; false on out of memory. */
static bool hd_add_str(cJSON *o, const char *k, const char *v)
{
    return !v || cJSON_AddStringToObject(o, k, v);
}

/* ------------------------------------------------------------------------------------------
 * Defaults for what the rule did not state
 * ---------------------------------------------------------------------------------------- */

/* The rule's unit tag (InfluxDB style, "celsius") as a display unit Home Assistant knows. */
static const char *hd_unit_of_tag(const char *tag)
{
    static const struct {
        const char *tag, *unit;
    } map[] = {
        {"celsius", "°C"}, {"fahrenheit", "°F"}, {"percent", "%"}, {"ohms", "Ω"}, {"ohm", "Ω"},
        {"dbm", "dBm"},    {"db", "dB"},         {"hpa", "hPa"},   {"pa", "Pa"},  {"volt", "V"},
        {"volts", "V"},    {"ampere", "A"},      {"ma", "mA"},     {"watt", "W"}, {"lux", "lx"},
        {"ppm", "ppm"},    {"seconds", "s"},
    };
    if (!tag)
        return NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(tag, map[i].tag) == 0)
            return map[i].unit;
    return tag; /* unknown: shown as written */
}

/* A device_class whose allowed units include `unit`, or NULL (no class: a plain number). */
static const char *hd_class_of(const char *unit, const char *metric)
{
    if (!unit)
        return NULL;
    if (strcmp(unit, "°C") == 0 || strcmp(unit, "°F") == 0)
        return "temperature";
    if (strcmp(unit, "%") == 0 && metric && strstr(metric, "humid"))
        return "humidity";
    if (strcmp(unit, "dBm") == 0)
        return "signal_strength";
    if (strcmp(unit, "hPa") == 0 || strcmp(unit, "Pa") == 0)
        return "pressure";
    if (strcmp(unit, "V") == 0)
        return "voltage";
    if (strcmp(unit, "A") == 0 || strcmp(unit, "mA") == 0)
        return "current";
    if (strcmp(unit, "W") == 0)
        return "power";
    if (strcmp(unit, "lx") == 0)
        return "illuminance";
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Inputs -> components
 * ---------------------------------------------------------------------------------------- */

static int hd_add_metric(struct hadisc *h, struct hd_list *l, const struct rules_entity *e)
{
    const char *metric = e->metric ? e->metric : hd_rel(h, e->topic);
    char *label = e->name ? strdup(e->name) : hd_label(metric);
    if (!label)
        return -ENOMEM;
    const char *unit = e->unit ? e->unit : hd_unit_of_tag(e->unit_tag);
    const char *cls = e->device_class ? e->device_class : hd_class_of(unit, metric);
    int prec = e->precision;
    if (prec < 0 && unit &&
        (strcmp(unit, "°C") == 0 || strcmp(unit, "°F") == 0 || strcmp(unit, "%") == 0))
        prec = 1;
    cJSON *c = hd_cfg(HD_SENSOR, label);
    free(label);
    if (!c || !cJSON_AddStringToObject(c, "state_topic", e->topic) ||
        !hd_add_str(c, "unit_of_measurement", unit) || !hd_add_str(c, "device_class", cls) ||
        !cJSON_AddStringToObject(c, "state_class", "measurement") ||
        (prec >= 0 && !cJSON_AddNumberToObject(c, "suggested_display_precision", prec))) {
        cJSON_Delete(c);
        return -ENOMEM;
    }
    return hd_list_add(h, l, hd_rel(h, e->topic), e->node, e->topic, HD_SENSOR, c);
}

/*
 * An alert: node from the declaration, else the level after "alerts/" when the topic has
 * one more below it (<prefix>/alerts/<node>/<kind>); label "<Kind> alert".
 */
static int hd_add_alert(struct hadisc *h, struct hd_list *l, const char *topic, const char *node,
                        const char *name, const char *cls)
{
    const char *rel = hd_rel(h, topic);
    const char *kind = strrchr(rel, '/');
    kind = kind ? kind + 1 : rel;
    char nodebuf[128];
    if (!node && strncmp(rel, "alerts/", 7) == 0) {
        const char *a = rel + 7, *slash = strchr(a, '/');
        if (slash && slash > a && (size_t)(slash - a) < sizeof nodebuf) {
            memcpy(nodebuf, a, (size_t)(slash - a));
            nodebuf[slash - a] = '\0';
            node = nodebuf;
        }
    }
    char *label = name ? strdup(name) : NULL;
    if (!name) {
        char *k = hd_label(kind);
        label = k ? hd_fmt("%s alert", k, NULL) : NULL;
        free(k);
    }
    if (!label)
        return -ENOMEM;
    cJSON *c = hd_cfg(HD_BINARY_SENSOR, label);
    free(label);
    if (!c || !cJSON_AddStringToObject(c, "state_topic", topic) ||
        !cJSON_AddStringToObject(c, "value_template", "{{ value_json.state }}") ||
        !cJSON_AddStringToObject(c, "payload_on", "firing") ||
        !cJSON_AddStringToObject(c, "payload_off", "ok") ||
        !cJSON_AddStringToObject(c, "device_class", cls ? cls : "problem")) {
        cJSON_Delete(c);
        return -ENOMEM;
    }
    return hd_list_add(h, l, rel, node, topic, HD_BINARY_SENSOR, c);
}

static int hd_add_number(struct hadisc *h, struct hd_list *l, const struct hadisc_number *p)
{
    enum hd_platform plat = p->kind == HADISC_PARAM_SWITCH   ? HD_SWITCH
                            : p->kind == HADISC_PARAM_SELECT ? HD_SELECT
                                                             : HD_NUMBER;
    cJSON *c = hd_cfg(plat, p->label ? p->label : p->name);
    bool ok = c && cJSON_AddStringToObject(c, "command_topic", p->command_topic) &&
              hd_add_str(c, "state_topic", p->state_topic) &&
              cJSON_AddStringToObject(c, "entity_category", "config");
    if (ok && plat == HD_NUMBER)
        ok = cJSON_AddNumberToObject(c, "min", p->min) &&
             cJSON_AddNumberToObject(c, "max", p->max) &&
             cJSON_AddNumberToObject(c, "step", p->step) &&
             hd_add_str(c, "unit_of_measurement", p->unit) &&
             cJSON_AddStringToObject(c, "mode", "box");
    /* The registry's text forms: what the state topic carries and params_set() parses. */
    if (ok && plat == HD_SWITCH)
        ok = cJSON_AddStringToObject(c, "payload_on", "true") &&
             cJSON_AddStringToObject(c, "payload_off", "false") &&
             cJSON_AddStringToObject(c, "state_on", "true") &&
             cJSON_AddStringToObject(c, "state_off", "false");
    if (ok && plat == HD_SELECT) {
        cJSON *opts = cJSON_AddArrayToObject(c, "options");
        ok = opts != NULL;
        for (size_t i = 0; ok && i < p->noptions; i++) {
            cJSON *o = cJSON_CreateString(p->options[i]);
            ok = o && cJSON_AddItemToArray(opts, o);
            if (!ok)
                cJSON_Delete(o);
        }
    }
    if (!ok) {
        cJSON_Delete(c);
        return -ENOMEM;
    }
    char *base = hd_fmt(p->node ? "param_%s_%s" : "param_%s%s", p->name, p->node);
    if (!base) {
        cJSON_Delete(c);
        return -ENOMEM;
    }
    int rc = hd_list_add(h, l, base, p->node, p->state_topic, plat, c);
    free(base);
    return rc;
}

/* The gateway device's own diagnostics (so that it exists with its own entities). */
static int hd_add_gateway_diag(struct hadisc *h, struct hd_list *l)
{
    static const struct {
        const char *id, *label, *field, *state_class;
    } s[] = {
        {"gateway_packets", "Packets", "packets", "total_increasing"},
        {"gateway_deadletter", "Dead-letters", "deadletter", "total_increasing"},
        {"gateway_alerts_active", "Active alerts", "alerts_active", "measurement"},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char tpl[96];
        snprintf(tpl, sizeof tpl, "{{ value_json.%s }}", s[i].field);
        cJSON *c = hd_cfg(HD_SENSOR, s[i].label);
        if (!c || !cJSON_AddStringToObject(c, "state_topic", h->stats_topic) ||
            !cJSON_AddStringToObject(c, "value_template", tpl) ||
            !cJSON_AddStringToObject(c, "state_class", s[i].state_class) ||
            !cJSON_AddStringToObject(c, "entity_category", "diagnostic")) {
            cJSON_Delete(c);
            return -ENOMEM;
        }
        int rc = hd_list_add(h, l, s[i].id, NULL, NULL, HD_SENSOR, c);
        if (rc)
            return rc;
    }
    cJSON *c = hd_cfg(HD_BINARY_SENSOR, "Rule error");
    if (!c || !cJSON_AddStringToObject(c, "state_topic", h->rules_topic) ||
        !cJSON_AddStringToObject(c, "value_template", "{{ value_json.state }}") ||
        !cJSON_AddStringToObject(c, "payload_on", "error") ||
        !cJSON_AddStringToObject(c, "payload_off", "ok") ||
        !cJSON_AddStringToObject(c, "device_class", "problem") ||
        !cJSON_AddStringToObject(c, "entity_category", "diagnostic")) {
        cJSON_Delete(c);
        return -ENOMEM;
    }
    return hd_list_add(h, l, "gateway_rule_error", NULL, NULL, HD_BINARY_SENSOR, c);
}

/* ------------------------------------------------------------------------------------------
 * Devices and publishing
 * ---------------------------------------------------------------------------------------- */

static bool hd_same_node(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct hd_device *hd_device_get(struct hadisc *h, const char *node)
{
    for (size_t i = 0; i < h->ndev; i++)
        if (hd_same_node(h->dev[i].node, node))
            return &h->dev[i];
    struct hd_device *v = realloc(h->dev, (h->ndev + 1) * sizeof *v);
    if (!v)
        return NULL;
    h->dev = v;
    struct hd_device *d = &h->dev[h->ndev];
    memset(d, 0, sizeof *d);
    d->node = hd_strdup(node);
    if (node && !d->node)
        return NULL;
    h->ndev++;
    return d;
}

static void hd_device_clear(struct hd_device *d)
{
    free(d->node);
    free(d->last);
    for (size_t i = 0; i < d->nids; i++)
        free(d->ids[i]);
    free(d->ids);
    free(d->plat);
    for (size_t i = 0; i < d->ntomb; i++)
        free(d->tomb[i]);
    free(d->tomb);
    free(d->tomb_plat);
    memset(d, 0, sizeof *d);
}

static char *hd_device_oid(const struct hadisc *h, const char *node)
{
    if (!node)
        return strdup(h->gw_oid);
    char *s = hd_sane(node);
    char *oid = s ? hd_fmt("%s_%s", h->gw_oid, s) : NULL;
    free(s);
    return oid;
}

/* Add (id, p) to d's tombstones unless it is there. false on out of memory. */
static bool hd_tomb_add(struct hd_device *d, const char *id, enum hd_platform p)
{
    for (size_t i = 0; i < d->ntomb; i++)
        if (strcmp(d->tomb[i], id) == 0)
            return true;
    char **t = realloc(d->tomb, (d->ntomb + 1) * sizeof *t);
    if (!t)
        return false;
    d->tomb = t;
    enum hd_platform *tp = realloc(d->tomb_plat, (d->ntomb + 1) * sizeof *tp);
    if (!tp)
        return false;
    d->tomb_plat = tp;
    if (!(d->tomb[d->ntomb] = strdup(id)))
        return false;
    d->tomb_plat[d->ntomb++] = p;
    return true;
}

static void hd_tomb_del(struct hd_device *d, const char *id)
{
    for (size_t i = 0; i < d->ntomb; i++)
        if (strcmp(d->tomb[i], id) == 0) {
            free(d->tomb[i]);
            d->tomb[i] = d->tomb[d->ntomb - 1];
            d->tomb_plat[i] = d->tomb_plat[d->ntomb - 1];
            d->ntomb--;
            return;
        }
}

/* The device block: identifiers, name, manufacturer, model; nodes via the gateway. */
static cJSON *hd_dev_block(const struct hadisc *h, const char *node, const char *oid)
{
    cJSON *dev = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(dev, "identifiers");
    cJSON *id = cJSON_CreateString(oid);
    if (!dev || !ids || !id || !cJSON_AddItemToArray(ids, id))
        goto fail;
    if (node) {
        if (!cJSON_AddStringToObject(dev, "name", node) ||
            !cJSON_AddStringToObject(dev, "manufacturer", "iiotgw") ||
            !cJSON_AddStringToObject(dev, "model", "sensor node") ||
            !cJSON_AddStringToObject(dev, "via_device", h->gw_oid))
            goto fail;
    } else {
        char *name = hd_fmt("iiotgw %s", h->gwid, NULL);
        bool ok = name && cJSON_AddStringToObject(dev, "name", name);
        free(name);
        if (!ok || !cJSON_AddStringToObject(dev, "manufacturer", "iiotgw") ||
            !cJSON_AddStringToObject(dev, "model", "IIoT telemetry gateway") ||
            !cJSON_AddStringToObject(dev, "sw_version", h->version))
            goto fail;
    }
    return dev;
fail:
    cJSON_Delete(dev);
    return NULL;
}

/* Render device d from the wanted components (all lists): returns the payload ("" when the
 * device has nothing left) and updates d's live ids and tombstones; NULL on out of memory. */
static char *hd_render(struct hadisc *h, struct hd_device *d)
{
    const struct hd_list *lists[] = {&h->diag, &h->rule, &h->nums, &h->seen};
    size_t nlive = 0;
    char *out = NULL, *oid = hd_device_oid(h, d->node);
    cJSON *root = cJSON_CreateObject(), *cmps = NULL;
    char **ids = NULL;
    enum hd_platform *plat = NULL;
    size_t cap = 0;
    if (!oid || !root)
        goto done;
    cJSON *dev = hd_dev_block(h, d->node, oid);
    if (!dev)
        goto done;
    cJSON_AddItemToObject(root, "dev", dev);
    cJSON *o = cJSON_AddObjectToObject(root, "o");
    if (!o || !cJSON_AddStringToObject(o, "name", "iiotgw") ||
        !cJSON_AddStringToObject(o, "sw_version", h->version) ||
        !hd_add_str(o, "support_url", h->support_url) ||
        !cJSON_AddStringToObject(root, "availability_topic", h->status_topic) ||
        !cJSON_AddStringToObject(root, "payload_available", "online") ||
        !cJSON_AddStringToObject(root, "payload_not_available", "offline") ||
        !cJSON_AddNumberToObject(root, "qos", 1) || !(cmps = cJSON_AddObjectToObject(root, "cmps")))
        goto done;
    for (size_t li = 0; li < 4; li++)
        for (size_t i = 0; i < lists[li]->n; i++) {
            const struct hd_comp *c = &lists[li]->v[i];
            if (!hd_same_node(c->node, d->node) || cJSON_GetObjectItemCaseSensitive(cmps, c->id))
                continue;
            cJSON *dup = cJSON_Duplicate(c->cfg, true);
            if (!dup || !cJSON_AddItemToObject(cmps, c->id, dup)) {
                cJSON_Delete(dup);
                goto done;
            }
            if (nlive == cap) {
                cap = cap ? 2 * cap : 8;
                char **ni = realloc(ids, cap * sizeof *ni);
                if (ni)
                    ids = ni;
                enum hd_platform *np = realloc(plat, cap * sizeof *np);
                if (np)
                    plat = np;
                if (!ni || !np)
                    goto done;
            }
            if (!(ids[nlive] = strdup(c->id)))
                goto done;
            plat[nlive++] = c->platform;
        }
    /* What was live before and is not now becomes a tombstone; what is back is not one. */
    for (size_t i = 0; i < d->nids; i++)
        if (!cJSON_GetObjectItemCaseSensitive(cmps, d->ids[i]) &&
            !hd_tomb_add(d, d->ids[i], d->plat[i]))
            goto done;
    for (size_t i = 0; i < nlive; i++)
        hd_tomb_del(d, ids[i]);
    if (nlive == 0 && d->node) {
        out = strdup(""); /* nothing left: remove the device */
        goto done;
    }
    for (size_t i = 0; i < d->ntomb; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t || !cJSON_AddStringToObject(t, "p", hd_platform_name[d->tomb_plat[i]]) ||
            !cJSON_AddItemToObject(cmps, d->tomb[i], t)) {
            cJSON_Delete(t);
            goto done;
        }
    }
    out = cJSON_PrintUnformatted(root);
done:
    if (out) {
        for (size_t i = 0; i < d->nids; i++)
            free(d->ids[i]);
        free(d->ids);
        free(d->plat);
        d->ids = ids;
        d->plat = plat;
        d->nids = nlive;
    } else {
        for (size_t i = 0; i < nlive; i++)
            free(ids[i]);
        free(ids);
        free(plat);
    }
    cJSON_Delete(root);
    free(oid);
    return out;
}

/* Publish every device whose payload changed (all with `force`); forget removed devices. */
static int hd_sync(struct hadisc *h, bool force)
{
    const struct hd_list *lists[] = {&h->rule, &h->nums, &h->seen};
    if (!h->started)
        return 0;
    /* Every device some component names exists (the gateway always). */
    if (!hd_device_get(h, NULL))
        return -ENOMEM;
    for (size_t li = 0; li < 3; li++)
        for (size_t i = 0; i < lists[li]->n; i++)
            if (!hd_device_get(h, lists[li]->v[i].node))
                return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < h->ndev;) {
        struct hd_device *d = &h->dev[i];
        char *p = hd_render(h, d);
        if (!p) {
            rc = -ENOMEM;
            i++;
            continue;
        }
        bool gone = p[0] == '\0';
        bool fresh = !d->last; /* never published: an empty payload is not needed */
        if (force || !d->last || strcmp(p, d->last) != 0) {
            char *oid = hd_device_oid(h, d->node);
            char *topic = oid ? hd_fmt("%s/device/%s/config", h->dprefix, oid) : NULL;
            if (topic && !(gone && fresh)) {
                h->publish(h->ud, topic, p, strlen(p));
                log_info("ha_discovery_published", "topic=%s components=%zu removed=%zu", topic,
                         d->nids, gone ? 0 : d->ntomb);
            } else if (!topic) {
                rc = -ENOMEM;
            }
            free(topic);
            free(oid);
        }
        free(d->last);
        d->last = p;
        if (gone) {
            hd_device_clear(d);
            h->dev[i] = h->dev[--h->ndev];
            continue;
        }
        i++;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

int hadisc_new(struct hadisc **out, const struct hadisc_config *cfg, hadisc_publish_fn publish,
               void *ud)
{
    *out = NULL;
    const char *dp = cfg->discovery_prefix && cfg->discovery_prefix[0] ? cfg->discovery_prefix
                                                                       : HADISC_DEFAULT_PREFIX;
    if (!cfg->prefix || !cfg->gateway_id || !cfg->status_topic || !cfg->stats_topic ||
        !cfg->rules_topic || !publish || strpbrk(dp, "+#"))
        return -EINVAL;
    struct hadisc *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->publish = publish;
    h->ud = ud;
    h->dprefix = strdup(dp);
    h->prefix = strdup(cfg->prefix);
    h->gwid = strdup(cfg->gateway_id);
    char *sane = hd_sane(cfg->gateway_id);
    h->gw_oid = sane ? hd_fmt("iiotgw_%s%s", sane, NULL) : NULL;
    free(sane);
    h->status_topic = strdup(cfg->status_topic);
    h->stats_topic = strdup(cfg->stats_topic);
    h->rules_topic = strdup(cfg->rules_topic);
    h->version = strdup(cfg->sw_version ? cfg->sw_version : "unknown");
    h->support_url = hd_strdup(cfg->support_url);
    h->ha_status = h->dprefix ? hd_fmt("%s/status", h->dprefix, NULL) : NULL;
    if (!h->dprefix || !h->prefix || !h->gwid || !h->gw_oid || !h->status_topic ||
        !h->stats_topic || !h->rules_topic || !h->version ||
        (cfg->support_url && !h->support_url) || !h->ha_status ||
        hd_add_gateway_diag(h, &h->diag)) {
        hadisc_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

const char *hadisc_ha_status_topic(const struct hadisc *h)
{
    return h->ha_status;
}

int hadisc_update(struct hadisc *h, const struct rules_entity *ents, size_t n)
{
    struct hd_list l = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = ents[i].kind == RULES_ENTITY_METRIC ? hd_add_metric(h, &l, &ents[i])
                                                 : hd_add_alert(h, &l, ents[i].topic, ents[i].node,
                                                                ents[i].name, ents[i].device_class);
    if (rc) {
        hd_list_clear(&l);
        log_warn("ha_discovery_failed", "error=\"%s\" keeping=previous", strerror(-rc));
        return rc;
    }
    hd_list_clear(&h->rule);
    h->rule = l;
    /* An alert seen earlier that the rule now declares is announced once, as declared. */
    for (size_t i = 0; i < h->seen.n;) {
        bool declared = false;
        for (size_t j = 0; j < h->rule.n && !declared; j++)
            declared = h->rule.v[j].topic && strcmp(h->rule.v[j].topic, h->seen.v[i].topic) == 0;
        if (declared) {
            hd_comp_clear(&h->seen.v[i]);
            h->seen.v[i] = h->seen.v[--h->seen.n];
        } else {
            i++;
        }
    }
    return hd_sync(h, false);
}

int hadisc_set_numbers(struct hadisc *h, const struct hadisc_number *nums, size_t n)
{
    struct hd_list l = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = nums[i].name && nums[i].command_topic ? hd_add_number(h, &l, &nums[i]) : 0;
    if (rc) {
        hd_list_clear(&l);
        return rc;
    }
    hd_list_clear(&h->nums);
    h->nums = l;
    return hd_sync(h, false);
}

int hadisc_set_params(struct hadisc *h, const struct params *p)
{
    size_t n = 0, cap = 0, np = p ? params_count(p) : 0;
    struct hadisc_number *v = NULL;
    char(*topics)[2][256] = NULL;
    char(*labels)[PARAM_NAME_MAX] = NULL;
    int rc = 0;
    for (size_t i = 0; i < np; i++) {
        const struct param_info *pi = params_at(p, i);
        if (pi && !pi->orphaned)
            cap += pi->nslots;
    }
    if (cap && (!(v = calloc(cap, sizeof *v)) || !(topics = calloc(cap, sizeof *topics)) ||
                !(labels = calloc(cap, sizeof *labels)))) {
        rc = -ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < np; i++) {
        const struct param_info *pi = params_at(p, i);
        if (!pi || pi->orphaned)
            continue;
        const struct param_decl *d = pi->decl;
        char *label = hd_label(d->name);
        if (!label) {
            rc = -ENOMEM;
            goto done;
        }
        for (size_t s = 0; s < pi->nslots && n < cap; s++) {
            const char *node = pi->slots[s].node;
            if (params_topic(topics[n][0], sizeof topics[n][0], h->prefix, d->name, node, true) ||
                params_topic(topics[n][1], sizeof topics[n][1], h->prefix, d->name, node, false))
                continue; /* too long a topic: not announced */
            snprintf(labels[n], sizeof labels[n], "%s", label);
            /* Home Assistant needs a range (its defaults, 1..100, would refuse values) and a
             * step of at least 0.001. */
            v[n] = (struct hadisc_number){
                .kind = d->type == PARAM_BOOLEAN ? HADISC_PARAM_SWITCH
                        : d->type == PARAM_ENUM  ? HADISC_PARAM_SELECT
                                                 : HADISC_PARAM_NUMBER,
                .options = d->values,
                .noptions = d->type == PARAM_ENUM ? d->nvalues : 0,
                .name = d->name,
                .node = node,
                .label = labels[n],
                .unit = d->unit,
                .min = d->has_min ? d->min : -1e9,
                .max = d->has_max ? d->max : 1e9,
                .step = d->step >= 0.001           ? d->step
                        : d->type == PARAM_INTEGER ? 1
                                                   : 0.001,
                .command_topic = topics[n][0],
                .state_topic = topics[n][1],
            };
            n++;
        }
        free(label);
    }
    rc = hadisc_set_numbers(h, v, n);
done:
    free(v);
    free(topics);
    free(labels);
    return rc;
}

void hadisc_seen_alert(struct hadisc *h, const char *topic)
{
    const struct hd_list *lists[] = {&h->rule, &h->seen};
    for (size_t li = 0; li < 2; li++)
        for (size_t i = 0; i < lists[li]->n; i++)
            if (lists[li]->v[i].topic && strcmp(lists[li]->v[i].topic, topic) == 0)
                return;
    if (h->seen.n >= HADISC_MAX_SEEN) {
        if (!h->seen_full_logged)
            log_warn("ha_discovery_alerts_bound", "max=%d topic=%s announced=no", HADISC_MAX_SEEN,
                     topic);
        h->seen_full_logged = true;
        return;
    }
    if (hd_add_alert(h, &h->seen, topic, NULL, NULL, NULL) == 0)
        hd_sync(h, false);
}

int hadisc_start(struct hadisc *h)
{
    h->started = true;
    return hd_sync(h, false);
}

void hadisc_republish(struct hadisc *h)
{
    hd_sync(h, true);
}

bool hadisc_on_message(struct hadisc *h, const char *topic, const void *payload, size_t len)
{
    if (strcmp(topic, h->ha_status) != 0)
        return false;
    if (len == 6 && memcmp(payload, "online", 6) == 0) {
        log_info("ha_online", "topic=%s action=republish", topic);
        hadisc_republish(h);
    }
    return true;
}

void hadisc_free(struct hadisc *h)
{
    if (!h)
        return;
    hd_list_clear(&h->diag);
    hd_list_clear(&h->rule);
    hd_list_clear(&h->nums);
    hd_list_clear(&h->seen);
    for (size_t i = 0; i < h->ndev; i++)
        hd_device_clear(&h->dev[i]);
    free(h->dev);
    free(h->dprefix);
    free(h->prefix);
    free(h->gwid);
    free(h->gw_oid);
    free(h->status_topic);
    free(h->stats_topic);
    free(h->rules_topic);
    free(h->version);
    free(h->support_url);
    free(h->ha_status);
    free(h);
}
