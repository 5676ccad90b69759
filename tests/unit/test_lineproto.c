/*
 * test_lineproto.c — unit tests of the line protocol encoder (src/lineproto.c).
 *
 * Covers the escaping table of the InfluxDB docs ("Line protocol / special characters"),
 * tag sorting, every field type, every rejection case (with the output left byte-for-byte
 * unchanged) and lp_format_double against the reference algorithm over many random doubles.
 * Also lp_series/lp_encode_series (must equal lp_encode), lp_append_key and lp_format_int,
 * the name rules (lp_name_problem) and the strict reader lp_parse (known lines, and a random
 * round trip: everything lp_encode writes must parse back to exactly its input).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lineproto.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                              */
/* ------------------------------------------------------------------------------------ */

#define TS 1732480290000000000LL

static struct lp_field ffloat(const char *k, double v)
{
    struct lp_field f = {.key = k, .type = LP_FLOAT};
    f.v.f = v;
    return f;
}

static struct lp_field fstr(const char *k, const char *s)
{
    struct lp_field f = {.key = k, .type = LP_STRING};
    f.v.s.s = s;
    f.v.s.len = strlen(s);
    return f;
}

/* Encode one point into a fresh buffer and compare with the expected text. */
static void expect_line(const char *want, const char *meas, struct lp_tag *tags, size_t ntags,
                        const struct lp_field *fields, size_t nfields, int64_t ts)
{
    struct buf b = BUF_INIT;
    assert_int_equal(lp_encode(&b, meas, tags, ntags, fields, nfields, ts), 0);
    assert_string_equal(b.p, want);
    assert_int_equal(b.len, strlen(want));
    buf_free(&b);
}

/* Encoding must fail with -EINVAL and leave a pre-filled buffer exactly as it was. */
static void expect_einval(const char *meas, struct lp_tag *tags, size_t ntags,
                          const struct lp_field *fields, size_t nfields)
{
    struct buf b = BUF_INIT;
    const char *prefix = "cpu value=1 1\n";
    assert_int_equal(buf_append_str(&b, prefix), 0);
    assert_int_equal(lp_encode(&b, meas, tags, ntags, fields, nfields, TS), -EINVAL);
    assert_int_equal(b.len, strlen(prefix));
    assert_memory_equal(b.p, prefix, strlen(prefix) + 1); /* incl. the NUL */
    buf_free(&b);
}

/* The algorithm lineproto.h promises, written the slow obvious way. */
static void ref_format(char *out, size_t n, double v)
{
    snprintf(out, n, "%.15g", v);
    if (strtod(out, NULL) == v)
        return;
    snprintf(out, n, "%.16g", v);
    if (strtod(out, NULL) == v)
        return;
    snprintf(out, n, "%.17g", v);
}

static void check_format(double v)
{
    char got[32], want[32];
    int n = lp_format_double(got, sizeof got, v);
    ref_format(want, sizeof want, v);
    if (strcmp(got, want) != 0)
        fail_msg("lp_format_double(%a): got \"%s\", reference \"%s\"", v, got, want);
    assert_int_equal(n, (int)strlen(got));
    assert_true(strtod(got, NULL) == v);
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ------------------------------------------------------------------------------------ */
/* lp_encode: shape, types, sorting                                                     */
/* ------------------------------------------------------------------------------------ */

static void test_brief_schema(void **state)
{
    (void)state;
    struct lp_tag tags[] = {{"unit", "celsius"}, {"node", "node1"}};
    struct lp_field f[] = {ffloat("value", 27.6)};
    expect_line("temperature,node=node1,unit=celsius value=27.6 1732480290000000000", "temperature",
                tags, 2, f, 1, TS);
    /* tags were sorted in place, as the header allows */
    assert_string_equal(tags[0].key, "node");

    struct lp_field g[] = {ffloat("value", 84190.0)};
    struct lp_tag t2[] = {{"node", "node1"}, {"unit", "ohms"}};
    expect_line("gas_resistance,node=node1,unit=ohms value=84190 1732480290000000000",
                "gas_resistance", t2, 2, g, 1, TS);
}

static void test_no_tags_and_timestamp(void **state)
{
    (void)state;
    struct lp_field f[] = {ffloat("value", -39)};
    expect_line("rssi value=-39 0", "rssi", NULL, 0, f, 1, 0);
    expect_line("rssi value=-39 -5", "rssi", NULL, 0, f, 1, -5);
    expect_line("rssi value=-39 9223372036854775807", "rssi", NULL, 0, f, 1, INT64_MAX);
    expect_line("rssi value=-39 -9223372036854775808", "rssi", NULL, 0, f, 1, INT64_MIN);
}

static void test_field_types(void **state)
{
    (void)state;
    struct lp_field f[7];
    f[0] = ffloat("f", 1.5);
    f[1] = (struct lp_field){.key = "i", .type = LP_INT, .v.i = -3};
    f[2] = (struct lp_field){.key = "imin", .type = LP_INT, .v.i = INT64_MIN};
    f[3] = (struct lp_field){.key = "u", .type = LP_UINT, .v.u = UINT64_MAX};
    f[4] = (struct lp_field){.key = "t", .type = LP_BOOL, .v.b = true};
    f[5] = (struct lp_field){.key = "b", .type = LP_BOOL, .v.b = false};
    f[6] = fstr("s", "text");
    expect_line("m f=1.5,i=-3i,imin=-9223372036854775808i,u=18446744073709551615u,t=true,"
                "b=false,s=\"text\" 7",
                "m", NULL, 0, f, 7, 7);

    struct lp_field z[] = {{.key = "zero", .type = LP_INT, .v.i = 0},
                           {.key = "uz", .type = LP_UINT, .v.u = 0},
                           fstr("empty", "")};
    expect_line("m zero=0i,uz=0u,empty=\"\" 1", "m", NULL, 0, z, 3, 1);
    struct lp_field nul = {.key = "s", .type = LP_STRING}; /* NULL text with length 0 */
    expect_line("m s=\"\" 1", "m", NULL, 0, &nul, 1, 1);
    nul.v.s.len = 1;
    expect_einval("m", NULL, 0, &nul, 1); /* NULL text with a length */
}

static void test_tag_sorting(void **state)
{
    (void)state;
    struct lp_tag tags[] = {{"z", "1"},  {"b", "2"}, {"a", "3"},
                            {"ab", "4"}, {"B", "5"}, {"m", "6"}};
    struct lp_field f[] = {ffloat("v", 1)};
    expect_line("m,B=5,a=3,ab=4,b=2,m=6,z=1 v=1 1", "m", tags, 6, f, 1, 1);
    /* already sorted input stays sorted */
    expect_line("m,B=5,a=3,ab=4,b=2,m=6,z=1 v=1 1", "m", tags, 6, f, 1, 1);
}

static void test_appends(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    struct lp_field f[] = {ffloat("v", 0.5)};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lp_encode(&b, "m", NULL, 0, f, 1, i), 0);
        assert_int_equal(buf_append_char(&b, '\n'), 0);
    }
    assert_string_equal(b.p, "m v=0.5 0\nm v=0.5 1\nm v=0.5 2\n");
    buf_free(&b);
}

/* ------------------------------------------------------------------------------------ */
/* Escaping (the InfluxDB docs' special-character table and its examples)              */
/* ------------------------------------------------------------------------------------ */

static void test_escape_docs_examples(void **state)
{
    (void)state;
    /* "Measurement name with spaces" */
    struct lp_field f1[] = {fstr("fieldKey", "string value")};
    expect_line("my\\ Measurement fieldKey=\"string value\" 1", "my Measurement", NULL, 0, f1, 1,
                1);
    /* "Double quotes in a string field value" */
    struct lp_field f2[] = {fstr("fieldKey", "\"string\" within a string")};
    expect_line("myMeasurement fieldKey=\"\\\"string\\\" within a string\" 1", "myMeasurement",
                NULL, 0, f2, 1, 1);
    /* "Tag keys and values with spaces" */
    struct lp_tag t3[] = {{"tag Key1", "tag Value1"}, {"tag Key2", "tag Value2"}};
    struct lp_field f3[] = {{.key = "fieldKey", .type = LP_INT, .v.i = 100}};
    expect_line("myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100i 1",
                "myMeasurement", t3, 2, f3, 1, 1);
    /* "Emojis" pass through untouched */
    struct lp_tag t4[] = {{"tagKey", "\xF0\x9F\x8D\xAD"}};
    struct lp_field f4[] = {fstr("fieldKey", "Launch \xF0\x9F\x9A\x80")};
    expect_line("myMeasurement,tagKey=\xF0\x9F\x8D\xAD fieldKey=\"Launch \xF0\x9F\x9A\x80\" "
                "1556813561098000000",
                "myMeasurement", t4, 1, f4, 1, 1556813561098000000LL);
    /* "Backslashes" in a string field value */
    struct lp_field f5[] = {fstr("fieldKey", "C:\\path\\")};
    expect_line("m fieldKey=\"C:\\\\path\\\\\" 1", "m", NULL, 0, f5, 1, 1);
}

static void test_escape_table(void **state)
{
    (void)state;
    /* measurement: comma and space escaped; '=' and '"' are not special there */
    struct lp_field f[] = {ffloat("v", 1)};
    expect_line("a\\,b\\ c=d\"e v=1 1", "a,b c=d\"e", NULL, 0, f, 1, 1);

    /* tag key and value: comma, equals, space */
    struct lp_tag t[] = {{"k,=  k", "v,= v\""}};
    expect_line("m,k\\,\\=\\ \\ k=v\\,\\=\\ v\" v=1 1", "m", t, 1, f, 1, 1);

    /* field key: comma, equals, space */
    struct lp_field fk[] = {ffloat("f,= k", 2)};
    expect_line("m f\\,\\=\\ k=2 1", "m", NULL, 0, fk, 1, 1);

    /* string value: only '"' and '\'; comma, equals, space and tabs are kept */
    struct lp_field fs[] = {fstr("s", "a,b=c d\"e\\f\tg")};
    expect_line("m s=\"a,b=c d\\\"e\\\\f\tg\" 1", "m", NULL, 0, fs, 1, 1);

    /* string values with a newline, CR or NUL cannot be carried (VictoriaMetrics splits the
     * body on newlines first: a quoted newline would inject a line) */
    struct lp_field bad[] = {fstr("s", "a\nevil v=1 1")};
    expect_einval("m", NULL, 0, bad, 1);
    bad[0] = fstr("s", "a\rb");
    expect_einval("m", NULL, 0, bad, 1);
    struct lp_field fn = {.key = "s", .type = LP_STRING};
    fn.v.s.s = "a\0b";
    fn.v.s.len = 3;
    expect_einval("m", NULL, 0, &fn, 1);
    bad[0] = fstr("s", "caf\xc3");
    expect_einval("m", NULL, 0, bad, 1); /* invalid UTF-8 */
}

/* A backslash that would escape the next separator, a comment line, reserved or duplicate
 * keys, control characters and invalid UTF-8 in names: all refused, never written. */
static void test_name_rules(void **state)
{
    (void)state;
    struct lp_field ok[] = {ffloat("v", 1)};
    /* `node=evil\` would swallow `,site=plantA` */
    struct lp_tag t[] = {{"node", "evil\\"}, {"site", "plantA"}};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node\\", "x"};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node", "a\\,b"};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node", "a\\\\b"};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node", "a\\=b"};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node", "a\\\"b"};
    expect_einval("m", t, 2, ok, 1);
    t[0] = (struct lp_tag){"node", "a\\ b"};
    expect_einval("m", t, 2, ok, 1);
    expect_einval("meas\\", NULL, 0, ok, 1);
    struct lp_field fk[] = {ffloat("v\\", 1)};
    expect_einval("m", NULL, 0, fk, 1);
    /* a backslash before an ordinary byte is literal for every reader */
    struct lp_tag tb[] = {{"path", "C:\\temp"}};
    expect_line("m,path=C:\\temp v=1 1", "m", tb, 1, ok, 1, 1);

    expect_einval("#m", NULL, 0, ok, 1); /* a comment */
    expect_line("m# v=1 1", "m#", NULL, 0, ok, 1, 1);
    struct lp_tag tt[] = {{"time", "x"}};
    expect_einval("m", tt, 1, ok, 1);
    struct lp_tag tv[] = {{"k", "time"}};
    expect_line("m,k=time v=1 1", "m", tv, 1, ok, 1, 1);
    struct lp_field ft[] = {ffloat("time", 1)};
    expect_einval("m", NULL, 0, ft, 1);
    struct lp_tag td[] = {{"k", "a"}, {"k", "b"}};
    expect_einval("m", td, 2, ok, 1);
    struct lp_field fd[] = {ffloat("v", 1), ffloat("v", 2)};
    expect_einval("m", NULL, 0, fd, 2);

    const char *names[] = {"a\tb", "a\x01", "a\x7f", "caf\xc3", "\xff", "\xed\xa0\x80", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        expect_einval(names[i], NULL, 0, ok, 1);
        struct lp_tag tn[] = {{"k", names[i]}};
        expect_einval("m", tn, 1, ok, 1);
        struct lp_field fn[] = {ffloat(names[i], 1)};
        expect_einval("m", NULL, 0, fn, 1);
        assert_non_null(lp_name_problem(names[i], strlen(names[i]), LP_TAG_VALUE));
    }
    assert_string_equal(lp_name_problem("evil\\", 5, LP_TAG_VALUE), "ends with a backslash");
    assert_null(lp_name_problem("caf\xc3\xa9", 5, LP_MEASUREMENT));
    assert_null(lp_string_problem("", 0));
}

/* ------------------------------------------------------------------------------------ */
/* Strict reader                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_parse_known(void **state)
{
    (void)state;
    struct buf sc = BUF_INIT;
    struct lp_point pt;
    const char *l = "my\\ m,a\\,b=c\\=d,n=x\\y f\\ 1=1.5,i=-3i,u=7u,b=true,s=\"q\\\"\\\\\" -5";
    assert_int_equal(lp_parse(l, strlen(l), &pt, &sc), 0);
    assert_string_equal(pt.measurement, "my m");
    assert_int_equal(pt.ntags, 2);
    assert_string_equal(pt.tags[0].key, "a,b");
    assert_string_equal(pt.tags[0].value, "c=d");
    assert_string_equal(pt.tags[1].value, "x\\y");
    assert_int_equal(pt.nfields, 5);
    assert_string_equal(pt.fields[0].key, "f 1");
    assert_true(pt.fields[0].type == LP_FLOAT && pt.fields[0].v.f == 1.5);
    assert_true(pt.fields[1].type == LP_INT && pt.fields[1].v.i == -3);
    assert_true(pt.fields[2].type == LP_UINT && pt.fields[2].v.u == 7);
    assert_true(pt.fields[3].type == LP_BOOL && pt.fields[3].v.b);
    assert_true(pt.fields[4].type == LP_STRING && pt.fields[4].v.s.len == 3);
    assert_memory_equal(pt.fields[4].v.s.s, "q\"\\", 3);
    assert_int_equal(pt.ts_ns, -5);

    /* lenient forms InfluxDB takes, and everything lp_encode never writes: refused */
    const char *bad[] = {
        "m v=1",                      /* no timestamp */
        "m v=1 1 ",                   /* trailing space */
        "m v=t 1",                    /* lenient boolean */
        "m,b=1,a=2 v=1 1",            /* unsorted tags */
        "m,a=1,a=2 v=1 1",            /* duplicate tag */
        "m v=1,v=2 1",                /* duplicate field */
        "#m v=1 1",                   /* comment */
        "m,node=evil\\,site=x v=1 1", /* the swallowed-tag line: value ends in "\\," */
        "m v=\"a\\nb\" 1",            /* unknown string escape */
        "m v=\"abc 1",                /* unterminated string */
        "m v=nan 1",
        "m v=inf 1",
        "m v=1e999 1",
        "m v=01 1",
        "m v=9223372036854775808i 1",
        "m v=-1u 1",
        "m v=1. 1",
        "m v=.5 1",
        "m v=1e 1",
        "m  v=1 1",
        "m v= 1",
        "m =1 1",
        "m,=a v=1 1",
        "m,a= v=1 1",
        "m,time=a v=1 1",
        "m time=1 1",
        "m\tx v=1 1",
        "",
        "m v=1 1\n",
        "m v=1 99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = lp_parse(bad[i], strlen(bad[i]), &pt, &sc);
        if (rc != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
    }
    buf_free(&sc);
}

/* Random names, values and types: what lp_encode accepts parses back to the same values. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void rand_name(char *out, size_t cap)
{
    static const char alphabet[] = "abcdefabcdefab,= \\\"#\n\t\xc3\xa9\xff";
    size_t n = rng() % (cap - 1);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rng() % (sizeof alphabet - 1)];
    out[n] = '\0';
}

static void test_parse_roundtrip_random(void **state)
{
    (void)state;
    struct buf b = BUF_INIT, sc = BUF_INIT;
    struct lp_point pt;
    size_t accepted = 0;
    for (int iter = 0; iter < 200000; iter++) {
        char meas[8], tk[3][6], tv[3][6], fk[3][6], sv[3][8];
        struct lp_tag tags[3];
        struct lp_field fields[3];
        rand_name(meas, sizeof meas);
        size_t nt = rng() % 4, nf = 1 + rng() % 3;
        for (size_t i = 0; i < nt; i++) {
            rand_name(tk[i], sizeof tk[i]);
            rand_name(tv[i], sizeof tv[i]);
            tags[i] = (struct lp_tag){tk[i], tv[i]};
        }
        for (size_t i = 0; i < nf; i++) {
            rand_name(fk[i], sizeof fk[i]);
            fields[i].key = fk[i];
            switch (rng() % 5) {
            case 0: {
                uint64_t bits = rng();
                memcpy(&fields[i].v.f, &bits, sizeof bits);
                fields[i].type = LP_FLOAT;
                break;
            }
            case 1:
                fields[i].type = LP_INT;
                fields[i].v.i = (int64_t)rng();
                break;
            case 2:
                fields[i].type = LP_UINT;
                fields[i].v.u = rng();
                break;
            case 3:
                fields[i].type = LP_BOOL;
                fields[i].v.b = rng() & 1;
                break;
            default:
                rand_name(sv[i], sizeof sv[i]);
                fields[i] = fstr(fk[i], sv[i]);
                break;
            }
        }
        int64_t ts = (int64_t)rng();
        buf_clear(&b);
        if (lp_encode(&b, meas, tags, nt, fields, nf, ts) != 0)
            continue;
        accepted++;
        if (lp_parse(b.p, b.len, &pt, &sc) != 0)
            fail_msg("written but not read back: %s", b.p);
        assert_string_equal(pt.measurement, meas);
        assert_int_equal(pt.ntags, nt);
        for (size_t i = 0; i < nt; i++) {
            assert_string_equal(pt.tags[i].key, tags[i].key); /* tags[] sorted by lp_encode */
            assert_string_equal(pt.tags[i].value, tags[i].value);
        }
        assert_int_equal(pt.nfields, nf);
        for (size_t i = 0; i < nf; i++) {
            const struct lp_field *a = &fields[i], *p = &pt.fields[i];
            assert_string_equal(p->key, a->key);
            assert_int_equal(p->type, a->type);
            if (a->type == LP_STRING) {
                assert_int_equal(p->v.s.len, a->v.s.len);
                assert_memory_equal(p->v.s.s, a->v.s.s, a->v.s.len);
            } else if (a->type == LP_FLOAT) {
                assert_memory_equal(&p->v.f, &a->v.f, sizeof(double));
            } else if (a->type == LP_BOOL) {
                assert_int_equal(p->v.b, a->v.b);
            } else {
                assert_memory_equal(&p->v.u, &a->v.u, sizeof(uint64_t));
            }
        }
        assert_int_equal(pt.ts_ns, ts);
    }
    assert_true(accepted > 1000); /* the generator must exercise the accepting side too */
    buf_free(&b);
    buf_free(&sc);
}

/* ------------------------------------------------------------------------------------ */
/* Rejections                                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_rejections(void **state)
{
    (void)state;
    struct lp_field ok[] = {ffloat("v", 1)};
    struct lp_tag good = {"node", "n1"};

    expect_einval("", NULL, 0, ok, 1);     /* empty measurement */
    expect_einval(NULL, NULL, 0, ok, 1);   /* no measurement */
    expect_einval("m", NULL, 0, ok, 0);    /* no fields */
    expect_einval("m", NULL, 0, NULL, 1);  /* fields missing */
    expect_einval("m\n", NULL, 0, ok, 1);  /* LF in measurement */
    expect_einval("m\rx", NULL, 0, ok, 1); /* CR in measurement */

    struct lp_tag t[2] = {good, {"", "x"}};
    expect_einval("m", t, 2, ok, 1); /* empty tag key */
    t[1] = (struct lp_tag){"k", ""};
    expect_einval("m", t, 2, ok, 1); /* empty tag value */
    t[1] = (struct lp_tag){"k\n", "x"};
    expect_einval("m", t, 2, ok, 1); /* LF in tag key */
    t[1] = (struct lp_tag){"k", "x\r"};
    expect_einval("m", t, 2, ok, 1); /* CR in tag value */
    t[1] = (struct lp_tag){"k", NULL};
    expect_einval("m", t, 2, ok, 1); /* NULL tag value */

    struct lp_field f[2] = {ffloat("a", 1), ffloat("", 2)};
    expect_einval("m", NULL, 0, f, 2); /* empty field key */
    f[1] = ffloat("b\nc", 2);
    expect_einval("m", NULL, 0, f, 2); /* LF in field key */
    f[1] = ffloat("b", NAN);
    expect_einval("m", NULL, 0, f, 2);
    f[1] = ffloat("b", INFINITY);
    expect_einval("m", NULL, 0, f, 2);
    f[1] = ffloat("b", -INFINITY);
    expect_einval("m", NULL, 0, f, 2);
    f[1] = (struct lp_field){.key = "b", .type = (enum lp_type)42};
    expect_einval("m", NULL, 0, f, 2); /* unknown type */

    /* rejection on an empty buffer leaves len 0 */
    struct buf b = BUF_INIT;
    assert_int_equal(lp_encode(&b, "m", NULL, 0, f, 2, 1), -EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

/* ------------------------------------------------------------------------------------ */
/* lp_format_double                                                                     */
/* ------------------------------------------------------------------------------------ */

static void test_format_known(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {27.6, "27.6"},
        {84190.0, "84190"},
        {-0.5, "-0.5"},
        {0.0, "0"},
        {-0.0, "-0"},
        {1e300, "1e+300"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {-39, "-39"},
        {1e15, "1e+15"},
        {999999999999999.0, "999999999999999"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {123456.789, "123456.789"},
        {9007199254740993.0, "9007199254740992"},
        {5e-324, "4.94065645841247e-324"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {100, "100"},
        {-1e-4, "-0.0001"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        int n = lp_format_double(out, sizeof out, cases[i].v);
        assert_string_equal(out, cases[i].s);
        assert_int_equal(n, (int)strlen(cases[i].s));
        check_format(cases[i].v);
    }
}

static void test_format_truncation(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(lp_format_double(out, sizeof out, 123456.5), 8);
    assert_string_equal(out, "123");
    assert_int_equal(lp_format_double(NULL, 0, 27.6), 4);
}

/* Random bit patterns: every exponent, every mantissa shape. */
static void test_format_random_bits(void **state)
{
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = xorshift64(&s);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        check_format(v);
    }
}

/* Values shaped like telemetry: k / 10^d, integers, and their neighbours one ulp away. */
static void test_format_random_decimals(void **state)
{
    (void)state;
    uint64_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = xorshift64(&s);
        int d = (int)(r % 12);
        int64_t k = (int64_t)(xorshift64(&s) % 2000000000000ULL) - 1000000000000LL;
        k >>= (r >> 8) % 40; /* vary the magnitude */
        double v = (double)k / pow(10, d);
        check_format(v);
        check_format(nextafter(v, INFINITY));
        check_format(nextafter(v, -INFINITY));
        check_format((double)k);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Pre-encoded series, keys and integers                                                */
/* ------------------------------------------------------------------------------------ */

/* lp_series + lp_encode_series must give exactly lp_encode's line. */
static void test_series_equals_encode(void **state)
{
    (void)state;
    struct lp_tag t1[] = {{"unit", "ohms"}, {"k k", "v,v=x"}, {"node", "node1"}};
    struct lp_tag t2[] = {{"unit", "ohms"}, {"k k", "v,v=x"}, {"node", "node1"}};
    struct lp_field f[] = {ffloat("value", 84190), fstr("s", "a\"b")};
    struct buf a = BUF_INIT, s = BUF_INIT, b = BUF_INIT;
    assert_int_equal(lp_encode(&a, "gas resistance,x", t1, 3, f, 2, TS), 0);
    assert_int_equal(lp_series(&s, "gas resistance,x", t2, 3), 0);
    assert_string_equal(s.p, "gas\\ resistance\\,x,k\\ k=v\\,v\\=x,node=node1,unit=ohms");
    assert_int_equal(lp_encode_series(&b, s.p, s.len, f, 2, TS), 0);
    assert_string_equal(b.p, a.p);
    /* no tags */
    buf_clear(&s);
    assert_int_equal(lp_series(&s, "m", NULL, 0), 0);
    assert_string_equal(s.p, "m");
    /* rejections leave the buffer unchanged */
    struct lp_tag bad[] = {{"k", ""}};
    assert_int_equal(lp_series(&s, "m2", bad, 1), -EINVAL);
    assert_string_equal(s.p, "m");
    assert_int_equal(lp_encode_series(&b, "", 0, f, 1, TS), -EINVAL);
    assert_int_equal(lp_encode_series(&b, "m", 1, f, 0, TS), -EINVAL);
    struct lp_field nan = ffloat("value", NAN);
    size_t before = b.len;
    assert_int_equal(lp_encode_series(&b, "m", 1, &nan, 1, TS), -EINVAL);
    assert_int_equal(b.len, before);
    buf_free(&a);
    buf_free(&s);
    buf_free(&b);
}

static void test_append_key_and_format_int(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    assert_int_equal(lp_append_key(&b, "f v,=x", 6), 0);
    assert_string_equal(b.p, "f\\ v\\,\\=x");
    assert_int_equal(lp_append_key(&b, "", 0), -EINVAL);
    assert_int_equal(lp_append_key(&b, "a\nb", 3), -EINVAL);
    assert_string_equal(b.p, "f\\ v\\,\\=x");
    buf_free(&b);
    static const int64_t v[] = {
        0, 7, -7, 9, 10, 99, 100, -39, 84190, 1732480290000000000LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char got[24], want[24];
        snprintf(want, sizeof want, "%lld", (long long)v[i]);
        assert_int_equal(lp_format_int(got, v[i]), (int)strlen(want));
        assert_string_equal(got, want);
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 100000; i++) {
        int64_t x = (int64_t)xorshift64(&seed) >> (xorshift64(&seed) % 64);
        char got[24], want[24];
        snprintf(want, sizeof want, "%lld", (long long)x);
        lp_format_int(got, x);
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brief_schema),
        cmocka_unit_test(test_no_tags_and_timestamp),
        cmocka_unit_test(test_field_types),
        cmocka_unit_test(test_tag_sorting),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_escape_docs_examples),
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_name_rules),
        cmocka_unit_test(test_parse_known),
        cmocka_unit_test(test_parse_roundtrip_random),
        cmocka_unit_test(test_format_known),
        cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_format_random_bits),
        cmocka_unit_test(test_format_random_decimals),
        cmocka_unit_test(test_series_equals_encode),
        cmocka_unit_test(test_append_key_and_format_int),
    };
    return cmocka_run_group_tests_name("unit_lineproto", tests, NULL, NULL);
}
