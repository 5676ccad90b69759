/*
 * source.c — where telemetry lines come from, on the libev loop. See source.h for the contract.
 *
 * Why this shape: every kind of source ends in the same place (an fd that becomes readable, a
 * framer, a line callback), so one struct serves all five kinds and the kinds differ only in
 * how the fd is obtained and what happens when it ends:
 *   - live sources (exec, serial, tcp) never give up: on EOF/error/exit they close, wait a
 *     backoff delay (backoff.h) and try again; a failure is logged at warn once per state
 *     change, repeats of the same failure only at debug;
 *   - finite sources (file, stdin) read to EOF, flush the framer and call on_done once.
 * Nothing here blocks the loop: every fd is O_NONBLOCK and every wait is an ev_timer. The one
 * exception is name resolution for tcp (getaddrinfo is synchronous); the intended targets
 * (OpenOCD / J-Link RTT servers) are on localhost, where it is answered from /etc/hosts.
 *
 * exec children: fork, setsid (the child leads its own process group so that stop can signal
 * everything it spawned), /bin/sh -c CMD with stdout/stderr on two pipes. Exit is seen with
 * ev_child, which libev only supports on the default loop: the daemon runs on EV_DEFAULT.
 * libev's default loop also reaps every child it is told about via SIGCHLD, so a child whose
 * source was freed before it exited is still reaped (never a zombie).
 *
 * Ownership: struct source is allocated by source_new() and owned by the caller
 * (source_free()). Owner of this file and source.h: sources engineer.
 */
#include "source.h"

#include "backoff.h"
#include "frame.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Constants                                                                            */
/* ------------------------------------------------------------------------------------ */

#define READ_CHUNK          (64 * 1024) /* one read(2); also the pause granularity */
#define LIVE_READ_BUDGET    8           /* reads per wakeup, so one busy fd cannot starve others */
#define STDERR_MAX_LINE     1024        /* exec stderr lines are logged, not parsed */
#define TCP_CONNECT_TIMEOUT 10.0        /* a SYN into a black hole would otherwise take minutes */
#define KILL_POLL           0.05        /* how often a dying process group is checked */
#define PIPE_DRAIN_BUDGET   16          /* 16 x 64 KiB covers the largest pipe buffer (1 MiB) */

static const char *const kind_names[] = {"exec", "serial", "tcp", "file", "stdin"};

/* The rates USB-serial adapters and MCU UARTs actually use; anything else is a typo. */
static const struct {
    int baud;
    speed_t speed;
} baud_table[] = {
    {9600, B9600},     {19200, B19200},   {38400, B38400},   {57600, B57600},   {115200, B115200},
    {230400, B230400}, {460800, B460800}, {500000, B500000}, {576000, B576000}, {921600, B921600},
};

/* ------------------------------------------------------------------------------------ */
/* State                                                                                */
/* ------------------------------------------------------------------------------------ */

struct source {
    struct ev_loop *loop;
    enum source_kind kind;
    char name[SOURCE_NAME_MAX];
    char *arg;  /* exec: command; file: path; serial: device; tcp: host (all heap) */
    char *port; /* tcp only (heap) */
    speed_t speed;
    int baud;

    source_line_cb on_line;
    source_done_cb on_done;
    void *ud;

    struct framer fr;     /* data stream */
    struct framer err_fr; /* exec stderr, for logging */
    struct backoff bo;
    double kill_timeout;

    int fd; /* data fd: exec stdout pipe, serial tty, tcp socket, file, stdin dup */
    ev_io io;
    ev_idle idle; /* regular files are always "readable": read one chunk per idle pass */
    bool use_idle;
    int err_fd; /* exec stderr pipe */
    ev_io err_io;
    ev_timer retry;      /* backoff delay before the next attempt; tcp connect timeout */
    ev_timer kill_timer; /* exec: polls a SIGTERMed group, SIGKILL at kill_deadline */
    ev_child child;

    pid_t pid;            /* exec: running child, 0 once reaped */
    pid_t pgid;           /* exec: process group still to be cleaned up, 0 when none */
    bool killed;          /* SIGKILL already sent to pgid */
    double kill_deadline; /* ev_now() after which a SIGTERMed group gets SIGKILL */
    double up_at;         /* monotonic time the current run/connection started */
    int last_err;         /* last failure logged at warn: errno, or a (negative) getaddrinfo code */
    bool ever_up;         /* first success is not a restart */
    int stdin_flags;      /* stdin: file status flags to restore (the description is shared) */
    bool restore_flags;

    struct addrinfo *ai;      /* tcp: resolved list, kept while trying its entries */
    struct addrinfo *ai_next; /* tcp: next entry to try */
    bool connecting;

    bool stopped;
    bool paused;
    bool done;
    struct source_stats st;
    char rbuf[READ_CHUNK];
};

/* ------------------------------------------------------------------------------------ */
/* Spec parsing                                                                         */
/* ------------------------------------------------------------------------------------ */

/* The parsed form of a spec: pointers into the spec string plus lengths. */
struct spec {
    enum source_kind kind;
    char name[SOURCE_NAME_MAX];
    const char *arg; /* after "KIND:" (exec command, file path, serial device, tcp host) */
    size_t arg_len;
    const char *port; /* tcp */
    size_t port_len;
    int baud; /* serial */
    speed_t speed;
};

static int spec_error(char *err, size_t errlen, const char *spec, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int spec_error(char *err, size_t errlen, const char *spec, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "source \"%s\": ", spec);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static bool name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static bool all_digits(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

static long parse_num(const char *p, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n && v < 100000000; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

/* tcp:HOST:PORT, HOST may be [v6addr] */
static int spec_parse_tcp(struct spec *sp, const char *spec, char *err, size_t errlen)
{
    const char *a = sp->arg, *colon;
    size_t n = sp->arg_len;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close || close[1] != ':')
            return spec_error(err, errlen, spec, "expected tcp:[IPV6]:PORT");
        sp->arg = a + 1;
        sp->arg_len = (size_t)(close - a - 1);
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon)
            return spec_error(err, errlen, spec, "expected tcp:HOST:PORT");
        sp->arg_len = (size_t)(colon - a);
        if (memchr(a, ':', sp->arg_len))
            return spec_error(err, errlen, spec,
                              "IPv6 addresses need brackets, e.g. tcp:[::1]:9090");
    }
    if (sp->arg_len == 0)
        return spec_error(err, errlen, spec, "empty host (expected tcp:HOST:PORT)");
    sp->port = colon + 1;
    sp->port_len = strlen(sp->port);
    if (!all_digits(sp->port, sp->port_len) || sp->port_len > 5 ||
        parse_num(sp->port, sp->port_len) < 1 || parse_num(sp->port, sp->port_len) > 65535)
        return spec_error(err, errlen, spec, "port \"%s\" is not a number in 1..65535", sp->port);
    return 0;
}

/* serial:DEV[:BAUD] — the baud is the part after the last ':' only when it is all digits,
 * because /dev/serial/by-path names contain ':' themselves. */
static int spec_parse_serial(struct spec *sp, const char *spec, char *err, size_t errlen)
{
    const char *colon = memrchr(sp->arg, ':', sp->arg_len);
    sp->baud = 115200;
    if (colon && all_digits(colon + 1, strlen(colon + 1))) {
        size_t blen = strlen(colon + 1);
        long baud = blen > 8 ? -1 : parse_num(colon + 1, blen);
        sp->arg_len = (size_t)(colon - sp->arg);
        sp->baud = -1;
        for (size_t i = 0; i < ARRAY_LEN(baud_table); i++)
            if (baud_table[i].baud == baud)
                sp->baud = (int)baud;
        if (sp->baud < 0)
            return spec_error(err, errlen, spec,
                              "baud rate %s not supported (use 9600, 19200, 38400, 57600, "
                              "115200, 230400, 460800, 500000, 576000 or 921600)",
                              colon + 1);
    }
    if (sp->arg_len == 0)
        return spec_error(err, errlen, spec, "empty device (expected serial:DEV[:BAUD])");
    for (size_t i = 0; i < ARRAY_LEN(baud_table); i++)
        if (baud_table[i].baud == sp->baud)
            sp->speed = baud_table[i].speed;
    return 0;
}

static int spec_parse(const char *spec, int index, struct spec *sp, char *err, size_t errlen)
{
    memset(sp, 0, sizeof *sp);
    if (err && errlen)
        err[0] = '\0';
    if (!spec || !*spec)
        return spec_error(err, errlen, spec ? spec : "",
                          "empty spec (expected [NAME=]KIND:ARG, KIND one of exec, serial, "
                          "tcp, file, stdin)");

    /* NAME= only counts before the first ':' (commands may contain '='). */
    const char *rest = spec;
    const char *eq = strchr(spec, '=');
    const char *colon = strchr(spec, ':');
    if (eq && (!colon || eq < colon)) {
        size_t nlen = (size_t)(eq - spec);
        if (nlen == 0)
            return spec_error(err, errlen, spec, "empty name before '='");
        if (nlen >= SOURCE_NAME_MAX)
            return spec_error(err, errlen, spec, "name longer than %d characters",
                              SOURCE_NAME_MAX - 1);
        for (size_t i = 0; i < nlen; i++)
            if (!name_char_ok(spec[i]))
                return spec_error(err, errlen, spec,
                                  "invalid name (allowed: letters, digits, '_', '.', '-')");
        memcpy(sp->name, spec, nlen);
        sp->name[nlen] = '\0';
        rest = eq + 1;
    }

    if (strcmp(rest, "stdin") == 0) {
        sp->kind = SOURCE_STDIN;
        sp->arg = rest + 5;
    } else {
        colon = strchr(rest, ':');
        size_t klen = colon ? (size_t)(colon - rest) : strlen(rest);
        int kind = -1;
        for (size_t i = 0; i < ARRAY_LEN(kind_names); i++)
            if (strlen(kind_names[i]) == klen && strncmp(rest, kind_names[i], klen) == 0)
                kind = (int)i;
        if (kind < 0)
            return spec_error(err, errlen, spec,
                              "unknown kind \"%.*s\" (expected exec, serial, tcp, file or stdin)",
                              (int)klen, rest);
        sp->kind = (enum source_kind)kind;
        if (sp->kind == SOURCE_STDIN)
            return spec_error(err, errlen, spec, "stdin takes no argument");
        if (!colon || !colon[1])
            return spec_error(err, errlen, spec, "missing argument after \"%s:\"",
                              kind_names[kind]);
        sp->arg = colon + 1;
        sp->arg_len = strlen(sp->arg);
    }

    int rc = 0;
    switch (sp->kind) {
    case SOURCE_EXEC:
        if (strspn(sp->arg, " \t") == sp->arg_len)
            rc = spec_error(err, errlen, spec, "empty command");
        break;
    case SOURCE_TCP:
        rc = spec_parse_tcp(sp, spec, err, errlen);
        break;
    case SOURCE_SERIAL:
        rc = spec_parse_serial(sp, spec, err, errlen);
        break;
    case SOURCE_FILE:
    case SOURCE_STDIN:
        break;
    }
    if (rc < 0)
        return rc;
    if (!sp->name[0])
        snprintf(sp->name, sizeof sp->name, "%s%d", kind_names[sp->kind], index);
    return 0;
}

int source_parse(const char *spec, int index, enum source_kind *kind, char *name, size_t namelen,
                 char *err, size_t errlen)
{
    struct spec sp;
    int rc = spec_parse(spec, index, &sp, err, errlen);
    if (rc < 0)
        return rc;
    if (kind)
        *kind = sp.kind;
    if (name && namelen)
        util_strlcpy(name, sp.name, namelen);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Common plumbing: fds, lines, reading                                                 */
/* ------------------------------------------------------------------------------------ */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static void frame_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct source *s = ud;
    if (s->stopped) /* the callback stopped us in the middle of a chunk */
        return;
    s->st.lines++;
    if (flags & FRAME_OVERLONG)
        s->st.overlong++;
    s->on_line(s->ud, s, line, len, line_no, flags);
}

/* Stop the data watchers and close the data fd (restoring stdin's shared flags). */
static void close_data(struct source *s)
{
    ev_io_stop(s->loop, &s->io);
    ev_idle_stop(s->loop, &s->idle);
    if (s->fd >= 0) {
        if (s->restore_flags)
            fcntl(s->fd, F_SETFL, s->stdin_flags);
        close(s->fd);
    }
    s->fd = -1;
    s->restore_flags = false;
    s->connecting = false;
}

static void close_err(struct source *s)
{
    ev_io_stop(s->loop, &s->err_io);
    if (s->err_fd >= 0)
        close(s->err_fd);
    s->err_fd = -1;
}

/*
 * Read up to `budget` chunks from fd into framer fr (the data stream, or exec's stderr).
 * Returns 0 when the fd would block, the budget is used up or a callback paused/stopped us;
 * 1 at EOF; -errno on a read error.
 */
static int read_into(struct source *s, int fd, struct framer *fr, frame_line_cb cb, int budget)
{
    while (budget-- > 0) {
        ssize_t n = read(fd, s->rbuf, sizeof s->rbuf);
        if (n > 0) {
            if (fr == &s->fr)
                s->st.bytes += (uint64_t)n;
            framer_feed(fr, s->rbuf, (size_t)n, cb, s);
            if (s->fd < 0 || s->paused || s->stopped)
                return 0;
            continue;
        }
        if (n == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
    return 0;
}

static int read_some(struct source *s, int budget)
{
    return read_into(s, s->fd, &s->fr, frame_cb, budget);
}

static void start_retry(struct source *s, double delay)
{
    ev_timer_stop(s->loop, &s->retry);
    ev_timer_set(&s->retry, delay, 0.);
    ev_timer_start(s->loop, &s->retry);
}

/* A live source came up: reset the failure state and the framer (old tail is meaningless). */
static void live_up(struct source *s)
{
    s->up_at = util_mono();
    backoff_success(&s->bo, s->up_at);
    if (s->ever_up)
        s->st.restarts++;
    s->ever_up = true;
    s->st.up = true;
    s->last_err = 0;
    framer_reset(&s->fr);
}

/*
 * A live source failed (could not open/connect, or went down). Logs at warn on a change of
 * state (a new error), at debug when the same failure repeats, and arms the retry timer.
 */
static void live_retry(struct source *s, int err, const char *what)
{
    close_data(s);
    bool was_up = s->st.up;
    s->st.up = false;
    double delay = backoff_next(&s->bo, util_mono());
    char q[256], qe[128];
    int level = (was_up || err != s->last_err) ? LL_WARN : LL_DEBUG;
    if (log_enabled(level))
        log_emit(level, was_up ? "source_down" : "source_failed",
                 "source=%s target=%s what=%s err=%s retry_in=%.3f", s->name,
                 log_quote(q, sizeof q, s->arg, (size_t)-1), what,
                 log_quote(qe, sizeof qe, err ? strerror(err) : "eof", (size_t)-1), delay);
    s->last_err = err;
    start_retry(s, delay);
}

/* ------------------------------------------------------------------------------------ */
/* Finite sources: file and stdin                                                       */
/* ------------------------------------------------------------------------------------ */

static void finite_start_reader(struct source *s)
{
    if (s->use_idle)
        ev_idle_start(s->loop, &s->idle);
    else
        ev_io_start(s->loop, &s->io);
}

/* EOF or a read error: flush the last partial line, close, report once. */
static void finite_finish(struct source *s, int err)
{
    framer_finish(&s->fr, frame_cb, s);
    close_data(s);
    s->st.up = false;
    s->done = true;
    if (err) {
        char qe[128];
        log_error("source_read_failed", "source=%s err=%s", s->name,
                  log_quote(qe, sizeof qe, strerror(-err), (size_t)-1));
    } else
        log_info("source_eof", "source=%s lines=%llu bytes=%llu", s->name,
                 (unsigned long long)s->st.lines, (unsigned long long)s->st.bytes);
    if (s->on_done)
        s->on_done(s->ud, s, err); /* last: the callback may free s */
}

static void finite_read(struct source *s, int budget)
{
    int rc = read_some(s, budget);
    if (rc != 0 && !s->stopped)
        finite_finish(s, rc < 0 ? rc : 0);
}

static void finite_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    /* one chunk per idle pass: a big file never delays the live sources' events */
    finite_read(container_of(w, struct source, idle), 1);
}

static void finite_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    finite_read(container_of(w, struct source, io), LIVE_READ_BUDGET);
}

static int finite_open(struct source *s, char *err, size_t errlen)
{
    int fd;
    if (s->kind == SOURCE_FILE) {
        /* O_NONBLOCK: a FIFO path must not block the open (and reads never block the loop) */
        fd = open(s->arg, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            int e = errno;
            snprintf(err, errlen, "source %s: cannot open %s: %s", s->name, s->arg, strerror(e));
            return -e;
        }
    } else {
        /* A private fd, so stop/free can close it without freeing fd 0 for reuse. */
        fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            int e = errno;
            snprintf(err, errlen, "source %s: stdin: %s", s->name, strerror(e));
            return -e;
        }
    }
    struct stat stb;
    int e = fstat(fd, &stb) < 0 ? errno : S_ISDIR(stb.st_mode) ? EISDIR : 0;
    if (e) {
        snprintf(err, errlen, "source %s: %s: %s", s->name,
                 s->kind == SOURCE_FILE ? s->arg : "stdin", strerror(e));
        close(fd);
        return -e;
    }
    s->fd = fd;
    s->use_idle = S_ISREG(stb.st_mode);
    if (!s->use_idle && s->kind == SOURCE_STDIN) {
        /* O_NONBLOCK lives on the open file description, which a terminal or pipe shares with
         * our parent: remember the flags and put them back when we close. */
        s->stdin_flags = fcntl(fd, F_GETFL);
        s->restore_flags = s->stdin_flags >= 0 && !(s->stdin_flags & O_NONBLOCK);
        set_nonblock(fd);
    }
    ev_io_init(&s->io, finite_io_cb, fd, EV_READ);
    ev_idle_init(&s->idle, finite_idle_cb);
    s->st.up = true;
    finite_start_reader(s);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* exec: child processes                                                                */
/* ------------------------------------------------------------------------------------ */

/* Signal the run's process group; before the child's setsid() ran, only the child exists. */
static void exec_signal(struct source *s, int sig)
{
    if (s->pgid > 0 && kill(-s->pgid, sig) < 0 && errno == ESRCH && s->pid > 0)
        kill(s->pid, sig);
}

/*
 * Does the run's process group still have a member that is not a zombie? kill(-pgid, 0) alone
 * also counts zombies, and an orphan killed by our SIGTERM stays one until its new parent
 * (init, or a container's PID 1 that reaps only now and then) collects it. So when kill()
 * says "something exists", /proc decides whether it is still running. Only called while a
 * group is being stopped (every KILL_POLL seconds), never on the data path.
 */
static bool exec_group_alive(const struct source *s)
{
    if (s->pgid <= 0 || kill(-s->pgid, 0) < 0)
        return false;
    DIR *d = opendir("/proc");
    if (!d)
        return true;
    bool alive = false;
    struct dirent *de;
    while (!alive && (de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "%s/stat", de->d_name);
        int fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* "pid (comm) S ppid pgrp ...": comm may contain anything, so parse after the last ')' */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == s->pgid &&
            state != 'Z' && state != 'X')
            alive = true;
    }
    closedir(d);
    return alive;
}

/* In the child between fork and exec: async-signal-safe calls only. */
__attribute__((noreturn)) static void exec_child(const char *cmd, int in, int out, int errfd,
                                                 pid_t parent)
{
    /* Dispositions the daemon set (SIGPIPE ignored, libev's handlers) must not leak into the
     * command: ignored signals survive exec. Then unblock everything (blocked before fork). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    setsid(); /* own session and process group: stop signals -pgid */

    /* If the gateway dies without stopping us (SIGKILL, OOM killer), the command gets SIGTERM
     * instead of holding the debug probe or serial port forever; the setting survives exec.
     * The getppid() check closes the race with a parent that died before prctl(). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);

    /* Move the three fds above 2 first so that no dup2 clobbers another. */
    in = fcntl(in, F_DUPFD, 3);
    out = fcntl(out, F_DUPFD, 3);
    errfd = fcntl(errfd, F_DUPFD, 3);
    if (in < 0 || out < 0 || errfd < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(126);
    /* Everything else is O_CLOEXEC already; this also covers fds other code leaked. */
    if (close_range(3, ~0U, 0) < 0)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    static const char msg[] = "iiotgw: exec /bin/sh failed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

static const char *signame(int sig)
{
    const char *n = sigabbrev_np(sig);
    return n ? n : "?";
}

static void exec_stdout_cb(struct ev_loop *loop, ev_io *w, int revents);
static void exec_stderr_cb(struct ev_loop *loop, ev_io *w, int revents);

/* Start one run of the command. Returns 0 or -errno (the caller retries with backoff). */
static int exec_spawn(struct source *s)
{
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, devnull = -1, rc;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        goto fail_errno;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0)
        goto fail_errno;
    /* Only our read ends are non-blocking; the child's write ends stay blocking. */
    if ((rc = set_nonblock(out[0])) < 0 || (rc = set_nonblock(errp[0])) < 0)
        goto fail;

    /* Block signals across fork so no handler of ours runs in the child before it resets
     * the dispositions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid == 0)
        exec_child(s->arg, devnull, out[1], errp[1], self);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = fork_errno;
        goto fail_errno;
    }
    close(out[1]);
    close(errp[1]);
    close(devnull);

    s->pid = pid;
    s->pgid = pid;
    s->killed = false;
    s->fd = out[0];
    s->err_fd = errp[0];
    /* Safe to start after fork: libev reaps in a loop callback, which cannot run before. */
    ev_child_set(&s->child, pid, 0);
    ev_child_start(s->loop, &s->child);
    ev_io_init(&s->io, exec_stdout_cb, s->fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    ev_io_init(&s->err_io, exec_stderr_cb, s->err_fd, EV_READ);
    ev_io_start(s->loop, &s->err_io);
    framer_reset(&s->err_fr);
    live_up(s);
    char q[512];
    log_info("source_started", "source=%s pid=%d cmd=%s", s->name, (int)pid,
             log_quote(q, sizeof q, s->arg, (size_t)-1));
    return 0;

fail_errno:
    rc = -errno;
fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (devnull >= 0)
        close(devnull);
    return rc;
}

/* stderr of the command goes to our log; alarming words get warn, the rest info. */
static void stderr_line_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct source *s = ud;
    (void)line_no;
    static const char *const alarming[] = {"error", "warn", "fail", "fatal", "panic"};
    int level = LL_INFO;
    for (size_t i = 0; i < ARRAY_LEN(alarming); i++)
        if (strcasestr(line, alarming[i]))
            level = LL_WARN;
    if (!log_enabled(level))
        return;
    char q[STDERR_MAX_LINE + 64];
    log_emit(level, "source_stderr", "source=%s pid=%d line=%s%s", s->name, (int)s->pid,
             log_quote(q, sizeof q, line, len), (flags & FRAME_OVERLONG) ? " truncated=1" : "");
}

static void exec_stdout_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int rc = read_some(s, LIVE_READ_BUDGET);
    /* EOF on stdout: the run ends when the child exits (ev_child), not here — a command
     * may close stdout and keep running. Keep the framer's tail for exit time. */
    if (rc != 0 && s->fd >= 0)
        close_data(s);
}

static void exec_stderr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, err_io);
    if (read_into(s, s->err_fd, &s->err_fr, stderr_line_cb, LIVE_READ_BUDGET) != 0) {
        framer_finish(&s->err_fr, stderr_line_cb, s);
        close_err(s);
    }
}

/*
 * kill_timer: the group got SIGTERM. Poll until it is empty (members die a little after the
 * leader is reaped), and SIGKILL whatever is left at the deadline. `force` skips the grace.
 */
static void exec_check_group(struct source *s, bool force)
{
    if (s->pid == 0 && !exec_group_alive(s)) {
        ev_timer_stop(s->loop, &s->kill_timer);
        s->pgid = 0;
        return;
    }
    if (!s->killed && (force || ev_now(s->loop) >= s->kill_deadline)) {
        log_warn("source_kill", "source=%s pgid=%d signal=KILL after=%.3f", s->name, (int)s->pgid,
                 force ? 0. : s->kill_timeout);
        exec_signal(s, SIGKILL);
        s->killed = true;
    }
    /* SIGKILL cannot be ignored: once the leader is reaped there is nothing left to do
     * (members may linger as zombies until their new parent reaps them) */
    if (s->killed && s->pid == 0) {
        ev_timer_stop(s->loop, &s->kill_timer);
        s->pgid = 0;
    }
}

static void exec_kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    exec_check_group(container_of(w, struct source, kill_timer), false);
}

static void exec_watch_group(struct source *s)
{
    s->kill_deadline = ev_now(s->loop) + s->kill_timeout;
    if (!ev_is_active(&s->kill_timer)) {
        ev_timer_set(&s->kill_timer, KILL_POLL, KILL_POLL);
        ev_timer_start(s->loop, &s->kill_timer);
    }
}

static void exec_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct source *s = container_of(w, struct source, child);
    int status = w->rstatus;
    pid_t pid = w->rpid;
    ev_child_stop(loop, w);
    s->pid = 0;

    /* Everything the child wrote is in the pipes now (writes block until there is room):
     * drain what is there without waiting for EOF, which a stray grandchild could hold off. */
    if (s->fd >= 0 && !s->stopped)
        read_some(s, PIPE_DRAIN_BUDGET);
    if (!s->stopped)
        framer_finish(&s->fr, frame_cb, s);
    if (s->err_fd >= 0) {
        read_into(s, s->err_fd, &s->err_fr, stderr_line_cb, PIPE_DRAIN_BUDGET);
        framer_finish(&s->err_fr, stderr_line_cb, s);
    }
    close_data(s);
    close_err(s);

    /* Anything the command left behind in its group is terminated too: a stray probe-rs
     * would hold the debug probe and make every restart fail. */
    if (!s->killed && exec_group_alive(s)) {
        if (!ev_is_active(&s->kill_timer)) { /* a stop already signalled and watches */
            exec_signal(s, SIGTERM);
            exec_watch_group(s);
        }
    } else {
        ev_timer_stop(loop, &s->kill_timer);
        s->pgid = 0;
    }

    double ran = util_mono() - s->up_at;
    s->st.up = false;
    if (s->stopped) {
        log_info("source_exited", "source=%s pid=%d status=%d signal=%d ran=%.3f stopping=1",
                 s->name, (int)pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0, ran);
        return;
    }
    double delay = backoff_next(&s->bo, util_mono());
    if (WIFSIGNALED(status))
        log_warn("source_exited", "source=%s pid=%d signal=%d signame=%s ran=%.3f restart_in=%.3f",
                 s->name, (int)pid, WTERMSIG(status), signame(WTERMSIG(status)), ran, delay);
    else
        log_warn("source_exited", "source=%s pid=%d status=%d ran=%.3f restart_in=%.3f", s->name,
                 (int)pid, WEXITSTATUS(status), ran, delay);
    start_retry(s, delay);
}

static void exec_try(struct source *s)
{
    /* Strays of the previous run still there after SIGTERM: no more grace. */
    if (ev_is_active(&s->kill_timer))
        exec_check_group(s, true);
    int rc = exec_spawn(s);
    if (rc < 0)
        live_retry(s, -rc, "spawn");
}

/* ------------------------------------------------------------------------------------ */
/* serial                                                                               */
/* ------------------------------------------------------------------------------------ */

static void live_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static int serial_open(struct source *s)
{
    int fd = open(s->arg, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        goto fail;
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, s->speed) < 0 || cfsetospeed(&t, s->speed) < 0 ||
        tcsetattr(fd, TCSANOW, &t) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

static void serial_try(struct source *s)
{
    int fd = serial_open(s);
    if (fd < 0) {
        live_retry(s, -fd, "open");
        return;
    }
    s->fd = fd;
    ev_io_init(&s->io, live_io_cb, fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    bool again = s->ever_up;
    live_up(s);
    char q[256];
    log_info("source_up", "source=%s dev=%s baud=%d reopened=%d", s->name,
             log_quote(q, sizeof q, s->arg, (size_t)-1), s->baud, again);
}

/* ------------------------------------------------------------------------------------ */
/* tcp                                                                                  */
/* ------------------------------------------------------------------------------------ */

static void tcp_forget_addrs(struct source *s)
{
    freeaddrinfo(s->ai);
    s->ai = s->ai_next = NULL;
}

static void tcp_try(struct source *s);

/* One address failed (refused, timed out): try the next one, or back off when none is left. */
static void tcp_attempt_failed(struct source *s, int err)
{
    ev_timer_stop(s->loop, &s->retry);
    close_data(s);
    if (s->ai_next) {
        tcp_try(s);
        return;
    }
    tcp_forget_addrs(s);
    live_retry(s, err, "connect");
}

static void tcp_connected(struct source *s)
{
    s->connecting = false;
    ev_timer_stop(s->loop, &s->retry);
    ev_io_stop(s->loop, &s->io);
    ev_io_init(&s->io, live_io_cb, s->fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    tcp_forget_addrs(s); /* resolve again next time: addresses may change */
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    bool again = s->ever_up;
    live_up(s);
    log_info("source_up", "source=%s host=%s port=%s reconnected=%d", s->name, s->arg, s->port,
             again);
}

static void tcp_connect_cb(struct ev_loop *loop, ev_io *w, int revents);

/* Try the remaining resolved addresses in order (localhost may be ::1 then 127.0.0.1). */
static void tcp_try(struct source *s)
{
    int err = 0;
    if (!s->ai) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(s->arg, s->port, &hints, &s->ai);
        if (g != 0) {
            s->ai = NULL;
            /* getaddrinfo codes are negative, so they never equal an errno in last_err */
            if (g != s->last_err) {
                char qh[256], qe[128];
                log_warn("source_resolve_failed", "source=%s host=%s err=%s", s->name,
                         log_quote(qh, sizeof qh, s->arg, (size_t)-1),
                         log_quote(qe, sizeof qe, gai_strerror(g), (size_t)-1));
            }
            s->last_err = g;
            close_data(s);
            start_retry(s, backoff_next(&s->bo, util_mono()));
            return;
        }
        s->ai_next = s->ai;
    }
    while (s->ai_next) {
        struct addrinfo *a = s->ai_next;
        s->ai_next = a->ai_next;
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        s->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            tcp_connected(s);
            return;
        }
        if (errno == EINPROGRESS) {
            s->connecting = true;
            ev_io_init(&s->io, tcp_connect_cb, fd, EV_WRITE);
            ev_io_start(s->loop, &s->io);
            start_retry(s, TCP_CONNECT_TIMEOUT); /* the retry timer doubles as the timeout */
            return;
        }
        err = errno;
        close_data(s);
    }
    tcp_forget_addrs(s);
    live_retry(s, err, "connect");
}

static void tcp_connect_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr == 0)
        tcp_connected(s);
    else
        tcp_attempt_failed(s, soerr);
}

/* ------------------------------------------------------------------------------------ */
/* Live sources: shared read path and retry dispatch                                    */
/* ------------------------------------------------------------------------------------ */

static void live_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int rc = read_some(s, LIVE_READ_BUDGET);
    if (rc != 0 && !s->stopped)
        live_retry(s, rc < 0 ? -rc : 0, "read");
}

/*
 * One open attempt of a live source (exec, serial, tcp): at start and on every retry. A
 * failed attempt arms the retry timer itself. Finite sources (file, stdin) never retry.
 */
static void live_try(struct source *s)
{
    switch (s->kind) {
    case SOURCE_EXEC:
        exec_try(s);
        break;
    case SOURCE_SERIAL:
        serial_try(s);
        break;
    case SOURCE_TCP:
        tcp_try(s);
        break;
    case SOURCE_FILE:
    case SOURCE_STDIN:
        break;
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, retry);
    if (s->stopped)
        return;
    if (s->kind == SOURCE_TCP && s->connecting) /* the connect timeout */
        tcp_attempt_failed(s, ETIMEDOUT);
    else
        live_try(s);
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                           */
/* ------------------------------------------------------------------------------------ */

static char *dup_n(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

int source_new(struct source **out, struct ev_loop *loop, const struct source_config *cfg,
               source_line_cb on_line, source_done_cb on_done, void *ud, char *err, size_t errlen)
{
    struct spec sp;
    int rc = spec_parse(cfg->spec, cfg->index, &sp, err, errlen);
    *out = NULL;
    if (rc < 0)
        return rc;
    if (sp.kind == SOURCE_EXEC && !ev_is_default_loop(loop)) {
        /* libev delivers child status only to the default loop */
        snprintf(err, errlen, "source %s: exec sources need the default libev loop", sp.name);
        return -EINVAL;
    }
    struct source *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->kind = sp.kind;
    memcpy(s->name, sp.name, sizeof s->name);
    s->on_line = on_line;
    s->on_done = on_done;
    s->ud = ud;
    s->fd = s->err_fd = -1;
    s->baud = sp.baud;
    s->speed = sp.speed;
    s->kill_timeout = cfg->kill_timeout > 0 ? cfg->kill_timeout : 2.0;
    backoff_init(&s->bo, cfg->backoff_base > 0 ? cfg->backoff_base : 1.0,
                 cfg->backoff_max > 0 ? cfg->backoff_max : 60.0,
                 cfg->backoff_stable > 0 ? cfg->backoff_stable : 60.0);
    ev_io_init(&s->io, live_io_cb, -1, EV_READ);
    ev_io_init(&s->err_io, exec_stderr_cb, -1, EV_READ);
    ev_idle_init(&s->idle, finite_idle_cb);
    ev_timer_init(&s->retry, retry_cb, 0., 0.);
    ev_timer_init(&s->kill_timer, exec_kill_cb, 0., 0.);
    ev_child_init(&s->child, exec_child_cb, 0, 0);

    rc = -ENOMEM;
    s->arg = dup_n(sp.arg ? sp.arg : "", sp.arg ? sp.arg_len : 0);
    if (!s->arg)
        goto fail;
    if (sp.kind == SOURCE_TCP && !(s->port = dup_n(sp.port, sp.port_len)))
        goto fail;
    if ((rc = framer_init(&s->fr, cfg->max_line ? cfg->max_line : FRAME_DEFAULT_MAX_LINE)) < 0)
        goto fail;
    if (sp.kind == SOURCE_EXEC && (rc = framer_init(&s->err_fr, STDERR_MAX_LINE)) < 0)
        goto fail;

    if (s->kind == SOURCE_FILE || s->kind == SOURCE_STDIN) {
        if ((rc = finite_open(s, err, errlen)) < 0)
            goto fail;
    } else {
        live_try(s);
    }
    *out = s;
    return 0;

fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "source %s: out of memory", s->name);
    framer_free(&s->fr);
    framer_free(&s->err_fr);
    free(s->arg);
    free(s->port);
    free(s);
    return rc;
}

const char *source_name(const struct source *s)
{
    return s->name;
}

enum source_kind source_kind(const struct source *s)
{
    return s->kind;
}

bool source_is_finite(const struct source *s)
{
    return s->kind == SOURCE_FILE || s->kind == SOURCE_STDIN;
}

void source_pause(struct source *s)
{
    if (!source_is_finite(s) || s->paused)
        return;
    s->paused = true;
    ev_io_stop(s->loop, &s->io);
    ev_idle_stop(s->loop, &s->idle);
}

void source_resume(struct source *s)
{
    if (!source_is_finite(s) || !s->paused)
        return;
    s->paused = false;
    if (s->fd >= 0 && !s->stopped && !s->done)
        finite_start_reader(s);
}

void source_stop(struct source *s)
{
    if (!s || s->stopped)
        return;
    s->stopped = true;
    ev_timer_stop(s->loop, &s->retry);
    close_data(s);
    close_err(s);
    tcp_forget_addrs(s);
    s->st.up = false;
    if (s->kind == SOURCE_EXEC && s->pid > 0) {
        log_info("source_stopping", "source=%s pid=%d kill_in=%.3f", s->name, (int)s->pid,
                 s->kill_timeout);
        exec_signal(s, SIGTERM);
        exec_watch_group(s);
    }
}

bool source_is_stopped(const struct source *s)
{
    return s->stopped && s->fd < 0 && s->err_fd < 0 && s->pid == 0 && !ev_is_active(&s->kill_timer);
}

void source_get_stats(const struct source *s, struct source_stats *out)
{
    *out = s->st;
}

void source_free(struct source *s)
{
    if (!s)
        return;
    source_stop(s);
    /* Freed before the group was gone: no more grace. The default loop's SIGCHLD handler
     * still reaps the leader once our ev_child is gone (libev reaps every child). */
    if (s->pid > 0 || ev_is_active(&s->kill_timer))
        exec_signal(s, SIGKILL);
    ev_child_stop(s->loop, &s->child);
    ev_timer_stop(s->loop, &s->kill_timer);
    ev_timer_stop(s->loop, &s->retry);
    framer_free(&s->fr);
    framer_free(&s->err_fr);
    free(s->arg);
    free(s->port);
    free(s);
}
