/*
 * test_frame.c — unit tests of the line framer (src/frame.c).
 *
 * Every test records what the callback saw (line bytes, number, flags) and compares it with
 * either a literal expectation or an independent byte-at-a-time model of frame.h, over many
 * chunkings of the same stream: the framer must give identical results however the bytes
 * are split, including overlong lines whose tails cross chunk boundaries.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "frame.h"

/* ------------------------------------------------------------------------------------ */
/* Recorder: one binary record per callback, so two runs compare with memcmp            */
/* ------------------------------------------------------------------------------------ */

struct rec_hdr {
    uint64_t line_no;
    uint64_t len;
    unsigned flags;
};

struct recorder {
    struct buf log;
    size_t calls;
    int modify; /* scribble over the line after recording (callbacks may modify it) */
};

static void rec_cb(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct recorder *r = ud;
    struct rec_hdr h;
    memset(&h, 0, sizeof h);
    h.line_no = line_no;
    h.len = len;
    h.flags = flags;
    assert_int_equal(line[len], '\0'); /* frame.h promises a terminator */
    assert_int_equal(buf_append(&r->log, &h, sizeof h), 0);
    assert_int_equal(buf_append(&r->log, line, len), 0);
    r->calls++;
    if (r->modify)
        memset(line, 'X', len);
}

/* Expected-record builder. */
static void rec_add(struct buf *b, uint64_t no, const char *s, size_t len, unsigned flags)
{
    struct rec_hdr h;
    memset(&h, 0, sizeof h);
    h.line_no = no;
    h.len = len;
    h.flags = flags;
    assert_int_equal(buf_append(b, &h, sizeof h), 0);
    assert_int_equal(buf_append(b, s, len), 0);
}

static void assert_same_log(const struct buf *got, const struct buf *want)
{
    assert_int_equal(got->len, want->len);
    if (got->len)
        assert_memory_equal(got->p, want->p, got->len);
}

/* Feed `data` in chunks given by sizes[] (cycled), then finish. */
static void run_chunked(struct recorder *r, size_t max_line, const char *data, size_t n,
                        const size_t *sizes, size_t nsizes, int finish)
{
    struct framer f;
    assert_int_equal(framer_init(&f, max_line), 0);
    size_t pos = 0, k = 0;
    while (pos < n) {
        size_t c = sizes[k++ % nsizes];
        if (c > n - pos)
            c = n - pos;
        framer_feed(&f, data + pos, c, rec_cb, r);
        pos += c;
    }
    if (finish)
        framer_finish(&f, rec_cb, r);
    framer_free(&f);
}

/* ------------------------------------------------------------------------------------ */
/* Independent model of frame.h: one byte at a time, no memchr                          */
/* ------------------------------------------------------------------------------------ */

static void model(struct buf *out, size_t max_line, const char *data, size_t n, int finish)
{
    char *cur = malloc(max_line + 1);
    assert_non_null(cur);
    size_t len = 0;
    uint64_t no = 0;
    int discarding = 0;
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (discarding) {
            if (c == '\n')
                discarding = 0;
        } else if (c == '\n') {
            rec_add(out, ++no, cur, len, 0);
            len = 0;
        } else if (len == max_line) {
            rec_add(out, ++no, cur, len, FRAME_OVERLONG);
            len = 0;
            discarding = 1;
        } else {
            cur[len++] = c;
        }
    }
    if (finish && !discarding && len)
        rec_add(out, ++no, cur, len, FRAME_EOF);
    free(cur);
}

/* ------------------------------------------------------------------------------------ */
/* Tests                                                                                */
/* ------------------------------------------------------------------------------------ */

static void test_init_errors(void **state)
{
    (void)state;
    struct framer f;
    assert_int_equal(framer_init(&f, 0), -EINVAL);
    framer_free(&f); /* safe after a failed init */
    struct recorder r = {BUF_INIT, 0, 0};
    framer_feed(&f, "a\n", 2, rec_cb, &r); /* ignored, no crash */
    framer_finish(&f, rec_cb, &r);
    assert_int_equal(r.calls, 0);
    buf_free(&r.log);
}

static void test_basic_lines(void **state)
{
    (void)state;
    struct recorder r = {BUF_INIT, 0, 0};
    struct buf want = BUF_INIT;
    const char *in = "one\ntwo\n\nthree";
    size_t all = strlen(in);
    run_chunked(&r, 64, in, all, &all, 1, 1);
    rec_add(&want, 1, "one", 3, 0);
    rec_add(&want, 2, "two", 3, 0);
    rec_add(&want, 3, "", 0, 0);
    rec_add(&want, 4, "three", 5, FRAME_EOF);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

static void test_partial_across_feeds(void **state)
{
    (void)state;
    struct framer f;
    struct recorder r = {BUF_INIT, 0, 0};
    assert_int_equal(framer_init(&f, 64), 0);
    framer_feed(&f, "{\"ts\":1", 7, rec_cb, &r);
    assert_int_equal(r.calls, 0);
    framer_feed(&f, "2}", 2, rec_cb, &r);
    assert_int_equal(r.calls, 0);
    framer_feed(&f, "\nnext", 5, rec_cb, &r);
    assert_int_equal(r.calls, 1);
    framer_feed(&f, "", 0, rec_cb, &r);
    assert_int_equal(r.calls, 1);
    framer_finish(&f, rec_cb, &r);
    assert_int_equal(r.calls, 2);
    framer_finish(&f, rec_cb, &r); /* nothing pending any more */
    assert_int_equal(r.calls, 2);
    assert_int_equal(f.line_no, 2);
    framer_free(&f);

    struct buf want = BUF_INIT;
    rec_add(&want, 1, "{\"ts\":12}", 9, 0);
    rec_add(&want, 2, "next", 4, FRAME_EOF);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

static void test_nul_bytes(void **state)
{
    (void)state;
    static const char in[] = "a\0b\n\0\0\n\0";
    struct recorder r = {BUF_INIT, 0, 0};
    size_t one = 1;
    run_chunked(&r, 16, in, sizeof in - 1, &one, 1, 1);
    struct buf want = BUF_INIT;
    rec_add(&want, 1, "a\0b", 3, 0);
    rec_add(&want, 2, "\0\0", 2, 0);
    rec_add(&want, 3, "\0", 1, FRAME_EOF);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

static void test_overlong_literal(void **state)
{
    (void)state;
    /* max_line 4: "abcd" fits exactly; "abcde..." is overlong; sync is kept after it */
    const char *in = "abcd\nabcdefghij\nxy\nabcde\n1234";
    struct recorder r = {BUF_INIT, 0, 0};
    size_t all = strlen(in);
    struct framer f;
    assert_int_equal(framer_init(&f, 4), 0);
    framer_feed(&f, in, all, rec_cb, &r);
    framer_finish(&f, rec_cb, &r);
    assert_int_equal(f.overlong, 2);
    assert_int_equal(f.line_no, 5);
    framer_free(&f);
    struct buf want = BUF_INIT;
    rec_add(&want, 1, "abcd", 4, 0);
    rec_add(&want, 2, "abcd", 4, FRAME_OVERLONG);
    rec_add(&want, 3, "xy", 2, 0);
    rec_add(&want, 4, "abcd", 4, FRAME_OVERLONG);
    rec_add(&want, 5, "1234", 4, FRAME_EOF);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

/* The overlong tail spans many feeds; the next line must still be framed whole. */
static void test_overlong_tail_many_feeds(void **state)
{
    (void)state;
    struct framer f;
    struct recorder r = {BUF_INIT, 0, 0};
    assert_int_equal(framer_init(&f, 8), 0);
    framer_feed(&f, "0123456", 7, rec_cb, &r);
    framer_feed(&f, "78", 2, rec_cb, &r); /* 9th byte: overlong, delivered now */
    assert_int_equal(r.calls, 1);
    for (int i = 0; i < 1000; i++)
        framer_feed(&f, "zzzzzzzzzzzzzzzz", 16, rec_cb, &r);
    assert_int_equal(r.calls, 1);
    framer_feed(&f, "zz\nok", 5, rec_cb, &r);
    framer_feed(&f, "\n", 1, rec_cb, &r);
    /* ending inside an overlong tail delivers nothing more */
    framer_feed(&f, "0123456789abc", 13, rec_cb, &r);
    framer_finish(&f, rec_cb, &r);
    framer_free(&f);
    struct buf want = BUF_INIT;
    rec_add(&want, 1, "01234567", 8, FRAME_OVERLONG);
    rec_add(&want, 2, "ok", 2, 0);
    rec_add(&want, 3, "01234567", 8, FRAME_OVERLONG);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

static void test_reset(void **state)
{
    (void)state;
    struct framer f;
    struct recorder r = {BUF_INIT, 0, 0};
    assert_int_equal(framer_init(&f, 4), 0);
    framer_feed(&f, "old-connection-tail", 19, rec_cb, &r); /* overlong, delivered */
    framer_reset(&f);                                       /* also stops discarding */
    framer_feed(&f, "par", 3, rec_cb, &r);
    framer_reset(&f); /* partial "par" dropped */
    framer_feed(&f, "new\n", 4, rec_cb, &r);
    framer_free(&f);
    struct buf want = BUF_INIT;
    rec_add(&want, 1, "old-", 4, FRAME_OVERLONG);
    rec_add(&want, 2, "new", 3, 0);
    assert_same_log(&r.log, &want);
    buf_free(&r.log);
    buf_free(&want);
}

/* The callback may modify the bytes in place; that must not leak into later lines. */
static void test_callback_modifies(void **state)
{
    (void)state;
    const char *in = "abc\ndef\nghijklmnop\nq";
    size_t n = strlen(in);
    struct recorder a = {BUF_INIT, 0, 1}, b = {BUF_INIT, 0, 0};
    size_t three = 3;
    run_chunked(&a, 8, in, n, &three, 1, 1);
    run_chunked(&b, 8, in, n, &n, 1, 1);
    assert_same_log(&a.log, &b.log);
    buf_free(&a.log);
    buf_free(&b.log);
}

/* Byte by byte, all at once, every 2-way split and random chunkings: identical results. */
static void test_chunking_invariance(void **state)
{
    (void)state;
    const char *in = "short\n"
                     "exactly8\n"
                     "nine-long\n"
                     "\n"
                     "a much longer line that overflows several times\n"
                     "x\n"
                     "12345678"
                     "\n"
                     "123456789\n"
                     "tail-without-newline";
    size_t n = strlen(in);
    struct buf want = BUF_INIT;
    model(&want, 8, in, n, 1);

    struct recorder whole = {BUF_INIT, 0, 0};
    run_chunked(&whole, 8, in, n, &n, 1, 1);
    assert_same_log(&whole.log, &want);
    buf_free(&whole.log);

    size_t one = 1;
    struct recorder bytes = {BUF_INIT, 0, 0};
    run_chunked(&bytes, 8, in, n, &one, 1, 1);
    assert_same_log(&bytes.log, &want);
    buf_free(&bytes.log);

    for (size_t split = 1; split < n; split++) {
        size_t sizes[2] = {split, n};
        struct recorder r = {BUF_INIT, 0, 0};
        run_chunked(&r, 8, in, n, sizes, 2, 1);
        assert_same_log(&r.log, &want);
        buf_free(&r.log);
    }
    for (size_t c = 2; c <= 17; c++) {
        struct recorder r = {BUF_INIT, 0, 0};
        run_chunked(&r, 8, in, n, &c, 1, 1);
        assert_same_log(&r.log, &want);
        buf_free(&r.log);
    }
    buf_free(&want);
}

/* Random streams (with NULs and many '\n') against the model, random chunk sizes. */
static void test_random_vs_model(void **state)
{
    (void)state;
    uint32_t s = 2463534242u;
    enum { N = 20000 };
    char *data = malloc(N);
    assert_non_null(data);
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < N; i++) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            unsigned v = s % 64;
            data[i] = v < 3 ? '\n' : v == 3 ? '\0' : (char)('a' + v % 26);
        }
        size_t max_line = 1 + (size_t)round % 40;
        struct buf want = BUF_INIT;
        model(&want, max_line, data, N, round & 1);
        size_t sizes[7];
        for (size_t k = 0; k < 7; k++) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            sizes[k] = 1 + s % 97;
        }
        struct recorder r = {BUF_INIT, 0, 0};
        run_chunked(&r, max_line, data, N, sizes, 7, round & 1);
        assert_same_log(&r.log, &want);
        buf_free(&r.log);
        buf_free(&want);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_basic_lines),
        cmocka_unit_test(test_partial_across_feeds),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_overlong_literal),
        cmocka_unit_test(test_overlong_tail_many_feeds),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_callback_modifies),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests_name("unit_frame", tests, NULL, NULL);
}
