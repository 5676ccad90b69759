/*
 * test_influx_late.c — connection refused, then a REAL server appears.
 *
 * Two sinks point at a free (closed) loopback port: both see "connection refused" and back
 * off. Sink A holds 10 lines. Sink B is fed 50 lines in batches of 10 with a queue bound of
 * 2.5 batches, so the oldest waiting batches must be dropped (counted) while the in-flight
 * one and the newest survive. Then the test starts its own victoria-metrics on that port;
 * both sinks deliver after their retries, and the read-back shows exactly the lines that
 * were not dropped. Exits 77 when victoria-metrics is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "influx_test.h"
#include "log.h"

static pid_t vm_pid = -1;
static char vm_dir[] = "/tmp/influx_late_vm_XXXXXX";

static int teardown_vm(void **state)
{
    (void)state;
    it_kill(vm_pid);
    vm_pid = -1;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", vm_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", vm_dir);
    return 0;
}

static struct influx_sink *new_sink(struct ev_loop *loop, const char *url, size_t qmax,
                                    struct it_rec *rec)
{
    struct influx_config cfg = {
        .url = url,
        .api = 2,
        .org = "o",
        .bucket = "b",
        .batch_lines = 10,
        .linger = 0.05,
        .timeout = 2,
        .backoff_base = 0.2,
        .backoff_max = 0.4,
        .queue_max_bytes = qmax,
    };
    return it_sink_new(loop, &cfg, rec);
}

static void test_refused_then_server(void **state)
{
    (void)state;
    int port = it_free_port();
    assert_true(port > 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    unsigned run = util_seed() % 1000000u;
    int64_t t0 = util_now_ns() / 1000000 * 1000000 - 60LL * 1000000000;

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec ra = {0}, rb = {0};
    struct influx_sink *a = new_sink(loop, url, 0, &ra);
    char l[128];
    for (int i = 0; i < 10; i++) {
        snprintf(l, sizeof l, "late%u,s=a value=%d %lld", run, i, (long long)(t0 + i * 1000000LL));
        assert_int_equal(influx_sink_write(a, l, strlen(l), (uint64_t)i), 0);
    }
    /* B: every line is the same length, so every batch has the same size */
    snprintf(l, sizeof l, "late%u,s=b value=%02d %lld", run, 0, (long long)t0);
    size_t batch_bytes = (strlen(l) + 1) * 10;
    struct influx_sink *b = new_sink(loop, url, batch_bytes * 5 / 2, &rb);
    for (int i = 0; i < 50; i++) {
        snprintf(l, sizeof l, "late%u,s=b value=%02d %lld", run, i,
                 (long long)(t0 + i * 1000000LL));
        assert_int_equal(influx_sink_write(b, l, strlen(l), (uint64_t)i), 0);
    }
    /* batches 2, 3, 4 were dropped as 3, 4, 5 arrived; 1 is in flight, 5 waits */
    struct influx_stats st = it_stats(b);
    assert_int_equal(st.lines_dropped, 30);
    assert_int_equal(st.pending_lines, 20);
    assert_int_equal(st.pending_bytes, 2 * batch_bytes);

    RUN_UNTIL(loop, it_stats(a).retries >= 2, 3);
    st = it_stats(a);
    assert_true(st.retries >= 2);
    assert_int_equal(st.last_status, 0);
    assert_int_equal(ra.nacks, 0);
    assert_int_equal(st.pending_lines, 10);

    /* now the server appears on that very port */
    assert_non_null(mkdtemp(vm_dir));
    char addr[64], data[128];
    snprintf(addr, sizeof addr, "-httpListenAddr=127.0.0.1:%d", port);
    snprintf(data, sizeof data, "-storageDataPath=%s", vm_dir);
    char *argv[] = {"victoria-metrics",   addr, data, "-retentionPeriod=100y",
                    "-loggerLevel=ERROR", NULL};
    vm_pid = it_spawn(argv, NULL, 0);
    assert_true(vm_pid > 0);

    RUN_UNTIL(loop, ra.nacks == 10 && rb.nacks == 20, 15);
    assert_int_equal(ra.nacks, 10);
    assert_int_equal(rb.nacks, 20);
    for (uint64_t i = 0; i < 10; i++) {
        assert_int_equal(ra.acks[i], i);
        assert_int_equal(rb.acks[i], i);
        assert_int_equal(rb.acks[10 + i], 40 + i);
    }
    assert_int_equal(it_stats(a).last_status, 204);
    assert_int_equal(it_stats(b).lines_written, 20);
    assert_int_equal(it_stats(b).pending_bytes, 0);

    /* read back: A's 10 values, B's 0..9 and 40..49 */
    char sel[128], q[512];
    snprintf(sel, sizeof sel, "{__name__=\"late%u_value\"}", run);
    char *esc = it_escape(sel);
    snprintf(q, sizeof q, "%s/api/v1/export?match[]=%s", url, esc);
    curl_free(esc);
    char flush[128];
    snprintf(flush, sizeof flush, "%s/internal/force_flush", url);
    struct buf out = BUF_INIT;
    int lines = 0;
    double end = util_mono() + 5;
    do {
        it_http(flush, NULL, NULL);
        assert_int_equal(it_http(q, NULL, &out), 200);
        lines = 0;
        for (size_t i = 0; i < out.len; i++)
            lines += out.p[i] == '\n';
        if (lines == 2 && strstr(out.p, "\"s\":\"a\"") && strstr(out.p, "\"s\":\"b\""))
            break;
        usleep(200000);
    } while (util_mono() < end);
    assert_int_equal(lines, 2);
    char *save = NULL;
    for (char *ln = strtok_r(out.p, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(ln);
        assert_non_null(j);
        const char *who = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metric"), "s")->valuestring;
        cJSON *vals = cJSON_GetObjectItem(j, "values");
        assert_int_equal(cJSON_GetArraySize(vals), who[0] == 'a' ? 10 : 20);
        for (int i = 0; i < cJSON_GetArraySize(vals); i++) {
            int want = who[0] == 'a' || i < 10 ? i : 30 + i;
            assert_int_equal((int)cJSON_GetArrayItem(vals, i)->valuedouble, want);
        }
        cJSON_Delete(j);
    }
    buf_free(&out);
    influx_sink_free(a);
    influx_sink_free(b);
    ev_loop_destroy(loop);
}

int main(void)
{
    if (access("/usr/bin/victoria-metrics", X_OK) != 0) {
        fprintf(stderr, "victoria-metrics not installed: skipping\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_refused_then_server, teardown_vm),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
