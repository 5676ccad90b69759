/*
 * fuzz_frame.c — libFuzzer harness for the line framer (src/frame.c).
 *
 * Input layout: byte 0 picks max_line (1..64, small so overlong lines are common), byte 1 seeds
 * the chunk sizes; the rest is the stream, fed in chunks of 1..32 bytes derived from the seed
 * and the data. Checked against a reference framer written the obvious byte-at-a-time way:
 * the same lines, lengths, flags and line numbers; every line <= max_line; line[len] == '\0';
 * and where no line was overlong, the lines joined with '\n' (plus the EOF tail) are the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

struct fz_line {
    size_t len;
    unsigned flags;
    uint64_t no;
    char data[64];
};

struct fz_lines {
    struct fz_line *v;
    size_t n, cap;
    size_t max_line;
};

static void fz_push(struct fz_lines *ls, const char *line, size_t len, uint64_t no, unsigned flags)
{
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? 2 * ls->cap : 64;
        ls->v = realloc(ls->v, ls->cap * sizeof *ls->v);
        if (!ls->v)
            abort();
    }
    struct fz_line *l = &ls->v[ls->n++];
    if (len > ls->max_line || len > sizeof l->data)
        abort(); /* a line longer than max_line */
    l->len = len;
    l->flags = flags;
    l->no = no;
    memcpy(l->data, line, len);
}

static void fz_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    if (line[len] != '\0')
        abort();
    fz_push(ud, line, len, line_no, flags);
}

/* The reference: one byte at a time, straight from the contract in frame.h. */
static void fz_reference(struct fz_lines *ls, const uint8_t *d, size_t n, size_t max)
{
    char buf[64];
    size_t len = 0;
    int discarding = 0;
    uint64_t no = 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)d[i];
        if (discarding) {
            if (c == '\n')
                discarding = 0;
            continue;
        }
        if (c == '\n') {
            fz_push(ls, buf, len, ++no, 0);
            len = 0;
        } else if (len == max) {
            fz_push(ls, buf, len, ++no, FRAME_OVERLONG);
            len = 0;
            discarding = 1;
        } else {
            buf[len++] = c;
        }
    }
    if (!discarding && len > 0)
        fz_push(ls, buf, len, ++no, FRAME_EOF);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = (size_t)(data[0] % 64) + 1;
    uint32_t seed = data[1];
    data += 2;
    size -= 2;

    struct framer f;
    if (framer_init(&f, max) != 0)
        abort();
    struct fz_lines got = {.max_line = max}, want = {.max_line = max};
    size_t pos = 0;
    while (pos < size) {
        seed = seed * 1103515245u + 12345u + data[pos];
        size_t chunk = (seed >> 16) % 32 + 1;
        if (chunk > size - pos)
            chunk = size - pos;
        framer_feed(&f, (const char *)data + pos, chunk, fz_cb, &got);
        pos += chunk;
    }
    framer_finish(&f, fz_cb, &got);
    fz_reference(&want, data, size, max);

    if (got.n != want.n)
        abort();
    uint64_t overlong = 0;
    for (size_t i = 0; i < got.n; i++) {
        struct fz_line *a = &got.v[i], *b = &want.v[i];
        if (a->len != b->len || a->flags != b->flags || a->no != b->no ||
            memcmp(a->data, b->data, a->len) != 0)
            abort();
        overlong += (a->flags & FRAME_OVERLONG) != 0;
    }
    if (overlong != f.overlong)
        abort();
    if (!overlong) {
        /* Lines + separators reproduce the input exactly. */
        size_t off = 0;
        for (size_t i = 0; i < got.n; i++) {
            struct fz_line *a = &got.v[i];
            if (off + a->len > size || memcmp(data + off, a->data, a->len) != 0)
                abort();
            off += a->len;
            if (!(a->flags & FRAME_EOF)) {
                if (off >= size || data[off] != '\n')
                    abort();
                off++;
            }
        }
        if (off != size)
            abort();
    }
    framer_free(&f);
    free(got.v);
    free(want.v);
    return 0;
}
