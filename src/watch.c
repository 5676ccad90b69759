/*
 * watch.c — `iiotgw watch`, the on-site console (see watch.h for what it shows).
 *
 * Why a broker client and not a socket into the daemon: everything worth showing is already
 * published under <prefix>/ (data, alerts, the gateway's status, stats, rule state and params
 * document), retained where it matters, so the console works against any gateway the
 * technician's laptop can reach through the broker, and the daemon needs no second
 * interface. It reuses the daemon's MQTT sink (mqtt.c: asynchronous connect, reconnect with
 * backoff, subscriptions re-sent after every reconnect) on its own libev loop; nothing here
 * blocks.
 *
 * Model: a small table of nodes (the second topic level of <prefix>/<node>/<metric>, or the
 * device the gateway's Home Assistant discovery names for that topic), each with its metrics, plus
 * the alerts, the gateway's own topics and the params document. A message updates the model and
 * marks the screen dirty; a 0.1 s timer redraws a dirty screen (so a burst costs one redraw) and
 * every second anyway (ages move). In line mode (stdout not a terminal) each message is printed as
 * one line instead.
 *
 * Terminal: ncurses (the wide-character build, for "°C") sets the terminal up once and
 * endwin() restores it on every exit: `q`, SIGINT/SIGTERM/SIGHUP (libev signal watchers, so
 * the handler is ordinary code), and the error paths. The sink's log lines would corrupt the
 * screen, so logging is off while the screen is up; the broker connection state is shown
 * in the header instead.
 *
 * Bounds: at most WATCH_MAX_NODES nodes and WATCH_MAX_METRICS metrics per node, WATCH_MAX_ALERTS
 * alerts; anything beyond is counted as "not shown", so a flood of topics cannot grow the
 * process without end.
 */
#include "watch.h"

#include <curses.h>
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <mosquitto.h>

#include "config.h"
#include "gwconfig.h"
#include "log.h"
#include "mqtt.h"
#include "util.h"

#ifndef IIOTGW_SYSCONFDIR
#define IIOTGW_SYSCONFDIR "/etc/iiotgw"
#endif
#define WATCH_DEFAULT_CONFIG IIOTGW_SYSCONFDIR "/iiotgw.conf"

#define WATCH_MAX_NODES   32
#define WATCH_MAX_METRICS 32
#define WATCH_MAX_ALERTS  64
#define WATCH_MAX_OWNERS  256
#define WATCH_NAME_MAX    64
#define WATCH_VALUE_MAX   48

struct watch_metric {
    char name[WATCH_NAME_MAX];
    char value[WATCH_VALUE_MAX];
    double at;        /* wall-clock seconds of the last message */
    uint64_t updates; /* messages seen */
    /* counters: the previous distinct value, for a rate */
    double prev_v, prev_at, rate; /* rate per minute; NAN until two values */
    bool counter;
};

struct watch_node {
    char name[WATCH_NAME_MAX];
    struct watch_metric m[WATCH_MAX_METRICS];
    size_t nm;
    double first_at; /* first message: the update rate's start */
    uint64_t updates;
};

struct watch_alert {
    char topic[2 * WATCH_NAME_MAX]; /* relative to <prefix>/alerts/ */
    bool firing;
    char value[WATCH_VALUE_MAX], threshold[WATCH_VALUE_MAX], time[32];
    double at;
};

struct watch {
    struct ev_loop *loop;
    struct mqtt_sink *mqtt;
    char prefix[256];
    size_t prefix_len;
    char broker[300];
    bool curses; /* full screen (else line mode) */
    bool dirty;
    int exit_code;

    struct watch_node nodes[WATCH_MAX_NODES];
    size_t nnodes;
    /* From the gateway's Home Assistant discovery messages, when it publishes them: which
     * device (node) a state topic belongs to, e.g. signal/rssi -> node2. */
    struct {
        char rel[2 * WATCH_NAME_MAX]; /* topic relative to the prefix */
        char node[WATCH_NAME_MAX];
    } owner[WATCH_MAX_OWNERS];
    size_t nowners;
    char ha_filter[300]; /* <ha_discovery_prefix>/device/+/config */
    struct watch_alert alerts[WATCH_MAX_ALERTS];
    size_t nalerts;
    uint64_t not_shown; /* messages dropped by the bounds above */

    char status[32]; /* <prefix>/gateway/status */
    double status_at;
    cJSON *rules; /* last <prefix>/gateway/rules document, or NULL */
    cJSON *stats; /* last stats document */
    double stats_at;
    double pkt_rate, err_rate; /* per second, from the last two stats documents; NAN before */
    double prev_pkts, prev_errs, prev_stats_at;
    cJSON *params; /* the retained params document */

    ev_io key_w;
    ev_timer redraw_w, tick_w;
    ev_signal sig_int, sig_term, sig_hup;
};

static double watch_now(void)
{
    return (double)util_now_ns() / 1e9;
}

/* "3s", "4m05s", "2h01m", "3d02h" */
static void watch_age(char *out, size_t n, double secs)
{
    if (!(secs >= 0)) /* NaN too */
        secs = 0;
    if (secs > 1e9)
        secs = 1e9;
    long s = (long)secs;
    if (s < 60)
        snprintf(out, n, "%lds", s);
    else if (s < 3600)
        snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, n, "%ldd%02ldh", s / 86400, (s % 86400) / 3600);
}

static void watch_copy(char *dst, size_t n, const void *src, size_t len)
{
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    /* control characters would move the cursor */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)dst[i] < 0x20)
            dst[i] = ' ';
}

/* A JSON member as display text ("-" when absent). */
static void watch_json_text(const cJSON *o, const char *key, char *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v))
        watch_copy(out, n, v->valuestring, strlen(v->valuestring));
    else if (cJSON_IsNumber(v))
        snprintf(out, n, "%g", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(out, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else
        snprintf(out, n, "-");
}

static double watch_json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* ------------------------------------------------------------------------------------------
 * The model: one message in
 * ---------------------------------------------------------------------------------------- */

static struct watch_node *watch_node(struct watch *w, const char *name, size_t len)
{
    for (size_t i = 0; i < w->nnodes; i++)
        if (strlen(w->nodes[i].name) == len && memcmp(w->nodes[i].name, name, len) == 0)
            return &w->nodes[i];
    if (w->nnodes == WATCH_MAX_NODES || len >= WATCH_NAME_MAX)
        return NULL;
    struct watch_node *n = &w->nodes[w->nnodes++];
    memset(n, 0, sizeof *n);
    watch_copy(n->name, sizeof n->name, name, len);
    return n;
}

/* Counters are shown with a rate: names the default rule uses for its running totals. */
static bool watch_is_counter(const char *name)
{
    return strstr(name, "packets") || strstr(name, "errors") || strstr(name, "_received");
}

static void watch_on_metric(struct watch *w, const char *node, size_t nlen, const char *metric,
                            const char *payload, size_t len, double now)
{
    struct watch_node *n = watch_node(w, node, nlen);
    if (!n || strlen(metric) >= WATCH_NAME_MAX) {
        w->not_shown++;
        return;
    }
    char clean[WATCH_NAME_MAX];
    watch_copy(clean, sizeof clean, metric, strlen(metric));
    metric = clean;
    struct watch_metric *m = NULL;
    for (size_t i = 0; i < n->nm && !m; i++)
        if (strcmp(n->m[i].name, metric) == 0)
            m = &n->m[i];
    if (!m) {
        if (n->nm == WATCH_MAX_METRICS) {
            w->not_shown++;
            return;
        }
        m = &n->m[n->nm++];
        memset(m, 0, sizeof *m);
        watch_copy(m->name, sizeof m->name, metric, strlen(metric));
        m->counter = watch_is_counter(metric);
        m->prev_at = NAN;
        m->rate = NAN;
    }
    watch_copy(m->value, sizeof m->value, payload, len);
    m->at = now;
    m->updates++;
    if (!n->updates)
        n->first_at = now;
    n->updates++;
    if (m->counter) {
        char *end;
        double v = strtod(m->value, &end);
        if (end != m->value) {
            if (!isnan(m->prev_at) && now - m->prev_at >= 1.0 && v >= m->prev_v)
                m->rate = (v - m->prev_v) / (now - m->prev_at) * 60.0;
            if (isnan(m->prev_at) || now - m->prev_at >= 1.0 || v < m->prev_v) {
                m->prev_v = v;
                m->prev_at = now;
            }
        }
    }
    if (!w->curses) {
        printf("data %s %s = %s\n", n->name, m->name, m->value);
        fflush(stdout);
    }
}

static void watch_on_alert(struct watch *w, const char *raw, const char *payload, size_t len,
                           double now)
{
    char rel[2 * WATCH_NAME_MAX];
    if (strlen(raw) >= sizeof rel) {
        w->not_shown++;
        return;
    }
    watch_copy(rel, sizeof rel, raw, strlen(raw));
    struct watch_alert *a = NULL;
    for (size_t i = 0; i < w->nalerts && !a; i++)
        if (strcmp(w->alerts[i].topic, rel) == 0)
            a = &w->alerts[i];
    if (!a) {
        if (w->nalerts == WATCH_MAX_ALERTS) {
            w->not_shown++;
            return;
        }
        a = &w->alerts[w->nalerts++];
        memset(a, 0, sizeof *a);
        watch_copy(a->topic, sizeof a->topic, rel, strlen(rel));
    }
    cJSON *o = cJSON_ParseWithLength(payload, len);
    char state[32] = "-";
    if (o) {
        watch_json_text(o, "state", state, sizeof state);
        watch_json_text(o, "value", a->value, sizeof a->value);
        watch_json_text(o, "threshold", a->threshold, sizeof a->threshold);
        watch_json_text(o, "time", a->time, sizeof a->time);
        cJSON_Delete(o);
    }
    a->firing = strcmp(state, "firing") == 0;
    a->at = now;
    if (!w->curses) {
        printf("alert %s %s value=%s threshold=%s time=%s\n", rel, a->firing ? "FIRING" : state,
               a->value, a->threshold, a->time);
        fflush(stdout);
    }
}

/* Replace *slot with the JSON document in payload (kept when it does not parse). */
static cJSON *watch_doc(cJSON **slot, const char *payload, size_t len)
{
    cJSON *o = len ? cJSON_ParseWithLength(payload, len) : NULL;
    if (!cJSON_IsObject(o)) { /* the gateway's documents are objects; anything else is noise */
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_Delete(*slot);
    *slot = o;
    return o;
}

static void watch_on_stats(struct watch *w, const char *payload, size_t len, double now)
{
    cJSON *o = watch_doc(&w->stats, payload, len);
    if (!o)
        return;
    w->stats_at = now;
    double pk = watch_json_num(o, "packets");
    double er = 0;
    static const char *const errs[] = {"invalid_json", "unterminated", "overlong", "rule_errors"};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        double v = watch_json_num(o, errs[i]);
        er += isnan(v) ? 0 : v;
    }
    if (!isnan(w->prev_stats_at) && now > w->prev_stats_at && pk >= w->prev_pkts &&
        er >= w->prev_errs) {
        w->pkt_rate = (pk - w->prev_pkts) / (now - w->prev_stats_at);
        w->err_rate = (er - w->prev_errs) / (now - w->prev_stats_at);
    }
    w->prev_pkts = pk;
    w->prev_errs = er;
    w->prev_stats_at = now;
    if (!w->curses) {
        printf("stats packets=%.0f errors=%.0f deadletter=%.0f alerts_active=%.0f\n", pk, er,
               watch_json_num(o, "deadletter"), watch_json_num(o, "alerts_active"));
        fflush(stdout);
    }
}

/* One line per param slot: "temp_high node1 36.5 (default 35)". */
static void watch_print_params(const cJSON *doc)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "params"), *p;
    cJSON_ArrayForEach(p, list)
    {
        char name[WATCH_NAME_MAX], def[WATCH_VALUE_MAX], val[WATCH_VALUE_MAX];
        watch_json_text(p, "name", name, sizeof name);
        watch_json_text(p, "default", def, sizeof def);
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(p, "nodes"), *n;
        if (cJSON_IsObject(nodes)) {
            cJSON_ArrayForEach(n, nodes)
            {
                char node[WATCH_NAME_MAX];
                watch_json_text(n, "value", val, sizeof val);
                watch_copy(node, sizeof node, n->string, strlen(n->string));
                printf("param %s %s = %s (default %s)\n", name, node, val, def);
            }
        } else {
            watch_json_text(p, "value", val, sizeof val);
            printf("param %s = %s (default %s)\n", name, val, def);
        }
    }
    fflush(stdout);
}

/* The node a metric topic belongs to by the discovery messages, or NULL. */
static const char *watch_owner(const struct watch *w, const char *rel)
{
    for (size_t i = 0; i < w->nowners; i++)
        if (strcmp(w->owner[i].rel, rel) == 0)
            return w->owner[i].node;
    return NULL;
}

/* Move metric `name` of node `from` (if shown) to node `to`: a discovery message arrived
 * after the value. */
static void watch_move_metric(struct watch *w, const char *from, size_t flen, const char *name,
                              const char *to)
{
    struct watch_node *src = NULL;
    for (size_t i = 0; i < w->nnodes && !src; i++)
        if (strlen(w->nodes[i].name) == flen && memcmp(w->nodes[i].name, from, flen) == 0)
            src = &w->nodes[i];
    if (!src)
        return;
    for (size_t j = 0; j < src->nm; j++) {
        if (strcmp(src->m[j].name, name) != 0)
            continue;
        struct watch_metric m = src->m[j];
        memmove(&src->m[j], &src->m[j + 1], (src->nm - j - 1) * sizeof m);
        src->nm--;
        size_t si = (size_t)(src - w->nodes);
        if (src->nm == 0) {
            memmove(src, src + 1, (w->nnodes - si - 1) * sizeof *src);
            w->nnodes--;
        }
        struct watch_node *dst = watch_node(w, to, strlen(to));
        if (dst && dst->nm < WATCH_MAX_METRICS) {
            dst->m[dst->nm++] = m;
            if (!dst->updates)
                dst->first_at = m.at;
            dst->updates += m.updates;
        }
        return;
    }
}

/* A device discovery message: note the owner of every sensor state topic under our prefix. */
static void watch_on_discovery(struct watch *w, const char *payload, size_t len)
{
    cJSON *o = len ? cJSON_ParseWithLength(payload, len) : NULL;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(o, "dev");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(dev, "name");
    const cJSON *via = cJSON_GetObjectItemCaseSensitive(dev, "via_device");
    const cJSON *cmps = cJSON_GetObjectItemCaseSensitive(o, "cmps"), *c;
    /* Nodes only (they are `via_device` the gateway): the gateway's own sensors read JSON. */
    if (!cJSON_IsString(name) || !cJSON_IsString(via) || !cJSON_IsObject(cmps)) {
        cJSON_Delete(o);
        return;
    }
    char node[WATCH_NAME_MAX];
    watch_copy(node, sizeof node, name->valuestring, strlen(name->valuestring));
    cJSON_ArrayForEach(c, cmps)
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "p");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "state_topic");
        if (!cJSON_IsString(p) || strcmp(p->valuestring, "sensor") != 0 || !cJSON_IsString(st))
            continue;
        const char *t = st->valuestring;
        if (strncmp(t, w->prefix, w->prefix_len) != 0 || t[w->prefix_len] != '/')
            continue;
        const char *rel = t + w->prefix_len + 1, *slash = strchr(rel, '/');
        if (!slash || strchr(slash + 1, '/') || strlen(rel) >= sizeof w->owner[0].rel ||
            watch_owner(w, rel) || w->nowners == WATCH_MAX_OWNERS)
            continue;
        snprintf(w->owner[w->nowners].rel, sizeof w->owner[0].rel, "%s", rel);
        snprintf(w->owner[w->nowners].node, sizeof w->owner[0].node, "%s", node);
        w->nowners++;
        if ((size_t)(slash - rel) != strlen(node) || memcmp(rel, node, strlen(node)) != 0)
            watch_move_metric(w, rel, (size_t)(slash - rel), slash + 1, node);
    }
    w->dirty = true;
    cJSON_Delete(o);
}

static void watch_on_message(void *ud, const char *topic, const void *payload, size_t len,
                             bool retained)
{
    struct watch *w = ud;
    (void)retained;
    double now = watch_now();
    bool match = false;
    if (w->ha_filter[0] &&
        mosquitto_topic_matches_sub(w->ha_filter, topic, &match) == MOSQ_ERR_SUCCESS && match) {
        watch_on_discovery(w, payload, len);
        return;
    }
    if (strncmp(topic, w->prefix, w->prefix_len) != 0 || topic[w->prefix_len] != '/')
        return;
    const char *rel = topic + w->prefix_len + 1;
    w->dirty = true;
    if (strncmp(rel, "gateway/", 8) == 0) {
        const char *g = rel + 8;
        if (strcmp(g, "status") == 0) {
            watch_copy(w->status, sizeof w->status, payload, len);
            w->status_at = now;
            if (!w->curses)
                printf("status %s\n", w->status);
        } else if (strcmp(g, "rules") == 0) {
            cJSON *o = watch_doc(&w->rules, payload, len);
            if (o && !w->curses) {
                char st[16], file[200], err[300];
                watch_json_text(o, "state", st, sizeof st);
                watch_json_text(o, "file", file, sizeof file);
                watch_json_text(o, "error", err, sizeof err);
                printf("rules %s file=%s%s%s\n", st, file, strcmp(err, "-") ? " error=" : "",
                       strcmp(err, "-") ? err : "");
            }
        } else if (strcmp(g, "stats") == 0) {
            watch_on_stats(w, payload, len, now);
        } else if (strcmp(g, "params") == 0) {
            cJSON *o = watch_doc(&w->params, payload, len);
            if (o && !w->curses)
                watch_print_params(o);
        }
        if (!w->curses)
            fflush(stdout);
        return;
    }
    if (strncmp(rel, "alerts/", 7) == 0) {
        watch_on_alert(w, rel + 7, payload, len, now);
        return;
    }
    /* <node>/<metric>: exactly two levels below the prefix */
    const char *slash = strchr(rel, '/');
    if (!slash || slash == rel || !slash[1] || strchr(slash + 1, '/'))
        return;
    const char *owner = watch_owner(w, rel);
    if (owner)
        watch_on_metric(w, owner, strlen(owner), slash + 1, payload, len, now);
    else
        watch_on_metric(w, rel, (size_t)(slash - rel), slash + 1, payload, len, now);
}

/* ------------------------------------------------------------------------------------------
 * The screen
 * ---------------------------------------------------------------------------------------- */

static void watch_fmt_time(char *out, size_t n, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(out, n, "%H:%M:%S", &tm);
}

/*
 * One line of the screen at (row, col), cut at the right edge (mvprintw would wrap it into the
 * next line) on a UTF-8 character boundary. Rows past the bottom are ignored.
 */
static void watch_put(int row, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void watch_put(int row, int col, const char *fmt, ...)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    if (row < 0 || row >= rows || col >= cols)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* columns: count characters, not bytes (continuation bytes are 10xxxxxx) */
    size_t i = 0;
    int width = cols - col;
    for (int c = 0; line[i] && c < width; c++) {
        i++;
        while (((unsigned char)line[i] & 0xC0) == 0x80)
            i++;
    }
    mvaddnstr(row, col, line, (int)i);
}

static void watch_draw_params(struct watch *w, int *row, int rows)
{
    const cJSON *list = w->params ? cJSON_GetObjectItemCaseSensitive(w->params, "params") : NULL;
    attron(A_BOLD);
    watch_put((*row)++, 0, "PARAMS  (* = changed from the default)");
    attroff(A_BOLD);
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        watch_put((*row)++, 2, "(no params document on %s/gateway/params)", w->prefix);
        return;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, list)
    {
        if (*row >= rows - 1)
            return;
        char name[WATCH_NAME_MAX], def[WATCH_VALUE_MAX], unit[16], lo[24], hi[24], line[512];
        watch_json_text(p, "name", name, sizeof name);
        watch_json_text(p, "default", def, sizeof def);
        watch_json_text(p, "unit", unit, sizeof unit);
        watch_json_text(p, "min", lo, sizeof lo);
        watch_json_text(p, "max", hi, sizeof hi);
        size_t used = 0;
        line[0] = '\0';
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(p, "nodes"), *n;
        if (cJSON_IsObject(nodes)) {
            cJSON_ArrayForEach(n, nodes)
            {
                char val[WATCH_VALUE_MAX], node[WATCH_NAME_MAX];
                watch_json_text(n, "value", val, sizeof val);
                watch_copy(node, sizeof node, n->string, strlen(n->string));
                bool ov = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "overridden"));
                used += (size_t)snprintf(line + used, sizeof line - used, "%s=%s%s  ", node, val,
                                         ov ? "*" : "");
                if (used >= sizeof line)
                    break;
            }
        } else {
            char val[WATCH_VALUE_MAX];
            watch_json_text(p, "value", val, sizeof val);
            bool ov = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "overridden"));
            snprintf(line, sizeof line, "%s%s  ", val, ov ? "*" : "");
        }
        watch_put((*row)++, 2, "%-16s %-40.40s default %s  (%s..%s %s)", name, line, def, lo, hi,
                  strcmp(unit, "-") ? unit : "");
    }
}

static void watch_draw(struct watch *w)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    (void)cols;
    erase();
    double now = watch_now();
    char clock[16], buf[64];
    watch_fmt_time(clock, sizeof clock, now);
    struct mqtt_stats ms;
    mqtt_sink_get_stats(w->mqtt, &ms);
    int row = 0;

    attron(A_REVERSE);
    watch_put(row, 0, "%-*s", cols, "");
    watch_put(row++, 0, " iiotgw watch  %s  prefix %s  broker %s  gateway %s  %s   q: quit", clock,
              w->prefix, ms.connected ? "connected" : "CONNECTING", w->status[0] ? w->status : "?",
              w->broker);
    attroff(A_REVERSE);

    /* rule state and last reload */
    if (w->rules) {
        char st[16], file[200], err[300];
        watch_json_text(w->rules, "state", st, sizeof st);
        watch_json_text(w->rules, "file", file, sizeof file);
        watch_json_text(w->rules, "error", err, sizeof err);
        double t = watch_json_num(w->rules, "time");
        char at[16] = "-", age[24] = "";
        if (!isnan(t)) {
            watch_fmt_time(at, sizeof at, t);
            watch_age(age, sizeof age, now - t);
        }
        if (strcmp(st, "ok") != 0)
            attron(A_BOLD);
        watch_put(row++, 0, "Rule: %s  %s  loaded %s (%s ago)%s%s", st, file, at, age,
                  strcmp(err, "-") ? "  error: " : "", strcmp(err, "-") ? err : "");
        attroff(A_BOLD);
    } else {
        watch_put(row++, 0, "Rule: (no rule status yet)");
    }
    /* gateway figures */
    if (w->stats) {
        char up[24];
        watch_age(up, sizeof up, watch_json_num(w->stats, "uptime_s"));
        watch_put(row++, 0,
                  "Gateway: packets %.0f (%.1f/s)  errors %.1f/s  dead-letters %.0f  alerts "
                  "active %.0f  uptime %s",
                  watch_json_num(w->stats, "packets"), isnan(w->pkt_rate) ? 0 : w->pkt_rate,
                  isnan(w->err_rate) ? 0 : w->err_rate, watch_json_num(w->stats, "deadletter"),
                  watch_json_num(w->stats, "alerts_active"), up);
    } else {
        watch_put(row++, 0, "Gateway: (no stats yet: they come every stats_interval)");
    }
    row++;

    /* nodes */
    attron(A_BOLD);
    watch_put(row++, 0, "%-10s %-20s %14s %8s  %s", "NODE", "METRIC", "VALUE", "AGE", "RATE");
    attroff(A_BOLD);
    int node_row0 = row;
    for (size_t i = 0; i < w->nnodes && row < rows - 8; i++) {
        struct watch_node *n = &w->nodes[i];
        double span = now - n->first_at;
        char nrate[32] = "";
        if (span >= 1)
            snprintf(nrate, sizeof nrate, "%.1f msg/min", (double)n->updates / span * 60.0);
        for (size_t j = 0; j < n->nm && row < rows - 8; j++) {
            struct watch_metric *m = &n->m[j];
            char age[24], rate[40] = "";
            watch_age(age, sizeof age, now - m->at);
            if (m->counter && !isnan(m->rate))
                snprintf(rate, sizeof rate, "+%.1f/min", m->rate);
            else if (j == 0)
                snprintf(rate, sizeof rate, "%s", nrate);
            watch_put(row++, 0, "%-10s %-20.20s %14.14s %8s  %s", j == 0 ? n->name : "", m->name,
                      m->value, age, rate);
        }
    }
    size_t total = 0, shown = 0;
    for (size_t i = 0; i < w->nnodes; i++)
        total += w->nodes[i].nm;
    shown = (size_t)(row - node_row0);
    if (shown < total)
        watch_put(row++, 2, "(%zu more metrics: enlarge the terminal)", total - shown);
    if (w->nnodes == 0)
        watch_put(row++, 2, "(no data yet on %s/<node>/<metric>)", w->prefix);
    row++;

    /* alerts */
    size_t firing = 0;
    for (size_t i = 0; i < w->nalerts; i++)
        firing += w->alerts[i].firing;
    attron(A_BOLD);
    watch_put(row++, 0, "ALERTS  %zu firing, %zu known", firing, w->nalerts);
    attroff(A_BOLD);
    for (size_t i = 0; i < w->nalerts && row < rows - 4; i++) {
        struct watch_alert *a = &w->alerts[i];
        if (!a->firing)
            continue;
        watch_age(buf, sizeof buf, now - a->at);
        attron(A_BOLD);
        watch_put(row++, 2, "FIRING  %-28s value %s  threshold %s  since %s", a->topic, a->value,
                  a->threshold, a->time);
        attroff(A_BOLD);
    }
    row++;
    if (row < rows - 2)
        watch_draw_params(w, &row, rows);
    if (w->not_shown)
        watch_put(rows - 1, 0, "(%llu messages on topics beyond the display limits)",
                  (unsigned long long)w->not_shown);
    refresh();
    w->dirty = false;
}

/* ------------------------------------------------------------------------------------------
 * Loop plumbing
 * ---------------------------------------------------------------------------------------- */

static void watch_stop(struct watch *w, int code)
{
    w->exit_code = code;
    ev_break(w->loop, EVBREAK_ALL);
}

static void watch_on_key(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(io, struct watch, key_w);
    int c;
    while ((c = getch()) != ERR) {
        if (c == 'q' || c == 'Q')
            watch_stop(w, 0);
        else if (c == KEY_RESIZE || c == 12 /* ^L */) {
            clearok(stdscr, TRUE);
            w->dirty = true;
        }
    }
}

static void watch_on_redraw(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(t, struct watch, redraw_w);
    if (w->dirty)
        watch_draw(w);
}

static void watch_on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(t, struct watch, tick_w);
    w->dirty = true;
}

static void watch_on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = s->data;
    watch_stop(w, 0);
}

/* ------------------------------------------------------------------------------------------
 * Command line
 * ---------------------------------------------------------------------------------------- */

static const char watch_usage[] =
    "Usage: iiotgw watch [-c FILE] [--mqtt URL] [--prefix P]\n"
    "Live console of a running gateway, from what it publishes on the broker: per node the\n"
    "last value of each metric with its age and rate, the alerts firing, the rule status and\n"
    "last reload, packet and error rates, the params. q quits. When stdout is not a terminal,\n"
    "one line per message is printed instead.\n"
    "\n"
    "  -c, --config FILE   read mqtt.* and prefix from the gateway's config file (default:\n"
    "                      $IIOTGW_CONFIG, else " WATCH_DEFAULT_CONFIG " when readable)\n"
    "      --mqtt URL      broker (default: the config's mqtt.url, mqtt://localhost:1883)\n"
    "      --prefix P      topic prefix (default: the config's prefix, iiot)\n"
    "  -h, --help          this help\n";

int watch_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"mqtt", required_argument, NULL, 'm'},
        {"prefix", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL, *url = NULL, *prefix = NULL;
    int opt, code = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'm':
            url = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'h':
            fputs(watch_usage, stdout);
            return 0;
        default:
            fputs(watch_usage, stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "iiotgw watch: unexpected argument \"%s\"\n", argv[optind]);
        return 1;
    }

    struct config cfg;
    char err[512] = "";
    struct watch *w = NULL;
    bool curses_up = false;
    int rc;
    if (config_defaults(&cfg)) {
        fprintf(stderr, "iiotgw watch: out of memory\n");
        return 3;
    }
    /* As the daemon: without -c, $IIOTGW_CONFIG or the installed config when it exists, so
     * `iiotgw watch` on the gateway finds its broker and prefix. An installed config this
     * user may not read (it names secrets) is skipped: --mqtt then says where to go. */
    if (!file) {
        const char *env = getenv("IIOTGW_CONFIG");
        if (env && *env)
            file = env;
        else if (access(WATCH_DEFAULT_CONFIG, R_OK) == 0)
            file = WATCH_DEFAULT_CONFIG;
        if (config_is_none(file))
            file = NULL;
    }
    if ((file && (rc = config_load_file(&cfg, file, err, sizeof err))) ||
        (url && (rc = config_set(&cfg, "mqtt.url", url, err, sizeof err))) ||
        (prefix && (rc = config_set(&cfg, "prefix", prefix, err, sizeof err))) ||
        /* The console loads no rule: spare it the daemon's check of the rule file. */
        (rc = config_set(&cfg, "rules", "/dev/null", err, sizeof err)) ||
        (rc = config_finish(&cfg, err, sizeof err))) {
        fprintf(stderr, "iiotgw watch: %s\n", rc == -ENOMEM ? "out of memory" : err);
        goto out;
    }
    if (config_is_none(cfg.mqtt_url)) {
        fprintf(stderr, "iiotgw watch: needs a broker (--mqtt URL)\n");
        goto out;
    }
    if (!(w = calloc(1, sizeof *w))) {
        code = 3;
        goto out;
    }
    snprintf(w->prefix, sizeof w->prefix, "%s", cfg.prefix);
    w->prefix_len = strlen(w->prefix);
    w->pkt_rate = w->err_rate = w->prev_stats_at = NAN;
    w->curses = isatty(STDOUT_FILENO);

    struct mqtt_config mc;
    char storage[1024], client_id[96], host[48];
    if (gwconfig_mqtt(&cfg, NULL, &mc, storage, sizeof storage, err, sizeof err)) {
        fprintf(stderr, "iiotgw watch: mqtt.url: %s\n", err);
        goto out;
    }
    /* Never the gateway's client id: the broker would disconnect the gateway. */
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    snprintf(client_id, sizeof client_id, "iiotgw-watch-%s-%ld", host, (long)getpid());
    mc.client_id = client_id;
    mc.clean_session = true;
    mc.session_expiry = 0;
    snprintf(w->broker, sizeof w->broker, "%s:%d", mc.host,
             mc.port ? mc.port : (mc.tls ? 8883 : 1883));

    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop) {
        fprintf(stderr, "iiotgw watch: cannot create the event loop\n");
        code = 3;
        goto out;
    }
    if (w->curses) {
        setlocale(LC_ALL, "");
        if (!initscr()) {
            fprintf(stderr, "iiotgw watch: cannot set up the terminal\n");
            code = 3;
            goto out;
        }
        curses_up = true;
        cbreak();
        noecho();
        nodelay(stdscr, TRUE);
        keypad(stdscr, TRUE);
        curs_set(0);
        log_set_level(-1); /* log lines would scribble over the screen */
    } else {
        log_set_level(LL_WARN);
    }
    if ((rc = mqtt_sink_new(&w->mqtt, w->loop, &mc, err, sizeof err))) {
        if (curses_up)
            endwin();
        curses_up = false;
        fprintf(stderr, "iiotgw watch: %s\n", rc == -ENOMEM ? "out of memory" : err);
        code = rc == -ENOMEM ? 3 : 1;
        goto out;
    }
    char filter[300];
    snprintf(filter, sizeof filter, "%s/#", w->prefix);
    struct mqtt_inbound in = {.message = watch_on_message, .ud = w};
    mqtt_sink_set_inbound(w->mqtt, &in);
    /* The discovery messages first, so that their retained copies (node of each topic) come
     * before the retained values. */
    snprintf(w->ha_filter, sizeof w->ha_filter, "%s/device/+/config", cfg.ha_discovery_prefix);
    if (mqtt_sink_subscribe(w->mqtt, w->ha_filter, 0))
        w->ha_filter[0] = '\0';
    if (mqtt_sink_subscribe(w->mqtt, filter, 0)) {
        if (curses_up)
            endwin();
        curses_up = false;
        fprintf(stderr, "iiotgw watch: invalid prefix \"%s\"\n", w->prefix);
        goto out;
    }

    ev_signal_init(&w->sig_int, watch_on_signal, SIGINT);
    ev_signal_init(&w->sig_term, watch_on_signal, SIGTERM);
    ev_signal_init(&w->sig_hup, watch_on_signal, SIGHUP);
    w->sig_int.data = w->sig_term.data = w->sig_hup.data = w;
    ev_signal_start(w->loop, &w->sig_int);
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_hup);
    signal(SIGPIPE, SIG_IGN);
    if (w->curses) {
        ev_io_init(&w->key_w, watch_on_key, STDIN_FILENO, EV_READ);
        ev_io_start(w->loop, &w->key_w);
        ev_timer_init(&w->redraw_w, watch_on_redraw, 0.1, 0.1);
        ev_timer_start(w->loop, &w->redraw_w);
        ev_timer_init(&w->tick_w, watch_on_tick, 1.0, 1.0);
        ev_timer_start(w->loop, &w->tick_w);
        watch_draw(w);
    }
    ev_run(w->loop, 0);
    code = w->exit_code;

out:
    if (curses_up)
        endwin();
    if (w) {
        mqtt_sink_free(w->mqtt);
        if (w->loop)
            ev_loop_destroy(w->loop);
        cJSON_Delete(w->rules);
        cJSON_Delete(w->stats);
        cJSON_Delete(w->params);
        free(w);
    }
    config_free(&cfg);
    return code;
}
