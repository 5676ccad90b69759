/*
 * test_influx_mock.c — the InfluxDB sink's error paths against a scripted HTTP server.
 *
 * MOCK on purpose: http_script.py answers 401/413/429/503/500/400 or hangs on demand, which
 * no real InfluxDB or victoria-metrics can be made to do. Writes, escaping, gzip decoding and
 * read-back are tested against the real servers (test_influx_vm.c, test_influx_v1.c).
 *
 * The whole run captures stderr (the sink's log) into a temp file; the last test checks that
 * the v2 token never appears there, even though the 401 scenario echoes it back in its body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "influx_test.h"
#include "log.h"

#define TOKEN       "s3cr3t-T0KEN-4f9a"
#define V1_PASSWORD "pw-V1-9z8y"

static char log_path[] = "/tmp/influx_mock_log_XXXXXX";
static int saved_stderr = -1;

/* ---------------------------------------------------------------------------------------- */
/* Scripted server                                                                          */
/* ---------------------------------------------------------------------------------------- */

struct srv {
    pid_t pid;
    char url[64];
};

/* The running server, killed by the teardown even when an assertion aborted the test. */
static pid_t current_pid = -1;

static int teardown_srv(void **state)
{
    (void)state;
    it_kill(current_pid);
    current_pid = -1;
    return 0;
}

static void srv_start(struct srv *v, const char *scenario)
{
    char port[32];
    char *argv[] = {"/usr/bin/python3", INFLUX_TEST_SCRIPT, (char *)scenario, NULL};
    v->pid = current_pid = it_spawn(argv, port, sizeof port);
    assert_true(v->pid > 0);
    assert_true(atoi(port) > 0);
    snprintf(v->url, sizeof v->url, "http://127.0.0.1:%s", port);
}

struct req {
    double t;
    int status, lines, gzip, auth;
    char path[256];
    char first[512];
};

/* Fetch what the server saw. Returns the number of requests (at most `max`). */
static int srv_requests(struct srv *v, struct req *out, int max)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_requests", v->url);
    struct buf b = BUF_INIT;
    assert_int_equal(it_http(url, NULL, &b), 200);
    int n = 0;
    char *save = NULL;
    for (char *l = b.p ? strtok_r(b.p, "\n", &save) : NULL; l && n < max;
         l = strtok_r(NULL, "\n", &save)) {
        struct req *r = &out[n];
        r->first[0] = '\0';
        assert_true(sscanf(l, "t=%lf status=%d lines=%d gzip=%d auth=%d path=%255s first=%511[^\n]",
                           &r->t, &r->status, &r->lines, &r->gzip, &r->auth, r->path,
                           r->first) >= 6);
        n++;
    }
    buf_free(&b);
    return n;
}

static struct influx_sink *new_sink(struct ev_loop *loop, const char *url, struct it_rec *rec,
                                    double base, double max, double timeout, bool gz)
{
    struct influx_config cfg = {
        .url = url,
        .api = 2,
        .org = "my org&x=1",
        .bucket = "tele/metry",
        .token = TOKEN,
        .batch_lines = 1000,
        .linger = 10,
        .gzip = gz,
        .timeout = timeout,
        .backoff_base = base,
        .backoff_max = max,
    };
    return it_sink_new(loop, &cfg, rec);
}

static void write_n(struct influx_sink *s, int n, const char *tag)
{
    char l[128];
    for (int i = 0; i < n; i++) {
        snprintf(l, sizeof l, "m,t=%s value=%d %d", tag, i, 1000 + i);
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
    }
    influx_sink_flush(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* 2xx path seen from the server: one gzip'ed request with all lines and the token header. */
static void test_ok_gzip(void **state)
{
    (void)state;
    struct srv v;
    srv_start(&v, "ok");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, v.url, &rec, 0.1, 1, 2, true);
    write_n(s, 7, "gz");
    RUN_UNTIL(loop, rec.nacks == 7, 3);
    assert_int_equal(rec.nacks, 7);
    struct req r[4];
    assert_int_equal(srv_requests(&v, r, 4), 1);
    assert_int_equal(r[0].lines, 7);
    assert_int_equal(r[0].gzip, 1);
    assert_int_equal(r[0].auth, 1);
    /* query values are URL-encoded */
    assert_string_equal(r[0].path,
                        "/api/v2/write?org=my%20org%26x%3D1&bucket=tele%2Fmetry&precision=ns");
    assert_string_equal(r[0].first, "m,t=gz value=0 1000");
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* 401: reject callback with status and (redacted) message, no retry. */
static void test_401_reject(void **state)
{
    (void)state;
    struct srv v;
    srv_start(&v, "401");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, v.url, &rec, 0.05, 1, 2, false);
    write_n(s, 3, "a");
    RUN_UNTIL(loop, rec.rejects == 1, 3);
    RUN_FOR(loop, 0.4); /* a retry would come within 0.05 s */
    assert_int_equal(rec.rejects, 1);
    assert_int_equal(rec.reject_status, 401);
    assert_non_null(strstr(rec.reject_msg, "unauthorized access"));
    assert_null(strstr(rec.reject_msg, TOKEN));
    assert_non_null(strstr(rec.reject_msg, "Token ***"));
    assert_string_equal(rec.reject_lines.p,
                        "m,t=a value=0 1000\nm,t=a value=1 1001\nm,t=a value=2 1002");
    assert_int_equal(rec.nacks, 0);
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.lines_rejected, 3);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.pending_lines, 0);
    assert_int_equal(st.pending_bytes, 0);
    assert_int_equal(st.last_status, 401);
    struct req r[4];
    assert_int_equal(srv_requests(&v, r, 4), 1);
    buf_free(&rec.reject_lines);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* v1 with Basic auth: a server echoing the credentials gets the password redacted. */
static void test_401_v1_basic(void **state)
{
    (void)state;
    struct srv v;
    srv_start(&v, "401");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_config cfg = {.url = v.url,
                                .api = 1,
                                .db = "d b",
                                .rp = "r&p",
                                .token = "gwuser:" V1_PASSWORD,
                                .linger = 0.05};
    struct influx_sink *s = it_sink_new(loop, &cfg, &rec);
    write_n(s, 1, "v1");
    RUN_UNTIL(loop, rec.rejects == 1, 3);
    assert_int_equal(rec.rejects, 1);
    assert_int_equal(rec.reject_status, 401);
    /* the server saw the real credentials, the message only a redacted echo */
    assert_non_null(strstr(rec.reject_msg, "Basic ***"));
    assert_null(strstr(rec.reject_msg, V1_PASSWORD));
    struct req r[4];
    assert_int_equal(srv_requests(&v, r, 4), 1);
    assert_int_equal(r[0].auth, 1);
    assert_string_equal(r[0].path, "/write?db=d%20b&rp=r%26p&precision=ns");
    buf_free(&rec.reject_lines);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* 413: halves until they fit; a single line that still does not fit is rejected; order kept. */
static void test_413_split(void **state)
{
    (void)state;
    struct srv v;
    srv_start(&v, "413");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, v.url, &rec, 0.05, 1, 2, false);
    char l[512], huge[512];
    for (int i = 0; i < 8; i++) {
        if (i == 5) {
            memset(huge, 'x', 300);
            memcpy(huge, "m,t=big value=1 ", 16);
            memcpy(huge + 16, "s=\"", 3);
            strcpy(huge + 290, "\" 9");
            assert_int_equal(influx_sink_write(s, huge, strlen(huge), 5), 0);
            continue;
        }
        snprintf(l, sizeof l, "m,t=s value=%d %d", i, i);
        assert_int_equal(influx_sink_write(s, l, strlen(l), (uint64_t)i), 0);
    }
    influx_sink_flush(s);
    RUN_UNTIL(loop, rec.nacks == 7 && rec.rejects == 1, 5);
    assert_int_equal(rec.nacks, 7);
    uint64_t want_acks[] = {0, 1, 2, 3, 4, 6, 7};
    for (size_t i = 0; i < ARRAY_LEN(want_acks); i++)
        assert_int_equal(rec.acks[i], want_acks[i]);
    assert_int_equal(rec.rejects, 1);
    assert_int_equal(rec.reject_status, 413);
    assert_string_equal(rec.reject_lines.p, huge);

    /* 8 -> 4+4; 4 -> 2+2; 4 -> 2+2; the 2 holding the huge line -> 1+1. */
    int want_lines[] = {8, 4, 2, 2, 4, 2, 1, 1, 2};
    int want_status[] = {413, 413, 204, 204, 413, 413, 204, 413, 204};
    struct req r[16];
    assert_int_equal(srv_requests(&v, r, 16), 9);
    for (int i = 0; i < 9; i++) {
        assert_int_equal(r[i].lines, want_lines[i]);
        assert_int_equal(r[i].status, want_status[i]);
    }
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.splits, 4);
    assert_int_equal(st.lines_written, 7);
    assert_int_equal(st.lines_rejected, 1);
    assert_int_equal(st.pending_lines, 0);
    assert_int_equal(st.pending_bytes, 0);
    buf_free(&rec.reject_lines);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/*
 * Run one "fails first, then 204" scenario; returns the gaps between consecutive requests.
 * Asserts all lines are acked in order and `nreq` requests were made.
 */
static void retry_scenario(const char *scenario, double base, double max, double timeout, int nreq,
                           double *gaps)
{
    struct srv v;
    srv_start(&v, scenario);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, v.url, &rec, base, max, timeout, false);
    write_n(s, 4, scenario);
    unsigned iters = ev_iteration(loop);
    double t0 = util_mono();
    RUN_UNTIL(loop, rec.nacks == 4, 6);
    assert_int_equal(rec.nacks, 4);
    /*
     * No busy loop while waiting: the 10 ms test tick gives ~100 iterations/s. curl asks
     * for timeouts like 499 ms; evhiperfifo's integer division (timeout_ms / 1000) would
     * turn them into 0 s timers and spin the loop thousands of times per second.
     */
    double rate = (double)(ev_iteration(loop) - iters) / (util_mono() - t0);
    assert_true(rate < 400);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(rec.acks[i], i);
    assert_int_equal(rec.rejects, 0);
    struct influx_stats st = it_stats(s);
    assert_int_equal(st.retries, nreq - 1);
    assert_int_equal(st.last_status, 204);
    assert_int_equal(st.pending_lines, 0);
    struct req r[8];
    assert_int_equal(srv_requests(&v, r, 8), nreq);
    for (int i = 1; i < nreq; i++) {
        gaps[i - 1] = r[i].t - r[i - 1].t;
        assert_int_equal(r[i].lines, 4);
    }
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* 429 + Retry-After: 1 -> retried after ~1 s, not before (backoff alone would be 0.05 s). */
static void test_429_retry_after(void **state)
{
    (void)state;
    double gap[1];
    retry_scenario("429", 0.05, 10, 2, 2, gap);
    assert_true(gap[0] >= 0.95 && gap[0] < 2.0);
}

/* 429 + Retry-After as an HTTP-date 30 s ahead -> capped at backoff_max (1 s). */
static void test_429_http_date_capped(void **state)
{
    (void)state;
    double gap[1];
    retry_scenario("429date", 0.05, 1, 2, 2, gap);
    assert_true(gap[0] >= 0.95 && gap[0] < 2.0);
}

/* 503 without Retry-After -> backoff (base 0.2: delay within [0.1, 0.2]). */
static void test_503_backoff(void **state)
{
    (void)state;
    double gap[1];
    retry_scenario("503", 0.2, 5, 2, 2, gap);
    assert_true(gap[0] >= 0.09 && gap[0] < 0.8);
}

/* 500, 500, 204 -> two retries with exponential backoff: [0.1,0.2] then [0.2,0.4]. */
static void test_500_backoff(void **state)
{
    (void)state;
    double gap[2];
    retry_scenario("500", 0.2, 5, 2, 3, gap);
    assert_true(gap[0] >= 0.09 && gap[0] < 0.8);
    assert_true(gap[1] >= 0.19 && gap[1] < 1.0);
}

/* A server that accepts and never answers -> request timeout (0.5 s) -> retry. */
static void test_hang_timeout(void **state)
{
    (void)state;
    double gap[1];
    retry_scenario("hang", 0.05, 1, 0.5, 2, gap);
    assert_true(gap[0] >= 0.5 && gap[0] < 2.0);
}

/* The server reads the request and resets the connection -> transport error -> retry. */
static void test_reset_retry(void **state)
{
    (void)state;
    double gap[1];
    retry_scenario("reset", 0.1, 1, 2, 2, gap);
    assert_true(gap[0] >= 0.05 && gap[0] < 0.8);
}

/* 400 with a JSON error body -> split until each refused line stands alone, each rejected
 * with the server's message; no retry of a single refused line. */
static void test_400_message(void **state)
{
    (void)state;
    struct srv v;
    srv_start(&v, "400");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct it_rec rec = {0};
    struct influx_sink *s = new_sink(loop, v.url, &rec, 0.05, 1, 2, false);
    write_n(s, 2, "bad");
    RUN_UNTIL(loop, rec.rejects == 2, 3);
    RUN_FOR(loop, 0.3);
    assert_int_equal(rec.rejects, 2);
    assert_int_equal(rec.reject_status, 400);
    assert_string_equal(
        rec.reject_msg,
        "{\"error\":\"partial write: unable to parse 'bad line': missing fields\"}");
    struct req r[4];
    assert_int_equal(srv_requests(&v, r, 4), 3); /* the batch, then each half */
    assert_int_equal(it_stats(s).lines_rejected, 2);
    assert_int_equal(it_stats(s).splits, 1);
    buf_free(&rec.reject_lines);
    influx_sink_free(s);
    ev_loop_destroy(loop);
}

/* Must run last: everything above logged to the captured stderr. */
static void test_token_not_logged(void **state)
{
    (void)state;
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    struct buf b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    assert_non_null(b.p);
    /* the log is really there and covers the 401 path, whose body echoed the token */
    assert_non_null(strstr(b.p, "event=influx_reject status=401"));
    assert_non_null(strstr(b.p, "Token ***"));
    assert_non_null(strstr(b.p, "event=influx_retry"));
    assert_null(strstr(b.p, TOKEN));
    assert_non_null(strstr(b.p, "Basic ***"));
    assert_null(strstr(b.p, V1_PASSWORD));
    buf_free(&b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_set_level(LL_DEBUG);
    int fd = mkstemp(log_path);
    if (fd < 0)
        return 1;
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ok_gzip, teardown_srv),
        cmocka_unit_test_teardown(test_401_reject, teardown_srv),
        cmocka_unit_test_teardown(test_401_v1_basic, teardown_srv),
        cmocka_unit_test_teardown(test_413_split, teardown_srv),
        cmocka_unit_test_teardown(test_429_retry_after, teardown_srv),
        cmocka_unit_test_teardown(test_429_http_date_capped, teardown_srv),
        cmocka_unit_test_teardown(test_503_backoff, teardown_srv),
        cmocka_unit_test_teardown(test_500_backoff, teardown_srv),
        cmocka_unit_test_teardown(test_hang_timeout, teardown_srv),
        cmocka_unit_test_teardown(test_reset_retry, teardown_srv),
        cmocka_unit_test_teardown(test_400_message, teardown_srv),
        cmocka_unit_test_teardown(test_token_not_logged, teardown_srv),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    /* give the captured log back to the real stderr for diagnosis */
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    FILE *f = fopen(log_path, "r");
    if (f) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            fwrite(chunk, 1, n, stderr);
        fclose(f);
    }
    unlink(log_path);
    curl_global_cleanup();
    return rc;
}
