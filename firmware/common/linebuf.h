/*
 * linebuf.h — assemble UART bytes into lines (the RYLR998 speaks "...\r\n").
 *
 * Fixed storage; a line longer than LINEBUF_MAX is dropped up to its newline (so a garbled
 * stream resynchronises on the next line). Pure module.
 */
#ifndef FW_LINEBUF_H
#define FW_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

#define LINEBUF_MAX 300 /* +RCV with 240 data characters fits */

struct linebuf {
    char buf[LINEBUF_MAX + 1];
    size_t len;
    bool discarding; /* inside an overlong line: drop up to the next '\n' */
    bool complete;   /* buf holds a returned line; the next byte starts a new one */
};

void linebuf_init(struct linebuf *lb);
/*
 * Feed one byte. Returns true when a complete line is available in lb->buf (NUL-terminated,
 * '\r' and '\n' stripped, length lb->len); it stays valid until the next push.
 */
bool linebuf_push(struct linebuf *lb, char c);

#endif
