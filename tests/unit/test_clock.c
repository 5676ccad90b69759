/*
 * test_clock.c — unit tests of src/clock.c: wall and virtual clocks, ISO-8601 anchors, the
 * packet field and defmt stamp readers, and the uptime -> virtual time track (gaps kept,
 * reboots survived, never backwards).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "util.h"

#define S  1000000000LL
#define MS 1000000LL

static void test_wall_and_virtual(void **state)
{
    (void)state;
    struct clock c;
    clock_init_wall(&c);
    assert_false(clock_is_virtual(&c));
    int64_t w = util_now_ns();
    assert_true(clock_now_ns(&c) >= w);
    assert_int_equal(clock_set(&c, 5), -EINVAL);
    assert_true(clock_now_ns(NULL) >= w);

    clock_init_virtual(&c, 1000 * S);
    assert_true(clock_is_virtual(&c));
    assert_int_equal(clock_now_ns(&c), 1000 * S);
    assert_int_equal(clock_advance(&c, 1001 * S), 1001 * S);
    assert_int_equal(clock_advance(&c, 999 * S), 1001 * S); /* never backwards */
    assert_int_equal(clock_set(&c, 10 * S), 0);             /* a test may step back */
    assert_int_equal(clock_now_ns(&c), 10 * S);
}

static void test_parse_time(void **state)
{
    (void)state;
    int64_t t;
    assert_int_equal(clock_parse_time("2026-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 1767225600LL * S);
    assert_int_equal(clock_parse_time("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(clock_parse_time("2024-02-29 12:30:15.25Z", &t), 0);
    assert_int_equal(t, 1709209815LL * S + 250 * MS);
    assert_int_equal(clock_parse_time("2026-01-01T01:00:00+01:00", &t), 0);
    assert_int_equal(t, 1767225600LL * S);
    assert_int_equal(clock_parse_time("2025-12-31T23:00:00-0100", &t), 0);
    assert_int_equal(t, 1767225600LL * S);
    assert_int_equal(clock_parse_time("@1767225600.5", &t), 0);
    assert_int_equal(t, 1767225600LL * S + 500 * MS);
    const char *bad[] = {"2026-01-01T00:00:00",
                         "2026-01-01",
                         "2026-13-01T00:00:00Z",
                         "2026-01-01T00:00:00Zx",
                         "yesterday",
                         "@",
                         "@x",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(clock_parse_time(bad[i], &t), -EINVAL);
    char out[40];
    clock_format(1767225600LL * S + 1500 * MS, out, sizeof out);
    assert_string_equal(out, "2026-01-01T00:00:01.500Z");
}

static int field(const char *json, const char *path, int64_t unit, int64_t *out)
{
    return clock_field_ns(json, strlen(json), path, unit, out);
}

static void test_field(void **state)
{
    (void)state;
    int64_t v;
    const char *p =
        "{\"id\":\"N2\",\"n1\":{\"ts\":5,\"t\":23.6},\"s\":\"\\\"ts\\\":9\",\"ts\":3500,"
        "\"hdr\":{\"up\":{\"s\":1.5}}}";
    assert_int_equal(field(p, "ts", MS, &v), 0);
    assert_int_equal(v, 3500 * MS); /* the top-level key, not n1.ts or the string's text */
    assert_int_equal(field(p, "n1.ts", S, &v), 0);
    assert_int_equal(v, 5 * S);
    assert_int_equal(field(p, "hdr.up.s", S, &v), 0);
    assert_int_equal(v, 1500 * MS);
    assert_int_equal(field(p, "up", MS, &v), -ENOENT);
    assert_int_equal(field(p, "id.x", MS, &v), -ENOENT);
    assert_int_equal(field(p, "id", MS, &v), -EINVAL);
    assert_int_equal(field("{\"ts\":-1}", "ts", MS, &v), -EINVAL);
    assert_int_equal(field("{\"ts\":1e300}", "ts", MS, &v), -EINVAL);
    assert_int_equal(field("{\"ts\":null}", "ts", MS, &v), -EINVAL);
    assert_int_equal(field("{\"ts\":4611686018427387904}", "ts", 1, &v), -EINVAL); /* 2^62 */
    assert_int_equal(field("{\"ts\":1e17}", "ts", MS, &v), -EINVAL);
    assert_int_equal(field("[1]", "ts", MS, &v), -EINVAL);
    assert_int_equal(field("{\"ts\":12", "ts", MS, &v), 0); /* cut after the number: still 12 */
    assert_int_equal(field("{\"ts\"", "ts", MS, &v), -ENOENT);
    assert_int_equal(field("{ \"a\" : [1,{\"ts\":2}] , \"ts\" : 7 }", "ts", 1000, &v), 0);
    assert_int_equal(v, 7000);
}

static void test_log_stamp(void **state)
{
    (void)state;
    int64_t v;
    const char *l = "53.305000 INFO  telemetry {\"ts\":53000}";
    assert_int_equal(clock_log_stamp_ns(l, strlen(l), &v), 0);
    assert_int_equal(v, 53 * S + 305 * MS);
    const char *no[] = {"INFO  telemetry {}",  "53 INFO", "53. INFO", "53.1", "x53.1 INFO",
                        "1234567890123.5 INFO"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_int_equal(clock_log_stamp_ns(no[i], strlen(no[i]), &v), -ENOENT);
}

static void test_track(void **state)
{
    (void)state;
    struct clock_track t = {0};
    int64_t start = 1767225600LL * S;
    assert_int_equal(clock_track_map(&t, start, 3500 * MS), start);
    assert_int_equal(clock_track_map(&t, start, 13000 * MS), start + 9500 * MS);
    /* a five-minute silence stays five minutes */
    assert_int_equal(clock_track_map(&t, start, 313000 * MS), start + 309500 * MS);
    /* reboot: uptime 2 s -> 2 s after the last reading */
    assert_int_equal(clock_track_map(&t, start, 2000 * MS), start + 311500 * MS);
    assert_int_equal(t.reboots, 1);
    assert_int_equal(clock_track_map(&t, start, 12000 * MS), start + 321500 * MS);
    /* the same uptime twice: the same time */
    assert_int_equal(clock_track_map(&t, start, 12000 * MS), start + 321500 * MS);
    assert_int_equal(t.reboots, 1);

    /* a pathological capture saturates at CLOCK_MAX_NS instead of overflowing */
    struct clock_track big = {0};
    assert_int_equal(clock_track_map(&big, CLOCK_MAX_NS, 0), CLOCK_MAX_NS);
    assert_int_equal(clock_track_map(&big, CLOCK_MAX_NS, CLOCK_MAX_NS - 1), CLOCK_MAX_NS);
    assert_int_equal(clock_track_map(&big, CLOCK_MAX_NS, 5), CLOCK_MAX_NS); /* reboot */
    assert_int_equal(clock_track_map(&big, CLOCK_MAX_NS, CLOCK_MAX_NS - 1), CLOCK_MAX_NS);

    /* under a tolerance a small step back is jitter, not a reboot */
    struct clock_track j = {.tolerance_ns = 2 * S};
    assert_int_equal(clock_track_map(&j, start, 53305 * MS), start);
    assert_int_equal(clock_track_map(&j, start, 53000 * MS), start);
    assert_int_equal(clock_track_map(&j, start, 63000 * MS), start + 9695 * MS);
    assert_int_equal(j.reboots, 0);
    assert_int_equal(clock_track_map(&j, start, 1000 * MS), start + 10695 * MS);
    assert_int_equal(j.reboots, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_and_virtual),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_field),
        cmocka_unit_test(test_log_stamp),
        cmocka_unit_test(test_track),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
