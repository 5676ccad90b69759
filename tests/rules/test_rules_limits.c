/*
 * test_rules_limits.c — the call time limit and the bounds on C work done for a rule: every
 * way of making one call run long (library functions that loop without VM instructions,
 * catastrophic patterns, instructions that copy megabytes, a top level or init() that never
 * returns, at load and at reload) ends within the limit with a clear, counted error, and the
 * next packet is processed; gw.json stays under the memory cap and sorts 100k keys quickly; a
 * gw.state hand-over that runs out of memory says where; the alert tracker stays fast and
 * bounded with many topics.
 */
#include <math.h>
#include <sys/resource.h>
#include <time.h>

#include <lualib.h>

#include "rules_harness.h"

#include "alerts.h"

#define T0         1732480290000000000LL
#define LIMIT      0.25 /* rule_time_limit of these tests, seconds */
#define LIMIT_SLOP 0.75 /* allowed overshoot (a loaded CI machine, ASan) */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* h_open with a time limit (the harness's h_open leaves it at the default). */
static int open_limited(struct harness *h, const char *lua, size_t mem_limit, double time_limit)
{
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "/tmp/rules-test-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->path, sizeof h->path, "%s/rule.lua", h->dir);
    h_write_rule(h, lua);
    struct rules_config cfg = {.path = h->path, .mem_limit = mem_limit, .time_limit = time_limit};
    struct rule_sink sink = {
        .ud = &h->cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    return rules_open(&h->r, &cfg, &sink, h->err, sizeof h->err);
}

/*
 * Run `body` in on_packet for {"evil":true}: it must end within the limit with a time-limit
 * error (mentioning `needle` when given), counted as an overrun; then a normal packet must go
 * through.
 */
static void slow_as(const char *body, const char *needle, const char *kind)
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
    assert_int_equal(open_limited(&h, rule, 0, LIMIT), 0);
    double t0 = mono();
    int rc = h_packet(&h, "{\"evil\":true}", T0);
    double dt = mono() - t0;
    if (rc != -ECANCELED || !strstr(h.err, kind))
        fail_msg("[%s]: wanted \"%s\", got rc=%d err=%s (%.3f s)", body, kind, rc, h.err, dt);
    if (needle && !strstr(h.err, needle))
        fail_msg("[%s]: \"%s\" not in \"%s\"", body, needle, h.err);
    if (dt > LIMIT + LIMIT_SLOP)
        fail_msg("[%s]: took %.3f s, limit %.3f s", body, dt, LIMIT);
    assert_int_equal(strncmp(h.err, h.path, strlen(h.path)), 0); /* file:line: */
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.overruns, 1);
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, "{\"evil\":false}", T0), 0);
    assert_int_equal(h.cap.npub, 1);
    expect_pub(&h.cap, 0, "t/ok", "ok", 1, false);
    h_close(&h);
}

static void slow(const char *body, const char *needle)
{
    slow_as(body, needle, "call time limit exceeded");
}

static void test_time_limit_library_loops(void **unused)
{
    (void)unused;
    slow("table.move({}, 1, math.maxinteger // 2, 1)", NULL);
    slow("table.move({}, 1, math.maxinteger // 2, 2)", NULL); /* the backwards loop */
    /* The error cannot be caught, not even by a pcall in a loop. */
    slow("while true do pcall(table.move, {}, 1, math.maxinteger // 2, 1) end", NULL);
    slow("local s = string.rep('a', 30000) string.find(s, '.-.-.-.-.-.-b')", "pattern too complex");
    slow("local s = string.rep('a', 30000) string.match(s, '.-.-.-.-.-.-b')",
         "pattern too complex");
    slow("local s = string.rep('a', 30000) string.gsub(s, '.-.-.-.-.-.-b', '')",
         "pattern too complex");
    slow("local s = string.rep('a', 30000) for x in s:gmatch('.-.-.-.-.-.-b') do end",
         "pattern too complex");
    slow("local s = string.rep('a', 30000) pcall(string.find, s, '(.*)(.*)(.*)(.*)b')", NULL);
    /* concat over a range served by an __index function (Lua, but called from C): whichever
     * of the two limits comes first */
    slow_as("table.concat(setmetatable({}, {__index = function() return '' end}), '', 1, "
            "math.maxinteger)",
            NULL, "exceeded");
    /* the default comparison runs no instructions */
    slow("local t = {} for i = 1, 400000 do t[i] = 'prefix-prefix-' .. (i * 7919) % 1000003 end "
         "table.sort(t)",
         NULL);
    /* The parser runs no instructions either; load() catches errors, not this one. */
    slow("local s = string.rep('x=x+1 ', 699000) for i = 1, 100 do local f = load(s) end", NULL);
    /* Instructions that each copy megabytes: a thousand of them would be seconds. */
    slow("local s = string.rep('x', 4e6) while true do local y = s .. 'a' end", NULL);
    /* Long string comparisons copy nothing: the hook still sees them every 1000 instructions. */
    slow("local a, b = string.rep('x', 2e6), string.rep('x', 2e6) while true do local _ = a == b "
         "end",
         NULL);
}

/* on_line and on_tick are bounded the same way; the engine goes on serving. */
static void test_time_limit_line_and_tick(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(open_limited(&h,
                                  "function on_line(t) if t == 'hang' then "
                                  "string.find(string.rep('a', 30000), '.-.-.-.-.-.-b') end "
                                  "gw.publish('l', t) end\n"
                                  "function on_tick(now) table.move({}, 1, math.maxinteger // 2, "
                                  "1) end\n",
                                  0, LIMIT),
                     0);
    double t0 = mono();
    assert_int_equal(rules_line(h.r, "s", 1, T0, "hang", 4, h.err, sizeof h.err), -ECANCELED);
    assert_non_null(strstr(h.err, "pattern too complex: call time limit exceeded"));
    assert_int_equal(h_tick(&h, T0), -ECANCELED);
    assert_non_null(strstr(h.err, "call time limit exceeded"));
    double dt = mono() - t0;
    if (dt > 2 * (LIMIT + LIMIT_SLOP))
        fail_msg("two overruns took %.3f s", dt);
    assert_int_equal(rules_line(h.r, "s", 2, T0, "fine", 4, h.err, sizeof h.err), 0);
    expect_pub(&h.cap, 0, "l", "fine", 1, false);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.overruns, 2);
    h_close(&h);
}

/* What used to loop forever doing nothing now returns at once. */
static void test_bounded_replacements(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(
        open_limited(&h,
                     "function on_packet(p)\n"
                     "  local a = string.rep('', math.maxinteger)\n"
                     "  local b = string.rep('', math.maxinteger, '')\n"
                     "  local ok, e = pcall(string.rep, 'ab', math.maxinteger)\n"
                     "  gw.publish('r', #a .. #b .. tostring(ok) .. ' ' .. e)\n"
                     "  gw.publish('s', ('x'):rep(3, ',') .. ('hello world'):gsub('o', '0') "
                     "    .. (string.find('a.b', '.', 1, true)) .. ('k=v'):match('(%w)=(%w)') "
                     "    .. table.concat({1, 2, 3}, '-') .. #table.move({1, 2, 3}, 1, 3, 2))\n"
                     "  local n = 0 for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do n = n + 1 "
                     "end\n"
                     "  gw.publish('g', n .. ('%f[%w]%w+'):len() .. ('THE (quick) fox'):find("
                     "'%((%a+)%)') .. ('abc'):gsub('%w', '%0%0'))\n"
                     "end\n",
                     0, LIMIT),
        0);
    double t0 = mono();
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    assert_true(mono() - t0 < LIMIT);
    assert_int_equal(h.cap.npub, 3);
    assert_non_null(strstr(h.cap.pub[0].payload, "00false not enough memory"));
    /* what the stock library gives (lua5.4 -e ...) */
    assert_string_equal(h.cap.pub[1].payload, "x,x,xhell0 w0rld2k1-2-34");
    assert_string_equal(h.cap.pub[2].payload, "295aabbcc");
    h_close(&h);
}

/* The bounded library functions give what the stock ones give: the same script of find,
 * match, gsub, gmatch, rep, concat and move calls (results and error messages) run in a plain
 * Lua state and in a rule. */
static const char diff_script[] =
    "local out = {}\n"
    "local function ser(...)\n"
    "  local t = table.pack(...)\n"
    "  for i = 1, t.n do t[i] = tostring(t[i]) end\n"
    "  return table.concat(t, '|', 1, t.n)\n"
    "end\n"
    "local cases = {\n"
    "  {'hello world', 'o'}, {'hello world', '(o)(r)'}, {'hello world', 'l+'}, {'hello', 'l*'},\n"
    "  {'hello', 'l-'}, {'hello', 'x?h'}, {'  trim  ', '^%s*(.-)%s*$'},\n"
    "  {'key = value', '(%w+)%s*=%s*(%w+)'}, {'THE (quick) fox', '%((%a+)%)'}, {'f(a(b)c)d', "
    "'%b()'},\n"
    "  {'THE (quick) fox', '%f[%a]%a+'}, {'abcabc', '(a)(b)%1'}, {'hello', '()ll()'},\n"
    "  {'a.b-c', '[%.%-]'}, {'x]y', '[]]'}, {'a^b', '[%^]'}, {'abc', '[^b]+'}, {'a1b2', "
    "'[a-z]%d'},\n"
    "  {'', ''}, {'abc', ''}, {'abc', '$'}, {'a$b', 'a$b'}, {'aaa', '^a'}, {'\\0a\\0', '%z'},\n"
    "  {'tab\\there', '%c'}, {'UPPER lower', '%u+'}, {'x', '%'}, {'x', '[a'}, {'x', '(()'},\n"
    "  {'x', '%1'}, {'x', '(x'}, {'x', 'x)'}, {'x', '%b'}, {'x', '%f'}, {'h\\195\\169llo', "
    "'[\\128-\\255]+'},\n"
    "  {'one two  three', '%S+'}, {'0x1F', '%x+'}, {'a,b,,c', '([^,]*)'}, {'hello', "
    "'(h)(e)(l)(l)(o)'},\n"
    "  {'a.b', '.', }, {'[x]', '%[(.-)%]'}, {'aXb', '%l%u%l'}, {'  x', '^%s*$'}, {'abab', "
    "'(ab)-$'},\n"
    "}\n"
    "for _, c in ipairs(cases) do\n"
    "  local s, p = c[1], c[2]\n"
    "  out[#out + 1] = ser(pcall(string.find, s, p))\n"
    "  out[#out + 1] = ser(pcall(string.find, s, p, 2))\n"
    "  out[#out + 1] = ser(pcall(string.find, s, p, -2, true))\n"
    "  out[#out + 1] = ser(pcall(string.match, s, p))\n"
    "  out[#out + 1] = ser(pcall(string.match, s, p, -3))\n"
    "  out[#out + 1] = ser(pcall(string.gsub, s, p, '<%0>'))\n"
    "  out[#out + 1] = ser(pcall(string.gsub, s, p, '%1', 2))\n"
    "  out[#out + 1] = ser(pcall(string.gsub, s, p, {hello = 'HI', o = 0}))\n"
    "  out[#out + 1] = ser(pcall(string.gsub, s, p, function(a, b) return b end))\n"
    "  out[#out + 1] = ser(pcall(function()\n"
    "    local r = {}\n"
    "    for a, b in s:gmatch(p) do r[#r + 1] = tostring(a) .. ',' .. tostring(b) end\n"
    "    return table.concat(r, ';')\n"
    "  end))\n"
    "end\n"
    "out[#out + 1] = ser(pcall(string.gsub, 'abc', 'b', '%2'))\n"
    "out[#out + 1] = ser(pcall(string.gsub, 'abc', 'b', '%x'))\n"
    "out[#out + 1] = ser(pcall(string.gsub, 'abc', 'b', true))\n"
    "out[#out + 1] = ser(pcall(string.gsub, 'abc', '(b)', {b = {}}))\n"
    "out[#out + 1] = ser(pcall(string.rep, 'ab', 3, '|'), pcall(string.rep, 'x', 0))\n"
    "out[#out + 1] = ser(('abc'):rep(5), ('').rep('', 4, '-'), ('a'):rep(1, 'x'), "
    "('xy'):rep(7, '--'), #('q'):rep(100003), ('ab'):rep(1000, ','):sub(-9))\n"
    "out[#out + 1] = ser(pcall(table.concat, {1, 'a', 2.5}, ', '), pcall(table.concat, {1, {}, "
    "3}),\n"
    "                    pcall(table.concat, {}, 'x', 3, 2))\n"
    "out[#out + 1] = ser(table.concat(table.move({1, 2, 3, 4, 5}, 2, 4, 1), ','),\n"
    "                    table.concat(table.move({1, 2, 3}, 1, 3, 3), ','),\n"
    "                    table.concat(table.move({1, 2}, 1, 2, 1, {9, 9, 9}), ','))\n"
    "out[#out + 1] = ser(pcall(table.move, {}, 1, math.maxinteger, 2))\n"
    "local function sorted(t, f) table.sort(t, f) return table.concat(t, ',') end\n"
    "out[#out + 1] = ser(sorted({5, 3, 9, 1, 7, 2}), sorted({'b', 'a', 'c'}, function(a, b) "
    "return a > b end))\n"
    "local big = {} for i = 1, 500 do big[i] = (i * 7919) % 1009 end\n"
    "out[#out + 1] = sorted(big)\n"
    "out[#out + 1] = ser(pcall(table.sort, {3, 1, 2}, function(a, b) return true end))\n"
    "out[#out + 1] = ser(pcall(table.sort, {1, 'x'}), pcall(table.sort, {1, 2}, 3))\n"
    "local proxy = setmetatable({}, {__index = function(_, i) return i <= 3 and 'p' .. i or nil "
    "end, __len = function() return 3 end})\n"
    "out[#out + 1] = ser(pcall(table.concat, proxy, '+'), pcall(table.concat, 42))\n"
    "out[#out + 1] = ser(pcall(table.move, 1, 1, 2, 1), pcall(table.sort, proxy))\n"
    "RESULT = table.concat(out, '\\n')\n";

static void test_lualib_same_as_stock(void **unused)
{
    (void)unused;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, diff_script) != LUA_OK)
        fail_msg("stock: %s", lua_tostring(L, -1));
    lua_getglobal(L, "RESULT");
    const char *stock = lua_tostring(L, -1);
    assert_non_null(stock);

    struct harness h;
    char rule[sizeof diff_script + 128];
    snprintf(rule, sizeof rule, "%s\nfunction on_packet(p) gw.publish('r', RESULT) end\n",
             diff_script);
    assert_int_equal(open_limited(&h, rule, 0, 0), 0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    assert_int_equal(h.cap.npub, 1);
    const char *ours = h.cap.pub[0].payload;
    if (strcmp(ours, stock) != 0) {
        /* name the first differing line */
        const char *a = stock, *b = ours;
        int line = 1;
        while (*a && *a == *b) {
            if (*a == '\n')
                line++;
            a++, b++;
        }
        fail_msg("line %d differs:\nstock: %.120s\nours:  %.120s", line, a, b);
    }
    h_close(&h);
    lua_close(L);
}

/* A top level or init() that never returns: rules_open, reload and --check (which is
 * rules_open) all end within the limit, and a failed reload keeps the old rule. */
static void test_time_limit_load_and_reload(void **unused)
{
    (void)unused;
    static const char *const hangs[] = {
        "table.move({}, 1, math.maxinteger // 2, 1)\n",
        "string.find(string.rep('a', 30000), '.-.-.-.-.-.-b')\n",
        "function init() table.move({}, 1, math.maxinteger // 2, 1) end\n",
    };
    struct harness h;
    for (size_t i = 0; i < sizeof hangs / sizeof hangs[0]; i++) {
        double t0 = mono();
        assert_int_equal(open_limited(&h, hangs[i], 0, LIMIT), -EINVAL);
        double dt = mono() - t0;
        if (!strstr(h.err, "call time limit exceeded") || dt > LIMIT + LIMIT_SLOP)
            fail_msg("load of [%s]: err=%s after %.3f s", hangs[i], h.err, dt);
        h_close(&h);
    }
    const char *good = "function on_packet(p) gw.publish('v', 'old') end\n";
    assert_int_equal(open_limited(&h, good, 0, LIMIT), 0);
    for (size_t i = 0; i < sizeof hangs / sizeof hangs[0]; i++) {
        double t0 = mono();
        assert_int_equal(h_reload(&h, hangs[i]), -EINVAL);
        double dt = mono() - t0;
        if (!strstr(h.err, "call time limit exceeded") || dt > LIMIT + LIMIT_SLOP)
            fail_msg("reload to [%s]: err=%s after %.3f s", hangs[i], h.err, dt);
        cap_clear(&h.cap);
        assert_int_equal(h_packet(&h, "{}", T0), 0);
        expect_pub(&h.cap, 0, "v", "old", 1, false);
    }
    h_close(&h);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* gw.json / gw.publish(table) of a table that references one 8 MiB string 256 times: the
 * text would be 2 GiB; it must fail at the 32 MiB cap, not grow the process. */
static void test_json_under_memory_cap(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(open_limited(&h,
                                  "local big = string.rep('x', 8 * 1024 * 1024)\n"
                                  "local t = {} for i = 1, 256 do t[i] = big end\n"
                                  "function on_packet(p)\n"
                                  "  if p.json then gw.json(t) else gw.publish('t/x', t) end\n"
                                  "end\n",
                                  0, 0),
                     0);
    long before = max_rss_kb();
    assert_int_equal(h_packet(&h, "{\"json\":true}", T0), -ECANCELED);
    assert_non_null(strstr(h.err, "gw.json: out of memory"));
    assert_int_equal(h_packet(&h, "{\"json\":false}", T0), -ECANCELED);
    assert_non_null(strstr(h.err, "out of memory"));
    long grown = max_rss_kb() - before;
    if (grown > 128 * 1024)
        fail_msg("max RSS grew by %ld KiB encoding a 2 GiB text (cap 32 MiB)", grown);
    assert_int_equal(h.cap.npub, 0);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_true(st.mem_used <= 32u * 1024u * 1024u);
    h_close(&h);
}

/* A point's line protocol is built on the C heap: one over 1 MiB is refused before it is
 * built (500 points with a 4 MiB string field would otherwise be 2 GB of batch). */
static void test_point_size_bound(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(open_limited(&h,
                                  "local big = string.rep('x', 4 * 1024 * 1024)\n"
                                  "local s = gw.series('m', {node = 'n1'})\n"
                                  "function on_packet(p)\n"
                                  "  if p.k == 1 then gw.point('m', {node = 'n1'}, {s = big}) end\n"
                                  "  if p.k == 2 then gw.point(s, {s = big}) end\n"
                                  "  if p.k == 3 then gw.series('m', {t = big}) end\n"
                                  "  if p.k == 4 then load(big .. big) end\n"
                                  "  gw.point('m', {node = 'n1'}, {s = big:sub(1, 1000)})\n"
                                  "end\n",
                                  0, 0),
                     0);
    for (int k = 1; k <= 3; k++) {
        char pkt[32];
        snprintf(pkt, sizeof pkt, "{\"k\":%d}", k);
        assert_int_equal(h_packet(&h, pkt, T0), -ECANCELED);
        if (!strstr(h.err, "larger than 1048576 bytes of line protocol"))
            fail_msg("k=%d: %s", k, h.err);
    }
    /* load() takes chunks of a rule file's size at most, as for the rule file */
    assert_int_equal(h_packet(&h, "{\"k\":4}", T0), -ECANCELED);
    if (!strstr(h.err, "load: chunk of 8388608 bytes is larger than 4194304 bytes"))
        fail_msg("load: %s", h.err);
    assert_int_equal(h.cap.nline, 0);
    assert_int_equal(h_packet(&h, "{\"k\":0}", T0), 0);
    assert_int_equal(h.cap.nline, 1);
    h_close(&h);
}

/* 99,999 keys (JSONLUA_MAX_NODES is 100,000 values): sorted, and fast (insertion sort took
 * minutes). */
static void test_json_many_keys(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(open_limited(&h,
                                  "local t = {} for i = 1, 99999 do t['k' .. i] = i end\n"
                                  "function on_packet(p)\n"
                                  "  local s = gw.json(t)\n"
                                  "  gw.publish('n', #s .. ' ' .. s:sub(1, 30))\n"
                                  "end\n",
                                  0, 0),
                     0);
    double t0 = mono();
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    double dt = mono() - t0;
    if (dt > 3.0) /* ~0.1 s on a release build; generous for a loaded, sanitized one */
        fail_msg("gw.json of 99,999 keys took %.3f s", dt);
    assert_string_equal(h.cap.pub[0].payload, "1477774 {\"k1\":1,\"k10\":10,\"k100\":100,\"k");
    h_close(&h);
}

/* A hand-over that hits the cap names gw.state's entry and the old rule keeps running. */
static void test_reload_handover_error(void **unused)
{
    (void)unused;
    struct harness h;
    const char *v1 = "gw.state.small = gw.state.small or 1\n"
                     "gw.state.rows = gw.state.rows or {}\n"
                     "function on_packet(p)\n"
                     "  if p.grow then\n"
                     "    for i = 1, p.grow do gw.state.rows[i] = {i} end\n"
                     "  end\n"
                     "  gw.publish('v', 'v1')\n"
                     "end\n";
    assert_int_equal(open_limited(&h, v1, 4u * 1024u * 1024u, 0), 0);
    /* rows: ~40k tables, about half the cap; the copy needs them plus its own bookkeeping. */
    assert_int_equal(h_packet(&h, "{\"grow\":40000}", T0), 0);
    assert_int_equal(h_reload(&h, "function on_packet(p) gw.publish('v', 'v2') end\n"), -EINVAL);
    if (!strstr(h.err, "gw.state hand-over failed while copying gw.state.rows") ||
        !strstr(h.err, "not enough memory") || !strstr(h.err, "rule_mem_limit 4194304"))
        fail_msg("reload error does not say what and where: %s", h.err);
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    expect_pub(&h.cap, 0, "v", "v1", 1, false);
    h_close(&h);
}

/* The alert tracker: 200,000 distinct firing topics, then all cleared, in well under a second
 * (a list scan per publish is ~10^10 comparisons); at most ALERTS_MAX_ACTIVE tracked. */
static void test_alerts_many_topics(void **unused)
{
    (void)unused;
    struct alerts a;
    alerts_init(&a, "iiot");
    const char *firing = "{\"state\":\"firing\"}", *ok = "{\"state\":\"ok\"}";
    char topic[64];
    double t0 = mono();
    for (int i = 0; i < 200000; i++) {
        snprintf(topic, sizeof topic, "iiot/alerts/node%d/t_high", i);
        alerts_track(&a, topic, firing, strlen(firing));
        alerts_track(&a, topic, firing, strlen(firing)); /* again: no double count */
    }
    assert_int_equal(a.nactive, ALERTS_MAX_ACTIVE);
    assert_int_equal(a.refused, 2 * (200000 - ALERTS_MAX_ACTIVE));
    alerts_track(&a, "other/alerts/x", firing, strlen(firing)); /* not under the prefix */
    assert_int_equal(a.nactive, ALERTS_MAX_ACTIVE);
    for (int i = 0; i < 200000; i++) {
        snprintf(topic, sizeof topic, "iiot/alerts/node%d/t_high", i);
        alerts_track(&a, topic, ok, strlen(ok));
    }
    assert_int_equal(a.nactive, 0);
    snprintf(topic, sizeof topic, "iiot/alerts/again");
    alerts_track(&a, topic, firing, strlen(firing));
    assert_int_equal(a.nactive, 1);
    double dt = mono() - t0;
    if (dt > 5.0)
        fail_msg("600,000 alert publishes took %.3f s", dt);
    alerts_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_limit_library_loops),
        cmocka_unit_test(test_time_limit_line_and_tick),
        cmocka_unit_test(test_bounded_replacements),
        cmocka_unit_test(test_lualib_same_as_stock),
        cmocka_unit_test(test_time_limit_load_and_reload),
        cmocka_unit_test(test_json_under_memory_cap),
        cmocka_unit_test(test_json_many_keys),
        cmocka_unit_test(test_point_size_bound),
        cmocka_unit_test(test_reload_handover_error),
        cmocka_unit_test(test_alerts_many_topics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
