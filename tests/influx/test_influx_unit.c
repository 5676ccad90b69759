/*
 * test_influx_unit.c — the InfluxDB sink's contract without a network: config validation,
 * line validation, batching by count and the pending counters, and freeing a sink that
 * still holds lines (ASan checks nothing leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "influx_test.h"
#include "log.h"

static void expect_einval(const struct influx_config *cfg)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct influx_sink *s = (struct influx_sink *)1;
    char err[128] = "";
    assert_int_equal(influx_sink_new(&s, loop, cfg, err, sizeof err), -EINVAL);
    assert_null(s);
    assert_true(strlen(err) > 0);
    ev_loop_destroy(loop);
}

static void test_config_validation(void **state)
{
    (void)state;
    struct influx_config ok2 = {.url = "http://127.0.0.1:1", .org = "o", .bucket = "b"};
    struct influx_config c;
    c = ok2, c.url = NULL, expect_einval(&c);
    c = ok2, c.url = "ftp://x", expect_einval(&c);
    c = ok2, c.api = 3, expect_einval(&c);
    c = ok2, c.bucket = NULL, expect_einval(&c);
    c = ok2, c.org = "", expect_einval(&c);
    c = ok2, c.api = 1, expect_einval(&c); /* v1 needs db */
    c = ok2, c.linger = -1, expect_einval(&c);
    c = ok2, c.timeout = -1, expect_einval(&c);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct influx_sink *s = NULL;
    assert_int_equal(influx_sink_new(&s, loop, &ok2, NULL, 0), 0);
    assert_non_null(s);
    influx_sink_free(s);
    struct influx_config v1 = {
        .url = "https://h/", .api = 1, .db = "d", .rp = "r p", .token = "u:p"};
    assert_int_equal(influx_sink_new(&s, loop, &v1, NULL, 0), 0);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

static void test_write_validation_and_counters(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* a port nobody listens on; the loop is never run, so nothing is sent */
    struct influx_config cfg = {
        .url = "http://127.0.0.1:1", .org = "o", .bucket = "b", .batch_lines = 3, .linger = 5};
    struct influx_sink *s = NULL;
    assert_int_equal(influx_sink_new(&s, loop, &cfg, NULL, 0), 0);
    assert_int_equal(influx_sink_write(s, "", 0, 1), -EINVAL);
    assert_int_equal(influx_sink_write(s, "a\nb", 3, 1), -EINVAL);
    assert_int_equal(influx_sink_write(s, NULL, 3, 1), -EINVAL);
    assert_int_equal(it_stats(s).lines, 0);

    size_t bytes = 0;
    const char *lines[] = {"m value=1", "m value=22", "m value=333", "m value=4444"};
    for (size_t i = 0; i < ARRAY_LEN(lines); i++) {
        /* only the first len bytes count: the rest must be ignored */
        assert_int_equal(influx_sink_write(s, lines[i], strlen(lines[i]), i), 0);
        bytes += strlen(lines[i]) + 1;
    }
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.lines, 4);
    assert_int_equal(st.pending_lines, 4);
    assert_int_equal(st.pending_bytes, bytes);
    assert_int_equal(st.lines_written, 0);
    assert_int_equal(st.batches, 0);
    assert_int_equal(influx_sink_pending(s), 4);
    /* partial length: the tail after len is not part of the line */
    assert_int_equal(influx_sink_write(s, "m value=5 trailing", 9, 9), 0);
    assert_int_equal(it_stats(s).pending_bytes, bytes + 10);
    influx_sink_flush(s);
    influx_sink_free(s); /* in flight + queued + current: all freed */
    ev_loop_destroy(loop);
}

int main(void)
{
    log_set_level(LL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_write_validation_and_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
