/*
 * test_extract.c — unit tests of the line cleaner / object locator (src/extract.c), plus the
 * whole framing pipeline (framer -> extract_clean -> extract_object) on the sample
 * session (tests/data) and on a few MB of random bytes.
 *
 * unit_extract         : cleaning and locating cases, one by one
 * unit_sample_session  : tests/data/probe-rs-session.log must yield exactly the lines of
 *                        probe-rs-session.expected.jsonl, in order, byte for byte
 * unit_extract_fuzz    : random bytes (fixed seed) through framer + extract; every invariant
 *                        of frame.h / extract.h is checked (run under ASan by the suite)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "extract.h"
#include "frame.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Clean a copy of `in` (n bytes) and compare with `want`. */
static void expect_clean_n(const char *in, size_t n, const char *want, size_t wn)
{
    char *line = malloc(n + 1);
    assert_non_null(line);
    memcpy(line, in, n);
    line[n] = '#';
    size_t got = extract_clean(line, n);
    if (got != wn || memcmp(line, want, wn) != 0)
        fail_msg("clean: got %zu bytes \"%.*s\", want %zu bytes \"%.*s\"", got, (int)got, line, wn,
                 (int)wn, want);
    assert_int_equal(line[n], '#'); /* never writes past the input */
    free(line);
}

#define expect_clean(in, want) expect_clean_n(in, sizeof(in) - 1, want, sizeof(want) - 1)

/* extract_object on a string; `want` is the object text, or NULL with the expected result. */
static void expect_object(const char *in, enum extract_result res, const char *want)
{
    size_t off = 99, olen = 99, len = strlen(in);
    enum extract_result r = extract_object(in, len, &off, &olen);
    if (r != res)
        fail_msg("extract_object(\"%s\") = %d, want %d", in, (int)r, (int)res);
    if (res == EXTRACT_NONE) {
        assert_int_equal(off, 0);
        assert_int_equal(olen, 0);
        return;
    }
    if (res == EXTRACT_UNTERMINATED)
        assert_int_equal(off + olen, len);
    if (olen != strlen(want) || memcmp(in + off, want, olen) != 0)
        fail_msg("extract_object(\"%s\") -> \"%.*s\", want \"%s\"", in, (int)olen, in + off, want);
}

/* clean + extract, the way the source pipeline uses it; returns the object or "" */
static const char *pipeline(char *line, size_t len, enum extract_result *res)
{
    static char out[512]; /* test-local scratch, single-threaded */
    size_t off, olen;
    len = extract_clean(line, len);
    *res = extract_object(line, len, &off, &olen);
    if (*res != EXTRACT_OK || olen >= sizeof out)
        return "";
    memcpy(out, line + off, olen);
    out[olen] = '\0';
    return out;
}

/* ------------------------------------------------------------------------------------ */
/* extract_clean                                                                        */
/* ------------------------------------------------------------------------------------ */

static void test_clean_cr(void **state)
{
    (void)state;
    expect_clean("abc\r", "abc");
    expect_clean("\r\r", "");
    expect_clean("", "");
    /* a progress bar redrawn with '\r' and then a log line on the same physical line */
    expect_clean("  50%\r 100%\rINFO  done\r", "  50% 100%INFO  done");
    expect_clean("{\"a\":\r1}", "{\"a\":1}");
}

static void test_clean_csi(void **state)
{
    (void)state;
    expect_clean("\x1b[32mINFO \x1b[0m JSON", "INFO  JSON");
    expect_clean("\x1b[1;31;40mred\x1b[m", "red");
    expect_clean("\x1b[2K\x1b[1Gline", "line");
    expect_clean("\x1b[?25lhidden\x1b[?25h", "hidden");
    expect_clean("a\x1b[ q b", "a b"); /* intermediate byte ' ' then final 'q' */
    /* interrupted by a byte that cannot be in a CSI: sequence ends, the byte stays */
    expect_clean("a\x1b[12\x01x", "a\x01x");
    expect_clean("a\x1b[12\x1b[0mb", "ab"); /* interrupted by another ESC sequence */
    /* cut off by the end of the line: the rest is dropped */
    expect_clean("abc\x1b[", "abc");
    expect_clean("abc\x1b[1;3", "abc");
}

static void test_clean_osc_and_two_byte(void **state)
{
    (void)state;
    expect_clean("\x1b]0;title\x07text", "text");
    expect_clean("\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\ end", "link end");
    expect_clean("\x1b]0;a\x1b[b\x07z", "z"); /* ESC inside OSC that is not ST */
    expect_clean("keep\x1b]0;never closed {\"a\":1}", "keep");
    expect_clean("\x1b(Bplain\x1b"
                 "7x\x1b"
                 "8",
                 "plainx");
    expect_clean("ab\x1b", "ab"); /* lone ESC at the end */
    expect_clean("\x1b", "");
    expect_clean("a\x1b\x1b"
                 "b",
                 "ab"); /* ESC ESC is a two-byte sequence */
}

static void test_clean_trailing(void **state)
{
    (void)state;
    expect_clean("{\"a\":1}\\n", "{\"a\":1}");
    expect_clean("{\"a\":1}\\n   ", "{\"a\":1}");
    expect_clean("{\"a\":1} \t\\n\t ", "{\"a\":1}");
    expect_clean("{\"a\":1}\\n\r", "{\"a\":1}");
    expect_clean("{\"a\":1}\\n\x1b[0m", "{\"a\":1}");
    expect_clean("x\\n\\n", "x\\n"); /* exactly one literal \n is the firmware bug */
    expect_clean("{\"a\":1}\\n (src/main.rs:573)", "{\"a\":1}\\n (src/main.rs:573)");
    expect_clean("  leading kept  ", "  leading kept");
    expect_clean("\\n", "");
    expect_clean("n", "n");
    expect_clean("\\", "\\");
    expect_clean("a\\\\n", "a\\"); /* "\\n" at the end is stripped whatever precedes it */

    /* "the byte at that index is not touched" */
    char line[] = "abc \\n";
    assert_int_equal(extract_clean(line, 6), 3);
    assert_memory_equal(line, "abc \\n", 6);
}

static void test_clean_nul(void **state)
{
    (void)state;
    static const char in[] = "a\0b\r\0\x1b[0mc\0";
    static const char want[] = "a\0b\0c\0";
    expect_clean_n(in, sizeof in - 1, want, sizeof want - 1);
}

/* ------------------------------------------------------------------------------------ */
/* extract_object                                                                       */
/* ------------------------------------------------------------------------------------ */

static void test_object_basic(void **state)
{
    (void)state;
    expect_object("{\"a\":1}", EXTRACT_OK, "{\"a\":1}");
    expect_object("prefix {\"a\":1} suffix", EXTRACT_OK, "{\"a\":1}");
    expect_object("{}", EXTRACT_OK, "{}");
    expect_object("x {  } y", EXTRACT_OK, "{  }");
    expect_object("x { \t\"k\" : 1 }", EXTRACT_OK, "{ \t\"k\" : 1 }");
    expect_object("{\"a\":{\"b\":{\"c\":{}}},\"d\":[{\"e\":1}]}z", EXTRACT_OK,
                  "{\"a\":{\"b\":{\"c\":{}}},\"d\":[{\"e\":1}]}");
    expect_object("{\"a\":1}{\"b\":2}", EXTRACT_OK, "{\"a\":1}"); /* the first one */
    expect_object("", EXTRACT_NONE, NULL);
    expect_object("INFO  AT+BAND=915000000 -> +OK", EXTRACT_NONE, NULL);
    expect_object("} stray close {", EXTRACT_NONE, NULL);
    expect_object("ends with {", EXTRACT_NONE, NULL);
    expect_object("ends with {  ", EXTRACT_NONE, NULL);
}

static void test_object_non_candidates(void **state)
{
    (void)state;
    expect_object("INFO  heartbeat {uptime_ms=907000}", EXTRACT_NONE, NULL);
    expect_object("{1,2} {x} { a } {{", EXTRACT_NONE, NULL);
    expect_object("heartbeat {uptime_ms=1} JSON: {\"ts\":1}", EXTRACT_OK, "{\"ts\":1}");
    /* '{' '{' '"': the outer one is not a candidate, the inner one is */
    expect_object("{{\"a\":1}}", EXTRACT_OK, "{\"a\":1}");
}

static void test_object_strings(void **state)
{
    (void)state;
    expect_object("{\"msg\":\"}}}{{{\"} tail", EXTRACT_OK, "{\"msg\":\"}}}{{{\"}");
    expect_object("{\"m\":\"say \\\"}\\\" ok\",\"n\":1}x", EXTRACT_OK,
                  "{\"m\":\"say \\\"}\\\" ok\",\"n\":1}");
    /* escaped backslash right before the closing quote */
    expect_object("{\"p\":\"C:\\\\\"}x", EXTRACT_OK, "{\"p\":\"C:\\\\\"}");
    expect_object("{\"p\":\"\\\\\\\"}\"}x", EXTRACT_OK, "{\"p\":\"\\\\\\\"}\"}");
    expect_object("{\"u\":\"\\u007d\"}", EXTRACT_OK, "{\"u\":\"\\u007d\"}");
    expect_object("{\"k}\":1}", EXTRACT_OK, "{\"k}\":1}"); /* brace in a key */
}

static void test_object_unterminated(void **state)
{
    (void)state;
    /* cut by RTT overflow after complete inner objects: never salvage them */
    expect_object("JSON: {\"ts\":1,\"n1\":{\"t\":24.0},\"n2\":{\"t\":23.", EXTRACT_UNTERMINATED,
                  "{\"ts\":1,\"n1\":{\"t\":24.0},\"n2\":{\"t\":23.");
    expect_object("{\"ts\":14385\\n (main.rs:573)", EXTRACT_UNTERMINATED,
                  "{\"ts\":14385\\n (main.rs:573)");
    expect_object("{\"a\":\"never closed } }", EXTRACT_UNTERMINATED, "{\"a\":\"never closed } }");
    expect_object("{\"a\":\"x\\", EXTRACT_UNTERMINATED, "{\"a\":\"x\\"); /* escape at end */
    expect_object("{\"a\":{}", EXTRACT_UNTERMINATED, "{\"a\":{}");
    expect_object("{\"", EXTRACT_UNTERMINATED, "{\"");
    /* an unterminated first candidate hides later complete objects too */
    expect_object("{\"a\":\"} {\"b\":1}", EXTRACT_UNTERMINATED, "{\"a\":\"} {\"b\":1}");
}

/* The four line shapes of a probe-rs session, cleaned then located. */
static void test_pipeline_shapes(void **state)
{
    (void)state;
    const char *obj = "{\"ts\":12000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},"
                      "\"n2\":{\"t\":26.8,\"h\":48.8},\"sig\":{\"rssi\":-39,\"snr\":13},"
                      "\"sts\":{\"rx\":1,\"err\":0}}";
    const char *fmt[] = {
        "[INFO] JSON sent via VCP: %s\\n (wk5_gateway_firmware "
        "wk5-gateway-firmware/src/main.rs:573)",
        "INFO  JSON sent via VCP: %s\\n",
        "\x1b[32mINFO \x1b[0m JSON sent via VCP: %s\\n",
        "12.500000 INFO  JSON sent via VCP: %s\\n\r",
        "%s",
    };
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        char line[512];
        int n = snprintf(line, sizeof line, fmt[i], obj);
        enum extract_result r;
        const char *got = pipeline(line, (size_t)n, &r);
        assert_int_equal(r, EXTRACT_OK);
        assert_string_equal(got, obj);
    }
    char other[] = "\xe2\x94\x94\xe2\x94\x80 node2_firmware::app::uart4_handler @ src/main.rs:573";
    enum extract_result r;
    pipeline(other, sizeof other - 1, &r);
    assert_int_equal(r, EXTRACT_NONE);
}

/* ------------------------------------------------------------------------------------ */
/* Sample session                                                                       */
/* ------------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    struct buf b = BUF_INIT;
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
        assert_int_equal(buf_append(&b, tmp, r), 0);
    fclose(f);
    assert_non_null(b.p);
    *n = b.len;
    return b.p;
}

struct session {
    struct buf objs; /* every extracted object followed by '\n' */
    size_t ok, unterminated, json_lines_missed;
};

static void session_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct session *s = ud;
    (void)line_no;
    assert_false(flags & FRAME_OVERLONG); /* the sample has no line near 4096 bytes */
    int telemetry = memmem(line, len, "telemetry {", 11) != NULL;
    size_t off, olen;
    len = extract_clean(line, len);
    switch (extract_object(line, len, &off, &olen)) {
    case EXTRACT_OK:
        assert_int_equal(buf_append(&s->objs, line + off, olen), 0);
        assert_int_equal(buf_append_char(&s->objs, '\n'), 0);
        s->ok++;
        break;
    case EXTRACT_UNTERMINATED:
        s->unterminated++;
        break;
    case EXTRACT_NONE:
        s->json_lines_missed += telemetry; /* a telemetry line must never look like text */
        break;
    }
}

static void run_session(const char *log, size_t n, size_t chunk, struct session *s)
{
    struct framer f;
    assert_int_equal(framer_init(&f, FRAME_DEFAULT_MAX_LINE), 0);
    for (size_t pos = 0; pos < n; pos += chunk)
        framer_feed(&f, log + pos, n - pos < chunk ? n - pos : chunk, session_cb, s);
    framer_finish(&f, session_cb, s);
    framer_free(&f);
}

static void test_sample_session(void **state)
{
    (void)state;
    size_t nlog, nexp;
    char *log = slurp(UNIT_DATA_DIR "/probe-rs-session.log", &nlog);
    char *exp = slurp(UNIT_DATA_DIR "/probe-rs-session.expected.jsonl", &nexp);

    size_t chunks[] = {nlog, 4096, 7, 1};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        struct session s = {BUF_INIT, 0, 0, 0};
        run_session(log, nlog, chunks[i], &s);
        /* exact, byte-for-byte, in order; the expected file ends every line with '\n' */
        if (s.objs.len != nexp || memcmp(s.objs.p, exp, nexp) != 0) {
            size_t k = 0;
            while (k < s.objs.len && k < nexp && s.objs.p[k] == exp[k])
                k++;
            fail_msg("chunk %zu: extracted %zu bytes, expected %zu; first difference at byte %zu",
                     chunks[i], s.objs.len, nexp, k);
        }
        assert_int_equal(s.json_lines_missed, 0);
        if (i == 0)
            print_message("sample session: %zu objects, %zu unterminated (cut) lines\n", s.ok,
                          s.unterminated);
        buf_free(&s.objs);
    }
    free(log);
    free(exp);
}

/* ------------------------------------------------------------------------------------ */
/* Robustness: random bytes through framer + extract                                    */
/* ------------------------------------------------------------------------------------ */

#define FUZZ_MAX_LINE 64

struct fuzz {
    uint64_t lines, ok, unterminated, none, overlong;
};

static void fuzz_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct fuzz *z = ud;
    assert_true(line_no == z->lines + 1);
    z->lines = line_no;
    assert_true(len <= FUZZ_MAX_LINE);
    assert_true(!(flags & FRAME_OVERLONG) || len == FUZZ_MAX_LINE);
    assert_null(memchr(line, '\n', len));
    z->overlong += (flags & FRAME_OVERLONG) != 0;

    size_t clen = extract_clean(line, len);
    assert_true(clen <= len);
    assert_null(memchr(line, '\r', clen));
    assert_null(memchr(line, '\x1b', clen));
    assert_true(clen == 0 || (line[clen - 1] != ' ' && line[clen - 1] != '\t'));

    size_t off = 12345, olen = 12345;
    switch (extract_object(line, clen, &off, &olen)) {
    case EXTRACT_OK: {
        assert_true(off < clen && olen >= 2 && off + olen <= clen);
        assert_int_equal(line[off], '{');
        assert_int_equal(line[off + olen - 1], '}');
        /* the object located alone is the same object */
        size_t off2, olen2;
        assert_int_equal(extract_object(line + off, olen, &off2, &olen2), EXTRACT_OK);
        assert_int_equal(off2, 0);
        assert_int_equal(olen2, olen);
        /* and cut one byte short it is no longer complete ("{}" cut is just text) */
        enum extract_result r2 = extract_object(line + off, olen - 1, &off2, &olen2);
        assert_true(r2 != EXTRACT_OK);
        assert_true(r2 == EXTRACT_NONE || off2 == 0);
        z->ok++;
        break;
    }
    case EXTRACT_UNTERMINATED:
        assert_true(off < clen && off + olen == clen);
        assert_int_equal(line[off], '{');
        z->unterminated++;
        break;
    case EXTRACT_NONE:
        assert_int_equal(off, 0);
        assert_int_equal(olen, 0);
        z->none++;
        break;
    }
}

static void test_fuzz(void **state)
{
    (void)state;
    /* bytes biased toward the ones the code cares about, so every branch is exercised */
    static const char alphabet[] = "{{{}}}\"\"\"\\\\\x1b\x1b[]]\x07\r \t\0:,an";
    enum { N = 4 << 20 };
    char *data = malloc(N);
    assert_non_null(data);
    uint32_t s = 0xC0FFEEu;
    for (size_t i = 0; i < N; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        if ((s >> 24) < 6) /* lines of ~40 bytes: some exceed FUZZ_MAX_LINE */
            data[i] = '\n';
        else
            data[i] = (s >> 24) < 200 ? alphabet[(s >> 8) % (sizeof alphabet - 1)] : (char)s;
    }
    struct fuzz z = {0, 0, 0, 0, 0};
    struct framer f;
    assert_int_equal(framer_init(&f, FUZZ_MAX_LINE), 0);
    for (size_t pos = 0; pos < N;) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        size_t c = 1 + s % 1500;
        if (c > N - pos)
            c = N - pos;
        framer_feed(&f, data + pos, c, fuzz_cb, &z);
        pos += c;
    }
    framer_finish(&f, fuzz_cb, &z);
    framer_free(&f);
    free(data);
    print_message("fuzz: %llu lines (%llu overlong), %llu ok, %llu unterminated, %llu none\n",
                  (unsigned long long)z.lines, (unsigned long long)z.overlong,
                  (unsigned long long)z.ok, (unsigned long long)z.unterminated,
                  (unsigned long long)z.none);
    /* the input must actually have exercised all three outcomes */
    assert_true(z.ok > 100 && z.unterminated > 100 && z.none > 100 && z.overlong > 100);
}

/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_clean_cr),
        cmocka_unit_test(test_clean_csi),
        cmocka_unit_test(test_clean_osc_and_two_byte),
        cmocka_unit_test(test_clean_trailing),
        cmocka_unit_test(test_clean_nul),
        cmocka_unit_test(test_object_basic),
        cmocka_unit_test(test_object_non_candidates),
        cmocka_unit_test(test_object_strings),
        cmocka_unit_test(test_object_unterminated),
        cmocka_unit_test(test_pipeline_shapes),
    };
    const struct CMUnitTest session[] = {cmocka_unit_test(test_sample_session)};
    const struct CMUnitTest fuzz[] = {cmocka_unit_test(test_fuzz)};

    const char *which = argc > 1 ? argv[1] : "unit";
    if (strcmp(which, "session") == 0)
        return cmocka_run_group_tests_name("unit_sample_session", session, NULL, NULL);
    if (strcmp(which, "fuzz") == 0)
        return cmocka_run_group_tests_name("unit_extract_fuzz", fuzz, NULL, NULL);
    return cmocka_run_group_tests_name("unit_extract", unit, NULL, NULL);
}
