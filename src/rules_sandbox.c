/*
 * rules_sandbox.c — what keeps a rule from hurting the gateway: the capped allocator, the
 * instruction budget, the sandboxed base functions and require() of rule modules with its
 * search path. rules.c builds and calls states with these; rules_int.h has the declarations.
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
 *   - A coroutine that failed or overran is dropped by rules.c (not lua_resetthread'ed:
 *     resetting runs pending __close handlers outside the yieldable context, i.e. more rule
 *     code without a reliable budget); the next call makes a fresh one. A coroutine that
 *     finished normally is reused, which is the common case and saves a thread allocation
 *     per packet.
 *
 *   - The same hook looks at the monotonic clock every HOOK_PERIOD instructions and ends a
 *     call that has run longer than its time limit (rule_time_limit) the same way; so do
 *     large allocations (an instruction that copies megabytes) and the loops of the library
 *     functions that run without VM instructions, which rules_lualib.c replaces with bounded
 *     versions (string.rep, table.move/concat/sort, the pattern functions). load() takes chunks
 *     of at most RULES_MAX_RULE_SIZE bytes, as for a rule file.
 */
#include "rules_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "log.h"
#include "util.h"

#define OVERRUN_RECHECK 1000 /* hook period once the budget is spent */
/* Instructions between two looks at the clock. Lua traps every instruction while any count
 * hook is set, so the period only decides how often the C hook runs: once per 1000
 * instructions costs well under 1% of the instructions' own time. */
#define HOOK_PERIOD 1000u
/* Allocations at least this big look at the clock: an instruction that copies megabytes
 * (a concatenation of long strings) can take milliseconds, so a thousand of them would
 * overshoot the time limit by seconds. */
#define ALLOC_CHECK_BYTES (64u * 1024u)
#define REQ_MAX_NAME      128 /* bytes of a module name */
#define REQ_MAX_DEPTH     32  /* modules requiring modules */
#define REQ_MAX_DIRS      16  /* entries of the module search path */
/* Built-in search path after the rule's own directories: site modules first (what an
 * administrator adds, also the Docker image's place), then the package's own modules. */
#define SITE_LUA_DIR "/usr/local/share/iiotgw/lua"
#ifndef IIOTGW_DATADIR
#define IIOTGW_DATADIR "/usr/share/iiotgw"
#endif
#define DIST_LUA_DIR IIOTGW_DATADIR "/lua"

/* ------------------------------------------------------------------------------------ */
/* Memory cap                                                                           */
/* ------------------------------------------------------------------------------------ */

/*
 * lua_Alloc that counts live bytes and refuses growth past the cap. Refusing makes Lua run
 * an emergency collection and retry, then raise "not enough memory". Shrinks and frees are
 * never refused (Lua may not expect them to fail).
 */
static void rules_sbx_hook(lua_State *L, lua_Debug *ar);
static void rules_sbx_set_overrun(struct rule_state *st, lua_State *L, enum rules_overrun kind,
                                  bool locate);

static void *rules_sbx_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
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
    if (nsize >= ALLOC_CHECK_BYTES && nsize > osize && st->in_call &&
        (st->overrun || util_mono() >= st->deadline)) {
        /* Refusing raises a memory error; with st->overrun set it cannot be caught by the
         * rule (the sandbox's pcall re-raises) and rules.c reports the time limit. Once
         * overrun, large allocations stay refused: Lua retries a refused one after an
         * emergency collection, and the call must not go on copying megabytes. */
        rules_sbx_set_overrun(st, NULL, RULES_OVERRUN_TIME, false);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    st->mem_used = st->mem_used - osize + nsize;
    return p;
}

static int rules_sbx_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("rule_panic", "msg=%s", log_q(msg ? msg : "?"));
    abort(); /* unreachable by design: every entry into Lua is protected */
}

lua_State *rules_sbx_newstate(struct rule_state *st)
{
    lua_State *L = lua_newstate(rules_sbx_alloc, st);
    if (!L)
        return NULL;
    *(struct rule_state **)lua_getextraspace(L) = st;
    lua_atpanic(L, rules_sbx_panic);
    return L;
}

/* ------------------------------------------------------------------------------------ */
/* Instruction budget                                                                   */
/* ------------------------------------------------------------------------------------ */

/*
 * Mark the current call as overrun (instructions or time) and make the hook fire often, so
 * that it keeps yielding or raising until the call is gone. `locate`: record the rule's
 * "file:line" now (once yielded, the top frame's pc is rewound by one instruction and
 * lua_getinfo would report the previous line); the allocator cannot (lua_getinfo inside an
 * allocation is not safe), rules.c then locates it from the dead coroutine.
 */
static void rules_sbx_set_overrun(struct rule_state *st, lua_State *L, enum rules_overrun kind,
                                  bool locate)
{
    if (st->overrun)
        return;
    st->overrun = true;
    st->overrun_kind = kind;
    st->overrun_what = NULL;
    st->overrun_where[0] = '\0';
    if (locate) {
        lua_sethook(L, rules_sbx_hook, LUA_MASKCOUNT, OVERRUN_RECHECK);
        rules_where(st, L, st->overrun_where, sizeof st->overrun_where);
    }
}

/*
 * The count hook fires every HOOK_PERIOD instructions (or fewer, for the last part of the
 * budget): it charges the period to the budget and looks at the monotonic clock, so both the
 * instruction budget and the call time limit are enforced with one cheap check per thousand
 * instructions.
 */
static void rules_sbx_hook(lua_State *L, lua_Debug *ar)
{
    struct rule_state *st = rules_state_of(L);
    if (ar->event != LUA_HOOKCOUNT)
        return;
    if (!st->overrun) {
        if (util_mono() >= st->deadline) {
            rules_sbx_set_overrun(st, L, RULES_OVERRUN_TIME, true);
        } else if (st->instr_left > 0) {
            uint64_t n = st->instr_left > HOOK_PERIOD ? HOOK_PERIOD : st->instr_left;
            st->instr_left -= n;
            if (n != HOOK_PERIOD) /* the last, shorter period of the budget */
                lua_sethook(L, rules_sbx_hook, LUA_MASKCOUNT, (int)n);
            return;
        } else {
            rules_sbx_set_overrun(st, L, RULES_OVERRUN_INSTR, true);
        }
    }
    if (!st->overrun_where[0]) /* overrun noticed by the allocator, which cannot locate it */
        rules_where(st, L, st->overrun_where, sizeof st->overrun_where);
    if (lua_isyieldable(L)) {
        lua_yield(L, 0); /* unwinds to lua_resume with LUA_YIELD: no pcall sees it */
        return;
    }
    luaL_error(L, "%s",
               st->overrun_kind == RULES_OVERRUN_TIME ? "call time limit exceeded"
                                                      : "instruction budget exceeded");
}

void rules_sbx_arm_budget(struct rule_state *st, lua_State *co, double now)
{
    uint64_t lim = st->r->instr_limit;
    uint64_t n = lim > HOOK_PERIOD ? HOOK_PERIOD : lim;
    st->instr_left = lim - n;
    st->overrun = false;
    st->deadline = now + st->r->time_limit;
    st->in_call = true;
    lua_sethook(co, rules_sbx_hook, LUA_MASKCOUNT, (int)n);
}

void rules_sbx_check_time(lua_State *L, const char *what)
{
    struct rule_state *st = rules_state_of(L);
    if (!st->in_call)
        return;
    if (!st->overrun) {
        if (util_mono() < st->deadline)
            return;
        rules_sbx_set_overrun(st, L, RULES_OVERRUN_TIME, true);
        st->overrun_what = what;
    }
    const char *why = st->overrun_kind == RULES_OVERRUN_TIME ? "call time limit exceeded"
                                                             : "instruction budget exceeded";
    if (what)
        luaL_error(L, "%s (%s)", what, why);
    luaL_error(L, "%s", why);
}

/* ------------------------------------------------------------------------------------ */
/* Sandboxed base functions                                                             */
/* ------------------------------------------------------------------------------------ */

/* Same as the stock pcall/xpcall continuation, except a spent budget is re-raised. */
static int rules_sbx_finishpcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        if (rules_state_of(L)->overrun)
            return lua_error(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int rules_sbx_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, rules_sbx_finishpcall);
    return rules_sbx_finishpcall(L, status, 0);
}

/*
 * xpcall's message handler, wrapped. When the hook raised the budget error, Lua calls the
 * handler while hooks are still disabled (allowhook is only restored when the error is
 * caught), so a looping handler would run forever: once the budget is spent the user's
 * handler is not called at all.
 */
static int rules_sbx_msgh(lua_State *L)
{
    if (rules_state_of(L)->overrun)
        return 1; /* the error object, unchanged */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int rules_sbx_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, rules_sbx_msgh, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, rules_sbx_finishpcall);
    return rules_sbx_finishpcall(L, status, 2);
}

/* load(chunk [, chunkname [, mode [, env]]]): string chunks only, always text mode. */
static int rules_sbx_load(lua_State *L)
{
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "string expected (rules cannot load from functions)");
    const char *s = lua_tolstring(L, 1, &len);
    if (len > RULES_MAX_RULE_SIZE)
        return luaL_error(L, "load: chunk of %I bytes is larger than %d bytes", (LUAI_UACINT)len,
                          (int)RULES_MAX_RULE_SIZE);
    const char *name = luaL_optstring(L, 2, s);
    int has_env = !lua_isnone(L, 4);
    int status = luaL_loadbufferx(L, s, len, name, "t");
    if (status != LUA_OK && rules_state_of(L)->overrun)
        return lua_error(L); /* the parser ran out of time: not the chunk's fault, not catchable */
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

static int rules_sbx_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is available to rules");
    lua_pushnumber(L,
                   (double)lua_gc(L, LUA_GCCOUNT, 0) + (double)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

static int rules_sbx_setmetatable(lua_State *L)
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

/* print(...) goes to the gateway log at info level, arguments separated by tabs. */
static int rules_sbx_print(lua_State *L)
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
    rules_api_log_caller(L, LL_INFO, lua_tostring(L, -1));
    return 0;
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
 * A call abandoned by a budget overrun never reaches rules_sbx_req_finish: rules_call resets
 * req_depth, which is what makes the stack consistent again (entries above req_depth are ignored).
 */

/* Stack slots of rules_sbx_require (and its continuation). */
enum { REQ_IDX_NAME = 1, REQ_IDX_CACHE, REQ_IDX_STACK, REQ_IDX_PATH };

/* [A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)* and not absurdly long. */
static bool rules_sbx_module_name_ok(const char *s, size_t len)
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

/* Continuation of rules_sbx_require (also called directly): pop the loading stack, cache, return.
 */
static int rules_sbx_req_finish(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    struct rule_state *st = rules_state_of(L);
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

static int rules_sbx_require(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    struct rules *r = st->r;
    size_t nlen;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, "module name (string) expected");
    const char *name = lua_tolstring(L, 1, &nlen);
    if (!rules_sbx_module_name_ok(name, nlen))
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
         * between rules_read_file and free. */
        lua_pushfstring(L, "%s/%s.lua", r->lua_dirs[d], rel);     /* REQ_IDX_PATH */
        lua_pushfstring(L, "@%s", lua_tostring(L, REQ_IDX_PATH)); /* REQ_IDX_PATH + 1 */
        int rc = rules_read_file(lua_tostring(L, REQ_IDX_PATH), &code, &code_len);
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
    int cs = lua_pcallk(L, 2, 1, 0, 0, rules_sbx_req_finish);
    return rules_sbx_req_finish(L, cs, 0);
}

/* ------------------------------------------------------------------------------------ */
/* The globals of a rule                                                                */
/* ------------------------------------------------------------------------------------ */

static void rules_sbx_open_lib(lua_State *L, const char *name, lua_CFunction f)
{
    luaL_requiref(L, name, f, 1);
    lua_pop(L, 1);
}

static void rules_sbx_set_global(lua_State *L, const char *name, lua_CFunction f)
{
    if (f)
        lua_pushcfunction(L, f);
    else
        lua_pushnil(L);
    lua_setglobal(L, name);
}

/*
 * The globals a rule sees: base/string/table/math/utf8 only, with the replacements above and
 * the sandboxed require; string.dump (bytecode) removed, the shared string metatable locked.
 */
void rules_sbx_open(lua_State *L, struct rule_state *st)
{
    rules_sbx_open_lib(L, LUA_GNAME, luaopen_base);
    rules_sbx_open_lib(L, LUA_STRLIBNAME, luaopen_string);
    rules_sbx_open_lib(L, LUA_TABLIBNAME, luaopen_table);
    rules_sbx_open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    rules_sbx_open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    rules_sbx_set_global(L, "dofile", NULL);
    rules_sbx_set_global(L, "loadfile", NULL);
    rules_sbx_set_global(L, "require", rules_sbx_require);
    rules_sbx_set_global(L, "load", rules_sbx_load);
    rules_sbx_set_global(L, "collectgarbage", rules_sbx_collectgarbage);
    rules_sbx_set_global(L, "setmetatable", rules_sbx_setmetatable);
    rules_sbx_set_global(L, "pcall", rules_sbx_pcall);
    rules_sbx_set_global(L, "xpcall", rules_sbx_xpcall);
    rules_sbx_set_global(L, "print", rules_sbx_print);
    rules_lualib_open(L);

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

    /* require's cache and loading stack, in the registry: unreachable from Lua. */
    lua_newtable(L);
    st->req_cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    st->req_stack_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------------------------------------ */
/* Module search path                                                                   */
/* ------------------------------------------------------------------------------------ */

/* Append a copy of s[0..n) (trailing '/' dropped, "/" kept) to r->lua_dirs. */
static int rules_sbx_dirs_add(struct rules *r, const char *s, size_t n, char *err, size_t errlen)
{
    while (n > 1 && s[n - 1] == '/')
        n--;
    if (r->nlua_dirs == REQ_MAX_DIRS) {
        util_set_err(err, errlen, "lua_path: more than %d directories", REQ_MAX_DIRS);
        return -EINVAL;
    }
    char *d = malloc(n + 1);
    if (!d) {
        util_set_err(err, errlen, "rules_open: out of memory");
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
 * error message expects), then SITE_LUA_DIR and DIST_LUA_DIR (once if they are the same).
 */
int rules_sbx_dirs_init(struct rules *r, const char *lua_path, char *err, size_t errlen)
{
    r->lua_dirs = calloc(REQ_MAX_DIRS, sizeof *r->lua_dirs);
    if (!r->lua_dirs) {
        util_set_err(err, errlen, "rules_open: out of memory");
        return -ENOMEM;
    }
    int rc;
    if (lua_path && *lua_path) {
        for (const char *p = lua_path; *p;) {
            size_t n = strcspn(p, ";");
            if (n && (rc = rules_sbx_dirs_add(r, p, n, err, errlen)))
                return rc;
            p += n + (p[n] == ';');
        }
        if (r->nlua_dirs)
            return 0;
        util_set_err(err, errlen, "lua_path: no directory in \"%s\"", lua_path);
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
        util_set_err(err, errlen, "rules_open: out of memory");
        return -ENOMEM;
    }
    rc = rules_sbx_dirs_add(r, dir, strlen(dir), err, errlen);
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
        rc = rules_sbx_dirs_add(r, sib, strlen(sib), err, errlen);
    if (!rc)
        rc = rules_sbx_dirs_add(r, SITE_LUA_DIR, strlen(SITE_LUA_DIR), err, errlen);
    if (!rc && strcmp(DIST_LUA_DIR, SITE_LUA_DIR) != 0)
        rc = rules_sbx_dirs_add(r, DIST_LUA_DIR, strlen(DIST_LUA_DIR), err, errlen);
    return rc;
}

void rules_sbx_dirs_free(struct rules *r)
{
    for (size_t i = 0; i < r->nlua_dirs; i++)
        free(r->lua_dirs[i]);
    free(r->lua_dirs);
    r->lua_dirs = NULL;
    r->nlua_dirs = 0;
}
