/*
 * config.c — option table, Lua config file loader, key=value setter. See config.h.
 *
 * Why Lua for the config file: the rules are Lua already, so users know the syntax, and it
 * spares us a hand-written parser. The file runs in a fresh state with no libraries opened
 * and a small instruction budget, then its globals are read back through the option table.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "clock.h"
#include "influx.h"
#include "log.h"
#include "mqtt.h"
#include "spool.h"
#include "statedir.h"
#include "util.h"

#ifndef IIOTGW_DATADIR
#define IIOTGW_DATADIR "/usr/share/iiotgw"
#endif

/* The installed stock rule, never a path relative to the working directory. */
const char config_default_rules[] = IIOTGW_DATADIR "/rules/default.lua";

/* Default size cap of the dead-letter file (then it rotates, deadletter.h). */
#define DEADLETTER_DEFAULT_MAX_BYTES 8388608

/* ------------------------------------------------------------------------------------------
 * The option table
 * ---------------------------------------------------------------------------------------- */

enum opt_type { OPT_STR, OPT_INT, OPT_NUM, OPT_BOOL };

struct opt {
    const char *key; /* config-file key, dotted for sub-tables */
    enum opt_type type;
    size_t off;
    const char *def;  /* default as text (NULL = unset) */
    int64_t min, max; /* integer range (OPT_INT) */
    bool secret;
};

#define O(k, t, f, d, lo, hi)                                                                      \
    {                                                                                              \
        k, t, offsetof(struct config, f), d, lo, hi, false                                         \
    }

/* A sink's or the spool's *_DEFAULT_* macro as the option's default text: defaults are stated
 * once, in the module that applies them. */
#define DEF_STR(x) #x
#define DEF(x)     DEF_STR(x)

static const struct opt opts[] = {
    O("rules", OPT_STR, rules, config_default_rules, 0, 0),
    O("prefix", OPT_STR, prefix, "iiot", 0, 0),
    O("log_level", OPT_STR, log_level, "info", 0, 0),
    O("max_line", OPT_INT, max_line, "4096", 64, 16 * 1024 * 1024),
    O("stats_interval", OPT_NUM, stats_interval, "30", 0, 0),
    O("tick_interval", OPT_NUM, tick_interval, "1", 0, 0),
    O("reload_debounce", OPT_NUM, reload_debounce, "0.2", 0, 0),
    O("rule_mem_limit", OPT_INT, rule_mem_limit, "33554432", 1 << 20, INT64_C(1) << 40),
    O("rule_instr_limit", OPT_INT, rule_instr_limit, "10000000", 1000, INT64_C(1) << 50),
    O("rule_time_limit", OPT_NUM, rule_time_limit, "1", 0, 0),
    O("lua_path", OPT_STR, lua_path, NULL, 0, 0),
    O("state_dir", OPT_STR, state_dir, NULL, 0, 0),
    O("deadletter_file", OPT_STR, deadletter_file, NULL, 0, 0),
    O("deadletter_max_bytes", OPT_INT, deadletter_max_bytes, DEF(DEADLETTER_DEFAULT_MAX_BYTES),
      65536, INT64_C(1) << 40),
    O("deadletter_topic", OPT_BOOL, deadletter_topic, "true", 0, 0),
    O("drain_timeout", OPT_NUM, drain_timeout, "30", 0, 0),
    O("shutdown_timeout", OPT_NUM, shutdown_timeout, "5", 0, 0),
    O("gateway_id", OPT_STR, gateway_id, NULL, 0, 0),
    O("metrics", OPT_STR, metrics, "none", 0, 0),
    O("mqtt.url", OPT_STR, mqtt_url, "mqtt://localhost:1883", 0, 0),
    O("mqtt.client_id", OPT_STR, mqtt_client_id, NULL, 0, 0),
    O("mqtt.protocol", OPT_INT, mqtt_protocol, "3", 3, 5),
    O("mqtt.keepalive", OPT_INT, mqtt_keepalive, DEF(MQTT_DEFAULT_KEEPALIVE), 5, 65535),
    O("mqtt.cafile", OPT_STR, mqtt_cafile, NULL, 0, 0),
    O("mqtt.capath", OPT_STR, mqtt_capath, NULL, 0, 0),
    O("mqtt.certfile", OPT_STR, mqtt_certfile, NULL, 0, 0),
    O("mqtt.keyfile", OPT_STR, mqtt_keyfile, NULL, 0, 0),
    O("mqtt.tls_insecure", OPT_BOOL, mqtt_tls_insecure, "false", 0, 0),
    O("mqtt.password_file", OPT_STR, mqtt_password_file, NULL, 0, 0),
    O("mqtt.clean_session", OPT_BOOL, mqtt_clean_session, "true", 0, 0),
    O("mqtt.session_expiry", OPT_INT, mqtt_session_expiry, "0", 0, UINT32_MAX),
    O("mqtt.queue_max_msgs", OPT_INT, mqtt_queue_max_msgs, DEF(MQTT_DEFAULT_QUEUE_MAX_MSGS), 1,
      INT64_C(1) << 40),
    O("mqtt.queue_max_bytes", OPT_INT, mqtt_queue_max_bytes, DEF(MQTT_DEFAULT_QUEUE_MAX_BYTES),
      1024, INT64_C(1) << 40),
    O("mqtt.max_inflight", OPT_INT, mqtt_max_inflight, DEF(MQTT_DEFAULT_MAX_INFLIGHT), 1, 65535),
    O("mqtt.backoff_base", OPT_NUM, mqtt_backoff_base, DEF(MQTT_DEFAULT_BACKOFF_BASE), 0, 0),
    O("mqtt.backoff_max", OPT_NUM, mqtt_backoff_max, DEF(MQTT_DEFAULT_BACKOFF_MAX), 0, 0),
    O("influx.url", OPT_STR, influx_url, "none", 0, 0),
    O("influx.api", OPT_INT, influx_api, DEF(INFLUX_DEFAULT_API), 1, 2),
    O("influx.org", OPT_STR, influx_org, NULL, 0, 0),
    O("influx.bucket", OPT_STR, influx_bucket, NULL, 0, 0),
    O("influx.db", OPT_STR, influx_db, NULL, 0, 0),
    O("influx.rp", OPT_STR, influx_rp, NULL, 0, 0),
    O("influx.token_file", OPT_STR, influx_token_file, NULL, 0, 0),
    O("influx.batch_lines", OPT_INT, influx_batch_lines, DEF(INFLUX_DEFAULT_BATCH_LINES), 1,
      1000000),
    O("influx.batch_bytes", OPT_INT, influx_batch_bytes, DEF(INFLUX_DEFAULT_BATCH_BYTES), 1024,
      INT64_C(1) << 31),
    O("influx.linger", OPT_NUM, influx_linger, DEF(INFLUX_DEFAULT_LINGER), 0, 0),
    O("influx.gzip", OPT_BOOL, influx_gzip, "false", 0, 0),
    O("influx.timeout", OPT_NUM, influx_timeout, DEF(INFLUX_DEFAULT_TIMEOUT), 0, 0),
    O("influx.backoff_base", OPT_NUM, influx_backoff_base, DEF(INFLUX_DEFAULT_BACKOFF_BASE), 0, 0),
    O("influx.backoff_max", OPT_NUM, influx_backoff_max, DEF(INFLUX_DEFAULT_BACKOFF_MAX), 0, 0),
    O("influx.queue_max_bytes", OPT_INT, influx_queue_max_bytes,
      DEF(INFLUX_DEFAULT_QUEUE_MAX_BYTES), 1024, INT64_C(1) << 40),
    O("spool.dir", OPT_STR, spool_dir, NULL, 0, 0),
    O("spool.fsync", OPT_STR, spool_fsync, "interval", 0, 0),
    O("spool.sync_interval", OPT_NUM, spool_sync_interval, DEF(SPOOL_DEFAULT_SYNC_INTERVAL), 0, 0),
    O("spool.max_bytes", OPT_INT, spool_max_bytes, DEF(SPOOL_DEFAULT_MAX_BYTES), 65536,
      INT64_C(1) << 50),
    O("spool.segment_bytes", OPT_INT, spool_segment_bytes, DEF(SPOOL_DEFAULT_SEGMENT_BYTES), 4096,
      INT64_C(1) << 40),
    O("spool.replay_share", OPT_NUM, spool_replay_share, "0.2", 0, 0),
    O("spool.replay_prefix", OPT_STR, spool_replay_prefix, "none", 0, 0),
    O("ha_discovery", OPT_BOOL, ha_discovery, "false", 0, 0),
    O("ha_discovery_prefix", OPT_STR, ha_discovery_prefix, "homeassistant", 0, 0),
    O("ha_discovery_support_url", OPT_STR, ha_discovery_support_url, NULL, 0, 0),
    O("clock.mode", OPT_STR, clock_mode, "receive", 0, 0),
    O("clock.field", OPT_STR, clock_field, "ts", 0, 0),
    O("clock.unit", OPT_STR, clock_unit, "ms", 0, 0),
    O("clock.start", OPT_STR, clock_start, NULL, 0, 0),
    O("clock.speed", OPT_STR, clock_speed, "max", 0, 0),
    O("replay.retain", OPT_BOOL, replay_retain, "false", 0, 0),
    O("replay.prefix", OPT_STR, replay_prefix, "none", 0, 0),
};

static const struct opt *opt_find(const char *key)
{
    for (size_t i = 0; i < ARRAY_LEN(opts); i++)
        if (strcmp(opts[i].key, key) == 0)
            return &opts[i];
    return NULL;
}

static void *opt_ptr(struct config *c, const struct opt *o)
{
    return (char *)c + o->off;
}

/* ------------------------------------------------------------------------------------------
 * Typed setters shared by defaults, -o key=value and the Lua loader
 * ---------------------------------------------------------------------------------------- */

static int set_str(struct config *c, const struct opt *o, const char *v)
{
    char **p = opt_ptr(c, o);
    char *dup = NULL;
    if (v && !(dup = strdup(v)))
        return -ENOMEM;
    free(*p);
    *p = dup;
    return 0;
}

static int set_int(struct config *c, const struct opt *o, int64_t v, char *err, size_t errlen)
{
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", o->key,
                 v, o->min, o->max);
        return -EINVAL;
    }
    *(int64_t *)opt_ptr(c, o) = v;
    return 0;
}

static int set_num(struct config *c, const struct opt *o, double v, char *err, size_t errlen)
{
    if (!isfinite(v) || v < 0) {
        snprintf(err, errlen, "%s: expected a non-negative number", o->key);
        return -EINVAL;
    }
    *(double *)opt_ptr(c, o) = v;
    return 0;
}

static int set_text(struct config *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char *end;
    switch (o->type) {
    case OPT_STR:
        return set_str(c, o, v);
    case OPT_INT: {
        errno = 0;
        long long n = strtoll(v, &end, 0);
        if (errno || end == v || *end) {
            snprintf(err, errlen, "%s: expected an integer, got \"%s\"", o->key, v);
            return -EINVAL;
        }
        return set_int(c, o, n, err, errlen);
    }
    case OPT_NUM: {
        double d = strtod(v, &end);
        if (end == v || *end) {
            snprintf(err, errlen, "%s: expected a number, got \"%s\"", o->key, v);
            return -EINVAL;
        }
        return set_num(c, o, d, err, errlen);
    }
    case OPT_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(bool *)opt_ptr(c, o) = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(bool *)opt_ptr(c, o) = false;
        else {
            snprintf(err, errlen, "%s: expected true or false, got \"%s\"", o->key, v);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

int config_defaults(struct config *c)
{
    char err[128];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        if (!opts[i].def)
            continue;
        int rc = set_text(c, &opts[i], opts[i].def, err, sizeof err);
        if (rc)
            return rc;
    }
    return 0;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(key, "sources") || !strcmp(key, "source"))
        return config_add_source(c, value);
    const struct opt *o = opt_find(key);
    if (!o) {
        snprintf(err, errlen, "unknown option \"%s\" (see iiotgw --help and docs/configuration.md)",
                 key);
        return -EINVAL;
    }
    return set_text(c, o, value, err, errlen);
}

int config_add_source(struct config *c, const char *spec)
{
    char **v = realloc(c->sources, (c->nsources + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    c->sources = v;
    if (!(v[c->nsources] = strdup(spec)))
        return -ENOMEM;
    c->nsources++;
    return 0;
}

void config_clear_sources(struct config *c)
{
    for (size_t i = 0; i < c->nsources; i++)
        free(c->sources[i]);
    free(c->sources);
    c->sources = NULL;
    c->nsources = 0;
}

/* ------------------------------------------------------------------------------------------
 * Lua config file
 * ---------------------------------------------------------------------------------------- */

/* A config file is data: it must finish quickly. Two bounds, checked by a count hook every
 * CFG_HOOK_STEP VM instructions: an instruction budget stops `while true do end`, and a wall
 * clock stops loops whose single instructions are expensive (concatenating megabyte strings,
 * inserting colliding keys), which stay under the budget for hours. The step is small so that
 * even the most expensive instructions are interrupted within a fraction of the limit. */
#define CFG_INSTR_LIMIT 10000000
#define CFG_HOOK_STEP   100
#define CFG_TIME_LIMIT  2.0 /* seconds */

/* ...and a memory cap stops `s = s .. s` repeated a few dozen times, which the instruction
 * budget cannot see (each concatenation is one instruction) and which would otherwise take
 * the machine's memory. Lua reports the refusal as a "not enough memory" error. */
#define CFG_MEM_LIMIT (64u << 20)

/* The allocator's and the hook's state (the hook finds it through lua_getallocf). */
struct cfg_mem {
    size_t used;
    int64_t instr;    /* instructions run so far, in CFG_HOOK_STEP steps */
    double deadline;  /* util_mono() after which evaluation stops */
    const char *path; /* the file, for the message (Lua's short_src may be cut) */
};

static void cfg_hook(lua_State *L, lua_Debug *ar)
{
    void *ud;
    lua_getallocf(L, &ud);
    struct cfg_mem *m = ud;
    m->instr += CFG_HOOK_STEP;
    bool slow = util_mono() > m->deadline;
    if (!slow && m->instr < CFG_INSTR_LIMIT)
        return;
    lua_getinfo(L, "l", ar);
    if (slow)
        lua_pushfstring(L, "%s:%d: took longer than %d s to evaluate (infinite loop?)", m->path,
                        ar->currentline, (int)CFG_TIME_LIMIT);
    else
        lua_pushfstring(L,
                        "%s:%d: config file takes too long to evaluate (more than %d VM "
                        "instructions: infinite loop?)",
                        m->path, ar->currentline, CFG_INSTR_LIMIT);
    lua_error(L);
}

static void *cfg_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct cfg_mem *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > CFG_MEM_LIMIT - m->used)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        m->used = m->used - old + nsize;
    return p;
}

/* The message of a failed load or run (status st, error object on the stack top). Lua's own
 * messages carry "file:line:"; a memory refusal says only "not enough memory". */
static void lua_error_text(lua_State *L, int st, const char *path, char *err, size_t errlen)
{
    if (st == LUA_ERRMEM)
        snprintf(err, errlen, "%s: config file needs more than %u MiB of memory", path,
                 CFG_MEM_LIMIT >> 20);
    else
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
}

/* Apply the Lua value at the top of the stack to option `key`. */
static int apply_value(struct config *c, lua_State *L, const char *path, const char *key, char *err,
                       size_t errlen)
{
    const struct opt *o = opt_find(key);
    if (!o) {
        snprintf(err, errlen, "%s: unknown key \"%s\"", path, key);
        return -EINVAL;
    }
    int t = lua_type(L, -1);
    char sub[256];
    int rc = 0;
    switch (o->type) {
    case OPT_STR:
        if (t != LUA_TSTRING) {
            snprintf(err, errlen, "%s: %s: expected a string, got %s", path, key,
                     lua_typename(L, t));
            return -EINVAL;
        }
        return set_str(c, o, lua_tostring(L, -1));
    case OPT_INT:
        if (!lua_isinteger(L, -1)) {
            snprintf(err, errlen, "%s: %s: expected an integer, got %s", path, key,
                     lua_typename(L, t));
            return -EINVAL;
        }
        rc = set_int(c, o, lua_tointeger(L, -1), sub, sizeof sub);
        break;
    case OPT_NUM:
        if (t != LUA_TNUMBER) {
            snprintf(err, errlen, "%s: %s: expected a number, got %s", path, key,
                     lua_typename(L, t));
            return -EINVAL;
        }
        rc = set_num(c, o, lua_tonumber(L, -1), sub, sizeof sub);
        break;
    case OPT_BOOL:
        if (t != LUA_TBOOLEAN) {
            snprintf(err, errlen, "%s: %s: expected true or false, got %s", path, key,
                     lua_typename(L, t));
            return -EINVAL;
        }
        *(bool *)opt_ptr(c, o) = lua_toboolean(L, -1);
        return 0;
    }
    if (rc)
        snprintf(err, errlen, "%s: %s", path, sub);
    return rc;
}

static int load_sources(struct config *c, lua_State *L, const char *path, char *err, size_t errlen)
{
    if (lua_type(L, -1) == LUA_TSTRING) {
        config_clear_sources(c);
        return config_add_source(c, lua_tostring(L, -1));
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: sources: expected a list of source specs", path);
        return -EINVAL;
    }
    config_clear_sources(c);
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            snprintf(err, errlen, "%s: sources[%lld]: expected a string like \"exec:CMD\"", path,
                     (long long)i);
            lua_pop(L, 1);
            return -EINVAL;
        }
        int rc = config_add_source(c, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (rc)
            return rc;
    }
    return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    struct cfg_mem mem = {0};
    lua_State *L = lua_newstate(cfg_alloc, &mem);
    if (!L)
        return -ENOMEM;

    FILE *f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    fclose(f);

    /* Text only, no libraries, a private environment table that collects the globals. */
    int st = luaL_loadfilex(L, path, "t");
    if (st != LUA_OK) {
        lua_error_text(L, st, path, err, errlen);
        rc = -EINVAL;
        goto out;
    }
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, -3, 1); /* _ENV of the main chunk */
    lua_insert(L, -2);        /* env table below the chunk */
    mem.deadline = util_mono() + CFG_TIME_LIMIT;
    mem.path = path;
    lua_sethook(L, cfg_hook, LUA_MASKCOUNT, CFG_HOOK_STEP);
    if ((st = lua_pcall(L, 0, 0, 0)) != LUA_OK) {
        lua_error_text(L, st, path, err, errlen);
        rc = -EINVAL;
        goto out;
    }
    lua_sethook(L, NULL, 0, 0);

    /* Walk the collected globals: scalars are top-level keys, tables are sections. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(err, errlen, "%s: non-string global key", path);
            rc = -EINVAL;
            goto out;
        }
        const char *k = lua_tostring(L, -2);
        if (!strcmp(k, "sources")) {
            rc = load_sources(c, L, path, err, errlen);
        } else if (lua_istable(L, -1) &&
                   (!strcmp(k, "mqtt") || !strcmp(k, "influx") || !strcmp(k, "spool") ||
                    !strcmp(k, "clock") || !strcmp(k, "replay"))) {
            lua_pushnil(L);
            while (rc == 0 && lua_next(L, -2)) {
                char full[128];
                if (lua_type(L, -2) != LUA_TSTRING) {
                    snprintf(err, errlen, "%s: %s: non-string key", path, k);
                    rc = -EINVAL;
                } else {
                    snprintf(full, sizeof full, "%s.%s", k, lua_tostring(L, -2));
                    rc = apply_value(c, L, path, full, err, errlen);
                }
                lua_pop(L, 1);
            }
            if (rc)
                lua_pop(L, 1); /* the key lua_next left behind */
        } else if (lua_type(L, -1) == LUA_TFUNCTION) {
            rc = 0; /* helper functions in the config file are fine */
        } else {
            rc = apply_value(c, L, path, k, err, errlen);
        }
        lua_pop(L, 1);
        if (rc)
            goto out;
    }
out:
    lua_close(L);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Validation and secrets
 * ---------------------------------------------------------------------------------------- */

/* Read a one-line secret file; trailing newline/blanks removed. */
static int read_secret(const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char line[4096];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                 line[n - 1] == '\t'))
        line[--n] = '\0';
    if (!n) {
        snprintf(err, errlen, "%s: secret file is empty", path);
        return -EINVAL;
    }
    free(*out);
    *out = strdup(line);
    memset(line, 0, sizeof line);
    return *out ? 0 : -ENOMEM;
}

/* The secret environment variables, read above. */
static const char *const secret_env[] = {"IIOTGW_INFLUX_TOKEN", "IIOTGW_MQTT_PASSWORD"};

void config_scrub_env(void)
{
    for (size_t i = 0; i < ARRAY_LEN(secret_env); i++) {
        char *v = getenv(secret_env[i]);
        if (v)
            memset(v, 0, strlen(v)); /* the copy in the environment block, too */
        unsetenv(secret_env[i]);
    }
}

int config_speed(const char *s, double *out)
{
    if (!s || !strcmp(s, "max")) {
        *out = 0;
        return 0;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v <= 0 || v > 1e6)
        return -EINVAL;
    *out = v;
    return 0;
}

/* The replay clock's options (clock.*, replay.*). */
static int config_check_clock(const struct config *c, char *err, size_t errlen)
{
    int mode = clock_mode_parse(c->clock_mode);
    int64_t t;
    double speed;
    if (mode < 0) {
        snprintf(err, errlen, "clock.mode: \"%s\" is not one of receive, packet, log",
                 c->clock_mode);
        return -EINVAL;
    }
    if (!c->clock_field || !*c->clock_field || c->clock_field[0] == '.' ||
        c->clock_field[strlen(c->clock_field) - 1] == '.' || strstr(c->clock_field, "..")) {
        snprintf(err, errlen,
                 "clock.field: \"%s\" must be a key or dotted keys (\"ts\", "
                 "\"hdr.uptime\")",
                 c->clock_field ? c->clock_field : "");
        return -EINVAL;
    }
    if (clock_unit_parse(c->clock_unit) < 0) {
        snprintf(err, errlen, "clock.unit: \"%s\" is not one of ns, us, ms, s", c->clock_unit);
        return -EINVAL;
    }
    if (!config_is_none(c->clock_start) && clock_parse_time(c->clock_start, &t)) {
        snprintf(err, errlen,
                 "clock.start: \"%s\" is not an ISO-8601 UTC time like 2026-01-01T00:00:00Z",
                 c->clock_start);
        return -EINVAL;
    }
    if (config_speed(c->clock_speed, &speed)) {
        snprintf(err, errlen, "clock.speed: \"%s\" must be max or a number > 0", c->clock_speed);
        return -EINVAL;
    }
    if (mode == CLOCK_MODE_RECEIVE && speed > 0) {
        snprintf(err, errlen,
                 "clock.speed: pacing needs the capture's clock (--clock packet "
                 "or --clock log)");
        return -EINVAL;
    }
    if (!config_is_none(c->replay_prefix) &&
        (strpbrk(c->replay_prefix, "+#") || c->replay_prefix[0] == '/')) {
        snprintf(err, errlen, "replay.prefix: \"%s\" must be a topic without wildcards",
                 c->replay_prefix);
        return -EINVAL;
    }
    return 0;
}

bool config_is_none(const char *s)
{
    return !s || !*s || !strcmp(s, "none");
}

/* `*p` = "<dir>/<name>" unless it is set already. */
static int default_in(char **p, const char *dir, const char *name)
{
    if (*p)
        return 0;
    char path[4096];
    if (statedir_file(dir, name, path, sizeof path))
        return -ENAMETOOLONG;
    return (*p = strdup(path)) ? 0 : -ENOMEM;
}

/* The state directory and the paths that default into it; the default rule file. */
static int finish_paths(struct config *c, char *err, size_t errlen)
{
    struct statedir_env env;
    char dir[4096];
    statedir_env_get(&env);
    int rc = statedir_resolve(c->state_dir, &env, dir, sizeof dir, err, errlen);
    if (rc)
        return rc == -ENAMETOOLONG ? -EINVAL : rc;
    char *d = strdup(dir);
    if (!d)
        return -ENOMEM;
    free(c->state_dir);
    c->state_dir = d;
    if ((rc = default_in(&c->spool_dir, dir, "spool")) ||
        (rc = default_in(&c->deadletter_file, dir, "deadletter.jsonl"))) {
        if (rc == -ENAMETOOLONG) {
            snprintf(err, errlen, "state_dir: \"%s\" is too long", dir);
            return -EINVAL;
        }
        return rc;
    }
    /* Only the built-in default gets this message: a configured path that is missing is the
     * rule engine's ordinary "cannot open" error. */
    if (!strcmp(c->rules, config_default_rules) && access(c->rules, R_OK) < 0) {
        snprintf(err, errlen,
                 "rules: the default rule file %s: %s (is iiotgw installed? give the rule "
                 "script with -r FILE)",
                 c->rules, strerror(errno));
        return -EINVAL;
    }
    return 0;
}

const char *config_state_dir(const struct config *c)
{
    return c->state_dir;
}

int config_finish(struct config *c, char *err, size_t errlen)
{
    int rc;
    if (log_level_parse(c->log_level) < 0) {
        snprintf(err, errlen, "log_level: \"%s\" is not one of error, warn, info, debug",
                 c->log_level);
        return -EINVAL;
    }
    if (!c->prefix[0] || strpbrk(c->prefix, "+#")) {
        snprintf(err, errlen, "prefix: \"%s\" must be a non-empty topic without wildcards",
                 c->prefix);
        return -EINVAL;
    }
    if (c->mqtt_backoff_base < 0.01 || c->mqtt_backoff_max < c->mqtt_backoff_base ||
        c->influx_backoff_base < 0.01 || c->influx_backoff_max < c->influx_backoff_base) {
        snprintf(err, errlen, "backoff: *.backoff_base must be >= 0.01 s and <= *.backoff_max");
        return -EINVAL;
    }
    if (!(c->rule_time_limit >= 0.001 && c->rule_time_limit <= 3600)) {
        snprintf(err, errlen, "rule_time_limit: %g s is not in [0.001, 3600]", c->rule_time_limit);
        return -EINVAL;
    }
    if (c->tick_interval < 0.01) {
        snprintf(err, errlen, "tick_interval: must be at least 0.01 s");
        return -EINVAL;
    }
    if (spool_fsync_parse(c->spool_fsync) < 0) {
        snprintf(err, errlen, "spool.fsync: \"%s\" is not one of always, interval, none",
                 c->spool_fsync);
        return -EINVAL;
    }
    if (c->spool_replay_share > 1) {
        snprintf(err, errlen, "spool.replay_share: %g is not in [0, 1]", c->spool_replay_share);
        return -EINVAL;
    }
    if (c->spool_sync_interval < 0.001 || c->spool_sync_interval > 60) {
        snprintf(err, errlen, "spool.sync_interval: must be between 0.001 and 60 s");
        return -EINVAL;
    }
    if (!config_is_none(c->spool_replay_prefix) && strpbrk(c->spool_replay_prefix, "+#")) {
        snprintf(err, errlen, "spool.replay_prefix: \"%s\" must be a topic without wildcards",
                 c->spool_replay_prefix);
        return -EINVAL;
    }
    if (!c->ha_discovery_prefix[0] || strpbrk(c->ha_discovery_prefix, "+#")) {
        snprintf(err, errlen,
                 "ha_discovery_prefix: \"%s\" must be a non-empty topic without wildcards",
                 c->ha_discovery_prefix);
        return -EINVAL;
    }
    if (c->ha_discovery_support_url && strncmp(c->ha_discovery_support_url, "http://", 7) &&
        strncmp(c->ha_discovery_support_url, "https://", 8)) {
        snprintf(err, errlen, "ha_discovery_support_url: \"%s\" must be an http(s):// URL",
                 c->ha_discovery_support_url);
        return -EINVAL;
    }
    if ((rc = finish_paths(c, err, errlen)))
        return rc;
    if ((rc = config_check_clock(c, err, errlen)))
        return rc;
    if (!c->gateway_id) {
        char host[256] = "iiotgw";
        if (gethostname(host, sizeof host) != 0)
            strcpy(host, "iiotgw");
        host[sizeof host - 1] = '\0';
        if (!(c->gateway_id = strdup(host)))
            return -ENOMEM;
    }
    if (!c->mqtt_client_id) {
        size_t n = strlen(c->gateway_id) + 8;
        if (!(c->mqtt_client_id = malloc(n)))
            return -ENOMEM;
        snprintf(c->mqtt_client_id, n, "iiotgw-%s", c->gateway_id);
    }

    if (!config_is_none(c->influx_url)) {
        if (strncmp(c->influx_url, "http://", 7) && strncmp(c->influx_url, "https://", 8)) {
            char shown[512];
            snprintf(err, errlen, "influx.url: \"%s\" must start with http:// or https://",
                     util_redact_url(c->influx_url, shown, sizeof shown));
            return -EINVAL;
        }
        if (c->influx_db && c->influx_api == 2 && !c->influx_bucket)
            c->influx_api = 1;
        if (c->influx_api == 1 && !c->influx_db) {
            snprintf(err, errlen, "influx: the v1 API needs influx.db (--influx-db)");
            return -EINVAL;
        }
        if (c->influx_api == 2 && (!c->influx_bucket || !c->influx_org)) {
            snprintf(err, errlen,
                     "influx: the v2 API needs influx.org and influx.bucket (--influx-org, "
                     "--influx-bucket), or use --influx-db for the v1 API");
            return -EINVAL;
        }
        if (c->influx_token_file) {
            if ((rc = read_secret(c->influx_token_file, &c->influx_token, err, errlen)))
                return rc;
        } else if (getenv("IIOTGW_INFLUX_TOKEN") && *getenv("IIOTGW_INFLUX_TOKEN")) {
            if (!(c->influx_token = strdup(getenv("IIOTGW_INFLUX_TOKEN"))))
                return -ENOMEM;
        }
    }
    if (!config_is_none(c->mqtt_url)) {
        if (c->mqtt_password_file) {
            if ((rc = read_secret(c->mqtt_password_file, &c->mqtt_password, err, errlen)))
                return rc;
        } else if (getenv("IIOTGW_MQTT_PASSWORD") && *getenv("IIOTGW_MQTT_PASSWORD")) {
            if (!(c->mqtt_password = strdup(getenv("IIOTGW_MQTT_PASSWORD"))))
                return -ENOMEM;
        }
    }
    config_scrub_env();
    return 0;
}

void config_free(struct config *c)
{
    config_clear_sources(c);
    for (size_t i = 0; i < ARRAY_LEN(opts); i++)
        if (opts[i].type == OPT_STR) {
            char **p = opt_ptr(c, &opts[i]);
            free(*p);
            *p = NULL;
        }
    if (c->influx_token)
        memset(c->influx_token, 0, strlen(c->influx_token));
    free(c->influx_token);
    if (c->mqtt_password)
        memset(c->mqtt_password, 0, strlen(c->mqtt_password));
    free(c->mqtt_password);
    c->influx_token = c->mqtt_password = NULL;
}
