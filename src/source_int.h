/*
 * source_int.h — private to the source module (source.c and the source_*.c kind files); no
 * other file may include it. The public contract is source.h.
 *
 * Why: the five kinds of source differ only in how they obtain their fd and what they do when
 * it ends, so each kind is one struct source_kind_ops (one file per kind: source_exec.c,
 * source_serial.c, source_tcp.c, source_file.c for file: and stdin) and source.c keeps what
 * they share: spec parsing and names, the framer, the read path, the retry timer and backoff,
 * stats and the generic lifecycle (new, stop, free).
 *
 * Layout: every kind's state is a struct whose first member is `struct source base`;
 * source_new() allocates ops->size bytes (zeroed) and a kind gets at its part with
 * container_of(s, struct source_KIND, base). The common part is owned by source.c, which
 * frees it after ops->release().
 *
 * Re-entrancy: everything runs on the source's libev loop; no locks. on_line may call
 * source_pause/resume/stop from inside the shared read path, which is why that path checks
 * s->fd, s->paused and s->stopped after every chunk.
 */
#ifndef IIOTGW_SOURCE_INT_H
#define IIOTGW_SOURCE_INT_H

#include "source.h"

#include "backoff.h"
#include "frame.h"

#include <stdbool.h>
#include <stddef.h>

#define SOURCE_READ_CHUNK  (64 * 1024) /* one read(2); also the pause granularity */
#define SOURCE_READ_BUDGET 8           /* reads per wakeup, so one busy fd cannot starve others */

/* The parsed form of a spec: pointers into the spec string plus lengths (not terminated). */
struct source_spec {
    const struct source_kind_ops *ops;
    char name[SOURCE_NAME_MAX];
    const char *arg; /* after "KIND:": command, path, device, host; "" for stdin */
    size_t arg_len;
    const char *opt; /* the kind's second field (tcp: port, serial: baud), NULL when absent */
    size_t opt_len;
};

/* The part every kind shares. Kinds embed it as their first member. */
struct source {
    const struct source_kind_ops *ops;
    struct ev_loop *loop;
    char name[SOURCE_NAME_MAX];
    char *arg; /* heap copy of spec->arg: what logs call the target */

    source_line_cb on_line;
    source_done_cb on_done;
    void *ud;

    struct framer fr; /* the data stream */
    struct backoff bo;

    int fd;         /* data fd (exec stdout pipe, tty, socket, file, stdin dup), -1 when none */
    ev_io io;       /* on fd; its callback is the kind's */
    ev_timer retry; /* live sources: backoff delay before the next attempt (tcp: connect
                     * timeout as well); fires ops->retry */
    double up_at;   /* monotonic time the current run/connection started */
    int last_err;   /* last failure logged at warn: errno, or a (negative) getaddrinfo code */
    bool ever_up;   /* the first success is not a restart */
    bool stopped;   /* source_stop() ran */
    bool paused;    /* finite only: source_pause() */
    bool done;      /* finite only: on_done was called */
    struct source_stats st;
    char rbuf[SOURCE_READ_CHUNK];
};

/*
 * One kind of source. Hooks that a kind does not need are NULL. Every hook gets the common
 * part; a kind converts with container_of.
 */
struct source_kind_ops {
    const char *name;        /* the KIND of the spec, also the default-name prefix */
    enum source_kind kind;   /* the public enum value */
    size_t size;             /* bytes to allocate: the kind's struct embedding struct source */
    bool finite;             /* reads to EOF and calls on_done (file, stdin); else live */
    bool no_arg;             /* the spec is the bare KIND ("stdin"), no ":ARG" */
    bool needs_default_loop; /* exec: libev reports child exits only on the default loop */

    /* Validate sp->arg (non-empty unless no_arg) and split off sp->opt. 0 or -EINVAL with a
     * message from source_spec_error(). NULL: any argument is fine. */
    int (*parse)(struct source_spec *sp, const char *spec, char *err, size_t errlen);
    /* Take the kind's settings from the spec and config (s->arg, s->name, s->loop are set).
     * 0, or -ENOMEM (source_new reports it). Must leave s safe for release(). */
    int (*init)(struct source *s, const struct source_spec *sp, const struct source_config *cfg);
    /* First attempt. Live kinds start trying (a failure arms the retry timer; returns 0);
     * finite kinds open and return 0 or -errno with err set (not retried). */
    int (*start)(struct source *s, char *err, size_t errlen);
    /* The retry timer fired and the source is not stopped. */
    void (*retry)(struct source *s);
    /* Called by source_close_data() before it closes s->fd (>= 0 or not). */
    void (*before_close)(struct source *s);
    /* source_stop(): after the common part stopped the retry timer and closed s->fd. */
    void (*stop)(struct source *s);
    /* The kind's share of source_is_stopped(). NULL: nothing beyond s->fd. */
    bool (*is_stopped)(const struct source *s);
    /* Back-pressure, finite kinds only; s->paused is already updated. */
    void (*pause)(struct source *s);
    void (*resume)(struct source *s);
    /* source_free(), after source_stop(): free what init() allocated. */
    void (*release)(struct source *s);
};

extern const struct source_kind_ops source_exec_ops;
extern const struct source_kind_ops source_serial_ops;
extern const struct source_kind_ops source_tcp_ops;
extern const struct source_kind_ops source_file_ops;
extern const struct source_kind_ops source_stdin_ops;

/* Formats "source \"SPEC\": ..." into err (may be NULL) and returns -EINVAL. */
int source_spec_error(char *err, size_t errlen, const char *spec, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when p[0..n) is non-empty and all decimal digits. */
bool source_all_digits(const char *p, size_t n);
/* p[0..n) as a number (digits only, see source_all_digits); saturates above 10^8. */
long source_parse_num(const char *p, size_t n);

/* O_NONBLOCK on fd. 0 or -errno. */
int source_set_nonblock(int fd);

/* Heap copy of p[0..n) with a terminating NUL, NULL when out of memory. */
char *source_strndup(const char *p, size_t n);

/*
 * Read up to `budget` chunks from fd into framer fr (the data stream with cb
 * source_frame_line, or a kind's own, e.g. exec's stderr). Only bytes of s->fr count in
 * st.bytes. Returns 0 when the fd would block, the budget is used up or a callback
 * paused/stopped the source or closed s->fd; 1 at EOF; -errno on a read error.
 */
int source_read_into(struct source *s, int fd, struct framer *fr, frame_line_cb cb, int budget);
/* source_read_into(s, s->fd, &s->fr, source_frame_line, budget). */
int source_read(struct source *s, int budget);
/* The framer callback of the data stream: counts the line and calls on_line (ud is s). */
void source_frame_line(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags);

/* Stop s->io, run ops->before_close, close s->fd, set it to -1. Idempotent. */
void source_close_data(struct source *s);

/* Arm the retry timer `delay` seconds from now (replacing a pending one). */
void source_start_retry(struct source *s, double delay);

/* A live source came up: count a restart unless it is the first time, mark the backoff
 * healthy, clear the failure state and drop the framer's tail (it belongs to the old
 * stream). */
void source_live_up(struct source *s);

/* A live source failed (could not open/connect, or went down): close s->fd, log at warn on a
 * change of state (up -> down, or a new error), at debug when the same failure repeats, and
 * arm the retry timer with the next backoff delay. err is an errno, 0 for EOF; `what` names
 * the failed step ("open", "connect", "read", "spawn"). */
void source_live_retry(struct source *s, int err, const char *what);

/* ev_io callback for a live stream (serial, tcp): read, and retry on EOF or error. */
void source_live_io_cb(struct ev_loop *loop, ev_io *w, int revents);

#endif
