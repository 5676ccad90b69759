/*
 * test_source.c — tests of the sources module (src/source.c and src/source_*.c), through its
 * public API only, against real fds, processes, sockets and pseudo-terminals on the libev
 * default loop.
 *
 * Run one group per ctest entry: `test_source <cmocka-filter>` (see CMakeLists.txt). Every
 * wait is bounded by an ev_timer deadline, so a broken source fails a test instead of hanging.
 * Log assertions capture our own stderr (where log.c writes) into a temporary file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <ev.h>

#include "frame.h"
#include "log.h"
#include "source.h"
#include "util.h"

/* ------------------------------------------------------------------------------------ */
/* Recording lines and waiting on the loop                                              */
/* ------------------------------------------------------------------------------------ */

#define MAX_REC 20000

struct rec {
    struct ev_loop *loop;
    size_t n;
    char *lines[MAX_REC];
    size_t lens[MAX_REC];
    uint64_t line_nos[MAX_REC];
    unsigned flags[MAX_REC];
    double times[MAX_REC];
    int done_calls;
    int done_err;
    bool pause_on_first; /* pause the source from inside the first on_line */
};

static void rec_line(void *ud, struct source *src, char *line, size_t len, uint64_t line_no,
                     unsigned flags)
{
    struct rec *r = ud;
    if (r->n >= MAX_REC)
        return;
    r->lines[r->n] = strndup(line, len);
    r->lens[r->n] = len;
    r->line_nos[r->n] = line_no;
    r->flags[r->n] = flags;
    r->times[r->n] = util_mono();
    r->n++;
    if (r->pause_on_first && r->n == 1)
        source_pause(src);
}

static void rec_done(void *ud, struct source *src, int err)
{
    struct rec *r = ud;
    (void)src;
    r->done_calls++;
    r->done_err = err;
}

static void rec_free(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i]);
    free(r);
}

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->loop = EV_DEFAULT;
    return r;
}

typedef bool (*pred_fn)(void *ctx);

struct waiter {
    ev_timer poll;
    ev_timer deadline;
    pred_fn pred;
    void *ctx;
    bool ok;
};

static void waiter_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct waiter *wt = container_of(w, struct waiter, poll);
    if (wt->pred && wt->pred(wt->ctx)) {
        wt->ok = true;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void waiter_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Run the loop until pred(ctx) holds (checked every 5 ms) or `timeout` seconds pass.
 * pred NULL: just run for `timeout` seconds. Returns whether pred became true. */
static bool run_until(struct ev_loop *loop, pred_fn pred, void *ctx, double timeout)
{
    struct waiter wt = {.pred = pred, .ctx = ctx};
    if (pred && pred(ctx))
        return true;
    ev_now_update(loop); /* time spent outside the loop must not shorten the deadline */
    ev_timer_init(&wt.poll, waiter_poll_cb, 0.005, 0.005);
    ev_timer_init(&wt.deadline, waiter_deadline_cb, timeout, 0.);
    ev_timer_start(loop, &wt.poll);
    ev_timer_start(loop, &wt.deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &wt.poll);
    ev_timer_stop(loop, &wt.deadline);
    return wt.ok;
}

struct nlines {
    struct rec *r;
    size_t want;
};

static bool have_lines(void *ctx)
{
    struct nlines *nl = ctx;
    return nl->r->n >= nl->want;
}

static bool rec_is_done(void *ctx)
{
    return ((struct rec *)ctx)->done_calls > 0;
}

static bool src_stopped(void *ctx)
{
    return source_is_stopped(ctx);
}

static bool src_up(void *ctx)
{
    struct source_stats st;
    source_get_stats(ctx, &st);
    return st.up;
}

static bool src_down(void *ctx)
{
    return !src_up(ctx);
}

static struct source_config test_cfg(const char *spec)
{
    struct source_config c = {.spec = spec, .index = 0};
    c.backoff_base = 0.05; /* small ladder so restarts happen within a test */
    c.backoff_max = 0.2;
    c.backoff_stable = 60;
    return c;
}

/* ------------------------------------------------------------------------------------ */
/* Capturing our log (stderr) and looking at processes                                  */
/* ------------------------------------------------------------------------------------ */

struct capture {
    int saved;
    char path[64];
};

static void capture_begin(struct capture *c)
{
    strcpy(c->path, "/tmp/iiotgw-source-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    c->saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Returns the captured text (malloc'd), echoed to stdout so failures can be diagnosed. */
static char *capture_end(struct capture *c)
{
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    char *text = calloc(1, 1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(c->path);
    printf("---- captured log ----\n%s----------------------\n", text);
    return text;
}

static int count_matching_lines(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *line = strndup(p, len);
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
        free(line);
        p = e ? e + 1 : NULL;
    }
    return n;
}

/* Open fds of this process: every source must give back what it opened. */
static int count_fds(void)
{
    int n = 0;
    char path[64];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0)
            n++;
    }
    return n;
}

/* Process state letter from /proc, or 0 when the pid no longer exists. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] ? rp[2] : '?';
}

/* Dead: gone, or a zombie that is not ours to reap (orphan awaiting init). */
static bool pid_dead(void *ctx)
{
    pid_t pid = (pid_t)(intptr_t)ctx;
    char st = proc_state(pid);
    return st == 0 || st == 'Z';
}

static bool pid_gone(void *ctx)
{
    return proc_state((pid_t)(intptr_t)ctx) == 0;
}

/* ------------------------------------------------------------------------------------ */
/* Spec parsing                                                                         */
/* ------------------------------------------------------------------------------------ */

static void test_parse_good(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        int index;
        enum source_kind kind;
        const char *name;
    } good[] = {
        {"exec:probe-rs attach --chip STM32F446RETx firmware.elf", 0, SOURCE_EXEC, "exec0"},
        {"rtt=exec:env A=1 B=2 cmd", 3, SOURCE_EXEC, "rtt"},
        {"exec:FOO=bar cmd", 2, SOURCE_EXEC, "exec2"}, /* '=' after ':' is not a name */
        {"serial:/dev/ttyACM0", 1, SOURCE_SERIAL, "serial1"},
        {"serial:/dev/ttyUSB0:921600", 1, SOURCE_SERIAL, "serial1"},
        {"usb=serial:/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0", 0, SOURCE_SERIAL,
         "usb"},
        {"tcp:localhost:9090", 4, SOURCE_TCP, "tcp4"},
        {"jlink=tcp:127.0.0.1:19021", 0, SOURCE_TCP, "jlink"},
        {"tcp:[::1]:9090", 0, SOURCE_TCP, "tcp0"},
        {"file:/var/log/session.log", 5, SOURCE_FILE, "file5"},
        {"file:C:relative", 0, SOURCE_FILE, "file0"},
        {"stdin", 7, SOURCE_STDIN, "stdin7"},
        {"in.1_x-y=stdin", 0, SOURCE_STDIN, "in.1_x-y"},
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        enum source_kind kind = (enum source_kind) - 1;
        char name[SOURCE_NAME_MAX], err[256] = "untouched";
        int rc =
            source_parse(good[i].spec, good[i].index, &kind, name, sizeof name, err, sizeof err);
        if (rc != 0)
            printf("unexpected failure for %s: %s\n", good[i].spec, err);
        assert_int_equal(rc, 0);
        assert_int_equal(kind, good[i].kind);
        assert_string_equal(name, good[i].name);
    }
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        const char *msg; /* a piece of the expected message */
    } bad[] = {
        {"", "empty spec"},
        {"exec", "missing argument"},
        {"exec:", "missing argument"},
        {"exec:   ", "empty command"},
        {"udp:host:1", "unknown kind \"udp\""},
        {"probe-rs attach", "unknown kind"},
        {"=exec:x", "empty name"},
        {"bad name=exec:x", "invalid name"},
        {"a/b=stdin", "invalid name"},
        {"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn=stdin",
         "name longer than 63"},
        {"stdin:x", "stdin takes no argument"},
        {"tcp:localhost", "expected tcp:HOST:PORT"},
        {"tcp::9090", "empty host"},
        {"tcp:localhost:0", "not a number in 1..65535"},
        {"tcp:localhost:65536", "not a number in 1..65535"},
        {"tcp:localhost:http", "not a number in 1..65535"},
        {"tcp:::1:9090", "IPv6 addresses need brackets"},
        {"tcp:[::1]9090", "expected tcp:[IPV6]:PORT"},
        {"serial:/dev/ttyUSB0:12345", "baud rate 12345 not supported"},
        {"serial:/dev/ttyUSB0:9600000000000", "not supported"},
        {"serial::115200", "empty device"},
        {"file:", "missing argument"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char name[SOURCE_NAME_MAX], err[256] = "";
        int rc = source_parse(bad[i].spec, 0, NULL, name, sizeof name, err, sizeof err);
        printf("%-40s -> %s\n", bad[i].spec, err);
        assert_int_equal(rc, -EINVAL);
        assert_non_null(strstr(err, bad[i].msg));
        /* the message names the spec it is about */
        char quoted[300];
        snprintf(quoted, sizeof quoted, "source \"%s\"", bad[i].spec);
        assert_non_null(strstr(err, quoted));
    }
}

static void test_new_errors(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    struct source *s = (struct source *)1;
    char err[256];

    struct source_config c = test_cfg("file:/nonexistent/iiotgw/session.log");
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), -ENOENT);
    assert_null(s);
    assert_non_null(strstr(err, "/nonexistent/iiotgw/session.log"));

    c = test_cfg("file:/tmp");
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), -EISDIR);

    c = test_cfg("tcp:x");
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "tcp:HOST:PORT"));

    /* ev_child only works on the default loop: refuse instead of never seeing exits */
    struct ev_loop *other = ev_loop_new(EVFLAG_AUTO);
    c = test_cfg("exec:true");
    assert_int_equal(source_new(&s, other, &c, rec_line, rec_done, r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "default libev loop"));
    ev_loop_destroy(other);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------ */
/* file and stdin                                                                       */
/* ------------------------------------------------------------------------------------ */

static void test_file_session(void **state)
{
    (void)state;
    const char *path = IIOTGW_DATA_DIR "/probe-rs-session.log";
    /* The expectation comes from stdio, independently of the framer. */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *want[1000];
    size_t nwant = 0, cap = 0;
    char *line = NULL;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0 && nwant < ARRAY_LEN(want)) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        want[nwant++] = strdup(line);
    }
    free(line);
    fclose(f);
    assert_int_equal(nwant, 401); /* "lines" of tests/data/probe-rs-session.facts.json */

    struct rec *r = rec_new();
    char spec[512], err[256];
    snprintf(spec, sizeof spec, "session=file:%s", path);
    struct source_config c = test_cfg(spec);
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    assert_string_equal(source_name(s), "session");
    assert_true(source_is_finite(s));
    assert_true(run_until(r->loop, rec_is_done, r, 5.0));
    run_until(r->loop, NULL, NULL, 0.05); /* on_done must not come twice */
    assert_int_equal(r->done_calls, 1);
    assert_int_equal(r->done_err, 0);
    assert_int_equal(r->n, nwant);
    for (size_t i = 0; i < nwant; i++) {
        assert_string_equal(r->lines[i], want[i]);
        assert_int_equal(r->line_nos[i], i + 1);
        assert_int_equal(r->flags[i], 0);
        free(want[i]);
    }
    struct source_stats st;
    source_get_stats(s, &st);
    struct stat sb;
    stat(path, &sb);
    assert_int_equal(st.bytes, (uint64_t)sb.st_size);
    assert_int_equal(st.lines, 401);
    assert_int_equal(st.overlong, 0);
    assert_false(st.up);
    source_free(s);
    rec_free(r);
}

struct pause_check {
    struct rec *r;
    struct source *s;
    size_t lines_at_pause;
    bool checked;
};

static void resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pause_check *pc = w->data;
    /* 100 ms paused: nothing may have arrived beyond the chunk being framed at pause time */
    assert_int_equal(pc->r->n, pc->lines_at_pause);
    assert_int_equal(pc->r->done_calls, 0);
    pc->checked = true;
    source_resume(pc->s);
}

static void test_file_pause_overlong(void **state)
{
    (void)state;
    int fds_before = count_fds();
    char path[] = "/tmp/iiotgw-source-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 1; i <= 5000; i++) /* ~500 KB: several 64 KiB chunks */
        fprintf(f, "line %06d %s\n", i,
                "................................................................................");
    for (int i = 0; i < 10000; i++)
        fputc('A', f);
    fputs("\nafter\ntail", f); /* last line without '\n' */
    fclose(f);

    struct rec *r = rec_new();
    r->pause_on_first = true;
    char spec[128], err[256];
    snprintf(spec, sizeof spec, "file:%s", path);
    struct source_config c = test_cfg(spec);
    c.max_line = 200;
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);

    /* The first chunk is framed completely, then the reader stays off while paused. */
    struct nlines one = {r, 1};
    assert_true(run_until(r->loop, have_lines, &one, 2.0));
    run_until(r->loop, NULL, NULL, 0.01);
    struct pause_check pc = {.r = r, .s = s, .lines_at_pause = r->n};
    assert_true(pc.lines_at_pause < 5000);
    ev_timer resume;
    ev_timer_init(&resume, resume_cb, 0.1, 0.);
    resume.data = &pc;
    ev_timer_start(r->loop, &resume);
    assert_true(run_until(r->loop, rec_is_done, r, 5.0));
    assert_true(pc.checked);

    assert_int_equal(r->done_calls, 1);
    assert_int_equal(r->n, 5003);
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(r->line_nos[i], i + 1);
    char want5000[128];
    snprintf(want5000, sizeof want5000, "line 005000 %.80s",
             "................................................................................");
    assert_string_equal(r->lines[4999], want5000);
    assert_int_equal(r->lens[5000], 200);
    assert_int_equal(r->flags[5000], FRAME_OVERLONG);
    assert_string_equal(r->lines[5001], "after");
    assert_int_equal(r->flags[5001], 0);
    assert_string_equal(r->lines[5002], "tail");
    assert_int_equal(r->flags[5002], FRAME_EOF);
    struct source_stats st;
    source_get_stats(s, &st);
    assert_int_equal(st.lines, 5003);
    assert_int_equal(st.overlong, 1);
    source_free(s);
    unlink(path);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

struct writer {
    ev_timer t;
    int fd;
};

static void late_write_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct writer *wr = container_of(w, struct writer, t);
    assert_int_equal(write(wr->fd, "c\nd", 3), 3);
    close(wr->fd); /* EOF for the reader */
}

static void test_stdin_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved_stdin = dup(STDIN_FILENO);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(write(p[1], "a\nb\n", 4), 4);

    struct rec *r = rec_new();
    char err[256];
    struct source_config c = test_cfg("stdin");
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    assert_string_equal(source_name(s), "stdin0");
    /* the rest arrives later, so the reader must wait on the pipe without blocking */
    struct writer wr = {.fd = p[1]};
    ev_now_update(r->loop); /* the 0.1 s are measured from now, not the last loop pass */
    ev_timer_init(&wr.t, late_write_cb, 0.1, 0.);
    ev_timer_start(r->loop, &wr.t);
    assert_true(run_until(r->loop, rec_is_done, r, 3.0));
    assert_int_equal(r->n, 4);
    assert_string_equal(r->lines[0], "a");
    assert_string_equal(r->lines[2], "c");
    assert_string_equal(r->lines[3], "d");
    assert_int_equal(r->flags[3], FRAME_EOF);
    assert_int_equal(r->line_nos[3], 4);
    assert_int_equal(r->done_err, 0);
    assert_true(r->times[2] - r->times[1] >= 0.09);
    /* O_NONBLOCK was set on the shared description and must be restored at EOF */
    assert_int_equal(fcntl(STDIN_FILENO, F_GETFL) & O_NONBLOCK, 0);
    source_free(s);
    dup2(saved_stdin, STDIN_FILENO);
    close(saved_stdin);
    close(p[0]);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------ */
/* exec                                                                                 */
/* ------------------------------------------------------------------------------------ */

static void test_exec_restart(void **state)
{
    (void)state;
    int fds_before = count_fds();
    struct capture cap;
    capture_begin(&cap);
    struct rec *r = rec_new();
    char err[256];
    struct source_config c =
        test_cfg("probe=exec:echo out1; echo out2; echo 'oops: error 42' >&2; printf part; exit 3");
    c.backoff_max = 1.0;
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    assert_false(source_is_finite(s));
    /* 5 runs: delays of the ladder are 0.025-0.05, 0.05-0.1, 0.1-0.2, 0.2-0.4 s */
    struct nlines nl = {r, 15};
    bool ok = run_until(r->loop, have_lines, &nl, 5.0);
    struct source_stats st;
    source_get_stats(s, &st);
    source_stop(s);
    assert_true(run_until(r->loop, src_stopped, s, 3.0));
    source_free(s);
    char *log = capture_end(&cap);
    assert_true(ok);

    /* every run: out1, out2, then the unterminated "part" flushed at exit */
    double t_out1[5];
    for (int run = 0; run < 5; run++) {
        assert_string_equal(r->lines[run * 3], "out1");
        assert_string_equal(r->lines[run * 3 + 1], "out2");
        assert_string_equal(r->lines[run * 3 + 2], "part");
        assert_int_equal(r->flags[run * 3 + 2], FRAME_EOF);
        t_out1[run] = r->times[run * 3];
    }
    for (size_t i = 0; i < 15; i++)
        assert_int_equal(r->line_nos[i], i + 1); /* numbering continues across restarts */
    double g0 = t_out1[1] - t_out1[0], g3 = t_out1[4] - t_out1[3];
    printf("gap run0->1 %.3f s, run3->4 %.3f s\n", g0, g3);
    assert_true(g3 >= 0.195); /* nominal 0.4 s, equal jitter: at least 0.2 s */
    assert_true(g0 < 0.15);   /* nominal 0.05 s plus a fork/exec */
    assert_true(g3 > g0);
    assert_true(st.restarts >= 4);
    /* every run after the first is one restart: the counter matches the starts logged */
    int started = count_matching_lines(log, "event=source_started source=probe", NULL);
    assert_int_equal(st.restarts, (uint64_t)started - 1);
    assert_int_equal(r->done_calls, 0);

    assert_true(count_matching_lines(log, "level=warn event=source_stderr source=probe",
                                     "oops: error 42") >= 5);
    assert_true(count_matching_lines(log, "event=source_exited source=probe", "status=3") >= 5);
    assert_true(count_matching_lines(log, "event=source_exited", "restart_in=") >= 5);
    free(log);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

/* The restart_in= values of a source's source_exited lines, in order; returns how many. */
static int restart_delays(const char *log, const char *name, double *out, int max)
{
    char key[96];
    snprintf(key, sizeof key, "event=source_exited source=%s ", name);
    int n = 0;
    for (const char *p = strstr(log, key); p && n < max; p = strstr(p + 1, key)) {
        const char *eol = strchr(p, '\n'), *ri = strstr(p, "restart_in=");
        if (ri && (!eol || ri < eol))
            out[n++] = strtod(ri + strlen("restart_in="), NULL);
    }
    return n;
}

/* One command, two policies: runs that last longer than backoff_stable reset the ladder, so
 * every restart waits the base delay; with a long stable period the same runs climb it. */
static void test_exec_backoff_stable(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        double stable;
    } cases[] = {
        {"steady=exec:echo run; sleep 0.3; exit 1", 0.25},
        {"climbing=exec:echo run; sleep 0.3; exit 1", 60},
    };
    double delays[2][8];
    int nd[2];
    uint64_t restarts[2];
    struct capture cap;
    capture_begin(&cap);
    for (int k = 0; k < 2; k++) {
        struct rec *r = rec_new();
        char err[256];
        struct source_config c = test_cfg(cases[k].spec);
        c.backoff_base = 0.1; /* ladder 0.1, 0.2, 0.4, 0.8 (each drawn from [d/2, d]) */
        c.backoff_max = 0.8;
        c.backoff_stable = cases[k].stable;
        struct source *s;
        assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
        struct nlines nl = {r, 5}; /* 5 runs: 4 exits with a restart delay */
        bool ok = run_until(r->loop, have_lines, &nl, 8.0);
        struct source_stats st;
        source_get_stats(s, &st);
        restarts[k] = st.restarts;
        source_stop(s);
        assert_true(run_until(r->loop, src_stopped, s, 3.0));
        source_free(s);
        rec_free(r);
        assert_true(ok);
    }
    char *log = capture_end(&cap);
    nd[0] = restart_delays(log, "steady", delays[0], 8);
    nd[1] = restart_delays(log, "climbing", delays[1], 8);
    free(log);
    assert_true(nd[0] >= 4 && nd[1] >= 4);
    for (int k = 0; k < 2; k++)
        assert_int_equal(restarts[k], 4);
    for (int i = 0; i < 4; i++) /* reset every time: always the base delay */
        assert_true(delays[0][i] >= 0.05 && delays[0][i] <= 0.1);
    assert_true(delays[1][0] <= 0.1); /* first step of the ladder */
    assert_true(delays[1][3] >= 0.4); /* fourth: nominal 0.8, at least half of it */
}

static pid_t line_pid(struct rec *r, size_t i)
{
    assert_true(i < r->n);
    return (pid_t)atoi(r->lines[i]);
}

static void test_exec_stop_group(void **state)
{
    (void)state;
    int fds_before = count_fds();
    struct rec *r = rec_new();
    char err[256];
    /* the shell and a grandchild in the background: both must go on stop */
    struct source_config c = test_cfg("exec:echo $$; sleep 100 & echo $!; echo hi; wait");
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    struct nlines nl = {r, 3};
    assert_true(run_until(r->loop, have_lines, &nl, 3.0));
    pid_t sh = line_pid(r, 0), grandchild = line_pid(r, 1);
    assert_true(sh > 1 && grandchild > 1);
    assert_string_equal(r->lines[2], "hi");
    assert_int_equal(proc_state(grandchild) != 0, 1);

    double t0 = util_mono();
    source_stop(s);
    source_stop(s);                     /* idempotent */
    assert_false(source_is_stopped(s)); /* the child is not reaped yet */
    bool stopped = run_until(r->loop, src_stopped, s, 3.0);
    printf("stop took %.3f s\n", util_mono() - t0);
    assert_true(stopped);
    assert_true(util_mono() - t0 < 1.5); /* SIGTERM sufficed, no 2 s SIGKILL wait */
    /* the shell was reaped by us (libev): no zombie, nothing left to wait for */
    assert_true(pid_gone((void *)(intptr_t)sh));
    errno = 0;
    assert_int_equal(waitpid(sh, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    /* the grandchild got the group's SIGTERM (it is init's to reap, not ours) */
    assert_true(run_until(r->loop, pid_dead, (void *)(intptr_t)grandchild, 2.0));
    struct source_stats st;
    source_get_stats(s, &st);
    assert_false(st.up);
    source_free(s);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

static void test_exec_sigkill(void **state)
{
    (void)state;
    struct capture cap;
    capture_begin(&cap);
    struct rec *r = rec_new();
    char err[256];
    /* ignores SIGTERM (and so do its children: SIG_IGN survives exec) */
    struct source_config c =
        test_cfg("stubborn=exec:trap '' TERM; echo $$; while :; do sleep 0.05; done");
    c.kill_timeout = 0.3;
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    struct nlines nl = {r, 1};
    bool ok = run_until(r->loop, have_lines, &nl, 3.0);
    pid_t sh = ok ? line_pid(r, 0) : 0;
    double t0 = util_mono();
    source_stop(s);
    bool stopped = run_until(r->loop, src_stopped, s, 3.0);
    double took = util_mono() - t0;
    source_free(s);
    char *log = capture_end(&cap);
    assert_true(ok && stopped);
    printf("stop took %.3f s\n", took);
    assert_true(took >= 0.29); /* SIGTERM was ignored: only the SIGKILL ended it */
    assert_true(took < 2.0);
    assert_true(pid_gone((void *)(intptr_t)sh));
    assert_int_equal(count_matching_lines(log, "event=source_kill source=stubborn", "KILL"), 1);
    free(log);
    rec_free(r);
}

static void test_exec_fds(void **state)
{
    (void)state;
    int fds_before = count_fds();
    int leak = dup(STDOUT_FILENO); /* deliberately without O_CLOEXEC */
    assert_true(leak > 2);
    struct rec *r = rec_new();
    char err[256];
    /* the command sees exactly stdin, stdout, stderr (+ ls's own directory fd) */
    struct source_config c = test_cfg("exec:ls /proc/self/fd; exec sleep 100");
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    struct nlines nl = {r, 4};
    assert_true(run_until(r->loop, have_lines, &nl, 3.0));
    run_until(r->loop, NULL, NULL, 0.05);
    assert_int_equal(r->n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atoi(r->lines[i]), i);
    source_stop(s);
    assert_true(run_until(r->loop, src_stopped, s, 3.0));
    source_free(s);
    close(leak);
    assert_int_equal(count_fds(), fds_before);
    rec_free(r);
}

static void test_exec_free_reaps(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    char err[256];
    struct source_config c = test_cfg("exec:echo $$; exec sleep 100");
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    struct nlines nl = {r, 1};
    assert_true(run_until(r->loop, have_lines, &nl, 3.0));
    pid_t pid = line_pid(r, 0);
    /* freed while the child runs: it is killed, and the default loop still reaps it */
    source_free(s);
    assert_true(run_until(r->loop, pid_gone, (void *)(intptr_t)pid, 3.0));
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------ */
/* tcp                                                                                  */
/* ------------------------------------------------------------------------------------ */

struct server {
    struct ev_loop *loop;
    ev_io accept_io;
    ev_timer relisten;
    int lfd;
    int conn;
    int port;
    int accepts;
};

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void server_accept_cb(struct ev_loop *loop, ev_io *w, int revents);

static void server_relisten_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *sv = container_of(w, struct server, relisten);
    sv->lfd = listen_on(sv->port);
    ev_io_init(&sv->accept_io, server_accept_cb, sv->lfd, EV_READ);
    ev_io_start(loop, &sv->accept_io);
}

static void server_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct server *sv = container_of(w, struct server, accept_io);
    int fd = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    sv->accepts++;
    if (sv->accepts == 1) {
        /* first connection: two lines and a torn one, then the server goes away entirely */
        assert_int_equal(write(fd, "one\ntwo\npartial", 15), 15);
        close(fd);
        ev_io_stop(loop, &sv->accept_io);
        close(sv->lfd);
        sv->lfd = -1;
        ev_timer_init(&sv->relisten, server_relisten_cb, 0.3, 0.);
        ev_timer_start(loop, &sv->relisten);
    } else {
        assert_int_equal(write(fd, "three\n", 6), 6);
        sv->conn = fd; /* keep it open */
    }
}

static void test_tcp_reconnect(void **state)
{
    (void)state;
    int fds_before = count_fds();
    struct capture cap;
    capture_begin(&cap);
    struct server sv = {.loop = EV_DEFAULT, .conn = -1};
    sv.lfd = listen_on(0);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    getsockname(sv.lfd, (struct sockaddr *)&a, &al);
    sv.port = ntohs(a.sin_port);
    ev_io_init(&sv.accept_io, server_accept_cb, sv.lfd, EV_READ);
    ev_io_start(sv.loop, &sv.accept_io);

    struct rec *r = rec_new();
    char spec[64], err[256];
    snprintf(spec, sizeof spec, "rtt=tcp:localhost:%d", sv.port);
    struct source_config c = test_cfg(spec);
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    struct nlines nl = {r, 3};
    bool ok = run_until(r->loop, have_lines, &nl, 5.0);
    run_until(r->loop, NULL, NULL, 0.05);
    struct source_stats st;
    source_get_stats(s, &st);
    source_free(s);
    char *log = capture_end(&cap);
    assert_true(ok);

    /* the torn "partial" of the dead connection is dropped, not glued to "three" */
    assert_int_equal(r->n, 3);
    assert_string_equal(r->lines[0], "one");
    assert_string_equal(r->lines[1], "two");
    assert_string_equal(r->lines[2], "three");
    assert_int_equal(sv.accepts, 2);
    assert_int_equal(st.restarts, 1);
    assert_true(st.up);
    assert_int_equal(st.bytes, 15 + 6);
    /* down once at warn; the refused attempts while the server was away: one warn */
    assert_int_equal(count_matching_lines(log, "level=warn event=source_down source=rtt", NULL), 1);
    assert_int_equal(count_matching_lines(log, "level=warn event=source_failed source=rtt",
                                          "Connection refused"),
                     1);
    assert_int_equal(count_matching_lines(log, "event=source_up source=rtt", NULL), 2);
    if (sv.conn >= 0)
        close(sv.conn);
    ev_io_stop(sv.loop, &sv.accept_io);
    if (sv.lfd >= 0)
        close(sv.lfd);
    free(log);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

/* ------------------------------------------------------------------------------------ */
/* serial (pseudo-terminal)                                                             */
/* ------------------------------------------------------------------------------------ */

static int pty_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -errno : fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* A new pty whose slave is reachable at `link` (re-pointed atomically); returns the master.
 * The test keeps only the master, like a USB adapter the source is the only user of. */
static int plug_pty(const char *link)
{
    int m, sl;
    char name[128], tmp[300];
    /* The kernel's defaults for a new tty (cooked: ICANON, ECHO, ICRNL, OPOST; 38400 baud),
     * as a freshly plugged adapter has them: every raw/8N1/baud setting the tests see must
     * come from the source. */
    assert_int_equal(openpty(&m, &sl, name, NULL, NULL), 0);
    struct termios t;
    assert_int_equal(tcgetattr(sl, &t), 0);
    assert_true(t.c_lflag & ICANON);
    close(sl);
    fcntl(m, F_SETFD, FD_CLOEXEC);
    snprintf(tmp, sizeof tmp, "%s.new", link);
    unlink(tmp);
    assert_int_equal(symlink(name, tmp), 0);
    assert_int_equal(rename(tmp, link), 0);
    return m;
}

static void test_serial_pty_replug(void **state)
{
    (void)state;
    int fds_before = count_fds();
    struct capture cap;
    capture_begin(&cap);
    char dir[] = "/tmp/iiotgw-source-tty-XXXXXX", link[128];
    assert_non_null(mkdtemp(dir));
    snprintf(link, sizeof link, "%s/ttyUSB", dir);

    struct rec *r = rec_new();
    char spec[200], err[256];
    snprintf(spec, sizeof spec, "usb=serial:%s:57600", link);
    struct source_config c = test_cfg(spec);
    struct source *s;
    /* not plugged in at start: the source keeps retrying and logs that once */
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    run_until(r->loop, NULL, NULL, 0.4); /* >= 3 attempts on the 0.05 s ladder */
    struct source_stats st;
    source_get_stats(s, &st);
    bool was_up_early = st.up;

    int m = plug_pty(link);
    bool up1 = run_until(r->loop, src_up, s, 2.0);
    /* the slave's termios (the master reports them): raw 8N1, 57600, no flow control */
    struct termios t;
    assert_int_equal(tcgetattr(m, &t), 0);
    assert_int_equal(write(m, "s1\ns2\n", 6), 6);
    struct nlines nl = {r, 2};
    bool got2 = run_until(r->loop, have_lines, &nl, 2.0);

    close(m); /* unplug */
    bool down = run_until(r->loop, src_down, s, 2.0);
    m = plug_pty(link); /* replug, possibly as a different /dev/pts/N */
    bool up2 = run_until(r->loop, src_up, s, 2.0);
    assert_int_equal(write(m, "s3\n", 3), 3);
    nl.want = 3;
    bool got3 = run_until(r->loop, have_lines, &nl, 2.0);
    source_get_stats(s, &st);
    source_stop(s);
    bool stopped = source_is_stopped(s);
    source_free(s);
    close(m);
    char *log = capture_end(&cap);
    unlink(link);
    rmdir(dir);

    assert_false(was_up_early);
    assert_true(up1 && got2 && down && up2 && got3 && stopped);
    assert_int_equal(cfgetospeed(&t), B57600);
    assert_int_equal(cfgetispeed(&t), B57600);
    assert_int_equal(t.c_cflag & CSIZE, CS8);
    assert_int_equal(t.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0);
    assert_int_equal(t.c_cflag & (CLOCAL | CREAD), CLOCAL | CREAD);
    assert_int_equal(t.c_lflag & (ICANON | ECHO | ISIG), 0);
    assert_int_equal(t.c_iflag & (IXON | IXOFF | ICRNL), 0);
    assert_int_equal(t.c_oflag & OPOST, 0);

    assert_int_equal(r->n, 3);
    assert_string_equal(r->lines[0], "s1");
    assert_string_equal(r->lines[1], "s2");
    assert_string_equal(r->lines[2], "s3");
    assert_int_equal(st.restarts, 1);
    /* missing device: several attempts, one warn (the rest at debug) */
    assert_int_equal(count_matching_lines(log, "level=warn event=source_failed source=usb",
                                          "No such file or directory"),
                     1);
    assert_int_equal(count_matching_lines(log, "level=warn event=source_down source=usb", NULL), 1);
    assert_int_equal(count_matching_lines(log, "event=source_up source=usb", "baud=57600"), 2);
    free(log);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

/* Feeds a buffer into a non-blocking pty master as fast as the tty layer takes it. */
struct pty_feed {
    ev_io io;
    const char *data;
    size_t len, off;
};

static void pty_feed_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct pty_feed *pf = container_of(w, struct pty_feed, io);
    ssize_t n = write(w->fd, pf->data + pf->off, pf->len - pf->off);
    if (n > 0)
        pf->off += (size_t)n;
    if (pf->off == pf->len || (n < 0 && errno != EAGAIN))
        ev_io_stop(loop, w);
}

/* No :BAUD in the spec: 115200. A stream much larger than the tty buffers arrives complete
 * and in order, and raw mode really is raw: the "\r" before each "\n" is not turned into a
 * second line end (ICRNL) and nothing is echoed back (ECHO would feed the master). */
static void test_serial_pty_stream(void **state)
{
    (void)state;
    int fds_before = count_fds();
    char dir[] = "/tmp/iiotgw-source-tty-XXXXXX", link[128];
    assert_non_null(mkdtemp(dir));
    snprintf(link, sizeof link, "%s/ttyACM", dir);
    int m = plug_pty(link);
    assert_int_equal(pty_set_nonblock(m), 0);

    enum { NLINES = 3000 };
    size_t cap = NLINES * 64, len = 0;
    char *data = malloc(cap);
    assert_non_null(data);
    for (int i = 1; i <= NLINES; i++)
        len += (size_t)snprintf(data + len, cap - len,
                                "{\"node\":%d,\"seq\":%d,\"t\":21.5,\"rssi\":-97}\r\n", i % 7, i);

    struct rec *r = rec_new();
    char spec[200], err[256];
    snprintf(spec, sizeof spec, "acm=serial:%s", link);
    struct source_config c = test_cfg(spec);
    struct source *s;
    assert_int_equal(source_new(&s, r->loop, &c, rec_line, rec_done, r, err, sizeof err), 0);
    assert_int_equal(source_kind(s), SOURCE_SERIAL);
    assert_false(source_is_finite(s));
    bool up = run_until(r->loop, src_up, s, 2.0);
    struct termios t;
    assert_int_equal(tcgetattr(m, &t), 0);

    struct pty_feed pf = {.data = data, .len = len};
    ev_io_init(&pf.io, pty_feed_cb, m, EV_WRITE);
    ev_io_start(r->loop, &pf.io);
    struct nlines nl = {r, NLINES};
    bool got = run_until(r->loop, have_lines, &nl, 10.0);
    run_until(r->loop, NULL, NULL, 0.05); /* nothing extra may follow */
    ev_io_stop(r->loop, &pf.io);
    char echo[64];
    ssize_t echoed = read(m, echo, sizeof echo);
    struct source_stats st;
    source_get_stats(s, &st);
    source_free(s);
    close(m);
    unlink(link);
    rmdir(dir);

    assert_true(up && got);
    assert_int_equal(cfgetospeed(&t), B115200);
    assert_int_equal(cfgetispeed(&t), B115200);
    assert_int_equal(pf.off, len);
    assert_int_equal(r->n, NLINES);
    for (int i = 1; i <= NLINES; i++) {
        char want[96];
        snprintf(want, sizeof want, "{\"node\":%d,\"seq\":%d,\"t\":21.5,\"rssi\":-97}\r", i % 7, i);
        assert_string_equal(r->lines[i - 1], want);
        assert_int_equal(r->line_nos[i - 1], (uint64_t)i);
    }
    assert_true(echoed <= 0); /* no echo */
    assert_int_equal(st.bytes, len);
    assert_int_equal(st.lines, NLINES);
    assert_int_equal(st.restarts, 0);
    assert_true(st.up);
    free(data);
    assert_int_equal(count_fds(), fds_before); /* nothing leaked */
    rec_free(r);
}

/* ------------------------------------------------------------------------------------ */
/* main                                                                                 */
/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    /* the daemon ignores SIGPIPE; children must still get the default (see exec_child) */
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LL_INFO);
    /* create the default loop (epoll fd, SIGCHLD pipe) up front so fd counts balance */
    ev_default_loop(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_file_session),
        cmocka_unit_test(test_file_pause_overlong),
        cmocka_unit_test(test_stdin_pipe),
        cmocka_unit_test(test_exec_restart),
        cmocka_unit_test(test_exec_backoff_stable),
        cmocka_unit_test(test_exec_stop_group),
        cmocka_unit_test(test_exec_sigkill),
        cmocka_unit_test(test_exec_fds),
        cmocka_unit_test(test_exec_free_reaps),
        cmocka_unit_test(test_tcp_reconnect),
        cmocka_unit_test(test_serial_pty_replug),
        cmocka_unit_test(test_serial_pty_stream),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("source", tests, NULL, NULL);
}
