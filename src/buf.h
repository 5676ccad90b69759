/*
 * buf.h — growable byte buffer used for line protocol batches, dry-run output, payloads.
 *
 * Ownership: the struct is a value; its storage (p) is owned by it and released by buf_free().
 * p is always NUL-terminated when non-NULL, so text can be used as a C string.
 */
#ifndef IIOTGW_BUF_H
#define IIOTGW_BUF_H

#include <stddef.h>

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Ensure room for `extra` more bytes (+ NUL). Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append bytes. Returns 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
/* printf-append. Returns 0, -ENOMEM or -EINVAL (bad format). */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (memmove). */
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);
void buf_free(struct buf *b);

#endif
