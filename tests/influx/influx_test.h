/*
 * influx_test.h — helpers shared by the InfluxDB sink tests (tests/influx/): running the
 * libev loop until a condition holds, blocking HTTP requests for setup and read-back,
 * spawning helper processes (the scripted HTTP server, a late victoria-metrics).
 *
 * Everything is static inline: each test executable includes this once.
 */
#ifndef IIOTGW_TESTS_INFLUX_TEST_H
#define IIOTGW_TESTS_INFLUX_TEST_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "buf.h"
#include "influx.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------- */
/* Loop                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static inline void it_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Run `loop` until `cond` is true or `secs` have passed (a 10 ms tick re-checks cond). */
#define RUN_UNTIL(loop, cond, secs)                                                                \
    do {                                                                                           \
        double end_ = util_mono() + (secs);                                                        \
        ev_timer tk_;                                                                              \
        ev_timer_init(&tk_, it_tick_cb, 0.01, 0.01);                                               \
        ev_timer_start((loop), &tk_);                                                              \
        while (!(cond) && util_mono() < end_)                                                      \
            ev_run((loop), EVRUN_ONCE);                                                            \
        ev_timer_stop((loop), &tk_);                                                               \
    } while (0)

/* Run the loop for `secs` seconds, whatever happens. */
#define RUN_FOR(loop, secs) RUN_UNTIL(loop, 0, secs)

/* ---------------------------------------------------------------------------------------- */
/* Blocking HTTP (test setup and read-back only)                                            */
/* ---------------------------------------------------------------------------------------- */

static inline size_t it_write_cb(char *p, size_t size, size_t n, void *ud)
{
    buf_append((struct buf *)ud, p, size * n);
    return size * n;
}

/* GET (body == NULL) or POST `body`. Returns the HTTP status, or -1 on a transport error. */
static inline long it_http(const char *url, const char *body, struct buf *out)
{
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    if (out)
        buf_clear(out);
    struct buf sink = BUF_INIT;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out ? out : &sink);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    long status = -1;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    buf_free(&sink);
    return status;
}

/* URL-escape into a malloc'd string (caller frees with curl_free). */
static inline char *it_escape(const char *s)
{
    return curl_easy_escape(NULL, s, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Processes and ports                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* A loopback TCP port that was free a moment ago (bind to 0, read it back, close). */
static inline int it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/*
 * Spawn argv. If `line` is non-NULL, the child's stdout is a pipe and the first line it
 * prints is read into `line` (e.g. the port the scripted server listens on).
 * Returns the pid or -1.
 */
static inline pid_t it_spawn(char *const argv[], char *line, size_t linelen)
{
    int pfd[2] = {-1, -1};
    if (line && pipe(pfd))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (line) {
            dup2(pfd[1], STDOUT_FILENO);
            close(pfd[0]);
            close(pfd[1]);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (line) {
        close(pfd[1]);
        size_t n = 0;
        char c;
        while (n + 1 < linelen && read(pfd[0], &c, 1) == 1 && c != '\n')
            line[n++] = c;
        line[n] = '\0';
        close(pfd[0]);
    }
    return pid;
}

/* SIGTERM, wait up to 5 s, then SIGKILL. */
static inline void it_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Callback recorder                                                                        */
/* ---------------------------------------------------------------------------------------- */

struct it_rec {
    uint64_t acks[4096];
    size_t nacks;
    int rejects;
    long reject_status;
    char reject_msg[600];
    struct buf reject_lines;
};

static inline void it_ack(void *ud, uint64_t token)
{
    struct it_rec *r = ud;
    if (r->nacks < ARRAY_LEN(r->acks))
        r->acks[r->nacks] = token;
    r->nacks++;
}

static inline void it_reject(void *ud, const char *lines, size_t len, long status, const char *msg)
{
    struct it_rec *r = ud;
    r->rejects++;
    r->reject_status = status;
    util_strlcpy(r->reject_msg, msg ? msg : "", sizeof r->reject_msg);
    if (r->reject_lines.len)
        buf_append_char(&r->reject_lines, '\n');
    buf_append(&r->reject_lines, lines, len);
}

/*
 * A sink for `cfg` whose callbacks record into `rec` (it_ack / it_reject); the test fails if
 * influx_sink_new() refuses the config. Needs <cmocka.h> included first. Free with
 * influx_sink_free().
 */
static inline struct influx_sink *it_sink_new(struct ev_loop *loop, const struct influx_config *cfg,
                                              struct it_rec *rec)
{
    struct influx_sink *s = NULL;
    char err[128];
    assert_int_equal(influx_sink_new(&s, loop, cfg, err, sizeof err), 0);
    influx_sink_set_callbacks(s, it_ack, it_reject, rec);
    return s;
}

static inline struct influx_stats it_stats(const struct influx_sink *s)
{
    struct influx_stats st;
    influx_sink_get_stats(s, &st);
    return st;
}

#endif
