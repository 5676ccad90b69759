/*
 * rules.c — the Lua 5.4 rule engine: sandboxed state per rule, the `gw` API, budgets, hot
 * reload. See rules.h for the contract and docs/rules.md for the rule author's view.
 *
 * Isolation, in the order a hostile rule meets it:
 *   - One lua_State per rule, created with our own lua_Alloc that counts bytes and refuses
 *     to grow past the configured cap (HAProxy hlua.c style), so a memory bomb is an
 *     ordinary Lua "not enough memory" error inside that state only.
 *   - Only base/string/table/math/utf8 are opened; dofile, loadfile, string.dump are gone,
 *     require is our own (dotted names only, text-mode .lua files from the lua_path
 *     directories, run under the same cap and budget, cached per state; no `package`),
 *     collectgarbage only answers "count", load only takes text chunks (bytecode can crash
 *     the VM), setmetatable refuses __gc (finalizers would run outside any budget, in
 *     whatever thread happens to trigger the GC) and the string metatable is locked.
 *   - Every call into the rule runs on a coroutine with a count hook. When the instruction
 *     budget is spent the hook yields out of the coroutine (lua_resume returns LUA_YIELD), so
 *     no pcall inside the rule can catch it. Where a yield is impossible (inside a C
 *     function such as table.sort's comparator or a message handler) the hook raises an
 *     error instead and keeps firing every 1000 instructions; the sandbox's pcall/xpcall
 *     re-raise any error once the budget is spent, so that error cannot be swallowed either.
 *   - A coroutine that failed or overran is dropped (not lua_resetthread'ed: resetting runs
 *     pending __close handlers outside the yieldable context, i.e. more rule code without a
 *     reliable budget); the next call makes a fresh one. A coroutine that finished normally
 *     is reused, which is the common case and saves a thread allocation per packet.
 *
 * Known limit: the budget counts VM instructions, so a single C library call is not
 * interrupted (e.g. a pathological string.find pattern on a long subject). Memory stays
 * capped; the time of such a call is bounded only by the subject size.
 *
 * Owner: performance engineer (written by the rules engineer).
 */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "buf.h"
#include "jsonlua.h"
#include "lineproto.h"
#include "log.h"
#include "util.h"

#define DEFAULT_MEM_LIMIT   (32u * 1024u * 1024u)
#define DEFAULT_INSTR_LIMIT 10000000ull
#define OVERRUN_RECHECK     1000 /* hook period once the budget is spent */
#define MAX_TAGS            32
#define MAX_FIELDS          64
#define STATE_MAX_DEPTH     100                  /* gw.state nesting copied across a reload */
#define MAX_RULE_SIZE       (4u * 1024u * 1024u) /* also the largest module file */
#define REQ_MAX_NAME        128                  /* bytes of a module name */
#define REQ_MAX_DEPTH       32                   /* modules requiring modules */
#define REQ_MAX_DIRS        16                   /* entries of the module search path */
#define DEFAULT_LUA_DIR     "/usr/local/share/iiotgw/lua"

/* ------------------------------------------------------------------------------------ */
/* Types                                                                                */
/* ------------------------------------------------------------------------------------ */

/* One loaded rule: a Lua state and what the hooks need to police it. */
struct rule_state {
    struct rules *r;
    lua_State *L;
    lua_State *co;     /* reusable call thread; NULL after a failed call */
    int co_ref;        /* registry ref anchoring co */
    int gw_ref;        /* registry ref of our gw table (gw.state lives there) */
    int names_ref;     /* registry ref of the interned call_names sequence */
    int chunk_ref;     /* registry ref of the compiled rule chunk until it has run */
    int req_cache_ref; /* registry ref: module name -> what require returned */
    int req_stack_ref; /* registry ref: sequence of the module names being loaded */
    int req_depth;     /* valid entries of that sequence (0 outside require) */
    size_t mem_used;
    size_t mem_limit;
    uint64_t instr_left;                 /* budget beyond the current hook period */
    bool overrun;                        /* budget spent in the current call */
    char overrun_where[LUA_IDSIZE + 24]; /* rule file:line where the budget ran out */
    int64_t ts_ns;                       /* default gw.point timestamp of the current call */
};

struct rules {
    char *path;
    char *chunkname;            /* "@" path: what Lua reports in ar.source */
    char short_src[LUA_IDSIZE]; /* what Lua prints in "file:line:" messages */
    char *prefix;
    char **lua_dirs; /* module search path, resolved once at open (reloads reuse it) */
    size_t nlua_dirs;
    size_t mem_limit;
    uint64_t instr_limit;
    struct rule_sink sink;
    struct rule_state *live;
    struct rules_stats stats;
    struct buf lp; /* scratch for one encoded point */
};

/*
 * The strings every call needs (hook names, meta keys), interned once per state in a
 * sequence anchored in the registry: fetching them by index costs no string hashing or
 * comparison, unlike lua_pushstring/lua_setfield with a C string.
 */
enum name_id { NM_INIT = 1, NM_ON_PACKET, NM_ON_LINE, NM_ON_TICK, NM_SOURCE, NM_LINE, NM_RX_NS };
static const char *const call_names[] = {"init",   "on_packet", "on_line", "on_tick",
                                         "source", "line",      "rx_ns",   NULL};

enum call_kind { CALL_CHUNK, CALL_INIT, CALL_PACKET, CALL_LINE, CALL_TICK };

/* Everything the trampoline needs, passed as a light userdata. */
struct call {
    enum call_kind kind;
    const char *source;
    uint64_t line_no;
    int64_t rx_ns;
    const char *text; /* JSON for CALL_PACKET, the line for CALL_LINE */
    size_t len;
    double now; /* CALL_TICK */
    bool decode_failed;
    char *err;
    size_t errlen;
};

static inline struct rule_state *state_of(lua_State *L)
{
    return *(struct rule_state **)lua_getextraspace(L);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------ */
/* Memory cap                                                                           */
/* ------------------------------------------------------------------------------------ */

/*
 * lua_Alloc that counts live bytes and refuses growth past the cap. Refusing makes Lua run
 * an emergency collection and retry, then raise "not enough memory". Shrinks and frees are
 * never refused (Lua may not expect them to fail).
 */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rule_state *st = ud;
    if (!ptr)
        osize = 0; /* osize then encodes the object type, not a size */
    if (nsize == 0) {
        free(ptr);
        st->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && nsize - osize > st->mem_limit - st->mem_used)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    st->mem_used = st->mem_used - osize + nsize;
    return p;
}

static int sb_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("rule_panic", "msg=%s", msg ? msg : "?");
    abort(); /* unreachable by design: every entry into Lua is protected */
}

/* ------------------------------------------------------------------------------------ */
/* Instruction budget                                                                   */
/* ------------------------------------------------------------------------------------ */

static void rule_where(struct rule_state *st, lua_State *co, char *out, size_t n);

static void sb_hook(lua_State *L, lua_Debug *ar)
{
    struct rule_state *st = state_of(L);
    if (ar->event != LUA_HOOKCOUNT)
        return;
    if (!st->overrun && st->instr_left > 0) {
        /* Budgets above INT_MAX run in several hook periods. */
        int n = st->instr_left > INT_MAX ? INT_MAX : (int)st->instr_left;
        st->instr_left -= (uint64_t)n;
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, n);
        return;
    }
    if (!st->overrun) {
        st->overrun = true;
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, OVERRUN_RECHECK);
        /* Locate it now: once yielded, the top frame's pc is rewound by one instruction
         * and lua_getinfo would report the previous line. */
        rule_where(st, L, st->overrun_where, sizeof st->overrun_where);
    }
    if (lua_isyieldable(L)) {
        lua_yield(L, 0); /* unwinds to lua_resume with LUA_YIELD: no pcall sees it */
        return;
    }
    luaL_error(L, "instruction budget exceeded");
}

static void arm_budget(struct rule_state *st, lua_State *co)
{
    uint64_t lim = st->r->instr_limit;
    int n = lim > INT_MAX ? INT_MAX : (int)lim;
    st->instr_left = lim - (uint64_t)n;
    st->overrun = false;
    lua_sethook(co, sb_hook, LUA_MASKCOUNT, n);
}

/* ------------------------------------------------------------------------------------ */
/* Sandboxed base functions                                                             */
/* ------------------------------------------------------------------------------------ */

/* Same as the stock pcall/xpcall continuation, except a spent budget is re-raised. */
static int sb_finishpcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        if (state_of(L)->overrun)
            return lua_error(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, sb_finishpcall);
    return sb_finishpcall(L, status, 0);
}

/*
 * xpcall's message handler, wrapped. When the hook raised the budget error, Lua calls the
 * handler while hooks are still disabled (allowhook is only restored when the error is
 * caught), so a looping handler would run forever: once the budget is spent the user's
 * handler is not called at all.
 */
static int sb_msgh(lua_State *L)
{
    if (state_of(L)->overrun)
        return 1; /* the error object, unchanged */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, sb_msgh, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, sb_finishpcall);
    return sb_finishpcall(L, status, 2);
}

/* load(chunk [, chunkname [, mode [, env]]]): string chunks only, always text mode. */
static int sb_load(lua_State *L)
{
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "string expected (rules cannot load from functions)");
    const char *s = lua_tolstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, s);
    int has_env = !lua_isnone(L, 4);
    int status = luaL_loadbufferx(L, s, len, name, "t");
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is available to rules");
    lua_pushnumber(L,
                   (double)lua_gc(L, LUA_GCCOUNT, 0) + (double)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int gc = lua_rawget(L, 2);
        lua_pop(L, 1);
        if (gc != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not available to rules");
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* "file:line" of the Lua code calling the current C function (level 1), or "". */
static void caller_where(lua_State *L, char *out, size_t n)
{
    lua_Debug ar;
    out[0] = '\0';
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
}

static void emit_log(struct rule_state *st, int level, const char *where, const char *msg)
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

/* print(...) goes to the gateway log at info level, arguments separated by tabs. */
static int sb_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
        if (i < n)
            luaL_addchar(&b, '\t');
    }
    luaL_pushresult(&b);
    char where[LUA_IDSIZE + 16];
    caller_where(L, where, sizeof where);
    emit_log(state_of(L), LL_INFO, where, lua_tostring(L, -1));
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Value formatting shared by gw.publish, gw.point and gw.json                          */
/* ------------------------------------------------------------------------------------ */

/* Integer text, "%lld". out >= 24 bytes. */
static size_t fmt_int(char *out, lua_Integer v)
{
    return (size_t)lp_format_int(out, (int64_t)v);
}

/* Scalar (number) as text for a payload or tag value; raises on NaN/Inf. out >= 48. */
static size_t fmt_number(lua_State *L, int idx, char *out, const char *what)
{
    size_t n = jsonlua_number(L, idx, out);
    if (!n)
        luaL_error(L, "%s: non-finite number (nan/inf) cannot be sent", what);
    return n;
}

/* Encode the value at idx and push the JSON text. Raises "<what>: <why>" on failure. */
static void push_json(lua_State *L, int idx, const char *what)
{
    char why[128];
    if (jsonlua_encode(L, idx, why, sizeof why))
        luaL_error(L, "%s: %s", what, why);
}

/* ------------------------------------------------------------------------------------ */
/* The gw API                                                                           */
/* ------------------------------------------------------------------------------------ */

static const char *check_str(lua_State *L, int idx, size_t *len, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s must be a string, got %s", what, luaL_typename(L, idx));
    return lua_tolstring(L, idx, len);
}

static const char *topic_problem(const char *t, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > 65535)
        return "is longer than 65535 bytes";
    if (memchr(t, '\0', len))
        return "contains a NUL byte";
    if (memchr(t, '+', len) || memchr(t, '#', len))
        return "contains a wildcard ('+' or '#')";
    if (!jsonlua_utf8_valid(t, len))
        return "is not valid UTF-8";
    return NULL;
}

/*
 * Hand one publish to the sink (counted, failures logged). Shared by gw.publish and mappers.
 * Returns the sink's code (0 = accepted).
 */
static int emit_publish(struct rules *r, const char *topic, size_t tlen, const char *payload,
                        size_t plen, int qos, bool retain)
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
static int emit_point(struct rules *r, const char *what, size_t wlen)
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
static int check_qos(lua_State *L, int idx, const char *what)
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
static int gw_publish(lua_State *L)
{
    struct rule_state *st = state_of(L);
    size_t tlen, plen = 0;
    const char *topic = check_str(L, 1, &tlen, "gw.publish: topic");
    const char *bad = topic_problem(topic, tlen);
    if (bad)
        return luaL_error(L, "gw.publish: topic %s", bad);
    int qos = check_qos(L, 3, "gw.publish");
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
        plen = fmt_number(L, 2, num, "gw.publish");
        payload = num;
        break;
    case LUA_TBOOLEAN:
        payload = lua_toboolean(L, 2) ? "true" : "false";
        plen = strlen(payload);
        break;
    case LUA_TTABLE:
    case LUA_TLIGHTUSERDATA:
        push_json(L, 2, "gw.publish");
        payload = lua_tolstring(L, -1, &plen);
        break;
    default:
        return luaL_error(L,
                          "gw.publish: payload must be a string, number, boolean or table, "
                          "got %s",
                          luaL_typename(L, 2));
    }
    int rc = emit_publish(st->r, topic, tlen, payload, plen, qos, retain);
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* A tag or field key: a string without NUL (line protocol takes C strings). */
static const char *check_key(lua_State *L, int idx, const char *what)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "gw.point: %s must be strings, got %s", what, luaL_typename(L, idx));
    const char *k = lua_tolstring(L, idx, &len);
    if (strlen(k) != len)
        luaL_error(L, "gw.point: %s contains a NUL byte", what);
    return k;
}

/* Measurement name at idx: a string without NUL. */
static const char *check_measurement(lua_State *L, int idx, size_t *len, const char *what)
{
    const char *meas = check_str(L, idx, len, what);
    if (strlen(meas) != *len)
        luaL_error(L, "%s contains a NUL byte", what);
    return meas;
}

/*
 * Tags table at idx (or nil) into tags[] (at most MAX_TAGS); number values are formatted
 * into tagnum[]. The strings stay valid while the table is on the stack and unmodified.
 */
static size_t collect_tags(lua_State *L, int idx, struct lp_tag *tags,
                           char (*tagnum)[JSONLUA_NUM_MAX])
{
    size_t nt = 0;
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (nt == MAX_TAGS)
                luaL_error(L, "gw.point: more than %d tags", MAX_TAGS);
            tags[nt].key = check_key(L, -2, "tag keys");
            switch (lua_type(L, -1)) {
            case LUA_TSTRING:
                tags[nt].value = check_key(L, -1, "tag values");
                break;
            case LUA_TNUMBER:
                fmt_number(L, -1, tagnum[nt], "gw.point");
                tags[nt].value = tagnum[nt];
                break;
            default:
                luaL_error(L, "gw.point: tag %s must be a string or number, got %s", tags[nt].key,
                           luaL_typename(L, -1));
            }
            nt++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_error(L, "gw.point: tags must be a table or nil");
    }
    return nt;
}

/* Fields at idx: a number (float field "value") or a table. Returns the count. */
static size_t collect_fields(lua_State *L, int idx, struct lp_field *fields)
{
    size_t nf = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        /* Shorthand: the brief's schema, one float field "value" (84190 -> value=84190). */
        fields[0].key = "value";
        fields[0].type = LP_FLOAT;
        fields[0].v.f = lua_tonumber(L, idx);
        return 1;
    case LUA_TTABLE:
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (nf == MAX_FIELDS)
                luaL_error(L, "gw.point: more than %d fields", MAX_FIELDS);
            struct lp_field *f = &fields[nf];
            f->key = check_key(L, -2, "field keys");
            switch (lua_type(L, -1)) {
            case LUA_TNUMBER:
                if (lua_isinteger(L, -1)) {
                    f->type = LP_INT;
                    f->v.i = lua_tointeger(L, -1);
                } else {
                    f->type = LP_FLOAT;
                    f->v.f = lua_tonumber(L, -1);
                }
                break;
            case LUA_TBOOLEAN:
                f->type = LP_BOOL;
                f->v.b = lua_toboolean(L, -1);
                break;
            case LUA_TSTRING:
                f->type = LP_STRING;
                f->v.s.s = lua_tolstring(L, -1, &f->v.s.len);
                break;
            default:
                luaL_error(L, "gw.point: field %s must be a number, boolean or string, got %s",
                           f->key, luaL_typename(L, -1));
            }
            nf++;
            lua_pop(L, 1);
        }
        return nf;
    default:
        luaL_error(L, "gw.point: fields must be a number or a table, got %s",
                   luaL_typename(L, idx));
    }
    return 0;
}

/* Optional ts_ns argument at idx, else the call's default timestamp. */
static int64_t check_ts(lua_State *L, int idx, const struct rule_state *st, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return st->ts_ns;
    int isnum;
    int64_t ts = (int64_t)lua_tointegerx(L, idx, &isnum);
    if (!isnum)
        luaL_error(L, "%s: ts_ns must be an integer (nanoseconds)", what);
    return ts;
}

static int point_error(lua_State *L, int rc)
{
    if (rc == -EINVAL)
        return luaL_error(L, "gw.point: invalid point (no fields, an empty name/key/tag value, "
                             "a newline in a name/key/tag, or a nan/inf float)");
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

struct series {
    size_t len;
    char text[]; /* NUL-terminated */
};

/* gw.series(measurement [, tags]) -> series userdata */
static int gw_series(lua_State *L)
{
    struct rules *r = state_of(L)->r;
    struct lp_tag tags[MAX_TAGS];
    char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
    size_t mlen;
    const char *meas = check_measurement(L, 1, &mlen, "gw.series: measurement");
    size_t nt = collect_tags(L, 2, tags, tagnum);
    buf_clear(&r->lp);
    int rc = lp_series(&r->lp, meas, tags, nt);
    if (rc)
        return rc == -EINVAL ? luaL_error(L, "gw.series: invalid series (empty name, tag key "
                                             "or value, or a newline in one of them)")
                             : luaL_error(L, "gw.series: out of memory");
    size_t len = r->lp.len;
    struct series *s = lua_newuserdatauv(L, sizeof *s + len + 1, 0);
    s->len = len;
    memcpy(s->text, r->lp.p, len + 1); /* r->lp is not touched by the allocation above */
    luaL_setmetatable(L, SERIES_MT);
    return 1;
}

static int series_tostring(lua_State *L)
{
    struct series *s = luaL_checkudata(L, 1, SERIES_MT);
    lua_pushlstring(L, s->text, s->len);
    return 1;
}

/*
 * gw.point(measurement, tags, fields [, ts_ns]) -> true | false (sink refused)
 * gw.point(series, fields [, ts_ns])            -> same, with a pre-encoded series
 */
static int gw_point(lua_State *L)
{
    struct rule_state *st = state_of(L);
    struct rules *r = st->r;
    struct lp_field fields[MAX_FIELDS];
    int rc;
    if (lua_type(L, 1) == LUA_TUSERDATA) {
        struct series *s = luaL_testudata(L, 1, SERIES_MT);
        if (!s)
            return luaL_error(L, "gw.point: first argument must be a measurement name or a "
                                 "gw.series");
        size_t nf = collect_fields(L, 2, fields);
        int64_t ts = check_ts(L, 3, st, "gw.point");
        buf_clear(&r->lp);
        rc = lp_encode_series(&r->lp, s->text, s->len, fields, nf, ts);
        if (rc < 0)
            return point_error(L, rc);
        rc = emit_point(r, s->text, SIZE_MAX);
        lua_pushboolean(L, rc == 0);
        return 1;
    }
    struct lp_tag tags[MAX_TAGS];
    char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
    size_t mlen;
    const char *meas = check_measurement(L, 1, &mlen, "gw.point: measurement");
    size_t nt = collect_tags(L, 2, tags, tagnum);
    size_t nf = collect_fields(L, 3, fields);
    int64_t ts = check_ts(L, 4, st, "gw.point");
    buf_clear(&r->lp);
    rc = lp_encode(&r->lp, meas, tags, nt, fields, nf, ts);
    if (rc < 0)
        return point_error(L, rc);
    rc = emit_point(r, meas, mlen);
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

static const char *const map_keys[] = {"path",        "topic", "qos",   "retain",
                                       "measurement", "tags",  "field", NULL};

/* Pool writer: strings are copied behind the entries, NUL-terminated. */
struct pool {
    char *p;
    size_t used, cap;
};

static const char *pool_put(lua_State *L, struct pool *pl, const char *s, size_t n)
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
static void raw_field(lua_State *L, int idx, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, idx);
}

/*
 * Validate entry `i` (table at idx) and measure it; when `m` is non-NULL also fill m->e[i],
 * its pool strings and its path keys (appended to the keys table at keys_idx from *nkeys+1).
 * Raises a Lua error naming the entry on any problem. Uses r->lp as scratch.
 */
static void map_entry_build(lua_State *L, struct rules *r, int idx, size_t i, struct mapper *m,
                            struct pool *pl, int keys_idx, size_t *nkeys, size_t *pool_need)
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
            for (const char *const *k = map_keys; *k && !ok; k++)
                ok = strcmp(lua_tostring(L, -2), *k) == 0;
        if (!ok)
            luaL_error(L,
                       "%s: unknown key %s (expected path, topic, qos, retain, "
                       "measurement, tags, field)",
                       what,
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a string)");
        lua_pop(L, 1);
    }

    /* path: "a.b.c" — keys separated by dots, none empty. */
    size_t plen;
    raw_field(L, idx, "path");
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
    raw_field(L, idx, "topic");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: topic must be a string", what);
        topic = lua_tolstring(L, -1, &tlen);
        const char *bad = topic_problem(topic, tlen);
        if (bad)
            luaL_error(L, "%s: topic %s", what, bad);
    }
    raw_field(L, idx, "qos");
    int qos = check_qos(L, -1, what);
    raw_field(L, idx, "retain");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "%s: retain must be a boolean", what);
    bool retain = lua_toboolean(L, -1);

    /* measurement / tags / field -> pre-encoded series */
    size_t slen = 0, flen = 5;
    const char *field = "value";
    raw_field(L, idx, "measurement");
    int meas_idx = lua_gettop(L);
    raw_field(L, idx, "tags");
    int tags_idx = lua_gettop(L);
    raw_field(L, idx, "field");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: field must be a string", what);
        field = lua_tolstring(L, -1, &flen);
        if (flen == 0 || strlen(field) != flen || strpbrk(field, "\r\n"))
            luaL_error(L, "%s: field must be a non-empty key without NUL or newline", what);
    }
    if (!lua_isnil(L, meas_idx)) {
        struct lp_tag tags[MAX_TAGS];
        char tagnum[MAX_TAGS][JSONLUA_NUM_MAX];
        size_t mlen;
        const char *meas = check_measurement(L, meas_idx, &mlen, what);
        size_t nt = collect_tags(L, tags_idx, tags, tagnum);
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
                       rc == -EINVAL ? "invalid measurement or tags (empty, "
                                       "or a newline)"
                                     : "out of memory");
        slen = r->lp.len;
    } else if (!lua_isnil(L, tags_idx)) {
        luaL_error(L, "%s: tags without a measurement", what);
    }
    if (!topic && !slen)
        luaL_error(L, "%s: needs a topic, a measurement, or both", what);

    *pool_need += plen + 1 + (topic ? tlen + 1 : 0) + (slen ? slen + 1 : 0);
    if (m) {
        struct map_entry *e = &m->e[i];
        e->key0 = (uint32_t)(*nkeys + 1);
        e->nkeys = (uint16_t)nk;
        e->qos = qos;
        e->retain = retain;
        e->path = pool_put(L, pl, path, plen);
        e->topic = topic ? pool_put(L, pl, topic, tlen) : NULL;
        e->topic_len = tlen;
        e->line = slen ? pool_put(L, pl, r->lp.p, slen) : NULL;
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
static int gw_mapper(lua_State *L)
{
    struct rules *r = state_of(L)->r;
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
        map_entry_build(L, r, 2, i, NULL, NULL, 0, &nkeys, &pool_need);
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
        map_entry_build(L, r, 4, i, m, &pl, 3, &nkeys, &dummy);
        lua_pop(L, 1);
    }
    lua_setiuservalue(L, 2, 1);
    luaL_setmetatable(L, MAPPER_MT);
    return 1;
}

/* mapper(pkt [, ts_ns]) -> number of metrics found (each published and/or written) */
static int mapper_call(lua_State *L)
{
    struct rule_state *st = state_of(L);
    struct rules *r = st->r;
    /* __call guarantees a mapper at 1; luaL_checkudata would look its metatable up by name. */
    const struct mapper *m = lua_touserdata(L, 1);
    if (!m)
        return luaL_error(L, "mapper: called without its mapper");
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t ts = check_ts(L, 3, st, "mapper");
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
            plen = lp_len = fmt_int(num, iv);
            if (e->line && (iv <= -INT64_C(1000000000000000) || iv >= INT64_C(1000000000000000))) {
                /* beyond the exact range: let the float formatter decide, as gw.point does */
                lp_len = 0;
            }
        } else {
            double v = lua_tonumber(L, -1);
            if (!isfinite(v))
                return luaL_error(L, "%s: non-finite number (nan/inf) cannot be %s", e->path,
                                  e->topic ? "sent" : "written");
            lp_len = (size_t)lp_format_double(num, 40, v);
            plen = lp_len;
            if (!strpbrk(num, ".eEn")) {
                memcpy(num + plen, ".0", 3);
                plen += 2;
            }
        }
        if (e->topic)
            emit_publish(r, e->topic, e->topic_len, num, plen, e->qos, e->retain);
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
            emit_point(r, e->line, SIZE_MAX);
        }
        lua_pop(L, 1);
    }
    lua_pushinteger(L, found);
    return 1;
}

/* Metatables of the gw userdata types; __metatable hides and locks them from rules. */
static void open_gw_types(lua_State *L)
{
    luaL_newmetatable(L, SERIES_MT);
    lua_pushcfunction(L, series_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, MAPPER_MT);
    lua_pushcfunction(L, mapper_call);
    lua_setfield(L, -2, "__call");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* gw.log(level, msg): level is "debug", "info", "warn" or "error". */
static int gw_log(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    int level = log_level_parse(lv);
    if (level < 0)
        return luaL_error(L, "gw.log: level must be \"debug\", \"info\", \"warn\" or \"error\"");
    const char *msg = luaL_tolstring(L, 2, NULL);
    char where[LUA_IDSIZE + 16];
    caller_where(L, where, sizeof where);
    emit_log(state_of(L), level, where, msg);
    return 0;
}

static int gw_now(lua_State *L)
{
    lua_pushnumber(L, (double)util_now_ns() / 1e9);
    return 1;
}

static int gw_now_ns(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)util_now_ns());
    return 1;
}

/* gw.iso8601([seconds]) -> "2026-11-24T21:51:30Z" (UTC, whole seconds; default now). */
static int gw_iso8601(lua_State *L)
{
    double t = lua_isnoneornil(L, 1) ? (double)util_now_ns() / 1e9 : luaL_checknumber(L, 1);
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
static int gw_json(lua_State *L)
{
    luaL_checkany(L, 1);
    push_json(L, 1, "gw.json");
    return 1;
}

static const luaL_Reg gw_funcs[] = {
    {"publish", gw_publish}, {"point", gw_point},
    {"log", gw_log},         {"now", gw_now},
    {"now_ns", gw_now_ns},   {"iso8601", gw_iso8601},
    {"json", gw_json},       {"series", gw_series},
    {"mapper", gw_mapper},   {NULL, NULL},
};

/* ------------------------------------------------------------------------------------ */
/* gw.state hand-over across a reload                                                   */
/* ------------------------------------------------------------------------------------ */

struct copy_ctx {
    lua_State *from;
    lua_State *to;
    int seen; /* index in `to` of {old table address -> new table} */
    size_t skipped;
};

/*
 * Push onto ctx->to a copy of the value at from_idx (absolute) in ctx->from. Returns 1 when a
 * value was pushed, 0 when the value was skipped (function, userdata, thread). Runs in a
 * protected call on `to` (allocations there may raise); `from` is only read.
 * Shared sub-tables and cycles are preserved through ctx->seen.
 */
static int copy_value(struct copy_ctx *c, int from_idx, int depth)
{
    lua_State *from = c->from, *to = c->to;
    switch (lua_type(from, from_idx)) {
    case LUA_TBOOLEAN:
        lua_pushboolean(to, lua_toboolean(from, from_idx));
        return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(from, from_idx))
            lua_pushinteger(to, lua_tointeger(from, from_idx));
        else
            lua_pushnumber(to, lua_tonumber(from, from_idx));
        return 1;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(from, from_idx, &len);
        lua_pushlstring(to, s, len);
        return 1;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(from, from_idx) == jsonlua_null()) {
            lua_pushlightuserdata(to, jsonlua_null());
            return 1;
        }
        c->skipped++;
        return 0;
    case LUA_TTABLE:
        break;
    default:
        c->skipped++;
        return 0;
    }
    if (depth >= STATE_MAX_DEPTH)
        luaL_error(to, "gw.state is nested deeper than %d levels", STATE_MAX_DEPTH);
    luaL_checkstack(to, 4, "gw.state copy");
    if (!lua_checkstack(from, 4))
        luaL_error(to, "gw.state copy: stack exhausted");
    lua_pushlightuserdata(to, (void *)lua_topointer(from, from_idx));
    if (lua_rawget(to, c->seen) == LUA_TTABLE)
        return 1; /* already copied: shared reference or cycle */
    lua_pop(to, 1);
    lua_newtable(to);
    lua_pushlightuserdata(to, (void *)lua_topointer(from, from_idx));
    lua_pushvalue(to, -2);
    lua_rawset(to, c->seen);
    int dst = lua_gettop(to);
    lua_pushnil(from);
    while (lua_next(from, from_idx)) {
        int top = lua_gettop(from);
        if (copy_value(c, top - 1, depth + 1)) {
            if (copy_value(c, top, depth + 1))
                lua_rawset(to, dst);
            else
                lua_pop(to, 1);
        }
        lua_pop(from, 1);
    }
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* State construction                                                                   */
/* ------------------------------------------------------------------------------------ */

struct setup_args {
    struct rule_state *st;
    struct rule_state *old; /* previous rule (gw.state source), or NULL */
    const char *code;
    size_t code_len;
};

static int sb_require(lua_State *L); /* "Modules" section below */

static void open_lib(lua_State *L, const char *name, lua_CFunction f)
{
    luaL_requiref(L, name, f, 1);
    lua_pop(L, 1);
}

static void set_global_fn(lua_State *L, const char *name, lua_CFunction f)
{
    if (f)
        lua_pushcfunction(L, f);
    else
        lua_pushnil(L);
    lua_setglobal(L, name);
}

/* Protected: libraries, sandbox, gw table (with the handed-over state), the compiled chunk. */
static int setup_state(lua_State *L)
{
    struct setup_args *a = lua_touserdata(L, 1);
    struct rule_state *st = a->st;
    struct rules *r = st->r;

    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    set_global_fn(L, "dofile", NULL);
    set_global_fn(L, "loadfile", NULL);
    set_global_fn(L, "require", sb_require);
    set_global_fn(L, "load", sb_load);
    set_global_fn(L, "collectgarbage", sb_collectgarbage);
    set_global_fn(L, "setmetatable", sb_setmetatable);
    set_global_fn(L, "pcall", sb_pcall);
    set_global_fn(L, "xpcall", sb_xpcall);
    set_global_fn(L, "print", sb_print);

    /* string.dump would hand out bytecode; lock the shared string metatable. */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_createtable(L, (int)(sizeof call_names / sizeof call_names[0]) - 1, 0);
    for (int i = 0; call_names[i]; i++) {
        lua_pushstring(L, call_names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    st->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    st->req_cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    st->req_stack_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* gw */
    open_gw_types(L);
    luaL_newlib(L, gw_funcs);
    lua_pushstring(L, r->prefix);
    lua_setfield(L, -2, "prefix");
    lua_pushlightuserdata(L, jsonlua_null());
    lua_setfield(L, -2, "null");
    int copied = 0;
    if (a->old) {
        lua_State *from = a->old->L;
        int ftop = lua_gettop(from);
        /* Find gw.state with lua_next: pushing the key "state" could allocate in the old
         * state outside any protected call. */
        lua_rawgeti(from, LUA_REGISTRYINDEX, a->old->gw_ref);
        lua_pushnil(from);
        while (lua_next(from, -2)) {
            if (lua_type(from, -2) == LUA_TSTRING && strcmp(lua_tostring(from, -2), "state") == 0)
                break;
            lua_pop(from, 1);
        }
        if (lua_gettop(from) > ftop + 1 && lua_type(from, -1) == LUA_TTABLE) {
            struct copy_ctx c = {.from = from, .to = L, .skipped = 0};
            lua_newtable(L);
            c.seen = lua_gettop(L);
            copy_value(&c, lua_gettop(from), 0);
            lua_remove(L, c.seen);
            copied = 1;
            if (c.skipped)
                log_warn("rule_state_skipped", "count=%zu why=%s", c.skipped,
                         "functions, userdata and threads in gw.state are not carried over");
        }
        lua_settop(from, ftop);
    }
    if (!copied)
        lua_newtable(L);
    lua_setfield(L, -2, "state");
    lua_pushvalue(L, -1);
    st->gw_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setglobal(L, "gw");

    /* Text mode only: precompiled bytecode is refused (it can crash the VM). */
    if (luaL_loadbufferx(L, a->code, a->code_len, r->chunkname, "t") != LUA_OK)
        return lua_error(L);
    st->chunk_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Make (and anchor) the call thread. Protected by the caller. */
static int make_thread(lua_State *L)
{
    struct rule_state *st = lua_touserdata(L, 1);
    st->co = lua_newthread(L);
    st->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void drop_thread(struct rule_state *st)
{
    if (!st->co)
        return;
    luaL_unref(st->L, LUA_REGISTRYINDEX, st->co_ref);
    st->co = NULL;
    st->co_ref = LUA_NOREF;
}

static void rs_free(struct rule_state *st)
{
    if (!st)
        return;
    if (st->L)
        lua_close(st->L);
    free(st);
}

/* ------------------------------------------------------------------------------------ */
/* Calling into the rule                                                                */
/* ------------------------------------------------------------------------------------ */

static int trampoline_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)L, (void)status, (void)ctx;
    return 0; /* only reached if a yielded call were resumed, which never happens */
}

/* Push the global named call_names[id-1] without running _G metamethods; returns 1 if it is
 * a function (pushed), else 0 (nothing pushed). Leaves the names table at names_idx. */
static int get_hook(lua_State *L, int names_idx, enum name_id id)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_rawgeti(L, names_idx, id);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TFUNCTION)
        return 1;
    lua_pop(L, 1);
    return 0;
}

static void push_meta(lua_State *L, int names_idx, const struct call *c)
{
    lua_createtable(L, 0, 3);
    lua_rawgeti(L, names_idx, NM_SOURCE);
    lua_pushstring(L, c->source ? c->source : "");
    lua_rawset(L, -3);
    lua_rawgeti(L, names_idx, NM_LINE);
    lua_pushinteger(L, (lua_Integer)c->line_no);
    lua_rawset(L, -3);
    lua_rawgeti(L, names_idx, NM_RX_NS);
    lua_pushinteger(L, (lua_Integer)c->rx_ns);
    lua_rawset(L, -3);
}

/*
 * Body of the call coroutine: everything that allocates (decode, meta table) happens here,
 * under lua_resume's protection and the memory cap; the rule itself runs via lua_callk so the
 * budget hook can yield through this C frame.
 */
static int trampoline(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    struct rule_state *st = state_of(L);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->names_ref); /* 1: names; stays under the call */
    int nargs = 0;
    switch (c->kind) {
    case CALL_CHUNK:
        lua_rawgeti(L, LUA_REGISTRYINDEX, st->chunk_ref);
        break;
    case CALL_INIT:
        if (!get_hook(L, 1, NM_INIT))
            return 0;
        break;
    case CALL_PACKET:
        if (!get_hook(L, 1, NM_ON_PACKET))
            return 0;
        char why[128];
        if (jsonlua_decode(L, c->text, c->len, why, sizeof why)) {
            c->decode_failed = true;
            set_err(c->err, c->errlen, "invalid JSON at %s", why);
            return 0;
        }
        push_meta(L, 1, c);
        nargs = 2;
        break;
    case CALL_LINE:
        if (!get_hook(L, 1, NM_ON_LINE))
            return 0;
        lua_pushlstring(L, c->text, c->len);
        push_meta(L, 1, c);
        nargs = 2;
        break;
    case CALL_TICK:
        if (!get_hook(L, 1, NM_ON_TICK))
            return 0;
        lua_pushnumber(L, c->now);
        nargs = 1;
        break;
    }
    lua_callk(L, nargs, 0, 0, trampoline_k);
    return 0;
}

/* "file:line" of the innermost frame that belongs to the rule file, or just the file. */
static void rule_where(struct rule_state *st, lua_State *co, char *out, size_t n)
{
    lua_Debug ar;
    for (int level = 0; lua_getstack(co, level, &ar); level++) {
        if (!lua_getinfo(co, "Sl", &ar))
            continue;
        if (ar.currentline > 0 && strcmp(ar.source, st->r->chunkname) == 0) {
            snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    }
    snprintf(out, n, "%s", st->r->short_src);
}

/* Turn a failed call into "file:line: message" (keeping Lua's own position when it has one). */
static void format_error(struct rule_state *st, lua_State *co, int status, char *err, size_t errlen)
{
    char where[LUA_IDSIZE + 24];
    rule_where(st, co, where, sizeof where);
    if (status == LUA_YIELD || st->overrun) {
        set_err(err, errlen, "%s: instruction budget exceeded (%llu instructions)",
                st->overrun ? st->overrun_where : where, (unsigned long long)st->r->instr_limit);
        return;
    }
    const char *msg = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
    if (!msg) {
        set_err(err, errlen, "%s: (error object is a %s value)", where, luaL_typename(co, -1));
        return;
    }
    size_t sl = strlen(st->r->short_src);
    if (strncmp(msg, st->r->short_src, sl) == 0 && msg[sl] == ':')
        set_err(err, errlen, "%s", msg);
    else
        set_err(err, errlen, "%s: %s", where, msg);
}

/* Run one call on the state's coroutine. Returns 0, -EBADMSG or -ECANCELED (err set). */
static int rs_call(struct rule_state *st, struct call *c)
{
    struct rules *r = st->r;
    if (!st->co) {
        lua_pushcfunction(st->L, make_thread);
        lua_pushlightuserdata(st->L, st);
        if (lua_pcall(st->L, 1, 0, 0) != LUA_OK) {
            lua_pop(st->L, 1);
            st->co = NULL;
            r->stats.errors++;
            set_err(c->err, c->errlen, "%s: not enough memory for a call", r->short_src);
            return -ECANCELED;
        }
    }
    lua_State *co = st->co;
    arm_budget(st, co);
    lua_pushcfunction(co, trampoline);
    lua_pushlightuserdata(co, c);
    int nres = 0;
    double t0 = util_mono();
    int status = lua_resume(co, st->L, 1, &nres);
    double dt = util_mono() - t0;
    r->stats.time_total += dt;
    if (dt > r->stats.time_max)
        r->stats.time_max = dt;
    if (status == LUA_OK && !st->overrun) {
        lua_settop(co, 0);
        if (c->decode_failed) {
            r->stats.decode_errors++;
            return -EBADMSG;
        }
        return 0;
    }
    format_error(st, co, status, c->err, c->errlen);
    st->req_depth = 0; /* a require abandoned by an overrun never popped its stack entry */
    if (status == LUA_YIELD || st->overrun)
        r->stats.overruns++;
    else
        r->stats.errors++;
    drop_thread(st);
    /* A bomb leaves garbage right under the cap: collect it now rather than mid-packet. */
    if (st->mem_used > st->mem_limit / 2)
        lua_gc(st->L, LUA_GCCOLLECT);
    return -ECANCELED;
}

/* ------------------------------------------------------------------------------------ */
/* Building a rule from its file                                                        */
/* ------------------------------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    char *p = NULL;
    int rc;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(sb.st_mode) || (size_t)sb.st_size > MAX_RULE_SIZE) {
        rc = S_ISREG(sb.st_mode) ? -EFBIG : -EINVAL;
        goto fail;
    }
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    p = malloc(cap);
    if (!p) {
        rc = -ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t got = read(fd, p + n, cap - n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto fail;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n == cap) { /* file grew while reading: refuse rather than chase it */
            rc = -EFBIG;
            goto fail;
        }
    }
    close(fd);
    *out = p;
    *len = n;
    return 0;
fail:
    free(p);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Modules: the sandboxed require                                                       */
/* ------------------------------------------------------------------------------------ */

/*
 * require(name) for rules, replacing the stock one (which reads any file, loads bytecode and
 * C libraries, and exposes `package` for path games). Here:
 *   - the name is a dotted identifier, so it cannot climb out of a search directory;
 *   - the file is DIR/name.lua for the directories of r->lua_dirs, read in text mode only;
 *   - the chunk gets the rule's globals as _ENV (lua_load's default) and runs on the calling
 *     coroutine with lua_pcallk, so the memory cap and the instruction budget of the current
 *     call cover it (the budget hook can yield through this C frame);
 *   - results are cached in a registry table (unreachable from Lua), so each module body runs
 *     once per rule state, i.e. once per load or reload;
 *   - the names being loaded sit on a small stack (registry table + st->req_depth) so that a
 *     cycle is an error naming the chain instead of a half-initialised module.
 * A call abandoned by a budget overrun never reaches req_finish: rs_call resets req_depth,
 * which is what makes the stack consistent again (entries above req_depth are ignored).
 */

/* Stack slots of sb_require (and its continuation). */
enum { REQ_IDX_NAME = 1, REQ_IDX_CACHE, REQ_IDX_STACK, REQ_IDX_PATH };

/* [A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)* and not absurdly long. */
static bool module_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > REQ_MAX_NAME)
        return false;
    bool start = true; /* at the first character of a component */
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
        bool digit = ch >= '0' && ch <= '9';
        if (ch == '.') {
            if (start)
                return false;
            start = true;
        } else if (alpha || (digit && !start)) {
            start = false;
        } else {
            return false;
        }
    }
    return !start;
}

/* Continuation of sb_require (also called directly): pop the loading stack, cache, return. */
static int req_finish(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    struct rule_state *st = state_of(L);
    if (st->req_depth > 0) {
        lua_pushnil(L); /* clearing an existing slot never allocates */
        lua_rawseti(L, REQ_IDX_STACK, st->req_depth);
        st->req_depth--;
    }
    if (status != LUA_OK && status != LUA_YIELD)
        return lua_error(L); /* module error or spent budget: pass it on unchanged */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1); /* as stock require: a module returning nothing is `true` */
    }
    lua_pushvalue(L, REQ_IDX_NAME);
    lua_pushvalue(L, -2);
    lua_rawset(L, REQ_IDX_CACHE);
    return 1;
}

static int sb_require(lua_State *L)
{
    struct rule_state *st = state_of(L);
    struct rules *r = st->r;
    size_t nlen;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "module name (string) expected");
    const char *name = lua_tolstring(L, 1, &nlen);
    if (!module_name_ok(name, nlen))
        return luaL_error(L,
                          "require: invalid module name '%s' (allowed: identifiers joined "
                          "by dots, e.g. \"alerts\" or \"site.pumps\")",
                          name);
    lua_settop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->req_cache_ref); /* REQ_IDX_CACHE */
    lua_pushvalue(L, REQ_IDX_NAME);
    if (lua_rawget(L, REQ_IDX_CACHE) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->req_stack_ref); /* REQ_IDX_STACK */
    for (int i = 1; i <= st->req_depth; i++) {
        lua_rawgeti(L, REQ_IDX_STACK, i);
        bool cycle = lua_rawequal(L, -1, REQ_IDX_NAME);
        lua_pop(L, 1);
        if (!cycle)
            continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (int j = i; j <= st->req_depth; j++) {
            lua_rawgeti(L, REQ_IDX_STACK, j);
            luaL_addvalue(&b);
            luaL_addstring(&b, " -> ");
        }
        luaL_addlstring(&b, name, nlen);
        luaL_pushresult(&b);
        return luaL_error(L, "require: cyclic dependency: %s", lua_tostring(L, -1));
    }
    if (st->req_depth >= REQ_MAX_DEPTH)
        return luaL_error(L, "require: modules nested deeper than %d", REQ_MAX_DEPTH);

    /* "site.pumps" -> "site/pumps" */
    char rel[REQ_MAX_NAME + 1];
    memcpy(rel, name, nlen + 1);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';

    char *code = NULL;
    size_t code_len = 0;
    size_t d;
    for (d = 0; d < r->nlua_dirs; d++) {
        /* Both strings exist before the file is read, so nothing can raise (and leak `code`)
         * between read_file and free. */
        lua_pushfstring(L, "%s/%s.lua", r->lua_dirs[d], rel);     /* REQ_IDX_PATH */
        lua_pushfstring(L, "@%s", lua_tostring(L, REQ_IDX_PATH)); /* REQ_IDX_PATH + 1 */
        int rc = read_file(lua_tostring(L, REQ_IDX_PATH), &code, &code_len);
        if (rc == 0)
            break;
        if (rc != -ENOENT && rc != -ENOTDIR)
            return luaL_error(L, "require: cannot read module '%s' from %s: %s", name,
                              lua_tostring(L, REQ_IDX_PATH),
                              rc == -EINVAL ? "not a regular file" : strerror(-rc));
        lua_pop(L, 2);
    }
    if (d == r->nlua_dirs) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; i < r->nlua_dirs; i++) {
            lua_pushfstring(L, "%s%s/%s.lua", i ? ", " : "", r->lua_dirs[i], rel);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        return luaL_error(L, "require: module '%s' not found (tried %s)", name,
                          lua_tostring(L, -1));
    }
    /* Text mode only, as for the rule file: bytecode is refused. */
    int status = luaL_loadbufferx(L, code, code_len, lua_tostring(L, REQ_IDX_PATH + 1), "t");
    free(code);
    if (status != LUA_OK)
        return luaL_error(L, "require: error loading module '%s' from %s: %s", name,
                          lua_tostring(L, REQ_IDX_PATH), lua_tostring(L, -1));

    lua_pushvalue(L, REQ_IDX_NAME);
    lua_rawseti(L, REQ_IDX_STACK, st->req_depth + 1);
    st->req_depth++;
    /* The module sees (name, path) in `...`, as with the stock require. */
    lua_pushvalue(L, REQ_IDX_NAME);
    lua_pushvalue(L, REQ_IDX_PATH);
    int cs = lua_pcallk(L, 2, 1, 0, 0, req_finish);
    return req_finish(L, cs, 0);
}

/*
 * Build a complete rule state: sandbox, gw (state copied from `old`), chunk run, init().
 * On success *out is ready to serve; on failure nothing changes and err says why.
 */
static int rs_build(struct rules *r, struct rule_state *old, struct rule_state **out, char *err,
                    size_t errlen)
{
    char *code = NULL;
    size_t code_len = 0;
    int rc = read_file(r->path, &code, &code_len);
    if (rc) {
        set_err(err, errlen, "%s: cannot read rule file: %s", r->path, strerror(-rc));
        return rc;
    }
    struct rule_state *st = calloc(1, sizeof *st);
    if (!st) {
        rc = -ENOMEM;
        set_err(err, errlen, "%s: out of memory", r->path);
        goto fail;
    }
    st->r = r;
    st->mem_limit = r->mem_limit;
    st->co_ref = st->gw_ref = st->chunk_ref = st->names_ref = LUA_NOREF;
    st->req_cache_ref = st->req_stack_ref = LUA_NOREF;
    st->ts_ns = util_now_ns();
    st->L = lua_newstate(sb_alloc, st);
    if (!st->L) {
        rc = -ENOMEM;
        set_err(err, errlen, "%s: cannot create a Lua state (memory limit too small?)", r->path);
        goto fail;
    }
    *(struct rule_state **)lua_getextraspace(st->L) = st;
    lua_atpanic(st->L, sb_panic);
    /* Generational GC: per packet a rule makes a handful of tables that die at once (the
     * decoded packet, meta); a young collection frees them without re-traversing the rule's
     * long-lived constants and gw.state. Measured ~4% more packets/s than incremental. */
    lua_gc(st->L, LUA_GCGEN, 0, 0);

    struct setup_args a = {.st = st, .old = old, .code = code, .code_len = code_len};
    lua_pushcfunction(st->L, setup_state);
    lua_pushlightuserdata(st->L, &a);
    if (lua_pcall(st->L, 1, 0, 0) != LUA_OK) {
        const char *m = lua_tostring(st->L, -1);
        set_err(err, errlen, "%s", m ? m : "error while loading the rule");
        rc = -EINVAL;
        goto fail;
    }
    free(code);
    code = NULL;

    struct call c = {.kind = CALL_CHUNK, .err = err, .errlen = errlen};
    if (rs_call(st, &c)) {
        rc = -EINVAL;
        goto fail;
    }
    luaL_unref(st->L, LUA_REGISTRYINDEX, st->chunk_ref);
    st->chunk_ref = LUA_NOREF;
    st->ts_ns = util_now_ns();
    c.kind = CALL_INIT;
    if (rs_call(st, &c)) {
        rc = -EINVAL;
        goto fail;
    }
    *out = st;
    return 0;
fail:
    free(code);
    rs_free(st);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Module search path                                                                   */
/* ------------------------------------------------------------------------------------ */

/* Append a copy of s[0..n) (trailing '/' dropped, "/" kept) to r->lua_dirs. */
static int lua_dirs_add(struct rules *r, const char *s, size_t n, char *err, size_t errlen)
{
    while (n > 1 && s[n - 1] == '/')
        n--;
    if (r->nlua_dirs == REQ_MAX_DIRS) {
        set_err(err, errlen, "lua_path: more than %d directories", REQ_MAX_DIRS);
        return -EINVAL;
    }
    char *d = malloc(n + 1);
    if (!d) {
        set_err(err, errlen, "rules_open: out of memory");
        return -ENOMEM;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    r->lua_dirs[r->nlua_dirs++] = d;
    return 0;
}

/*
 * lua_path ("dir;dir;...") or, when NULL/empty, the default: the rule file's directory, the
 * `lua` directory next to it (<rule dir>/../lua, computed lexically so that rules/x.lua gives
 * "lua" and /etc/iiotgw/rules/x.lua gives /etc/iiotgw/lua, which is what a reader of the
 * error message expects), then DEFAULT_LUA_DIR.
 */
static int lua_dirs_init(struct rules *r, const char *lua_path, char *err, size_t errlen)
{
    r->lua_dirs = calloc(REQ_MAX_DIRS, sizeof *r->lua_dirs);
    if (!r->lua_dirs) {
        set_err(err, errlen, "rules_open: out of memory");
        return -ENOMEM;
    }
    int rc;
    if (lua_path && *lua_path) {
        for (const char *p = lua_path; *p;) {
            size_t n = strcspn(p, ";");
            if (n && (rc = lua_dirs_add(r, p, n, err, errlen)))
                return rc;
            p += n + (p[n] == ';');
        }
        if (r->nlua_dirs)
            return 0;
        set_err(err, errlen, "lua_path: no directory in \"%s\"", lua_path);
        return -EINVAL;
    }
    /* rule directory */
    const char *slash = strrchr(r->path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == r->path)
        dir = strdup("/");
    else
        dir = strndup(r->path, (size_t)(slash - r->path));
    if (!dir) {
        set_err(err, errlen, "rules_open: out of memory");
        return -ENOMEM;
    }
    rc = lua_dirs_add(r, dir, strlen(dir), err, errlen);
    /* its sibling "lua" */
    char sib[PATH_MAX];
    const char *ds = strrchr(dir, '/');
    const char *last = ds ? ds + 1 : dir;
    if (strcmp(dir, "/") == 0)
        snprintf(sib, sizeof sib, "/lua");
    else if (strcmp(dir, ".") == 0)
        snprintf(sib, sizeof sib, "../lua");
    else if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0 || !*last)
        snprintf(sib, sizeof sib, "%s/../lua", dir);
    else if (!ds)
        snprintf(sib, sizeof sib, "lua");
    else if (ds == dir)
        snprintf(sib, sizeof sib, "/lua");
    else
        snprintf(sib, sizeof sib, "%.*s/lua", (int)(ds - dir), dir);
    free(dir);
    if (!rc)
        rc = lua_dirs_add(r, sib, strlen(sib), err, errlen);
    if (!rc)
        rc = lua_dirs_add(r, DEFAULT_LUA_DIR, strlen(DEFAULT_LUA_DIR), err, errlen);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                           */
/* ------------------------------------------------------------------------------------ */

int rules_open(struct rules **out, const struct rules_config *cfg, const struct rule_sink *sink,
               char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->path || !sink) {
        set_err(err, errlen, "rules_open: missing path or sink");
        return -EINVAL;
    }
    struct rules *r = calloc(1, sizeof *r);
    int rc = -ENOMEM;
    if (!r)
        goto nomem;
    r->path = strdup(cfg->path);
    r->prefix = strdup(cfg->prefix ? cfg->prefix : "iiot");
    size_t pl = strlen(cfg->path);
    r->chunkname = malloc(pl + 2);
    if (!r->path || !r->prefix || !r->chunkname)
        goto nomem;
    r->chunkname[0] = '@';
    memcpy(r->chunkname + 1, cfg->path, pl + 1);
    /* Lua's short_src for "@path": the path, or "..." + its tail when too long. */
    if (pl < LUA_IDSIZE)
        memcpy(r->short_src, cfg->path, pl + 1);
    else
        snprintf(r->short_src, sizeof r->short_src, "...%s", cfg->path + pl - (LUA_IDSIZE - 4));
    r->mem_limit = cfg->mem_limit ? cfg->mem_limit : DEFAULT_MEM_LIMIT;
    r->instr_limit = cfg->instr_limit ? cfg->instr_limit : DEFAULT_INSTR_LIMIT;
    r->sink = *sink;
    rc = lua_dirs_init(r, cfg->lua_path, err, errlen);
    if (rc)
        goto fail;
    rc = rs_build(r, NULL, &r->live, err, errlen);
    if (rc)
        goto fail;
    *out = r;
    return 0;
nomem:
    set_err(err, errlen, "rules_open: out of memory");
fail:
    rules_close(r);
    return rc;
}

int rules_reload(struct rules *r, char *err, size_t errlen)
{
    struct rule_state *ns = NULL;
    int rc = rs_build(r, r->live, &ns, err, errlen);
    if (rc) {
        r->stats.reload_failures++;
        return rc;
    }
    /* Calls are synchronous: between two calls nothing is in flight, so this is atomic. */
    rs_free(r->live);
    r->live = ns;
    r->stats.reloads++;
    return 0;
}

int rules_packet(struct rules *r, const struct packet *pkt, char *err, size_t errlen)
{
    struct rule_state *st = r->live;
    struct call c = {.kind = CALL_PACKET,
                     .source = pkt->source,
                     .line_no = pkt->line_no,
                     .rx_ns = pkt->rx_ns,
                     .text = pkt->json,
                     .len = pkt->json_len,
                     .err = err,
                     .errlen = errlen};
    st->ts_ns = pkt->rx_ns;
    r->stats.calls++;
    return rs_call(st, &c);
}

int rules_line(struct rules *r, const char *source, uint64_t line_no, int64_t rx_ns,
               const char *text, size_t len, char *err, size_t errlen)
{
    struct rule_state *st = r->live;
    struct call c = {.kind = CALL_LINE,
                     .source = source,
                     .line_no = line_no,
                     .rx_ns = rx_ns,
                     .text = text,
                     .len = len,
                     .err = err,
                     .errlen = errlen};
    st->ts_ns = rx_ns;
    r->stats.calls++;
    return rs_call(st, &c);
}

int rules_tick(struct rules *r, int64_t now_ns, char *err, size_t errlen)
{
    struct rule_state *st = r->live;
    struct call c = {.kind = CALL_TICK, .now = (double)now_ns / 1e9, .err = err, .errlen = errlen};
    st->ts_ns = now_ns;
    r->stats.calls++;
    return rs_call(st, &c);
}

void rules_get_stats(const struct rules *r, struct rules_stats *out)
{
    *out = r->stats;
    out->mem_used = r->live ? r->live->mem_used : 0;
}

const char *rules_path(const struct rules *r)
{
    return r->path;
}

void rules_close(struct rules *r)
{
    if (!r)
        return;
    rs_free(r->live);
    buf_free(&r->lp);
    free(r->path);
    free(r->prefix);
    free(r->chunkname);
    for (size_t i = 0; i < r->nlua_dirs; i++)
        free(r->lua_dirs[i]);
    free(r->lua_dirs);
    free(r);
}
