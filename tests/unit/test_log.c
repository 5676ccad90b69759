/*
 * test_log.c — unit tests of the log escaper and the one-event-one-line rule (src/log.c).
 *
 * log_quote() is what keeps outside text (rule errors, gw.log text, topics, file names) from
 * forging log lines: every control character, C1 control, U+2028/U+2029 and byte that is not
 * well-formed UTF-8 must come out escaped, valid UTF-8 unchanged. log_emit() must write one
 * line per event whatever its fields hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static void q(const char *in, size_t n, const char *want)
{
    char out[256];
    log_quote(out, sizeof out, in, n);
    if (strcmp(out, want) != 0)
        fail_msg("log_quote: got %s, want %s", out, want);
}

static void test_quote(void **unused)
{
    (void)unused;
    q("plain", (size_t)-1, "\"plain\"");
    q("a \"b\" \\c", (size_t)-1, "\"a \\\"b\\\" \\\\c\"");
    q("x\ny\rz\tw", (size_t)-1, "\"x\\ny\\rz\\tw\"");
    q("\x01\x1b[31m\x7f", (size_t)-1, "\"\\x01\\x1b[31m\\x7f\"");
    q("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", (size_t)-1,
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""); /* valid UTF-8 kept */
    q("\xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9|\xc2\x9f", (size_t)-1,
      "\"\\u0085|\\u2028|\\u2029|\\u009f\"");                      /* C1, line/para separators */
    q("\xff\xfe", (size_t)-1, "\"\\xff\\xfe\"");                   /* not UTF-8 */
    q("\xc0\xaf", (size_t)-1, "\"\\xc0\\xaf\"");                   /* overlong '/' */
    q("\xed\xa0\x80", (size_t)-1, "\"\\xed\\xa0\\x80\"");          /* surrogate */
    q("\xf4\x90\x80\x80", (size_t)-1, "\"\\xf4\\x90\\x80\\x80\""); /* above U+10FFFF */
    q("\xe2\x82", (size_t)-1, "\"\\xe2\\x82\"");                   /* cut sequence */
    q("\xe2\x82\xac", 2, "\"\\xe2\\x82\"");                        /* cut by n */
    q("ab\0cd", 5, "\"ab\"");                                      /* a NUL ends it */
    q(NULL, (size_t)-1, "\"\"");
    char small[12];
    log_quote(small, sizeof small, "0123456789abcdef", (size_t)-1);
    assert_string_equal(small, "\"012345...\"");
    log_quote(small, sizeof small, "\n\n\n\n", (size_t)-1); /* escapes are never split */
    assert_string_equal(small, "\"\\n\\n\\n...\"");
    assert_string_equal(log_q("a\nb"), "\"a\\nb\"");
}

/* Whatever a field holds, one event is one line: the quoted value has no raw newline, and the
 * backstop turns a control character passed unquoted into '?'. */
static void test_one_line_per_event(void **unused)
{
    (void)unused;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    const char *evil = "boom\nts=2026-01-01T00:00:00.000Z level=error event=forged\r\x1b[2K";
    log_error("rule_error", "error=%s", log_q(evil));
    log_error("unquoted", "error=%s", evil);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    if (lines != 2)
        fail_msg("2 events gave %d lines:\n%s", lines, buf);
    assert_non_null(strstr(buf, "error=\"boom\\nts=2026-01-01T00:00:00.000Z level=error "
                                "event=forged\\r\\x1b[2K\"\n"));
    assert_non_null(strstr(buf, "error=boom?ts=2026"));
    assert_null(strchr(buf, '\r'));
    assert_null(strchr(buf, '\x1b'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_one_line_per_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
