/*
 * test_rules.c — the rule engine itself: the gw API (exact publishes and points through a
 * capture sink), hooks and meta, error reporting as "file:line: message", every hostile rule
 * we know of (after each one the engine must still process a normal packet), the configurable
 * budgets, and hot reload (state hand-over, failed reloads keep the old rule).
 */
#include "clock.h"
#include "rules_harness.h"

#include "log.h"
#include "util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define T0 1732480290000000000LL

/* Assert h->err starts with "<rule path>:<line>:" and contains `needle`. */
static void expect_err_at(const struct harness *h, int line, const char *needle)
{
    char want[200];
    snprintf(want, sizeof want, "%s:%d:", h->path, line);
    if (strncmp(h->err, want, strlen(want)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", h->err, want);
    if (needle && !strstr(h->err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", h->err, needle);
}

/* An invalid API call and the text its Lua error must mention. */
struct bad_call {
    const char *call;
    const char *needle;
};

/*
 * Run each call as line 2 of an on_packet rule: it must fail the packet with a Lua error at
 * that line mentioning the needle, and nothing may reach the sink (no publish, no point).
 */
static void expect_bad_calls(const struct bad_call *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct harness h;
        char rule[512];
        snprintf(rule, sizeof rule, "function on_packet(p)\n  %s\nend\n", cases[i].call);
        assert_int_equal(h_open(&h, rule, 0, 0), 0);
        assert_int_equal(h_packet(&h, "{}", T0), -ECANCELED);
        expect_err_at(&h, 2, cases[i].needle);
        assert_int_equal(h.cap.npub, 0);
        assert_int_equal(h.cap.nline, 0);
        h_close(&h);
    }
}

/* ------------------------------------------------------------------------------------ */
/* gw.publish                                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_publish_formats(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(
        h_open(&h,
               "function on_packet(p)\n"
               "  gw.publish('a/int', 84190)\n"
               "  gw.publish('a/float', 24.0, 0, true)\n"
               "  gw.publish('a/float2', 27.6, 2, false)\n"
               "  gw.publish('a/big', 1e300)\n"
               "  gw.publish('a/neg', -0.5)\n"
               "  gw.publish('a/bool', true)\n"
               "  gw.publish('a/str', 'as-is \\0 bytes')\n"
               "  gw.publish('a/json', {b = 1, a = 2.0, c = {1, 'x', gw.null}, d = {}})\n"
               "  gw.publish('a/null', gw.null)\n"
               "  gw.publish('a/fromjson', p.n)\n"
               "end\n",
               0, 0),
        0);
    assert_int_equal(h_packet(&h, "{\"n\":24.0}", T0), 0);
    struct cap *c = &h.cap;
    assert_int_equal(c->npub, 10);
    expect_pub(c, 0, "a/int", "84190", 1, false);
    expect_pub(c, 1, "a/float", "24.0", 0, true);
    expect_pub(c, 2, "a/float2", "27.6", 2, false);
    expect_pub(c, 3, "a/big", "1e+300", 1, false);
    expect_pub(c, 4, "a/neg", "-0.5", 1, false);
    expect_pub(c, 5, "a/bool", "true", 1, false);
    assert_int_equal(c->pub[6].len, 13);
    assert_memory_equal(c->pub[6].payload, "as-is \0 bytes", 13);
    expect_pub(c, 7, "a/json", "{\"a\":2.0,\"b\":1,\"c\":[1,\"x\",null],\"d\":{}}", 1, false);
    expect_pub(c, 8, "a/null", "null", 1, false);
    expect_pub(c, 9, "a/fromjson", "24.0", 1, false);
    h_close(&h);
}

/* Each invalid call is a Lua error located at the calling line of the rule file. */
static void test_publish_validation(void **unused)
{
    (void)unused;
    static const struct bad_call cases[] = {
        {"gw.publish('', 1)", "topic is empty"},
        {"gw.publish('a/+/b', 1)", "wildcard"},
        {"gw.publish('a/#', 1)", "wildcard"},
        {"gw.publish('a\\0b', 1)", "NUL"},
        {"gw.publish('a/\\xff', 1)", "UTF-8"},
        {"gw.publish(42, 1)", "topic must be a string"},
        {"gw.publish('a', 1, 3)", "qos must be 0, 1 or 2"},
        {"gw.publish('a', 1, 'x')", "qos must be 0, 1 or 2"},
        {"gw.publish('a', 1, 1, 'yes')", "retain must be a boolean"},
        {"gw.publish('a', nil)", "payload must be"},
        {"gw.publish('a', print)", "payload must be"},
        {"gw.publish('a', 0/0)", "non-finite"},
        {"gw.publish('a', {print})", "no JSON form"},
        {"gw.publish('a', {[1]=1, x=2})", "keys must be strings"},
        {"local t = {} t.t = t gw.publish('a', t)", "nested too deeply"},
    };
    expect_bad_calls(cases, ARRAY_LEN(cases));
}

/* ------------------------------------------------------------------------------------ */
/* gw.point                                                                             */
/* ------------------------------------------------------------------------------------ */

static void test_point(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h,
                            "function on_packet(p, meta)\n"
                            "  gw.point('gas_resistance', {node='node1', unit='ohms'}, 84190)\n"
                            "  gw.point('m', {z='1', a=7, f=2.5}, {i=5})\n"
                            "  gw.point('m', nil, {f=24.0}, 123)\n"
                            "  gw.point('m', {}, {b=true})\n"
                            "  gw.point('m', {}, {s='say \"hi\"'})\n"
                            "  gw.point('my m', {['k k']='v,v'}, {['f=x']=1.5})\n"
                            "end\n"
                            "function on_tick(now) gw.point('tick', nil, now) end\n",
                            0, 0),
                     0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    struct cap *c = &h.cap;
    assert_int_equal(c->nline, 6);
    assert_string_equal(c->line[0],
                        "gas_resistance,node=node1,unit=ohms value=84190 1732480290000000000");
    assert_string_equal(c->line[1], "m,a=7,f=2.5,z=1 i=5i 1732480290000000000");
    assert_string_equal(c->line[2], "m f=24 123");
    assert_string_equal(c->line[3], "m b=true 1732480290000000000");
    assert_string_equal(c->line[4], "m s=\"say \\\"hi\\\"\" 1732480290000000000");
    assert_string_equal(c->line[5], "my\\ m,k\\ k=v\\,v f\\=x=1.5 1732480290000000000");
    cap_clear(c);
    /* Inside on_tick the default timestamp is the tick time. */
    assert_int_equal(h_tick(&h, T0 + 5000000000LL), 0);
    assert_int_equal(c->nline, 1);
    assert_string_equal(c->line[0], "tick value=1732480295 1732480295000000000");
    h_close(&h);
}

static void test_point_validation(void **unused)
{
    (void)unused;
    static const struct bad_call cases[] = {
        {"gw.point('m', {}, 0/0)", "invalid point"},
        {"gw.point('m', {a=''}, 1)", "invalid point"},
        {"gw.point('', {}, 1)", "invalid point"},
        {"gw.point('m', {}, {})", "invalid point"},
        {"gw.point('m', {'x'}, 1)", "tag keys must be strings"},
        {"gw.point('m', {a={}}, 1)", "must be a string or number"},
        {"gw.point('m', {}, {x={}})", "must be a number, boolean or string"},
        {"gw.point('m', {}, 'x')", "fields must be a number or a table"},
        {"gw.point('m', 5, 1)", "tags must be a table"},
        {"gw.point('m', {}, 1, 'soon')", "ts_ns must be an integer"},
        {"gw.point(nil, {}, 1)", "measurement must be a string"},
    };
    expect_bad_calls(cases, ARRAY_LEN(cases));
}

/* ------------------------------------------------------------------------------------ */
/* Other gw functions, hooks, meta                                                      */
/* ------------------------------------------------------------------------------------ */

static void test_misc_api_and_hooks(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(
        h_open(&h,
               "local order = {}\n"
               "function init() order[#order+1] = 'init' end\n"
               "order[#order+1] = 'chunk'\n"
               "function on_packet(p, meta)\n"
               "  gw.publish('o', table.concat(order, ','))\n"
               "  gw.publish('meta', gw.json(meta))\n"
               "  gw.publish('prefix', gw.prefix)\n"
               "  gw.publish('now', math.type(gw.now()) .. ' ' .. math.type(gw.now_ns()))\n"
               "  gw.publish('iso', gw.iso8601(0) .. ' ' .. gw.iso8601(1732480290.9))\n"
               "  gw.publish('null', tostring(p.x == gw.null))\n"
               "  gw.log('warn', 'careful')\n"
               "  print('a', 1, nil)\n"
               "end\n"
               "function on_line(text, meta)\n"
               "  gw.publish('line', text .. '|' .. meta.source .. '|' .. meta.line)\n"
               "end\n"
               "function on_tick(now) gw.publish('tick', now) end\n",
               0, 0),
        0);
    assert_int_equal(h_packet(&h, "{\"x\":null}", T0), 0);
    struct cap *c = &h.cap;
    expect_pub(c, 0, "o", "chunk,init", 1, false);
    expect_pub(c, 1, "meta", "{\"line\":7,\"rx_ns\":1732480290000000000,\"source\":\"test\"}", 1,
               false);
    expect_pub(c, 2, "prefix", "iiot", 1, false);
    expect_pub(c, 3, "now", "float integer", 1, false);
    expect_pub(c, 4, "iso", "1970-01-01T00:00:00Z 2024-11-24T20:31:30Z", 1, false);
    expect_pub(c, 5, "null", "true", 1, false);
    assert_int_equal(c->nlog, 2);
    char want[256];
    snprintf(want, sizeof want, "%d %s:11 careful", LL_WARN, h.path);
    assert_string_equal(c->log[0], want);
    snprintf(want, sizeof want, "%d %s:12 a\t1\tnil", LL_INFO, h.path);
    assert_string_equal(c->log[1], want);
    cap_clear(c);

    assert_int_equal(rules_line(h.r, "rtt", 42, T0, "hello world", 11, h.err, sizeof h.err), 0);
    expect_pub(c, 0, "line", "hello world|rtt|42", 1, false);
    assert_int_equal(h_tick(&h, T0 + 500000000LL), 0);
    expect_pub(c, 1, "tick", "1732480290.5", 1, false);

    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.calls, 3);
    assert_true(st.mem_used > 10000 && st.mem_used < 1000000);
    assert_true(st.time_total > 0);
    assert_string_equal(rules_path(h.r), h.path);
    h_close(&h);
}

/* Missing hooks are fine; invalid JSON is -EBADMSG with a byte offset and counted. */
static void test_missing_hooks_and_bad_json(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h, "x = 1\n", 0, 0), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    assert_int_equal(h_tick(&h, T0), 0);
    h_close(&h);

    assert_int_equal(h_open(&h, "function on_packet(p) gw.publish('x', 1) end\n", 0, 0), 0);
    assert_int_equal(h_packet(&h, "{\"a\":1,}", T0), -EBADMSG);
    assert_string_equal(h.err, "invalid JSON at offset 7: object key (string) expected");
    assert_int_equal(h.cap.npub, 0);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.decode_errors, 1);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    assert_int_equal(h.cap.npub, 1);
    h_close(&h);
}

/* Errors say "file:line: message" at the rule line, whatever raised them. */
static void test_error_locations(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h,
                            "local function helper(x)\n"
                            "  return x.y.z\n"
                            "end\n"
                            "function on_packet(p)\n"
                            "  if p.k == 1 then helper({}) end\n"
                            "  if p.k == 2 then error('plain', 0) end\n"
                            "  if p.k == 3 then error({code = 1}) end\n"
                            "  if p.k == 4 then load('error(\"in loaded\")')() end\n"
                            "  if p.k == 5 then string.rep() end\n"
                            "end\n",
                            0, 0),
                     0);
    assert_int_equal(h_packet(&h, "{\"k\":1}", T0), -ECANCELED);
    expect_err_at(&h, 2, "attempt to index a nil value");
    assert_int_equal(h_packet(&h, "{\"k\":2}", T0), -ECANCELED);
    expect_err_at(&h, 6, ": plain");
    assert_int_equal(h_packet(&h, "{\"k\":3}", T0), -ECANCELED);
    expect_err_at(&h, 7, "error object is a table value");
    assert_int_equal(h_packet(&h, "{\"k\":4}", T0), -ECANCELED);
    expect_err_at(&h, 8, "in loaded");
    assert_int_equal(h_packet(&h, "{\"k\":5}", T0), -ECANCELED);
    expect_err_at(&h, 9, "bad argument #1 to 'rep'");
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.errors, 5);
    assert_int_equal(h_packet(&h, "{\"k\":0}", T0), 0);
    h_close(&h);
}

/* ------------------------------------------------------------------------------------ */
/* Hostile rules                                                                        */
/* ------------------------------------------------------------------------------------ */

enum outcome { ERR, OVERRUN, OK_PUB };

/*
 * Run `body` inside on_packet for {"evil":true}; assert the outcome, then assert that a
 * normal packet still works (publishes "t/ok").
 */
static void hostile(const char *body, enum outcome want, const char *needle)
{
    struct harness h;
    char rule[4096];
    snprintf(rule, sizeof rule,
             "function on_packet(pkt)\n"
             "  if pkt.evil then\n"
             "%s\n"
             "  end\n"
             "  gw.publish('t/ok', 'ok')\n"
             "end\n",
             body);
    assert_int_equal(h_open(&h, rule, 0, 0), 0);
    int rc = h_packet(&h, "{\"evil\":true}", T0);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    switch (want) {
    case OVERRUN:
        if (rc != -ECANCELED || !strstr(h.err, "instruction budget exceeded"))
            fail_msg("wanted an overrun for [%s], got rc=%d err=%s", body, rc, h.err);
        assert_int_equal(st.overruns, 1);
        break;
    case ERR:
        if (rc != -ECANCELED)
            fail_msg("wanted an error for [%s], got rc=%d", body, rc);
        assert_int_equal(st.errors, 1);
        break;
    case OK_PUB:
        if (rc != 0)
            fail_msg("wanted success for [%s], got %s", body, h.err);
        break;
    }
    if (needle && !strstr(h.err, needle) &&
        !(want == OK_PUB && h.cap.npub && strstr(h.cap.pub[0].payload, needle)))
        fail_msg("[%s]: \"%s\" not found in err \"%s\"", body, needle, h.err);
    if (want != OK_PUB)
        assert_int_equal(strncmp(h.err, h.path, strlen(h.path)), 0); /* file:line: ... */
    cap_clear(&h.cap);
    /* The engine still works, on a fresh coroutine. */
    assert_int_equal(h_packet(&h, "{\"evil\":false}", T0), 0);
    assert_int_equal(h.cap.npub, 1);
    expect_pub(&h.cap, 0, "t/ok", "ok", 1, false);
    assert_int_equal(h_packet(&h, "{\"evil\":false}", T0), 0);
    h_close(&h);
}

static void test_hostile_loops(void **unused)
{
    (void)unused;
    hostile("while true do end", OVERRUN, ":3: instruction budget");
    hostile("pcall(function() while true do end end)", OVERRUN, NULL);
    hostile("while true do pcall(function() while true do end end) end", OVERRUN, NULL);
    hostile("xpcall(function() while true do end end, function(e) return e end)", OVERRUN, NULL);
    /* Non-yieldable contexts (C function calling Lua): the hook raises, pcall re-raises. */
    hostile(
        "while true do pcall(table.sort, {3,2,1,5,4}, function(a, b) while true do end end) end",
        OVERRUN, NULL);
    hostile("while true do pcall(string.gsub, 'aaa', 'a', function() while true do end end) end",
            OVERRUN, NULL);
    hostile("xpcall(error, function(e) while true do end end)", OVERRUN, NULL);
    hostile("local t = setmetatable({}, {__index = function() while true do end end}) "
            "while true do pcall(function() return t.x end) end",
            OVERRUN, NULL);
    hostile("local t = setmetatable({}, {__tostring = function() while true do end end}) "
            "while true do pcall(tostring, t) end",
            OVERRUN, NULL);
    hostile(
        "do local x <close> = setmetatable({}, {__close = function() while true do end end}) end",
        OVERRUN, NULL);
    /* The hook's error reaches xpcall's handler while hooks are off: the handler is skipped. */
    hostile("while true do xpcall(table.sort, function() while true do end end, {3,2,1}, "
            "function() while true do end end) end",
            OVERRUN, NULL);
    hostile("xpcall(function() while true do end end, function(e) while true do end end)", OVERRUN,
            NULL);
    /* Unbounded recursion: a stack overflow or the memory cap, whichever comes first. */
    hostile("local function f() return f() + 1 end f()", ERR, NULL);
}

static void test_hostile_memory(void **unused)
{
    (void)unused;
    hostile("local s = string.rep('x', 1e9)", ERR, "not enough memory");
    hostile("local s = 'x' for i = 1, 40 do s = s .. s end", ERR, "not enough memory");
    hostile("local t = {} for i = 1, 1e9 do t[i] = {i} end", ERR, "not enough memory");
    hostile("local t = {} for i = 1, 1e9 do t[#t+1] = string.rep('y', 1000) .. i end", ERR,
            "not enough memory");
    /* pcall catches memory errors (they are ordinary Lua errors), the budget ends the loop. */
    hostile("while true do pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) end",
            OVERRUN, NULL);
    hostile("while true do pcall(string.rep, 'x', 1e9) end", OVERRUN, NULL);
}

static void test_hostile_escapes(void **unused)
{
    (void)unused;
    hostile(
        "gw.publish('r', table.concat({type(os), type(io), type(debug), "
        "type(package), type(dofile), type(loadfile), type(string.dump), type(coroutine)}, ','))",
        OK_PUB, "nil,nil,nil,nil,nil,nil,nil,nil");
    hostile("os.execute('touch /tmp/pwned')", ERR, "attempt to index a nil value");
    /* require is the sandbox's own (test_rules_modules.c): .lua files from the search path only */
    hostile("require('os')", ERR, "module 'os' not found");
    hostile("collectgarbage('collect')", ERR, "only \"count\"");
    hostile("collectgarbage('stop')", ERR, "only \"count\"");
    hostile("gw.publish('r', math.type(collectgarbage('count')))", OK_PUB, "float");
    /* Bytecode: a literal "\27Lua" header and a reader function are both refused. */
    hostile("local f, e = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n\\4\\8\\8xV\\0\\0') "
            "assert(f == nil and e:find('binary')) gw.publish('r', e)",
            OK_PUB, "binary");
    hostile("local f, e = load('\\27Lua', 'x', 'b') assert(f == nil) gw.publish('r', e)", OK_PUB,
            "binary");
    hostile("load(function() return nil end)", ERR, "string expected");
    /* load keeps text chunks in the sandbox; an explicit env is honoured. */
    hostile("local f = load('return os') gw.publish('r', tostring(f()))", OK_PUB, "nil");
    hostile("local f = load('return x', 'c', 't', {x = 'env'}) gw.publish('r', f())", OK_PUB,
            "env");
    /* String metatable is locked; __gc is refused; protected metatables stay protected. */
    hostile("getmetatable('').__index = function() while true do end end", ERR, "index a boolean");
    hostile("gw.publish('r', tostring(getmetatable('abc')))", OK_PUB, "false");
    hostile("setmetatable('', {})", ERR, "bad argument #1");
    hostile("setmetatable({}, {__gc = function() while true do end end})", ERR, "__gc");
    hostile("local t = setmetatable({}, {__metatable = 'no'}) setmetatable(t, {})", ERR,
            "protected metatable");
    /* Clobbering the rule's own globals only hurts the rule. */
    hostile("string.format = nil string.rep = nil gw.publish('r', 'still')", OK_PUB, "still");
}

/* A real bytecode chunk (made with lua_dump in a plain state) is refused by load and as a
 * rule file. */
static void test_bytecode_refused(void **unused)
{
    (void)unused;
    size_t len;
    char *bc = h_bytecode("gw.publish('t/ok', 'bytecode ran')", &len);

    struct harness h;
    assert_int_equal(h_open(&h,
                            "function on_line(text)\n"
                            "  local f, e = load(text)\n"
                            "  gw.publish('r', f and 'loaded' or e)\n"
                            "end\n",
                            0, 0),
                     0);
    assert_int_equal(rules_line(h.r, "s", 1, T0, bc, len, h.err, sizeof h.err), 0);
    assert_int_equal(h.cap.npub, 1);
    assert_non_null(strstr(h.cap.pub[0].payload, "attempt to load a binary chunk"));
    h_close(&h);

    /* As the rule file itself. */
    memset(&h, 0, sizeof h);
    snprintf(h.dir, sizeof h.dir, "/tmp/rules-test-XXXXXX");
    assert_non_null(mkdtemp(h.dir));
    snprintf(h.path, sizeof h.path, "%s/rule.lua", h.dir);
    FILE *f = fopen(h.path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bc, 1, len, f), len);
    fclose(f);
    struct rules_config cfg = {.path = h.path};
    struct rule_sink sink = {.ud = &h.cap, .publish = cap_publish, .write = cap_write};
    assert_int_equal(rules_open(&h.r, &cfg, &sink, h.err, sizeof h.err), -EINVAL);
    assert_null(h.r);
    assert_non_null(strstr(h.err, "attempt to load a binary chunk"));
    h_close(&h);
    free(bc);
}

/* ------------------------------------------------------------------------------------ */
/* The engine's clock (clock.h): a virtual clock moves gw.now, gw.now_ns, gw.iso8601()  */
/* ------------------------------------------------------------------------------------ */

static void test_virtual_clock(void **unused)
{
    (void)unused;
    struct harness h;
    memset(&h, 0, sizeof h);
    snprintf(h.dir, sizeof h.dir, "/tmp/rules-test-XXXXXX");
    assert_non_null(mkdtemp(h.dir));
    snprintf(h.path, sizeof h.path, "%s/rule.lua", h.dir);
    h_write_rule(&h, "function init() gw.point('boot', {}, {v = 1}) end\n"
                     "function on_tick(now)\n"
                     "  gw.publish('t', string.format('%.1f %d %s', gw.now(), gw.now_ns(),\n"
                     "             gw.iso8601()))\n"
                     "end\n");
    struct clock ck;
    clock_init_virtual(&ck, 1767225600LL * 1000000000LL); /* 2026-01-01T00:00:00Z */
    struct rules_config cfg = {.path = h.path, .clock = &ck};
    struct rule_sink sink = {.ud = &h.cap, .publish = cap_publish, .write = cap_write};
    assert_int_equal(rules_open(&h.r, &cfg, &sink, h.err, sizeof h.err), 0);
    /* init()'s point carries the virtual time */
    assert_int_equal(h.cap.nline, 1);
    assert_string_equal(h.cap.line[0], "boot v=1i 1767225600000000000");
    assert_int_equal(clock_set(&ck, 1767225600LL * 1000000000LL + 90500000000LL), 0);
    assert_int_equal(h_tick(&h, clock_now_ns(&ck)), 0);
    expect_pub(&h.cap, 0, "t", "1767225690.5 1767225690500000000 2026-01-01T00:01:30Z", 1, false);
    h_close(&h);
}

/* ------------------------------------------------------------------------------------ */
/* Budgets are configurable                                                             */
/* ------------------------------------------------------------------------------------ */

static void test_budget_config(void **unused)
{
    (void)unused;
    const char *loop = "function on_packet(p)\n"
                       "  local n = 0 for i = 1, p.n do n = n + i end\n"
                       "  gw.publish('n', n)\n"
                       "end\n";
    struct harness h;
    assert_int_equal(h_open(&h, loop, 0, 5000), 0);
    assert_int_equal(h_packet(&h, "{\"n\":100}", T0), 0);
    assert_int_equal(h_packet(&h, "{\"n\":100000}", T0), -ECANCELED);
    expect_err_at(&h, 2, "instruction budget exceeded (5000 instructions)");
    assert_int_equal(h_packet(&h, "{\"n\":100}", T0), 0);
    h_close(&h);
    assert_int_equal(h_open(&h, loop, 0, 0), 0); /* default 10M */
    assert_int_equal(h_packet(&h, "{\"n\":100000}", T0), 0);
    expect_pub(&h.cap, 0, "n", "5000050000", 1, false);
    h_close(&h);

    const char *alloc = "function on_packet(p)\n"
                        "  local s = string.rep('x', p.n)\n"
                        "  gw.publish('n', #s)\n"
                        "end\n";
    assert_int_equal(h_open(&h, alloc, 1024 * 1024, 0), 0);
    assert_int_equal(h_packet(&h, "{\"n\":2000000}", T0), -ECANCELED);
    expect_err_at(&h, 2, "not enough memory");
    assert_int_equal(h_packet(&h, "{\"n\":1000}", T0), 0);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_true(st.mem_used < 1024 * 1024);
    h_close(&h);
    assert_int_equal(h_open(&h, alloc, 0, 0), 0); /* default 32 MiB */
    assert_int_equal(h_packet(&h, "{\"n\":2000000}", T0), 0);
    h_close(&h);

    /* A budget above INT_MAX still works (several hook periods). */
    assert_int_equal(h_open(&h, loop, 0, 3000000000ull), 0);
    assert_int_equal(h_packet(&h, "{\"n\":1000}", T0), 0);
    h_close(&h);
}

/* ------------------------------------------------------------------------------------ */
/* Open and reload                                                                      */
/* ------------------------------------------------------------------------------------ */

static void test_open_failures(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h, "x = 1\nfunction on_packet(p)\n  x = = 2\nend\n", 0, 0), -EINVAL);
    expect_err_at(&h, 3, "unexpected symbol");
    h_close(&h);
    assert_int_equal(h_open(&h, "x = 1\nerror('top level')\n", 0, 0), -EINVAL);
    expect_err_at(&h, 2, "top level");
    h_close(&h);
    assert_int_equal(h_open(&h, "function init()\n  while true do end\nend\n", 0, 0), -EINVAL);
    expect_err_at(&h, 2, "instruction budget exceeded");
    h_close(&h);
    assert_int_equal(h_open(&h, "local t = {} for i = 1, 1e9 do t[i] = i end\n", 1 << 20, 0),
                     -EINVAL);
    expect_err_at(&h, 1, "not enough memory");
    h_close(&h);

    struct rules *r = NULL;
    char err[256];
    struct rules_config cfg = {.path = "/nonexistent/rule.lua"};
    struct rule_sink sink = {0};
    assert_int_equal(rules_open(&r, &cfg, &sink, err, sizeof err), -ENOENT);
    assert_null(r);
    assert_non_null(strstr(err, "/nonexistent/rule.lua"));
}

static const char *rule_v1 = "local S = gw.state\n"
                             "S.count = S.count or 0\n"
                             "function init()\n"
                             "  S.nested = S.nested or {a = {b = 1, f = 2.0}, list = {1, 2, 3}}\n"
                             "  S.cyc = S.cyc or {}\n"
                             "  S.cyc.self = S.cyc\n"
                             "  S.shared = S.nested.a\n"
                             "  S.fn = print\n"
                             "  S.null = gw.null\n"
                             "end\n"
                             "function on_packet(p)\n"
                             "  S.count = S.count + 1\n"
                             "  gw.publish('v1', S.count)\n"
                             "end\n";

static const char *rule_v2 =
    "local S = gw.state\n"
    "function init() S.inits = (S.inits or 0) + 1 end\n"
    "function on_packet(p)\n"
    "  S.count = S.count + 1\n"
    "  gw.publish('v2', S.count)\n"
    "  gw.publish('types', math.type(S.count) .. ' ' .. math.type(S.nested.a.f) .. ' '\n"
    "    .. #S.nested.list .. ' ' .. tostring(S.cyc.self == S.cyc) .. ' '\n"
    "    .. tostring(S.shared == S.nested.a) .. ' ' .. tostring(S.fn) .. ' '\n"
    "    .. tostring(S.null == gw.null) .. ' ' .. S.inits)\n"
    "end\n";

static void test_reload_hands_over_state(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h, rule_v1, 0, 0), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 1, "v1", "2", 1, false);
    cap_clear(&h.cap);
    assert_int_equal(h_reload(&h, rule_v2), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 0, "v2", "3", 1, false); /* no packet lost or counted twice */
    expect_pub(&h.cap, 1, "types", "integer float 3 true true nil true 1", 1, false);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.reloads, 1);
    h_close(&h);
}

static void test_failed_reload_keeps_old_rule(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h, rule_v1, 0, 0), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);

    /* Syntax error: reported as file:line, the old rule keeps running with its state. */
    assert_int_equal(h_reload(&h, "function on_packet(p)\n  gw.publish('v3', 1\nend\n"), -EINVAL);
    expect_err_at(&h, 3, "expected");
    /* init() error */
    assert_int_equal(h_reload(&h, "function init()\n  local x = nil\n  x.boom = 1\nend\n"),
                     -EINVAL);
    expect_err_at(&h, 3, "attempt to index a nil value");
    /* init() overrun */
    assert_int_equal(h_reload(&h, "function init() while true do end end\n"), -EINVAL);
    expect_err_at(&h, 1, "instruction budget exceeded");
    /* top-level error */
    assert_int_equal(h_reload(&h, "\n\nerror('nope')\n"), -EINVAL);
    expect_err_at(&h, 3, "nope");

    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 0, "v1", "2", 1, false);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.reload_failures, 4);
    assert_int_equal(st.reloads, 0);

    /* And a good reload after the failures still carries the state. */
    assert_int_equal(h_reload(&h, rule_v2), 0);
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 0, "v2", "3", 1, false);
    h_close(&h);
}

/* gw.state too deep to hand over fails the reload (the old rule stays). */
static void test_reload_state_too_deep(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h,
                            "local t = gw.state\n"
                            "for i = 1, 500 do t.next = {} t = t.next end\n"
                            "function on_packet(p) gw.publish('old', 1) end\n",
                            0, 0),
                     0);
    assert_int_equal(h_reload(&h, "function on_packet(p) gw.publish('new', 1) end\n"), -EINVAL);
    assert_non_null(strstr(h.err, "nested deeper"));
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 0, "old", "1", 1, false);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_formats),
        cmocka_unit_test(test_publish_validation),
        cmocka_unit_test(test_point),
        cmocka_unit_test(test_point_validation),
        cmocka_unit_test(test_misc_api_and_hooks),
        cmocka_unit_test(test_missing_hooks_and_bad_json),
        cmocka_unit_test(test_error_locations),
        cmocka_unit_test(test_hostile_loops),
        cmocka_unit_test(test_hostile_memory),
        cmocka_unit_test(test_hostile_escapes),
        cmocka_unit_test(test_bytecode_refused),
        cmocka_unit_test(test_budget_config),
        cmocka_unit_test(test_open_failures),
        cmocka_unit_test(test_virtual_clock),
        cmocka_unit_test(test_reload_hands_over_state),
        cmocka_unit_test(test_failed_reload_keeps_old_rule),
        cmocka_unit_test(test_reload_state_too_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
