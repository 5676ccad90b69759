/*
 * test_influx_vm.c — the InfluxDB sink against a REAL victoria-metrics (IIOTGW_TEST_VM_URL):
 * v2 API writes with escaped measurement/tags/fields and explicit ns timestamps read back
 * through /api/v1/export, batching by count and by linger (request counts from the stats),
 * and gzip bodies. Exits 77 (skip) when the variable is unset.
 *
 * VictoriaMetrics stores `measurement,tags field=v` as series `measurement_field` with the
 * tags as labels and keeps millisecond timestamps, so the read-back compares ns/1e6.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "influx_test.h"
#include "log.h"

static const char *vm_url;
static unsigned run_id;

/* ---------------------------------------------------------------------------------------- */
/* Read-back                                                                                */
/* ---------------------------------------------------------------------------------------- */

/*
 * Export every series whose name starts with `prefix` (a regex-safe string). Returns the
 * parsed JSON lines as a cJSON array (caller deletes), waiting up to 5 s until at least
 * `want_samples` samples are visible (VM makes fresh data searchable within ~1 s).
 */
static cJSON *vm_export(const char *prefix, size_t want_samples)
{
    char sel[256], url[512];
    snprintf(sel, sizeof sel, "{__name__=~\"%s.*\"}", prefix);
    char *esc = it_escape(sel);
    snprintf(url, sizeof url, "%s/api/v1/export?match[]=%s", vm_url, esc);
    curl_free(esc);
    char flush[256];
    snprintf(flush, sizeof flush, "%s/internal/force_flush", vm_url);
    struct buf out = BUF_INIT;
    cJSON *arr = NULL;
    double end = util_mono() + 5;
    for (;;) {
        it_http(flush, NULL, NULL);
        cJSON_Delete(arr);
        arr = cJSON_CreateArray();
        size_t samples = 0;
        assert_int_equal(it_http(url, NULL, &out), 200);
        char *save = NULL;
        for (char *l = out.p ? strtok_r(out.p, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save)) {
            cJSON *j = cJSON_Parse(l);
            assert_non_null(j);
            samples += (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(j, "values"));
            cJSON_AddItemToArray(arr, j);
        }
        if (samples >= want_samples || util_mono() > end)
            break;
        usleep(200000);
    }
    buf_free(&out);
    return arr;
}

static cJSON *find_series(cJSON *arr, const char *name)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metric"), "__name__");
        if (n && cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return it;
    }
    return NULL;
}

static const char *label(cJSON *series, const char *name)
{
    cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(series, "metric"), name);
    return l && cJSON_IsString(l) ? l->valuestring : NULL;
}

static struct influx_sink *new_sink(struct ev_loop *loop, size_t batch_lines, double linger,
                                    bool gzip, struct it_rec *rec)
{
    struct influx_config cfg = {
        .url = vm_url,
        .api = 2,
        .org = "my org&x=1",
        .bucket = "tele/metry",
        .token = "vm-ignores-this-token",
        .batch_lines = batch_lines,
        .linger = linger,
        .gzip = gzip,
        .timeout = 5,
        .backoff_base = 0.2,
        .backoff_max = 1,
    };
    return it_sink_new(loop, &cfg, rec);
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Escaped measurement, tag keys/values and field keys survive; values and ts are exact. */
static void test_escaped_roundtrip(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, 100, 0.05, false, &rec);

    /* ms-aligned base + a sub-ms part VictoriaMetrics must truncate away. */
    int64_t t1 = util_now_ns() / 1000000 * 1000000 - 60LL * 1000000000 + 123456;
    int64_t t2 = t1 + 1500000000LL + 999999;
    char l1[512], l2[512];
    snprintf(l1, sizeof l1,
             "esc%u\\,m\\ x,tag\\ one=a\\,b\\=c\\ d,q=x\"y f\\ a=1.5,f\\=b=42i,neg=-3.25 %lld",
             run_id, (long long)t1);
    snprintf(l2, sizeof l2,
             "esc%u\\,m\\ x,tag\\ one=a\\,b\\=c\\ d,q=x\"y f\\ a=-0.125,f\\=b=-7i,neg=1e3 %lld",
             run_id, (long long)t2);
    assert_int_equal(influx_sink_write(s, l1, strlen(l1), 1), 0);
    assert_int_equal(influx_sink_write(s, l2, strlen(l2), 2), 0);
    RUN_UNTIL(loop, rec.nacks == 2, 5);
    assert_int_equal(rec.nacks, 2);
    assert_int_equal(rec.acks[0], 1);
    assert_int_equal(rec.acks[1], 2);
    assert_int_equal(rec.rejects, 0);
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.last_status, 204);
    assert_int_equal(st.pending_lines, 0);
    assert_int_equal(st.pending_bytes, 0);

    char prefix[64], name[128];
    snprintf(prefix, sizeof prefix, "esc%u", run_id);
    cJSON *arr = vm_export(prefix, 6);
    struct {
        const char *field;
        double v1, v2;
    } want[] = {{"f a", 1.5, -0.125}, {"f=b", 42, -7}, {"neg", -3.25, 1000}};
    assert_int_equal(cJSON_GetArraySize(arr), 3);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        snprintf(name, sizeof name, "esc%u,m x_%s", run_id, want[i].field);
        cJSON *ser = find_series(arr, name);
        assert_non_null(ser);
        assert_string_equal(label(ser, "tag one"), "a,b=c d");
        assert_string_equal(label(ser, "q"), "x\"y");
        cJSON *vals = cJSON_GetObjectItem(ser, "values");
        cJSON *tss = cJSON_GetObjectItem(ser, "timestamps");
        assert_int_equal(cJSON_GetArraySize(vals), 2);
        assert_true(cJSON_GetArrayItem(vals, 0)->valuedouble == want[i].v1);
        assert_true(cJSON_GetArrayItem(vals, 1)->valuedouble == want[i].v2);
        assert_int_equal((int64_t)cJSON_GetArrayItem(tss, 0)->valuedouble, t1 / 1000000);
        assert_int_equal((int64_t)cJSON_GetArrayItem(tss, 1)->valuedouble, t2 / 1000000);
    }
    cJSON_Delete(arr);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* batch_lines=10: 35 lines -> 3 requests at once, the last 5 wait for flush (4th). */
static void test_batch_by_count(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, 10, 30.0, false, &rec);
    int64_t t0 = util_now_ns() / 1000000 * 1000000 - 120LL * 1000000000;
    char l[128];
    for (int i = 0; i < 35; i++) {
        snprintf(l, sizeof l, "cnt%u,node=n1 value=%d %lld", run_id, i,
                 (long long)(t0 + i * 1000000000LL));
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
    }
    RUN_UNTIL(loop, it_stats(s).batches == 3, 5);
    RUN_FOR(loop, 0.3); /* the remaining 5 must NOT go out (linger is 30 s) */
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.lines_written, 30);
    assert_int_equal(st.pending_lines, 5);
    influx_sink_flush(s);
    RUN_UNTIL(loop, it_stats(s).batches == 4, 5);
    st = it_stats(s);
    assert_int_equal(st.batches, 4);
    assert_int_equal(st.lines_written, 35);
    assert_int_equal(st.pending_lines, 0);
    assert_int_equal(rec.nacks, 35);
    for (size_t i = 0; i < 35; i++)
        assert_int_equal(rec.acks[i], i);

    char prefix[64];
    snprintf(prefix, sizeof prefix, "cnt%u", run_id);
    cJSON *arr = vm_export(prefix, 35);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    cJSON *vals = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "values");
    cJSON *tss = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "timestamps");
    assert_int_equal(cJSON_GetArraySize(vals), 35);
    for (int i = 0; i < 35; i++) {
        assert_int_equal((int)cJSON_GetArrayItem(vals, i)->valuedouble, i);
        assert_int_equal((int64_t)cJSON_GetArrayItem(tss, i)->valuedouble,
                         t0 / 1000000 + i * 1000LL);
    }
    cJSON_Delete(arr);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* linger=0.3 s: 5 lines go out together ~0.3 s after the first, not before; flush is at once. */
static void test_batch_by_linger(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, 1000, 0.3, false, &rec);
    int64_t t0 = util_now_ns() / 1000000 * 1000000 - 180LL * 1000000000;
    char l[128];
    double start = util_mono();
    for (int i = 0; i < 5; i++) {
        snprintf(l, sizeof l, "lin%u,node=n1 value=%d %lld", run_id, i,
                 (long long)(t0 + i * 1000000LL));
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
        RUN_FOR(loop, 0.02);
    }
    RUN_UNTIL(loop, util_mono() - start >= 0.2, 1);
    assert_int_equal(it_stats(s).batches, 0);
    RUN_UNTIL(loop, it_stats(s).batches == 1, 3);
    double took = util_mono() - start;
    assert_int_equal(it_stats(s).batches, 1);
    assert_int_equal(it_stats(s).lines_written, 5);
    assert_true(took >= 0.3 && took < 1.0);

    influx_sink_free(s);

    /* flush sends at once, without waiting for the (now 5 s) linger */
    s = new_sink(loop, 1000, 5.0, false, &rec);
    for (int i = 5; i < 8; i++) {
        snprintf(l, sizeof l, "lin%u,node=n1 value=%d %lld", run_id, i,
                 (long long)(t0 + i * 1000000LL));
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
    }
    RUN_FOR(loop, 0.1);
    assert_int_equal(it_stats(s).batches, 0);
    start = util_mono();
    influx_sink_flush(s);
    RUN_UNTIL(loop, it_stats(s).batches == 1, 3);
    assert_int_equal(it_stats(s).batches, 1);
    assert_true(util_mono() - start < 1.0);
    assert_int_equal(rec.nacks, 8);

    char prefix[64];
    snprintf(prefix, sizeof prefix, "lin%u", run_id);
    cJSON *arr = vm_export(prefix, 8);
    cJSON *vals = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "values");
    assert_int_equal(cJSON_GetArraySize(vals), 8);
    cJSON_Delete(arr);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* gzip on: VictoriaMetrics decodes Content-Encoding: gzip; every value arrives. */
static void test_gzip(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, 500, 0.05, true, &rec);
    int64_t t0 = util_now_ns() / 1000000 * 1000000 - 240LL * 1000000000;
    char l[128];
    for (int i = 0; i < 1000; i++) {
        snprintf(l, sizeof l, "gz%u,node=n1,unit=celsius value=%d.5 %lld", run_id, i,
                 (long long)(t0 + i * 1000000LL));
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
    }
    RUN_UNTIL(loop, rec.nacks == 1000, 5);
    assert_int_equal(rec.nacks, 1000);
    assert_int_equal(it_stats(s).batches, 2);
    assert_int_equal(it_stats(s).last_status, 204);

    char prefix[64];
    snprintf(prefix, sizeof prefix, "gz%u", run_id);
    cJSON *arr = vm_export(prefix, 1000);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    cJSON *ser = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(label(ser, "unit"), "celsius");
    cJSON *vals = cJSON_GetObjectItem(ser, "values");
    cJSON *tss = cJSON_GetObjectItem(ser, "timestamps");
    assert_int_equal(cJSON_GetArraySize(vals), 1000);
    for (int i = 0; i < 1000; i++) {
        assert_true(cJSON_GetArrayItem(vals, i)->valuedouble == i + 0.5);
        assert_int_equal((int64_t)cJSON_GetArrayItem(tss, i)->valuedouble, t0 / 1000000 + i);
    }
    cJSON_Delete(arr);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

int main(void)
{
    vm_url = getenv("IIOTGW_TEST_VM_URL");
    if (!vm_url || !*vm_url) {
        fprintf(stderr, "IIOTGW_TEST_VM_URL unset: skipping\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    run_id = (util_seed() % 1000000u) + 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaped_roundtrip),
        cmocka_unit_test(test_batch_by_count),
        cmocka_unit_test(test_batch_by_linger),
        cmocka_unit_test(test_gzip),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
