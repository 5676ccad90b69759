/*
 * rules_param.c — gw.param, the rule's side of the tunable parameters (params.h): the
 * declaration, read from a Lua table at load time, and the handle the rule reads per packet.
 *
 * Why a plain table as the handle: a rule reads its thresholds for every packet, so the read
 * must cost what reading a constant from a table costs — no C call, no string building. The
 * handle holds the applied values (handle.value for a global param, handle[node] per node);
 * when a value changes the gateway rewrites that one field in the live state
 * (rules_param_store) before the next packet, and rules.c then calls on_param.
 *
 * The handles of a state are kept in a registry table name -> handle (st->params_ref), so a
 * change finds its handle without touching the rule's globals.
 */
#include "rules_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "params.h"

/* Push v as the rule sees a value of d: integer, float, boolean or the enum's string. */
void rules_param_push(lua_State *L, const struct param_decl *d, double v)
{
    switch (d->type) {
    case PARAM_INTEGER:
        lua_pushinteger(L, (lua_Integer)v);
        break;
    case PARAM_BOOLEAN:
        lua_pushboolean(L, v != 0);
        break;
    case PARAM_ENUM: {
        size_t i = (size_t)v;
        lua_pushstring(L, v >= 0 && i < d->nvalues ? d->values[i] : "");
        break;
    }
    default:
        lua_pushnumber(L, v);
        break;
    }
}

/* spec[key] as an optional string (NULL when nil); raises otherwise. Left on the stack. */
static const char *rules_param_opt_str(lua_State *L, int spec, const char *key)
{
    lua_getfield(L, spec, key);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "gw.param: %s must be a string, got %s", key, luaL_typename(L, -1));
    return lua_tostring(L, -1);
}

/* spec[key] as an optional number; raises otherwise. Pops it. */
static bool rules_param_opt_num(lua_State *L, int spec, const char *key, double *out)
{
    lua_getfield(L, spec, key);
    bool has = !lua_isnil(L, -1);
    if (has) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "gw.param: %s must be a number, got %s", key, luaL_typename(L, -1));
        *out = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return has;
}

/* spec[key]: a sequence of strings into v (at most max); returns the count. Left on stack. */
static size_t rules_param_str_list(lua_State *L, int spec, const char *key, const char **v,
                                   size_t max)
{
    lua_getfield(L, spec, key);
    if (lua_isnil(L, -1))
        return 0;
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "gw.param: %s must be a list of strings", key);
    int t = lua_gettop(L);
    size_t n = (size_t)lua_rawlen(L, t);
    if (n > max)
        luaL_error(L, "gw.param: at most %d %s", (int)max, key);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "gw.param: %s[%d] must be a string", key, (int)i + 1);
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays alive: it is in the list, which stays on the stack */
    }
    return n;
}

static const char *const rules_param_known_keys[] = {
    "name",        "type",  "default", "min",   "max",   "step", "unit",
    "description", "nodes", "values",  "below", "above", NULL};

/* gw.param{name=, type=, default=, min=, max=, step=, unit=, description=, nodes=, values=,
 *          below=, above=} -> handle */
int rules_param_gw(lua_State *L)
{
    struct rule_state *st = rules_state_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!st->loading)
        return luaL_error(L, "gw.param: declare params when the rule loads (top level or "
                             "init), not in a hook");
    lua_settop(L, 1);
    luaL_checkstack(L, 32, "gw.param");
    /* Unknown keys are typos that would silently do nothing. */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        bool ok = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; rules_param_known_keys[i]; i++)
                if (!strcmp(lua_tostring(L, -2), rules_param_known_keys[i]))
                    ok = true;
        if (!ok)
            return luaL_error(L, "gw.param: unknown key %s",
                              lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                             : "(not a string)");
        lua_pop(L, 1);
    }
    struct param_decl d = {0};
    const char *nodes[PARAM_MAX_NODES], *values[PARAM_MAX_VALUES];
    d.name = rules_param_opt_str(L, 1, "name");
    if (!d.name)
        return luaL_error(L, "gw.param: name (string) required");
    const char *type = rules_param_opt_str(L, 1, "type");
    lua_getfield(L, 1, "default");
    int def = lua_gettop(L);
    int dt = lua_type(L, def);
    if (!type)
        type = dt == LUA_TBOOLEAN ? "boolean" : dt == LUA_TSTRING ? "enum" : "number";
    if (!strcmp(type, "number"))
        d.type = PARAM_NUMBER;
    else if (!strcmp(type, "integer"))
        d.type = PARAM_INTEGER;
    else if (!strcmp(type, "boolean"))
        d.type = PARAM_BOOLEAN;
    else if (!strcmp(type, "enum"))
        d.type = PARAM_ENUM;
    else
        return luaL_error(L, "gw.param: %s: type must be number, integer, boolean or enum", d.name);
    d.nvalues = rules_param_str_list(L, 1, "values", values, PARAM_MAX_VALUES);
    d.values = values;
    switch (d.type) {
    case PARAM_BOOLEAN:
        if (lua_type(L, def) != LUA_TBOOLEAN)
            return luaL_error(L, "gw.param: %s: default must be true or false", d.name);
        d.def = lua_toboolean(L, def);
        break;
    case PARAM_ENUM: {
        if (lua_type(L, def) != LUA_TSTRING)
            return luaL_error(L, "gw.param: %s: default must be one of values", d.name);
        d.def = -1;
        for (size_t i = 0; i < d.nvalues; i++)
            if (!strcmp(values[i], lua_tostring(L, def)))
                d.def = (double)i;
        break;
    }
    default:
        if (lua_type(L, def) != LUA_TNUMBER)
            return luaL_error(L, "gw.param: %s: default (a number) required", d.name);
        d.def = lua_tonumber(L, def);
        break;
    }
    d.has_min = rules_param_opt_num(L, 1, "min", &d.min);
    d.has_max = rules_param_opt_num(L, 1, "max", &d.max);
    (void)rules_param_opt_num(L, 1, "step", &d.step);
    if (d.type == PARAM_INTEGER && d.step == 0)
        d.step = 1;
    d.unit = rules_param_opt_str(L, 1, "unit");
    d.description = rules_param_opt_str(L, 1, "description");
    d.below = rules_param_opt_str(L, 1, "below");
    d.above = rules_param_opt_str(L, 1, "above");
    d.nnodes = rules_param_str_list(L, 1, "nodes", nodes, PARAM_MAX_NODES);
    d.nodes = nodes;
    if (d.nnodes == 0) {
        lua_getfield(L, 1, "nodes");
        bool given = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (given)
            return luaL_error(L, "gw.param: %s: nodes must not be empty", d.name);
    }

    double vals[PARAM_MAX_NODES];
    char err[256];
    int rc = params_declare(st->r->params, &d, vals, err, sizeof err);
    if (rc == -ENOMEM)
        return luaL_error(L, "gw.param: out of memory");
    if (rc)
        return luaL_error(L, "gw.param: %s", err);

    /* The handle: {node = value, ...} or {value = value}. */
    size_t n = d.nnodes ? d.nnodes : 1;
    lua_createtable(L, 0, (int)n);
    int h = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        rules_param_push(L, &d, vals[i]);
        lua_setfield(L, h, d.nnodes ? nodes[i] : "value");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->params_ref);
    lua_pushvalue(L, h);
    lua_setfield(L, -2, d.name);
    lua_pop(L, 1);
    return 1;
}

/* Protected: store one value of param `pi` (slot) into its handle in st. */
void rules_param_store(lua_State *L, struct rule_state *st, const struct param_info *pi,
                       size_t slot)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->params_ref);
    if (lua_getfield(L, -1, pi->decl->name) == LUA_TTABLE) {
        const struct param_slot *s = &pi->slots[slot];
        rules_param_push(L, pi->decl, s->value);
        lua_setfield(L, -2, s->node ? s->node : "value");
    }
    lua_pop(L, 2);
}

/* Protected (lua_pcall with st as the light userdata): every handle of st from the registry
 * (after a commit, which may have dropped overrides the declaration had handed out). */
int rules_param_refresh(lua_State *L)
{
    struct rule_state *st = lua_touserdata(L, 1);
    struct params *p = st->r->params;
    for (size_t i = 0; i < params_count(p); i++) {
        const struct param_info *pi = params_at(p, i);
        if (pi->orphaned)
            continue;
        for (size_t s = 0; s < pi->nslots; s++)
            rules_param_store(L, st, pi, s);
    }
    return 0;
}
