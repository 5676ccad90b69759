/*
 * fuzz_lineproto.c — libFuzzer harness for the line-protocol encoder and its strict reader
 * (src/lineproto.c).
 *
 * Input layout: byte 0 = number of tags (low 2 bits) and fields (next 2 bits, + 1); then the
 * measurement, the tag keys and values, the field keys, each as a length byte (mod 12) and
 * that many bytes; then per field a type byte (mod 5) and its value (8 bytes of a double,
 * int64 or uint64, 1 byte of a bool, or a length byte and the string). Missing bytes read as
 * zero. Checked:
 *   - what lp_encode() writes parses back with lp_parse() to exactly the input (names, tags
 *     sorted, field types and values bit for bit, timestamp), and lp_series() +
 *     lp_encode_series() write the same bytes;
 *   - what lp_encode() refuses has a documented reason: a name lp_name_problem() refuses, a
 *     string lp_string_problem() refuses, a non-finite float, a duplicate or "time" key;
 *   - the whole input as a line: lp_parse() never crashes, and what it accepts re-encodes to
 *     a line that parses back to the same values.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lineproto.h"

struct fz_in {
    const uint8_t *p;
    size_t n, i;
};

static uint8_t fz_byte(struct fz_in *in)
{
    return in->i < in->n ? in->p[in->i++] : 0;
}

/* A NUL-terminated name of up to 11 bytes (NULs inside become 'x': names are C strings). */
static void fz_name(struct fz_in *in, char *out)
{
    size_t len = fz_byte(in) % 12;
    for (size_t k = 0; k < len; k++) {
        char c = (char)fz_byte(in);
        out[k] = c ? c : 'x';
    }
    out[len] = '\0';
}

static uint64_t fz_u64(struct fz_in *in)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v = v << 8 | fz_byte(in);
    return v;
}

static int fz_same_field(const struct lp_field *a, const struct lp_field *b)
{
    if (strcmp(a->key, b->key) || a->type != b->type)
        return 0;
    switch (a->type) {
    case LP_FLOAT:
        return memcmp(&a->v.f, &b->v.f, sizeof a->v.f) == 0;
    case LP_INT:
        return a->v.i == b->v.i;
    case LP_UINT:
        return a->v.u == b->v.u;
    case LP_BOOL:
        return a->v.b == b->v.b;
    case LP_STRING:
        return a->v.s.len == b->v.s.len && memcmp(a->v.s.s, b->v.s.s, a->v.s.len) == 0;
    }
    return 0;
}

/* lp_parse(line) must give back exactly this point (tags already sorted by lp_encode). */
static void fz_roundtrip(const struct buf *line, const char *meas, const struct lp_tag *tags,
                         size_t nt, const struct lp_field *fields, size_t nf, int64_t ts)
{
    struct buf sc = BUF_INIT;
    struct lp_point *pt = malloc(sizeof *pt);
    if (!pt)
        abort();
    if (lp_parse(line->p, line->len, pt, &sc) != 0)
        abort(); /* written but not readable */
    if (strcmp(pt->measurement, meas) || pt->ntags != nt || pt->nfields != nf || pt->ts_ns != ts)
        abort();
    for (size_t k = 0; k < nt; k++)
        if (strcmp(pt->tags[k].key, tags[k].key) || strcmp(pt->tags[k].value, tags[k].value))
            abort();
    for (size_t k = 0; k < nf; k++)
        if (!fz_same_field(&pt->fields[k], &fields[k]))
            abort();
    free(pt);
    buf_free(&sc);
}

/* lp_encode refused: one of the documented reasons must hold. */
static int fz_has_reason(const char *meas, const struct lp_tag *tags, size_t nt,
                         const struct lp_field *fields, size_t nf)
{
    if (lp_name_problem(meas, strlen(meas), LP_MEASUREMENT))
        return 1;
    for (size_t k = 0; k < nt; k++) {
        if (lp_name_problem(tags[k].key, strlen(tags[k].key), LP_KEY) ||
            lp_name_problem(tags[k].value, strlen(tags[k].value), LP_TAG_VALUE))
            return 1;
        for (size_t j = 0; j < k; j++)
            if (strcmp(tags[j].key, tags[k].key) == 0)
                return 1;
    }
    for (size_t k = 0; k < nf; k++) {
        const struct lp_field *f = &fields[k];
        if (lp_name_problem(f->key, strlen(f->key), LP_KEY))
            return 1;
        if (f->type == LP_FLOAT && !isfinite(f->v.f))
            return 1;
        if (f->type == LP_STRING && lp_string_problem(f->v.s.s, f->v.s.len))
            return 1;
        for (size_t j = 0; j < k; j++)
            if (strcmp(fields[j].key, f->key) == 0)
                return 1;
    }
    return 0;
}

/* The raw input as a line: never crash; what parses re-encodes to the same values. */
static void fz_parse_raw(const uint8_t *data, size_t size)
{
    struct buf sc = BUF_INIT, out = BUF_INIT;
    struct lp_point *pt = malloc(sizeof *pt);
    if (!pt)
        abort();
    if (lp_parse((const char *)data, size, pt, &sc) == 0) {
        if (lp_encode(&out, pt->measurement, pt->tags, pt->ntags, pt->fields, pt->nfields,
                      pt->ts_ns) != 0)
            abort(); /* read but not writable */
        fz_roundtrip(&out, pt->measurement, pt->tags, pt->ntags, pt->fields, pt->nfields,
                     pt->ts_ns);
    }
    free(pt);
    buf_free(&sc);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {.p = data, .n = size, .i = 0};
    uint8_t hdr = fz_byte(&in);
    size_t nt = hdr & 3, nf = 1 + ((hdr >> 2) & 3);
    char meas[12], tk[4][12], tv[4][12], fk[4][12], sv[4][256];
    struct lp_tag tags[4];
    struct lp_field fields[4];
    fz_name(&in, meas);
    for (size_t k = 0; k < nt; k++) {
        fz_name(&in, tk[k]);
        fz_name(&in, tv[k]);
        tags[k] = (struct lp_tag){tk[k], tv[k]};
    }
    for (size_t k = 0; k < nf; k++) {
        fz_name(&in, fk[k]);
        struct lp_field *f = &fields[k];
        memset(f, 0, sizeof *f);
        f->key = fk[k];
        switch (fz_byte(&in) % 5) {
        case 0: {
            uint64_t bits = fz_u64(&in);
            f->type = LP_FLOAT;
            memcpy(&f->v.f, &bits, sizeof bits);
            break;
        }
        case 1:
            f->type = LP_INT;
            f->v.i = (int64_t)fz_u64(&in);
            break;
        case 2:
            f->type = LP_UINT;
            f->v.u = fz_u64(&in);
            break;
        case 3:
            f->type = LP_BOOL;
            f->v.b = fz_byte(&in) & 1;
            break;
        default: {
            size_t len = fz_byte(&in);
            for (size_t j = 0; j < len; j++)
                sv[k][j] = (char)fz_byte(&in);
            f->type = LP_STRING;
            f->v.s.s = sv[k];
            f->v.s.len = len;
            break;
        }
        }
    }
    int64_t ts = (int64_t)fz_u64(&in);

    struct buf line = BUF_INIT, ser = BUF_INIT, line2 = BUF_INIT;
    int rc = lp_encode(&line, meas, tags, nt, fields, nf, ts);
    if (rc == 0) {
        fz_roundtrip(&line, meas, tags, nt, fields, nf, ts);
        /* the pre-encoded series path writes the same bytes */
        if (lp_series(&ser, meas, tags, nt) != 0 ||
            lp_encode_series(&line2, ser.p, ser.len, fields, nf, ts) != 0 ||
            line2.len != line.len || memcmp(line2.p, line.p, line.len) != 0)
            abort();
    } else if (rc != -EINVAL || !fz_has_reason(meas, tags, nt, fields, nf)) {
        abort(); /* refused without a documented reason */
    }
    buf_free(&line);
    buf_free(&ser);
    buf_free(&line2);

    fz_parse_raw(data, size);
    return 0;
}
