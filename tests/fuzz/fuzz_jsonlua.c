/*
 * fuzz_jsonlua.c — libFuzzer harness for the JSON decoder (src/jsonlua.c), differential
 * against cJSON_ParseWithOpts(require_null_terminated).
 *
 * Per input:
 *  1. Decode into a Lua state (memory-capped allocator, plenty of room) inside lua_pcall, with
 *     a few unrelated values on the stack below. Accepted: exactly one value more on the stack.
 *     Rejected: lua_gettop is what it was before, and the stack still works (push/pop a
 *     stack-growing amount of values, so a stale top after a to-be-closed buffer slot is
 *     closed shows up under ASan).
 *  2. Compare accept/reject with cJSON and, when both accept, the values.
 *  3. Decode again under a tight memory cap derived from the input: a memory error must unwind
 *     the pcall cleanly (no leak, consistent stack) and a success must give the same verdict.
 *
 * Where jsonlua and cJSON legitimately differ, a pre-scan decides what jsonlua must say and
 * cJSON's verdict is not used (cJSON is laxer than RFC 8259 in each case):
 *  - NUL bytes anywhere: cJSON stops at the NUL; jsonlua (length-delimited) must reject.
 *  - a leading UTF-8 BOM: cJSON skips it; jsonlua must reject.
 *  - whitespace other than space/tab/CR/LF (cJSON skips every byte <= 0x20): must reject.
 *  - raw control characters in strings (cJSON keeps them): must reject.
 *  - invalid UTF-8 (cJSON copies bytes): must reject.
 *  - "\u" without 4 hex digits (cJSON reads it as U+0000): must reject.
 *  - number tokens outside the RFC grammar ("01", "1.", "-.5", "1.e3" reach strtod in cJSON):
 *    must reject.
 *  - number tokens longer than 63 bytes (cJSON parses only the first 63): verdict unchecked,
 *    jsonlua's value compared with strtod of the token.
 *  - nesting deeper than JSONLUA_MAX_DEPTH (cJSON allows 1000): must reject.
 * Value differences normalised: duplicate keys (jsonlua keeps the last, cJSON the list: the
 * last one of each key is compared); strings with "\u0000" (cJSON's C string ends there: only
 * jsonlua's prefix up to its first NUL is compared); integers (jsonlua keeps int64, cJSON a
 * double: compared as (double)i == valuedouble); an object with a key containing "\u0000" is
 * not compared (cJSON cuts the key, distinct keys may merge).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "jsonlua.h"

struct fj_mem {
    size_t used, limit;
};

static void *fj_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct fj_mem *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (nsize > old && m->used - old + nsize > m->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        m->used = m->used - old + nsize;
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-scan: the cases where cJSON's verdict is not jsonlua's                               */
/* ---------------------------------------------------------------------------------------- */

enum { FJ_COMPARE = 0, FJ_MUST_REJECT, FJ_UNCHECKED };

static int fj_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int fj_is_numch(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int fj_number_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i == n;
}

static int fj_prescan(const unsigned char *s, size_t n)
{
    int verdict = FJ_COMPARE;
    if (memchr(s, '\0', n) || !jsonlua_utf8_valid((const char *)s, n))
        return FJ_MUST_REJECT;
    if (n >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        return FJ_MUST_REJECT;
    int in_str = 0, depth = 0, max_depth = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (in_str) {
            if (c < 0x20)
                return FJ_MUST_REJECT;
            if (c == '"') {
                in_str = 0;
            } else if (c == '\\' && i + 1 < n) {
                i++;
                if (s[i] == 'u' && !(i + 4 < n && fj_is_hex(s[i + 1]) && fj_is_hex(s[i + 2]) &&
                                     fj_is_hex(s[i + 3]) && fj_is_hex(s[i + 4])))
                    return FJ_MUST_REJECT;
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                max_depth = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c <= 0x20 && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            return FJ_MUST_REJECT;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < n && fj_is_numch(s[j]))
                j++;
            if (!fj_number_ok(s + i, j - i))
                return FJ_MUST_REJECT;
            if (j - i > 63)
                verdict = FJ_UNCHECKED;
            i = j - 1;
        }
    }
    if (max_depth > JSONLUA_MAX_DEPTH)
        return FJ_MUST_REJECT;
    return verdict;
}

/* ---------------------------------------------------------------------------------------- */
/* Value comparison                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* The last member called key (jsonlua keeps the last of duplicate keys). */
static const cJSON *fj_last_member(const cJSON *obj, const char *key, size_t klen)
{
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (strlen(c->string) == klen && memcmp(c->string, key, klen) == 0)
            found = c;
    return found;
}

static int fj_count_distinct(const cJSON *obj)
{
    int n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        const cJSON *d = obj->child;
        while (d != c && strcmp(d->string, c->string) != 0)
            d = d->next;
        n += d == c;
    }
    return n;
}

/* Returns 1 when the Lua value at idx equals the cJSON item. */
static int fj_equal(lua_State *L, int idx, const cJSON *j)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TLIGHTUSERDATA:
        return cJSON_IsNull(j) && lua_touserdata(L, idx) == jsonlua_null();
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? cJSON_IsTrue(j) : cJSON_IsFalse(j);
    case LUA_TNUMBER:
        if (!cJSON_IsNumber(j))
            return 0;
        if (lua_isinteger(L, idx))
            return (double)lua_tointeger(L, idx) == j->valuedouble;
        {
            double d = lua_tonumber(L, idx);
            return d == j->valuedouble && signbit(d) == signbit(j->valuedouble);
        }
    case LUA_TSTRING: {
        if (!cJSON_IsString(j))
            return 0;
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        size_t upto = strnlen(s, len); /* cJSON's copy ends at a \u0000 */
        return strlen(j->valuestring) == upto && memcmp(s, j->valuestring, upto) == 0;
    }
    case LUA_TTABLE: {
        if (!lua_checkstack(L, 4))
            abort();
        int nkeys = 0;
        if (cJSON_IsArray(j)) {
            int n = cJSON_GetArraySize(j);
            if ((lua_Integer)lua_rawlen(L, idx) != n)
                return 0;
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                nkeys++;
                int ok = lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
                         lua_tointeger(L, -2) <= n &&
                         fj_equal(L, -1, cJSON_GetArrayItem(j, (int)lua_tointeger(L, -2) - 1));
                lua_pop(L, 1);
                if (!ok) {
                    lua_pop(L, 1);
                    return 0;
                }
            }
            return nkeys == n;
        }
        if (!cJSON_IsObject(j))
            return 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            nkeys++;
            int ok = 0;
            if (lua_type(L, -2) == LUA_TSTRING) {
                size_t klen;
                const char *k = lua_tolstring(L, -2, &klen);
                if (strnlen(k, klen) != klen) {
                    /* A key with "\u0000": cJSON cut it, keys may have merged. Unchecked. */
                    lua_pop(L, 2);
                    return 1;
                }
                const cJSON *m = fj_last_member(j, k, klen);
                ok = m && fj_equal(L, -1, m);
            }
            lua_pop(L, 1);
            if (!ok) {
                lua_pop(L, 1);
                return 0;
            }
        }
        return nkeys == fj_count_distinct(j);
    }
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Decoding under pcall                                                                     */
/* ---------------------------------------------------------------------------------------- */

struct fj_call {
    const char *s;
    size_t len;
    int rc;
};

#define FJ_BELOW 3 /* unrelated values on the stack below the decode */

static int fj_decode_fn(lua_State *L)
{
    struct fj_call *c = lua_touserdata(L, 1);
    for (int i = 0; i < FJ_BELOW; i++)
        lua_pushinteger(L, 1000 + i);
    int top = lua_gettop(L);
    char err[128];
    c->rc = jsonlua_decode(L, c->s, c->len, err, sizeof err);
    if (c->rc == 0) {
        if (lua_gettop(L) != top + 1)
            abort();
    } else {
        /* A failed decode leaves the stack exactly as it was... */
        if (lua_gettop(L) != top || strncmp(err, "offset ", 7) != 0)
            abort();
        /* ...and usable: grow it (a stale top would write into a freed stack) and check. */
        luaL_checkstack(L, 200, "fuzz");
        for (int i = 0; i < 200; i++)
            lua_pushinteger(L, i);
        lua_settop(L, top);
        for (int i = 0; i < FJ_BELOW; i++)
            if (lua_tointeger(L, 2 + i) != 1000 + i)
                abort();
        lua_pushnil(L);
    }
    return 1;
}

/* Runs the decode; returns the Lua status and leaves the result (or nil/error) on the top. */
static int fj_run(lua_State *L, struct fj_call *c)
{
    int top = lua_gettop(L);
    lua_pushcfunction(L, fj_decode_fn);
    lua_pushlightuserdata(L, c);
    int st = lua_pcall(L, 1, 1, 0);
    if (lua_gettop(L) != top + 1)
        abort();
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int verdict = fj_prescan(data, size);

    struct fj_mem mem = {.used = 0, .limit = 256u << 20};
    lua_State *L = lua_newstate(fj_alloc, &mem);
    if (!L)
        return 0;
    struct fj_call c = {.s = s, .len = size, .rc = -1};
    if (fj_run(L, &c) != LUA_OK)
        abort(); /* 256 MiB is plenty for any input libFuzzer makes */
    int ok = c.rc == 0;

    char *z = malloc(size + 1);
    if (!z)
        abort();
    memcpy(z, data, size);
    z[size] = '\0';
    cJSON *j = cJSON_ParseWithOpts(z, NULL, 1);

    if (verdict == FJ_MUST_REJECT && ok)
        abort();
    if (verdict == FJ_COMPARE && ok != (j != NULL))
        abort();
    if (ok && j && verdict == FJ_COMPARE && !fj_equal(L, -1, j))
        abort();
    if (ok && verdict == FJ_UNCHECKED && size <= 4096) {
        /* A long number token: cJSON only saw a prefix; a bare number can be checked. */
        if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            double d = strtod(z, NULL);
            if (d != lua_tonumber(L, -1))
                abort();
        }
    }
    cJSON_Delete(j);
    free(z);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);

    /* Again, with a tight cap: room for a fraction of what the full decode needed. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    mem.limit = mem.used + 64 + h % (64 + 16 * size);
    int st = fj_run(L, &c);
    if (st == LUA_OK && (c.rc == 0) != ok)
        abort();
    /* Growing the Lua stack under the cap fails as luaL_checkstack's "stack overflow". */
    if (st != LUA_OK && st != LUA_ERRMEM &&
        !(st == LUA_ERRRUN && strstr(lua_tostring(L, -1), "stack overflow")))
        abort();
    lua_close(L);
    return 0;
}
