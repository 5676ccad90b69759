/*
 * frame.c — split a byte stream into lines without ever losing sync. See frame.h.
 *
 * Why this shape: every source (pipe, serial, TCP) funnels its bytes through here, so it
 * is memchr-driven (no per-byte loop in C), keeps one fixed buffer of max_line + 1 bytes
 * allocated once at init, and treats data as length-delimited bytes so NULs are harmless.
 * An overlong line is delivered as soon as it is known to be overlong (its first max_line
 * bytes), and its tail is then skipped up to the next '\n', however many feeds that takes.
 *
 * Ownership: struct framer is embedded by the caller; it owns buf (framer_free).
 */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Lifecycle                                                                            */
/* ------------------------------------------------------------------------------------ */

int framer_init(struct framer *f, size_t max_line)
{
    memset(f, 0, sizeof *f);
    if (max_line == 0 || max_line == (size_t)-1)
        return -EINVAL;
    /* +1 so the line handed to the callback can always be NUL-terminated */
    f->buf = malloc(max_line + 1);
    if (!f->buf)
        return -ENOMEM;
    f->max_line = max_line;
    return 0;
}

void framer_free(struct framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->len = 0;
    f->discarding = 0;
}

void framer_reset(struct framer *f)
{
    f->len = 0;
    f->discarding = 0;
}

/* ------------------------------------------------------------------------------------ */
/* Framing                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Hand the buffered line to cb. State is cleared first so cb may call framer_reset(). */
static void deliver(struct framer *f, size_t len, unsigned flags, frame_line_cb cb, void *ud)
{
    f->len = 0;
    f->line_no++;
    f->buf[len] = '\0';
    cb(ud, f->buf, len, f->line_no, flags);
}

void framer_feed(struct framer *f, const char *data, size_t n, frame_line_cb cb, void *ud)
{
    if (!f->buf)
        return;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t seg = nl ? (size_t)(nl - data) : n; /* bytes before the '\n' (or all) */
        size_t step = nl ? seg + 1 : n;            /* bytes consumed this round */

        if (f->discarding) {
            /* tail of an overlong line: already delivered and counted, just skip it */
            if (nl)
                f->discarding = 0;
        } else {
            size_t room = f->max_line - f->len;
            if (seg <= room) {
                memcpy(f->buf + f->len, data, seg);
                f->len += seg;
                if (nl)
                    deliver(f, f->len, 0, cb, ud);
            } else {
                /* Too long: deliver the first max_line bytes now, skip the rest. */
                memcpy(f->buf + f->len, data, room);
                f->overlong++;
                f->discarding = nl ? 0 : 1;
                deliver(f, f->max_line, FRAME_OVERLONG, cb, ud);
            }
        }
        data += step;
        n -= step;
    }
}

void framer_finish(struct framer *f, frame_line_cb cb, void *ud)
{
    /* While discarding, the overlong line was already delivered: nothing is pending. */
    if (f->buf && !f->discarding && f->len > 0)
        deliver(f, f->len, FRAME_EOF, cb, ud);
    framer_reset(f);
}
