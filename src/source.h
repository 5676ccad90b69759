/*
 * source.h — where telemetry lines come from, on the libev loop.
 *
 * Spec syntax (CLI -s and config `sources`):   [NAME=]KIND:ARG
 *   exec:CMD                 run CMD via /bin/sh -c in its own process group; read stdout;
 *                            stderr lines go to our log (event=source_stderr). When it exits,
 *                            restart with backoff (1 s doubling to 60 s, equal jitter, reset
 *                            after 60 s of stable running). SIGTERM then SIGKILL to the whole
 *                            group on stop; children are always reaped (ev_child).
 *   serial:DEV[:BAUD]        raw termios 8N1, default 115200; reopen with backoff on error/EOF
 *                            (USB unplug/replug).
 *   tcp:HOST:PORT            connect (non-blocking), read; reconnect with backoff.
 *   file:PATH                read once to EOF (finite).
 *   stdin                    read fd 0 to EOF (finite).
 * NAME defaults to KIND followed by the source's index (exec0, file1, ...). Names match
 * [A-Za-z0-9_.-]+ and must be unique.
 *
 * Each source owns a framer (frame.h) and reports complete lines through source_line_cb.
 * Finite sources can be paused (back-pressure while sinks drain); live ones never pause:
 * a slow sink must never stop the gateway from reading hardware.
 *
 * Loop: exec sources need the default loop (libev reports child exits only there), so the
 * daemon runs everything on EV_DEFAULT; source_new() refuses an exec source on another loop.
 * Nothing in this module blocks the loop, except getaddrinfo() for a tcp HOST that is not
 * numeric or in /etc/hosts (RTT servers are on localhost).
 *
 * Callbacks: on_line may call source_pause/resume/stop (a stop drops the rest of the chunk),
 * but must not free the source; on_done is the last thing the source does and may free it.
 *
 * Ownership: source_new() returns an object owned by the caller (source_free()). The `line`
 * handed to the callback is only valid during the call and may be modified in place.
 *
 * Implementation: source.c (what all kinds share) and one file per kind (source_exec.c,
 * source_serial.c, source_tcp.c, source_file.c), joined by the private source_int.h.
 */
#ifndef IIOTGW_SOURCE_H
#define IIOTGW_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define SOURCE_NAME_MAX 64 /* names are at most SOURCE_NAME_MAX - 1 characters */

enum source_kind { SOURCE_EXEC, SOURCE_SERIAL, SOURCE_TCP, SOURCE_FILE, SOURCE_STDIN };

struct source;

/* flags are FRAME_OVERLONG / FRAME_EOF from frame.h */
typedef void (*source_line_cb)(void *ud, struct source *src, char *line, size_t len,
                               uint64_t line_no, unsigned flags);
/* A finite source reached EOF (or failed for good); called once. */
typedef void (*source_done_cb)(void *ud, struct source *src, int err);

struct source_config {
    const char *spec;      /* as given by the user */
    int index;             /* position, used for the default name */
    size_t max_line;       /* framer maximum (default FRAME_DEFAULT_MAX_LINE) */
    double backoff_base;   /* default 1 s */
    double backoff_max;    /* default 60 s */
    double backoff_stable; /* default 60 s */
    double kill_timeout;   /* exec: SIGTERM -> SIGKILL delay on stop, default 2 s */
};

struct source_stats {
    uint64_t bytes;    /* data bytes read (exec: stdout only) */
    uint64_t lines;    /* lines delivered to on_line, overlong ones included */
    uint64_t overlong; /* lines that exceeded max_line (delivered truncated, FRAME_OVERLONG) */
    uint64_t restarts; /* live sources: times it came up again after the first time (exec: a
                        * successful respawn, tcp: a reconnect, serial: a reopen); failed
                        * attempts do not count; never reset; always 0 for file and stdin */
    bool up;           /* currently connected / running / open */
};

/*
 * Validate a spec without creating anything. Returns 0 or -EINVAL with a message in err that
 * quotes the spec. kind and name (the explicit or default name) may be NULL. Uniqueness of
 * names across sources is the caller's check. (Used by --check and config loading.)
 */
int source_parse(const char *spec, int index, enum source_kind *kind, char *name, size_t namelen,
                 char *err, size_t errlen);

/* Create and start a source. Returns 0, -EINVAL (bad spec, or exec on a non-default loop; err
 * set), -ENOMEM, or the errno of a failure that cannot be retried (file: -ENOENT, -EISDIR...;
 * err set). Live sources retry instead of failing. Zero fields of cfg take their defaults.
 * on_done may be NULL. */
int source_new(struct source **out, struct ev_loop *loop, const struct source_config *cfg,
               source_line_cb on_line, source_done_cb on_done, void *ud, char *err, size_t errlen);

const char *source_name(const struct source *s);
enum source_kind source_kind(const struct source *s);
bool source_is_finite(const struct source *s);

/* Back-pressure for finite sources (no-op for live ones). */
void source_pause(struct source *s);
void source_resume(struct source *s);

/* Stop reading; exec: terminate the process group (SIGTERM, then SIGKILL after kill_timeout).
 * Idempotent. */
void source_stop(struct source *s);

/* True once the source holds no process/fd any more (after stop, child reaped, and the
 * process group gone or SIGKILLed). A shutdown polls this from a timer. */
bool source_is_stopped(const struct source *s);

void source_get_stats(const struct source *s, struct source_stats *out);

/* Stop (if not yet) and free. An exec group still alive gets SIGKILL; its leader is reaped by
 * the default loop's SIGCHLD handling as long as the loop keeps running. NULL is a no-op. */
void source_free(struct source *s);

#endif
