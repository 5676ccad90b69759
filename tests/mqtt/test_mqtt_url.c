/*
 * test_mqtt_url.c — unit tests for mqtt_parse_url(): schemes, default ports, user:pass@,
 * percent-escapes, IPv6 literals and the inputs it must reject with a message.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt.h"

/* ------------------------------------------------------------------------------------------
 * Accepted URLs
 * ---------------------------------------------------------------------------------------- */

struct good_case {
    const char *url;
    const char *host;
    int port;
    bool tls;
    const char *user;
    const char *pass;
};

static void test_good(void **state)
{
    (void)state;
    static const struct good_case cases[] = {
        {"mqtt://localhost", "localhost", 1883, false, NULL, NULL},
        {"mqtt://localhost/", "localhost", 1883, false, NULL, NULL},
        {"mqtts://broker.example.com", "broker.example.com", 8883, true, NULL, NULL},
        {"mqtt://127.0.0.1:1884", "127.0.0.1", 1884, false, NULL, NULL},
        {"mqtts://10.0.0.1:443", "10.0.0.1", 443, true, NULL, NULL},
        {"mqtt://u@h", "h", 1883, false, "u", NULL},
        {"mqtt://user:secret@host:1", "host", 1, false, "user", "secret"},
        {"mqtt://user:@host", "host", 1883, false, "user", ""},
        {"mqtt://us%40er:p%3Aa%2fss@host", "host", 1883, false, "us@er", "p:a/ss"},
        {"mqtt://user:p@ss@host", "host", 1883, false, "user", "p@ss"},
        {"mqtt://[::1]", "::1", 1883, false, NULL, NULL},
        {"mqtts://[::1]:8884", "::1", 8884, true, NULL, NULL},
        {"mqtt://a:b@[fe80::1:2]:65535/", "fe80::1:2", 65535, false, "a", "b"},
        {"mqtt://my-broker_1.local:1883", "my-broker_1.local", 1883, false, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct good_case *c = &cases[i];
        struct mqtt_config cfg;
        memset(&cfg, 0, sizeof cfg);
        char storage[256], err[128];
        int rc = mqtt_parse_url(c->url, &cfg, storage, sizeof storage, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: rc=%d err=%s", c->url, rc, err);
        assert_string_equal(cfg.host, c->host);
        assert_int_equal(cfg.port, c->port);
        assert_int_equal(cfg.tls, c->tls);
        if (c->user)
            assert_string_equal(cfg.username, c->user);
        else
            assert_null(cfg.username);
        if (c->pass)
            assert_string_equal(cfg.password, c->pass);
        else
            assert_null(cfg.password);
    }
}

/* ------------------------------------------------------------------------------------------
 * Rejected URLs: each must fail with -EINVAL and a message naming the problem
 * ---------------------------------------------------------------------------------------- */

struct bad_case {
    const char *url;
    const char *msg_part;
};

static void test_bad(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"", "scheme"},
        {"http://host", "scheme"},
        {"tcp://host:1883", "scheme"},
        {"MQTT://host", "scheme"},
        {"mqtt://", "missing host"},
        {"mqtt://:1883", "missing host"},
        {"mqtt://host:", "bad port"},
        {"mqtt://host:0", "out of range"},
        {"mqtt://host:65536", "out of range"},
        {"mqtt://host:123456", "bad port"},
        {"mqtt://host:12a", "number"},
        {"mqtt://host:-1", "number"},
        {"mqtt://host/topic", "no path"},
        {"mqtt://host?x=1", "no path"},
        {"mqtt://ho st", "no path"},
        {"mqtt://::1", "IPv6 address needs []"},
        {"mqtt://h*st", "bad character"},
        {"mqtt://[::1", "missing ']'"},
        {"mqtt://[]:1883", "empty IPv6"},
        {"mqtt://[::1]x", "':port'"},
        {"mqtt://[::g]", "IPv6"},
        {"mqtt://@host", "empty user"},
        {"mqtt://:pw@host", "empty user"},
        {"mqtt://u%zz@host", "escape"},
        {"mqtt://u%4@host", "escape"},
        {"mqtt://u%00@host", "escape"},
        {"mqtt://host:1883:1884", "too many ':'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mqtt_config cfg;
        memset(&cfg, 0, sizeof cfg);
        char storage[256], err[128];
        int rc = mqtt_parse_url(cases[i].url, &cfg, storage, sizeof storage, err, sizeof err);
        if (rc != -EINVAL)
            fail_msg("%s: expected -EINVAL, got %d", cases[i].url, rc);
        if (!strstr(err, cases[i].msg_part))
            fail_msg("%s: message '%s' lacks '%s'", cases[i].url, err, cases[i].msg_part);
    }
}

static void test_storage_too_small(void **state)
{
    (void)state;
    struct mqtt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char storage[8], err[128];
    assert_int_equal(
        mqtt_parse_url("mqtt://averylonghostname", &cfg, storage, sizeof storage, err, sizeof err),
        -EINVAL);
    assert_non_null(strstr(err, "too long"));
    assert_int_equal(
        mqtt_parse_url("mqtt://userlongname:pw@h", &cfg, storage, sizeof storage, err, sizeof err),
        -EINVAL);
    assert_int_equal(mqtt_parse_url("mqtt://h:1", &cfg, storage, sizeof storage, err, sizeof err),
                     0);
    assert_string_equal(cfg.host, "h");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_storage_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
