/*
 * test_addr.c — unit tests of the two address helpers the daemon quotes in its errors:
 * util_redact_url() (src/util.c: no credentials in a message, malformed URLs included) and
 * metrics_check_addr() (src/metrics.c: the --metrics ADDR:PORT spec).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "util.h"

static void test_redact(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"http://user:secret@db:8086", "http://***@db:8086"},
        {"htp://user:secret@db:8086/x", "htp://***@db:8086/x"},
        {"http//user:secret@db", "http//***@db"},
        {"user:secret@db", "***@db"},
        {"mqtt://u:p@ss@broker", "mqtt://***@broker"}, /* an unescaped '@' in the password */
        {"http://db:8086", "http://db:8086"},
        {"none", "none"},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[128];
        assert_string_equal(util_redact_url(cases[i].in, out, sizeof out), cases[i].out);
    }
    /* Truncation keeps the terminator and never shows more than the redacted text. */
    char small[12];
    util_redact_url("http://user:secret@db:8086", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(strstr(small, "secret"));
}

static void test_metrics_addr(void **state)
{
    (void)state;
    char err[256];
    const char *good[] = {"127.0.0.1:9108", "[::1]:9108", "0.0.0.0:1", "localhost:65535"};
    const char *bad[] = {"",
                         "9108",
                         ":9108",
                         "127.0.0.1:",
                         "1.2.3.4:0",
                         "1.2.3.4:65536",
                         "1.2.3.4:9x",
                         "::1:9108",
                         "[::1]9108",
                         "[::1:9108",
                         "no such host.invalid:9108"};
    for (size_t i = 0; i < ARRAY_LEN(good); i++)
        assert_int_equal(metrics_check_addr(good[i], err, sizeof err), 0);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(metrics_check_addr(bad[i], err, sizeof err), -22 /* -EINVAL */);
        assert_non_null(strstr(err, "metrics:"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_metrics_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
