/*
 * test_rules_modules.c — the sandboxed require and the modules in lua/: the default and an
 * explicit search path, caching, errors located in the module (syntax, runtime), the tried
 * paths of a missing module, refused names and bytecode, cycles, the memory cap and the
 * instruction budget inside a module, modules re-read on reload; lua/alerts.lua (hysteresis,
 * exactly one publish per transition, watchdog, state across rules_reload, no globals),
 * lua/smooth.lua, and rules/examples/alerts-with-modules.lua against rules/default.lua.
 *
 * Every test builds its own tree in a private temp directory:
 *   D/rules/rule.lua   the rule (its directory is the first default search directory)
 *   D/lua/...          the sibling "lua" directory (the second)
 */
#include "rules_harness.h"

#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define T0        1732480290000000000LL /* 2024-11-24T20:31:30Z */
#define SEC       1000000000LL
#define MAX_FILES 32

/* A temp tree with a rule and modules; everything written is removed by t_close. */
struct tree {
    char dir[64];
    char rule[128];
    char *files[MAX_FILES]; /* removed in reverse order (files before their directories) */
    size_t nfiles;
    struct cap cap;
    struct rules *r;
    char err[1024];
};

static void t_track(struct tree *t, const char *path)
{
    assert_true(t->nfiles < MAX_FILES);
    t->files[t->nfiles++] = dup_n(path, strlen(path));
}

static void t_mkdir(struct tree *t, const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", t->dir, rel);
    assert_int_equal(mkdir(p, 0700), 0);
    t_track(t, p);
}

/* Write `len` bytes to D/rel (replacing it atomically, as an editor would). */
static void t_write_n(struct tree *t, const char *rel, const char *data, size_t len)
{
    char p[256], tmp[270];
    snprintf(p, sizeof p, "%s/%s", t->dir, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    struct stat sb;
    bool existed = stat(p, &sb) == 0;
    assert_int_equal(rename(tmp, p), 0);
    if (!existed)
        t_track(t, p);
}

static void t_write(struct tree *t, const char *rel, const char *text)
{
    t_write_n(t, rel, text, strlen(text));
}

static void t_init(struct tree *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/rules-mod-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    t_mkdir(t, "rules");
    t_mkdir(t, "lua");
    snprintf(t->rule, sizeof t->rule, "%s/rules/rule.lua", t->dir);
}

/* Open `rule_path` (or D/rules/rule.lua) with the given search path and limits. */
static int t_open_path(struct tree *t, const char *rule_path, const char *lua_path,
                       size_t mem_limit, uint64_t instr_limit)
{
    struct rules_config cfg = {.path = rule_path ? rule_path : t->rule,
                               .lua_path = lua_path,
                               .mem_limit = mem_limit,
                               .instr_limit = instr_limit};
    struct rule_sink sink = {
        .ud = &t->cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    t->err[0] = '\0';
    return rules_open(&t->r, &cfg, &sink, t->err, sizeof t->err);
}

/* Write the rule and open it on the default search path. */
static int t_open(struct tree *t, const char *lua)
{
    t_write(t, "rules/rule.lua", lua);
    return t_open_path(t, NULL, NULL, 0, 0);
}

static int t_packet(struct tree *t, const char *json, int64_t rx_ns)
{
    struct packet p = {
        .source = "test", .line_no = 1, .rx_ns = rx_ns, .json = json, .json_len = strlen(json)};
    t->err[0] = '\0';
    return rules_packet(t->r, &p, t->err, sizeof t->err);
}

static int t_tick(struct tree *t, int64_t now_ns)
{
    t->err[0] = '\0';
    return rules_tick(t->r, now_ns, t->err, sizeof t->err);
}

static int t_reload(struct tree *t)
{
    t->err[0] = '\0';
    return rules_reload(t->r, t->err, sizeof t->err);
}

static void t_close(struct tree *t)
{
    rules_close(t->r);
    t->r = NULL;
    cap_clear(&t->cap);
    while (t->nfiles) {
        char *p = t->files[--t->nfiles];
        if (unlink(p) != 0)
            rmdir(p);
        free(p);
    }
    rmdir(t->dir);
}

static void expect_err(const struct tree *t, const char *needle)
{
    if (!strstr(t->err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", t->err, needle);
}

/* ------------------------------------------------------------------------------------ */
/* Finding modules                                                                      */
/* ------------------------------------------------------------------------------------ */

/* Default path: the rule's directory first, then ../lua; dotted names are subdirectories. */
static void test_default_path(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "rules/near.lua", "return {where = 'rules'}\n");
    t_write(&t, "lua/near.lua", "return {where = 'lua'}\n"); /* shadowed by rules/near.lua */
    t_write(&t, "lua/far.lua", "return {where = 'lua'}\n");
    t_mkdir(&t, "lua/site");
    t_write(&t, "lua/site/pumps.lua",
            "local name, path = ...\n"
            "return {where = name .. ' ' .. path}\n");
    assert_int_equal(t_open(&t, "local a, b, c = require('near'), require('far'), "
                                "require('site.pumps')\n"
                                "function on_packet(p)\n"
                                "  gw.publish('r', a.where .. '|' .. b.where .. '|' .. c.where)\n"
                                "end\n"),
                     0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    char want[256];
    /* The sibling directory is computed lexically from the rule path: D/rules -> D/lua. */
    snprintf(want, sizeof want, "rules|lua|site.pumps %s/lua/site/pumps.lua", t.dir);
    expect_pub(&t.cap, 0, "r", want, 1, false);
    t_close(&t);
}

/* An explicit lua_path replaces the default: only its directories are searched, in order. */
static void test_explicit_path(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_mkdir(&t, "x");
    t_mkdir(&t, "y");
    t_write(&t, "y/m.lua", "return 'from y'\n");
    t_write(&t, "rules/only_default.lua", "return 1\n");
    t_write(&t, "rules/rule.lua",
            "local m = require('m')\n"
            "function on_packet(p) gw.publish('r', m) end\n");
    char lp[256];
    snprintf(lp, sizeof lp, "%s/x/;;%s/y", t.dir, t.dir); /* trailing '/' and empty entry */
    assert_int_equal(t_open_path(&t, NULL, lp, 0, 0), 0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    expect_pub(&t.cap, 0, "r", "from y", 1, false);
    rules_close(t.r);
    t.r = NULL;

    /* The rule's directory is not searched any more; the error lists what was tried. */
    t_write(&t, "rules/rule.lua", "require('only_default')\n");
    assert_int_equal(t_open_path(&t, NULL, lp, 0, 0), -EINVAL);
    char want[512];
    snprintf(want, sizeof want,
             "rule.lua:1: require: module 'only_default' not found (tried %s/x/only_default.lua, "
             "%s/y/only_default.lua)",
             t.dir, t.dir);
    expect_err(&t, want);
    t_close(&t);
}

/* The built-in tail of the search path as an error lists it: site modules, then the
 * package's own directory unless the install prefix makes the two the same. */
static void builtin_tried(char *out, size_t n, const char *rel)
{
    static const char site[] = "/usr/local/share/iiotgw/lua";
    if (strcmp(IIOTGW_DATADIR "/lua", site) == 0)
        snprintf(out, n, "%s/%s)", site, rel);
    else
        snprintf(out, n, "%s/%s, %s/lua/%s)", site, rel, IIOTGW_DATADIR, rel);
}

/* A missing module on the default path names all the directories. */
static void test_missing_lists_paths(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    assert_int_equal(t_open(&t, "\nrequire('nope.deep')\n"), -EINVAL);
    char want[1024], tail[256];
    builtin_tried(tail, sizeof tail, "nope/deep.lua");
    snprintf(want, sizeof want,
             "%s:2: require: module 'nope.deep' not found (tried %s/rules/nope/deep.lua, "
             "%s/lua/nope/deep.lua, %s",
             t.rule, t.dir, t.dir, tail);
    assert_string_equal(t.err, want);
    t_close(&t);
}

/* Rule paths without a directory, or in the root, give sensible default directories. */
static void test_default_dirs_of_odd_paths(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "rules/rule.lua", "require('zz_missing')\n");
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char rules_dir[160];
    snprintf(rules_dir, sizeof rules_dir, "%s/rules", t.dir);
    assert_int_equal(chdir(rules_dir), 0);
    int rc = t_open_path(&t, "rule.lua", NULL, 0, 0);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, -EINVAL);
    char want[1024], tail[256];
    builtin_tried(tail, sizeof tail, "zz_missing.lua");
    snprintf(want, sizeof want, "(tried ./zz_missing.lua, ../lua/zz_missing.lua, %s", tail);
    expect_err(&t, want);
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* Caching, environment, cycles                                                         */
/* ------------------------------------------------------------------------------------ */

/* The module body runs once per state, however often and wherever it is required. */
static void test_cached_once(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/counted.lua",
            "gw.publish('body', 'ran')\n"
            "return {n = 0}\n");
    t_write(&t, "lua/nothing.lua", "local x = 1\n");
    assert_int_equal(t_open(&t, "local a = require('counted')\n"
                                "local b = require('counted')\n"
                                "assert(rawequal(a, b))\n"
                                "assert(require('nothing') == true)\n"
                                "function on_packet(p)\n"
                                "  local c = require('counted')\n"
                                "  c.n = c.n + 1\n"
                                "  gw.publish('same', tostring(rawequal(a, c)) .. ' ' .. c.n)\n"
                                "end\n"),
                     0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    assert_int_equal(t.cap.npub, 3);
    expect_pub(&t.cap, 0, "body", "ran", 1, false);
    expect_pub(&t.cap, 1, "same", "true 1", 1, false);
    expect_pub(&t.cap, 2, "same", "true 2", 1, false);
    t_close(&t);
}

/* A module runs in the rule's sandbox: same globals, nothing the rule does not have. */
static void test_module_env_is_sandbox(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/peek.lua",
            "shared_by_module = 'hi'\n"
            "return table.concat({type(os), type(io), type(package), "
            "type(debug), type(dofile), type(gw), type(require), "
            "tostring(rule_global)}, ',')\n");
    assert_int_equal(t_open(&t, "rule_global = 7\n"
                                "local s = require('peek')\n"
                                "function on_packet(p) gw.publish('r', s .. ',' .. "
                                "shared_by_module) end\n"),
                     0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    expect_pub(&t.cap, 0, "r", "nil,nil,nil,nil,nil,table,function,7,hi", 1, false);
    t_close(&t);
}

/* a -> b -> a is an error naming the chain; after a caught failure require works again. */
static void test_cycles_and_retry(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/a.lua", "return {b = require('b')}\n");
    t_write(&t, "lua/b.lua", "return {a = require('a')}\n");
    t_write(&t, "lua/bad.lua", "local x = 1\nerror('boom')\n");
    t_write(&t, "lua/good.lua", "return 'good'\n");
    assert_int_equal(t_open(&t, "require('a')\n"), -EINVAL);
    expect_err(&t, "b.lua:1: require: cyclic dependency: a -> b -> a");
    rules_close(t.r);
    t.r = NULL;

    /* Runtime error in a module body: located in the module; pcall catches it; the loading
     * stack is popped, so requiring it again fails the same way (not as a cycle). */
    t_write(&t, "rules/rule.lua",
            "function on_packet(p)\n"
            "  local ok1, e1 = pcall(require, 'bad')\n"
            "  local ok2, e2 = pcall(require, 'bad')\n"
            "  gw.publish('r', tostring(ok1) .. ' ' .. tostring(ok2) .. ' ' .. "
            "tostring(e1 == e2) .. ' ' .. require('good'))\n"
            "  gw.publish('e', e1)\n"
            "  require('bad')\n"
            "end\n");
    assert_int_equal(t_open_path(&t, NULL, NULL, 0, 0), 0);
    assert_int_equal(t_packet(&t, "{}", T0), -ECANCELED);
    expect_pub(&t.cap, 0, "r", "false false true good", 1, false);
    char want[256];
    snprintf(want, sizeof want, "%s/lua/bad.lua:2: boom", t.dir);
    expect_pub(&t.cap, 1, "e", want, 1, false);
    /* The rule's error names the rule line and the module line. */
    snprintf(want, sizeof want, "%s:6: %s/lua/bad.lua:2: boom", t.rule, t.dir);
    assert_string_equal(t.err, want);
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* What is refused                                                                      */
/* ------------------------------------------------------------------------------------ */

/* Syntax error: "file:line" of the module. */
static void test_syntax_error_located(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/broken.lua",
            "local M = {}\n"
            "function M.f()\n"
            "  return 1 +\n"
            "end\n"
            "return M\n");
    assert_int_equal(t_open(&t, "local x = 1\nlocal b = require('broken')\n"), -EINVAL);
    char want[512];
    snprintf(want, sizeof want,
             "%s:2: require: error loading module 'broken' from "
             "%s/lua/broken.lua: %s/lua/broken.lua:4: unexpected symbol",
             t.rule, t.dir, t.dir);
    if (strncmp(t.err, want, strlen(want)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", t.err, want);
    t_close(&t);
}

static void test_bad_names_refused(void **unused)
{
    (void)unused;
    static const char *const bad[] = {
        "'..'", "'../lua/x'", "'.x'",  "'x.'",  "'a..b'", "'a/b'",  "'/etc/passwd'",
        "''",   "'1abc'",     "'a-b'", "'a b'", "'a.1b'", "'\\0x'", "string.rep('a', 129)",
    };
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/x.lua", "gw.publish('loaded', 'x') return 1\n");
    t_write(&t, "rules/x.lua", "gw.publish('loaded', 'x') return 1\n");
    t_write(&t, "rules/rule.lua",
            "function on_packet(p)\n"
            "  local ok, e = pcall(require, load('return ' .. p.name)())\n"
            "  gw.publish('r', tostring(ok) .. ' ' .. e)\n"
            "end\n");
    assert_int_equal(t_open_path(&t, NULL, NULL, 0, 0), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[300];
        char esc[260];
        size_t k = 0;
        for (const char *s = bad[i]; *s && k < sizeof esc - 2; s++) {
            if (*s == '\\' || *s == '"')
                esc[k++] = '\\';
            esc[k++] = *s;
        }
        esc[k] = '\0';
        snprintf(json, sizeof json, "{\"name\":\"%s\"}", esc);
        cap_clear(&t.cap);
        assert_int_equal(t_packet(&t, json, T0), 0);
        assert_int_equal(t.cap.npub, 1);
        if (!strstr(t.cap.pub[0].payload, "false ") ||
            !strstr(t.cap.pub[0].payload, "require: invalid module name"))
            fail_msg("name %s: %s", bad[i], t.cap.pub[0].payload);
    }
    /* Not a string at all. */
    cap_clear(&t.cap);
    assert_int_equal(t_packet(&t, "{\"name\":\"42\"}", T0), 0);
    assert_non_null(strstr(t.cap.pub[0].payload, "module name (string) expected"));
    /* The well-formed name does load (so the refusals above were about the names). */
    cap_clear(&t.cap);
    assert_int_equal(t_packet(&t, "{\"name\":\"'x'\"}", T0), 0);
    expect_pub(&t.cap, 0, "loaded", "x", 1, false);
    t_close(&t);
}

/* A precompiled module file is refused before anything in it runs. */
static void test_bytecode_module_refused(void **unused)
{
    (void)unused;
    size_t len;
    char *bc = h_bytecode("gw.publish('bytecode', 'ran') return 1", &len);

    struct tree t;
    t_init(&t);
    t_write_n(&t, "lua/compiled.lua", bc, len);
    free(bc);
    assert_int_equal(t_open(&t, "require('compiled')\n"), -EINVAL);
    expect_err(&t, "require: error loading module 'compiled'");
    expect_err(&t, "attempt to load a binary chunk");
    assert_int_equal(t.cap.npub, 0);
    t_close(&t);
}

/* A directory named like a module is an error, not silently skipped. */
static void test_unreadable_module(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_mkdir(&t, "rules/dir.lua");
    t_write(&t, "lua/dir.lua", "return 1\n");
    assert_int_equal(t_open(&t, "require('dir')\n"), -EINVAL);
    expect_err(&t, "require: cannot read module 'dir' from");
    expect_err(&t, "rules/dir.lua: not a regular file");
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* Budgets                                                                              */
/* ------------------------------------------------------------------------------------ */

/* A module's loop is stopped by the caller's instruction budget, which pcall cannot catch;
 * after the overrun the loading stack is consistent again (no false "cyclic"). */
static void test_module_loop_budget(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/spin.lua", "local n = 0\nwhile true do n = n + 1 end\n");
    t_write(&t, "lua/slow.lua",
            "local M = {}\n"
            "function M.forever() while true do end end\n"
            "return M\n");
    assert_int_equal(t_open(&t, "require('spin')\n"), -EINVAL);
    expect_err(&t, "instruction budget exceeded (10000000 instructions)");
    rules_close(t.r);
    t.r = NULL;

    t_write(&t, "rules/rule.lua",
            "local slow = require('slow')\n"
            "function on_packet(p)\n"
            "  if p.k == 1 then pcall(slow.forever) end\n"
            "  if p.k == 2 then pcall(require, 'spin') end\n"
            "  gw.publish('r', 'survived ' .. p.k)\n"
            "end\n");
    assert_int_equal(t_open_path(&t, NULL, NULL, 0, 100000), 0);
    assert_int_equal(t_packet(&t, "{\"k\":1}", T0), -ECANCELED);
    expect_err(&t, "instruction budget exceeded (100000 instructions)");
    assert_int_equal(t_packet(&t, "{\"k\":2}", T0), -ECANCELED);
    expect_err(&t, "instruction budget exceeded");
    assert_int_equal(t_packet(&t, "{\"k\":2}", T0), -ECANCELED); /* not "cyclic" */
    expect_err(&t, "instruction budget exceeded");
    assert_int_equal(t.cap.npub, 0);
    assert_int_equal(t_packet(&t, "{\"k\":0}", T0), 0);
    expect_pub(&t.cap, 0, "r", "survived 0", 1, false);
    struct rules_stats st;
    rules_get_stats(t.r, &st);
    assert_int_equal(st.overruns, 3);
    t_close(&t);
}

/* A module's allocations count against the rule state's memory cap. */
static void test_module_memory_cap(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/hog.lua", "local t = {}\nfor i = 1, 1e8 do t[i] = i end\n");
    t_write(&t, "rules/rule.lua", "require('hog')\n");
    assert_int_equal(t_open_path(&t, NULL, NULL, 2u << 20, 0), -EINVAL);
    expect_err(&t, "not enough memory");
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* Reload                                                                               */
/* ------------------------------------------------------------------------------------ */

/* rules_reload builds a new state, so an edited module is read again. */
static void test_reload_rereads_modules(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    t_write(&t, "lua/ver.lua", "return {v = 1}\n");
    assert_int_equal(t_open(&t, "local m = require('ver')\n"
                                "function on_packet(p) gw.publish('v', m.v) end\n"),
                     0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    t_write(&t, "lua/ver.lua", "return {v = 2}\n");
    assert_int_equal(t_packet(&t, "{}", T0), 0); /* still the loaded one */
    assert_int_equal(t_reload(&t), 0);
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    /* A broken module fails the reload; the old rule (v = 2) keeps running. */
    t_write(&t, "lua/ver.lua", "return {v = \n");
    assert_int_equal(t_reload(&t), -EINVAL);
    expect_err(&t, "ver.lua:");
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    assert_int_equal(t.cap.npub, 4);
    expect_pub(&t.cap, 0, "v", "1", 1, false);
    expect_pub(&t.cap, 1, "v", "1", 1, false);
    expect_pub(&t.cap, 2, "v", "2", 1, false);
    expect_pub(&t.cap, 3, "v", "2", 1, false);
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* lua/alerts.lua                                                                       */
/* ------------------------------------------------------------------------------------ */

/* The repository's lua/ directory is the explicit search path for these. */
static int t_open_repo(struct tree *t, const char *lua)
{
    t_write(t, "rules/rule.lua", lua);
    return t_open_path(t, NULL, LUA_MOD_DIR, 0, 0);
}

#define STRICT_G                                                                                   \
    "setmetatable(_G, {__newindex = function(_, k) error('global write: ' .. k, 2) end,\n"         \
    "  __index = function(_, k) error('global read: ' .. k, 2) end})\n"

static const char ALERT_RULE[] =
    "local alerts = require('alerts')\n"
    "local hot = alerts.threshold{topic = 'iiot/alerts/node1/temperature', high = 35.0,\n"
    "  clear = 33.0, key = 'node1_temp', fields = {node = 'node1'}}\n"
    "local cold = alerts.threshold{topic = 'iiot/alerts/tank/level', low = 10, clear = 12,\n"
    "  key = 'tank_low'}\n"
    "local dead = alerts.watchdog{topic = 'iiot/alerts/node1/offline', after = 120,\n"
    "  key = 'node1_seen', fields = {node = 'node1'}}\n"
    "function on_packet(p, meta)\n"
    "  local now = meta.rx_ns / 1e9\n"
    "  if p.seen then dead:seen(now) end\n"
    "  local r1 = hot:update(p.t, now)\n"
    "  local r2 = cold:update(p.level, now)\n"
    "  if r1 then gw.publish('ret', r1) end\n"
    "  if r2 then gw.publish('ret', r2) end\n"
    "end\n"
    "function on_tick(now)\n"
    "  local r = dead:check(now)\n"
    "  if r then gw.publish('ret', r) end\n"
    "end\n" STRICT_G; /* the module must not touch globals after load either */

static void pkt_t(struct tree *t, double temp, int64_t at)
{
    char json[80];
    snprintf(json, sizeof json, "{\"t\":%.1f}", temp);
    assert_int_equal(t_packet(t, json, at), 0);
}

/* Hysteresis: fires once at >= high, silent in between, clears once below clear. */
static void test_alerts_threshold(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    assert_int_equal(t_open_repo(&t, ALERT_RULE), 0);
    static const double seq[] = {30.0, 34.9, 35.0, 36.0, 34.0, 33.0, 32.9, 32.0, 34.0, 35.2};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++)
        pkt_t(&t, seq[i], T0 + (int64_t)i * 10 * SEC);
    assert_int_equal(t_packet(&t, "{\"t\":\"hot\"}", T0), 0); /* not a number: ignored */
    assert_int_equal(t_packet(&t, "{}", T0), 0);
    assert_int_equal(t.cap.npub, 6);
    expect_pub(&t.cap, 0, "iiot/alerts/node1/temperature",
               "{\"node\":\"node1\",\"state\":\"firing\",\"threshold\":35.0,"
               "\"time\":\"2024-11-24T20:31:50Z\",\"value\":35.0}",
               1, true);
    expect_pub(&t.cap, 1, "ret", "firing", 1, false);
    expect_pub(&t.cap, 2, "iiot/alerts/node1/temperature",
               "{\"node\":\"node1\",\"state\":\"ok\",\"threshold\":33.0,"
               "\"time\":\"2024-11-24T20:32:30Z\",\"value\":32.9}",
               1, true);
    expect_pub(&t.cap, 3, "ret", "ok", 1, false);
    expect_pub(&t.cap, 4, "iiot/alerts/node1/temperature",
               "{\"node\":\"node1\",\"state\":\"firing\",\"threshold\":35.0,"
               "\"time\":\"2024-11-24T20:33:00Z\",\"value\":35.2}",
               1, true);
    /* What the gateway counts as an active alert (gateway.c: alerts_active). */
    assert_non_null(strstr(t.cap.pub[4].payload, "\"state\":\"firing\""));

    /* A low alert: fires at <= low, clears above clear. */
    cap_clear(&t.cap);
    static const int lv[] = {15, 10, 11, 12, 13, 9};
    for (size_t i = 0; i < 6; i++) {
        char json[40];
        snprintf(json, sizeof json, "{\"level\":%d}", lv[i]);
        assert_int_equal(t_packet(&t, json, T0), 0);
    }
    assert_int_equal(t.cap.npub, 6);
    expect_pub(&t.cap, 0, "iiot/alerts/tank/level",
               "{\"state\":\"firing\",\"threshold\":10,\"time\":\"2024-11-24T20:31:30Z\","
               "\"value\":10}",
               1, true);
    expect_pub(&t.cap, 2, "iiot/alerts/tank/level",
               "{\"state\":\"ok\",\"threshold\":12,\"time\":\"2024-11-24T20:31:30Z\","
               "\"value\":13}",
               1, true);
    expect_pub(&t.cap, 4, "iiot/alerts/tank/level",
               "{\"state\":\"firing\",\"threshold\":10,\"time\":\"2024-11-24T20:31:30Z\","
               "\"value\":9}",
               1, true);
    t_close(&t);
}

/* Watchdog: silent until `after` seconds without data, fires once, clears once on data. */
static void test_alerts_watchdog(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    assert_int_equal(t_open_repo(&t, ALERT_RULE), 0);
    assert_int_equal(t_tick(&t, T0 + 500 * SEC), 0); /* never seen: nothing to miss */
    assert_int_equal(t.cap.npub, 0);
    assert_int_equal(t_packet(&t, "{\"seen\":true}", T0), 0);
    assert_int_equal(t_tick(&t, T0 + 60 * SEC), 0);
    assert_int_equal(t_tick(&t, T0 + 119 * SEC), 0);
    assert_int_equal(t.cap.npub, 0);
    assert_int_equal(t_tick(&t, T0 + 120 * SEC), 0);
    assert_int_equal(t_tick(&t, T0 + 121 * SEC), 0);
    assert_int_equal(t_tick(&t, T0 + 180 * SEC), 0);
    assert_int_equal(t.cap.npub, 2);
    expect_pub(&t.cap, 0, "iiot/alerts/node1/offline",
               "{\"node\":\"node1\",\"state\":\"firing\",\"threshold\":120,"
               "\"time\":\"2024-11-24T20:33:30Z\",\"value\":120}",
               1, true);
    expect_pub(&t.cap, 1, "ret", "firing", 1, false);
    assert_int_equal(t_packet(&t, "{\"seen\":true}", T0 + 200 * SEC + SEC / 2), 0);
    assert_int_equal(t_packet(&t, "{\"seen\":true}", T0 + 210 * SEC), 0);
    assert_int_equal(t_tick(&t, T0 + 300 * SEC), 0);
    assert_int_equal(t.cap.npub, 3);
    expect_pub(&t.cap, 2, "iiot/alerts/node1/offline",
               "{\"node\":\"node1\",\"state\":\"ok\",\"threshold\":120,"
               "\"time\":\"2024-11-24T20:34:50Z\",\"value\":200}",
               1, true);
    t_close(&t);
}

/* Alert state lives in gw.state: a reload neither re-fires nor forgets. */
static void test_alerts_state_survives_reload(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    assert_int_equal(t_open_repo(&t, ALERT_RULE), 0);
    pkt_t(&t, 36.0, T0);
    assert_int_equal(t_packet(&t, "{\"seen\":true}", T0), 0);
    assert_int_equal(t.cap.npub, 2); /* alert + ret */
    assert_int_equal(t_reload(&t), 0);
    pkt_t(&t, 37.0, T0 + SEC); /* still firing: nothing */
    assert_int_equal(t.cap.npub, 2);
    assert_int_equal(t_tick(&t, T0 + 130 * SEC), 0); /* last-seen survived: fires */
    assert_int_equal(t.cap.npub, 4);
    assert_non_null(strstr(t.cap.pub[2].payload, "\"value\":130"));
    assert_int_equal(t_reload(&t), 0);
    assert_int_equal(t_tick(&t, T0 + 140 * SEC), 0); /* still firing: nothing */
    pkt_t(&t, 32.0, T0 + 150 * SEC);                 /* clears once */
    assert_int_equal(t.cap.npub, 6);
    expect_pub(&t.cap, 4, "iiot/alerts/node1/temperature",
               "{\"node\":\"node1\",\"state\":\"ok\",\"threshold\":33.0,"
               "\"time\":\"2024-11-24T20:34:00Z\",\"value\":32.0}",
               1, true);
    t_close(&t);
}

/* Option mistakes fail at load time, at the rule's line. */
static void test_alerts_option_errors(void **unused)
{
    (void)unused;
    static const struct {
        const char *code, *msg;
    } cases[] = {
        {"alerts.threshold{high = 1}", "topic (string) required"},
        {"alerts.threshold{topic = 't', high = 1, low = 0}", "exactly one of high or low"},
        {"alerts.threshold{topic = 't', high = 30, clear = 31}", "clear must be <= high"},
        {"alerts.threshold{topic = 't', low = 30, clear = 29}", "clear must be >= low"},
        {"alerts.threshold{topic = 't', high = 1, fields = {state = 'x'}}", "may not set 'state'"},
        {"alerts.watchdog{topic = 't'}", "after (seconds > 0) required"},
        {"alerts.watchdog{topic = 't', after = 1, state = 5}", "state must be a table"},
        {"gw.state.k = 1 alerts.watchdog{topic = 't', after = 1, key = 'k'}", "in use"},
        {"alerts.threshold{topic = 't', high = 1}:update(1)", "now (seconds, a number) required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tree t;
        t_init(&t);
        char rule[300];
        snprintf(rule, sizeof rule, "local alerts = require('alerts')\n%s\n", cases[i].code);
        assert_int_equal(t_open_repo(&t, rule), -EINVAL);
        char want[200];
        snprintf(want, sizeof want, "%s:2:", t.rule);
        if (strncmp(t.err, want, strlen(want)) != 0 || !strstr(t.err, cases[i].msg))
            fail_msg("case %zu: error \"%s\", wanted \"%s ... %s\"", i, t.err, want, cases[i].msg);
        t_close(&t);
    }
}

/* ------------------------------------------------------------------------------------ */
/* lua/smooth.lua                                                                       */
/* ------------------------------------------------------------------------------------ */

static void test_smooth(void **unused)
{
    (void)unused;
    struct tree t;
    t_init(&t);
    assert_int_equal(
        t_open_repo(
            &t, "local smooth = require('smooth')\n"
                "local avg = smooth.average{n = 3}\n"
                "local ema = smooth.ema{alpha = 0.5, key = 'ema'}\n"
                "local tema = smooth.ema{tau = 10}\n"
                "local rate = smooth.rate{per = 60, counter = true, key = 'rx'}\n"
                "local function s(v) return v == nil and 'nil' or string.format('%.4f', v) end\n"
                "function on_packet(p, meta)\n"
                "  local now = meta.rx_ns / 1e9\n"
                "  gw.publish('avg', s(avg:add(p.x)) .. ' ' .. avg:count())\n"
                "  gw.publish('ema', s(ema:add(p.x)))\n"
                "  gw.publish('tema', s(tema:add(p.x, now)))\n"
                "  gw.publish('rate', s(rate:add(p.rx, now)))\n"
                "end\n" STRICT_G),
        0);
    static const char *const pk[] = {
        "{\"x\":1,\"rx\":100}", "{\"x\":2,\"rx\":110}", "{\"x\":3,\"rx\":130}", "{\"x\":4}",
        "{\"rx\":5}",           "{\"x\":10,\"rx\":15}",
    };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(t_packet(&t, pk[i], T0 + (int64_t)i * 10 * SEC), 0);
    static const char *const want[][4] = {
        /* avg (n=3), ema (alpha 0.5), ema (tau 10 s: alpha 1-e^(-dt/10)), rate/min */
        {"1.0000 1", "1.0000", "1.0000", "nil"},
        {"1.5000 2", "1.5000", "1.6321", "60.0000"},
        {"2.0000 3", "2.2500", "2.4968", "120.0000"},
        {"3.0000 3", "3.1250", "3.4470", "nil"},     /* no rx: nil */
        {"3.0000 3", "3.1250", "3.4470", "nil"},     /* counter went down: reset, nil */
        {"5.6667 3", "6.5625", "9.1131", "60.0000"}, /* (15 - 5) / 10 s * 60 */
    };
    assert_int_equal(t.cap.npub, 24);
    for (size_t i = 0; i < 6; i++) {
        expect_pub(&t.cap, 4 * i + 0, "avg", want[i][0], 1, false);
        expect_pub(&t.cap, 4 * i + 1, "ema", want[i][1], 1, false);
        expect_pub(&t.cap, 4 * i + 2, "tema", want[i][2], 1, false);
        expect_pub(&t.cap, 4 * i + 3, "rate", want[i][3], 1, false);
    }
    /* Keyed state survives a reload (ema, rate); unkeyed does not (avg, tema). */
    assert_int_equal(t_reload(&t), 0);
    cap_clear(&t.cap);
    assert_int_equal(t_packet(&t, "{\"x\":0,\"rx\":25}", T0 + 60 * SEC), 0);
    expect_pub(&t.cap, 0, "avg", "0.0000 1", 1, false);
    expect_pub(&t.cap, 1, "ema", "3.2812", 1, false);
    expect_pub(&t.cap, 2, "tema", "0.0000", 1, false);
    expect_pub(&t.cap, 3, "rate", "60.0000", 1, false);
    t_close(&t);
}

/* ------------------------------------------------------------------------------------ */
/* rules/examples/alerts-with-modules.lua == rules/default.lua                          */
/* ------------------------------------------------------------------------------------ */

static int cmp_pub(const void *a, const void *b)
{
    const struct cap_pub *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : strcmp(x->payload, y->payload);
}

/* Publishes of one step, sorted (on_tick visits nodes in a different order), without the
 * example's extra temperature_avg. */
static size_t step_pubs(const struct cap *c, size_t from, struct cap_pub *out)
{
    size_t n = 0;
    for (size_t i = from; i < c->npub; i++)
        if (!strstr(c->pub[i].topic, "temperature_avg"))
            out[n++] = c->pub[i];
    qsort(out, n, sizeof *out, cmp_pub);
    return n;
}

static void test_example_matches_default(void **unused)
{
    (void)unused;
    struct harness d;
    assert_int_equal(h_open_file(&d, RULES_DIR "/default.lua", NULL), 0);
    struct tree t;
    t_init(&t);
    assert_int_equal(
        t_open_path(&t, RULES_DIR "/examples/alerts-with-modules.lua", LUA_MOD_DIR, 0, 0), 0);
    /* step: packet JSON, or NULL = a tick; times in seconds after T0 */
    static const struct {
        int at;
        const char *json;
    } steps[] = {
        {0, "{\"ts\":12000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},\"n2\":{\"t\""
            ":26.8,\"h\":48.8},\"sig\":{\"rssi\":-39,\"snr\":13},\"sts\":{\"rx\":1,\"err\":0}}"},
        {10, "{\"n1\":{\"t\":35.2,\"h\":50.0,\"g\":1000},\"n2\":{},\"sig\":{\"rssi\":-40,"
             "\"snr\":10},\"sts\":{\"rx\":2,\"err\":0}}"},
        {20, "{\"n1\":{\"t\":34.0,\"h\":50.0,\"g\":1000},\"n2\":{\"t\":36.5},\"sig\":{\"rssi\""
             ":-40,\"snr\":10},\"sts\":{\"rx\":3,\"err\":1}}"},
        {30, "{\"n1\":{\"t\":32.5,\"h\":50.0,\"g\":1000},\"n2\":{\"t\":24.0,\"h\":40.0},"
             "\"sig\":{\"rssi\":-41,\"snr\":9},\"sts\":{\"rx\":4,\"err\":1}}"},
        {100, NULL},
        {150, NULL}, /* both nodes offline in the same tick */
        {160, NULL},
        {170, "{\"n2\":{\"t\":25.0},\"sig\":{\"rssi\":-50,\"snr\":5},\"sts\":{\"rx\":5,"
              "\"err\":1}}"}, /* node 2 back, node 1 still silent */
        {180, NULL},
        {200, "{\"n1\":{\"t\":36.0,\"h\":51.0,\"g\":2000},\"n2\":{},\"sig\":{\"rssi\":-45,"
              "\"snr\":7},\"sts\":{\"rx\":6,\"err\":1}}"},
    };
    static struct cap_pub a[CAP_MAX], b[CAP_MAX];
    size_t total = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t fa = d.cap.npub, fb = t.cap.npub, la = d.cap.nline, lb = t.cap.nline;
        int64_t at = T0 + (int64_t)steps[i].at * SEC;
        if (steps[i].json) {
            assert_int_equal(h_packet(&d, steps[i].json, at), 0);
            assert_int_equal(t_packet(&t, steps[i].json, at), 0);
        } else {
            assert_int_equal(h_tick(&d, at), 0);
            assert_int_equal(t_tick(&t, at), 0);
        }
        size_t na = step_pubs(&d.cap, fa, a), nb = step_pubs(&t.cap, fb, b);
        if (na != nb)
            fail_msg("step %zu: default published %zu, example %zu", i, na, nb);
        for (size_t k = 0; k < na; k++) {
            assert_string_equal(a[k].topic, b[k].topic);
            assert_string_equal(a[k].payload, b[k].payload);
            assert_int_equal(a[k].qos, b[k].qos);
            assert_int_equal(a[k].retain, b[k].retain);
        }
        assert_int_equal(d.cap.nline - la, t.cap.nline - lb);
        for (size_t k = 0; k < d.cap.nline - la; k++)
            assert_string_equal(d.cap.line[la + k], t.cap.line[lb + k]);
        total += na;
    }
    /* The sequence did exercise the alerts: 5 temperature transitions (3 firing, 2 ok) and
     * 4 offline ones (both nodes fire in one tick, both come back), on top of the metrics. */
    size_t alerts = 0;
    for (size_t i = 0; i < d.cap.npub; i++)
        alerts += strstr(d.cap.pub[i].topic, "/alerts/") != NULL;
    assert_int_equal(alerts, 9);
    assert_true(total > 40);
    /* and the example's own extra: the smoothed node 1 temperature */
    bool avg = false;
    for (size_t i = 0; i < t.cap.npub; i++)
        avg |= strcmp(t.cap.pub[i].topic, "iiot/node1/temperature_avg") == 0;
    assert_true(avg);
    h_close(&d);
    t_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_explicit_path),
        cmocka_unit_test(test_missing_lists_paths),
        cmocka_unit_test(test_default_dirs_of_odd_paths),
        cmocka_unit_test(test_cached_once),
        cmocka_unit_test(test_module_env_is_sandbox),
        cmocka_unit_test(test_cycles_and_retry),
        cmocka_unit_test(test_syntax_error_located),
        cmocka_unit_test(test_bad_names_refused),
        cmocka_unit_test(test_bytecode_module_refused),
        cmocka_unit_test(test_unreadable_module),
        cmocka_unit_test(test_module_loop_budget),
        cmocka_unit_test(test_module_memory_cap),
        cmocka_unit_test(test_reload_rereads_modules),
        cmocka_unit_test(test_alerts_threshold),
        cmocka_unit_test(test_alerts_watchdog),
        cmocka_unit_test(test_alerts_state_survives_reload),
        cmocka_unit_test(test_alerts_option_errors),
        cmocka_unit_test(test_smooth),
        cmocka_unit_test(test_example_matches_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
