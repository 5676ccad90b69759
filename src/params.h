/*
 * params.h — tunable parameters: typed values a rule declares (gw.param) and a technician
 * changes at run time, validated once here whatever the route (MQTT command topic, the local
 * `iiotgw param` command, the params file + SIGHUP), persisted and audited.
 *
 * Why one registry outside the rule engine: the overrides must outlive a rule state (hot
 * reload builds a new one) and the process (restart), and every route must refuse the same
 * values for the same reasons. The rule engine only declares and reads; the gateway wires the
 * routes (paramsrv.c) and hands each accepted change to the live rule.
 *
 * Values. Every value is a double: number, integer (whole, |v| <= 2^53), boolean (0 or 1),
 * enum (the index into decl.values). Its text form (params_format) is what the MQTT state
 * topics, the params file and `iiotgw param` show: "35.5", "120", "true", "fast".
 *
 * Declarations. A rule (re)load declares between params_begin() and params_commit() (or
 * params_abort() when the load failed: the previous declarations stay live). At commit:
 *   - a stored override that the new declaration still accepts is kept;
 *   - one it refuses (wrong type, outside the new bounds or step, breaks a constraint) falls
 *     back to the default with a warning (param_override_dropped) and is removed;
 *   - an override whose param is no longer declared is kept and listed as orphaned (so a
 *     rule edit that renames a param by mistake loses nothing); orphaned params cannot be
 *     set, only reset.
 *
 * Constraints. decl.below / decl.above name another param of the same rule, declared
 * earlier or later: the value must stay strictly below / above that param's value for the
 * same node (or its single value when that param is global). Checked on every change, in
 * both directions (setting temp_high below temp_clear is refused as well), and on defaults at
 * commit (a rule whose defaults break a constraint fails to load).
 *
 * Persistence. `file` (NULL = none) holds the overrides, one per line, written atomically
 * (tmp + fsync + rename + fsync of the directory) after every accepted change and at every
 * commit. The same file is the third route: a technician edits it and sends SIGHUP, which
 * calls params_reload_file(). Format (docs/tuning.md):
 *     # comment
 *     NAME [NODE] = VALUE        [# set <ISO-8601 time> by <origin>]
 * The writer also lists every declared param not overridden as a commented default line.
 *
 * Audit. Every accepted change logs `param_changed` (param, node, old, new, origin, who) and
 * records origin + time in the slot (shown in the retained params document and the file).
 *
 * Threading: one thread (the event loop). Listeners are called synchronously from
 * params_set() / params_commit() / params_reload_file(); a listener must not call
 * params_begin/commit/abort or params_close, it may call the read functions.
 *
 * Ownership: params_open() returns an object owned by the caller (params_close()). Pointers
 * returned by params_at() / params_find() stay valid until the next params_commit(),
 * params_reload_file() or params_close().
 */
#ifndef IIOTGW_PARAMS_H
#define IIOTGW_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAM_NAME_MAX   64 /* bytes of a param or node name, NUL included */
#define PARAM_MAX_NODES  64 /* nodes of one per-node param */
#define PARAM_MAX_VALUES 32 /* values of one enum */
#define PARAM_TEXT_MAX   64 /* bytes of a value's text form, NUL included */
#define PARAM_ORIGIN_MAX                                                                           \
    128 /* bytes of an origin ("mqtt:ha", "local:uid=1000", "file"), NUL included */

enum param_type { PARAM_NUMBER, PARAM_INTEGER, PARAM_BOOLEAN, PARAM_ENUM };

/*
 * A declaration. Names of params and nodes: [A-Za-z0-9_-], 1..63 bytes (they are MQTT topic
 * levels); the param name "response" and the node name "set" are reserved (they would
 * collide with the response and command topics). Strings
 * are owned by whoever filled the struct; params_declare() copies them.
 */
struct param_decl {
    const char *name;
    enum param_type type;
    double def;            /* default (boolean 0/1, enum index) */
    bool has_min, has_max; /* number/integer only */
    double min, max;
    double step;               /* > 0: value = min (or 0) + k * step; 0 = any */
    const char *unit;          /* may be NULL ("°C", "s") */
    const char *description;   /* may be NULL */
    const char *const *values; /* enum: the allowed strings */
    size_t nvalues;
    const char *const *nodes; /* per-node: the node names; nnodes 0 = one global value */
    size_t nnodes;
    const char *below; /* may be NULL: must stay < that param (same node) */
    const char *above; /* may be NULL: must stay > that param (same node) */
};

/* One value of a param: the only one of a global param, or one node's. */
struct param_slot {
    const char *node;              /* NULL for a global param */
    double value;                  /* applied value */
    bool overridden;               /* value comes from an override, not the default */
    char origin[PARAM_ORIGIN_MAX]; /* who set it last ("default" when never) */
    int64_t changed_ns;            /* when (wall clock), 0 when never */
};

/* A param as listed: its declaration (the last one seen when orphaned) and its slots. */
struct param_info {
    const struct param_decl *decl; /* strings owned by the registry */
    bool orphaned;                 /* no longer declared by the rule (decl = last known, or
                                      a bare name/number when only the file knew it) */
    size_t nslots;                 /* 1, or decl->nnodes */
    const struct param_slot *slots;
};

/* Where a change comes from. kind: "mqtt", "local", "file" ("default" for resets done by a
 * bounds change at commit); who: client id / user property, "uid=1000", file path; may be
 * NULL. */
struct param_origin {
    const char *kind;
    const char *who;
};

/* Called after each accepted change (old = previous value) and after each commit. */
struct params_listener {
    void *ud;
    /* May be NULL. slot indexes pi->slots. */
    void (*changed)(void *ud, const struct param_info *pi, size_t slot, double old,
                    const struct param_origin *origin);
    /* May be NULL. The set of params (or their bounds) may have changed: re-enumerate. */
    void (*declared)(void *ud);
};

struct params;

/*
 * Create the registry and read `file` (NULL = no persistence). A missing file is not an
 * error; a line that cannot be parsed is logged (param_file_bad_line, with file and line)
 * and skipped. Returns 0, -ENOMEM, or -errno when the file exists but cannot be read.
 */
int params_open(struct params **out, const char *file, char *err, size_t errlen);
void params_close(struct params *p); /* NULL is a no-op */

/* Up to 4 listeners, called in registration order. Returns 0 or -ENOSPC. params_unlisten()
 * removes every listener registered with `ud`. */
int params_listen(struct params *p, const struct params_listener *l);
void params_unlisten(struct params *p, void *ud);

/* ---- declarations (the rule engine) ---- */

/*
 * Check a declaration on its own (names, type, bounds, step, default within them, enum
 * values, nodes unique). Needs no registry: the rule engine uses it also without one.
 * Returns 0 or -EINVAL with err ("temp_high: default 200 is above max 125").
 */
int params_decl_check(const struct param_decl *d, char *err, size_t errlen);

/* Start a new set of declarations (a rule load). Discards an unfinished one. */
void params_begin(struct params *p);

/*
 * Declare one param in the set being built: checked (params_decl_check, name not declared
 * twice), copied, and its starting values written to values[] (decl->nnodes entries, or 1):
 * the stored override when the declaration accepts it, else the default. Returns 0,
 * -EINVAL (err set), -EEXIST (declared twice), -ENOMEM.
 */
int params_declare(struct params *p, const struct param_decl *d, double *values, char *err,
                   size_t errlen);

/*
 * Make the set live: constraints between the defaults checked (-EINVAL, err set, nothing
 * changes: call params_abort), overrides resolved as described above, the file rewritten,
 * `declared` listeners called. Returns 0, -EINVAL or -ENOMEM.
 */
int params_commit(struct params *p, char *err, size_t errlen);
void params_abort(struct params *p);

/* Starting value of (name, node) in the committed set after a successful commit: what the
 * new rule state must hold. Returns 0 or -ENOENT. */
int params_value(const struct params *p, const char *name, const char *node, double *out);

/* ---- changes (every route) ---- */

/*
 * Parse `text` for (name, node) and apply it when valid. node NULL or "" for a global param.
 * text "default" removes the override. msg always receives one line for the requester:
 * "temp_high node1: 35 -> 36.5" or the refusal ("temp_clear node1: 34 refused: must stay
 * below temp_high (33.5)"). Returns 0 (applied, or unchanged), -ENOENT (unknown param or
 * node), -EINVAL (not a value of the type), -ERANGE (outside min/max, off the step, breaks
 * a constraint), -EPERM (orphaned: only "default" is accepted), -EIO (applied but the file
 * could not be written; logged).
 */
int params_set(struct params *p, const char *name, const char *node, const char *text,
               const struct param_origin *origin, char *msg, size_t msglen);

/*
 * SIGHUP: re-read the file and apply what differs from the live overrides (a line removed =
 * back to the default) with origin "file", each change validated as params_set does;
 * refused lines are logged (param_refused, with file:line) and the file is rewritten with the
 * applied values. Returns the number of lines refused (>= 0), or a negative errno when the
 * file cannot be read or parsed (err set; nothing applied).
 */
int params_reload_file(struct params *p, char *err, size_t errlen);

/* ---- reading (the routes, Home Assistant discovery, the console) ---- */

size_t params_count(const struct params *p);                          /* committed + orphaned */
const struct param_info *params_at(const struct params *p, size_t i); /* NULL past the end */
const struct param_info *params_find(const struct params *p, const char *name);
/* Index of node in pi's slots, or -1 (a global param: node NULL or "" gives 0). */
int params_slot_index(const struct param_info *pi, const char *node);

/* Text form of v for decl d into out (>= PARAM_TEXT_MAX). Returns the length. */
size_t params_format(const struct param_decl *d, double v, char *out, size_t n);
const char *params_type_name(enum param_type t); /* "number", "integer", "boolean", "enum" */

/*
 * The retained document of every param (malloc'd NUL-terminated JSON, caller frees; NULL on
 * out of memory):
 *   {"params":[{"name":"temp_high","type":"number","default":35,"min":-40,"max":125,
 *     "step":0.5,"unit":"°C","description":"...","below":null,"above":"temp_clear",
 *     "orphaned":false,"nodes":{"node1":{"value":36,"overridden":true,
 *     "origin":"mqtt:ha","changed":"2026-12-03T13:40:00Z"}, ...}}, ...]}
 * A global param has "node": null and "value"/"overridden"/"origin"/"changed" at its top
 * level instead of "nodes"; an enum has "values":[...] and text values.
 */
char *params_json(const struct params *p);

/*
 * MQTT topics of a param (docs/tuning.md): "<prefix>/gateway/param/<name>[/<node>]" for the
 * retained state, with "/set" appended for the command (set = true). Returns 0 or -ENOSPC.
 * params_parse_topic() is the inverse for a command topic: name and node (node "" for a
 * global command) into buffers of PARAM_NAME_MAX; returns 0 or -EINVAL (not a command topic).
 */
int params_topic(char *out, size_t n, const char *prefix, const char *name, const char *node,
                 bool set);
int params_parse_topic(const char *prefix, const char *topic, char *name, char *node);

#endif
