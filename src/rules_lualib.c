/*
 * rules_lualib.c — bounded replacements, installed in every rule's sandbox, for the Lua library
 * functions that can run for a long time without executing a single VM instruction (so the
 * count hook, and with it the instruction budget and the call time limit, never sees them):
 *
 *   string.rep             "" repeated math.maxinteger times loops forever in the stock one
 *   table.move, table.concat  loops over caller-given ranges (table.move({}, 1, 2^62, 1))
 *   table.sort             the default comparison runs no VM instructions
 *   string.find/match/gmatch/gsub  the stock backtracking matcher is exponential-ish on
 *                          patterns like ".-.-.-.-b" and cannot be interrupted; plain
 *                          find was O(n*m) (memchr + memcmp per position)
 *
 * Each loop here counts steps and, every LUALIB_CHECK_STEPS of them, asks the sandbox whether
 * the call is past its time limit (rules_sbx_check_time, which raises an uncatchable error). The
 * pattern matcher implements the pattern language of the Lua 5.4 reference manual (section
 * 6.4.1) with the same structure as Lua's own lstrlib.c matcher, so results, captures and
 * error messages are the same; only the step accounting and the linear-time plain search
 * (memmem) are new. It is a rewrite of that design, so Lua's notice is kept:
 *
 *   Copyright (C) 1994-2022 Lua.org, PUC-Rio.
 *
 *   Permission is hereby granted, free of charge, to any person obtaining a copy of this
 *   software and associated documentation files (the "Software"), to deal in the Software
 *   without restriction, including without limitation the rights to use, copy, modify, merge,
 *   publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 *   to whom the Software is furnished to do so, subject to the following conditions:
 *
 *   The above copyright notice and this permission notice shall be included in all copies or
 *   substantial portions of the Software.
 *
 *   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
 *   INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
 *   PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
 *   FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 *   OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 *   DEALINGS IN THE SOFTWARE.
 */
#include "rules_int.h"

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "util.h"

#define LUALIB_CHECK_STEPS 4096u /* loop steps between two looks at the clock */
#define MAXCAPTURES        32
#define MAXCCALLS          200 /* matcher recursion depth, as Lua's */
#define CAP_UNFINISHED     (-1)
#define CAP_POSITION       (-2)
#define L_ESC              '%'
#define SPECIALS           "^$*+?.([%-"

/* One step of a long loop: every LUALIB_CHECK_STEPS steps, the time limit is checked. */
static inline void lualib_step(lua_State *L, unsigned *left)
{
    if (--*left == 0) {
        *left = LUALIB_CHECK_STEPS;
        rules_sbx_check_time(L, NULL);
    }
}

/* ------------------------------------------------------------------------------------ */
/* string.rep                                                                           */
/* ------------------------------------------------------------------------------------ */

static int lualib_rep(lua_State *L)
{
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || (l == 0 && lsep == 0)) {
        lua_pushliteral(L, ""); /* the stock one loops n times to build "" */
        return 1;
    }
    struct rule_state *st = rules_state_of(L);
    /* n*l + (n-1)*lsep, refused before any work when it cannot fit under the memory cap */
    size_t unit = l + lsep;
    if (unit < l || (uint64_t)n > (st->mem_limit + lsep) / unit)
        return luaL_error(L,
                          "not enough memory (string.rep: the result would be larger than the "
                          "rule's memory limit of %I bytes)",
                          (LUAI_UACINT)st->mem_limit);
    size_t total = (size_t)n * unit - lsep;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, total);
    /* The result is periodic (period l + lsep): write one period, then double the written
     * prefix, so an 8 MiB result of a 1-byte string is a few dozen memcpy calls, not
     * 8 million. */
    memcpy(p, s, l);
    size_t done = l;
    if (done < total) {
        memcpy(p + done, sep, lsep);
        done += lsep;
    }
    while (done < total) {
        size_t k = done < total - done ? done : total - done;
        memcpy(p + done, p, k);
        done += k;
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* table.move, table.concat                                                             */
/* ------------------------------------------------------------------------------------ */

#define TAB_R 1 /* read */
#define TAB_W 2 /* write */
#define TAB_L 4 /* length */

static int lualib_checkfield(lua_State *L, const char *key, int n)
{
    lua_pushstring(L, key);
    return lua_rawget(L, -n) != LUA_TNIL;
}

/* As the stock library: a table, or a value whose metatable has what the access needs. */
static void lualib_checktab(lua_State *L, int arg, int what)
{
    if (lua_type(L, arg) == LUA_TTABLE)
        return;
    int n = 1; /* values to pop */
    if (lua_getmetatable(L, arg) && (!(what & TAB_R) || lualib_checkfield(L, "__index", ++n)) &&
        (!(what & TAB_W) || lualib_checkfield(L, "__newindex", ++n)) &&
        (!(what & TAB_L) || lualib_checkfield(L, "__len", ++n))) {
        lua_pop(L, n);
        return;
    }
    luaL_checktype(L, arg, LUA_TTABLE); /* raises the standard message */
}

static int lualib_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1; /* destination table */
    lualib_checktab(L, 1, TAB_R);
    lualib_checktab(L, tt, TAB_W);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        unsigned left = LUALIB_CHECK_STEPS;
        if (t > e || t > f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
            for (lua_Integer i = 0; i < n; i++) {
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
                lualib_step(L, &left);
            }
        } else {
            for (lua_Integer i = n - 1; i >= 0; i--) {
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
                lualib_step(L, &left);
            }
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

static void lualib_addfield(lua_State *L, luaL_Buffer *b, lua_Integer i)
{
    lua_geti(L, 1, i);
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid value (at index %I) in table for 'concat'", (LUAI_UACINT)i);
    luaL_addvalue(b);
}

static int lualib_concat(lua_State *L)
{
    lualib_checktab(L, 1, TAB_R | TAB_L);
    lua_Integer last = luaL_len(L, 1);
    size_t lsep;
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    last = luaL_optinteger(L, 4, last);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    unsigned left = LUALIB_CHECK_STEPS;
    for (; i < last; i++) {
        lualib_addfield(L, &b, i);
        luaL_addlstring(&b, sep, lsep);
        lualib_step(L, &left);
    }
    if (i == last)
        lualib_addfield(L, &b, i);
    luaL_pushresult(&b);
    return 1;
}

/*
 * table.sort: the stock algorithm (quicksort, median of three, a randomized pivot once a
 * partition turns out badly imbalanced) with a step in its loops. The default comparison
 * runs no VM instructions, so a sort of a few hundred thousand long strings would otherwise
 * run past the time limit unseen.
 */
#define SORT_RANLIMIT 100u

typedef unsigned int sort_idx;

static void lualib_set2(lua_State *L, sort_idx i, sort_idx j)
{
    lua_seti(L, 1, i);
    lua_seti(L, 1, j);
}

static int lualib_sort_comp(lua_State *L, int a, int b)
{
    if (lua_isnil(L, 2))
        return lua_compare(L, a, b, LUA_OPLT);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a - 1); /* -1 to compensate the function */
    lua_pushvalue(L, b - 2); /* -2 to compensate the function and 'a' */
    lua_call(L, 2, 1);
    int res = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return res;
}

static sort_idx lualib_partition(lua_State *L, sort_idx lo, sort_idx up, unsigned *left)
{
    sort_idx i = lo;     /* incremented before first use */
    sort_idx j = up - 1; /* decremented before first use */
    /* invariant: a[lo .. i] <= P <= a[j .. up], a[up - 1] == P */
    for (;;) {
        while (lua_geti(L, 1, ++i), lualib_sort_comp(L, -1, -2)) {
            if (i == up - 1) /* a[i] < P but a[up - 1] == P */
                luaL_error(L, "invalid order function for sorting");
            lua_pop(L, 1);
            lualib_step(L, left);
        }
        while (lua_geti(L, 1, --j), lualib_sort_comp(L, -3, -1)) {
            if (j < i) /* j < i but a[j] > P */
                luaL_error(L, "invalid order function for sorting");
            lua_pop(L, 1);
            lualib_step(L, left);
        }
        if (j < i) {
            lua_pop(L, 1);
            lualib_set2(L, up - 1, i); /* the pivot to its place */
            return i;
        }
        lualib_set2(L, i, j);
    }
}

static sort_idx lualib_choose_pivot(sort_idx lo, sort_idx up, unsigned rnd)
{
    sort_idx r4 = (up - lo) / 4; /* range of the middle half */
    return rnd % (r4 * 2) + (lo + r4);
}

static unsigned lualib_random_pivot(void)
{
    double t = util_mono() * 1e9;
    return (unsigned)((uint64_t)t * 0x9e3779b97f4a7c15ull >> 32);
}

static void lualib_auxsort(lua_State *L, sort_idx lo, sort_idx up, unsigned rnd, unsigned *left)
{
    while (lo < up) { /* loop for the tail call */
        lualib_step(L, left);
        lua_geti(L, 1, lo);
        lua_geti(L, 1, up);
        if (lualib_sort_comp(L, -1, -2)) /* a[up] < a[lo]? */
            lualib_set2(L, lo, up);
        else
            lua_pop(L, 2);
        if (up - lo == 1)
            break;
        sort_idx p = (up - lo < SORT_RANLIMIT || rnd == 0) ? (lo + up) / 2
                                                           : lualib_choose_pivot(lo, up, rnd);
        lua_geti(L, 1, p);
        lua_geti(L, 1, lo);
        if (lualib_sort_comp(L, -2, -1)) { /* a[p] < a[lo]? */
            lualib_set2(L, p, lo);
        } else {
            lua_pop(L, 1);
            lua_geti(L, 1, up);
            if (lualib_sort_comp(L, -1, -2)) /* a[up] < a[p]? */
                lualib_set2(L, p, up);
            else
                lua_pop(L, 2);
        }
        if (up - lo == 2)
            break;
        lua_geti(L, 1, p); /* the median: pivot */
        lua_pushvalue(L, -1);
        lua_geti(L, 1, up - 1);
        lualib_set2(L, p, up - 1); /* a[p] = a[up - 1]; a[up - 1] = pivot */
        p = lualib_partition(L, lo, up, left);
        sort_idx n;
        if (p - lo < up - p) { /* recurse into the shorter side */
            lualib_auxsort(L, lo, p - 1, rnd, left);
            n = p - lo;
            lo = p + 1;
        } else {
            lualib_auxsort(L, p + 1, up, rnd, left);
            n = up - p;
            up = p - 1;
        }
        if ((up - lo) / 128 > n) /* too imbalanced: randomize the pivot */
            rnd = lualib_random_pivot();
    }
}

static int lualib_sort(lua_State *L)
{
    lualib_checktab(L, 1, TAB_R | TAB_W | TAB_L);
    lua_Integer n = luaL_len(L, 1);
    if (n > 1) {
        luaL_argcheck(L, n < INT_MAX, 1, "array too big");
        if (!lua_isnoneornil(L, 2))
            luaL_checktype(L, 2, LUA_TFUNCTION);
        lua_settop(L, 2);
        unsigned left = LUALIB_CHECK_STEPS;
        lualib_auxsort(L, 1, (sort_idx)n, 0, &left);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Pattern matching                                                                     */
/* ------------------------------------------------------------------------------------ */

struct match_state {
    const char *src_init; /* start of the subject */
    const char *src_end;  /* its end ('\0') */
    const char *p_end;    /* end of the pattern */
    lua_State *L;
    int matchdepth; /* recursion left */
    unsigned left;  /* steps until the next look at the clock */
    unsigned char level;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[MAXCAPTURES];
};

static const char *lualib_match(struct match_state *ms, const char *s, const char *p);

static inline void lualib_mstep(struct match_state *ms)
{
    if (--ms->left == 0) {
        ms->left = LUALIB_CHECK_STEPS;
        rules_sbx_check_time(ms->L, "pattern too complex");
    }
}

static int lualib_check_capture(struct match_state *ms, int l)
{
    l -= '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
        return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    return l;
}

static int lualib_capture_to_close(struct match_state *ms)
{
    int level = ms->level;
    for (level--; level >= 0; level--)
        if (ms->capture[level].len == CAP_UNFINISHED)
            return level;
    return luaL_error(ms->L, "invalid pattern capture");
}

static const char *lualib_class_end(struct match_state *ms, const char *p)
{
    switch (*p++) {
    case L_ESC:
        if (p == ms->p_end)
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do { /* look for a ']' */
            if (p == ms->p_end)
                luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == L_ESC && p < ms->p_end)
                p++; /* skip escapes (e.g. '%]') */
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

static int lualib_match_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a':
        res = isalpha(c);
        break;
    case 'c':
        res = iscntrl(c);
        break;
    case 'd':
        res = isdigit(c);
        break;
    case 'g':
        res = isgraph(c);
        break;
    case 'l':
        res = islower(c);
        break;
    case 'p':
        res = ispunct(c);
        break;
    case 's':
        res = isspace(c);
        break;
    case 'u':
        res = isupper(c);
        break;
    case 'w':
        res = isalnum(c);
        break;
    case 'x':
        res = isxdigit(c);
        break;
    case 'z': /* deprecated, but the stock matcher still has it */
        res = (c == 0);
        break;
    default:
        return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res;
}

/* p at '[', ec at the closing ']' */
static int lualib_match_bracket(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (*(p + 1) == '^') {
        sig = 0;
        p++; /* skip the '^' */
    }
    while (++p < ec) {
        if (*p == L_ESC) {
            p++;
            if (lualib_match_class(c, (unsigned char)*p))
                return sig;
        } else if (*(p + 1) == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

static int lualib_single(struct match_state *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case L_ESC:
        return lualib_match_class(c, (unsigned char)*(p + 1));
    case '[':
        return lualib_match_bracket(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

static const char *lualib_balance(struct match_state *ms, const char *s, const char *p)
{
    if (p >= ms->p_end - 1)
        luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->src_end || *s != *p)
        return NULL;
    int b = *p, e = *(p + 1), cont = 1;
    while (++s < ms->src_end) {
        lualib_mstep(ms);
        if (*s == e) {
            if (--cont == 0)
                return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL;
}

static const char *lualib_max_expand(struct match_state *ms, const char *s, const char *p,
                                     const char *ep)
{
    ptrdiff_t i = 0;
    while (lualib_single(ms, s + i, p, ep)) {
        i++;
        lualib_mstep(ms);
    }
    while (i >= 0) { /* try with the longest repetition first */
        const char *res = lualib_match(ms, s + i, ep + 1);
        if (res)
            return res;
        i--;
    }
    return NULL;
}

static const char *lualib_min_expand(struct match_state *ms, const char *s, const char *p,
                                     const char *ep)
{
    for (;;) {
        const char *res = lualib_match(ms, s, ep + 1);
        if (res)
            return res;
        if (!lualib_single(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *lualib_start_capture(struct match_state *ms, const char *s, const char *p,
                                        int what)
{
    int level = ms->level;
    if (level >= MAXCAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->capture[level].init = s;
    ms->capture[level].len = what;
    ms->level = (unsigned char)(level + 1);
    const char *res = lualib_match(ms, s, p);
    if (!res)
        ms->level--; /* undo the capture */
    return res;
}

static const char *lualib_end_capture(struct match_state *ms, const char *s, const char *p)
{
    int l = lualib_capture_to_close(ms);
    ms->capture[l].len = s - ms->capture[l].init;
    const char *res = lualib_match(ms, s, p);
    if (!res)
        ms->capture[l].len = CAP_UNFINISHED;
    return res;
}

static const char *lualib_match_capture(struct match_state *ms, const char *s, int l)
{
    l = lualib_check_capture(ms, l);
    size_t len = (size_t)ms->capture[l].len;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

/* Every call is a step: backtracking is recursion plus the expand loops above. */
static const char *lualib_match(struct match_state *ms, const char *s, const char *p)
{
    if (ms->matchdepth-- == 0)
        luaL_error(ms->L, "pattern too complex");
    lualib_mstep(ms);
    for (;;) {
        if (p == ms->p_end)
            break;
        switch (*p) {
        case '(':
            if (*(p + 1) == ')')
                s = lualib_start_capture(ms, s, p + 2, CAP_POSITION);
            else
                s = lualib_start_capture(ms, s, p + 1, CAP_UNFINISHED);
            goto done;
        case ')':
            s = lualib_end_capture(ms, s, p + 1);
            goto done;
        case '$':
            if (p + 1 != ms->p_end)
                goto dflt; /* not the end of the pattern: an ordinary character */
            s = (s == ms->src_end) ? s : NULL;
            goto done;
        case L_ESC:
            switch (*(p + 1)) {
            case 'b':
                s = lualib_balance(ms, s, p + 2);
                if (s) {
                    p += 4;
                    continue;
                }
                goto done;
            case 'f': {
                p += 2;
                if (*p != '[')
                    luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                const char *ep = lualib_class_end(ms, p);
                int previous = (s == ms->src_init) ? '\0' : (unsigned char)*(s - 1);
                int current = s < ms->src_end ? (unsigned char)*s : '\0';
                if (!lualib_match_bracket(previous, p, ep - 1) &&
                    lualib_match_bracket(current, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto done;
            }
            case '0':
            case '1':
            case '2':
            case '3':
            case '4':
            case '5':
            case '6':
            case '7':
            case '8':
            case '9':
                s = lualib_match_capture(ms, s, (unsigned char)*(p + 1));
                if (s) {
                    p += 2;
                    continue;
                }
                goto done;
            default:
                goto dflt;
            }
        default:
        dflt : {
            const char *ep = lualib_class_end(ms, p);
            if (!lualib_single(ms, s, p, ep)) {
                if (*ep == '*' || *ep == '?' || *ep == '-') { /* accept empty */
                    p = ep + 1;
                    continue;
                }
                s = NULL;
                goto done;
            }
            switch (*ep) {
            case '?': {
                const char *res = lualib_match(ms, s + 1, ep + 1);
                if (res) {
                    s = res;
                    goto done;
                }
                p = ep + 1;
                continue;
            }
            case '+':
                s = lualib_max_expand(ms, s + 1, p, ep);
                goto done;
            case '*':
                s = lualib_max_expand(ms, s, p, ep);
                goto done;
            case '-':
                s = lualib_min_expand(ms, s, p, ep);
                goto done;
            default:
                s++;
                p = ep;
                continue;
            }
        }
        }
    }
done:
    ms->matchdepth++;
    return s;
}

/* Push capture i (or the whole match when there are none). */
static void lualib_push_onecapture(struct match_state *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i != 0)
            luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(ms->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t l = ms->capture[i].len;
    if (l == CAP_UNFINISHED)
        luaL_error(ms->L, "unfinished capture");
    if (l == CAP_POSITION)
        lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
    else
        lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

static int lualib_push_captures(struct match_state *ms, const char *s, const char *e)
{
    int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, nlevels, "too many captures");
    for (int i = 0; i < nlevels; i++)
        lualib_push_onecapture(ms, i, s, e);
    return nlevels;
}

static int lualib_nospecials(const char *p, size_t l)
{
    size_t upto = 0;
    do {
        if (strpbrk(p + upto, SPECIALS))
            return 0;
        upto += strlen(p + upto) + 1; /* a pattern may contain NULs */
    } while (upto <= l);
    return 1;
}

static void lualib_prepstate(struct match_state *ms, lua_State *L, const char *s, size_t ls,
                             const char *p, size_t lp)
{
    ms->L = L;
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p + lp;
    ms->left = LUALIB_CHECK_STEPS;
}

static void lualib_reprepstate(struct match_state *ms)
{
    ms->level = 0;
    ms->matchdepth = MAXCCALLS;
}

static size_t lualib_posrelat(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0)
        return 1;
    if (pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int lualib_find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = lualib_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || lualib_nospecials(p, lp))) {
        /* memmem is linear; the stock memchr + memcmp loop is O(n*m) */
        const char *s2 = lp ? memmem(s + init, ls - init, p, lp) : s + init;
        if (s2) {
            lua_pushinteger(L, (s2 - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(s2 - s) + lp));
            return 2;
        }
    } else {
        struct match_state ms;
        const char *s1 = s + init;
        int anchor = (*p == '^');
        if (anchor) {
            p++;
            lp--;
        }
        lualib_prepstate(&ms, L, s, ls, p, lp);
        do {
            lualib_reprepstate(&ms);
            const char *res = lualib_match(&ms, s1, p);
            if (res) {
                if (find) {
                    lua_pushinteger(L, (s1 - s) + 1);
                    lua_pushinteger(L, res - s);
                    return lualib_push_captures(&ms, NULL, 0) + 2;
                }
                return lualib_push_captures(&ms, s1, res);
            }
        } while (s1++ < ms.src_end && !anchor);
    }
    luaL_pushfail(L);
    return 1;
}

static int lualib_find(lua_State *L)
{
    return lualib_find_aux(L, 1);
}

static int lualib_str_match(lua_State *L)
{
    return lualib_find_aux(L, 0);
}

struct gmatch_state {
    const char *src;
    const char *p;
    const char *lastmatch;
    struct match_state ms;
};

static int lualib_gmatch_aux(lua_State *L)
{
    struct gmatch_state *gm = lua_touserdata(L, lua_upvalueindex(3));
    gm->ms.L = L;
    gm->ms.left = LUALIB_CHECK_STEPS;
    for (const char *src = gm->src; src <= gm->ms.src_end; src++) {
        lualib_reprepstate(&gm->ms);
        const char *e = lualib_match(&gm->ms, src, gm->p);
        if (e && e != gm->lastmatch) {
            gm->src = gm->lastmatch = e;
            return lualib_push_captures(&gm->ms, src, e);
        }
    }
    return 0;
}

static int lualib_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = lualib_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2); /* keep subject and pattern alive as upvalues */
    struct gmatch_state *gm = lua_newuserdatauv(L, sizeof *gm, 0);
    if (init > ls)
        init = ls + 1; /* start after the end: no match */
    lualib_prepstate(&gm->ms, L, s, ls, p, lp);
    gm->src = s + init;
    gm->p = p;
    gm->lastmatch = NULL;
    lua_pushcclosure(L, lualib_gmatch_aux, 3);
    return 1;
}

static void lualib_add_s(struct match_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
    size_t l;
    lua_State *L = ms->L;
    const char *news = lua_tolstring(L, 3, &l);
    const char *p;
    while ((p = memchr(news, L_ESC, l)) != NULL) {
        luaL_addlstring(b, news, (size_t)(p - news));
        p++; /* skip the escape */
        if (*p == L_ESC) {
            luaL_addchar(b, *p);
        } else if (*p == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)*p)) {
            lualib_push_onecapture(ms, *p - '1', s, e);
            luaL_tolstring(L, -1, NULL); /* a position capture becomes its text */
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", L_ESC);
        }
        l -= (size_t)(p + 1 - news);
        news = p + 1;
    }
    luaL_addlstring(b, news, l);
}

/* Add the replacement of one match; returns whether the subject changed. */
static int lualib_add_value(struct match_state *ms, luaL_Buffer *b, const char *s, const char *e,
                            int tr)
{
    lua_State *L = ms->L;
    switch (tr) {
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = lualib_push_captures(ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        lualib_push_onecapture(ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    default:
        lualib_add_s(ms, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int lualib_gsub(lua_State *L)
{
    size_t srcl, lp;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *lastmatch = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
    int anchor = (*p == '^');
    lua_Integer n = 0;
    int changed = 0;
    luaL_argexpected(
        L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
        "string/function/table");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (anchor) {
        p++;
        lp--;
    }
    struct match_state ms;
    lualib_prepstate(&ms, L, src, srcl, p, lp);
    while (n < max_s) {
        lualib_reprepstate(&ms);
        const char *e = lualib_match(&ms, src, p);
        if (e && e != lastmatch) {
            n++;
            changed = lualib_add_value(&ms, &b, src, e, tr) | changed;
            src = lastmatch = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1); /* nothing changed: return the original string */
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ------------------------------------------------------------------------------------ */
/* Installation                                                                         */
/* ------------------------------------------------------------------------------------ */

static void lualib_set(lua_State *L, const char *lib, const char *name, lua_CFunction f)
{
    lua_getglobal(L, lib);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void rules_lualib_open(lua_State *L)
{
    lualib_set(L, LUA_STRLIBNAME, "rep", lualib_rep);
    lualib_set(L, LUA_STRLIBNAME, "find", lualib_find);
    lualib_set(L, LUA_STRLIBNAME, "match", lualib_str_match);
    lualib_set(L, LUA_STRLIBNAME, "gmatch", lualib_gmatch);
    lualib_set(L, LUA_STRLIBNAME, "gsub", lualib_gsub);
    lualib_set(L, LUA_TABLIBNAME, "move", lualib_move);
    lualib_set(L, LUA_TABLIBNAME, "concat", lualib_concat);
    lualib_set(L, LUA_TABLIBNAME, "sort", lualib_sort);
}
