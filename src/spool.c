/*
 * spool.c — durable on-disk store-and-forward spool: segment files of CRC-32C checked
 * records, one read cursor per sink, out-of-order acknowledgements, group commit, recovery.
 * See spool.h for the API and docs/reliability.md for the format and the guarantees.
 * This file is the runtime (append, read, ack, sync, the byte bound, the state file);
 * the record format and CRC-32C are in spool_format.c, recovery at open in spool_recover.c.
 *
 * Everything here is single-threaded.
 */
#include "spool.h"

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
#include "spool_int.h"
#include "util.h"

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

int spool_grow(uint8_t **p, size_t *cap, size_t need)
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

int spool_read_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
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

bool spool_do_fsync(const struct spool *sp)
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

/*
 * A cursor that has caught up with the write position reads nothing more from files until the
 * writer flushes again, and the records after that start past its chunk: the chunk (up to
 * write_buffer bytes per sink, all of it touched by the read) is dead weight for an idle
 * gateway. Drop it; the segment stays open. The next read allocates a chunk again.
 */
static void reader_drop_chunk(struct reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->bname = UINT64_MAX;
    r->blen = 0;
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
        spool_seg_name(name, sizeof name, s->name);
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
    if ((*err = spool_grow(&r->buf, &r->cap, want)) < 0)
        return NULL;
    size_t got = 0;
    r->bname = UINT64_MAX;
    if ((*err = spool_read_full(r->fd, r->buf, want, off, &got)) < 0)
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
        spool_hdr_decode(p, h);
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
    if (!spool_rec_valid_at(p, HDR + len, 0, 0, h))
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
    spool_seg_name(name, sizeof name, s->name);
    uint64_t next = limit;
    size_t got = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && spool_grow(&sp->scratch, &sp->scratch_cap, (size_t)(limit - off)) == 0 &&
        spool_read_full(fd, sp->scratch, (size_t)(limit - off), off, &got) == 0)
        next = off + spool_find_valid(sp->scratch, got, 1, 0);
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
    if (!spool_do_fsync(sp))
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

int spool_segs_reserve(struct spool *sp)
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
    int r = spool_segs_reserve(sp);
    if (r < 0)
        return r;
    char name[SEG_NAME_LEN + 1];
    spool_seg_name(name, sizeof name, sp->next_seq);
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
    if (spool_do_fsync(sp) && sp->unsynced) {
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
        if (rec > sp->wcap && (r = spool_grow(&sp->wbuf, &sp->wcap, rec)) < 0)
            return r;
    }
    uint8_t *h = sp->wbuf + sp->wlen;
    uint64_t s = sp->next_seq;
    spool_hdr_encode(h, (uint32_t)len, sinks, flags, s, wall);
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
    spool_seg_name(name, sizeof name, s->name);
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
    spool_seg_name(name, sizeof name, s->name);
    size_t got = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || spool_grow(&sp->scratch, &sp->scratch_cap, (size_t)s->bytes) < 0 ||
        spool_read_full(fd, sp->scratch, (size_t)s->bytes, 0, &got) < 0)
        got = 0;
    if (fd >= 0)
        close(fd);
    return got;
}

/* Iterate the intact records of scratch[0..len): off is advanced past damage. */
static bool scratch_next(struct spool *sp, size_t len, size_t *off, struct hdr *h)
{
    while (*off < len) {
        if (spool_rec_valid_at(sp->scratch, len, *off, 0, h))
            return true;
        *off = spool_find_valid(sp->scratch, len, *off + 1, 0);
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
        spool_seg_name(name, sizeof name, s.name);
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
    else if (spool_do_fsync(sp) && fsync(fd) < 0)
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
    /* Also the size of each cursor's read buffer: the spool is on by default, so this is
     * resident in every daemon. 64 KiB keeps an idle gateway within its memory target and
     * measured the same end-to-end throughput as 256 KiB (bench_spool_gateway). */
    if (!o->write_buffer)
        o->write_buffer = 64 * 1024;
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

    if ((r = spool_recover(sp, &rep)) < 0)
        goto fail;
    uint64_t next = rep.next_seq;

    int e = open_active(sp);
    if (e == -ENOMEM) {
        r = e;
        goto fail;
    }
    if (e < 0) {
        /* Cannot even create a file (full, read-only, EIO): run degraded, retry later. The
         * recovered segments are still readable. An empty placeholder entry stands in for
         * the active segment (segs[nsegs-1]) so the recovered ones are read from disk. */
        if ((r = spool_segs_reserve(sp)) < 0)
            goto fail;
        sp->segs[sp->nsegs++] = (struct seg){.name = next};
        degrade(sp, e, "create_segment");
    } else if (spool_do_fsync(sp) && datasync(sp) < 0) {
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
        if (r == -EAGAIN) {
            /* Caught up: the record last returned may be dropped now (spool.h). */
            reader_drop_chunk(&c->rd);
            return r;
        }
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
