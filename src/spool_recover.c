/*
 * spool_recover.c — recovery at spool_open(): the state file, then every segment scanned,
 * damaged regions skipped by resynchronising on the next valid record, torn tails cut, the
 * cursors and the next sequence number derived from what survived. See spool.h (spool_open)
 * and docs/reliability.md for the guarantees.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "spool_int.h"
#include "util.h"

static int spool_state_read(struct spool *sp, uint64_t *committed, uint64_t *next)
{
    uint8_t b[STATE_SIZE + 1];
    int fd = openat(sp->dirfd, STATE_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SPOOL_STATE_MISSING : SPOOL_STATE_CORRUPT;
    size_t got = 0;
    int r = spool_read_full(fd, b, sizeof b, 0, &got);
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

static int spool_seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->name, y = ((const struct seg *)b)->name;
    return x < y ? -1 : x > y;
}

static int spool_list_segments(struct spool *sp)
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
        if ((r = spool_segs_reserve(sp)) < 0)
            break;
        sp->segs[sp->nsegs++] = (struct seg){.name = v};
    }
    closedir(d);
    if (sp->nsegs)
        qsort(sp->segs, sp->nsegs, sizeof *sp->segs, spool_seg_cmp);
    return r;
}

/*
 * Scan one segment: keep intact records with increasing sequence numbers, skip damaged
 * regions by resynchronising on the next valid record, cut an invalid tail.
 * Returns 0, 1 (unreadable: leave the file alone and ignore it) or -ENOMEM.
 */
static int spool_recover_seg(struct spool *sp, struct seg *s, const uint64_t *committed,
                             uint64_t *last, struct spool_report *rep)
{
    char name[SEG_NAME_LEN + 1];
    spool_seg_name(name, sizeof name, s->name);
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    struct stat stb;
    if (fd < 0 || fstat(fd, &stb) < 0) {
        log_error("spool_segment_unreadable", "segment=%s err=\"%s\"", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    size_t size = (size_t)stb.st_size, got = 0;
    if (spool_grow(&sp->scratch, &sp->scratch_cap, size + 1) < 0) {
        close(fd);
        return -ENOMEM;
    }
    int r = spool_read_full(fd, sp->scratch, size, 0, &got);
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
        if (spool_rec_valid_at(sp->scratch, size, off, *last, &h)) {
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
        size_t q = spool_find_valid(sp->scratch, size, off + 1, *last);
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
        else if (spool_do_fsync(sp))
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

int spool_recover(struct spool *sp, struct spool_report *rep)
{
    int r;
    uint64_t committed[SPOOL_MAX_SINKS] = {0}, state_next = 0;
    rep->state = spool_state_read(sp, committed, &state_next);
    if (rep->state != SPOOL_STATE_OK) {
        memset(committed, 0, sizeof committed); /* at-least-once: replay from the oldest */
        state_next = 0;
    }
    if ((r = spool_list_segments(sp)) < 0)
        return r;
    rep->segments = (unsigned)sp->nsegs;

    uint64_t last = 0, hint = 0;
    for (size_t i = 0; i < sp->nsegs;) {
        r = spool_recover_seg(sp, &sp->segs[i], committed, &last, rep);
        if (r < 0)
            return r;
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
            spool_seg_name(name, sizeof name, sp->segs[i].name);
            unlinkat(sp->dirfd, name, 0);
        }
        memmove(sp->segs + i, sp->segs + i + 1, (sp->nsegs - i - 1) * sizeof *sp->segs);
        sp->nsegs--;
    }

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
    rep->next_seq = next;
    sp->st.drops_corrupt = rep->records_discarded;
    sp->state_at = util_mono();
    return 0;
}
