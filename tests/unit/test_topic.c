/*
 * test_topic.c — unit tests of the MQTT topic-name validator (src/topic.c).
 *
 * Every rule of topic.h on both sides of its boundary: length 1 and 65535 accepted, 0 and
 * 65536 refused; each refused code point class (controls, DEL and C1, non-characters of the
 * BMP and of other planes, NUL) against its accepted neighbours; malformed UTF-8 (overlong,
 * surrogate, truncated, beyond U+10FFFF); wildcards; and the reasons handed back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "topic.h"

static void ok(const char *t)
{
    if (topic_check(t, strlen(t)) != 0)
        fail_msg("refused: %s (%s)", t, topic_problem(t, strlen(t), NULL, 0));
}

static void bad(const char *t, size_t len, const char *needle)
{
    char why[96];
    const char *p = topic_problem(t, len, why, sizeof why);
    if (!p)
        fail_msg("accepted: %.*s", (int)len, t);
    if (needle && !strstr(p, needle))
        fail_msg("%.*s: reason \"%s\" lacks \"%s\"", (int)len, t, p, needle);
    assert_int_equal(topic_check(t, len), -EINVAL);
}

static void test_accepts(void **state)
{
    (void)state;
    ok("a");
    ok("iiot/node1/temperature");
    ok("/");
    ok("a//b/");
    ok("$SYS-like/but/published");
    ok("caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x9a\x80"); /* é, €, rocket */
    ok("\xc2\xa0");                                  /* U+00A0, first after the C1 block */
    ok("\x7e");                                      /* '~', before DEL */
    ok("\x20");                                      /* space, after the controls */
    ok("\xef\xb7\x8f");                              /* U+FDCF, before the non-characters */
    ok("\xef\xb7\xb0");                              /* U+FDF0, after them */
    ok("\xef\xbf\xbd");                              /* U+FFFD */
    ok("\xf4\x8f\xbf\xbd");                          /* U+10FFFD */
}

static void test_length(void **state)
{
    (void)state;
    char *t = malloc(65536);
    assert_non_null(t);
    memset(t, 'a', 65536);
    assert_int_equal(topic_check(t, 65535), 0);
    bad(t, 65536, "longer than 65535");
    bad("", 0, "empty");
    assert_int_equal(topic_check(NULL, 3), -EINVAL);
    free(t);
}

static void test_code_points(void **state)
{
    (void)state;
    bad("a\tb", 3, "control character (U+0009)");
    bad("a\nb", 3, "U+000A");
    bad("a\rb", 3, "U+000D");
    bad("\x01", 1, "U+0001");
    bad("\x1f", 1, "U+001F");
    bad("a\x7f", 2, "U+007F");
    bad("a\xc2\x80", 3, "U+0080");
    bad("a\xc2\x85", 3, "U+0085");
    bad("a\xc2\x9f", 3, "U+009F");
    bad("a\0b", 3, "NUL");
    bad("\xef\xb7\x90", 3, "non-character (U+FDD0)");
    bad("\xef\xb7\xaf", 3, "U+FDEF");
    bad("\xef\xbf\xbe", 3, "U+FFFE");
    bad("\xef\xbf\xbf", 3, "U+FFFF");
    bad("\xf0\x9f\xbf\xbe", 4, "U+1FFFE");
    bad("\xf4\x8f\xbf\xbf", 4, "U+10FFFF");
    /* without a buffer the reason is the static phrase */
    assert_string_equal(topic_problem("a\tb", 3, NULL, 0), "contains a control character");
}

static void test_utf8(void **state)
{
    (void)state;
    bad("\xff", 1, "UTF-8");
    bad("\xc0\xaf", 2, "UTF-8");         /* overlong '/' */
    bad("\xe0\x80\xaf", 3, "UTF-8");     /* overlong */
    bad("\xed\xa0\x80", 3, "UTF-8");     /* surrogate U+D800 */
    bad("\xf4\x90\x80\x80", 4, "UTF-8"); /* U+110000 */
    bad("caf\xc3", 4, "UTF-8");          /* truncated */
    bad("\xe2\x82", 2, "UTF-8");
    bad("\x80", 1, "UTF-8"); /* lone continuation byte */
}

static void test_wildcards(void **state)
{
    (void)state;
    bad("a/+/b", 5, "wildcard");
    bad("a/#", 3, "wildcard");
    bad("#", 1, "wildcard");
    bad("a+b", 3, "wildcard");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),     cmocka_unit_test(test_length),
        cmocka_unit_test(test_code_points), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_wildcards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
