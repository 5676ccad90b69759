/*
 * test_rules_params.c — tunable parameters: gw.param declarations and handles, the registry's
 * validation (type, range, step, constraints), on_param, persistence of overrides across a
 * close/reopen and a reload, orphaned params, a bounds change that drops an override, the
 * params file re-read (SIGHUP's route), and rules/default.lua's thresholds as params.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "params.h"
#include "rules_harness.h"
#include "util.h"

#define DEFAULT_RULE RULES_DIR "/default.lua"
#define T0           1732480000000000000LL
#define SEC          1000000000LL

/* A harness whose engine declares into an external registry (persisted in dir/params.conf). */
struct ph {
    struct harness h;
    struct params *p;
    char file[192];
};

static int ph_open(struct ph *t, const char *lua)
{
    memset(t, 0, sizeof *t);
    snprintf(t->h.dir, sizeof t->h.dir, "/tmp/rules-test-XXXXXX");
    assert_non_null(mkdtemp(t->h.dir));
    snprintf(t->h.path, sizeof t->h.path, "%s/rule.lua", t->h.dir);
    snprintf(t->file, sizeof t->file, "%s/params.conf", t->h.dir);
    h_write_rule(&t->h, lua);
    assert_int_equal(params_open(&t->p, t->file, t->h.err, sizeof t->h.err), 0);
    struct rules_config cfg = {.path = t->h.path, .params = t->p};
    struct rule_sink sink = {
        .ud = &t->h.cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    return rules_open(&t->h.r, &cfg, &sink, t->h.err, sizeof t->h.err);
}

/* Close the engine and the registry, keep the directory (a restart). */
static void ph_stop(struct ph *t)
{
    rules_close(t->h.r);
    t->h.r = NULL;
    params_close(t->p);
    t->p = NULL;
    cap_clear(&t->h.cap);
}

/* Start again on the same directory and rule file. */
static int ph_restart(struct ph *t)
{
    assert_int_equal(params_open(&t->p, t->file, t->h.err, sizeof t->h.err), 0);
    struct rules_config cfg = {.path = t->h.path, .params = t->p};
    struct rule_sink sink = {
        .ud = &t->h.cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    return rules_open(&t->h.r, &cfg, &sink, t->h.err, sizeof t->h.err);
}

static void ph_close(struct ph *t)
{
    ph_stop(t);
    char tmp[256];
    unlink(t->file);
    snprintf(tmp, sizeof tmp, "%s.tmp", t->file);
    unlink(tmp);
    unlink(t->h.path);
    rmdir(t->h.dir);
}

/* Apply through the registry and hand the change to the rule, as the gateway does. */
static int ph_set(struct ph *t, const char *name, const char *node, const char *value, char *msg,
                  size_t msglen)
{
    struct param_origin o = {.kind = "local", .who = "test"};
    int rc = params_set(t->p, name, node, value, &o, msg, msglen);
    if (rc == 0)
        assert_int_equal(rules_param_changed(t->h.r, name, node, t->h.err, sizeof t->h.err), 0);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char TYPES_RULE[] =
    "local HI = gw.param{name='hi', default=35.0, min=-40, max=125, step=0.5, unit='°C',\n"
    "                    nodes={'node1','node2'}, description='high'}\n"
    "local LO = gw.param{name='lo', default=33.0, min=-40, max=125, step=0.5,\n"
    "                    nodes={'node1','node2'}, below='hi'}\n"
    "local N = gw.param{name='n', type='integer', default=120, min=10, max=86400}\n"
    "local B = gw.param{name='b', default=true}\n"
    "local E = gw.param{name='e', default='fast', values={'slow','fast'}}\n"
    "function on_packet(p)\n"
    "  gw.publish('out', HI.node1 .. ' ' .. LO.node2 .. ' ' .. N.value .. ' ' ..\n"
    "             tostring(B.value) .. ' ' .. E.value, 0, false)\n"
    "end\n"
    "function on_param(name, value, node)\n"
    "  gw.publish('changed', name .. '=' .. tostring(value) .. '@' .. tostring(node), 0, false)\n"
    "end\n";

/* Declared values reach the rule with their Lua types; changes are seen by the next packet
 * and announced through on_param. */
static void test_declare_read_change(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    assert_int_equal(h_packet(&t.h, "{}", T0), 0);
    expect_pub(&t.h.cap, 0, "out", "35.0 33.0 120 true fast", 0, false);
    assert_int_equal(params_count(t.p), 5);
    const struct param_info *pi = params_find(t.p, "hi");
    assert_non_null(pi);
    assert_int_equal(pi->nslots, 2);
    assert_string_equal(pi->decl->unit, "°C");

    char msg[512];
    assert_int_equal(ph_set(&t, "hi", "node1", "36.5", msg, sizeof msg), 0);
    assert_string_equal(msg, "hi node1: 35 -> 36.5");
    expect_pub(&t.h.cap, 1, "changed", "hi=36.5@node1", 0, false);
    assert_int_equal(ph_set(&t, "n", NULL, "300", msg, sizeof msg), 0);
    expect_pub(&t.h.cap, 2, "changed", "n=300@nil", 0, false);
    assert_int_equal(ph_set(&t, "b", NULL, "false", msg, sizeof msg), 0);
    assert_int_equal(ph_set(&t, "e", NULL, "slow", msg, sizeof msg), 0);
    assert_int_equal(h_packet(&t.h, "{}", T0 + SEC), 0);
    expect_pub(&t.h.cap, 5, "out", "36.5 33.0 300 false slow", 0, false);

    /* "default" resets, and the document says who set what. */
    assert_int_equal(ph_set(&t, "hi", "node1", "default", msg, sizeof msg), 0);
    assert_string_equal(msg, "hi node1: 36.5 -> 35 (default)");
    char *doc = params_json(t.p);
    assert_non_null(strstr(doc, "\"name\":\"n\""));
    assert_non_null(strstr(doc, "\"origin\":\"local:test\""));
    assert_non_null(strstr(doc, "\"below\":\"hi\""));
    free(doc);
    ph_close(&t);
}

/* Every refusal says why; nothing changes. */
static void test_refusals(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    char msg[512];
    struct {
        const char *name, *node, *value;
        int rc;
        const char *why;
    } cases[] = {
        {"hi", "node1", "abc", -EINVAL, "hi node1: abc refused: not a number"},
        {"hi", "node1", "200", -ERANGE, "hi node1: 200 refused: above the maximum 125"},
        {"hi", "node1", "-41", -ERANGE, "hi node1: -41 refused: below the minimum -40"},
        {"hi", "node1", "36.2", -ERANGE,
         "hi node1: 36.2 refused: not a multiple of the step 0.5 (counted from -40)"},
        {"lo", "node1", "35", -ERANGE, "lo node1: 35 refused: must stay below hi (35)"},
        {"hi", "node2", "33", -ERANGE, "hi node2: 33 refused: must stay above lo (33)"},
        {"n", NULL, "12.5", -EINVAL, "n: 12.5 refused: not a whole number"},
        {"b", NULL, "maybe", -EINVAL, "b: maybe refused: not a boolean (true or false)"},
        {"e", NULL, "medium", -EINVAL, "e: medium refused: not one of slow, fast"},
        {"nope", NULL, "1", -ENOENT, "nope: unknown param (known: hi, lo, n, b, e)"},
        {"hi", NULL, "36", -ENOENT, "hi: a per-node param: give the node (node1, node2)"},
        {"hi", "node9", "36", -ENOENT, "hi node9: unknown node for hi"},
        {"n", "node1", "36", -ENOENT, "n node1: n is not per node: give no node"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = ph_set(&t, cases[i].name, cases[i].node, cases[i].value, msg, sizeof msg);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(msg, cases[i].why);
    }
    assert_int_equal(h_packet(&t.h, "{}", T0), 0);
    expect_pub(&t.h.cap, 0, "out", "35.0 33.0 120 true fast", 0, false);
    /* A constraint honoured in the right order is accepted. */
    assert_int_equal(ph_set(&t, "hi", "node1", "30", msg, sizeof msg), -ERANGE);
    assert_int_equal(ph_set(&t, "lo", "node1", "20", msg, sizeof msg), 0);
    assert_int_equal(ph_set(&t, "hi", "node1", "30", msg, sizeof msg), 0);
    ph_close(&t);
}

/* Declaration errors fail the load with the reason. */
static void test_declaration_errors(void **state)
{
    (void)state;
    struct {
        const char *lua, *why;
    } cases[] = {
        {"gw.param{name='x', default=200, max=125}", "default 200 is above the maximum 125"},
        {"gw.param{name='x', default=1, maxx=3}", "unknown key maxx"},
        {"gw.param{name='x', type='float', default=1}", "type must be number, integer"},
        {"gw.param{name='x', default=1, below='y'}", "below names \"y\", which is not a declared"},
        {"gw.param{name='a', default=5}\ngw.param{name='b', default=6, below='a'}",
         "a: default must stay above b (6)"},
        {"gw.param{name='x', default=1}\ngw.param{name='x', default=2}", "declared twice"},
        {"gw.param{name='bad name', default=1}", "param name \"bad name\""},
        {"gw.param{name='response', default=1}", "reserved"},
        {"gw.param{name='x', default=1, nodes={'set'}}", "\"set\" is reserved"},
        {"gw.param{name='x', default='z', values={'a','b'}}", "default is not one of the values"},
        {"gw.param{name='x', type='integer', default=1.5}", "whole"},
        {"function on_packet() gw.param{name='x', default=1} end\nfunction init() end",
         NULL /* loads; fails in the hook */},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ph t;
        int rc = ph_open(&t, cases[i].lua);
        if (cases[i].why) {
            assert_int_equal(rc, -EINVAL);
            if (!strstr(t.h.err, cases[i].why))
                fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, t.h.err, cases[i].why);
            assert_int_equal(params_count(t.p), 0); /* nothing half-declared went live */
            params_close(t.p);
            t.p = NULL;
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(h_packet(&t.h, "{}", T0), -ECANCELED);
            assert_non_null(strstr(t.h.err, "declare params when the rule loads"));
            ph_stop(&t);
        }
        ph_close(&t);
    }
}

/* Overrides survive a restart and a reload; the file is written atomically. */
static void test_persistence(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    char msg[512];
    assert_int_equal(ph_set(&t, "hi", "node2", "40", msg, sizeof msg), 0);
    assert_int_equal(ph_set(&t, "e", NULL, "slow", msg, sizeof msg), 0);
    char *f = slurp(t.file);
    assert_non_null(f);
    assert_non_null(strstr(f, "hi node2 = 40    # set "));
    assert_non_null(strstr(f, " by local:test\n"));
    assert_non_null(strstr(f, "# hi node1 = 35    (default; number -40..125 step 0.5 °C)"));
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", t.file);
    assert_int_equal(access(tmp, F_OK), -1);

    /* Reload: the new state starts with the overrides. */
    assert_int_equal(h_reload(&t.h, TYPES_RULE), 0);
    assert_int_equal(h_packet(&t.h, "{}", T0), 0);
    const struct param_info *pi = params_find(t.p, "hi");
    assert_true(pi->slots[1].value == 40 && pi->slots[1].overridden);
    assert_string_equal(pi->slots[1].origin, "local:test");

    /* Restart: same values, same audit. */
    ph_stop(&t);
    assert_int_equal(ph_restart(&t), 0);
    assert_int_equal(h_packet(&t.h, "{}", T0), 0);
    expect_pub(&t.h.cap, 0, "out", "35.0 33.0 120 true slow", 0, false);
    pi = params_find(t.p, "hi");
    assert_true(pi->slots[1].value == 40);
    assert_string_equal(pi->slots[1].origin, "local:test");
    assert_true(pi->slots[1].changed_ns > 0);
    ph_close(&t);
}

/* A param the new rule no longer declares is kept and reported orphaned; a declaration whose
 * new bounds exclude the override falls back to the default. */
static void test_orphan_and_bounds(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    char msg[512];
    assert_int_equal(ph_set(&t, "n", NULL, "600", msg, sizeof msg), 0);
    assert_int_equal(ph_set(&t, "hi", "node1", "50", msg, sizeof msg), 0);

    /* n is gone, hi's max is now 45. */
    static const char NEXT[] =
        "local HI = gw.param{name='hi', default=35.0, min=-40, max=45, step=0.5,\n"
        "                    nodes={'node1','node2'}}\n"
        "function on_packet(p) gw.publish('out', tostring(HI.node1), 0, false) end\n";
    assert_int_equal(h_reload(&t.h, NEXT), 0);
    cap_clear(&t.h.cap);
    assert_int_equal(h_packet(&t.h, "{}", T0), 0);
    expect_pub(&t.h.cap, 0, "out", "35.0", 0, false);
    const struct param_info *hi = params_find(t.p, "hi");
    assert_false(hi->slots[0].overridden);
    const struct param_info *n = params_find(t.p, "n");
    assert_non_null(n);
    assert_true(n->orphaned);
    assert_true(n->slots[0].value == 600);
    char *doc = params_json(t.p);
    assert_non_null(strstr(doc, "\"name\":\"n\",\"type\":\"integer\""));
    assert_non_null(strstr(doc, "\"orphaned\":true"));
    free(doc);
    assert_int_equal(ph_set(&t, "n", NULL, "700", msg, sizeof msg), -EPERM);
    assert_non_null(strstr(msg, "orphaned"));
    char *f = slurp(t.file);
    assert_non_null(strstr(f, "n = 600"));
    assert_null(strstr(f, "hi node1 = 50"));

    /* Declared again: the kept override is back in force. */
    assert_int_equal(h_reload(&t.h, TYPES_RULE), 0);
    n = params_find(t.p, "n");
    assert_false(n->orphaned);
    assert_true(n->slots[0].value == 600);
    /* Orphaned again, then reset: it disappears. */
    assert_int_equal(h_reload(&t.h, NEXT), 0);
    assert_int_equal(params_set(t.p, "n", NULL, "default", NULL, msg, sizeof msg), 0);
    assert_null(params_find(t.p, "n"));
    ph_close(&t);
}

/* The params file edited by hand, then re-read: changes applied, bad lines refused and
 * logged, a removed line back to the default, and the file rewritten. */
static void test_file_reload(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    char msg[512];
    assert_int_equal(ph_set(&t, "n", NULL, "600", msg, sizeof msg), 0);
    FILE *f = fopen(t.file, "w");
    assert_non_null(f);
    fputs("# edited\n"
          "hi node1 = 37.5\n"
          "lo node1 = 40      # breaks lo < hi\n"
          "e = medium\n"
          "this is not a line\n"
          "b = false\n",
          f);
    fclose(f);
    int refused = params_reload_file(t.p, t.h.err, sizeof t.h.err);
    assert_int_equal(refused, 3);
    const struct param_info *pi = params_find(t.p, "hi");
    assert_true(pi->slots[0].value == 37.5);
    assert_int_equal(strncmp(pi->slots[0].origin, "file:", 5), 0);
    assert_true(params_find(t.p, "n")->slots[0].value == 120); /* line removed */
    assert_true(params_find(t.p, "b")->slots[0].value == 0);
    assert_true(params_find(t.p, "lo")->slots[0].value == 33);
    char *text = slurp(t.file);
    assert_non_null(strstr(text, "hi node1 = 37.5"));
    assert_null(strstr(text, "medium"));
    assert_null(strstr(text, "not a line"));
    ph_close(&t);
}

/* A params file full of garbage (random bytes, overlong lines, NULs) is refused line by line:
 * no crash, no value applied that the declarations refuse, and the file is rewritten clean. */
static void test_file_garbage(void **state)
{
    (void)state;
    struct ph t;
    assert_int_equal(ph_open(&t, TYPES_RULE), 0);
    uint32_t seed = 12345;
    for (int round = 0; round < 50; round++) {
        FILE *f = fopen(t.file, "w");
        assert_non_null(f);
        size_t n = 1 + util_rand(&seed) % 6000;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = util_rand(&seed);
            /* Mostly printable, with the characters the parser cares about. */
            static const char alphabet[] = "hilonbe node1 node2 = # 3.5 -\n\t\r\x01\xff\0";
            fputc(r % 4 ? alphabet[r % (sizeof alphabet - 1)] : (int)(r >> 8) & 0xff, f);
        }
        if (round % 10 == 0)
            fputs("hi node1 = 40\n", f);
        fclose(f);
        int refused = params_reload_file(t.p, t.h.err, sizeof t.h.err);
        assert_true(refused >= 0);
        for (size_t i = 0; i < params_count(t.p); i++) {
            const struct param_info *pi = params_at(t.p, i);
            for (size_t s = 0; s < pi->nslots; s++)
                if (pi->decl->has_max)
                    assert_true(pi->slots[s].value <= pi->decl->max);
        }
        /* What the gateway wrote back reads again without a single bad line. */
        assert_int_equal(params_reload_file(t.p, t.h.err, sizeof t.h.err), 0);
    }
    ph_close(&t);
}

/* rules/default.lua: per-node thresholds; a packet above a changed threshold fires. */
static void test_default_rule_params(void **state)
{
    (void)state;
    struct harness h;
    struct params *p;
    char err[512];
    assert_int_equal(params_open(&p, NULL, err, sizeof err), 0);
    memset(&h, 0, sizeof h);
    struct rules_config cfg = {.path = DEFAULT_RULE, .prefix = "iiot", .params = p};
    struct rule_sink sink = {.ud = &h.cap, .publish = cap_publish, .write = cap_write};
    assert_int_equal(rules_open(&h.r, &cfg, &sink, h.err, sizeof h.err), 0);
    const char *names[] = {"temp_high", "temp_clear", "offline_after"};
    for (int i = 0; i < 3; i++) {
        const struct param_info *pi = params_find(p, names[i]);
        assert_non_null(pi);
        assert_int_equal(pi->nslots, 2);
        assert_string_equal(pi->slots[0].node, "node1");
    }
    assert_true(params_find(p, "temp_high")->slots[0].value == 35);
    assert_true(params_find(p, "temp_clear")->slots[1].value == 33);
    assert_true(params_find(p, "offline_after")->slots[0].value == 120);
    assert_int_equal(params_find(p, "offline_after")->decl->type, PARAM_INTEGER);

    char msg[512];
    struct param_origin o = {.kind = "mqtt"};
    assert_int_equal(params_set(p, "temp_clear", "node1", "35", &o, msg, sizeof msg), -ERANGE);
    assert_string_equal(msg, "temp_clear node1: 35 refused: must stay below temp_high (35)");
    assert_int_equal(params_set(p, "temp_clear", "node1", "29", &o, msg, sizeof msg), 0);
    assert_int_equal(params_set(p, "temp_high", "node1", "30", &o, msg, sizeof msg), 0);
    assert_int_equal(rules_param_changed(h.r, "temp_high", "node1", err, sizeof err), 0);
    assert_int_equal(rules_param_changed(h.r, "temp_clear", "node1", err, sizeof err), 0);

    static const char PKT[] = "{\"n1\":{\"t\":31.0},\"n2\":{\"t\":31.0}}";
    struct packet pk = {.source = "t", .rx_ns = T0, .json = PKT, .json_len = sizeof PKT - 1};
    assert_int_equal(rules_packet(h.r, &pk, err, sizeof err), 0);
    size_t fired = 0;
    for (size_t i = 0; i < h.cap.npub; i++)
        if (strstr(h.cap.pub[i].topic, "/alerts/")) {
            fired++;
            assert_string_equal(h.cap.pub[i].topic, "iiot/alerts/node1/temperature");
            assert_non_null(strstr(h.cap.pub[i].payload, "\"threshold\":30.0"));
            assert_non_null(strstr(h.cap.pub[i].payload, "\"state\":\"firing\""));
        }
    assert_int_equal(fired, 1); /* node2 keeps 35 */
    rules_close(h.r);
    cap_clear(&h.cap);
    params_close(p);
}

/* The same through lua/alerts.lua with param handles (rules/examples/alerts-with-modules.lua). */
static void test_alerts_module_params(void **state)
{
    (void)state;
    struct harness h;
    struct params *p;
    char err[512];
    assert_int_equal(params_open(&p, NULL, err, sizeof err), 0);
    memset(&h, 0, sizeof h);
    struct rules_config cfg = {.path = RULES_DIR "/examples/alerts-with-modules.lua",
                               .prefix = "iiot",
                               .lua_path = LUA_MOD_DIR,
                               .params = p};
    struct rule_sink sink = {.ud = &h.cap, .publish = cap_publish, .write = cap_write};
    assert_int_equal(rules_open(&h.r, &cfg, &sink, h.err, sizeof h.err), 0);
    char msg[512];
    struct param_origin o = {.kind = "local"};
    assert_int_equal(params_set(p, "temp_clear", "node2", "20", &o, msg, sizeof msg), 0);
    assert_int_equal(params_set(p, "temp_high", "node2", "25", &o, msg, sizeof msg), 0);
    assert_int_equal(rules_param_changed(h.r, "temp_high", "node2", err, sizeof err), 0);
    assert_int_equal(rules_param_changed(h.r, "temp_clear", "node2", err, sizeof err), 0);
    static const char PKT[] = "{\"n1\":{\"t\":26.0},\"n2\":{\"t\":26.0}}";
    struct packet pk = {.source = "t", .rx_ns = T0, .json = PKT, .json_len = sizeof PKT - 1};
    assert_int_equal(rules_packet(h.r, &pk, err, sizeof err), 0);
    size_t fired = 0;
    for (size_t i = 0; i < h.cap.npub; i++)
        if (strstr(h.cap.pub[i].topic, "/alerts/")) {
            fired++;
            assert_string_equal(h.cap.pub[i].topic, "iiot/alerts/node2/temperature");
            assert_non_null(strstr(h.cap.pub[i].payload, "\"threshold\":25.0"));
        }
    assert_int_equal(fired, 1);
    /* Clears below node2's temp_clear (20), not below the default 33. */
    cap_clear(&h.cap);
    static const char PKT2[] = "{\"n1\":{\"t\":26.0},\"n2\":{\"t\":21.0}}";
    pk.json = PKT2;
    pk.json_len = sizeof PKT2 - 1;
    assert_int_equal(rules_packet(h.r, &pk, err, sizeof err), 0);
    for (size_t i = 0; i < h.cap.npub; i++)
        assert_null(strstr(h.cap.pub[i].topic, "/alerts/"));
    rules_close(h.r);
    cap_clear(&h.cap);
    params_close(p);
}

/* Command and state topics, both ways. */
static void test_topics(void **state)
{
    (void)state;
    char t[256], name[PARAM_NAME_MAX], node[PARAM_NAME_MAX];
    assert_int_equal(params_topic(t, sizeof t, "iiot", "temp_high", "node1", true), 0);
    assert_string_equal(t, "iiot/gateway/param/temp_high/node1/set");
    assert_int_equal(params_topic(t, sizeof t, "iiot", "mode", NULL, false), 0);
    assert_string_equal(t, "iiot/gateway/param/mode");
    assert_int_equal(params_topic(t, 10, "iiot", "mode", NULL, false), -ENOSPC);
    assert_int_equal(params_parse_topic("a/b", "a/b/gateway/param/temp_high/node1/set", name, node),
                     0);
    assert_string_equal(name, "temp_high");
    assert_string_equal(node, "node1");
    assert_int_equal(params_parse_topic("iiot", "iiot/gateway/param/mode/set", name, node), 0);
    assert_string_equal(name, "mode");
    assert_string_equal(node, "");
    const char *bad[] = {"iiot/gateway/param/set",    "iiot/gateway/param/x/y/z/set",
                         "iiot/gateway/param/x//set", "iiot/gateway/param/x",
                         "other/gateway/param/x/set", "iiot/gateway/param//set"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(params_parse_topic("iiot", bad[i], name, node), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declare_read_change),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_declaration_errors),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_orphan_and_bounds),
        cmocka_unit_test(test_file_reload),
        cmocka_unit_test(test_default_rule_params),
        cmocka_unit_test(test_alerts_module_params),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_file_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
