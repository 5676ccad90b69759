/*
 * source_exec.c — the exec:CMD kind of source: a command (probe-rs, a simulator) whose stdout
 * carries the lines. Private to the source module (see source_int.h); the contract is
 * source.h.
 *
 * Each run: fork, then in the child reset every signal disposition and the mask, setsid(),
 * PR_SET_PDEATHSIG, stdin from /dev/null, stdout and stderr on two pipes, no other fd, and
 * /bin/sh -c CMD. stdout is the data stream; stderr is framed separately and logged
 * (event=source_stderr). When the command exits the source restarts it after the backoff
 * delay, forever; every successful spawn after the first counts as a restart.
 *
 * Process groups: the child leads its own session and process group (pgid == pid), so one
 * kill(-pgid) reaches everything the command spawned. A stray it leaves behind when it exits
 * (a probe-rs still holding the debug probe would make every restart fail) gets SIGTERM at
 * once and SIGKILL when kill_timeout expires or the next run starts, whichever is first.
 * source_stop() sends SIGTERM to the group, then SIGKILL after kill_timeout; the kill timer
 * polls every SOURCE_EXEC_KILL_POLL s whether a non-zombie member is left (/proc).
 *
 * Reaping: exit is seen with ev_child, which libev supports only on the default loop
 * (source_new refuses an exec source on another loop). libev's default loop reaps every child
 * via its SIGCHLD handler, so a command whose source was freed before it exited (source_free
 * sends SIGKILL) is still reaped as long as the loop runs: never a zombie. Grandchildren are
 * not ours: once orphaned, init (or the container's PID 1) reaps them.
 */
#include "log.h"
#include "source_int.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SOURCE_EXEC_STDERR_MAX_LINE 1024 /* stderr lines are logged, not parsed */
#define SOURCE_EXEC_KILL_POLL       0.05 /* how often a dying process group is checked */
#define SOURCE_EXEC_DRAIN_BUDGET    16   /* 16 x 64 KiB covers the largest pipe buffer (1 MiB) */

struct source_exec {
    struct source base; /* base.arg is the command, base.fd its stdout pipe */
    struct framer err_fr;
    int err_fd; /* stderr pipe, -1 when none */
    ev_io err_io;
    ev_timer kill_timer; /* polls a SIGTERMed group, SIGKILL at kill_deadline */
    ev_child child;
    double kill_timeout;  /* SIGTERM -> SIGKILL grace */
    pid_t pid;            /* running child, 0 once reaped */
    pid_t pgid;           /* process group still to be cleaned up, 0 when none */
    bool killed;          /* SIGKILL already sent to pgid */
    double kill_deadline; /* ev_now() after which a SIGTERMed group gets SIGKILL */
};

static struct source_exec *source_exec_of(struct source *s)
{
    return container_of(s, struct source_exec, base);
}

static int source_exec_parse(struct source_spec *sp, const char *spec, char *err, size_t errlen)
{
    if (strspn(sp->arg, " \t") == sp->arg_len)
        return source_spec_error(err, errlen, spec, "empty command");
    return 0;
}

static void source_exec_close_err(struct source_exec *x)
{
    ev_io_stop(x->base.loop, &x->err_io);
    if (x->err_fd >= 0)
        close(x->err_fd);
    x->err_fd = -1;
}

/* Signal the run's process group; before the child's setsid() ran, only the child exists. */
static void source_exec_signal(struct source_exec *x, int sig)
{
    if (x->pgid > 0 && kill(-x->pgid, sig) < 0 && errno == ESRCH && x->pid > 0)
        kill(x->pid, sig);
}

/*
 * Does the run's process group still have a member that is not a zombie? kill(-pgid, 0) alone
 * also counts zombies, and an orphan killed by our SIGTERM stays one until its new parent
 * (init, or a container's PID 1 that reaps only now and then) collects it. So when kill()
 * says "something exists", /proc decides whether it is still running. Only called while a
 * group is being stopped (every SOURCE_EXEC_KILL_POLL seconds), never on the data path.
 */
static bool source_exec_group_alive(const struct source_exec *x)
{
    if (x->pgid <= 0 || kill(-x->pgid, 0) < 0)
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
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == x->pgid &&
            state != 'Z' && state != 'X')
            alive = true;
    }
    closedir(d);
    return alive;
}

/* In the child between fork and exec: async-signal-safe calls only. */
__attribute__((noreturn)) static void source_exec_child(const char *cmd, int in, int out, int errfd,
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

static const char *source_exec_signame(int sig)
{
    const char *n = sigabbrev_np(sig);
    return n ? n : "?";
}

/* stderr of the command goes to our log; alarming words get warn, the rest info. */
static void source_exec_stderr_line(void *ud, char *line, size_t len, uint64_t line_no,
                                    unsigned flags)
{
    struct source_exec *x = source_exec_of(ud);
    (void)line_no;
    static const char *const alarming[] = {"error", "warn", "fail", "fatal", "panic"};
    int level = LL_INFO;
    for (size_t i = 0; i < ARRAY_LEN(alarming); i++)
        if (strcasestr(line, alarming[i]))
            level = LL_WARN;
    if (!log_enabled(level))
        return;
    char q[SOURCE_EXEC_STDERR_MAX_LINE + 64];
    log_emit(level, "source_stderr", "source=%s pid=%d line=%s%s", x->base.name, (int)x->pid,
             log_quote(q, sizeof q, line, len), (flags & FRAME_OVERLONG) ? " truncated=1" : "");
}

static void source_exec_stdout_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int rc = source_read(s, SOURCE_READ_BUDGET);
    /* EOF on stdout: the run ends when the child exits (ev_child), not here — a command
     * may close stdout and keep running. Keep the framer's tail for exit time. */
    if (rc != 0 && s->fd >= 0)
        source_close_data(s);
}

static void source_exec_stderr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source_exec *x = container_of(w, struct source_exec, err_io);
    if (source_read_into(&x->base, x->err_fd, &x->err_fr, source_exec_stderr_line,
                         SOURCE_READ_BUDGET) != 0) {
        framer_finish(&x->err_fr, source_exec_stderr_line, &x->base);
        source_exec_close_err(x);
    }
}

/* Start one run of the command. Returns 0 or -errno (the caller retries with backoff). */
static int source_exec_spawn(struct source_exec *x)
{
    struct source *s = &x->base;
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, devnull = -1, rc;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        goto fail_errno;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0)
        goto fail_errno;
    /* Only our read ends are non-blocking; the child's write ends stay blocking. */
    if ((rc = source_set_nonblock(out[0])) < 0 || (rc = source_set_nonblock(errp[0])) < 0)
        goto fail;

    /* Block signals across fork so no handler of ours runs in the child before it resets
     * the dispositions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid == 0)
        source_exec_child(s->arg, devnull, out[1], errp[1], self);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = fork_errno;
        goto fail_errno;
    }
    close(out[1]);
    close(errp[1]);
    close(devnull);

    x->pid = pid;
    x->pgid = pid;
    x->killed = false;
    s->fd = out[0];
    x->err_fd = errp[0];
    /* Safe to start after fork: libev reaps in a loop callback, which cannot run before. */
    ev_child_set(&x->child, pid, 0);
    ev_child_start(s->loop, &x->child);
    ev_io_init(&s->io, source_exec_stdout_cb, s->fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    ev_io_init(&x->err_io, source_exec_stderr_cb, x->err_fd, EV_READ);
    ev_io_start(s->loop, &x->err_io);
    framer_reset(&x->err_fr);
    source_live_up(s);
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

/*
 * kill_timer: the group got SIGTERM. Poll until it is empty (members die a little after the
 * leader is reaped), and SIGKILL whatever is left at the deadline. `force` skips the grace.
 */
static void source_exec_check_group(struct source_exec *x, bool force)
{
    struct ev_loop *loop = x->base.loop;
    if (x->pid == 0 && !source_exec_group_alive(x)) {
        ev_timer_stop(loop, &x->kill_timer);
        x->pgid = 0;
        return;
    }
    if (!x->killed && (force || ev_now(loop) >= x->kill_deadline)) {
        log_warn("source_kill", "source=%s pgid=%d signal=KILL after=%.3f", x->base.name,
                 (int)x->pgid, force ? 0. : x->kill_timeout);
        source_exec_signal(x, SIGKILL);
        x->killed = true;
    }
    /* SIGKILL cannot be ignored: once the leader is reaped there is nothing left to do
     * (members may linger as zombies until their new parent reaps them) */
    if (x->killed && x->pid == 0) {
        ev_timer_stop(loop, &x->kill_timer);
        x->pgid = 0;
    }
}

static void source_exec_kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    source_exec_check_group(container_of(w, struct source_exec, kill_timer), false);
}

static void source_exec_watch_group(struct source_exec *x)
{
    x->kill_deadline = ev_now(x->base.loop) + x->kill_timeout;
    if (!ev_is_active(&x->kill_timer)) {
        ev_timer_set(&x->kill_timer, SOURCE_EXEC_KILL_POLL, SOURCE_EXEC_KILL_POLL);
        ev_timer_start(x->base.loop, &x->kill_timer);
    }
}

static void source_exec_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct source_exec *x = container_of(w, struct source_exec, child);
    struct source *s = &x->base;
    int status = w->rstatus;
    pid_t pid = w->rpid;
    ev_child_stop(loop, w);
    x->pid = 0;

    /* Everything the child wrote is in the pipes now (writes block until there is room):
     * drain what is there without waiting for EOF, which a stray grandchild could hold off. */
    if (s->fd >= 0 && !s->stopped)
        source_read(s, SOURCE_EXEC_DRAIN_BUDGET);
    if (!s->stopped)
        framer_finish(&s->fr, source_frame_line, s);
    if (x->err_fd >= 0) {
        source_read_into(s, x->err_fd, &x->err_fr, source_exec_stderr_line,
                         SOURCE_EXEC_DRAIN_BUDGET);
        framer_finish(&x->err_fr, source_exec_stderr_line, s);
    }
    source_close_data(s);
    source_exec_close_err(x);

    /* Anything the command left behind in its group is terminated too: a stray probe-rs
     * would hold the debug probe and make every restart fail. */
    if (!x->killed && source_exec_group_alive(x)) {
        if (!ev_is_active(&x->kill_timer)) { /* a stop already signalled and watches */
            source_exec_signal(x, SIGTERM);
            source_exec_watch_group(x);
        }
    } else {
        ev_timer_stop(loop, &x->kill_timer);
        x->pgid = 0;
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
                 s->name, (int)pid, WTERMSIG(status), source_exec_signame(WTERMSIG(status)), ran,
                 delay);
    else
        log_warn("source_exited", "source=%s pid=%d status=%d ran=%.3f restart_in=%.3f", s->name,
                 (int)pid, WEXITSTATUS(status), ran, delay);
    source_start_retry(s, delay);
}

/* One run attempt: at start and on every retry. */
static void source_exec_try(struct source *s)
{
    struct source_exec *x = source_exec_of(s);
    /* Strays of the previous run still there after SIGTERM: no more grace. */
    if (ev_is_active(&x->kill_timer))
        source_exec_check_group(x, true);
    int rc = source_exec_spawn(x);
    if (rc < 0)
        source_live_retry(s, -rc, "spawn");
}

static int source_exec_init(struct source *s, const struct source_spec *sp,
                            const struct source_config *cfg)
{
    (void)sp;
    struct source_exec *x = source_exec_of(s);
    x->err_fd = -1;
    x->kill_timeout = cfg->kill_timeout > 0 ? cfg->kill_timeout : 2.0;
    ev_io_init(&x->err_io, source_exec_stderr_cb, -1, EV_READ);
    ev_timer_init(&x->kill_timer, source_exec_kill_cb, 0., 0.);
    ev_child_init(&x->child, source_exec_child_cb, 0, 0);
    return framer_init(&x->err_fr, SOURCE_EXEC_STDERR_MAX_LINE);
}

static int source_exec_start(struct source *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    source_exec_try(s);
    return 0;
}

static void source_exec_stop(struct source *s)
{
    struct source_exec *x = source_exec_of(s);
    source_exec_close_err(x);
    if (x->pid > 0) {
        log_info("source_stopping", "source=%s pid=%d kill_in=%.3f", s->name, (int)x->pid,
                 x->kill_timeout);
        source_exec_signal(x, SIGTERM);
        source_exec_watch_group(x);
    }
}

static bool source_exec_is_stopped(const struct source *s)
{
    const struct source_exec *x = container_of(s, const struct source_exec, base);
    return x->err_fd < 0 && x->pid == 0 && !ev_is_active(&x->kill_timer);
}

static void source_exec_release(struct source *s)
{
    struct source_exec *x = source_exec_of(s);
    /* Freed before the group was gone: no more grace. The default loop's SIGCHLD handler
     * still reaps the leader once our ev_child is gone (libev reaps every child). */
    if (x->pid > 0 || ev_is_active(&x->kill_timer))
        source_exec_signal(x, SIGKILL);
    ev_child_stop(s->loop, &x->child);
    ev_timer_stop(s->loop, &x->kill_timer);
    framer_free(&x->err_fr);
}

const struct source_kind_ops source_exec_ops = {
    .name = "exec",
    .kind = SOURCE_EXEC,
    .size = sizeof(struct source_exec),
    .needs_default_loop = true,
    .parse = source_exec_parse,
    .init = source_exec_init,
    .start = source_exec_start,
    .retry = source_exec_try,
    .stop = source_exec_stop,
    .is_stopped = source_exec_is_stopped,
    .release = source_exec_release,
};
