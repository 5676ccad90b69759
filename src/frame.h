/*
 * frame.h — split a byte stream into lines without ever losing sync.
 *
 * Bytes arrive in arbitrary chunks (pipe reads, serial reads, TCP segments). The framer
 * accumulates up to `max_line` bytes per line and calls back once per complete line
 * (terminated by '\n'; the '\n' is not passed). A line longer than `max_line` is not kept
 * whole: the callback receives its first `max_line` bytes with FRAME_OVERLONG set, and
 * the remainder up to the next '\n' is skipped, so the following line is framed normally.
 * Line numbers count every line delivered (including overlong ones and a final FRAME_EOF
 * line) starting at 1; they keep counting across framer_reset()/framer_finish().
 * An overlong line is delivered as soon as it is known to be overlong (the byte after its
 * first max_line bytes is not '\n'), not when its '\n' finally arrives; a line of exactly
 * max_line bytes is a normal line. Data is length-delimited: NUL bytes are ordinary bytes.
 *
 * Pure module: no I/O, no libev. Ownership: struct framer is embedded by the caller and owns
 * its buffer (framer_free). The `line` pointer handed to the callback is valid only during
 * the callback; the callback may modify the bytes in place (extract_clean does).
 * line[len] is always '\0' (the buffer has max_line + 1 bytes), for convenience only.
 */
#ifndef IIOTGW_FRAME_H
#define IIOTGW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_OVERLONG 0x1u /* line exceeded max_line; only its first max_line bytes given */
#define FRAME_EOF      0x2u /* last line of a stream that ended without '\n' */

#define FRAME_DEFAULT_MAX_LINE 4096

typedef void (*frame_line_cb)(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags);

struct framer {
    char *buf;
    size_t len;
    size_t max_line;
    uint64_t line_no;  /* number of the last line delivered */
    uint64_t overlong; /* lines that exceeded max_line */
    int discarding;    /* inside the tail of an overlong line */
};

/* Allocate the max_line + 1 byte line buffer once. Returns 0 or -ENOMEM / -EINVAL
 * (max_line == 0). On failure f is zeroed, so framer_free() is still safe. */
int framer_init(struct framer *f, size_t max_line);
void framer_free(struct framer *f);

/* Feed n bytes (any chunking, NULs allowed); calls cb for each completed line.
 * Does nothing on a framer whose init failed. */
void framer_feed(struct framer *f, const char *data, size_t n, frame_line_cb cb, void *ud);

/* End of stream: deliver a pending non-empty partial line (flag FRAME_EOF), then reset.
 * Nothing is delivered when the stream ended inside an overlong line's skipped tail. */
void framer_finish(struct framer *f, frame_line_cb cb, void *ud);

/* Drop any partial line (e.g. a reconnect: the old connection's tail is meaningless). */
void framer_reset(struct framer *f);

#endif
