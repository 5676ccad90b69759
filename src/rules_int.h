/*
 * rules_int.h — declarations shared by the files of the rule engine, PRIVATE to it: only
 * rules.c, rules_sandbox.c and rules_api.c include this header. Everything else (the gateway,
 * main, tests) uses the public contract in rules.h, which is all that is stable.
 *
 * The engine is split by subsystem:
 *   rules.c          lifecycle: open, build a state from the rule file, reload (build new,
 *                    swap on success, gw.state handed over), every call into the rule, errors
 *   rules_sandbox.c  isolation: capped allocator, instruction budget, the sandboxed base
 *                    functions, require() of rule modules and its search path
 *   rules_lualib.c   bounded replacements for the library functions that loop without VM
 *                    instructions (string.rep, table.move/concat/sort, the pattern matcher)
 *   rules_api.c      the `gw` table: publish, point, series, mapper, log, time, json
 *   rules_param.c    gw.param: tunable parameters declared into params.h's registry
 *   jsonlua.c        JSON <-> Lua values (decoder for packets, encoder for gw.json)
 *
 * Threading: an engine and its states are used by one thread (the event loop); nothing here
 * is re-entrant across threads for the same struct rules.
 */
#ifndef IIOTGW_RULES_INT_H
#define IIOTGW_RULES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "rules.h"

#define RULES_MAX_RULE_SIZE (4u * 1024u * 1024u) /* bytes of a rule file, also of a module */
/* Bytes of one line of line protocol a rule's gw.point may produce (built on the C heap). */
#define RULES_MAX_POINT_BYTES (1u * 1024u * 1024u)

/* Why the current call was stopped (rule_state.overrun_kind). */
enum rules_overrun { RULES_OVERRUN_INSTR, RULES_OVERRUN_TIME };

/*
 * One loaded rule: a Lua state and what the hooks need to police it. Owned by its struct
 * rules (r->live, or the candidate being built by a reload); freed with its lua_State.
 */
struct rule_state {
    struct rules *r;
    lua_State *L;
    lua_State *co;     /* reusable call thread; NULL after a failed call */
    int co_ref;        /* registry ref anchoring co */
    int gw_ref;        /* registry ref of our gw table (gw.state lives there) */
    int names_ref;     /* registry ref of the interned call-name sequence (rules.c) */
    int chunk_ref;     /* registry ref of the compiled rule chunk until it has run */
    int req_cache_ref; /* registry ref: module name -> what require returned */
    int req_stack_ref; /* registry ref: sequence of the module names being loaded */
    int req_depth;     /* valid entries of that sequence (0 outside require) */
    int params_ref;    /* registry ref: param name -> its handle table (rules_param.c) */
    bool loading;      /* running the chunk or init(): gw.param is allowed */
    size_t mem_used;
    size_t mem_limit;
    uint64_t instr_left;                 /* budget beyond the current hook period */
    bool overrun;                        /* budget or time spent in the current call */
    enum rules_overrun overrun_kind;     /* which, when overrun */
    const char *overrun_what;            /* static text naming the C work stopped, or NULL */
    bool in_call;                        /* a call is running: deadline applies */
    double deadline;                     /* util_mono() time the current call must end by */
    char overrun_where[LUA_IDSIZE + 24]; /* rule file:line where the budget ran out */
    int64_t ts_ns;                       /* default gw.point timestamp of the current call */
    struct rules_entity *ents;           /* the catalogue (rules.h), malloc'd with its strings */
    size_t nents;
};

/* The engine (rules.h's opaque struct rules). Strings are owned (malloc'd) by it. */
struct rules {
    char *path;
    char *chunkname;            /* "@" path: what Lua reports in ar.source */
    char short_src[LUA_IDSIZE]; /* what Lua prints in "file:line:" messages */
    char *prefix;
    char **lua_dirs; /* module search path, resolved once at open (reloads reuse it) */
    size_t nlua_dirs;
    size_t mem_limit;
    uint64_t instr_limit;
    double time_limit; /* seconds per call (rule_time_limit) */
    struct rule_sink sink;
    struct params *params; /* cfg->params, or own_params when none was given */
    struct params *own_params;
    const struct clock *clock; /* rules_config.clock (borrowed; NULL = wall clock) */
    struct rule_state *live;
    struct rules_stats stats;
    struct buf lp; /* scratch for one encoded point */
};

/* The rule_state a lua_State (or any of its threads) belongs to: kept in the extra space. */
static inline struct rule_state *rules_state_of(lua_State *L)
{
    return *(struct rule_state **)lua_getextraspace(L);
}

/* ---- rules.c ---- */

/*
 * Read a whole regular file of at most RULES_MAX_RULE_SIZE bytes into a malloc'd buffer
 * (*out, owned by the caller; *len bytes, not NUL-terminated). Returns 0, -errno of
 * open/fstat/read, -EINVAL (not a regular file), -EFBIG (too big, or grew while read) or
 * -ENOMEM. Never raises.
 */
int rules_read_file(const char *path, char **out, size_t *len);

/* "file:line" of the innermost frame of co that belongs to the rule file, or just the file.
 * Never raises (used from the count hook). */
void rules_where(struct rule_state *st, lua_State *co, char *out, size_t n);

/* ---- rules_sandbox.c ---- */

/*
 * A new lua_State for st: its allocator counts st->mem_used and refuses growth past
 * st->mem_limit, st sits in the extra space (rules_state_of) and a panic aborts (every entry
 * into Lua is protected). Returns NULL when even the state does not fit.
 */
lua_State *rules_sbx_newstate(struct rule_state *st);

/*
 * Arm the instruction budget (r->instr_limit) and the time limit (r->time_limit from `now`,
 * a util_mono() time) on co for the next call; clears st->overrun, sets st->in_call (the
 * caller clears it when the call is over).
 */
void rules_sbx_arm_budget(struct rule_state *st, lua_State *co, double now);

/*
 * For C code looping on a rule's behalf: returns when the current call is within its time
 * limit and budget (or no call is running); otherwise marks the call overrun and raises
 * "WHAT (call time limit exceeded)" (or just the reason when what is NULL). The error cannot
 * be caught by the rule: the sandbox's pcall re-raises once st->overrun is set.
 */
void rules_sbx_check_time(lua_State *L, const char *what);

/* ---- rules_lualib.c ---- */

/* Replace string.rep/find/match/gmatch/gsub and table.move/concat/sort in L's libraries with
 * the bounded versions. Protected: must run inside lua_pcall. */
void rules_lualib_open(lua_State *L);

/*
 * Open the allowed libraries into L's globals and install the sandbox: require, load, pcall,
 * xpcall, collectgarbage, setmetatable and print replaced, dofile/loadfile/string.dump
 * removed, the string metatable locked; creates st's require cache and loading stack.
 * Protected: must run inside lua_pcall (allocation failures raise).
 */
void rules_sbx_open(lua_State *L, struct rule_state *st);

/*
 * Resolve the module search path once (rules_config.lua_path, see rules.h) into r->lua_dirs.
 * Returns 0, -EINVAL (bad lua_path; err says why) or -ENOMEM. On failure what was added is
 * still in r->lua_dirs: rules_sbx_dirs_free() releases it.
 */
int rules_sbx_dirs_init(struct rules *r, const char *lua_path, char *err, size_t errlen);
void rules_sbx_dirs_free(struct rules *r);

/* ---- rules_api.c ---- */

/* Release st's entity catalogue (rules_state_free). */
void rules_api_entities_free(struct rule_state *st);

/*
 * Push a new `gw` table (every function, gw.prefix, gw.null; not gw.state, which rules.c
 * adds) and register the metatables of the gw userdata types. Protected: must run inside
 * lua_pcall.
 */
void rules_api_open(lua_State *L, struct rules *r);

/* Log msg as the rule's (through the sink's log, else log.h) with the "file:line" of the Lua
 * code calling the current C function. Used by gw.log and the sandbox's print. */
void rules_api_log_caller(lua_State *L, int level, const char *msg);

/* ---- rules_param.c ---- */

struct param_decl;
struct param_info;

/* gw.param (the C function behind it). */
int rules_param_gw(lua_State *L);

/* Push v as the rule sees a value of d (integer, float, boolean, the enum's string). */
void rules_param_push(lua_State *L, const struct param_decl *d, double v);

/* Store pi's value of `slot` into its handle in st. Protected: must run inside lua_pcall. */
void rules_param_store(lua_State *L, struct rule_state *st, const struct param_info *pi,
                       size_t slot);

/* lua_CFunction taking st as a light userdata: every handle of st refreshed from the
 * registry. Run with lua_pcall after params_commit. */
int rules_param_refresh(lua_State *L);

#endif
