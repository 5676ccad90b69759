/*
 * jsonlua.c — JSON <-> Lua values for the rule engine. See jsonlua.h for both mappings and
 * for why the decoder is not cJSON (it cannot keep integers and floats apart).
 *
 * Decoder design: a recursive-descent parser over the raw bytes with one 256-entry class
 * table, so the common case (short ASCII keys and numbers) costs one lookup per byte. Strings
 * without escapes are pushed directly from the input (Lua interns short strings: no copy of
 * ours), numbers take Clinger's exact fast path and only fall back to strtod for the rare long
 * or huge ones. The decoder allocates only through Lua, so an allocation failure is a Lua
 * error unwinding a protected call and leaves nothing to clean up.
 *
 * Encoder design: one pass writing straight into a buffer that is a Lua userdata, inside a
 * protected call of its own, so every byte of the text counts against the rule state's memory
 * cap (a table referencing one long string many times cannot take the process's memory) and
 * a refusal or a memory error unwinds without leaking anything; numbers are written by
 * jsonlua_number so integers stay integers, object members are sorted by key with qsort
 * (O(n log n)). Strings are escaped as cJSON escapes them, so the text is the same as before.
 */
#include "jsonlua.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lineproto.h"

/* ------------------------------------------------------------------------------------ */
/* Sentinel and character classes                                                       */
/* ------------------------------------------------------------------------------------ */

/* Only its address matters; const, so it is not mutable global state. */
static const char jl_null_sentinel = 0;

void *jsonlua_null(void)
{
    return (void *)&jl_null_sentinel;
}

enum {
    C_PLAIN = 0, /* ASCII that can appear as-is inside a string */
    C_QUOTE,     /* '"' ends the string */
    C_BSLASH,    /* '\\' starts an escape */
    C_CTRL,      /* < 0x20: not allowed raw inside a string */
    C_UTF8,      /* >= 0x80: validate as UTF-8 */
};

#define CTRL8(b) C_CTRL, C_CTRL, C_CTRL, C_CTRL, C_CTRL, C_CTRL, C_CTRL, C_CTRL
#define UTF16(b)                                                                                   \
    C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8,        \
        C_UTF8, C_UTF8, C_UTF8, C_UTF8, C_UTF8

static const unsigned char jl_str_class[256] = {
    CTRL8(0), CTRL8(8), CTRL8(16), CTRL8(24), ['"'] = C_QUOTE, ['\\'] = C_BSLASH, [0x80] = UTF16(0),
    UTF16(1), UTF16(2), UTF16(3),  UTF16(4),  UTF16(5),        UTF16(6),          UTF16(7),
};

struct parser {
    lua_State *L;
    const char *start;
    const char *p;
    const char *end;
    const char *err_at;
    const char *err_msg;
};

/* Record the first error; every parse function then returns -1 up the recursion. */
static int jl_fail(struct parser *ps, const char *at, const char *msg)
{
    ps->err_at = at;
    ps->err_msg = msg;
    return -1;
}

static inline void jl_skip_ws(struct parser *ps)
{
    const char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* ------------------------------------------------------------------------------------ */
/* Strings                                                                              */
/* ------------------------------------------------------------------------------------ */

/*
 * Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
 * or 0 when invalid.
 */
static size_t jl_utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && p[1] >= 0xA0) /* UTF-16 surrogate */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && p[1] >= 0x90) /* > U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

int jsonlua_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = jl_utf8_len(p, end);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

static int jl_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static size_t jl_put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Fail inside a string being built in a luaL_Buffer. Once the buffer outgrows its C-stack part
 * it lives in a to-be-closed slot, and Lua 5.4.4's lua_settop() (jsonlua_decode's cleanup)
 * keeps a stale stack pointer when closing that slot moves the stack. luaL_pushresult() closes
 * it with lua_closeslot(), which re-reads the stack; the emptied result is then dropped.
 */
static int jl_fail_buffer(struct parser *ps, luaL_Buffer *b, const char *at, const char *msg)
{
    luaL_buffsub(b, luaL_bufflen(b));
    luaL_pushresult(b);
    lua_pop(ps->L, 1);
    return jl_fail(ps, at, msg);
}

/*
 * Slow path for a string containing escapes: [seg, p) is already known to be plain text.
 * Builds the value in a luaL_Buffer (its first KiB lives on the C stack).
 */
static int jl_parse_string_escaped(struct parser *ps, const char *seg)
{
    lua_State *L = ps->L;
    const char *p = ps->p, *end = ps->end;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, seg, (size_t)(p - seg));
    for (;;) {
        seg = p;
        while (p < end && jl_str_class[(unsigned char)*p] == C_PLAIN)
            p++;
        if (p > seg)
            luaL_addlstring(&b, seg, (size_t)(p - seg));
        if (p >= end)
            return jl_fail_buffer(ps, &b, p, "unterminated string");
        switch (jl_str_class[(unsigned char)*p]) {
        case C_QUOTE:
            luaL_pushresult(&b);
            ps->p = p + 1;
            return 0;
        case C_CTRL:
            return jl_fail_buffer(ps, &b, p, "control character in string");
        case C_UTF8: {
            size_t n = jl_utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n)
                return jl_fail_buffer(ps, &b, p, "invalid UTF-8 in string");
            luaL_addlstring(&b, p, n);
            p += n;
            break;
        }
        case C_BSLASH: {
            if (end - p < 2)
                return jl_fail_buffer(ps, &b, p, "unterminated string");
            char c = p[1];
            const char *esc = p;
            p += 2;
            switch (c) {
            case '"':
                luaL_addchar(&b, '"');
                break;
            case '\\':
                luaL_addchar(&b, '\\');
                break;
            case '/':
                luaL_addchar(&b, '/');
                break;
            case 'b':
                luaL_addchar(&b, '\b');
                break;
            case 'f':
                luaL_addchar(&b, '\f');
                break;
            case 'n':
                luaL_addchar(&b, '\n');
                break;
            case 'r':
                luaL_addchar(&b, '\r');
                break;
            case 't':
                luaL_addchar(&b, '\t');
                break;
            case 'u': {
                unsigned cp, lo;
                if (end - p < 4 || jl_hex4(p, &cp))
                    return jl_fail_buffer(ps, &b, esc, "invalid \\u escape");
                p += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return jl_fail_buffer(ps, &b, esc, "lone low surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    /* A high surrogate must be followed by an escaped low surrogate. */
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || jl_hex4(p + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return jl_fail_buffer(ps, &b, esc, "lone high surrogate in \\u escape");
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                char u[4];
                luaL_addlstring(&b, u, jl_put_utf8(u, cp));
                break;
            }
            default:
                return jl_fail_buffer(ps, &b, esc, "invalid escape in string");
            }
            break;
        }
        }
    }
}

/* ps->p is just past the opening quote. Pushes the string. */
static int jl_parse_string(struct parser *ps)
{
    const char *p = ps->p, *end = ps->end;
    const char *seg = p;
    for (;;) {
        while (p < end && jl_str_class[(unsigned char)*p] == C_PLAIN)
            p++;
        if (p >= end)
            return jl_fail(ps, p, "unterminated string");
        switch (jl_str_class[(unsigned char)*p]) {
        case C_QUOTE:
            lua_pushlstring(ps->L, seg, (size_t)(p - seg));
            ps->p = p + 1;
            return 0;
        case C_CTRL:
            return jl_fail(ps, p, "control character in string");
        case C_UTF8: {
            size_t n = jl_utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n)
                return jl_fail(ps, p, "invalid UTF-8 in string");
            p += n;
            break;
        }
        default: /* backslash: switch to the copying path */
            ps->p = p;
            return jl_parse_string_escaped(ps, seg);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Numbers                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Exactly representable powers of ten (Clinger's fast path needs e <= 22). */
static const double jl_pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline bool jl_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int jl_parse_number(struct parser *ps)
{
    const char *start = ps->p, *p = ps->p, *end = ps->end;
    bool neg = false, is_int = true, exact = true;
    uint64_t m = 0;  /* all significant digits, while they fit */
    int ndigits = 0; /* digits accumulated into m */
    int frac = 0;    /* digits after the '.' that went into m */
    long exp10 = 0;

    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || !jl_is_digit(*p))
        return jl_fail(ps, start, "invalid number");
    if (*p == '0') {
        p++;
        if (p < end && jl_is_digit(*p))
            return jl_fail(ps, start, "leading zero in number");
    } else {
        while (p < end && jl_is_digit(*p)) {
            if (ndigits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                ndigits++;
            } else {
                exact = false; /* too many digits for a uint64 mantissa */
            }
            p++;
        }
    }
    if (p < end && *p == '.') {
        is_int = false;
        p++;
        if (p >= end || !jl_is_digit(*p))
            return jl_fail(ps, p, "digit expected after '.'");
        while (p < end && jl_is_digit(*p)) {
            if (ndigits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                if (m)
                    ndigits++;
                frac++;
            } else {
                exact = false;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || !jl_is_digit(*p))
            return jl_fail(ps, p, "digit expected in exponent");
        while (p < end && jl_is_digit(*p)) {
            if (exp10 < 100000)
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    ps->p = p;

    if (is_int && exact) {
        /* 19 digits always fit in uint64; int64 takes up to 2^63-1 (2^63 when negative). */
        if (!neg && m <= (uint64_t)INT64_MAX) {
            lua_pushinteger(ps->L, (lua_Integer)m);
            return 0;
        }
        if (neg && m <= (uint64_t)INT64_MAX + 1) {
            lua_pushinteger(ps->L, (lua_Integer)(0 - m));
            return 0;
        }
    }
    if (exact) {
        /* Clinger: m and 10^|e| are exact doubles, one IEEE operation rounds correctly. */
        long e = exp10 - frac;
        if (m <= (1ULL << 53) && e >= -22 && e <= 22) {
            double d = (double)m;
            d = e < 0 ? d / jl_pow10_exact[-e] : d * jl_pow10_exact[e];
            lua_pushnumber(ps->L, neg ? -d : d);
            return 0;
        }
    }
    /* Rare: long mantissa or big exponent. strtod needs a NUL-terminated copy. */
    size_t n = (size_t)(p - start);
    char small[64];
    char *tmp = n < sizeof small ? small : malloc(n + 1);
    if (!tmp)
        return luaL_error(ps->L, "not enough memory");
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    if (tmp != small)
        free(tmp);
    lua_pushnumber(ps->L, d);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Values                                                                               */
/* ------------------------------------------------------------------------------------ */

static int jl_parse_value(struct parser *ps, int depth);

/*
 * Objects are built with their final size: the first OBJ_BUFFERED key/value pairs are left
 * on the Lua stack and the table is created only at '}' (or when the buffer fills), sized
 * for them. Creating a table small and letting it grow rehashes every key at each power of
 * two; the telemetry root object (6 keys) paid for one rehash per packet that way.
 */
#define OBJ_BUFFERED 16

/* Replace the `npairs` pairs above `base` by one table holding them (in order: last wins). */
static void jl_object_from_stack(lua_State *L, int base, int npairs, int size)
{
    lua_createtable(L, 0, size);
    for (int i = 0; i < npairs; i++) {
        lua_pushvalue(L, base + 1 + 2 * i);
        lua_pushvalue(L, base + 2 + 2 * i);
        lua_rawset(L, -3);
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

static int jl_parse_object(struct parser *ps, int depth)
{
    lua_State *L = ps->L;
    const char *open = ps->p;
    if (depth >= JSONLUA_MAX_DEPTH)
        return jl_fail(ps, open, "nesting too deep");
    luaL_checkstack(L, 2 * OBJ_BUFFERED + 4, "json nesting");
    ps->p++;
    int base = lua_gettop(L), npairs = 0;
    bool buffered = true; /* pairs still on the stack, no table yet */
    jl_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        lua_createtable(L, 0, 0);
        return 0;
    }
    for (;;) {
        if (buffered && npairs == OBJ_BUFFERED) {
            jl_object_from_stack(L, base, npairs, 2 * OBJ_BUFFERED);
            buffered = false;
        }
        if (ps->p >= ps->end || *ps->p != '"')
            return jl_fail(ps, ps->p, "object key (string) expected");
        ps->p++;
        if (jl_parse_string(ps))
            return -1;
        jl_skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':')
            return jl_fail(ps, ps->p, "':' expected after object key");
        ps->p++;
        jl_skip_ws(ps);
        if (jl_parse_value(ps, depth + 1))
            return -1;
        if (buffered)
            npairs++;
        else
            lua_rawset(L, -3);
        jl_skip_ws(ps);
        if (ps->p >= ps->end)
            return jl_fail(ps, ps->p, "unterminated object");
        if (*ps->p == ',') {
            ps->p++;
            jl_skip_ws(ps);
            continue;
        }
        if (*ps->p == '}') {
            ps->p++;
            if (buffered)
                jl_object_from_stack(L, base, npairs, npairs);
            return 0;
        }
        return jl_fail(ps, ps->p, "',' or '}' expected in object");
    }
}

static int jl_parse_array(struct parser *ps, int depth)
{
    lua_State *L = ps->L;
    if (depth >= JSONLUA_MAX_DEPTH)
        return jl_fail(ps, ps->p, "nesting too deep");
    luaL_checkstack(L, 4, "json nesting");
    ps->p++;
    lua_createtable(L, 4, 0);
    jl_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 0;
    }
    for (lua_Integer i = 1;; i++) {
        if (jl_parse_value(ps, depth + 1))
            return -1;
        lua_rawseti(L, -2, i);
        jl_skip_ws(ps);
        if (ps->p >= ps->end)
            return jl_fail(ps, ps->p, "unterminated array");
        if (*ps->p == ',') {
            ps->p++;
            jl_skip_ws(ps);
            continue;
        }
        if (*ps->p == ']') {
            ps->p++;
            return 0;
        }
        return jl_fail(ps, ps->p, "',' or ']' expected in array");
    }
}

static int jl_parse_literal(struct parser *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return jl_fail(ps, ps->p, "invalid literal");
    ps->p += n;
    return 0;
}

static int jl_parse_value(struct parser *ps, int depth)
{
    if (ps->p >= ps->end)
        return jl_fail(ps, ps->p, "value expected");
    switch (*ps->p) {
    case '{':
        return jl_parse_object(ps, depth);
    case '[':
        return jl_parse_array(ps, depth);
    case '"':
        ps->p++;
        return jl_parse_string(ps);
    case 't':
        if (jl_parse_literal(ps, "true", 4))
            return -1;
        lua_pushboolean(ps->L, 1);
        return 0;
    case 'f':
        if (jl_parse_literal(ps, "false", 5))
            return -1;
        lua_pushboolean(ps->L, 0);
        return 0;
    case 'n':
        if (jl_parse_literal(ps, "null", 4))
            return -1;
        lua_pushlightuserdata(ps->L, jsonlua_null());
        return 0;
    default:
        if (*ps->p == '-' || jl_is_digit(*ps->p))
            return jl_parse_number(ps);
        return jl_fail(ps, ps->p, "value expected");
    }
}

/* ------------------------------------------------------------------------------------ */
/* Entry point                                                                          */
/* ------------------------------------------------------------------------------------ */

int jsonlua_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen)
{
    struct parser ps = {.L = L, .start = s, .p = s, .end = s + len};
    int top = lua_gettop(L);
    luaL_checkstack(L, 8, "json");
    jl_skip_ws(&ps);
    if (jl_parse_value(&ps, 0) == 0) {
        jl_skip_ws(&ps);
        if (ps.p == ps.end)
            return 0;
        jl_fail(&ps, ps.p, "trailing characters after JSON value");
    }
    lua_settop(L, top);
    if (err && errlen)
        snprintf(err, errlen, "offset %zu: %s", (size_t)(ps.err_at - s), ps.err_msg);
    return -EBADMSG;
}

/* ------------------------------------------------------------------------------------ */
/* Encoding: Lua value -> JSON text                                                    */
/* ------------------------------------------------------------------------------------ */

/* The reasons that mean "resources ran out" (-ENOMEM) rather than "no JSON form" (-EINVAL). */
static const char jl_oom[] = "out of memory";
static const char jl_nostack[] = "Lua stack exhausted";

size_t jsonlua_number(lua_State *L, int idx, char *out)
{
    if (lua_isinteger(L, idx))
        return (size_t)lp_format_int(out, (int64_t)lua_tointeger(L, idx));
    double d = lua_tonumber(L, idx);
    if (!isfinite(d))
        return 0;
    size_t n = (size_t)lp_format_double(out, JSONLUA_NUM_MAX, d);
    if (!strpbrk(out, ".eEn")) {
        memcpy(out + n, ".0", 3);
        n += 2;
    }
    return n;
}

/*
 * The encoder writes into one growable buffer that is a Lua userdata (so every byte counts
 * against the state's memory cap, and an abandoned encode leaves only garbage for the
 * collector) and runs entirely inside a protected call of its own: a refusal or an
 * allocation failure unwinds to jsonlua_encode, which restores the stack and returns a code.
 */
struct jl_enc {
    int slot; /* stack index of the buffer userdata */
    char *p;
    size_t len, cap;
    size_t nodes;
    int rc;          /* set before raising: -EINVAL or -ENOMEM */
    const char *why; /* static reason, or msg */
    char msg[128];
};

/* Raise with a reason; jsonlua_encode turns it into its return code. */
static int jl_refuse(lua_State *L, struct jl_enc *e, int rc, const char *why)
{
    e->rc = rc;
    e->why = why;
    return luaL_error(L, "%s", why);
}

static void jl_grow(lua_State *L, struct jl_enc *e, size_t need)
{
    size_t cap = e->cap ? e->cap : 256;
    while (cap - e->len < need) {
        if (cap > SIZE_MAX / 2)
            jl_refuse(L, e, -ENOMEM, jl_oom);
        cap *= 2;
    }
    /* A refusal by the capped allocator raises a memory error with this reason set. */
    e->rc = -ENOMEM;
    snprintf(e->msg, sizeof e->msg,
             "out of memory (a JSON text over %zu bytes does not fit under the memory limit)",
             e->len);
    e->why = e->msg;
    char *np = lua_newuserdatauv(L, cap, 0);
    e->rc = 0;
    e->why = NULL;
    if (e->len)
        memcpy(np, e->p, e->len);
    lua_replace(L, e->slot);
    e->p = np;
    e->cap = cap;
}

static inline void jl_put(lua_State *L, struct jl_enc *e, const char *s, size_t n)
{
    if (e->cap - e->len < n)
        jl_grow(L, e, n);
    memcpy(e->p + e->len, s, n);
    e->len += n;
}

static inline void jl_putc(lua_State *L, struct jl_enc *e, char c)
{
    if (e->cap == e->len)
        jl_grow(L, e, 1);
    e->p[e->len++] = c;
}

/* A JSON string: ", \ and control characters escaped (as cJSON does), other bytes as-is. */
static void jl_put_string(lua_State *L, struct jl_enc *e, const char *s, size_t len)
{
    jl_putc(L, e, '"');
    size_t run = 0; /* start of the pending run of plain bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jl_put(L, e, s + run, i - run);
        run = i + 1;
        char esc[8];
        size_t n = 2;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
            break;
        }
        jl_put(L, e, esc, n);
    }
    jl_put(L, e, s + run, len - run);
    jl_putc(L, e, '"');
}

/* One member of an object being sorted: its key (anchored by the table being encoded) and
 * where its value was parked. */
struct jl_member {
    const char *k;
    size_t klen;
    int pos;
};

static int jl_member_cmp(const void *a, const void *b)
{
    const struct jl_member *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);
    if (c)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static void jl_encode_value(lua_State *L, struct jl_enc *e, int idx, int depth);

/*
 * An object: members sorted by key (bytewise, as strcmp for NUL-free keys) with qsort. Values
 * are parked in a scratch sequence so they can be fetched in key order without pushing the
 * keys again (which would allocate a copy of every long key).
 */
static void jl_encode_object(lua_State *L, struct jl_enc *e, int idx, int depth, size_t count)
{
    if (count > (size_t)INT_MAX / 2)
        jl_refuse(L, e, -EINVAL, "value too large to encode");
    struct jl_member *m = lua_newuserdatauv(L, count ? count * sizeof *m : 1, 0);
    int m_idx = lua_gettop(L);
    lua_createtable(L, (int)count, 0);
    int vals = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        if (!k || memchr(k, '\0', klen) || n == count)
            jl_refuse(L, e, -EINVAL, "object keys must be strings (or the table a sequence 1..n)");
        m[n] = (struct jl_member){.k = k, .klen = klen, .pos = (int)n + 1};
        lua_rawseti(L, vals, (lua_Integer)++n);
    }
    qsort(m, n, sizeof *m, jl_member_cmp);
    jl_putc(L, e, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            jl_putc(L, e, ',');
        jl_put_string(L, e, m[i].k, m[i].klen);
        jl_putc(L, e, ':');
        lua_rawgeti(L, vals, m[i].pos);
        jl_encode_value(L, e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    jl_putc(L, e, '}');
    lua_settop(L, m_idx - 1);
}

static void jl_encode_value(lua_State *L, struct jl_enc *e, int idx, int depth)
{
    char num[JSONLUA_NUM_MAX];
    if (++e->nodes > JSONLUA_MAX_NODES)
        jl_refuse(L, e, -EINVAL, "value too large to encode");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        jl_put(L, e, "null", 4);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != jsonlua_null())
            break;
        jl_put(L, e, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            jl_put(L, e, "true", 4);
        else
            jl_put(L, e, "false", 5);
        return;
    case LUA_TNUMBER: {
        size_t n = jsonlua_number(L, idx, num);
        if (!n)
            jl_refuse(L, e, -EINVAL, "non-finite number (nan/inf) has no JSON form");
        jl_put(L, e, num, n);
        return;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (memchr(s, '\0', len))
            jl_refuse(L, e, -EINVAL, "string with a NUL byte cannot be encoded");
        jl_put_string(L, e, s, len);
        return;
    }
    case LUA_TTABLE: {
        if (depth >= JSONLUA_MAX_DEPTH)
            jl_refuse(L, e, -EINVAL, "table nested too deeply (or cyclic)");
        if (!lua_checkstack(L, 8))
            jl_refuse(L, e, -ENOMEM, jl_nostack);
        size_t n = (size_t)lua_rawlen(L, idx), count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            count++;
            lua_pop(L, 1);
        }
        if (n == 0 || count != n) {
            jl_encode_object(L, e, idx, depth, count);
            return;
        }
        jl_putc(L, e, '[');
        for (size_t i = 1; i <= n; i++) {
            if (i > 1)
                jl_putc(L, e, ',');
            lua_rawgeti(L, idx, (lua_Integer)i);
            jl_encode_value(L, e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        jl_putc(L, e, ']');
        return;
    }
    default:
        break;
    }
    jl_refuse(L, e, -EINVAL, "value of this type has no JSON form (function, userdata or thread)");
}

/* Protected: (e, value) -> text. */
static int jl_encode_protected(lua_State *L)
{
    struct jl_enc *e = lua_touserdata(L, 1);
    lua_pushnil(L); /* 3: the buffer slot */
    e->slot = 3;
    jl_encode_value(L, e, 2, 0);
    lua_pushlstring(L, e->p ? e->p : "", e->len);
    return 1;
}

int jsonlua_encode(lua_State *L, int idx, char *err, size_t errlen)
{
    struct jl_enc e = {0};
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 8)) {
        if (err && errlen)
            snprintf(err, errlen, "%s", jl_nostack);
        return -ENOMEM;
    }
    lua_pushcfunction(L, jl_encode_protected);
    lua_pushlightuserdata(L, &e);
    lua_pushvalue(L, idx);
    int status = lua_pcall(L, 2, 1, 0);
    if (status == LUA_OK)
        return 0;
    lua_pop(L, 1);
    if (!e.why) { /* an allocation outside jl_grow (scratch tables, the result) */
        e.rc = -ENOMEM;
        e.why = jl_oom;
    }
    if (err && errlen)
        snprintf(err, errlen, "%s", e.why);
    return e.rc ? e.rc : -ENOMEM;
}
