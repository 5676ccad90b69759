/*
 * test_rules_mapper.c — gw.mapper and gw.series, the pre-compiled output paths, against the
 * plain gw.publish / gw.point they must equal byte for byte; their build-time validation; and
 * the decoder's pre-sized object tables (pairs buffered on the stack, duplicates: last wins);
 * the entity catalogue the mapper and gw.describe_alert fill for Home Assistant discovery.
 */
#include "rules_harness.h"

#include "util.h"

#define T0 1732480290000000000LL

/* Assert that two captures hold exactly the same publishes and lines, in the same order. */
static void expect_same_output(const struct cap *a, const struct cap *b)
{
    assert_int_equal(a->npub, b->npub);
    assert_int_equal(a->nline, b->nline);
    for (size_t i = 0; i < a->npub; i++)
        expect_pub(b, i, a->pub[i].topic, a->pub[i].payload, a->pub[i].qos, a->pub[i].retain);
    for (size_t i = 0; i < a->nline; i++)
        assert_string_equal(a->line[i], b->line[i]);
}

/* ------------------------------------------------------------------------------------ */
/* gw.mapper == the hand-written equivalent                                             */
/* ------------------------------------------------------------------------------------ */

/* One spec, run through the mapper (p.mode == "map") or by hand with gw.publish/gw.point. */
static const char *const map_rule =
    "local SPEC = {\n"
    "  {path='a.x', topic='t/ax', qos=2, retain=true, measurement='m x',\n"
    "   tags={['k,1']='v=1', n=7}},\n"
    "  {path='a.y', topic='t/ay'},\n"
    "  {path='b', measurement='mb', field='f v'},\n"
    "  {path='c.d.e', topic='t/cde', qos=0, measurement='cde', tags={node='n'}},\n"
    "  {path='a.z', topic='t/az', measurement='az'},\n"
    "}\n"
    "local M = gw.mapper(SPEC)\n"
    "local function get(v, path)\n"
    "  for k in path:gmatch('[^.]+') do\n"
    "    if type(v) ~= 'table' then return nil end\n"
    "    v = rawget(v, k)\n"
    "  end\n"
    "  return v\n"
    "end\n"
    "function on_packet(p)\n"
    "  if p.mode == 'map' then\n"
    "    gw.publish('count', M(p.d))\n"
    "    return\n"
    "  end\n"
    "  local n = 0\n"
    "  for _, e in ipairs(SPEC) do\n"
    "    local v = get(p.d, e.path)\n"
    "    if type(v) == 'number' then\n"
    "      n = n + 1\n"
    "      if e.topic then gw.publish(e.topic, v, e.qos, e.retain or false) end\n"
    "      if e.measurement then\n"
    "        gw.point(e.measurement, e.tags, e.field and {[e.field] = v + 0.0} or v)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  gw.publish('count', n)\n"
    "end\n";

static void test_mapper_matches_hand_written(void **unused)
{
    (void)unused;
    static const char *const docs[] = {
        "{\"a\":{\"x\":27.6,\"y\":84190,\"z\":-39},\"b\":24.0,\"c\":{\"d\":{\"e\":0}}}",
        "{\"a\":{\"x\":-0.5,\"y\":1e300,\"z\":1e-7},\"b\":4611686018427387904,\"c\":{\"d\":{}}}",
        "{\"a\":{\"x\":null,\"y\":\"12\",\"z\":true},\"b\":[1],\"c\":{\"d\":5}}",
        "{\"a\":7,\"c\":{\"d\":{\"e\":-9223372036854775808}}}",
        "{\"a\":{\"x\":1000000000000001,\"y\":-0.0,\"z\":123456.789012345}}",
        "{}",
    };
    struct harness h;
    assert_int_equal(h_open(&h, map_rule, 0, 0), 0);
    for (size_t i = 0; i < ARRAY_LEN(docs); i++) {
        char pkt[512];
        struct cap hand;
        snprintf(pkt, sizeof pkt, "{\"mode\":\"hand\",\"d\":%s}", docs[i]);
        assert_int_equal(h_packet(&h, pkt, T0 + (int64_t)i), 0);
        hand = h.cap; /* take ownership of the strings */
        memset(&h.cap, 0, sizeof h.cap);
        snprintf(pkt, sizeof pkt, "{\"mode\":\"map\",\"d\":%s}", docs[i]);
        assert_int_equal(h_packet(&h, pkt, T0 + (int64_t)i), 0);
        expect_same_output(&hand, &h.cap);
        cap_clear(&hand);
        cap_clear(&h.cap);
    }
    /* Spot-check the first document, so "equal" cannot mean "equally wrong". */
    assert_int_equal(h_packet(&h,
                              "{\"mode\":\"map\",\"d\":{\"a\":{\"x\":27.6,\"y\":84190},"
                              "\"b\":24.0}}",
                              T0),
                     0);
    expect_pub(&h.cap, 0, "t/ax", "27.6", 2, true);
    expect_pub(&h.cap, 1, "t/ay", "84190", 1, false);
    expect_pub(&h.cap, 2, "count", "3", 1, false);
    assert_int_equal(h.cap.nline, 2);
    assert_string_equal(h.cap.line[0], "m\\ x,k\\,1=v\\=1,n=7 value=27.6 1732480290000000000");
    assert_string_equal(h.cap.line[1], "mb f\\ v=24 1732480290000000000");
    h_close(&h);
}

static void test_mapper_call_options_and_errors(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h,
                            "local M = gw.mapper({{path='v', topic='t', measurement='m'},\n"
                            "                     {path='w', topic='u', measurement='n'}})\n"
                            "function on_packet(p)\n"
                            "  if p.ts then M(p, p.ts) else M(p) end\n"
                            "end\n"
                            "function on_line(text) M({v = 0/0, w = 2}) end\n",
                            0, 0),
                     0);
    /* Explicit timestamp. */
    assert_int_equal(h_packet(&h, "{\"v\":1,\"ts\":123}", T0), 0);
    assert_string_equal(h.cap.line[0], "m value=1 123");
    /* A device's 1e999 (inf) is refused alone: the other metric still goes out. */
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, "{\"v\":1e999,\"w\":3}", T0), 0);
    assert_int_equal(h.cap.nline, 1);
    assert_string_equal(h.cap.line[0], "n value=3 1732480290000000000");
    expect_pub(&h.cap, 0, "u", "3", 1, false);
    assert_int_equal(h.cap.nrefused, 1);
    assert_non_null(strstr(h.cap.refused[0], "rule.lua:4: mapper: v: non-finite"));
    /* NaN from the rule's own table: the same. */
    cap_clear(&h.cap);
    h.err[0] = '\0';
    assert_int_equal(rules_line(h.r, "s", 1, T0, "x", 1, h.err, sizeof h.err), 0);
    assert_int_equal(h.cap.npub, 1);
    assert_int_equal(h.cap.nline, 1);
    assert_int_equal(h.cap.nrefused, 1);
    assert_non_null(strstr(h.cap.refused[0], "rule.lua:6:"));
    /* The mapper is opaque: no metatable for rules to read or change. */
    h_close(&h);
    assert_int_equal(h_open(&h,
                            "local M = gw.mapper({{path='v', topic='t'}})\n"
                            "local S = gw.series('m', {a='b'})\n"
                            "assert(getmetatable(M) == false and getmetatable(S) == false)\n"
                            "function on_packet(p) M(5) end\n",
                            0, 0),
                     0);
    assert_int_equal(h_packet(&h, "{}", T0), -ECANCELED);
    assert_non_null(strstr(h.err, "rule.lua:4:"));
    h_close(&h);
}

static void test_mapper_spec_errors(void **unused)
{
    (void)unused;
    static const struct {
        const char *spec;
        const char *needle;
    } cases[] = {
        {"{}", "list of 1.."},
        {"{'x'}", "entry 1 must be a table"},
        {"{{path='a'}}", "needs a topic, a measurement, or both"},
        {"{{path='a', topic='x/+'}}", "wildcard"},
        {"{{path='a', topic=''}}", "is empty"},
        {"{{path='a', topic='x', retian=true}}", "unknown key retian"},
        {"{{path='a..b', topic='x'}}", "single dots"},
        {"{{path='', topic='x'}}", "single dots"},
        {"{{path=5, topic='x'}}", "path must be a string"},
        {"{{path='a', topic='x', qos=3}}", "qos must be 0, 1 or 2"},
        {"{{path='a', topic='x', retain=1}}", "retain must be a boolean"},
        {"{{path='a', topic='x', tags={n='1'}}}", "tags without a measurement"},
        {"{{path='a', measurement='m', tags={k=''}}}", "tag value \"\" is empty"},
        {"{{path='a', measurement='m', tags={k='x\\\\'}}}", "ends with a backslash"},
        {"{{path='a', measurement='#m'}}", "starts with '#'"},
        {"{{path='a', measurement='m', field=''}}", "field \"\" is empty"},
        {"{{path='a', measurement='m', field='time'}}", "reserved"},
        {"{{path='a', topic='a\\tb'}}", "control character"},
        {"{{path='a', topic='t'}, {path='b', measurement={}}}", "entry 2 (b)"},
        {"{{path='a', topic='t', ha=1}}", "ha must be a table or false"},
        {"{{path='a', topic='t', ha={unti='C'}}}", "ha: unknown key unti"},
        {"{{path='a', topic='t', ha={precision=1.5}}}", "ha.precision must be an integer"},
        {"{{path='a', topic='t', ha={precision=16}}}", "ha.precision must be an integer"},
        {"{{path='a', topic='t', ha={name=''}}}", "ha.name must be a non-empty string"},
        {"{{path='a', topic='t', ha={node=7}}}", "ha.node must be a non-empty string"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct harness h;
        char rule[512];
        snprintf(rule, sizeof rule, "local x = 1\nlocal M = gw.mapper(%s)\n", cases[i].spec);
        assert_int_equal(h_open(&h, rule, 0, 0), -EINVAL);
        if (!strstr(h.err, cases[i].needle) || !strstr(h.err, "rule.lua:2:"))
            fail_msg("spec %s: error \"%s\" lacks \"%s\" or the line", cases[i].spec, h.err,
                     cases[i].needle);
        h_close(&h);
    }
}

/* ------------------------------------------------------------------------------------ */
/* gw.series                                                                            */
/* ------------------------------------------------------------------------------------ */

/* The entity catalogue (rules_entities): what the mapper entries and gw.describe_alert state,
 * in declaration order, replaced as a whole by a successful reload and kept by a failed one. */
static void test_entities(void **unused)
{
    (void)unused;
    static const char *const rule =
        "local M = gw.mapper({\n"
        "  {path='n1.t', topic='p/node1/temperature', measurement='temperature',\n"
        "   tags={node='node1', unit='celsius'}},\n"
        "  {path='s.rssi', topic='p/signal/rssi', tags={node='signal', unit='dbm'},\n"
        "   measurement='rssi', ha={node='node2', name='RSSI', unit='dBm', precision=0,\n"
        "   device_class='signal_strength'}},\n"
        "  {path='x', topic='p/hidden', ha=false},\n"
        "  {path='y.z', measurement='point_only'},\n"
        "  {path='q.w', topic='p/plain'},\n"
        "})\n"
        "gw.describe_alert('p/alerts/node1/temperature', {node='node1', name='Hot'})\n"
        "gw.describe_alert('p/alerts/node1/temperature', {node='node1', name='Too hot',\n"
        "                  device_class='heat'})\n"
        "gw.describe_alert('p/alerts/x')\n";
    struct harness h;
    assert_int_equal(h_open(&h, rule, 0, 0), 0);
    const struct rules_entity *e;
    size_t n = rules_entities(h.r, &e);
    assert_int_equal(n, 5);
    assert_int_equal(e[0].kind, RULES_ENTITY_METRIC);
    assert_string_equal(e[0].topic, "p/node1/temperature");
    assert_string_equal(e[0].node, "node1");
    assert_string_equal(e[0].metric, "temperature");
    assert_string_equal(e[0].unit_tag, "celsius");
    assert_null(e[0].unit);
    assert_int_equal(e[0].precision, -1);
    assert_string_equal(e[1].node, "node2"); /* ha.node wins over tags.node */
    assert_string_equal(e[1].name, "RSSI");
    assert_string_equal(e[1].unit, "dBm");
    assert_string_equal(e[1].device_class, "signal_strength");
    assert_int_equal(e[1].precision, 0);
    assert_string_equal(e[2].topic, "p/plain"); /* no measurement: the path's last key */
    assert_string_equal(e[2].metric, "w");
    assert_null(e[2].node);
    assert_int_equal(e[3].kind, RULES_ENTITY_ALERT); /* described twice: the last one wins */
    assert_string_equal(e[3].name, "Too hot");
    assert_string_equal(e[3].device_class, "heat");
    assert_string_equal(e[4].topic, "p/alerts/x");
    assert_null(e[4].node);

    /* A failed reload keeps the catalogue; a good one replaces it. */
    assert_int_equal(h_reload(&h, "gw.describe_alert('p/a/b')\nlocal x = (\n"), -EINVAL);
    assert_int_equal(rules_entities(h.r, &e), 5);
    assert_int_equal(h_reload(&h, "gw.describe_alert('p/a/b')\n"), 0);
    assert_int_equal(rules_entities(h.r, &e), 1);
    assert_string_equal(e[0].topic, "p/a/b");
    assert_int_equal(h_reload(&h, "local x = 1\n"), 0);
    assert_int_equal(rules_entities(h.r, &e), 0);

    /* Bad descriptions are errors naming the rule line. */
    assert_int_equal(h_reload(&h, "local x = 1\ngw.describe_alert('a/+')\n"), -EINVAL);
    assert_non_null(strstr(h.err, "rule.lua:2:"));
    assert_non_null(strstr(h.err, "wildcard"));
    assert_int_equal(h_reload(&h, "gw.describe_alert('a', {color='red'})\n"), -EINVAL);
    assert_non_null(strstr(h.err, "unknown key color"));
    assert_int_equal(h_reload(&h, "gw.describe_alert('a', 5)\n"), -EINVAL);
    assert_non_null(strstr(h.err, "options must be a table"));
    h_close(&h);
}

static void test_series(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(
        h_open(&h,
               "local S = gw.series('my m', {['k k']='v,v', n=7, a='x'})\n"
               "local N = gw.series('bare')\n"
               "function on_packet(p)\n"
               "  gw.point(S, 1.5)\n"
               "  gw.point('my m', {['k k']='v,v', n=7, a='x'}, 1.5)\n"
               "  gw.point(S, {i=5, s='q\"', b=false}, 99)\n"
               "  gw.point(N, 84190)\n"
               "  gw.publish('s', tostring(S))\n"
               "  if p.bad == 1 then gw.point(S, {}) end\n"
               "  if p.bad == 2 then gw.point(gw.mapper({{path='v', topic='t'}}), 1) end\n"
               "  if p.bad == 3 then gw.series('m', {k='a\\nb'}) end\n"
               "end\n",
               0, 0),
        0);
    assert_int_equal(h_packet(&h, "{}", T0), 0);
    struct cap *c = &h.cap;
    assert_int_equal(c->nline, 4);
    assert_string_equal(c->line[0], "my\\ m,a=x,k\\ k=v\\,v,n=7 value=1.5 1732480290000000000");
    assert_string_equal(c->line[1], c->line[0]);
    assert_non_null(strstr(c->line[2], "my\\ m,a=x,k\\ k=v\\,v,n=7 "));
    assert_non_null(strstr(c->line[2], "i=5,") || strstr(c->line[2], "i=5 "));
    assert_non_null(strstr(c->line[2], "s=\"q\\\"\""));
    assert_non_null(strstr(c->line[2], " 99"));
    assert_string_equal(c->line[3], "bare value=84190 1732480290000000000");
    expect_pub(c, 0, "s", "my\\ m,a=x,k\\ k=v\\,v,n=7", 1, false);
    assert_int_equal(h_packet(&h, "{\"bad\":1}", T0), -ECANCELED);
    assert_non_null(strstr(h.err, "rule.lua:9: gw.point: no fields"));
    assert_int_equal(h_packet(&h, "{\"bad\":2}", T0), -ECANCELED);
    assert_non_null(strstr(h.err, "rule.lua:10: gw.point: first argument"));
    assert_int_equal(h_packet(&h, "{\"bad\":3}", T0), -ECANCELED);
    assert_non_null(
        strstr(h.err, "rule.lua:11: gw.series: tag value \"a\\nb\" contains a control"));
    h_close(&h);
}

/* ------------------------------------------------------------------------------------ */
/* Decoder: objects sized from their buffered pairs                                     */
/* ------------------------------------------------------------------------------------ */

static void test_decoder_object_sizes(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open(&h,
                            "function on_packet(p)\n"
                            "  local n = 0\n"
                            "  for _ in pairs(p) do n = n + 1 end\n"
                            "  gw.publish('n', n)\n"
                            "  gw.publish('k3', p.k3)\n"
                            "  gw.publish('k16', p.k16 or 'nil')\n"
                            "  gw.publish('k17', p.k17 or 'nil')\n"
                            "end\n",
                            0, 0),
                     0);
    /* 0, 1, 16 (buffer full exactly), 17 and 40 keys (table made mid-object); k3 repeated
     * after the buffer boundary must win. */
    static const int sizes[] = {3, 16, 17, 40};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
        char json[2048];
        size_t len = 0;
        json[len++] = '{';
        for (int k = 1; k <= sizes[s]; k++)
            len += (size_t)snprintf(json + len, sizeof json - len, "%s\"k%d\":%d", k > 1 ? "," : "",
                                    k, k);
        len += (size_t)snprintf(json + len, sizeof json - len, ",\"k3\":\"last\"}");
        assert_int_equal(h_packet(&h, json, T0), 0);
        char want[16];
        snprintf(want, sizeof want, "%d", sizes[s]);
        expect_pub(&h.cap, 0, "n", want, 1, false);
        expect_pub(&h.cap, 1, "k3", "last", 1, false);
        expect_pub(&h.cap, 2, "k16", sizes[s] >= 16 ? "16" : "nil", 1, false);
        expect_pub(&h.cap, 3, "k17", sizes[s] >= 17 ? "17" : "nil", 1, false);
        cap_clear(&h.cap);
    }
    assert_int_equal(h_packet(&h, "{\"k3\":1,\"k3\":2}", T0), 0);
    expect_pub(&h.cap, 0, "n", "1", 1, false);
    expect_pub(&h.cap, 1, "k3", "2", 1, false);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapper_matches_hand_written),
        cmocka_unit_test(test_mapper_call_options_and_errors),
        cmocka_unit_test(test_mapper_spec_errors),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_decoder_object_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
