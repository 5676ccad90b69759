/*
 * linebuf.c — byte-to-line assembler (see linebuf.h).
 */
#include "linebuf.h"

void linebuf_init(struct linebuf *lb)
{
    lb->len = 0;
    lb->discarding = false;
    lb->complete = false;
    lb->buf[0] = '\0';
}

bool linebuf_push(struct linebuf *lb, char c)
{
    if (lb->complete) {
        lb->complete = false;
        lb->len = 0;
    }
    if (c == '\n') {
        if (lb->discarding) {
            lb->discarding = false;
            lb->len = 0;
            return false;
        }
        if (lb->len && lb->buf[lb->len - 1] == '\r')
            lb->len--;
        lb->buf[lb->len] = '\0';
        lb->complete = true;
        return true;
    }
    if (lb->discarding)
        return false;
    if (lb->len >= LINEBUF_MAX) {
        lb->discarding = true;
        lb->len = 0;
        return false;
    }
    lb->buf[lb->len++] = c;
    return false;
}
