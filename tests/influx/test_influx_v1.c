/*
 * test_influx_v1.c — the InfluxDB sink's v1 API against a REAL InfluxDB 1.6
 * (IIOTGW_TEST_INFLUX1_URL): create a database, write with precision=ns (and rp=autogen,
 * which a wrong value would make the server refuse), read back with InfluxQL (epoch=ns)
 * and compare exact values: string fields with quotes and backslashes, ints, bools,
 * floats, tags with escaped spaces and ns timestamps. Exits 77 when the variable is unset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "influx_test.h"
#include "log.h"

static const char *influx_url;
static char db[64];

static void influxql(const char *q, struct buf *out)
{
    char *esc = it_escape(q);
    char url[1024];
    snprintf(url, sizeof url, "%s/query?db=%s&epoch=ns&q=%s", influx_url, db, esc);
    curl_free(esc);
    assert_int_equal(it_http(url, NULL, out), 200);
}

static int col(cJSON *cols, const char *name)
{
    for (int i = 0; i < cJSON_GetArraySize(cols); i++)
        if (strcmp(cJSON_GetArrayItem(cols, i)->valuestring, name) == 0)
            return i;
    fail_msg("column %s missing", name);
    return -1;
}

static void test_v1_roundtrip(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_config cfg = {
        .url = influx_url,
        .api = 1,
        .db = db,
        .rp = "autogen",
        /* auth is disabled on the test server: Basic credentials are sent and ignored */
        .token = "gw:pa ss",
        .batch_lines = 100,
        .linger = 0.05,
        .timeout = 5,
    };
    struct influx_sink *s = it_sink_new(loop, &cfg, &rec);

    /* sub-microsecond digits that only a true ns path preserves */
    int64_t t1 = util_now_ns() / 1000 * 1000 - 30LL * 1000000000 + 789;
    int64_t t2 = t1 + 1000000001LL;
    char l1[512], l2[512];
    snprintf(
        l1, sizeof l1,
        "str\\ m,node=n\\ 1,unit=a\\,b s=\"a \\\"quoted\\\" \\\\ back\\\\slash\",v=1.25,i=-42i,"
        "b=true %lld",
        (long long)t1);
    snprintf(l2, sizeof l2,
             "str\\ m,node=n\\ 1,unit=a\\,b s=\"x = y, z\",v=-0.5,i=9007199254740993i,b=false %lld",
             (long long)t2);
    assert_int_equal(influx_sink_write(s, l1, strlen(l1), 11), 0);
    assert_int_equal(influx_sink_write(s, l2, strlen(l2), 12), 0);
    RUN_UNTIL(loop, rec.nacks == 2 || rec.rejects, 5);
    assert_int_equal(rec.rejects, 0);
    assert_int_equal(rec.nacks, 2);
    assert_int_equal(rec.acks[0], 11);
    assert_int_equal(rec.acks[1], 12);
    assert_int_equal(it_stats(s).last_status, 204);

    struct buf out = BUF_INIT;
    influxql("SELECT * FROM \"str m\" ORDER BY time", &out);
    cJSON *j = cJSON_Parse(out.p);
    assert_non_null(j);
    cJSON *ser = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0), "series"), 0);
    assert_non_null(ser);
    assert_string_equal(cJSON_GetObjectItem(ser, "name")->valuestring, "str m");
    cJSON *cols = cJSON_GetObjectItem(ser, "columns");
    cJSON *vals = cJSON_GetObjectItem(ser, "values");
    assert_int_equal(cJSON_GetArraySize(vals), 2);
    cJSON *r1 = cJSON_GetArrayItem(vals, 0), *r2 = cJSON_GetArrayItem(vals, 1);
    assert_string_equal(cJSON_GetArrayItem(r1, col(cols, "s"))->valuestring,
                        "a \"quoted\" \\ back\\slash");
    assert_string_equal(cJSON_GetArrayItem(r2, col(cols, "s"))->valuestring, "x = y, z");
    assert_string_equal(cJSON_GetArrayItem(r1, col(cols, "node"))->valuestring, "n 1");
    assert_string_equal(cJSON_GetArrayItem(r1, col(cols, "unit"))->valuestring, "a,b");
    assert_true(cJSON_GetArrayItem(r1, col(cols, "v"))->valuedouble == 1.25);
    assert_true(cJSON_GetArrayItem(r2, col(cols, "v"))->valuedouble == -0.5);
    assert_true(cJSON_GetArrayItem(r1, col(cols, "i"))->valuedouble == -42);
    assert_true(cJSON_IsTrue(cJSON_GetArrayItem(r1, col(cols, "b"))));
    assert_true(cJSON_IsFalse(cJSON_GetArrayItem(r2, col(cols, "b"))));
    cJSON_Delete(j);

    /* ns timestamps and a 2^53+1 integer do not survive a double: compare the JSON text */
    char want[64];
    snprintf(want, sizeof want, "[%lld,", (long long)t1);
    assert_non_null(strstr(out.p, want));
    snprintf(want, sizeof want, "[%lld,", (long long)t2);
    assert_non_null(strstr(out.p, want));
    assert_non_null(strstr(out.p, ",9007199254740993,"));
    buf_free(&out);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* A db that does not exist: InfluxDB answers 404 -> reject with its message, no retry. */
static void test_v1_unknown_db(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    char nodb[80];
    snprintf(nodb, sizeof nodb, "%s_missing", db);
    struct influx_config cfg = {
        .url = influx_url,
        .api = 1,
        .db = nodb,
        .linger = 0.05,
        .timeout = 5,
        .backoff_base = 0.05,
    };
    struct influx_sink *s = it_sink_new(loop, &cfg, &rec);
    const char *l = "m value=1 1";
    assert_int_equal(influx_sink_write(s, l, strlen(l), 1), 0);
    RUN_UNTIL(loop, rec.rejects == 1, 5);
    RUN_FOR(loop, 0.2);
    assert_int_equal(rec.rejects, 1);
    assert_int_equal(rec.reject_status, 404);
    assert_non_null(strstr(rec.reject_msg, "database not found"));
    assert_int_equal(it_stats(s).retries, 0);
    buf_free(&rec.reject_lines);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

int main(void)
{
    influx_url = getenv("IIOTGW_TEST_INFLUX1_URL");
    if (!influx_url || !*influx_url) {
        fprintf(stderr, "IIOTGW_TEST_INFLUX1_URL unset: skipping\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(db, sizeof db, "iiotgw_influx_%u", util_seed() % 1000000u);
    char url[256];
    snprintf(url, sizeof url, "%s/query?q=CREATE+DATABASE+%s", influx_url, db);
    long st = it_http(url, "", NULL);
    if (st != 200) {
        fprintf(stderr, "CREATE DATABASE failed: %ld\n", st);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_roundtrip),
        cmocka_unit_test(test_v1_unknown_db),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(url, sizeof url, "%s/query?q=DROP+DATABASE+%s", influx_url, db);
    it_http(url, "", NULL);
    curl_global_cleanup();
    return rc;
}
