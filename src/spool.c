/*
 * spool.c — durable on-disk store-and-forward spool: segment files of CRC-32C checked
 * records, one read cursor per sink, out-of-order acknowledgements, group commit, recovery.
 * See spool.h for the API and docs/reliability.md for the format and the guarantees.
 *
 * Everything here is single-threaded.
 */
#include "spool.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* ----------------------------------------------------------------------------------------- */
/* On-disk format                                                                            */
/* ----------------------------------------------------------------------------------------- */

/*
 * Record header, 32 bytes, little endian:
 *    0 u32 magic  "ISPL"
 *    4 u32 crc    CRC-32C over header bytes 8..31 and the payload
 *    8 u32 len    payload bytes
 *   12 u8  sinks  bitmask of sinks that need the record
 *   13 u8  flags  SPOOL_F_*
 *   14 u16 0      reserved (must be 0: part of validation)
 *   16 u64 seq
 *   24 i64 wall   CLOCK_REALTIME ns at append
 * The magic lets recovery resynchronise after damage; the CRC covering the header fields
 * means a flipped length or sequence number is detected like a flipped payload byte.
 */
#define REC_MAGIC     0x4c505349u /* "ISPL" read as little endian */
#define HDR           32u
#define STATE_MAGIC   0x53505349u /* "ISPS" */
#define STATE_VERSION 1u
#define STATE_SIZE    96u
#define STATE_NAME    "spool.state"
#define STATE_TMP     "spool.state.tmp"
#define LOCK_NAME     "spool.lock"
#define SEG_NAME_LEN  26 /* "spool-" + 16 hex + ".seg" */

static const unsigned char magic_bytes[4] = {'I', 'S', 'P', 'L'};

struct hdr {
    uint32_t crc;
    uint32_t len;
    unsigned sinks;
    unsigned flags;
    uint64_t seq;
    int64_t wall;
};

static void put16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}
static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* ----------------------------------------------------------------------------------------- */
/* CRC-32C                                                                                   */
/* ----------------------------------------------------------------------------------------- */

/* Reflected Castagnoli polynomial 0x82F63B78, byte-wise table (the portable fallback). */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

static uint32_t crc32c_sw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n--)
        c = crc32c_table[(c ^ *p++) & 0xffu] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
/* SSE4.2 has a CRC-32C instruction: ~8 bytes per cycle, which keeps appends cheap. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c32, const uint8_t *p,
                                                            size_t n)
{
    uint64_t c = c32;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len)
{
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_hw(c, data, len);
#endif
    return ~crc32c_sw(c, data, len);
}

/* ----------------------------------------------------------------------------------------- */
/* Record encoding and validation                                                            */
/* ----------------------------------------------------------------------------------------- */

static void hdr_encode(uint8_t *h, uint32_t len, unsigned sinks, unsigned flags, uint64_t seq,
                       int64_t wall)
{
    put32(h, REC_MAGIC);
    put32(h + 8, len);
    h[12] = (uint8_t)sinks;
    h[13] = (uint8_t)flags;
    put16(h + 14, 0);
    put64(h + 16, seq);
    put64(h + 24, (uint64_t)wall);
}

static void hdr_decode(const uint8_t *h, struct hdr *o)
{
    o->crc = get32(h + 4);
    o->len = get32(h + 8);
    o->sinks = h[12];
    o->flags = h[13];
    o->seq = get64(h + 16);
    o->wall = (int64_t)get64(h + 24);
}

/*
 * Is there a complete, intact record at b[off] with seq > min_seq? Checks magic, reserved
 * bits, bounds, then the CRC (last: it is the expensive part).
 */
static bool rec_valid_at(const uint8_t *b, size_t len, size_t off, uint64_t min_seq,
                         struct hdr *out)
{
    if (off > len || len - off < HDR)
        return false;
    const uint8_t *h = b + off;
    if (get32(h) != REC_MAGIC || get16(h + 14) != 0 || h[12] == 0)
        return false;
    struct hdr d;
    hdr_decode(h, &d);
    if (d.len > SPOOL_MAX_RECORD || d.len > len - off - HDR || d.seq == 0 || d.seq <= min_seq)
        return false;
    if (spool_crc32c(0, h + 8, HDR - 8 + d.len) != d.crc)
        return false;
    if (out)
        *out = d;
    return true;
}

/* Offset of the first valid record at or after `from`, or `len` if there is none. */
static size_t find_valid(const uint8_t *b, size_t len, size_t from, uint64_t min_seq)
{
    while (from < len && len - from >= HDR) {
        const uint8_t *p = memmem(b + from, len - from, magic_bytes, sizeof magic_bytes);
        if (!p)
            return len;
        size_t q = (size_t)(p - b);
        if (rec_valid_at(b, len, q, min_seq, NULL))
            return q;
        from = q + 1;
    }
    return len;
}

/* ----------------------------------------------------------------------------------------- */
/* Data structures                                                                           */
/* ----------------------------------------------------------------------------------------- */

struct seg {
    uint64_t name;      /* sequence number in the file name (first seq when created) */
    uint64_t first_seq; /* 0 while empty */
    uint64_t last_seq;
    uint64_t bytes; /* valid bytes, including the write buffer for the active segment */
    uint64_t nrec;
    uint64_t nalert;
    bool damaged; /* recovery or a read found damage (count it once) */
};

/*
 * Ring of bits, one per sequence number from `wseq` on: 1 = done for this sink (acked,
 * not tagged for it, or vanished). Words are popped as the committed cursor passes them.
 */
struct bitwin {
    uint64_t *w;
    size_t cap; /* words, power of two */
    size_t head;
    size_t n;
    uint64_t wseq; /* seq of bit 0 of w[head], multiple of 64 */
};

/* A positioned reader with a chunk cache over one segment file. */
struct reader {
    int fd;
    uint64_t fd_name;
    uint8_t *buf;
    size_t cap;
    uint64_t bname; /* segment the chunk belongs to (UINT64_MAX = none) */
    uint64_t boff;
    size_t blen;
};

struct cursor {
    uint64_t base;         /* committed: lowest seq not yet done */
    uint64_t hi;           /* every seq < hi has been read (classified) at least once */
    uint64_t pending;      /* records tagged for this sink not yet acked */
    uint64_t replay_below; /* records re-read below this seq are re-deliveries */
    struct bitwin bits;
    size_t seg;   /* read position: index into segs ... */
    uint64_t off; /* ... and byte offset */
    struct reader rd;
    /* where the oldest pending record was last found (spool_stats) */
    uint64_t age_name, age_off;
};

struct spool {
    struct spool_config cfg;
    int dirfd;
    int lockfd;
    struct seg *segs;
    size_t nsegs, segcap;
    int afd;          /* active segment (segs[nsegs-1]), O_APPEND; -1 if none */
    uint64_t flushed; /* active segment bytes already written to the file */
    bool tail_dirty;  /* a failed write left bytes past `flushed` we could not cut */
    uint8_t *wbuf;
    size_t wlen, wcap;
    uint64_t next_seq;
    uint64_t open_seq; /* next_seq at open: older records are replays */
    uint64_t total;    /* bytes in all segments incl. wbuf */
    uint64_t unsynced; /* bytes written since the last fdatasync */
    bool need_dirsync;
    int degraded;
    double retry_at;
    double state_at;
    bool state_dirty;
    uint64_t state_next_seq; /* next_seq recorded in the last state file written */
    struct spool_stats st;   /* counters (derived fields are filled in spool_stats) */
    struct cursor cur[SPOOL_MAX_SINKS];
    struct reader age_rd;
    uint8_t *scratch;
    size_t scratch_cap;
};

static void seg_name(char *out, size_t outlen, uint64_t name)
{
    snprintf(out, outlen, "spool-%016" PRIx64 ".seg", name);
}

/* ----------------------------------------------------------------------------------------- */
/* Bit window                                                                                */
/* ----------------------------------------------------------------------------------------- */

static uint64_t *bw_word(struct bitwin *b, size_t i)
{
    return &b->w[(b->head + i) & (b->cap - 1)];
}

/* Make bit `seq` addressable (seq >= base; base given so an empty window can be re-anchored). */
static int bw_ensure(struct bitwin *b, uint64_t base, uint64_t seq)
{
    if (b->n == 0)
        b->wseq = base & ~(uint64_t)63;
    while (seq >= b->wseq + 64 * (uint64_t)b->n) {
        if (b->n == b->cap) {
            size_t ncap = b->cap ? b->cap * 2 : 16;
            uint64_t *nw = malloc(ncap * sizeof *nw);
            if (!nw)
                return -ENOMEM;
            for (size_t i = 0; i < b->n; i++)
                nw[i] = *bw_word(b, i);
            free(b->w);
            b->w = nw;
            b->cap = ncap;
            b->head = 0;
        }
        *bw_word(b, b->n) = 0;
        b->n++;
    }
    return 0;
}

static bool bw_test(struct bitwin *b, uint64_t seq)
{
    uint64_t d = seq - b->wseq;
    return (*bw_word(b, (size_t)(d >> 6)) >> (d & 63)) & 1u;
}

static void bw_set(struct bitwin *b, uint64_t seq)
{
    uint64_t d = seq - b->wseq;
    *bw_word(b, (size_t)(d >> 6)) |= (uint64_t)1 << (d & 63);
}

static void bw_pop(struct bitwin *b)
{
    b->head = (b->head + 1) & (b->cap - 1);
    b->n--;
    b->wseq += 64;
}

/* ----------------------------------------------------------------------------------------- */
/* Cursor bookkeeping                                                                        */
/* ----------------------------------------------------------------------------------------- */

/* Move the committed cursor over the done prefix; drop words wholly below it. */
static void cur_advance(struct cursor *c)
{
    struct bitwin *b = &c->bits;
    while (c->base < c->hi) {
        uint64_t d = c->base - b->wseq;
        unsigned bit = (unsigned)(d & 63);
        uint64_t w = *bw_word(b, (size_t)(d >> 6)) >> bit;
        if (w == UINT64_MAX >> bit) {
            c->base += 64 - bit;
        } else {
            c->base += (uint64_t)__builtin_ctzll(~w);
            break;
        }
    }
    if (c->base > c->hi)
        c->base = c->hi;
    while (b->n > 0 && b->wseq + 64 <= c->base)
        bw_pop(b);
}

/* Everything below x is done (dropped segment). Pending counts are the caller's business. */
static void cur_force_done(struct cursor *c, uint64_t x)
{
    if (x <= c->base)
        return;
    if (x >= c->hi) {
        c->bits.n = 0;
        c->base = c->hi = x;
        return;
    }
    struct bitwin *b = &c->bits;
    while (b->n > 0 && b->wseq + 64 <= x)
        bw_pop(b);
    for (uint64_t s = c->base > b->wseq ? c->base : b->wseq; s < x; s++)
        bw_set(b, s);
    c->base = x;
    cur_advance(c);
}

/* ----------------------------------------------------------------------------------------- */
/* Small helpers                                                                             */
/* ----------------------------------------------------------------------------------------- */

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int read_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

static struct seg *active_seg(struct spool *sp)
{
    return &sp->segs[sp->nsegs - 1];
}

static int degrade(struct spool *sp, int err, const char *op)
{
    if (!sp->degraded)
        log_error("spool_degraded", "op=%s err=\"%s\" retry_in=%.1f", op, strerror(-err),
                  sp->cfg.retry_interval);
    sp->degraded = err;
    sp->retry_at = util_mono() + sp->cfg.retry_interval;
    return err;
}

static bool do_fsync(const struct spool *sp)
{
    return sp->cfg.fsync != SPOOL_FSYNC_NONE;
}

/* ----------------------------------------------------------------------------------------- */
/* Readers                                                                                   */
/* ----------------------------------------------------------------------------------------- */

static void reader_init(struct reader *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->bname = UINT64_MAX;
}

static void reader_free(struct reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    reader_init(r);
}

/*
 * Make [off, off+len) of segment `s` (file-backed part only) available in r->buf.
 * Returns a pointer to it, or NULL with *err (-errno, or -EBADMSG when the file is short).
 */
static const uint8_t *reader_get(struct spool *sp, struct reader *r, const struct seg *s,
                                 uint64_t off, size_t len, uint64_t limit, int *err)
{
    if (r->bname == s->name && off >= r->boff && off + len <= r->boff + r->blen)
        return r->buf + (off - r->boff);
    if (r->fd < 0 || r->fd_name != s->name) {
        if (r->fd >= 0)
            close(r->fd);
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof name, s->name);
        r->fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            *err = -errno;
            return NULL;
        }
        r->fd_name = s->name;
    }
    size_t want = len > sp->cfg.write_buffer ? len : sp->cfg.write_buffer;
    if (want > limit - off)
        want = (size_t)(limit - off);
    if (want < len) {
        *err = -EBADMSG;
        return NULL;
    }
    if ((*err = grow(&r->buf, &r->cap, want)) < 0)
        return NULL;
    size_t got = 0;
    r->bname = UINT64_MAX;
    if ((*err = read_full(r->fd, r->buf, want, off, &got)) < 0)
        return NULL;
    r->bname = s->name;
    r->boff = off;
    r->blen = got;
    if (got < len) {
        *err = -EBADMSG;
        return NULL;
    }
    return r->buf;
}

/*
 * Read the record at (segment index si, off). Returns 0 with *h and *payload; 1 at the end of
 * a closed segment; -EAGAIN at the end of the active one; -EBADMSG when the bytes there are
 * not an intact record; another negative errno on I/O errors.
 */
static int read_rec(struct spool *sp, struct reader *r, size_t si, uint64_t off, struct hdr *h,
                    const uint8_t **payload)
{
    const struct seg *s = &sp->segs[si];
    bool active = si == sp->nsegs - 1;
    if (off >= s->bytes)
        return active ? -EAGAIN : 1;
    if (active && off >= sp->flushed) {
        /* Still in the write buffer: written by us, no need to check the CRC. */
        const uint8_t *p = sp->wbuf + (off - sp->flushed);
        hdr_decode(p, h);
        *payload = p + HDR;
        return 0;
    }
    uint64_t limit = active ? sp->flushed : s->bytes;
    int err = 0;
    const uint8_t *p = reader_get(sp, r, s, off, HDR, limit, &err);
    if (!p)
        return err;
    if (get32(p) != REC_MAGIC)
        return -EBADMSG;
    uint32_t len = get32(p + 8);
    if (len > SPOOL_MAX_RECORD || off + HDR + len > limit)
        return -EBADMSG;
    p = reader_get(sp, r, s, off, HDR + len, limit, &err);
    if (!p)
        return err;
    if (!rec_valid_at(p, HDR + len, 0, 0, h))
        return -EBADMSG;
    *payload = p + HDR;
    return 0;
}

/*
 * A record at (si, off) is damaged: find the next intact one in the same segment. Reads the
 * rest of the segment into scratch (rare path). Returns the new offset (may be the end).
 */
static uint64_t resync(struct spool *sp, size_t si, uint64_t off)
{
    struct seg *s = &sp->segs[si];
    bool active = si == sp->nsegs - 1;
    uint64_t limit = active ? sp->flushed : s->bytes;
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof name, s->name);
    uint64_t next = limit;
    size_t got = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && grow(&sp->scratch, &sp->scratch_cap, (size_t)(limit - off)) == 0 &&
        read_full(fd, sp->scratch, (size_t)(limit - off), off, &got) == 0)
        next = off + find_valid(sp->scratch, got, 1, 0);
    if (fd >= 0)
        close(fd);
    if (!s->damaged) {
        s->damaged = true;
        sp->st.drops_corrupt++;
        log_warn("spool_corrupt_record", "segment=%s offset=%" PRIu64 " skipped=%" PRIu64, name,
                 off, next - off);
    }
    /* Nothing intact left in the file part: an active segment continues in the write
     * buffer, which starts exactly at `flushed` (= limit). */
    return next;
}

/* ----------------------------------------------------------------------------------------- */
/* Write path                                                                                */
/* ----------------------------------------------------------------------------------------- */

/*
 * write(2) the write buffer to the active segment. On failure the file is cut back to
 * `flushed` so it only ever holds whole records, and the buffer is kept for a retry.
 * Returns 0 or -errno; does not change the degraded state.
 */
static int flush_raw(struct spool *sp)
{
    if (sp->wlen == 0)
        return 0;
    if (sp->afd < 0)
        return sp->degraded ? sp->degraded : -EIO;
    if (sp->tail_dirty) {
        if (ftruncate(sp->afd, (off_t)sp->flushed) < 0)
            return -errno;
        sp->tail_dirty = false;
    }
    size_t done = 0;
    while (done < sp->wlen) {
        ssize_t n = write(sp->afd, sp->wbuf + done, sp->wlen - done);
        sp->st.writes++;
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            int err = n < 0 ? -errno : -EIO;
            /* A short write left part of the buffer in the file: cut it so the file stays a
             * sequence of whole records (O_APPEND puts the retry at the new end). */
            if (done > 0 && ftruncate(sp->afd, (off_t)sp->flushed) < 0)
                sp->tail_dirty = true;
            return err;
        }
        done += (size_t)n;
    }
    sp->flushed += sp->wlen;
    sp->unsynced += sp->wlen;
    sp->wlen = 0;
    sp->st.written_seq = sp->next_seq - 1;
    return 0;
}

/* fdatasync the active segment and fsync the directory if a segment was created. */
static int datasync(struct spool *sp)
{
    if (!do_fsync(sp))
        return 0;
    if (sp->unsynced && sp->afd >= 0) {
        if (fdatasync(sp->afd) < 0)
            return degrade(sp, -errno, "fdatasync");
        sp->st.fsyncs++;
        sp->unsynced = 0;
    }
    if (sp->need_dirsync) {
        if (fsync(sp->dirfd) < 0)
            return degrade(sp, -errno, "fsync_dir");
        sp->st.fsyncs++;
        sp->need_dirsync = false;
    }
    sp->st.synced_seq = sp->st.written_seq;
    return 0;
}

static int segs_reserve(struct spool *sp)
{
    if (sp->nsegs < sp->segcap)
        return 0;
    size_t ncap = sp->segcap ? sp->segcap * 2 : 16;
    struct seg *n = realloc(sp->segs, ncap * sizeof *n);
    if (!n)
        return -ENOMEM;
    sp->segs = n;
    sp->segcap = ncap;
    return 0;
}

/* Create the active segment spool-<next_seq>.seg and push it. Keeps the old fd on failure. */
static int open_active(struct spool *sp)
{
    int r = segs_reserve(sp);
    if (r < 0)
        return r;
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof name, sp->next_seq);
    int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (sp->afd >= 0)
        close(sp->afd);
    sp->afd = fd;
    sp->segs[sp->nsegs++] = (struct seg){.name = sp->next_seq};
    sp->flushed = 0;
    sp->unsynced = 0;
    sp->tail_dirty = false;
    sp->need_dirsync = true;
    return 0;
}

/* Close the active segment (written and, unless `none`, synced) and start a new one. */
static int roll(struct spool *sp)
{
    int r = flush_raw(sp);
    if (r < 0)
        return degrade(sp, r, "write");
    if (do_fsync(sp) && sp->unsynced) {
        if (fdatasync(sp->afd) < 0)
            return degrade(sp, -errno, "fdatasync");
        sp->st.fsyncs++;
        sp->unsynced = 0;
    }
    r = open_active(sp);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return degrade(sp, r, "create_segment");
    return 0;
}

/* Append without the byte-bound check (used by spool_appendv and for relocating alerts). */
static int append_internal(struct spool *sp, unsigned sinks, unsigned flags, int64_t wall,
                           const struct iovec *iov, int iovcnt, size_t len, uint64_t *seq)
{
    size_t rec = HDR + len;
    int r;
    if (sp->afd < 0)
        return sp->degraded ? sp->degraded : -EIO;
    if (active_seg(sp)->nrec > 0 && active_seg(sp)->bytes + rec > sp->cfg.segment_bytes &&
        (r = roll(sp)) < 0)
        return r;
    if (sp->wlen + rec > sp->wcap) {
        if ((r = flush_raw(sp)) < 0)
            return degrade(sp, r, "write");
        if (rec > sp->wcap && (r = grow(&sp->wbuf, &sp->wcap, rec)) < 0)
            return r;
    }
    uint8_t *h = sp->wbuf + sp->wlen;
    uint64_t s = sp->next_seq;
    hdr_encode(h, (uint32_t)len, sinks, flags, s, wall);
    uint8_t *p = h + HDR;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    put32(h + 4, spool_crc32c(0, h + 8, HDR - 8 + len));

    struct seg *a = active_seg(sp);
    sp->wlen += rec;
    a->bytes += rec;
    sp->total += rec;
    if (!a->first_seq)
        a->first_seq = s;
    a->last_seq = s;
    a->nrec++;
    if (flags & SPOOL_F_ALERT)
        a->nalert++;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++)
        if (sinks & (1u << k))
            sp->cur[k].pending++;
    sp->next_seq++;
    sp->st.appended++;
    sp->st.appended_bytes += len;
    if (seq)
        *seq = s;
    return 0;
}

/* ----------------------------------------------------------------------------------------- */
/* Segment deletion and the byte bound                                                       */
/* ----------------------------------------------------------------------------------------- */

static bool cur_is_pending(struct cursor *c, uint64_t seq)
{
    if (seq < c->base)
        return false;
    if (seq >= c->hi)
        return true;
    return !bw_test(&c->bits, seq);
}

static unsigned pending_mask(struct spool *sp, const struct hdr *h)
{
    unsigned m = 0;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++)
        if ((h->sinks & (1u << k)) && cur_is_pending(&sp->cur[k], h->seq))
            m |= 1u << k;
    return m;
}

static void reader_forget(struct reader *r, uint64_t name)
{
    if (r->fd >= 0 && r->fd_name == name) {
        close(r->fd); /* an open fd would keep the blocks of the unlinked file allocated */
        r->fd = -1;
    }
    if (r->bname == name)
        r->bname = UINT64_MAX;
}

/* Delete the oldest segment file; cursors inside it move to the start of the next one. */
static void remove_front(struct spool *sp)
{
    struct seg *s = &sp->segs[0];
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof name, s->name);
    if (unlinkat(sp->dirfd, name, 0) < 0 && errno != ENOENT)
        log_warn("spool_unlink_failed", "segment=%s err=\"%s\"", name, strerror(errno));
    sp->total -= s->bytes;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++) {
        struct cursor *c = &sp->cur[k];
        reader_forget(&c->rd, s->name);
        if (c->seg == 0)
            c->off = 0;
        else
            c->seg--;
    }
    reader_forget(&sp->age_rd, s->name);
    memmove(sp->segs, sp->segs + 1, (sp->nsegs - 1) * sizeof *sp->segs);
    sp->nsegs--;
}

/* Delete segments every sink has committed past (never the active one). */
static void cleanup(struct spool *sp)
{
    uint64_t minb = UINT64_MAX;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++)
        if (sp->cur[k].base < minb)
            minb = sp->cur[k].base;
    while (sp->nsegs > 1 && (sp->segs[0].nrec == 0 || sp->segs[0].last_seq < minb))
        remove_front(sp);
}

/* Read a whole closed segment into scratch. Returns the bytes read (0 if unreadable). */
static size_t load_segment(struct spool *sp, const struct seg *s)
{
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof name, s->name);
    size_t got = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || grow(&sp->scratch, &sp->scratch_cap, (size_t)s->bytes) < 0 ||
        read_full(fd, sp->scratch, (size_t)s->bytes, 0, &got) < 0)
        got = 0;
    if (fd >= 0)
        close(fd);
    return got;
}

/* Iterate the intact records of scratch[0..len): off is advanced past damage. */
static bool scratch_next(struct spool *sp, size_t len, size_t *off, struct hdr *h)
{
    while (*off < len) {
        if (rec_valid_at(sp->scratch, len, *off, 0, h))
            return true;
        *off = find_valid(sp->scratch, len, *off + 1, 0);
    }
    return false;
}

/*
 * The spool is over its byte bound: drop the oldest segment(s). Pending alerts in a dropped
 * segment are first appended again (same payload, wall time and flags + RELOCATED) so they
 * survive; if they would take more than half the segment nothing is dropped (-ENOBUFS), so
 * a spool full of alerts refuses new records instead of spinning.
 */
static int make_room(struct spool *sp, size_t need)
{
    while (sp->total + need > sp->cfg.max_bytes) {
        if (sp->nsegs < 2)
            return -ENOBUFS;
        struct seg s = sp->segs[0];
        size_t len = load_segment(sp, &s);
        struct hdr h;
        size_t off = 0;
        uint64_t reloc = 0;
        while (scratch_next(sp, len, &off, &h)) {
            if ((h.flags & SPOOL_F_ALERT) && pending_mask(sp, &h))
                reloc += HDR + h.len;
            off += HDR + h.len;
        }
        if (reloc * 2 > s.bytes) {
            log_debug("spool_full_of_alerts", "alert_bytes=%" PRIu64, reloc);
            return -ENOBUFS;
        }
        uint64_t nreloc = 0, ndrop = 0;
        for (off = 0; reloc && scratch_next(sp, len, &off, &h); off += HDR + h.len) {
            unsigned m = pending_mask(sp, &h);
            if (!(h.flags & SPOOL_F_ALERT) || !m)
                continue;
            struct iovec iov = {sp->scratch + off + HDR, h.len};
            int r = append_internal(sp, m, (h.flags & SPOOL_F_ALERT) | SPOOL_F_RELOCATED, h.wall,
                                    &iov, 1, h.len, NULL);
            if (r < 0)
                return r; /* copies made so far are duplicates: at-least-once still holds */
            nreloc++;
        }
        for (off = 0; scratch_next(sp, len, &off, &h); off += HDR + h.len) {
            unsigned m = pending_mask(sp, &h);
            for (unsigned k = 0; k < sp->cfg.nsinks; k++)
                if ((m & (1u << k)) && sp->cur[k].pending)
                    sp->cur[k].pending--;
            if (m && !(h.flags & SPOOL_F_ALERT))
                ndrop++;
        }
        for (unsigned k = 0; k < sp->cfg.nsinks; k++)
            cur_force_done(&sp->cur[k], s.last_seq + 1);
        sp->st.drops_full += ndrop;
        sp->st.relocated += nreloc;
        sp->state_dirty = true;
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof name, s.name);
        log_warn("spool_full_dropped",
                 "segment=%s records=%" PRIu64 " dropped=%" PRIu64 " alerts_kept=%" PRIu64
                 " bytes=%" PRIu64 " max_bytes=%" PRIu64,
                 name, s.nrec, ndrop, nreloc, s.bytes, sp->cfg.max_bytes);
        remove_front(sp);
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------- */
/* State file                                                                                */
/* ----------------------------------------------------------------------------------------- */

/*
 * 96 bytes, little endian: u32 magic "ISPS", u32 version, u32 nsinks, u32 0, u64 next_seq,
 * u64 committed[8], u32 crc32c(bytes 0..87), u32 0.
 */
static int state_write(struct spool *sp)
{
    uint8_t b[STATE_SIZE] = {0};
    put32(b, STATE_MAGIC);
    put32(b + 4, STATE_VERSION);
    put32(b + 8, sp->cfg.nsinks);
    put64(b + 16, sp->next_seq);
    for (unsigned k = 0; k < sp->cfg.nsinks; k++)
        put64(b + 24 + 8 * k, sp->cur[k].base);
    put32(b + 88, spool_crc32c(0, b, 88));
    int err = 0;
    int fd = openat(sp->dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = -errno;
        goto fail;
    }
    ssize_t n = write(fd, b, sizeof b);
    if (n != (ssize_t)sizeof b)
        err = n < 0 ? -errno : -EIO;
    else if (do_fsync(sp) && fsync(fd) < 0)
        err = -errno;
    close(fd);
    if (err)
        goto fail;
    if (renameat(sp->dirfd, STATE_TMP, sp->dirfd, STATE_NAME) < 0) {
        err = -errno;
        goto fail;
    }
    sp->st.state_writes++;
    sp->state_dirty = false;
    sp->state_at = util_mono();
    return 0;
fail:
    /* Not fatal: an old state file only means more re-deliveries after a restart. */
    unlinkat(sp->dirfd, STATE_TMP, 0);
    sp->state_at = util_mono();
    log_warn("spool_state_write_failed", "err=\"%s\"", strerror(-err));
    return err;
}

static void state_maybe(struct spool *sp)
{
    if (sp->state_dirty && util_mono() - sp->state_at >= sp->cfg.state_interval)
        state_write(sp);
}

static int state_read(struct spool *sp, uint64_t *committed, uint64_t *next)
{
    uint8_t b[STATE_SIZE + 1];
    int fd = openat(sp->dirfd, STATE_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SPOOL_STATE_MISSING : SPOOL_STATE_CORRUPT;
    size_t got = 0;
    int r = read_full(fd, b, sizeof b, 0, &got);
    close(fd);
    if (r < 0 || got != STATE_SIZE || get32(b) != STATE_MAGIC || get32(b + 4) != STATE_VERSION ||
        get32(b + 88) != spool_crc32c(0, b, 88))
        return SPOOL_STATE_CORRUPT;
    unsigned n = get32(b + 8);
    if (n > SPOOL_MAX_SINKS)
        return SPOOL_STATE_CORRUPT;
    *next = get64(b + 16);
    for (unsigned k = 0; k < n && k < sp->cfg.nsinks; k++)
        committed[k] = get64(b + 24 + 8 * k);
    return SPOOL_STATE_OK;
}

/* ----------------------------------------------------------------------------------------- */
/* Recovery                                                                                  */
/* ----------------------------------------------------------------------------------------- */

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->name, y = ((const struct seg *)b)->name;
    return x < y ? -1 : x > y;
}

static int list_segments(struct spool *sp)
{
    int fd = dup(sp->dirfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int r = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strlen(n) != SEG_NAME_LEN || strncmp(n, "spool-", 6) != 0 ||
            strcmp(n + 22, ".seg") != 0)
            continue;
        char hex[17];
        memcpy(hex, n + 6, 16);
        hex[16] = '\0';
        char *end;
        uint64_t v = strtoull(hex, &end, 16);
        if (*end != '\0' || hex[0] == '-' || hex[0] == '+')
            continue;
        if ((r = segs_reserve(sp)) < 0)
            break;
        sp->segs[sp->nsegs++] = (struct seg){.name = v};
    }
    closedir(d);
    if (sp->nsegs)
        qsort(sp->segs, sp->nsegs, sizeof *sp->segs, seg_cmp);
    return r;
}

/*
 * Scan one segment: keep intact records with increasing sequence numbers, skip damaged
 * regions by resynchronising on the next valid record, cut an invalid tail.
 * Returns 0, 1 (unreadable: leave the file alone and ignore it) or -ENOMEM.
 */
static int recover_seg(struct spool *sp, struct seg *s, const uint64_t *committed, uint64_t *last,
                       struct spool_report *rep)
{
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof name, s->name);
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    struct stat stb;
    if (fd < 0 || fstat(fd, &stb) < 0) {
        log_error("spool_segment_unreadable", "segment=%s err=\"%s\"", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    size_t size = (size_t)stb.st_size, got = 0;
    if (grow(&sp->scratch, &sp->scratch_cap, size + 1) < 0) {
        close(fd);
        return -ENOMEM;
    }
    int r = read_full(fd, sp->scratch, size, 0, &got);
    close(fd);
    if (r < 0) {
        log_error("spool_segment_unreadable", "segment=%s err=\"%s\"", name, strerror(-r));
        return 1;
    }
    size = got;
    uint64_t disc_recs = 0, disc_bytes = 0, cut = 0;
    size_t off = 0;
    struct hdr h;
    while (off < size) {
        if (rec_valid_at(sp->scratch, size, off, *last, &h)) {
            if (!s->first_seq)
                s->first_seq = h.seq;
            s->last_seq = h.seq;
            s->nrec++;
            if (h.flags & SPOOL_F_ALERT)
                s->nalert++;
            bool any = false;
            for (unsigned k = 0; k < sp->cfg.nsinks; k++)
                if ((h.sinks & (1u << k)) && h.seq >= committed[k]) {
                    sp->cur[k].pending++;
                    any = true;
                }
            rep->records_kept++;
            rep->records_pending += any;
            *last = h.seq;
            off += HDR + h.len;
            continue;
        }
        size_t q = find_valid(sp->scratch, size, off + 1, *last);
        disc_recs++;
        disc_bytes += q - off;
        if (q == size) {
            cut = size - off;
            size = off;
            break;
        }
        off = q;
    }
    if (cut) {
        int wfd = openat(sp->dirfd, name, O_WRONLY | O_CLOEXEC);
        if (wfd < 0 || ftruncate(wfd, (off_t)size) < 0)
            log_warn("spool_truncate_failed", "segment=%s err=\"%s\"", name, strerror(errno));
        else if (do_fsync(sp))
            fsync(wfd);
        if (wfd >= 0)
            close(wfd);
    }
    s->bytes = size;
    if (disc_recs) {
        s->damaged = true;
        rep->segments_damaged++;
        rep->records_discarded += disc_recs;
        rep->bytes_discarded += disc_bytes;
        rep->bytes_truncated += cut;
        log_warn("spool_segment_damaged",
                 "segment=%s kept=%" PRIu64 " discarded_records=%" PRIu64
                 " discarded_bytes=%" PRIu64 " truncated_bytes=%" PRIu64,
                 name, s->nrec, disc_recs, disc_bytes, cut);
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------- */
/* Open / close                                                                              */
/* ----------------------------------------------------------------------------------------- */

int spool_fsync_parse(const char *s)
{
    if (!s)
        return -EINVAL;
    if (strcmp(s, "interval") == 0)
        return SPOOL_FSYNC_INTERVAL;
    if (strcmp(s, "always") == 0)
        return SPOOL_FSYNC_ALWAYS;
    if (strcmp(s, "none") == 0)
        return SPOOL_FSYNC_NONE;
    return -EINVAL;
}

const char *spool_fsync_name(int policy)
{
    switch (policy) {
    case SPOOL_FSYNC_INTERVAL:
        return "interval";
    case SPOOL_FSYNC_ALWAYS:
        return "always";
    case SPOOL_FSYNC_NONE:
        return "none";
    default:
        return "?";
    }
}

static int cfg_fill(struct spool_config *o, const struct spool_config *in)
{
    static const struct spool_config zero;
    *o = in ? *in : zero;
    if (!o->nsinks)
        o->nsinks = 2;
    if (o->nsinks > SPOOL_MAX_SINKS)
        return -EINVAL;
    if (!o->max_bytes)
        o->max_bytes = SPOOL_DEFAULT_MAX_BYTES;
    if (o->max_bytes < 64 * 1024)
        return -EINVAL;
    if (!o->segment_bytes)
        o->segment_bytes = SPOOL_DEFAULT_SEGMENT_BYTES;
    if (o->segment_bytes > o->max_bytes / 4)
        o->segment_bytes = o->max_bytes / 4;
    if (o->segment_bytes < 4096)
        o->segment_bytes = 4096;
    if (!o->write_buffer)
        o->write_buffer = 256 * 1024;
    if (o->write_buffer < 4096)
        o->write_buffer = 4096;
    if (o->fsync < SPOOL_FSYNC_INTERVAL || o->fsync > SPOOL_FSYNC_NONE)
        return -EINVAL;
    if (!(o->sync_interval > 0))
        o->sync_interval = SPOOL_DEFAULT_SYNC_INTERVAL;
    if (!(o->state_interval > 0))
        o->state_interval = 1.0;
    if (!(o->retry_interval > 0))
        o->retry_interval = 5.0;
    return 0;
}

static void spool_free(struct spool *sp)
{
    if (!sp)
        return;
    if (sp->afd >= 0)
        close(sp->afd);
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    if (sp->lockfd >= 0)
        close(sp->lockfd); /* releases the flock */
    for (unsigned k = 0; k < SPOOL_MAX_SINKS; k++) {
        reader_free(&sp->cur[k].rd);
        free(sp->cur[k].bits.w);
    }
    reader_free(&sp->age_rd);
    free(sp->segs);
    free(sp->wbuf);
    free(sp->scratch);
    free(sp);
}

int spool_open(struct spool **out, const char *dir, const struct spool_config *cfg,
               struct spool_report *report)
{
    struct spool_report rep = {0};
    int r;
    if (!out || !dir)
        return -EINVAL;
    *out = NULL;
    struct spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return -ENOMEM;
    sp->dirfd = sp->lockfd = sp->afd = -1;
    for (unsigned k = 0; k < SPOOL_MAX_SINKS; k++)
        reader_init(&sp->cur[k].rd);
    reader_init(&sp->age_rd);
    if ((r = cfg_fill(&sp->cfg, cfg)) < 0)
        goto fail;
    sp->wcap = sp->cfg.write_buffer;
    if (!(sp->wbuf = malloc(sp->wcap))) {
        r = -ENOMEM;
        goto fail;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        goto fail;
    }
    if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        goto fail;
    }
    /* One process per spool: two writers would interleave records and fight over cursors. */
    if ((sp->lockfd = openat(sp->dirfd, LOCK_NAME, O_RDONLY | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        r = -errno;
        goto fail;
    }
    if (flock(sp->lockfd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        goto fail;
    }
    unlinkat(sp->dirfd, STATE_TMP, 0);

    uint64_t committed[SPOOL_MAX_SINKS] = {0}, state_next = 0;
    rep.state = state_read(sp, committed, &state_next);
    if (rep.state != SPOOL_STATE_OK) {
        memset(committed, 0, sizeof committed); /* at-least-once: replay from the oldest */
        state_next = 0;
    }
    if ((r = list_segments(sp)) < 0)
        goto fail;
    rep.segments = (unsigned)sp->nsegs;

    uint64_t last = 0, hint = 0;
    for (size_t i = 0; i < sp->nsegs;) {
        r = recover_seg(sp, &sp->segs[i], committed, &last, &rep);
        if (r < 0)
            goto fail;
        if (r == 0 && sp->segs[i].nrec > 0) {
            sp->total += sp->segs[i].bytes;
            i++;
            continue;
        }
        /* Empty (or unreadable: left in place) -> not part of the spool. An empty file's name
         * still tells which sequence numbers were handed out. */
        if (sp->segs[i].name > hint)
            hint = sp->segs[i].name;
        if (r == 0) {
            char name[SEG_NAME_LEN + 1];
            seg_name(name, sizeof name, sp->segs[i].name);
            unlinkat(sp->dirfd, name, 0);
        }
        memmove(sp->segs + i, sp->segs + i + 1, (sp->nsegs - i - 1) * sizeof *sp->segs);
        sp->nsegs--;
    }
    r = 0;

    /* Never reuse a sequence number a sink may have acknowledged or a state file mentions. */
    uint64_t next = last + 1;
    if (state_next > next)
        next = state_next;
    if (hint > next)
        next = hint;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++)
        if (committed[k] > next)
            next = committed[k];
    sp->next_seq = sp->open_seq = next;
    sp->st.written_seq = sp->st.synced_seq = next - 1;
    for (unsigned k = 0; k < sp->cfg.nsinks; k++) {
        struct cursor *c = &sp->cur[k];
        c->base = c->hi = committed[k] ? committed[k] : 1;
    }
    rep.next_seq = next;
    sp->st.drops_corrupt = rep.records_discarded;
    sp->state_at = util_mono();

    int e = open_active(sp);
    if (e == -ENOMEM) {
        r = e;
        goto fail;
    }
    if (e < 0) {
        /* Cannot even create a file (full, read-only, EIO): run degraded, retry later. The
         * recovered segments are still readable. An empty placeholder entry stands in for
         * the active segment (segs[nsegs-1]) so the recovered ones are read from disk. */
        if ((r = segs_reserve(sp)) < 0)
            goto fail;
        sp->segs[sp->nsegs++] = (struct seg){.name = next};
        degrade(sp, e, "create_segment");
    } else if (do_fsync(sp) && datasync(sp) < 0) {
        log_warn("spool_fsync_failed", "err=\"%s\"", strerror(-sp->degraded));
    }
    sp->state_dirty = true;

    if (rep.records_discarded || rep.state == SPOOL_STATE_CORRUPT)
        log_warn("spool_recovered",
                 "segments=%u damaged=%u kept=%" PRIu64 " pending=%" PRIu64
                 " discarded_records=%" PRIu64 " discarded_bytes=%" PRIu64
                 " truncated_bytes=%" PRIu64 " state=%s next_seq=%" PRIu64,
                 rep.segments, rep.segments_damaged, rep.records_kept, rep.records_pending,
                 rep.records_discarded, rep.bytes_discarded, rep.bytes_truncated,
                 rep.state == SPOOL_STATE_OK        ? "ok"
                 : rep.state == SPOOL_STATE_MISSING ? "missing"
                                                    : "corrupt",
                 next);
    else
        log_info("spool_recovered",
                 "segments=%u kept=%" PRIu64 " pending=%" PRIu64 " state=%s next_seq=%" PRIu64
                 " fsync=%s",
                 rep.segments, rep.records_kept, rep.records_pending,
                 rep.state == SPOOL_STATE_OK ? "ok" : "missing", next,
                 spool_fsync_name(sp->cfg.fsync));
    if (report)
        *report = rep;
    *out = sp;
    return 0;
fail:
    spool_free(sp);
    return r;
}

int spool_close(struct spool *sp)
{
    if (!sp)
        return 0;
    int r = sp->degraded ? spool_retry(sp) : flush_raw(sp);
    if (r < 0)
        log_error("spool_close_unwritten", "bytes=%zu err=\"%s\"", sp->wlen, strerror(-r));
    else if ((r = datasync(sp)) < 0)
        log_error("spool_close_fsync_failed", "err=\"%s\"", strerror(-r));
    cleanup(sp);
    state_write(sp);
    spool_free(sp);
    return r;
}

/* ----------------------------------------------------------------------------------------- */
/* Public append / read / ack                                                                */
/* ----------------------------------------------------------------------------------------- */

/*
 * Append time for the record header. CLOCK_REALTIME_COARSE (a few ms resolution) is enough
 * for "oldest record age" and costs a fraction of CLOCK_REALTIME, which showed up as 14% of
 * the append+read+ack pipeline in a profile (bench_spool live).
 */
static int64_t coarse_now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) < 0)
        return util_now_ns();
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int spool_appendv(struct spool *sp, unsigned sinks, unsigned flags, const struct iovec *iov,
                  int iovcnt, uint64_t *seq)
{
    if (!sp || !sinks || (sinks >> sp->cfg.nsinks) || iovcnt < 0 || (iovcnt && !iov))
        return -EINVAL;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (len > SPOOL_MAX_RECORD || HDR + len > sp->cfg.segment_bytes)
        return -EMSGSIZE;
    if (sp->degraded && (util_mono() < sp->retry_at || spool_retry(sp) < 0)) {
        sp->st.append_errors++;
        return sp->degraded;
    }
    int r;
    if (sp->total + HDR + len > sp->cfg.max_bytes && (r = make_room(sp, HDR + len)) < 0) {
        if (r == -ENOBUFS) {
            if (!sp->st.rejected_full++)
                log_warn("spool_full_of_alerts", "max_bytes=%" PRIu64 " (refusing records)",
                         sp->cfg.max_bytes);
        } else {
            sp->st.append_errors++;
        }
        return r;
    }
    r = append_internal(sp, sinks, flags & SPOOL_F_ALERT, coarse_now_ns(), iov, iovcnt, len, seq);
    if (r < 0)
        sp->st.append_errors++;
    return r;
}

int spool_append(struct spool *sp, unsigned sinks, unsigned flags, const void *data, size_t len,
                 uint64_t *seq)
{
    struct iovec iov = {(void *)(uintptr_t)data, len};
    return spool_appendv(sp, sinks, flags, &iov, len ? 1 : 0, seq);
}

int spool_next(struct spool *sp, unsigned sink, struct spool_rec *rec)
{
    if (!sp || sink >= sp->cfg.nsinks || !rec)
        return -EINVAL;
    struct cursor *c = &sp->cur[sink];
    for (;;) {
        struct hdr h = {0}; /* read_rec fills them on success; -O3 cannot prove it */
        const uint8_t *pl = NULL;
        int r = read_rec(sp, &c->rd, c->seg, c->off, &h, &pl);
        if (r == 1) {
            c->seg++;
            c->off = 0;
            continue;
        }
        if (r == -EBADMSG) {
            c->off = resync(sp, c->seg, c->off);
            continue;
        }
        if (r == -EAGAIN)
            return r;
        if (r < 0) {
            log_error("spool_read_failed", "err=\"%s\"", strerror(-r));
            return r;
        }
        bool replay;
        if (h.seq < c->base) {
            c->off += HDR + h.len;
            continue;
        }
        if (h.seq < c->hi) {
            c->off += HDR + h.len;
            if (bw_test(&c->bits, h.seq))
                continue;
            replay = true; /* re-delivery after spool_rewind */
        } else {
            if ((r = bw_ensure(&c->bits, c->base, h.seq)) < 0)
                return r;
            c->off += HDR + h.len;
            for (uint64_t s = c->hi; s < h.seq; s++)
                bw_set(&c->bits, s); /* vanished sequence numbers (dropped, damaged) */
            c->hi = h.seq + 1;
            uint64_t b0 = c->base;
            if (!(h.sinks & (1u << sink))) {
                bw_set(&c->bits, h.seq);
                cur_advance(c);
                if (c->base != b0)
                    sp->state_dirty = true;
                continue;
            }
            cur_advance(c);
            if (c->base != b0)
                sp->state_dirty = true;
            replay = h.seq < sp->open_seq;
        }
        rec->seq = h.seq;
        rec->wall_ns = h.wall;
        rec->flags = h.flags | (replay ? SPOOL_R_REPLAY : 0);
        rec->sinks = h.sinks;
        rec->data = pl;
        rec->len = h.len;
        return 0;
    }
}

int spool_ack(struct spool *sp, unsigned sink, uint64_t seq)
{
    if (!sp || sink >= sp->cfg.nsinks)
        return -EINVAL;
    struct cursor *c = &sp->cur[sink];
    if (seq == SPOOL_SEQ_NONE || seq < c->base)
        return 0;
    if (seq >= c->hi)
        return -ERANGE;
    if (bw_test(&c->bits, seq))
        return 0;
    bw_set(&c->bits, seq);
    if (c->pending)
        c->pending--;
    if (seq == c->base) {
        cur_advance(c);
        sp->state_dirty = true;
    }
    return 0;
}

/* Index of the segment holding seq (the last one whose first record is <= seq), else 0. */
static size_t seg_for(const struct spool *sp, uint64_t seq)
{
    size_t lo = 0, hi = sp->nsegs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        uint64_t f = sp->segs[mid].first_seq ? sp->segs[mid].first_seq : sp->segs[mid].name;
        if (f <= seq)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int spool_rewind(struct spool *sp, unsigned sink)
{
    if (!sp || sink >= sp->cfg.nsinks)
        return -EINVAL;
    struct cursor *c = &sp->cur[sink];
    c->seg = seg_for(sp, c->base);
    c->off = 0;
    return 0;
}

/* ----------------------------------------------------------------------------------------- */
/* Durability, timer, health, stats                                                          */
/* ----------------------------------------------------------------------------------------- */

int spool_flush(struct spool *sp)
{
    if (!sp)
        return -EINVAL;
    if (sp->degraded)
        return sp->degraded;
    int r = flush_raw(sp);
    return r < 0 ? degrade(sp, r, "write") : 0;
}

int spool_sync(struct spool *sp)
{
    int r = spool_flush(sp);
    if (r == 0)
        r = datasync(sp);
    cleanup(sp);
    state_maybe(sp);
    return r;
}

int spool_tick(struct spool *sp)
{
    if (!sp)
        return -EINVAL;
    if (sp->degraded && util_mono() >= sp->retry_at)
        spool_retry(sp);
    if (sp->cfg.fsync == SPOOL_FSYNC_INTERVAL)
        return spool_sync(sp);
    int r = spool_flush(sp);
    cleanup(sp);
    state_maybe(sp);
    return r;
}

int spool_retry(struct spool *sp)
{
    if (!sp)
        return -EINVAL;
    if (!sp->degraded)
        return 0;
    int was = sp->degraded;
    cleanup(sp); /* deleting committed segments may be what frees the space */
    int r = 0;
    if (sp->afd < 0) {
        /* open failed to create the first segment: drop the placeholder and try again */
        if (sp->nsegs && sp->segs[sp->nsegs - 1].nrec == 0)
            sp->nsegs--;
        r = open_active(sp);
        if (r < 0) /* put the placeholder back (open_active reserved room for it) */
            sp->segs[sp->nsegs++] = (struct seg){.name = sp->next_seq};
    }
    if (r == 0)
        r = flush_raw(sp);
    if (r < 0) {
        sp->degraded = r;
        sp->retry_at = util_mono() + sp->cfg.retry_interval;
        log_debug("spool_retry_failed", "err=\"%s\"", strerror(-r));
        return r;
    }
    sp->degraded = 0;
    log_info("spool_recovered_from_error", "was=\"%s\"", strerror(-was));
    return 0;
}

int spool_degraded(const struct spool *sp)
{
    return sp ? sp->degraded : -EINVAL;
}

/* Age of the oldest record `sink` still has to get acknowledged (scans from a hint). */
static double oldest_age(struct spool *sp, unsigned sink, int64_t now)
{
    struct cursor *c = &sp->cur[sink];
    if (!c->pending)
        return 0;
    size_t si = seg_for(sp, c->base);
    uint64_t off = 0;
    if (c->age_name == sp->segs[si].name && c->age_off <= sp->segs[si].bytes)
        off = c->age_off;
    uint64_t scanned = 0;
    for (;;) {
        struct hdr h = {0}; /* read_rec fills them on success; -O3 cannot prove it */
        const uint8_t *pl = NULL;
        int r = read_rec(sp, &sp->age_rd, si, off, &h, &pl);
        if (r == 1) {
            si++;
            off = 0;
            continue;
        }
        if (r == -EBADMSG) {
            off = resync(sp, si, off);
            continue;
        }
        if (r < 0)
            return 0;
        bool mine = (h.sinks & (1u << sink)) && cur_is_pending(c, h.seq);
        /* bound the work per call; the hint makes the next call continue from here */
        if (mine || (scanned += HDR + h.len) > (64u << 20)) {
            c->age_name = sp->segs[si].name;
            c->age_off = off;
            return now > h.wall ? (double)(now - h.wall) / 1e9 : 0;
        }
        off += HDR + h.len;
    }
}

void spool_stats(struct spool *sp, struct spool_stats *st)
{
    if (!sp || !st)
        return;
    *st = sp->st;
    st->bytes = sp->total;
    st->segments = (unsigned)sp->nsegs;
    st->next_seq = sp->next_seq;
    st->degraded = sp->degraded;
    int64_t now = util_now_ns();
    for (unsigned k = 0; k < sp->cfg.nsinks; k++) {
        st->pending[k] = sp->cur[k].pending;
        st->committed[k] = sp->cur[k].base;
        st->oldest_age[k] = oldest_age(sp, k, now);
    }
}
