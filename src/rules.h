/*
 * rules.h — the Lua 5.4 rule engine: sandboxed rule state, the `gw` API, hot reload.
 *
 * A rule file is plain Lua defining any of these globals:
 *   on_packet(pkt, meta)  once per telemetry object; pkt mirrors the JSON (pkt.n1.t), JSON
 *                         integers are Lua integers and floats stay floats; meta = {source=,
 *                         line=, rx_ns=}
 *   on_line(text, meta)   once per non-JSON line (optional)
 *   on_tick(now)          every tick (default 1 s); `now` = seconds (float) of the clock
 *                         (rules_config.clock: the wall clock, or a replay's virtual time)
 *   init()                after load, before the first packet (optional)
 *   on_param(name, value, node)  after a tunable parameter (gw.param) changed; node is nil
 *                         for a global param (optional)
 * and calls gw.publish / gw.point / gw.log / gw.now / gw.state ... (documented in docs/rules.md).
 *
 * Every call into Lua runs under a memory cap (custom lua_Alloc), an instruction budget and a
 * wall-clock time limit (rules_config.time_limit), enforced by a count hook that yields out of
 * the coroutine, so `pcall` inside the rule cannot swallow them; the library functions that
 * loop without VM instructions are bounded replacements (rules_lualib.c). So no call, load or
 * reload takes longer than the time limit (plus at most a thousand instructions). A failing
 * call is isolated: the function returns an error and the caller dead-letters the packet.
 *
 * Reload ("build new, swap on success", as Redis functions.c): rules_reload() builds a complete
 * new state, loads and runs init(); only if all of that succeeds is the new state swapped in,
 * with gw.state deep-copied over from the old one. Otherwise the old rule keeps running.
 *
 * Modules: the rule's require(name) loads DIR/name.lua (text only) from cfg->lua_path, runs it
 * once per state under the same cap and budget and caches the result; a reload builds a new
 * state and so re-reads every module.
 *
 * Outputs go to a struct rule_sink so that the daemon can route them to MQTT/InfluxDB and
 * --dry-run can print them.
 *
 * Ownership: rules_open() returns an object owned by the caller (rules_close()). Strings passed
 * to the sink callbacks are valid only for the duration of the callback.
 */
#ifndef IIOTGW_RULES_H
#define IIOTGW_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct clock;

struct rule_sink {
    void *ud;
    /* A publish decided by the rule. qos 0..2. Return 0, or a negative errno (logged). */
    int (*publish)(void *ud, const char *topic, const char *payload, size_t len, int qos,
                   bool retain);
    /* One encoded line-protocol line (no trailing '\n'). Return 0 or a negative errno. */
    int (*write)(void *ud, const char *line, size_t len);
    /* A value the rule produced that no output can carry (NaN/inf), refused on its own while
     * the call goes on: "file:line: gw.point: point \"m\": value is a non-finite number".
     * Already counted (values_refused) and logged. May be NULL. */
    void (*refused)(void *ud, const char *msg);
    /* gw.log from the rule (level is enum log_level). May be NULL: then log.h is used. */
    void (*log)(void *ud, int level, const char *where, const char *msg);
};

struct rules_config {
    const char *path;     /* rule file */
    const char *prefix;   /* topic prefix exposed as gw.prefix (default "iiot") */
    size_t mem_limit;     /* bytes per Lua state; 0 = default 32 MiB */
    uint64_t instr_limit; /* VM instructions per call; 0 = default 10,000,000 */
    /* Wall-clock seconds per call (load, init, on_packet, ...), C library work on the rule's
     * behalf included; <= 0 = default 1 s. */
    double time_limit;
    /* Directories searched by the rule's require(name), ';'-separated, as DIR/name.lua (dots
     * in name become '/'). NULL or "" = the rule file's directory, then <that dir>/../lua,
     * then /usr/local/share/iiotgw/lua (site modules), then IIOTGW_DATADIR/lua (the package's,
     * /usr/share/iiotgw/lua). Resolved once by rules_open (reloads reuse it). */
    const char *lua_path;
    /* Registry of the tunable parameters the rule declares (gw.param), borrowed: it must
     * outlive the engine. NULL = a private one without persistence (--check, tests). Every
     * load declares between params_begin and params_commit/params_abort. */
    struct params *params;
    /* Where "now" comes from (clock.h): gw.now, gw.now_ns, gw.iso8601() without an argument
     * and the default point timestamp of init(). NULL = the wall clock. Borrowed: it must
     * outlive the engine; its owner moves a virtual clock between calls (a replay, a test). */
    const struct clock *clock;
};

/* One telemetry object handed to on_packet. */
struct packet {
    const char *source; /* source name */
    uint64_t line_no;   /* line number within the source */
    int64_t rx_ns;      /* receive time, ns since epoch (default point timestamp), from the
                         * gateway's clock: wall, or a replay's virtual time */
    const char *json;   /* the extracted object text (not NUL-terminated) */
    size_t json_len;
};

struct rules_stats {
    uint64_t calls;          /* on_packet/on_line/on_tick calls */
    uint64_t errors;         /* Lua errors (runtime, memory) */
    uint64_t overruns;       /* instruction budget or call time limit exceeded */
    uint64_t decode_errors;  /* invalid JSON objects */
    uint64_t publishes;      /* gw.publish calls that reached the sink */
    uint64_t points;         /* gw.point calls that reached the sink */
    uint64_t values_refused; /* NaN/inf metrics refused (point, publish or mapper entry) */
    uint64_t reloads;        /* successful reloads */
    uint64_t reload_failures;
    double time_total; /* seconds spent inside Lua calls */
    double time_max;   /* longest single call, seconds */
    size_t mem_used;   /* bytes currently allocated by the live state */
};

/*
 * What the live rule declared for front-ends such as Home Assistant discovery (hadisc.h):
 * every gw.mapper entry that has a topic (unless its `ha` is false) and every
 * gw.describe_alert call. Only facts the rule stated; defaults are the front-end's business.
 */
enum rules_entity_kind { RULES_ENTITY_METRIC, RULES_ENTITY_ALERT };

struct rules_entity {
    enum rules_entity_kind kind;
    const char *topic;        /* the state topic the rule publishes (never NULL) */
    const char *node;         /* ha.node, else tags.node (metric) or opts.node; NULL = unknown */
    const char *metric;       /* metric: measurement, else the last path key; alert: NULL */
    const char *name;         /* ha.name / opts.name, or NULL */
    const char *unit;         /* ha.unit (a display unit such as "°C"), or NULL */
    const char *unit_tag;     /* tags.unit ("celsius"), or NULL */
    const char *device_class; /* ha.device_class / opts.device_class, or NULL */
    int precision;            /* ha.precision (digits after the point), -1 = not given */
};

#define RULES_MAX_ENTITIES 4096 /* per rule state: the catalogue is outside the memory cap */

struct rules;

/*
 * Create the engine and load cfg->path. On failure returns a negative errno and writes
 * "file:line: message" into err (errlen bytes). -ENOENT/-EACCES: unreadable file;
 * -EINVAL: syntax or init() error.
 */
int rules_open(struct rules **out, const struct rules_config *cfg, const struct rule_sink *sink,
               char *err, size_t errlen);

/* Build a new state from the file, swap on success. Returns 0 or negative errno + err. */
int rules_reload(struct rules *r, char *err, size_t errlen);

/*
 * Decode pkt->json and call on_packet. Returns 0; -EBADMSG when the JSON is invalid (err says
 * where); -ECANCELED on a rule error, budget or time overrun (err: "file:line: message"). Outputs
 * the rule made before failing have already been handed to the sink.
 */
int rules_packet(struct rules *r, const struct packet *pkt, char *err, size_t errlen);

/* Call on_line(text, meta) if defined. Same returns as rules_packet (no -EBADMSG). */
int rules_line(struct rules *r, const char *source, uint64_t line_no, int64_t rx_ns,
               const char *text, size_t len, char *err, size_t errlen);

/* Call on_tick(now) if defined. now_ns = the tick's time, normally clock_now_ns() of the
 * engine's clock (a replay passes the virtual tick time). Same returns as rules_line. */
int rules_tick(struct rules *r, int64_t now_ns, char *err, size_t errlen);

/*
 * The live rule's entities in declaration order (*out may be NULL when there are none).
 * The array and its strings stay valid until the next successful rules_reload() or
 * rules_close(); a failed reload keeps them.
 */
size_t rules_entities(const struct rules *r, const struct rules_entity **out);

/*
 * The param `name` (slot `node`, NULL for a global param) changed in the registry: store the
 * new value into the live rule's handle, then call on_param(name, value, node) if defined.
 * The next packet sees the new value. Returns 0, -ENOENT (the live rule does not declare it)
 * or -ECANCELED (on_param failed: err has "file:line: message"; the value is applied).
 */
int rules_param_changed(struct rules *r, const char *name, const char *node, char *err,
                        size_t errlen);

void rules_get_stats(const struct rules *r, struct rules_stats *out);
const char *rules_path(const struct rules *r);
void rules_close(struct rules *r);

#endif
