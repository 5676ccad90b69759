/*
 * test_rules_default.c — rules/default.lua against its documented output: exact MQTT topics,
 * payloads, QoS and retain flags, exact InfluxDB lines, node2 only when present, the
 * temperature alert with hysteresis and the offline alert driven by on_tick, and the whole
 * sample session.
 */
#include "rules_harness.h"

#define DEFAULT_RULE RULES_DIR "/default.lua"
#define SAMPLE                                                                                     \
    "{\"ts\":12000,\"id\":\"N2\",\"n1\":{\"t\":27.6,\"h\":54.1,\"g\":84190},\"n2\":{\"t\":26.8,"   \
    "\"h\":48.8},\"sig\":{\"rssi\":-39,\"snr\":13},\"sts\":{\"rx\":1,\"err\":0}}"
#define T0  1732480290000000000LL /* 2024-11-24T20:31:30Z */
#define SEC 1000000000LL

static char *pkt_with(char *out, size_t n, double t1, const char *n2)
{
    snprintf(out, n,
             "{\"ts\":1,\"id\":\"N2\",\"n1\":{\"t\":%.1f,\"h\":50.0,\"g\":1000},\"n2\":%s,"
             "\"sig\":{\"rssi\":-40,\"snr\":10},\"sts\":{\"rx\":1,\"err\":0}}",
             t1, n2);
    return out;
}

/* The 9 publishes and 9 points of the default rule's header comment, byte for byte. */
static void test_sample_packet(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);
    assert_int_equal(h_packet(&h, SAMPLE, T0), 0);
    struct cap *c = &h.cap;
    assert_int_equal(c->npub, 9);
    expect_pub(c, 0, "iiot/node1/temperature", "27.6", 1, true);
    expect_pub(c, 1, "iiot/node1/humidity", "54.1", 1, true);
    expect_pub(c, 2, "iiot/node1/gas_resistance", "84190", 1, true);
    expect_pub(c, 3, "iiot/node2/temperature", "26.8", 1, true);
    expect_pub(c, 4, "iiot/node2/humidity", "48.8", 1, true);
    expect_pub(c, 5, "iiot/signal/rssi", "-39", 1, false);
    expect_pub(c, 6, "iiot/signal/snr", "13", 1, false);
    expect_pub(c, 7, "iiot/stats/packets_received", "1", 1, false);
    expect_pub(c, 8, "iiot/stats/crc_errors", "0", 1, false);
    static const char *const lines[] = {
        "temperature,node=node1,unit=celsius value=27.6 1732480290000000000",
        "humidity,node=node1,unit=percent value=54.1 1732480290000000000",
        "gas_resistance,node=node1,unit=ohms value=84190 1732480290000000000",
        "temperature,node=node2,unit=celsius value=26.8 1732480290000000000",
        "humidity,node=node2,unit=percent value=48.8 1732480290000000000",
        "rssi,node=signal,unit=dbm value=-39 1732480290000000000",
        "snr,node=signal,unit=db value=13 1732480290000000000",
        "packets_received,node=stats value=1 1732480290000000000",
        "crc_errors,node=stats value=0 1732480290000000000",
    };
    assert_int_equal(c->nline, 9);
    for (size_t i = 0; i < 9; i++)
        assert_string_equal(c->line[i], lines[i]);
    struct rules_stats st;
    rules_get_stats(h.r, &st);
    assert_int_equal(st.publishes, 9);
    assert_int_equal(st.points, 9);
    assert_int_equal(st.errors, 0);
    h_close(&h);
}

/* 24.0 stays "24.0" on MQTT, and a custom prefix is honoured. */
static void test_float_stays_float_and_prefix(void **unused)
{
    (void)unused;
    struct harness h;
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, "plant7"), 0);
    assert_int_equal(h_packet(&h,
                              "{\"n1\":{\"t\":24.0,\"h\":55.0,\"g\":107016},\"n2\":{},"
                              "\"sig\":{\"rssi\":-41,\"snr\":10},\"sts\":{\"rx\":3,\"err\":0}}",
                              T0),
                     0);
    expect_pub(&h.cap, 0, "plant7/node1/temperature", "24.0", 1, true);
    expect_pub(&h.cap, 1, "plant7/node1/humidity", "55.0", 1, true);
    expect_pub(&h.cap, 2, "plant7/node1/gas_resistance", "107016", 1, true);
    assert_string_equal(h.cap.line[0], "temperature,node=node1,unit=celsius value=24 "
                                       "1732480290000000000");
    h_close(&h);
}

/* "n2":{} gives no node2 topic or point; a partial n2 gives only what is present. */
static void test_node2_only_when_present(void **unused)
{
    (void)unused;
    struct harness h;
    char pkt[512];
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 24.3, "{}"), T0), 0);
    assert_int_equal(h.cap.npub, 7);
    assert_int_equal(h.cap.nline, 7);
    for (size_t i = 0; i < h.cap.npub; i++)
        assert_null(strstr(h.cap.pub[i].topic, "node2"));
    for (size_t i = 0; i < h.cap.nline; i++)
        assert_null(strstr(h.cap.line[i], "node2"));
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 24.3, "{\"t\":23.6}"), T0), 0);
    assert_int_equal(h.cap.npub, 8);
    expect_pub(&h.cap, 3, "iiot/node2/temperature", "23.6", 1, true);
    expect_pub(&h.cap, 4, "iiot/signal/rssi", "-40", 1, false);
    h_close(&h);
}

static size_t count_topic(const struct cap *c, const char *topic)
{
    size_t n = 0;
    for (size_t i = 0; i < c->npub; i++)
        n += strcmp(c->pub[i].topic, topic) == 0;
    return n;
}

static const struct cap_pub *find_topic(const struct cap *c, const char *topic)
{
    for (size_t i = 0; i < c->npub; i++)
        if (strcmp(c->pub[i].topic, topic) == 0)
            return &c->pub[i];
    return NULL;
}

/* >= 35 fires once, stays quiet while between 33 and 35, "ok" once below 33. */
static void test_temperature_alert_hysteresis(void **unused)
{
    (void)unused;
    struct harness h;
    char pkt[512];
    const char *topic = "iiot/alerts/node1/temperature";
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);

    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 34.9, "{}"), T0), 0);
    assert_int_equal(count_topic(&h.cap, topic), 0);

    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 35.0, "{}"), T0 + 10 * SEC), 0);
    const struct cap_pub *p = find_topic(&h.cap, topic);
    assert_non_null(p);
    assert_string_equal(p->payload, "{\"node\":\"node1\",\"state\":\"firing\",\"threshold\":35.0,"
                                    "\"time\":\"2024-11-24T20:31:40Z\",\"value\":35.0}");
    assert_int_equal(p->qos, 1);
    assert_true(p->retain);
    cap_clear(&h.cap);

    /* Still hot, then in the hysteresis band: no new alert publish. */
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 36.2, "{}"), T0 + 20 * SEC), 0);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 33.0, "{}"), T0 + 30 * SEC), 0);
    assert_int_equal(count_topic(&h.cap, topic), 0);

    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 32.9, "{}"), T0 + 40 * SEC), 0);
    p = find_topic(&h.cap, topic);
    assert_non_null(p);
    assert_string_equal(p->payload, "{\"node\":\"node1\",\"state\":\"ok\",\"threshold\":33.0,"
                                    "\"time\":\"2024-11-24T20:32:10Z\",\"value\":32.9}");
    assert_true(p->retain);
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 30.0, "{}"), T0 + 50 * SEC), 0);
    assert_int_equal(count_topic(&h.cap, topic), 0); /* "ok" only once */

    /* node2 has its own alert. */
    assert_int_equal(
        h_packet(&h, pkt_with(pkt, sizeof pkt, 30.0, "{\"t\":35.5,\"h\":40.0}"), T0 + 60 * SEC), 0);
    p = find_topic(&h.cap, "iiot/alerts/node2/temperature");
    assert_non_null(p);
    assert_non_null(strstr(p->payload, "\"state\":\"firing\""));
    assert_int_equal(count_topic(&h.cap, topic), 0);
    h_close(&h);
}

/* No data for 120 s fires the offline alert from on_tick; data returning clears it. */
static void test_offline_alert(void **unused)
{
    (void)unused;
    struct harness h;
    const char *topic = "iiot/alerts/node1/offline";
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);

    assert_int_equal(h_tick(&h, T0), 0); /* nothing seen yet: nothing to report */
    assert_int_equal(h.cap.npub, 0);
    assert_int_equal(h_packet(&h, SAMPLE, T0), 0);
    cap_clear(&h.cap);

    assert_int_equal(h_tick(&h, T0 + 119 * SEC), 0);
    assert_int_equal(h.cap.npub, 0);
    assert_int_equal(h_tick(&h, T0 + 120 * SEC), 0);
    const struct cap_pub *p = find_topic(&h.cap, topic);
    assert_non_null(p);
    assert_string_equal(p->payload, "{\"node\":\"node1\",\"state\":\"firing\",\"threshold\":120,"
                                    "\"time\":\"2024-11-24T20:33:30Z\",\"value\":120}");
    assert_true(p->retain);
    assert_int_equal(p->qos, 1);
    assert_non_null(find_topic(&h.cap, "iiot/alerts/node2/offline"));
    assert_int_equal(h.cap.npub, 2);
    cap_clear(&h.cap);

    assert_int_equal(h_tick(&h, T0 + 121 * SEC), 0); /* fires once, not every tick */
    assert_int_equal(h.cap.npub, 0);

    assert_int_equal(h_packet(&h, SAMPLE, T0 + 130 * SEC), 0);
    p = find_topic(&h.cap, topic);
    assert_non_null(p);
    assert_string_equal(p->payload, "{\"node\":\"node1\",\"state\":\"ok\",\"threshold\":120,"
                                    "\"time\":\"2024-11-24T20:33:40Z\",\"value\":130}");
    assert_non_null(find_topic(&h.cap, "iiot/alerts/node2/offline"));
    cap_clear(&h.cap);
    assert_int_equal(h_tick(&h, T0 + 131 * SEC), 0);
    assert_int_equal(h.cap.npub, 0);
    h_close(&h);
}

/* Alert state survives a reload of the same rule (gw.state hand-over). */
static void test_alert_state_survives_reload(void **unused)
{
    (void)unused;
    struct harness h;
    char pkt[512];
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 36.0, "{}"), T0), 0);
    assert_non_null(find_topic(&h.cap, "iiot/alerts/node1/temperature"));
    assert_int_equal(rules_reload(h.r, h.err, sizeof h.err), 0);
    cap_clear(&h.cap);
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 36.5, "{}"), T0 + SEC), 0);
    assert_null(find_topic(&h.cap, "iiot/alerts/node1/temperature")); /* still firing */
    assert_int_equal(h_packet(&h, pkt_with(pkt, sizeof pkt, 30.0, "{}"), T0 + 2 * SEC), 0);
    assert_non_null(find_topic(&h.cap, "iiot/alerts/node1/temperature"));
    h_close(&h);
}

/* Every packet of the sample session goes through without error, 7-9 publishes each. */
static void test_sample_session(void **unused)
{
    (void)unused;
    struct harness h;
    FILE *f = fopen(SHARED_DATA_DIR "/probe-rs-session.expected.jsonl", "r");
    if (!f)
        skip();
    assert_int_equal(h_open_file(&h, DEFAULT_RULE, NULL), 0);
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!line[0])
            continue;
        size_t before = h.cap.npub;
        assert_int_equal(h_packet(&h, line, T0 + (int64_t)n * 10 * SEC), 0);
        size_t got = h.cap.npub - before;
        assert_true(got >= 7 && got <= 9);
        n++;
        if (h.cap.npub > CAP_MAX - 20)
            cap_clear(&h.cap);
    }
    fclose(f);
    assert_true(n > 10);
    h_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_packet),
        cmocka_unit_test(test_float_stays_float_and_prefix),
        cmocka_unit_test(test_node2_only_when_present),
        cmocka_unit_test(test_temperature_alert_hysteresis),
        cmocka_unit_test(test_offline_alert),
        cmocka_unit_test(test_alert_state_survives_reload),
        cmocka_unit_test(test_sample_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
