/*
 * source.c — where telemetry lines come from, on the libev loop: what every kind of source
 * shares. See source.h for the contract and source_int.h for how the kinds plug in.
 *
 * Why this shape: every kind of source ends in the same place (an fd that becomes readable, a
 * framer, a line callback), so the kinds differ only in how the fd is obtained and what happens
 * when it ends. Each kind is one struct source_kind_ops in its own file (source_exec.c,
 * source_serial.c, source_tcp.c, source_file.c); this file holds the rest:
 *   - spec parsing: [NAME=]KIND:ARG, the kind table, default names;
 *   - the shared read path (read(2) into the framer, line and byte counters);
 *   - live sources (exec, serial, tcp) never give up: on EOF/error/exit they close, wait a
 *     backoff delay (backoff.h) and try again. This file owns the retry timer, the backoff
 *     state, the `restarts` counter (source_live_up) and the failure logging (source_live_retry:
 *     warn once per state change, repeats of the same failure only at debug);
 *   - the generic lifecycle: source_new, stop, free, pause/resume dispatch, stats.
 * Finite sources (file, stdin) read to EOF, flush the framer and call on_done once; that logic
 * lives in source_file.c.
 *
 * Nothing here blocks the loop: every fd is O_NONBLOCK and every wait is an ev_timer. The one
 * exception is tcp name resolution (see source_tcp.c).
 *
 * Ownership: a source is allocated by source_new() (ops->size bytes, zeroed) and owned by the
 * caller, who frees it with source_free().
 */
#include "source.h"

#include "backoff.h"
#include "frame.h"
#include "log.h"
#include "source_int.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* In enum source_kind order, which is also the order error messages list them in. */
static const struct source_kind_ops *const source_kinds[] = {
    &source_exec_ops, &source_serial_ops, &source_tcp_ops, &source_file_ops, &source_stdin_ops,
};

/* ------------------------------------------------------------------------------------ */
/* Spec parsing                                                                         */
/* ------------------------------------------------------------------------------------ */

int source_spec_error(char *err, size_t errlen, const char *spec, const char *fmt, ...)
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

bool source_all_digits(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

long source_parse_num(const char *p, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n && v < 100000000; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static bool source_name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* "exec, serial, tcp, file" + last_sep + "stdin", from the kind table. */
static const char *source_kind_list(char *buf, size_t len, const char *last_sep)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(source_kinds) && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == ARRAY_LEN(source_kinds) ? last_sep : ", ";
        int n = snprintf(buf + used, len - used, "%s%s", sep, source_kinds[i]->name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

static int source_spec_parse(const char *spec, int index, struct source_spec *sp, char *err,
                             size_t errlen)
{
    char kinds[128];
    memset(sp, 0, sizeof *sp);
    if (err && errlen)
        err[0] = '\0';
    if (!spec || !*spec)
        return source_spec_error(err, errlen, spec ? spec : "",
                                 "empty spec (expected [NAME=]KIND:ARG, KIND one of %s)",
                                 source_kind_list(kinds, sizeof kinds, ", "));

    /* NAME= only counts before the first ':' (commands may contain '='). */
    const char *rest = spec;
    const char *eq = strchr(spec, '=');
    const char *colon = strchr(spec, ':');
    if (eq && (!colon || eq < colon)) {
        size_t nlen = (size_t)(eq - spec);
        if (nlen == 0)
            return source_spec_error(err, errlen, spec, "empty name before '='");
        if (nlen >= SOURCE_NAME_MAX)
            return source_spec_error(err, errlen, spec, "name longer than %d characters",
                                     SOURCE_NAME_MAX - 1);
        for (size_t i = 0; i < nlen; i++)
            if (!source_name_char_ok(spec[i]))
                return source_spec_error(err, errlen, spec,
                                         "invalid name (allowed: letters, digits, '_', '.', '-')");
        memcpy(sp->name, spec, nlen);
        sp->name[nlen] = '\0';
        rest = eq + 1;
    }

    colon = strchr(rest, ':');
    size_t klen = colon ? (size_t)(colon - rest) : strlen(rest);
    for (size_t i = 0; i < ARRAY_LEN(source_kinds); i++)
        if (strlen(source_kinds[i]->name) == klen &&
            strncmp(rest, source_kinds[i]->name, klen) == 0)
            sp->ops = source_kinds[i];
    if (!sp->ops)
        return source_spec_error(err, errlen, spec, "unknown kind \"%.*s\" (expected %s)",
                                 (int)klen, rest, source_kind_list(kinds, sizeof kinds, " or "));
    if (sp->ops->no_arg) {
        if (colon)
            return source_spec_error(err, errlen, spec, "%s takes no argument", sp->ops->name);
        sp->arg = rest + klen;
    } else {
        if (!colon || !colon[1])
            return source_spec_error(err, errlen, spec, "missing argument after \"%s:\"",
                                     sp->ops->name);
        sp->arg = colon + 1;
        sp->arg_len = strlen(sp->arg);
    }

    if (sp->ops->parse) {
        int rc = sp->ops->parse(sp, spec, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (!sp->name[0])
        snprintf(sp->name, sizeof sp->name, "%s%d", sp->ops->name, index);
    return 0;
}

int source_parse(const char *spec, int index, enum source_kind *kind, char *name, size_t namelen,
                 char *err, size_t errlen)
{
    struct source_spec sp;
    int rc = source_spec_parse(spec, index, &sp, err, errlen);
    if (rc < 0)
        return rc;
    if (kind)
        *kind = sp.ops->kind;
    if (name && namelen)
        util_strlcpy(name, sp.name, namelen);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Shared plumbing: fds, lines, reading                                                 */
/* ------------------------------------------------------------------------------------ */

int source_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

char *source_strndup(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

void source_frame_line(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct source *s = ud;
    if (s->stopped) /* the callback stopped us in the middle of a chunk */
        return;
    s->st.lines++;
    if (flags & FRAME_OVERLONG)
        s->st.overlong++;
    s->on_line(s->ud, s, line, len, line_no, flags);
}

void source_close_data(struct source *s)
{
    ev_io_stop(s->loop, &s->io);
    if (s->ops->before_close)
        s->ops->before_close(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int source_read_into(struct source *s, int fd, struct framer *fr, frame_line_cb cb, int budget)
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

int source_read(struct source *s, int budget)
{
    return source_read_into(s, s->fd, &s->fr, source_frame_line, budget);
}

/* ------------------------------------------------------------------------------------ */
/* Live sources: restarts, failures and the retry timer                                 */
/* ------------------------------------------------------------------------------------ */

void source_start_retry(struct source *s, double delay)
{
    ev_timer_stop(s->loop, &s->retry);
    ev_timer_set(&s->retry, delay, 0.);
    ev_timer_start(s->loop, &s->retry);
}

void source_live_up(struct source *s)
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

void source_live_retry(struct source *s, int err, const char *what)
{
    source_close_data(s);
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
    source_start_retry(s, delay);
}

void source_live_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, io);
    int rc = source_read(s, SOURCE_READ_BUDGET);
    if (rc != 0 && !s->stopped)
        source_live_retry(s, rc < 0 ? -rc : 0, "read");
}

static void source_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct source *s = container_of(w, struct source, retry);
    if (!s->stopped && s->ops->retry)
        s->ops->retry(s);
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                           */
/* ------------------------------------------------------------------------------------ */

int source_new(struct source **out, struct ev_loop *loop, const struct source_config *cfg,
               source_line_cb on_line, source_done_cb on_done, void *ud, char *err, size_t errlen)
{
    struct source_spec sp;
    int rc = source_spec_parse(cfg->spec, cfg->index, &sp, err, errlen);
    *out = NULL;
    if (rc < 0)
        return rc;
    if (sp.ops->needs_default_loop && !ev_is_default_loop(loop)) {
        snprintf(err, errlen, "source %s: %s sources need the default libev loop", sp.name,
                 sp.ops->name);
        return -EINVAL;
    }
    struct source *s = calloc(1, sp.ops->size);
    if (!s)
        return -ENOMEM;
    s->ops = sp.ops;
    s->loop = loop;
    memcpy(s->name, sp.name, sizeof s->name);
    s->on_line = on_line;
    s->on_done = on_done;
    s->ud = ud;
    s->fd = -1;
    backoff_init(&s->bo, cfg->backoff_base > 0 ? cfg->backoff_base : 1.0,
                 cfg->backoff_max > 0 ? cfg->backoff_max : 60.0,
                 cfg->backoff_stable > 0 ? cfg->backoff_stable : 60.0);
    ev_io_init(&s->io, source_live_io_cb, -1, EV_READ);
    ev_timer_init(&s->retry, source_retry_cb, 0., 0.);

    rc = -ENOMEM;
    if (!(s->arg = source_strndup(sp.arg, sp.arg_len)))
        goto fail;
    if ((rc = framer_init(&s->fr, cfg->max_line ? cfg->max_line : FRAME_DEFAULT_MAX_LINE)) < 0)
        goto fail;
    if (s->ops->init && (rc = s->ops->init(s, &sp, cfg)) < 0)
        goto fail;
    if ((rc = s->ops->start(s, err, errlen)) < 0)
        goto fail;
    *out = s;
    return 0;

fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "source %s: out of memory", s->name);
    if (s->ops->release)
        s->ops->release(s);
    framer_free(&s->fr);
    free(s->arg);
    free(s);
    return rc;
}

const char *source_name(const struct source *s)
{
    return s->name;
}

enum source_kind source_kind(const struct source *s)
{
    return s->ops->kind;
}

bool source_is_finite(const struct source *s)
{
    return s->ops->finite;
}

void source_pause(struct source *s)
{
    if (!s->ops->pause || s->paused)
        return;
    s->paused = true;
    s->ops->pause(s);
}

void source_resume(struct source *s)
{
    if (!s->ops->resume || !s->paused)
        return;
    s->paused = false;
    s->ops->resume(s);
}

void source_stop(struct source *s)
{
    if (!s || s->stopped)
        return;
    s->stopped = true;
    ev_timer_stop(s->loop, &s->retry);
    source_close_data(s);
    s->st.up = false;
    if (s->ops->stop)
        s->ops->stop(s);
}

bool source_is_stopped(const struct source *s)
{
    return s->stopped && s->fd < 0 && (!s->ops->is_stopped || s->ops->is_stopped(s));
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
    if (s->ops->release)
        s->ops->release(s);
    ev_timer_stop(s->loop, &s->retry);
    framer_free(&s->fr);
    free(s->arg);
    free(s);
}
