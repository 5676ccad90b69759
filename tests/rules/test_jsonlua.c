/*
 * test_jsonlua.c — JSON <-> Lua. The decoder: integer/float distinction, strings and \u
 * escapes, the null sentinel, strict RFC 8259 rejections with byte offsets, the depth limit,
 * allocation failure inside a protected call, and agreement with cJSON on the sample data.
 * The encoder: number texts, sorted keys, arrays vs objects, every refusal with its return
 * code, and decode -> encode -> decode round trips of the sample data.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "jsonlua.h"

struct dec {
    const char *s;
    size_t len;
    int rc;
    char err[128];
};

static int decode_fn(lua_State *L)
{
    struct dec *d = lua_touserdata(L, 1);
    lua_settop(L, 0);
    d->rc = jsonlua_decode(L, d->s, d->len, d->err, sizeof d->err);
    return d->rc ? 0 : 1;
}

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    lua_pushlightuserdata(L, jsonlua_null());
    lua_setglobal(L, "null");
    return L;
}

/* Decode `json` into global v and assert the Lua expression `check` is true. */
static void ok_n(const char *json, size_t len, const char *check)
{
    lua_State *L = new_state();
    struct dec d = {.s = json, .len = len};
    lua_pushcfunction(L, decode_fn);
    lua_pushlightuserdata(L, &d);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    if (d.rc)
        fail_msg("decode of %s failed: %s", json, d.err);
    lua_setglobal(L, "v");
    char code[1024];
    snprintf(code, sizeof code, "return (%s)", check);
    assert_int_equal(luaL_dostring(L, code), LUA_OK);
    if (!lua_toboolean(L, -1))
        fail_msg("for %s: check failed: %s", json, check);
    lua_close(L);
}

static void ok(const char *json, const char *check)
{
    ok_n(json, strlen(json), check);
}

/* Assert `json` is rejected with "offset <off>: ..." and nothing left on the stack. */
static void bad_n(const char *json, size_t len, size_t off)
{
    lua_State *L = new_state();
    struct dec d = {.s = json, .len = len};
    lua_pushcfunction(L, decode_fn);
    lua_pushlightuserdata(L, &d);
    assert_int_equal(lua_pcall(L, 1, LUA_MULTRET, 0), LUA_OK);
    if (d.rc != -EBADMSG)
        fail_msg("%s was accepted", json);
    assert_int_equal(lua_gettop(L), 0);
    char want[32];
    snprintf(want, sizeof want, "offset %zu: ", off);
    if (strncmp(d.err, want, strlen(want)) != 0)
        fail_msg("%s: got \"%s\", wanted offset %zu", json, d.err, off);
    lua_close(L);
}

static void bad(const char *json, size_t off)
{
    bad_n(json, strlen(json), off);
}

static void test_numbers(void **unused)
{
    (void)unused;
    ok("84190", "math.type(v) == 'integer' and v == 84190");
    ok("24.0", "math.type(v) == 'float' and v == 24");
    ok("27.6", "math.type(v) == 'float' and v == 27.6");
    ok("-39", "math.type(v) == 'integer' and v == -39");
    ok("0", "math.type(v) == 'integer' and v == 0");
    ok("-0", "math.type(v) == 'integer' and v == 0");
    ok("-0.0", "math.type(v) == 'float' and 1/v == -math.huge");
    ok("1e2", "math.type(v) == 'float' and v == 100");
    ok("1E-2", "math.type(v) == 'float' and v == 0.01");
    ok("2.5e+3", "v == 2500.0");
    ok("0.1", "v == 0.1");
    ok("9223372036854775807", "math.type(v) == 'integer' and v == math.maxinteger");
    ok("-9223372036854775808", "math.type(v) == 'integer' and v == math.mininteger");
    ok("9223372036854775808", "math.type(v) == 'float' and v == 2^63");
    ok("123456789012345678901234567890", "math.type(v) == 'float' and v == 1.2345678901234568e29");
    ok("1.7976931348623157e308", "v == 1.7976931348623157e308");
    ok("5e-324", "v == 5e-324");
    ok("2.2250738585072014e-308", "v == 2.2250738585072014e-308");
    ok("0.30000000000000004", "v == 0.30000000000000004");
    ok("9007199254740993.0", "v == 9007199254740992.0"); /* beyond 2^53: strtod path */
    ok("1.00000000000000000000000000000000000000000000000000000000000000000000000001", "v == 1.0");
    ok("[1,2.0,-3]", "math.type(v[1])=='integer' and math.type(v[2])=='float' and v[3]==-3");
}

static void test_strings(void **unused)
{
    (void)unused;
    ok("\"plain\"", "v == 'plain'");
    ok("\"\"", "v == ''");
    ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "v == 'a\"b\\\\c/d\\b\\f\\n\\r\\t'");
    ok("\"\\u00e9\\u20AC\"", "v == '\\u{e9}\\u{20ac}'");
    ok("\"\\ud83d\\ude00\"", "v == '\\xF0\\x9F\\x98\\x80'");
    ok("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "v == 'caf\\u{e9} \\u{1f600}'");
    ok_n("\"a\\u0000b\"", 10, "#v == 3 and v:byte(2) == 0");
    /* long escaped string: exercises the luaL_Buffer growth path */
    char big[5000];
    size_t n = 0;
    big[n++] = '"';
    for (int i = 0; i < 1000; i++) {
        memcpy(big + n, "ab\\n", 4);
        n += 4;
    }
    big[n++] = '"';
    big[n] = '\0';
    ok(big, "#v == 3000 and v:sub(1,3) == 'ab\\n'");
}

static void test_structures(void **unused)
{
    (void)unused;
    ok(" { \"a\" : [ 1 , { \"b\" : null } ] , \"c\" : true , \"d\" : false } \n",
       "v.a[1] == 1 and v.a[2].b == null and v.c == true and v.d == false");
    ok("[1,null,3]", "#v == 3 and v[2] == null and v[3] == 3");
    ok("{}", "next(v) == nil");
    ok("[]", "#v == 0");
    ok("{\"a\":1,\"a\":2}", "v.a == 2");
    ok("null", "v == null");
    ok("{\"ts\":12000,\"n1\":{\"t\":27.6,\"g\":84190},\"n2\":{}}",
       "v.ts == 12000 and v.n1.t == 27.6 and math.type(v.n1.g) == 'integer' and next(v.n2) == nil");
}

static void test_depth_limit(void **unused)
{
    (void)unused;
    char s[300];
    for (int i = 0; i < 64; i++) {
        s[i] = '[';
        s[64 + i] = ']';
    }
    s[128] = '\0';
    ok(s, "type(v) == 'table'");
    for (int i = 0; i < 65; i++) {
        s[i] = '[';
        s[65 + i] = ']';
    }
    s[130] = '\0';
    bad(s, 64);
}

static void test_rejections(void **unused)
{
    (void)unused;
    bad("", 0);
    bad("   ", 3);
    bad("{\"a\":1,}", 7);
    bad("[1,]", 3);
    bad("[01]", 1);
    bad("{'a':1}", 1);
    bad("{\"a\" 1}", 5);
    bad("[1 2]", 3);
    bad("\"\\x\"", 1);
    bad("\"\\u12\"", 1);
    bad("\"\\ud800\"", 1);
    bad("\"\\ud800\\u0041\"", 1);
    bad("\"\\udc00\"", 1);
    bad("\"a\x01\"", 2);
    bad("\"\xc3\x28\"", 1);
    bad("\"\xc0\xaf\"", 1);         /* overlong */
    bad("\"\xed\xa0\x80\"", 1);     /* UTF-8 encoded surrogate */
    bad("\"\xf4\x90\x80\x80\"", 1); /* > U+10FFFF */
    bad("tru", 0);
    bad("nul", 0);
    bad("1.", 2);
    bad("-", 0);
    bad(".5", 0);
    bad("+1", 0);
    bad("1e", 2);
    bad("1e+", 3);
    bad("{} x", 3);
    bad("NaN", 0);
    bad("Infinity", 0);
    bad("/*c*/1", 0);
    bad("\"abc", 4);
    bad("{\"a\":1", 6);
    bad("[1", 2);
    bad("{\"a\":}", 5);
    bad("{1:2}", 1);
    bad_n("[1]\0", 4, 3); /* embedded NUL after the value */
}

/* Allocator that refuses past a cap: the decoder's Lua allocations fail inside the pcall. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    size_t *used = ud;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        *used -= osize;
        return NULL;
    }
    if (nsize > osize && *used + (nsize - osize) > 200 * 1024)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        *used = *used - osize + nsize;
    return p;
}

static void test_memory_failure_is_a_lua_error(void **unused)
{
    (void)unused;
    size_t used = 0;
    lua_State *L = lua_newstate(capped_alloc, &used);
    assert_non_null(L);
    size_t n = 400000;
    char *big = malloc(n + 2);
    assert_non_null(big);
    big[0] = '[';
    for (size_t i = 1; i < n; i += 2) {
        big[i] = '1';
        big[i + 1] = ',';
    }
    big[n - 1] = '1';
    big[n] = ']';
    struct dec d = {.s = big, .len = n + 1};
    lua_pushcfunction(L, decode_fn);
    lua_pushlightuserdata(L, &d);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_ERRMEM);
    lua_close(L);
    assert_int_equal(used, 0);
    free(big);
}

/* Every sample packet decodes, and every number agrees with cJSON's double. */
static int cmp_with_cjson(lua_State *L, int idx, const cJSON *j)
{
    idx = lua_absindex(L, idx);
    if (cJSON_IsNumber(j))
        return lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) == j->valuedouble;
    if (cJSON_IsString(j))
        return lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), j->valuestring) == 0;
    if (cJSON_IsObject(j)) {
        for (const cJSON *c = j->child; c; c = c->next) {
            lua_getfield(L, idx, c->string);
            int same = cmp_with_cjson(L, -1, c);
            lua_pop(L, 1);
            if (!same)
                return 0;
        }
        return 1;
    }
    return 1;
}

static void test_sample_data_matches_cjson(void **unused)
{
    (void)unused;
    FILE *f = fopen(SHARED_DATA_DIR "/probe-rs-session.expected.jsonl", "r");
    if (!f)
        skip();
    lua_State *L = new_state();
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        if (!len)
            continue;
        struct dec d = {.s = line, .len = len};
        lua_pushcfunction(L, decode_fn);
        lua_pushlightuserdata(L, &d);
        assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
        assert_int_equal(d.rc, 0);
        cJSON *j = cJSON_ParseWithLength(line, len);
        assert_non_null(j);
        assert_true(cmp_with_cjson(L, -1, j));
        /* gas is an integer, temperatures are floats */
        lua_getfield(L, -1, "n1");
        lua_getfield(L, -1, "g");
        assert_true(lua_isinteger(L, -1));
        lua_getfield(L, -2, "t");
        assert_false(lua_isinteger(L, -1));
        lua_settop(L, 0);
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    lua_close(L);
    assert_true(n > 10);
}

/* ---- encoder ---- */

struct enc {
    int rc;
    char err[128];
};

/* Protected: encode the value at 2, leave the text (or nothing) on the stack. */
static int encode_fn(lua_State *L)
{
    struct enc *e = lua_touserdata(L, 1);
    int top = lua_gettop(L);
    e->rc = jsonlua_encode(L, 2, e->err, sizeof e->err);
    if (e->rc)
        assert_int_equal(lua_gettop(L), top);
    else
        assert_int_equal(lua_gettop(L), top + 1);
    return e->rc ? 0 : 1;
}

/* Evaluate the Lua expression `expr` and encode its value; returns the rc, text into out. */
static int encode_expr(const char *expr, char *out, size_t outlen, char *why, size_t whylen)
{
    lua_State *L = new_state();
    char code[1024];
    snprintf(code, sizeof code, "return (%s)", expr);
    struct enc e = {0};
    lua_pushcfunction(L, encode_fn);
    lua_pushlightuserdata(L, &e);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
    assert_int_equal(lua_pcall(L, 2, 1, 0), LUA_OK);
    if (e.rc == 0)
        snprintf(out, outlen, "%s", lua_tostring(L, -1));
    snprintf(why, whylen, "%s", e.err);
    lua_close(L);
    return e.rc;
}

static void enc_ok(const char *expr, const char *want)
{
    char out[1024], why[128];
    int rc = encode_expr(expr, out, sizeof out, why, sizeof why);
    if (rc)
        fail_msg("encode of %s failed (%d): %s", expr, rc, why);
    if (strcmp(out, want) != 0)
        fail_msg("encode of %s: got %s, want %s", expr, out, want);
}

static void enc_bad(const char *expr, int want_rc, const char *want_why)
{
    char out[1024], why[128];
    int rc = encode_expr(expr, out, sizeof out, why, sizeof why);
    if (rc != want_rc || !strstr(why, want_why))
        fail_msg("encode of %s: got %d \"%s\", want %d \"%s\"", expr, rc, why, want_rc, want_why);
}

static void test_encode_values(void **unused)
{
    (void)unused;
    enc_ok("84190", "84190");
    enc_ok("24.0", "24.0");
    enc_ok("27.6", "27.6");
    enc_ok("-0.0", "-0.0");
    enc_ok("1e300", "1e+300");
    enc_ok("math.mininteger", "-9223372036854775808");
    enc_ok("nil", "null");
    enc_ok("null", "null");
    enc_ok("true", "true");
    enc_ok("'a\"b\\n'", "\"a\\\"b\\n\""); /* Lua 'a"b<newline>' -> "a\"b\n" */
    enc_ok("{}", "{}");
    enc_ok("{3, 1, 2}", "[3,1,2]");
    enc_ok("{1, null, 3}", "[1,null,3]");
    enc_ok("{zeta = 1, alpha = 2.5, mid = {b = true, a = 'x'}}",
           "{\"alpha\":2.5,\"mid\":{\"a\":\"x\",\"b\":true},\"zeta\":1}");
}

static void test_encode_refusals(void **unused)
{
    (void)unused;
    enc_bad("0/0", -EINVAL, "non-finite number");
    enc_bad("{v = math.huge}", -EINVAL, "non-finite number");
    enc_bad("'a\\0b'", -EINVAL, "NUL byte");
    enc_bad("{1, 2, x = 3}", -EINVAL, "object keys must be strings");
    enc_bad("{[true] = 1}", -EINVAL, "object keys must be strings");
    enc_bad("{f = print}", -EINVAL, "no JSON form");
    enc_bad("coroutine.create(print)", -EINVAL, "no JSON form");
    enc_bad("(function() local t = {} t.self = t return t end)()", -EINVAL, "nested too deeply");
    /* JSONLUA_MAX_NODES: 100001 values (the array itself plus 100000 elements). */
    enc_bad("(function() local t = {} for i = 1, 100000 do t[i] = i end return t end)()", -EINVAL,
            "too large");
    char out[16], why[128];
    assert_int_equal(encode_expr("(function() local t = {} for i = 1, 99999 do t[i] = 0 end "
                                 "return t end)()",
                                 out, sizeof out, why, sizeof why),
                     0);
    assert_string_equal(out, "[0,0,0,0,0,0,0,");
}

/* decode -> encode -> decode -> encode of every sample packet: the two texts are identical
 * and integers stay integers ("g":84190 and never 84190.0). */
static void test_encode_round_trip(void **unused)
{
    (void)unused;
    FILE *f = fopen(SHARED_DATA_DIR "/probe-rs-session.expected.jsonl", "r");
    if (!f)
        skip();
    lua_State *L = new_state();
    char line[4096], first[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        if (!len)
            continue;
        for (int pass = 0; pass < 2; pass++) {
            struct dec d = {.s = pass ? first : line, .len = pass ? strlen(first) : len};
            lua_pushcfunction(L, decode_fn);
            lua_pushlightuserdata(L, &d);
            assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
            assert_int_equal(d.rc, 0);
            struct enc e = {0};
            lua_pushcfunction(L, encode_fn);
            lua_pushlightuserdata(L, &e);
            lua_rotate(L, -3, 2); /* encode_fn, &e, value */
            assert_int_equal(lua_pcall(L, 2, 1, 0), LUA_OK);
            assert_int_equal(e.rc, 0);
            const char *txt = lua_tostring(L, -1);
            if (pass == 0)
                snprintf(first, sizeof first, "%s", txt);
            else
                assert_string_equal(txt, first);
            lua_settop(L, 0);
        }
        /* "g" (gas) is an integer, "t" (temperature) a float, also when it is whole (24.0) */
        const char *g = strstr(first, "\"g\":"), *t = strstr(first, "\"t\":");
        assert_non_null(g);
        assert_non_null(t);
        g += 4;
        t += 4;
        assert_int_equal(g[strspn(g, "0123456789")], ',');
        assert_int_equal(t[strspn(t, "-0123456789")], '.');
        n++;
    }
    fclose(f);
    lua_close(L);
    assert_true(n > 10);
}

static void test_utf8_valid(void **unused)
{
    (void)unused;
    assert_true(jsonlua_utf8_valid("iiot/node1/temperature", 22));
    assert_true(jsonlua_utf8_valid("caf\xc3\xa9", 5));
    assert_false(jsonlua_utf8_valid("caf\xc3", 4));
    assert_false(jsonlua_utf8_valid("\xff", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_structures),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_memory_failure_is_a_lua_error),
        cmocka_unit_test(test_sample_data_matches_cjson),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_encode_values),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_encode_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
