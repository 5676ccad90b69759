/*
 * source_file.c — the finite kinds of source: file:PATH and stdin. Private to the source
 * module (see source_int.h); the contract is source.h.
 *
 * Both read one stream to its end, flush the last partial line, and call on_done exactly
 * once; a missing or unreadable file (or a directory) fails source_new() and is never
 * retried. They are the only kinds that can be paused (back-pressure while sinks drain).
 *
 * Why two readers: a regular file is always "readable" to epoll, so it is read one chunk per
 * ev_idle pass (a big replay never delays the live sources' events); pipes, FIFOs and
 * terminals are read on ev_io readiness.
 *
 * stdin: the source reads a private duplicate of fd 0 (so stop/free can close it without
 * freeing fd 0 for reuse). O_NONBLOCK lives on the open file description, which a terminal or
 * pipe shares with the parent shell: the original flags are put back when the fd is closed.
 */
#include "log.h"
#include "source_int.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct source_file {
    struct source base;
    ev_idle idle; /* regular files: read one chunk per idle pass */
    bool use_idle;
    int stdin_flags; /* stdin: file status flags to restore */
    bool restore_flags;
};

static struct source_file *source_file_of(struct source *s)
{
    return container_of(s, struct source_file, base);
}

static void source_file_start_reader(struct source_file *f)
{
    if (f->use_idle)
        ev_idle_start(f->base.loop, &f->idle);
    else
        ev_io_start(f->base.loop, &f->base.io);
}

/* EOF or a read error: flush the last partial line, close, report once. */
static void source_file_finish(struct source *s, int err)
{
    framer_finish(&s->fr, source_frame_line, s);
    source_close_data(s);
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

static void source_file_read(struct source *s, int budget)
{
    int rc = source_read(s, budget);
    if (rc != 0 && !s->stopped)
        source_file_finish(s, rc < 0 ? rc : 0);
}

static void source_file_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    /* one chunk per idle pass: a big file never delays the live sources' events */
    source_file_read(&container_of(w, struct source_file, idle)->base, 1);
}

static void source_file_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    source_file_read(container_of(w, struct source, io), SOURCE_READ_BUDGET);
}

/* ops->start of both kinds: fd is the opened file or the duplicate of stdin. */
static int source_file_begin(struct source *s, int fd, bool is_stdin, char *err, size_t errlen)
{
    struct source_file *f = source_file_of(s);
    struct stat stb;
    int e = fstat(fd, &stb) < 0 ? errno : S_ISDIR(stb.st_mode) ? EISDIR : 0;
    if (e) {
        snprintf(err, errlen, "source %s: %s: %s", s->name, is_stdin ? "stdin" : s->arg,
                 strerror(e));
        close(fd);
        return -e;
    }
    s->fd = fd;
    f->use_idle = S_ISREG(stb.st_mode);
    if (!f->use_idle && is_stdin) {
        /* shared open file description: remember the flags, restore them on close */
        f->stdin_flags = fcntl(fd, F_GETFL);
        f->restore_flags = f->stdin_flags >= 0 && !(f->stdin_flags & O_NONBLOCK);
        source_set_nonblock(fd);
    }
    ev_io_init(&s->io, source_file_io_cb, fd, EV_READ);
    ev_idle_init(&f->idle, source_file_idle_cb);
    s->st.up = true;
    source_file_start_reader(f);
    return 0;
}

static int source_file_start(struct source *s, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO path must not block the open (and reads never block the loop) */
    int fd = open(s->arg, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "source %s: cannot open %s: %s", s->name, s->arg, strerror(e));
        return -e;
    }
    return source_file_begin(s, fd, false, err, errlen);
}

static int source_stdin_start(struct source *s, char *err, size_t errlen)
{
    int fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "source %s: stdin: %s", s->name, strerror(e));
        return -e;
    }
    return source_file_begin(s, fd, true, err, errlen);
}

static int source_file_init(struct source *s, const struct source_spec *sp,
                            const struct source_config *cfg)
{
    (void)sp;
    (void)cfg;
    ev_idle_init(&source_file_of(s)->idle, source_file_idle_cb);
    return 0;
}

static void source_file_before_close(struct source *s)
{
    struct source_file *f = source_file_of(s);
    ev_idle_stop(s->loop, &f->idle);
    if (s->fd >= 0 && f->restore_flags)
        fcntl(s->fd, F_SETFL, f->stdin_flags);
    f->restore_flags = false;
}

static void source_file_pause(struct source *s)
{
    ev_io_stop(s->loop, &s->io);
    ev_idle_stop(s->loop, &source_file_of(s)->idle);
}

static void source_file_resume(struct source *s)
{
    if (s->fd >= 0 && !s->stopped && !s->done)
        source_file_start_reader(source_file_of(s));
}

const struct source_kind_ops source_file_ops = {
    .name = "file",
    .kind = SOURCE_FILE,
    .size = sizeof(struct source_file),
    .finite = true,
    .init = source_file_init,
    .start = source_file_start,
    .before_close = source_file_before_close,
    .pause = source_file_pause,
    .resume = source_file_resume,
};

const struct source_kind_ops source_stdin_ops = {
    .name = "stdin",
    .kind = SOURCE_STDIN,
    .size = sizeof(struct source_file),
    .finite = true,
    .no_arg = true,
    .init = source_file_init,
    .start = source_stdin_start,
    .before_close = source_file_before_close,
    .pause = source_file_pause,
    .resume = source_file_resume,
};
