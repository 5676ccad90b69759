/*
 * rules_api.c — the `gw` table a rule talks to the gateway through: gw.publish, gw.point,
 * gw.series (pre-encoded series), gw.mapper (declarative metric mapping), gw.log, gw.now,
 * gw.now_ns, gw.iso8601, gw.json, gw.int (explicit integer fields), gw.prefix and gw.null (gw.state
 * is added by rules.c, which hands it over across reloads). See docs/rules.md for the rule author's
 * view.
 *
 * Every output goes to the engine's struct rule_sink, counted in its stats; sink failures are
 * logged and reported to the rule as `false`, never raised. Argument errors raise Lua errors
 * naming the function, which fail the call (the packet is dead-lettered). Numbers are
 * formatted by jsonlua_number(), so a value reads the same in an MQTT payload, a tag and a
 * JSON document; line protocol by lineproto.c.
 */
#include "rules_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "clock.h"
#include "jsonlua.h"
#include "lineproto.h"
#include "log.h"
#include "topic.h"
#include "util.h"

#define MAX_TAGS   32
#define MAX_FIELDS 64

/* ------------------------------------------------------------------------------------ */
/* Logging (gw.log, and print from the sandbox)                                         */
/* ------------------------------------------------------------------------------------ */

/* "file:line" of the Lua code calling the current C function (level 1), or "". */
static void rules_api_caller_where(lua_State *L, char *out, size_t n)
{
    lua_Debug ar;
    out[0] = '\0';
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
}

static void rules_api_emit_log(struct rule_state *st, int level, const char *where, const char *msg)
{
    struct rules *r = st->r;
    if (r->sink.log) {
        r->sink.log(r->sink.ud, level, where, msg);
        return;
    }
    if (!log_enabled(level))
        return;
    char qw[256], qm[1024];
    log_emit(level, "rule_log", "where=%s msg=%s", log_quote(qw, sizeof qw, where, (size_t)-1),
             log_quote(qm, sizeof qm, msg, (size_t)-1));
}

void rules_api_log_caller(lua_State *L, int level, const char *msg)
{
    char where[LUA_IDSIZE + 16];
    rules_api_caller_where(L, where, sizeof where);
    rules_api_emit_log(rules_state_of(L), level, where, msg);
}

/* ------------------------------------------------------------------------------------ */
/* Value formatting shared by gw.publish, gw.point and gw.json                          */
/* ------------------------------------------------------------------------------------ */

/* Integer text, "%lld". out >= 24 bytes. */
static size_t rules_api_fmt_int(char *out, lua_Integer v)
{
    return (size_t)lp_format_int(out, (int64_t)v);
}

/* Encode the value at idx and push the JSON text. Raises "<what>: <why>" on failure. */
static void rules_api_push_json(lua_State *L, int idx, const char *what)
{
    char why[128];
    if (jsonlua_encode(L, idx, why, sizeof why))
        luaL_error(L, "%s: %s", what, why);
}

/* ------------------------------------------------------------------------------------ */
/* The gw API                                                                           */
/* ------------------------------------------------------------------------------------ */

static const char *rules_api_check_str(lua_State *L, int idx, size_t *len, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s must be a string, got %s", what, luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

/*
 * A value the outputs cannot carry (a NaN or infinite number, e.g. a device's 1e999): refused
 * per metric, never by failing the call, so the packet's other metrics still go out. Counted,
 * logged with the rule's file:line, and reported to the sink (the daemon dead-letters the
 * packet with the reason). `what` names the metric ("n1.t", "field value").
 */
static void rules_api_refuse(lua_State *L, struct rules *r, const char *fn, const char *what,
                             const char *why)
{
    char where[LUA_IDSIZE + 16], qw[256], qm[256];
    rules_api_caller_where(L, where, sizeof where);
    r->stats.values_refused++;
    char msg[512];
    snprintf(msg, sizeof msg, "%s%s%s: %s: %s", where, *where ? ": " : "", fn, what, why);
    log_warn("rule_value_refused", "where=%s what=%s why=\"%s\"",
             log_quote(qw, sizeof qw, where, (size_t)-1),
             log_quote(qm, sizeof qm, what, (size_t)-1), why);
    if (r->sink.refused)
        r->sink.refused(r->sink.ud, msg);
}

/*
 * Hand one publish to the sink (counted, failures logged). Shared by gw.publish and mappers.
 * Returns the sink's code (0 = accepted).
 */
static int rules_api_emit_publish(struct rules *r, const char *topic, size_t tlen,
                                  const char *payload, size_t plen, int qos, bool retain)
{
    if (!r->sink.publish)
        return 0;
    int rc = r->sink.publish(r->sink.ud, topic, payload, plen, qos, retain);
    r->stats.publishes++;
    if (rc < 0) {
        char qt[256];
        log_warn("rule_publish_failed", "topic=%s rc=%d", log_quote(qt, sizeof qt, topic, tlen),
                 rc);
    }
    return rc;
}

/*
 * Hand r->lp (one encoded line) to the sink. `what` names the point in the failure log;
 * wlen == SIZE_MAX means "up to the first ','" (a pre-encoded series), worked out only then.
 */
static int rules_api_emit_point(struct rules *r, const char *what, size_t wlen)
{
    if (!r->sink.write)
        return 0;
    int rc = r->sink.write(r->sink.ud, r->lp.p, r->lp.len);
    r->stats.points++;
    if (rc < 0) {
        char qw[256];
        if (wlen == SIZE_MAX)
            wlen = strcspn(what, ",");
        log_warn("rule_point_failed", "measurement=%s rc=%d", log_quote(qw, sizeof qw, what, wlen),
                 rc);
    }
    return rc;
}

/* qos argument at idx: nil/none -> 1, else 0..2. */
static int rules_api_check_qos(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return 1;
    int isnum;
    lua_Integer qos = lua_tointegerx(L, idx, &isnum);
    if (!isnum || qos < 0 || qos > 2)
        return luaL_error(L, "%s: qos must be 0, 1 or 2", what);
    return (int)qos;
}

/* gw.publish(topic, payload [, qos=1 [, retain=false]]) -> true | false (sink refused) */
static int rules_api_publish(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    size_t tlen, plen = 0;
    const char *topic = rules_api_check_str(L, 1, &tlen, "gw.publish: topic");
    char why[96];
    const char *bad = topic_problem(topic, tlen, why, sizeof why);
    if (bad)
        return luaL_error(L, "gw.publish: topic %s", bad);
    int qos = rules_api_check_qos(L, 3, "gw.publish");
    bool retain = false;
    if (!lua_isnoneornil(L, 4)) {
        if (lua_type(L, 4) != LUA_TBOOLEAN)
            return luaL_error(L, "gw.publish: retain must be a boolean");
        retain = lua_toboolean(L, 4);
    }
    char num[JSONLUA_NUM_MAX];
    const char *payload;
    switch (lua_type(L, 2)) {
    case LUA_TSTRING:
        payload = lua_tolstring(L, 2, &plen);
        break;
    case LUA_TNUMBER:
        plen = jsonlua_number(L, 2, num);
        if (!plen) {
            rules_api_refuse(L, st->r, "gw.publish", topic, "non-finite number (nan/inf)");
            lua_pushboolean(L, 0);
            return 1;
        }
        payload = num;
        break;
    case LUA_TBOOLEAN:
        payload = lua_toboolean(L, 2) ? "true" : "false";
        plen = strlen(payload);
        break;
    case LUA_TTABLE:
    case LUA_TLIGHTUSERDATA:
        rules_api_push_json(L, 2, "gw.publish");
        payload = lua_tolstring(L, -1, &plen);
        break;
    default:
        return luaL_error(L,
                          "gw.publish: payload must be a string, number, boolean or table, "
                          "got %s",
                          luaL_typename(L, 2));
    }
    int rc = rules_api_emit_publish(st->r, topic, tlen, payload, plen, qos, retain);
    lua_pushboolean(L, rc == 0);
    return 1;
}

/*
 * gw.int(x): an explicit integer field. Numbers written by gw.point are floats (a sensor
 * printing 20 then 20.5 must not change the field's type, which InfluxDB refuses); a rule
 * that wants an integer field (a counter) wraps the value. The wrapper is a small userdata
 * holding the int64; anywhere but a gw.point field it is an error.
 */
#define INT_MT "iiotgw.int"

struct lp_int {
    lua_Integer v;
};

/* gw.int(x) -> integer field marker; x must be a number with an exact integer value. */
static int rules_api_int(lua_State *L)
{
    int isint;
    lua_Integer v = lua_tointegerx(L, 1, &isint);
    if (!isint || lua_type(L, 1) != LUA_TNUMBER)
        return luaL_error(L, "gw.int: expects a number with an integer value, got %s",
                          lua_type(L, 1) == LUA_TNUMBER ? "a fraction or out-of-range number"
                                                        : luaL_typename(L, 1));
    struct lp_int *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->v = v;
    luaL_setmetatable(L, INT_MT);
    return 1;
}

static int rules_api_int_tostring(lua_State *L)
{
    const struct lp_int *p = luaL_checkudata(L, 1, INT_MT);
    lua_pushfstring(L, "gw.int(%I)", (LUA_INTEGER)p->v);
    return 1;
}

/*
 * A name (measurement, tag key/value, field key) of `fn` that line protocol cannot carry
 * (lineproto.h: lp_name_problem) raises "<fn>: <what> <quoted name> <why>".
 */
static void rules_api_check_name(lua_State *L, const char *fn, const char *what, const char *s,
                                 size_t len, enum lp_name kind)
{
    const char *why = lp_name_problem(s, len, kind);
    if (why) {
        char q[96];
        luaL_error(L, "%s: %s %s %s", fn, what, log_quote(q, sizeof q, s, len), why);
    }
}

/* A tag or field key: a string line protocol can carry (checked by rules_api_check_name). */
static const char *rules_api_check_key(lua_State *L, int idx, const char *fn, const char *what,
                                       enum lp_name kind)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: %ss must be strings, got %s", fn, what, luaL_typename(L, idx));
    const char *k = lua_tolstring(L, idx, &len);
    rules_api_check_name(L, fn, what, k, len, kind);
    return k;
}

/* Measurement name at idx: a string line protocol can carry. */
static const char *rules_api_check_measurement(lua_State *L, int idx, const char *fn)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: measurement must be a string, got %s", fn, luaL_typename(L, idx));
    const char *meas = lua_tolstring(L, idx, &len);
    rules_api_check_name(L, fn, "measurement", meas, len, LP_MEASUREMENT);
    return meas;
}

/*
 * Tags table at idx (or nil) into tags[] (at most MAX_TAGS); number values are formatted
 * into tagnum[]. The strings stay valid while the table is on the stack and unmodified.
 * A non-finite number sets *nonfinite to its tag key (the caller refuses the point).
 */
static size_t rules_api_collect_tags(lua_State *L, int idx, const char *fn, struct lp_tag *tags,
                                     char (*tagnum)[JSONLUA_NUM_MAX], const char **nonfinite)
{
    size_t nt = 0;
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (nt == MAX_TAGS)
                luaL_error(L, "%s: more than %d tags", fn, MAX_TAGS);
            tags[nt].key = rules_api_check_key(L, -2, fn, "tag key", LP_KEY);
            switch (lua_type(L, -1)) {
            case LUA_TSTRING:
                tags[nt].value = rules_api_check_key(L, -1, fn, "tag value", LP_TAG_VALUE);
                break;
            case LUA_TNUMBER:
                if (!jsonlua_number(L, -1, tagnum[nt])) {
                    if (nonfinite && !*nonfinite)
                        *nonfinite = tags[nt].key;
                    tagnum[nt][0] = '0';
                    tagnum[nt][1] = '\0';
                }
                tags[nt].value = tagnum[nt];
                break;
            default:
                luaL_error(L, "%s: tag %s must be a string or number, got %s", fn, tags[nt].key,
                           luaL_typename(L, -1));
            }
            nt++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_error(L, "%s: tags must be a table or nil", fn);
    }
    return nt;
}

/*
 * Fields at idx: a number (float field "value") or a table. Returns the count. Numbers are
 * float fields, gw.int(x) values integer fields. A NaN/inf sets *nonfinite to the field key.
 */
static size_t rules_api_collect_fields(lua_State *L, int idx, struct lp_field *fields,
                                       const char **nonfinite)
{
    size_t nf = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        /* Shorthand: the gateway's InfluxDB schema, one float field "value" (84190 -> value=84190).
         */
        fields[0].key = "value";
        fields[0].type = LP_FLOAT;
        fields[0].v.f = lua_tonumber(L, idx);
        if (!isfinite(fields[0].v.f))
            *nonfinite = "value";
        return 1;
    case LUA_TTABLE:
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (nf == MAX_FIELDS)
                luaL_error(L, "gw.point: more than %d fields", MAX_FIELDS);
            struct lp_field *f = &fields[nf];
            f->key = rules_api_check_key(L, -2, "gw.point", "field key", LP_KEY);
            const struct lp_int *iv;
            switch (lua_type(L, -1)) {
            case LUA_TNUMBER:
                f->type = LP_FLOAT;
                f->v.f = lua_tonumber(L, -1);
                if (!isfinite(f->v.f) && !*nonfinite)
                    *nonfinite = f->key;
                break;
            case LUA_TBOOLEAN:
                f->type = LP_BOOL;
                f->v.b = lua_toboolean(L, -1);
                break;
            case LUA_TSTRING: {
                f->type = LP_STRING;
                f->v.s.s = lua_tolstring(L, -1, &f->v.s.len);
                const char *why = lp_string_problem(f->v.s.s, f->v.s.len);
                if (why)
                    luaL_error(L, "gw.point: string field %s %s", f->key, why);
                break;
            }
            case LUA_TUSERDATA:
                if ((iv = luaL_testudata(L, -1, INT_MT))) {
                    f->type = LP_INT;
                    f->v.i = (int64_t)iv->v;
                    break;
                }
                /* fall through */
            default:
                luaL_error(L,
                           "gw.point: field %s must be a number, gw.int(), boolean or string, "
                           "got %s",
                           f->key, luaL_typename(L, -1));
            }
            nf++;
            lua_pop(L, 1);
        }
        if (nf == 0)
            luaL_error(L, "gw.point: no fields");
        return nf;
    default:
        luaL_error(L, "gw.point: fields must be a number or a table, got %s",
                   luaL_typename(L, idx));
    }
    return 0;
}

/* Optional ts_ns argument at idx, else the call's default timestamp. */
static int64_t rules_api_check_ts(lua_State *L, int idx, const struct rule_state *st,
                                  const char *what)
{
    if (lua_isnoneornil(L, idx))
        return st->ts_ns;
    int isnum;
    int64_t ts = (int64_t)lua_tointegerx(L, idx, &isnum);
    if (!isnum)
        luaL_error(L, "%s: ts_ns must be an integer (nanoseconds)", what);
    return ts;
}

/* Every name and value was checked above, so -EINVAL here is a case missed there: still an
 * error naming the call, never a line written. */
static int rules_api_point_error(lua_State *L, int rc)
{
    if (rc == -EINVAL)
        return luaL_error(L, "gw.point: line protocol cannot carry this point");
    return luaL_error(L, "gw.point: out of memory");
}

/* ------------------------------------------------------------------------------------ */
/* Pre-encoded series: gw.series                                                        */
/* ------------------------------------------------------------------------------------ */

/*
 * A series is "measurement,tag=v,..." escaped and sorted once (lp_series), kept in a plain
 * userdata block (no __gc: the sandbox allows no finalizers, and the block holds no C
 * resources). gw.point(series, fields [, ts]) then only encodes the fields.
 */
#define SERIES_MT "iiotgw.series"
#define MAPPER_MT "iiotgw.mapper"

/*
 * A line of line protocol is built on the C heap (r->lp), outside the rule's memory cap:
 * refuse, before encoding, a point whose text could exceed RULES_MAX_POINT_BYTES (escaping
 * at most doubles a name or value). `pre` = bytes already encoded (a gw.series), `what`
 * names the function for the error.
 */
static void rules_api_check_point_size(lua_State *L, size_t pre, const char *meas,
                                       const struct lp_tag *tags, size_t nt,
                                       const struct lp_field *fields, size_t nf, const char *what)
{
    size_t total = pre + (meas ? strlen(meas) : 0);
    for (size_t i = 0; i < nt; i++)
        total += strlen(tags[i].key) + strlen(tags[i].value) + 2;
    for (size_t i = 0; i < nf; i++)
        total += strlen(fields[i].key) + 2 + JSONLUA_NUM_MAX +
                 (fields[i].type == LP_STRING ? fields[i].v.s.len : 0);
    if (total > RULES_MAX_POINT_BYTES / 2)
        luaL_error(L, "%s: the point would be larger than %d bytes of line protocol", what,
                   (int)RULES_MAX_POINT_BYTES);
}

struct series {
    size_t len;
    char text[]; /* NUL-terminated */
};

/* gw.series(measurement [, tags]) -> series userdata */
static int rules_api_series(lua_State *L)
{
    struct rules *r = rules_state_of(L)->r;
    struct lp_tag tags[MAX_TAGS];
    char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
    const char *meas = rules_api_check_measurement(L, 1, "gw.series");
    const char *nonfinite = NULL;
    size_t nt = rules_api_collect_tags(L, 2, "gw.series", tags, tagnum, &nonfinite);
    if (nonfinite)
        return luaL_error(L, "gw.series: tag %s is a non-finite number (nan/inf)", nonfinite);
    rules_api_check_point_size(L, 0, meas, tags, nt, NULL, 0, "gw.series");
    buf_clear(&r->lp);
    int rc = lp_series(&r->lp, meas, tags, nt);
    if (rc)
        return rc == -EINVAL ? luaL_error(L, "gw.series: line protocol cannot carry this series")
                             : luaL_error(L, "gw.series: out of memory");
    size_t len = r->lp.len;
    struct series *s = lua_newuserdatauv(L, sizeof *s + len + 1, 0);
    s->len = len;
    memcpy(s->text, r->lp.p, len + 1); /* r->lp is not touched by the allocation above */
    luaL_setmetatable(L, SERIES_MT);
    return 1;
}

static int rules_api_series_tostring(lua_State *L)
{
    struct series *s = luaL_checkudata(L, 1, SERIES_MT);
    lua_pushlstring(L, s->text, s->len);
    return 1;
}

/* A point with a NaN/inf number: refused on its own (see rules_api_refuse), returns false. */
static int rules_api_point_refused(lua_State *L, struct rules *r, const char *what, size_t wlen,
                                   const char *key)
{
    char m[128], q[96];
    snprintf(m, sizeof m, "point %s", log_quote(q, sizeof q, what, wlen));
    char why[160];
    snprintf(why, sizeof why, "%.64s is a non-finite number (nan/inf)", key);
    rules_api_refuse(L, r, "gw.point", m, why);
    lua_pushboolean(L, 0);
    return 1;
}

/*
 * gw.point(measurement, tags, fields [, ts_ns]) -> true | false (sink refused, or a value
 *                                                  was NaN/inf)
 * gw.point(series, fields [, ts_ns])            -> same, with a pre-encoded series
 */
static int rules_api_point(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    struct rules *r = st->r;
    struct lp_field fields[MAX_FIELDS];
    const char *nonfinite = NULL;
    int rc;
    if (lua_type(L, 1) == LUA_TUSERDATA) {
        struct series *s = luaL_testudata(L, 1, SERIES_MT);
        if (!s)
            return luaL_error(L, "gw.point: first argument must be a measurement name or a "
                                 "gw.series");
        size_t nf = rules_api_collect_fields(L, 2, fields, &nonfinite);
        int64_t ts = rules_api_check_ts(L, 3, st, "gw.point");
        rules_api_check_point_size(L, s->len, NULL, NULL, 0, fields, nf, "gw.point");
        if (nonfinite)
            return rules_api_point_refused(L, r, s->text, strcspn(s->text, ","), nonfinite);
        buf_clear(&r->lp);
        rc = lp_encode_series(&r->lp, s->text, s->len, fields, nf, ts);
        if (rc < 0)
            return rules_api_point_error(L, rc);
        rc = rules_api_emit_point(r, s->text, SIZE_MAX);
        lua_pushboolean(L, rc == 0);
        return 1;
    }
    struct lp_tag tags[MAX_TAGS];
    char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
    const char *meas = rules_api_check_measurement(L, 1, "gw.point");
    size_t nt = rules_api_collect_tags(L, 2, "gw.point", tags, tagnum, &nonfinite);
    size_t nf = rules_api_collect_fields(L, 3, fields, &nonfinite);
    int64_t ts = rules_api_check_ts(L, 4, st, "gw.point");
    rules_api_check_point_size(L, 0, meas, tags, nt, fields, nf, "gw.point");
    if (nonfinite)
        return rules_api_point_refused(L, r, meas, strlen(meas), nonfinite);
    buf_clear(&r->lp);
    rc = lp_encode(&r->lp, meas, tags, nt, fields, nf, ts);
    if (rc < 0)
        return rules_api_point_error(L, rc);
    rc = rules_api_emit_point(r, meas, strlen(meas));
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* Declarative mapping: gw.mapper                                                       */
/* ------------------------------------------------------------------------------------ */

/*
 * gw.mapper{ {path=, topic=, qos=, retain=, measurement=, tags=, field=}, ... } compiles a
 * list of "this JSON number goes to that topic and that series" into one userdata; calling
 * it with a packet does in one C call what a hand-written rule does with one gw.publish and
 * one gw.point per metric. Everything that does not depend on the packet is done at build
 * time: topics validated, series escaped and sorted, path keys interned as Lua strings (in
 * the userdata's user value, a sequence of keys), the walk to a parent table shared with the
 * previous entry when their parent paths are equal. Output is byte-for-byte what gw.publish
 * and gw.point(measurement, tags, value) produce for the same values (same formatting code).
 *
 * The whole mapper is one userdata block (entries + string pool), so it is counted by the
 * memory cap and needs no finalizer.
 */
#define MAPPER_MAX_ENTRIES 1024
#define MAPPER_MAX_DEPTH   16

struct map_entry {
    uint32_t key0;    /* index (in the keys sequence) of the first path key */
    uint16_t nkeys;   /* path length, >= 1; the last key is the leaf */
    bool same_parent; /* parent path equals the previous entry's: reuse its walk */
    bool retain;
    int qos;
    const char *path;  /* "n1.t", for error messages (pool) */
    const char *topic; /* NULL: no publish (pool) */
    size_t topic_len;
    const char *line; /* NULL: no point; else "measurement,tags field=" (pool) */
    size_t line_len;
};

struct mapper {
    size_t n;
    struct map_entry e[]; /* followed by the string pool */
};

static const char *const rules_api_map_keys[] = {"path", "topic", "qos", "retain", "measurement",
                                                 "tags", "field", "ha",  NULL};

/* ------------------------------------------------------------------------------------ */
/* The entity catalogue (rules.h): what front-ends may show                             */
/* ------------------------------------------------------------------------------------ */

static void rules_api_raw_field(lua_State *L, int idx, const char *name);

static const char *const rules_api_ha_keys[] = {"name",      "unit", "device_class",
                                                "precision", "node", NULL};

/*
 * Check an `ha` value (mapper entry) or the options of gw.describe_alert at idx: nil, false, or
 * a table of the keys above (strings; precision an integer 0..15). Raises naming `what`.
 */
static void rules_api_check_ha(lua_State *L, int idx, const char *what)
{
    if (lua_isnil(L, idx) || (lua_type(L, idx) == LUA_TBOOLEAN && !lua_toboolean(L, idx)))
        return;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: ha must be a table or false", what);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        bool ok = false;
        for (const char *const *c = rules_api_ha_keys; k && *c && !ok; c++)
            ok = strcmp(k, *c) == 0;
        if (!ok)
            luaL_error(
                L, "%s: ha: unknown key %s (expected name, unit, device_class, precision, node)",
                what, k ? k : "(not a string)");
        if (strcmp(k, "precision") == 0) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 15)
                luaL_error(L, "%s: ha.precision must be an integer 0..15", what);
        } else {
            size_t n;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
            if (!v || n == 0 || n > 200 || strlen(v) != n)
                luaL_error(L, "%s: ha.%s must be a non-empty string (at most 200 bytes)", what, k);
        }
        lua_pop(L, 1);
    }
}

/* t[k] as a string (raw access), or NULL when t is not a table or the value no string. The
 * value stays on the stack (popped by the caller's settop). */
static const char *rules_api_opt_str(lua_State *L, int t, const char *k)
{
    if (lua_type(L, t) != LUA_TTABLE) {
        lua_pushnil(L);
        return NULL;
    }
    rules_api_raw_field(L, t, k);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

static char *rules_api_dup(const char *s, size_t n, bool *oom)
{
    if (!s)
        return NULL;
    char *d = malloc(n + 1);
    if (!d) {
        *oom = true;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void rules_api_entity_clear(struct rules_entity *e)
{
    free((char *)e->topic);
    free((char *)e->node);
    free((char *)e->metric);
    free((char *)e->name);
    free((char *)e->unit);
    free((char *)e->unit_tag);
    free((char *)e->device_class);
}

/* Append a copy of *t to st's catalogue (an entity with the same kind and topic is replaced:
 * the latest declaration wins). Raises on out of memory or past RULES_MAX_ENTITIES. */
static void rules_api_entity_add(lua_State *L, struct rule_state *st, const struct rules_entity *t,
                                 const char *metric, size_t metric_len)
{
    bool oom = false;
    struct rules_entity e = {
        .kind = t->kind,
        .topic = rules_api_dup(t->topic, strlen(t->topic), &oom),
        .node = t->node ? rules_api_dup(t->node, strlen(t->node), &oom) : NULL,
        .metric = metric ? rules_api_dup(metric, metric_len, &oom) : NULL,
        .name = t->name ? rules_api_dup(t->name, strlen(t->name), &oom) : NULL,
        .unit = t->unit ? rules_api_dup(t->unit, strlen(t->unit), &oom) : NULL,
        .unit_tag = t->unit_tag ? rules_api_dup(t->unit_tag, strlen(t->unit_tag), &oom) : NULL,
        .device_class =
            t->device_class ? rules_api_dup(t->device_class, strlen(t->device_class), &oom) : NULL,
        .precision = t->precision,
    };
    size_t i = 0;
    while (i < st->nents &&
           !(st->ents[i].kind == e.kind && strcmp(st->ents[i].topic, e.topic) == 0))
        i++;
    if (!oom && i == st->nents) {
        if (st->nents >= RULES_MAX_ENTITIES) {
            rules_api_entity_clear(&e);
            luaL_error(L, "more than %d entities (mapper entries with topics and described alerts)",
                       RULES_MAX_ENTITIES);
        }
        struct rules_entity *v = realloc(st->ents, (st->nents + 1) * sizeof *v);
        if (!v)
            oom = true;
        else
            st->ents = v;
    }
    if (oom) {
        rules_api_entity_clear(&e);
        luaL_error(L, "out of memory");
    }
    if (i < st->nents)
        rules_api_entity_clear(&st->ents[i]);
    else
        st->nents++;
    st->ents[i] = e;
}

void rules_api_entities_free(struct rule_state *st)
{
    for (size_t i = 0; i < st->nents; i++)
        rules_api_entity_clear(&st->ents[i]);
    free(st->ents);
    st->ents = NULL;
    st->nents = 0;
}

/* Catalogue the mapper entry (table at idx), already validated: one metric per topic. */
static void rules_api_map_entry_catalogue(lua_State *L, struct rule_state *st, int idx)
{
    int top = lua_gettop(L);
    rules_api_raw_field(L, idx, "topic");
    const char *topic = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    rules_api_raw_field(L, idx, "ha");
    int ha = lua_gettop(L);
    if (!topic || (lua_type(L, ha) == LUA_TBOOLEAN && !lua_toboolean(L, ha))) {
        lua_settop(L, top);
        return;
    }
    rules_api_raw_field(L, idx, "tags");
    int tags = lua_gettop(L);
    struct rules_entity t = {.kind = RULES_ENTITY_METRIC, .topic = topic, .precision = -1};
    t.node = rules_api_opt_str(L, ha, "node");
    if (!t.node)
        t.node = rules_api_opt_str(L, tags, "node");
    t.unit_tag = rules_api_opt_str(L, tags, "unit");
    t.name = rules_api_opt_str(L, ha, "name");
    t.unit = rules_api_opt_str(L, ha, "unit");
    t.device_class = rules_api_opt_str(L, ha, "device_class");
    if (lua_type(L, ha) == LUA_TTABLE) {
        rules_api_raw_field(L, ha, "precision");
        if (lua_isinteger(L, -1))
            t.precision = (int)lua_tointeger(L, -1);
    }
    /* metric: the measurement, else the path's last key */
    size_t ml = 0;
    rules_api_raw_field(L, idx, "measurement");
    const char *metric = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &ml) : NULL;
    if (!metric) {
        rules_api_raw_field(L, idx, "path");
        const char *path = lua_tostring(L, -1);
        const char *dot = strrchr(path, '.');
        metric = dot ? dot + 1 : path;
        ml = strlen(metric);
    }
    rules_api_entity_add(L, st, &t, metric, ml);
    lua_settop(L, top);
}

/* gw.describe_alert(topic [, {node=, name=, device_class=}]): an alert this rule may publish
 * (retained JSON with "state":"firing"|"ok"), so front-ends can show it before it fires. */
static int rules_api_describe_alert(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    size_t tlen;
    const char *topic = rules_api_check_str(L, 1, &tlen, "gw.describe_alert: topic");
    char why[96];
    const char *bad = topic_problem(topic, tlen, why, sizeof why);
    if (bad)
        return luaL_error(L, "gw.describe_alert: topic %s", bad);
    lua_settop(L, 2);
    if (!lua_isnil(L, 2) && lua_type(L, 2) != LUA_TTABLE)
        return luaL_error(L, "gw.describe_alert: options must be a table");
    rules_api_check_ha(L, 2, "gw.describe_alert");
    struct rules_entity t = {.kind = RULES_ENTITY_ALERT, .topic = topic, .precision = -1};
    t.node = rules_api_opt_str(L, 2, "node");
    t.name = rules_api_opt_str(L, 2, "name");
    t.device_class = rules_api_opt_str(L, 2, "device_class");
    rules_api_entity_add(L, st, &t, NULL, 0);
    return 0;
}

/* Pool writer: strings are copied behind the entries, NUL-terminated. */
struct pool {
    char *p;
    size_t used, cap;
};

static const char *rules_api_pool_put(lua_State *L, struct pool *pl, const char *s, size_t n)
{
    /* Pass 1 measured with the same code, so this only trips if the spec changed between
     * the passes (it cannot through raw access, but never write past the block). */
    if (n + 1 > pl->cap - pl->used)
        luaL_error(L, "gw.mapper: entries changed while being built");
    char *d = pl->p + pl->used;
    memcpy(d, s, n);
    d[n] = '\0';
    pl->used += n + 1;
    return d;
}

/* Push t[name] without metamethods: a spec's __index must not change what the passes see. */
static void rules_api_raw_field(lua_State *L, int idx, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, idx);
}

/*
 * Validate entry `i` (table at idx) and measure it; when `m` is non-NULL also fill m->e[i],
 * its pool strings and its path keys (appended to the keys table at keys_idx from *nkeys+1).
 * Raises a Lua error naming the entry on any problem. Uses r->lp as scratch.
 */
static void rules_api_map_entry_build(lua_State *L, struct rules *r, int idx, size_t i,
                                      struct mapper *m, struct pool *pl, int keys_idx,
                                      size_t *nkeys, size_t *pool_need)
{
    char what[64];
    snprintf(what, sizeof what, "gw.mapper: entry %zu", i + 1);
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s must be a table, got %s", what, luaL_typename(L, idx));

    /* Unknown keys are typos ("retian"); refuse them rather than silently ignore. */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        bool ok = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (const char *const *k = rules_api_map_keys; *k && !ok; k++)
                ok = strcmp(lua_tostring(L, -2), *k) == 0;
        if (!ok)
            luaL_error(L,
                       "%s: unknown key %s (expected path, topic, qos, retain, "
                       "measurement, tags, field, ha)",
                       what,
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a string)");
        lua_pop(L, 1);
    }

    /* path: "a.b.c" — keys separated by dots, none empty. */
    size_t plen;
    rules_api_raw_field(L, idx, "path");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: path must be a string like \"n1.t\"", what);
    const char *path = lua_tolstring(L, -1, &plen);
    if (plen == 0 || strlen(path) != plen || path[0] == '.' || path[plen - 1] == '.' ||
        strstr(path, ".."))
        luaL_error(L, "%s: path %s must be keys separated by single dots", what, path);
    size_t nk = 1;
    for (const char *c = path; *c; c++)
        nk += *c == '.';
    if (nk > MAPPER_MAX_DEPTH)
        luaL_error(L, "%s: path %s is deeper than %d keys", what, path, MAPPER_MAX_DEPTH);
    snprintf(what, sizeof what, "gw.mapper: entry %zu (%.30s)", i + 1, path);

    /* topic / qos / retain */
    size_t tlen = 0;
    const char *topic = NULL;
    rules_api_raw_field(L, idx, "topic");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: topic must be a string", what);
        topic = lua_tolstring(L, -1, &tlen);
        char why[96];
        const char *bad = topic_problem(topic, tlen, why, sizeof why);
        if (bad)
            luaL_error(L, "%s: topic %s", what, bad);
    }
    rules_api_raw_field(L, idx, "qos");
    int qos = rules_api_check_qos(L, -1, what);
    rules_api_raw_field(L, idx, "retain");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "%s: retain must be a boolean", what);
    bool retain = lua_toboolean(L, -1);

    /* measurement / tags / field -> pre-encoded series */
    size_t slen = 0, flen = 5;
    const char *field = "value";
    rules_api_raw_field(L, idx, "measurement");
    int meas_idx = lua_gettop(L);
    rules_api_raw_field(L, idx, "tags");
    int tags_idx = lua_gettop(L);
    rules_api_raw_field(L, idx, "field");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: field must be a string", what);
        field = lua_tolstring(L, -1, &flen);
        rules_api_check_name(L, what, "field", field, flen, LP_KEY);
    }
    if (!lua_isnil(L, meas_idx)) {
        struct lp_tag tags[MAX_TAGS];
        char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
        const char *meas = rules_api_check_measurement(L, meas_idx, what);
        const char *nonfinite = NULL;
        size_t nt = rules_api_collect_tags(L, tags_idx, what, tags, tagnum, &nonfinite);
        if (nonfinite)
            luaL_error(L, "%s: tag %s is a non-finite number (nan/inf)", what, nonfinite);
        /* The packet-independent start of every line: "measurement,tags field=". */
        buf_clear(&r->lp);
        int rc = lp_series(&r->lp, meas, tags, nt);
        if (!rc)
            rc = buf_append_char(&r->lp, ' ');
        if (!rc)
            rc = lp_append_key(&r->lp, field, flen);
        if (!rc)
            rc = buf_append_char(&r->lp, '=');
        if (rc)
            luaL_error(L, "%s: %s", what,
                       rc == -EINVAL ? "line protocol cannot carry this series" : "out of memory");
        slen = r->lp.len;
    } else if (!lua_isnil(L, tags_idx)) {
        luaL_error(L, "%s: tags without a measurement", what);
    }
    if (!topic && !slen)
        luaL_error(L, "%s: needs a topic, a measurement, or both", what);
    rules_api_raw_field(L, idx, "ha");
    rules_api_check_ha(L, lua_gettop(L), what);

    *pool_need += plen + 1 + (topic ? tlen + 1 : 0) + (slen ? slen + 1 : 0);
    if (m) {
        struct map_entry *e = &m->e[i];
        e->key0 = (uint32_t)(*nkeys + 1);
        e->nkeys = (uint16_t)nk;
        e->qos = qos;
        e->retain = retain;
        e->path = rules_api_pool_put(L, pl, path, plen);
        e->topic = topic ? rules_api_pool_put(L, pl, topic, tlen) : NULL;
        e->topic_len = tlen;
        e->line = slen ? rules_api_pool_put(L, pl, r->lp.p, slen) : NULL;
        e->line_len = slen;
        /* Same parent path as the previous entry (compare everything before the leaf)? */
        const char *leaf = strrchr(path, '.');
        size_t parent_len = leaf ? (size_t)(leaf - path) : 0;
        if (i > 0) {
            const char *pp = m->e[i - 1].path, *pleaf = strrchr(pp, '.');
            size_t ppl = pleaf ? (size_t)(pleaf - pp) : 0;
            e->same_parent = ppl == parent_len && memcmp(pp, path, parent_len) == 0;
        }
        const char *k = path;
        for (size_t j = 0; j < nk; j++) {
            const char *dot = strchr(k, '.');
            size_t kl = dot ? (size_t)(dot - k) : strlen(k);
            lua_pushlstring(L, k, kl);
            lua_rawseti(L, keys_idx, (lua_Integer)++ * nkeys);
            k += kl + 1;
        }
    }
    lua_settop(L, idx);
}

/* gw.mapper(entries) -> mapper userdata (callable) */
static int rules_api_mapper(lua_State *L)
{
    struct rules *r = rules_state_of(L)->r;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    size_t n = (size_t)lua_rawlen(L, 1);
    if (n == 0 || n > MAPPER_MAX_ENTRIES)
        return luaL_error(L, "gw.mapper: expects a list of 1..%d entries", MAPPER_MAX_ENTRIES);
    luaL_checkstack(L, 16, "gw.mapper");

    /* Pass 1: validate and measure (raises before anything is built). */
    size_t pool_need = 0, nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        rules_api_map_entry_build(L, r, 2, i, NULL, NULL, 0, &nkeys, &pool_need);
        lua_pop(L, 1);
    }
    /* Pass 2: allocate one block and fill it. */
    size_t head = sizeof(struct mapper) + n * sizeof(struct map_entry);
    struct mapper *m = lua_newuserdatauv(L, head + pool_need, 1); /* index 2 */
    memset(m, 0, head);
    m->n = n;
    struct pool pl = {.p = (char *)m + head, .used = 0, .cap = pool_need};
    lua_createtable(L, 2 * (int)n, 0); /* index 3: path keys */
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        size_t dummy = 0;
        rules_api_map_entry_build(L, r, 4, i, m, &pl, 3, &nkeys, &dummy);
        lua_pop(L, 1);
    }
    lua_setiuservalue(L, 2, 1);
    luaL_setmetatable(L, MAPPER_MT);
    /* Only a mapper that was built completely enters the catalogue. */
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        rules_api_map_entry_catalogue(L, rules_state_of(L), lua_gettop(L));
        lua_pop(L, 1);
    }
    return 1;
}

/* mapper(pkt [, ts_ns]) -> number of metrics found (each published and/or written) */
static int rules_api_mapper_call(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    struct rules *r = st->r;
    /* __call guarantees a mapper at 1; luaL_checkudata would look its metatable up by name. */
    const struct mapper *m = lua_touserdata(L, 1);
    if (!m)
        return luaL_error(L, "mapper: called without its mapper");
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t ts = rules_api_check_ts(L, 3, st, "mapper");
    char ts_txt[32]; /* " <ts>", the same for every point of this call */
    ts_txt[0] = ' ';
    size_t ts_len = 1 + (size_t)lp_format_int(ts_txt + 1, ts);
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, 1); /* 3: keys */
    lua_pushnil(L);             /* 4: parent of the current entry's leaf */
    lua_Integer found = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct map_entry *e = &m->e[i];
        if (!e->same_parent) {
            lua_pushvalue(L, 2);
            for (uint32_t k = 0; k + 1 < e->nkeys && lua_type(L, -1) == LUA_TTABLE; k++) {
                lua_rawgeti(L, 3, (lua_Integer)(e->key0 + k));
                lua_rawget(L, -2);
                lua_remove(L, -2);
            }
            lua_replace(L, 4);
        }
        if (lua_type(L, 4) != LUA_TTABLE)
            continue;
        lua_rawgeti(L, 3, (lua_Integer)(e->key0 + e->nkeys - 1));
        if (lua_rawget(L, 4) != LUA_TNUMBER) {
            lua_pop(L, 1);
            continue; /* missing, null or not a number: skipped, like a hand-written rule */
        }
        found++;
        /*
         * Format once for both outputs. num = the MQTT payload (as gw.publish: integers as
         * integers, floats with ".0" when needed); its first lp_len bytes are the line-protocol
         * float text (as lp_format_double), which for an integer below 1e15 is the same digits.
         */
        char num[JSONLUA_NUM_MAX];
        size_t plen, lp_len;
        if (lua_isinteger(L, -1)) {
            lua_Integer iv = lua_tointeger(L, -1);
            plen = lp_len = rules_api_fmt_int(num, iv);
            if (e->line && (iv <= -INT64_C(1000000000000000) || iv >= INT64_C(1000000000000000))) {
                /* beyond the exact range: let the float formatter decide, as gw.point does */
                lp_len = 0;
            }
        } else {
            double v = lua_tonumber(L, -1);
            if (!isfinite(v)) {
                /* One bad metric (a device's 1e999) costs only itself: the rest still go. */
                rules_api_refuse(L, r, "mapper", e->path, "non-finite number (nan/inf)");
                lua_pop(L, 1);
                continue;
            }
            lp_len = (size_t)lp_format_double(num, 40, v);
            plen = lp_len;
            if (!strpbrk(num, ".eEn")) {
                memcpy(num + plen, ".0", 3);
                plen += 2;
            }
        }
        if (e->topic)
            rules_api_emit_publish(r, e->topic, e->topic_len, num, plen, e->qos, e->retain);
        if (e->line) {
            /* Exactly lp_encode's float field and timestamp, from pre-encoded parts. */
            struct buf *b = &r->lp;
            buf_clear(b);
            if (buf_reserve(b, e->line_len + 48 + ts_len))
                return luaL_error(L, "%s: out of memory", e->path);
            memcpy(b->p, e->line, e->line_len);
            b->len = e->line_len;
            if (lp_len) {
                memcpy(b->p + b->len, num, lp_len);
                b->len += lp_len;
            } else {
                b->len += (size_t)lp_format_double(b->p + b->len, 40, lua_tonumber(L, -1));
            }
            memcpy(b->p + b->len, ts_txt, ts_len + 1);
            b->len += ts_len;
            rules_api_emit_point(r, e->line, SIZE_MAX);
        }
        lua_pop(L, 1);
    }
    lua_pushinteger(L, found);
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* The gw table                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Metatables of the gw userdata types; __metatable hides and locks them from rules. */
static void rules_api_open_types(lua_State *L)
{
    luaL_newmetatable(L, SERIES_MT);
    lua_pushcfunction(L, rules_api_series_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, INT_MT);
    lua_pushcfunction(L, rules_api_int_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, MAPPER_MT);
    lua_pushcfunction(L, rules_api_mapper_call);
    lua_setfield(L, -2, "__call");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* gw.log(level, msg): level is "debug", "info", "warn" or "error". */
static int rules_api_log(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    int level = log_level_parse(lv);
    if (level < 0)
        return luaL_error(L, "gw.log: level must be \"debug\", \"info\", \"warn\" or \"error\"");
    rules_api_log_caller(L, level, luaL_tolstring(L, 2, NULL));
    return 0;
}

/* The engine's clock (rules_config.clock): the wall clock, or a replay's / test's virtual
 * time. */
static int64_t rules_api_clock_ns(lua_State *L)
{
    return clock_now_ns(rules_state_of(L)->r->clock);
}

static int rules_api_now(lua_State *L)
{
    lua_pushnumber(L, (double)rules_api_clock_ns(L) / 1e9);
    return 1;
}

static int rules_api_now_ns(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)rules_api_clock_ns(L));
    return 1;
}

/* gw.iso8601([seconds]) -> "2026-11-24T21:51:30Z" (UTC, whole seconds; default now). */
static int rules_api_iso8601(lua_State *L)
{
    double t = lua_isnoneornil(L, 1) ? (double)rules_api_clock_ns(L) / 1e9 : luaL_checknumber(L, 1);
    if (!(t > -1e12 && t < 1e12))
        return luaL_error(L, "gw.iso8601: time out of range");
    time_t secs = (time_t)floor(t);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return luaL_error(L, "gw.iso8601: time out of range");
    char out[40];
    strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
    lua_pushstring(L, out);
    return 1;
}

/* gw.json(value) -> JSON text (object keys sorted; integers stay integers). */
static int rules_api_json(lua_State *L)
{
    luaL_checkany(L, 1);
    rules_api_push_json(L, 1, "gw.json");
    return 1;
}

static const luaL_Reg rules_api_funcs[] = {
    {"publish", rules_api_publish},
    {"point", rules_api_point},
    {"log", rules_api_log},
    {"now", rules_api_now},
    {"now_ns", rules_api_now_ns},
    {"iso8601", rules_api_iso8601},
    {"json", rules_api_json},
    {"series", rules_api_series},
    {"mapper", rules_api_mapper},
    {"describe_alert", rules_api_describe_alert},
    {"int", rules_api_int},
    {"param", rules_param_gw},
    {NULL, NULL},
};

void rules_api_open(lua_State *L, struct rules *r)
{
    rules_api_open_types(L);
    luaL_newlib(L, rules_api_funcs);
    lua_pushstring(L, r->prefix);
    lua_setfield(L, -2, "prefix");
    lua_pushlightuserdata(L, jsonlua_null());
    lua_setfield(L, -2, "null");
}
