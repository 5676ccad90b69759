/*
 * test_spool.c — tests of the durable spool (src/spool.c): append/read/ack across reopen,
 * independent sink cursors, out-of-order acks, rewind, segment rollover and deletion, the
 * byte bound (drop oldest, keep alerts), recovery from torn tails, byte flips and a corrupt
 * state file, SIGKILL crash simulation, and a real full filesystem (a 512 KiB tmpfs).
 *
 * Every test works in its own temporary directory under $TMPDIR (default /tmp).
 * Run one group with `test_spool 'recovery_*'` (the argument is a cmocka name filter).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "mqttrec.h"
#include "spool.h"
#include "util.h"

/* ----------------------------------------------------------------------------------------- */
/* Fixture helpers                                                                           */
/* ----------------------------------------------------------------------------------------- */

struct fx {
    char dir[256];   /* temporary directory */
    char spool[300]; /* spool directory inside it */
    char mnt[300];   /* tmpfs mount point (disk-full test) */
    bool mounted;
};

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/spooltest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->spool, sizeof f->spool, "%s/spool", f->dir);
    snprintf(f->mnt, sizeof f->mnt, "%s/mnt", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->mounted)
        umount2(f->mnt, MNT_DETACH);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct spool_config small_cfg(void)
{
    struct spool_config c = {0};
    c.nsinks = 2;
    c.segment_bytes = 16 * 1024;
    c.max_bytes = 4 << 20;
    c.write_buffer = 8 * 1024;
    c.fsync = SPOOL_FSYNC_INTERVAL;
    c.state_interval = 1e-9; /* write the state at every sync: tests reopen right away */
    return c;
}

/* Payload of record number n: "rec <n>" padded with a pattern to `len` bytes. */
static size_t make_payload(char *out, size_t len, uint64_t n)
{
    int k = snprintf(out, len, "rec %" PRIu64 " ", n);
    for (size_t i = (size_t)k; i < len; i++)
        out[i] = (char)('a' + (n + i) % 26);
    return len;
}

static uint64_t payload_id(const struct spool_rec *r)
{
    char tmp[32];
    size_t n = r->len < sizeof tmp - 1 ? r->len : sizeof tmp - 1;
    memcpy(tmp, r->data, n);
    tmp[n] = '\0';
    uint64_t id = 0;
    assert_int_equal(sscanf(tmp, "rec %" SCNu64, &id), 1);
    return id;
}

/* Check the whole payload pattern, not just the id. */
static void check_payload(const struct spool_rec *r, size_t len)
{
    char want[512];
    assert_int_equal(r->len, len);
    make_payload(want, len, payload_id(r));
    assert_memory_equal(r->data, want, len);
}

static uint64_t append_n(struct spool *sp, unsigned mask, uint64_t first_id, int n, size_t len)
{
    char p[512];
    uint64_t seq = 0;
    for (int i = 0; i < n; i++) {
        make_payload(p, len, first_id + (uint64_t)i);
        assert_int_equal(spool_append(sp, mask, 0, p, len, &seq), 0);
    }
    return seq;
}

static int count_segments(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '^spool-.*\\.seg$'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* Path of the n-th (0-based, sorted) segment file. */
static void segment_path(const char *dir, int idx, char *out, size_t outlen)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep '^spool-.*\\.seg$' | sort | sed -n %dp", dir, idx + 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char name[128] = "";
    assert_non_null(fgets(name, sizeof name, p));
    pclose(p);
    name[strcspn(name, "\n")] = '\0';
    snprintf(out, outlen, "%s/%s", dir, name);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* ----------------------------------------------------------------------------------------- */
/* basic_*                                                                                   */
/* ----------------------------------------------------------------------------------------- */

static void basic_crc32c_and_mqtt_codec(void **state)
{
    struct fx *f = *state;
    /* Standard check value of CRC-32C. */
    assert_int_equal(spool_crc32c(0, "123456789", 9), 0xe3069283u);
    /* chaining = one pass */
    assert_int_equal(spool_crc32c(spool_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);

    struct mqtt_rec m = {.topic = "iiot/node1/temperature",
                         .payload = "27.6",
                         .payload_len = 4,
                         .qos = 1,
                         .retain = true,
                         .user = 1234567};
    m.topic_len = strlen(m.topic);
    struct buf b = BUF_INIT;
    assert_int_equal(mqtt_rec_encode(&b, &m), 0);
    struct mqtt_rec d;
    assert_int_equal(mqtt_rec_decode(b.p, b.len, &d), 0);
    assert_int_equal(d.topic_len, m.topic_len);
    assert_memory_equal(d.topic, m.topic, m.topic_len);
    assert_memory_equal(d.payload, "27.6", 4);
    assert_int_equal(d.qos, 1);
    assert_true(d.retain);
    assert_int_equal(d.user, 1234567);
    assert_int_equal(mqtt_rec_decode(b.p, b.len - 1, &d), -EBADMSG);

    struct spool *sp;
    struct spool_config c = small_cfg();
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    uint64_t seq;
    /* The spool stores the encoded record as opaque bytes. */
    assert_int_equal(spool_append(sp, 1, 0, b.p, b.len, &seq), 0);
    struct spool_rec r;
    assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(r.seq, seq);
    assert_int_equal(r.len, b.len);
    assert_memory_equal(r.data, b.p, b.len);
    assert_int_equal(mqtt_rec_decode(r.data, r.len, &d), 0);
    assert_memory_equal(d.topic, m.topic, m.topic_len);
    buf_free(&b);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_append_read_ack_reopen(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    struct spool *sp;
    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_MISSING);
    assert_int_equal(rep.next_seq, 1);
    assert_int_equal(append_n(sp, 3, 1, 1000, 100), 1000);

    struct spool_rec r;
    for (uint64_t i = 1; i <= 1000; i++) {
        assert_int_equal(spool_next(sp, 0, &r), 0);
        assert_int_equal(r.seq, i);
        assert_int_equal(payload_id(&r), i);
        check_payload(&r, 100);
        assert_false(r.flags & SPOOL_R_REPLAY);
        assert_int_equal(spool_ack(sp, 0, r.seq), 0);
    }
    assert_int_equal(spool_next(sp, 0, &r), -EAGAIN);
    for (uint64_t i = 1; i <= 500; i++) {
        assert_int_equal(spool_next(sp, 1, &r), 0);
        assert_int_equal(spool_ack(sp, 1, r.seq), 0);
    }
    assert_int_equal(spool_ack(sp, 1, 999), -ERANGE); /* never handed out */
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.pending[0], 0);
    assert_int_equal(st.pending[1], 500);
    assert_int_equal(st.committed[0], 1001);
    assert_int_equal(st.committed[1], 501);
    assert_true(st.oldest_age[1] >= 0 && st.oldest_age[1] < 60);
    assert_int_equal(spool_close(sp), 0);

    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_OK);
    assert_int_equal(rep.records_discarded, 0);
    assert_int_equal(rep.records_pending, 500);
    assert_int_equal(rep.next_seq, 1001);
    assert_int_equal(spool_next(sp, 0, &r), -EAGAIN);
    for (uint64_t i = 501; i <= 1000; i++) {
        assert_int_equal(spool_next(sp, 1, &r), 0);
        assert_int_equal(r.seq, i);
        check_payload(&r, 100);
        assert_true(r.flags & SPOOL_R_REPLAY);
    }
    assert_int_equal(spool_next(sp, 1, &r), -EAGAIN);
    /* new records are not replays and continue the sequence */
    append_n(sp, 3, 2000, 1, 50);
    assert_int_equal(spool_next(sp, 1, &r), 0);
    assert_int_equal(r.seq, 1001);
    assert_false(r.flags & SPOOL_R_REPLAY);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_cursors_independent(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.nsinks = 3;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    assert_int_equal(spool_append(sp, 0, 0, "x", 1, NULL), -EINVAL);
    assert_int_equal(spool_append(sp, 8, 0, "x", 1, NULL), -EINVAL); /* sink 3 does not exist */
    /* ids: i; mask cycles 1, 2, 3, 4 */
    for (uint64_t i = 1; i <= 400; i++) {
        char p[64];
        make_payload(p, 40, i);
        unsigned mask = (unsigned)((i - 1) % 4) + 1;
        assert_int_equal(spool_append(sp, mask, 0, p, 40, NULL), 0);
    }
    struct spool_rec r;
    uint64_t n[3] = {0};
    for (unsigned k = 0; k < 3; k++) {
        while (spool_next(sp, k, &r) == 0) {
            uint64_t mask = (payload_id(&r) - 1) % 4 + 1;
            assert_true(mask & (1u << k));
            n[k]++;
        }
    }
    assert_int_equal(n[0], 200); /* masks 1, 3 */
    assert_int_equal(n[1], 200); /* masks 2, 3 */
    assert_int_equal(n[2], 100); /* mask 4 */
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.pending[0], 200);
    assert_int_equal(st.pending[2], 100);
    /* sink 2 acks everything: its cursor commits past the end, the others do not move */
    for (uint64_t s = 4; s <= 400; s += 4)
        assert_int_equal(spool_ack(sp, 2, s), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.committed[2], 401);
    assert_int_equal(st.committed[0], 1);
    assert_int_equal(st.pending[2], 0);
    assert_int_equal(st.pending[0], 200);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_out_of_order_acks(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.nsinks = 1;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 1, 1, 300, 60);
    struct spool_rec r;
    while (spool_next(sp, 0, &r) == 0)
        ;
    struct spool_stats st;
    /* evens first: nothing commits */
    for (uint64_t s = 2; s <= 300; s += 2)
        assert_int_equal(spool_ack(sp, 0, s), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.committed[0], 1);
    assert_int_equal(st.pending[0], 150);
    /* odds in reverse order except 101: commits up to 101 only at the end */
    for (uint64_t s = 299; s >= 103; s -= 2)
        assert_int_equal(spool_ack(sp, 0, s), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.committed[0], 1);
    for (uint64_t s = 1; s <= 99; s += 2)
        assert_int_equal(spool_ack(sp, 0, s), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.committed[0], 101);
    assert_int_equal(st.pending[0], 1);
    assert_int_equal(spool_ack(sp, 0, 50), 0); /* duplicate: harmless */
    assert_int_equal(spool_close(sp), 0);

    /* after a restart only 101.. come back (acks above the committed cursor are not kept) */
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(r.seq, 101);
    uint64_t n = 1;
    assert_int_equal(spool_ack(sp, 0, 101), 0);
    while (spool_next(sp, 0, &r) == 0) {
        assert_int_equal(spool_ack(sp, 0, r.seq), 0);
        n++;
    }
    assert_int_equal(n, 200);
    spool_stats(sp, &st);
    assert_int_equal(st.committed[0], 301);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_rewind_redelivers_unacked(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.nsinks = 1;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 1, 1, 20, 30);
    struct spool_rec r;
    for (int i = 0; i < 10; i++)
        assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(spool_ack(sp, 0, 1), 0);
    assert_int_equal(spool_ack(sp, 0, 3), 0);
    assert_int_equal(spool_ack(sp, 0, 5), 0);
    assert_int_equal(spool_rewind(sp, 0), 0);
    static const uint64_t want[] = {2, 4, 6, 7, 8, 9, 10};
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        assert_int_equal(spool_next(sp, 0, &r), 0);
        assert_int_equal(r.seq, want[i]);
        assert_true(r.flags & SPOOL_R_REPLAY);
    }
    assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(r.seq, 11);
    assert_false(r.flags & SPOOL_R_REPLAY);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_rollover_and_deletion(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 3, 1, 3000, 100); /* 396 KB over 16 KiB segments */
    assert_int_equal(spool_sync(sp), 0);
    int nseg = count_segments(f->spool);
    assert_true(nseg >= 20);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.segments, nseg);
    assert_int_equal(st.bytes, 3000 * (32 + 100));

    struct spool_rec r;
    /* sink 0 acks everything: nothing can be deleted while sink 1 has not */
    while (spool_next(sp, 0, &r) == 0)
        spool_ack(sp, 0, r.seq);
    assert_int_equal(spool_sync(sp), 0);
    assert_int_equal(count_segments(f->spool), nseg);
    /* sink 1 acks the first half: about half the segments go */
    for (int i = 0; i < 1500; i++) {
        assert_int_equal(spool_next(sp, 1, &r), 0);
        spool_ack(sp, 1, r.seq);
    }
    assert_int_equal(spool_sync(sp), 0);
    int half = count_segments(f->spool);
    assert_true(half < nseg * 2 / 3 && half > nseg / 3);
    while (spool_next(sp, 1, &r) == 0)
        spool_ack(sp, 1, r.seq);
    assert_int_equal(spool_sync(sp), 0);
    assert_int_equal(count_segments(f->spool), 1); /* only the active segment is left */
    spool_stats(sp, &st);
    assert_int_equal(st.pending[0] + st.pending[1], 0);
    assert_int_equal(spool_close(sp), 0);

    /* restart: nothing to replay; sequence numbers continue */
    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_pending, 0);
    assert_int_equal(rep.next_seq, 3001);
    assert_int_equal(spool_next(sp, 0, &r), -EAGAIN);
    assert_int_equal(spool_close(sp), 0);
}

static void basic_lock_and_fsync_policies(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    struct spool *sp, *sp2;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    assert_int_equal(spool_open(&sp2, f->spool, &c, NULL), -EBUSY);
    assert_int_equal(spool_close(sp), 0);

    static const int pol[] = {SPOOL_FSYNC_ALWAYS, SPOOL_FSYNC_INTERVAL, SPOOL_FSYNC_NONE};
    for (size_t i = 0; i < ARRAY_LEN(pol); i++) {
        c.fsync = pol[i];
        assert_int_equal(spool_fsync_parse(spool_fsync_name(pol[i])), pol[i]);
        assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
        struct spool_stats st0, st;
        spool_stats(sp, &st0);
        uint64_t last = append_n(sp, 1, 1, 10, 100);
        spool_stats(sp, &st);
        assert_int_equal(st.writes, st0.writes); /* appends are buffered: no syscall yet */
        if (pol[i] == SPOOL_FSYNC_ALWAYS) {
            assert_int_equal(spool_sync(sp), 0);
            spool_stats(sp, &st);
            assert_true(st.fsyncs > st0.fsyncs);
            assert_int_equal(st.synced_seq, last);
        } else if (pol[i] == SPOOL_FSYNC_INTERVAL) {
            assert_int_equal(spool_tick(sp), 0);
            spool_stats(sp, &st);
            assert_true(st.fsyncs > st0.fsyncs);
            assert_int_equal(st.synced_seq, last);
        } else {
            assert_int_equal(spool_tick(sp), 0);
            assert_int_equal(spool_sync(sp), 0);
            spool_stats(sp, &st);
            assert_int_equal(st.fsyncs, 0);
            assert_int_equal(st.written_seq, last);
            assert_true(st.synced_seq < last);
        }
        assert_true(st.writes > st0.writes);
        assert_int_equal(spool_close(sp), 0);
    }
    assert_int_equal(spool_fsync_parse("sometimes"), -EINVAL);
}

/* ----------------------------------------------------------------------------------------- */
/* recovery_*                                                                                */
/* ----------------------------------------------------------------------------------------- */

static void recovery_torn_tail(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 1, 1, 100, 100);
    assert_int_equal(spool_close(sp), 0);
    char seg[400];
    segment_path(f->spool, 0, seg, sizeof seg);
    assert_int_equal(file_size(seg), 100 * 132);
    assert_int_equal(truncate(seg, 100 * 132 - 10), 0); /* last record cut short */

    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_kept, 99);
    assert_int_equal(rep.records_discarded, 1);
    assert_int_equal(rep.bytes_truncated, 122);
    assert_int_equal(rep.bytes_discarded, 122);
    assert_int_equal(rep.next_seq, 101); /* the state file remembers 100 was handed out */
    assert_int_equal(file_size(seg), 99 * 132);
    struct spool_rec r;
    uint64_t n = 0;
    while (spool_next(sp, 0, &r) == 0) {
        assert_int_equal(r.seq, ++n);
        check_payload(&r, 100);
    }
    assert_int_equal(n, 99);
    append_n(sp, 1, 100, 5, 100);
    assert_int_equal(spool_close(sp), 0);

    /* garbage after the last record of a segment (a torn write of random bytes) */
    segment_path(f->spool, 1, seg, sizeof seg);
    int fd = open(seg, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    char junk[77];
    memset(junk, 0x5a, sizeof junk);
    memcpy(junk, "ISPL", 4); /* even with a plausible magic */
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_kept, 104);
    assert_int_equal(rep.bytes_truncated, 77);
    assert_int_equal(file_size(seg), 5 * 132);
    assert_int_equal(spool_close(sp), 0);
    /* and the next open is clean */
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_discarded, 0);
    assert_int_equal(rep.records_kept, 104);
    assert_int_equal(spool_close(sp), 0);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void recovery_byte_flip_in_the_middle(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 1, 1, 200, 100);
    assert_int_equal(spool_close(sp), 0);
    char seg[400];
    segment_path(f->spool, 0, seg, sizeof seg);
    flip_byte(seg, 49 * 132 + 32 + 50); /* payload of record 50 */
    flip_byte(seg, 99 * 132 + 9);       /* length field of record 100 */
    flip_byte(seg, 149 * 132 + 1);      /* magic of record 150 */

    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_kept, 197);
    assert_int_equal(rep.records_discarded, 3);
    assert_int_equal(rep.bytes_discarded, 3 * 132);
    assert_int_equal(rep.bytes_truncated, 0);
    assert_int_equal(rep.segments_damaged, 1);
    assert_int_equal(rep.next_seq, 201);
    struct spool_rec r;
    uint64_t n = 0;
    while (spool_next(sp, 0, &r) == 0) {
        assert_true(r.seq != 50 && r.seq != 100 && r.seq != 150);
        check_payload(&r, 100);
        assert_int_equal(payload_id(&r), r.seq);
        spool_ack(sp, 0, r.seq);
        n++;
    }
    assert_int_equal(n, 197);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.committed[0], 201); /* the holes do not block the cursor */
    assert_int_equal(st.drops_corrupt, 3);
    assert_int_equal(spool_close(sp), 0);
}

static void recovery_corrupt_or_missing_state(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.nsinks = 1;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 1, 1, 100, 100);
    struct spool_rec r;
    for (int i = 0; i < 60; i++) {
        assert_int_equal(spool_next(sp, 0, &r), 0);
        spool_ack(sp, 0, r.seq);
    }
    assert_int_equal(spool_close(sp), 0);
    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_OK);
    assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(r.seq, 61);
    assert_int_equal(spool_close(sp), 0);

    char path[400];
    snprintf(path, sizeof path, "%s/spool.state", f->spool);
    flip_byte(path, 30); /* committed cursor damaged: CRC catches it */
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_CORRUPT);
    assert_int_equal(rep.next_seq, 101);
    assert_int_equal(spool_next(sp, 0, &r), 0);
    assert_int_equal(r.seq, 1); /* back to the oldest record: at-least-once */
    assert_int_equal(spool_close(sp), 0);

    FILE *fp = fopen(path, "w");
    fputs("garbage", fp);
    fclose(fp);
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_CORRUPT);
    assert_int_equal(spool_close(sp), 0);
    unlink(path);
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.state, SPOOL_STATE_MISSING);
    assert_int_equal(rep.records_pending, 100);
    assert_int_equal(spool_close(sp), 0);
}

/* Everything damaged at once: a truncated last segment, a flip in an older one, a garbage
 * file with a segment name and a missing state file. The spool must still open. */
static void recovery_never_refuses(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    append_n(sp, 3, 1, 500, 100);
    assert_int_equal(spool_close(sp), 0);
    int nseg = count_segments(f->spool);
    char seg[400];
    segment_path(f->spool, 1, seg, sizeof seg);
    flip_byte(seg, 500);
    segment_path(f->spool, nseg - 2, seg, sizeof seg); /* last one with records */
    assert_int_equal(truncate(seg, file_size(seg) - 1), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/spool-00000000ffffffff.seg", f->spool);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 1000; i++)
        fputc(i & 0xff, fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/spool.state", f->spool);
    unlink(path);
    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_kept, 498);
    assert_int_equal(rep.records_discarded, 3); /* flip, torn tail, garbage file */
    assert_int_equal(rep.bytes_discarded, 132 + 131 + 1000);
    assert_true(rep.next_seq >= 500);
    uint64_t n = 0;
    struct spool_rec r;
    while (spool_next(sp, 1, &r) == 0) {
        check_payload(&r, 100);
        n++;
    }
    assert_int_equal(n, 498);
    assert_int_equal(spool_close(sp), 0);
}

/* ----------------------------------------------------------------------------------------- */
/* bound_*                                                                                   */
/* ----------------------------------------------------------------------------------------- */

static void bound_drops_oldest_keeps_alerts(void **state)
{
    struct fx *f = *state;
    struct spool_config c = small_cfg();
    c.max_bytes = 64 * 1024;
    c.segment_bytes = 8 * 1024;
    c.nsinks = 1;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    const int N = 3000;
    char p[128];
    for (int i = 1; i <= N; i++) {
        make_payload(p, 100, (uint64_t)i);
        assert_int_equal(spool_append(sp, 1, i % 50 == 0 ? SPOOL_F_ALERT : 0, p, 100, NULL), 0);
        struct spool_stats st;
        if (i % 100 == 0) {
            spool_stats(sp, &st);
            assert_true(st.bytes <= c.max_bytes);
        }
    }
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_true(st.drops_full > 0);
    assert_true(st.relocated > 0);
    /* every alert survives; non-alerts that survive are the newest ones */
    bool *seen = calloc(N + 1, 1);
    struct spool_rec r;
    uint64_t n = 0, min_plain = UINT64_MAX;
    while (spool_next(sp, 0, &r) == 0) {
        uint64_t id = payload_id(&r);
        check_payload(&r, 100);
        assert_false(seen[id]);
        seen[id] = true;
        if (id % 50 != 0 && id < min_plain)
            min_plain = id;
        if (r.flags & SPOOL_F_RELOCATED)
            assert_true(r.flags & SPOOL_F_ALERT);
        n++;
    }
    for (int i = 50; i <= N; i += 50)
        assert_true(seen[i]);
    for (uint64_t i = min_plain; i <= (uint64_t)N; i++)
        assert_true(seen[i]); /* the kept plain records are a contiguous newest range */
    assert_int_equal(n, st.pending[0]);
    assert_int_equal(st.drops_full + n, (uint64_t)N);
    free(seen);

    /* a spool full of alerts refuses new records instead of dropping alerts */
    int rc = 0;
    for (int i = 0; i < 2000 && rc == 0; i++)
        rc = spool_append(sp, 1, SPOOL_F_ALERT, p, 100, NULL);
    assert_int_equal(rc, -ENOBUFS);
    spool_stats(sp, &st);
    assert_true(st.rejected_full > 0);
    assert_true(st.bytes <= c.max_bytes + c.segment_bytes);
    assert_int_equal(spool_close(sp), 0);
}

/* ----------------------------------------------------------------------------------------- */
/* crash_*                                                                                   */
/* ----------------------------------------------------------------------------------------- */

/*
 * The child appends records "rec <iteration*1e6 + i>" as fast as it can, calls spool_sync
 * every 64 records (write + fdatasync, or write only under `none`) and then reports on a pipe
 * how many of its records are synced. The parent SIGKILLs it at a random moment, reopens
 * the spool and checks that every record reported synced is there and intact.
 */
static void crash_child(const char *dir, int wfd, uint64_t iteration)
{
    struct spool_config c = small_cfg();
    /* odd runs: `none` (spool_sync = write(2) only, which a process crash cannot undo), so
     * the kill also lands inside write(2) and between writes, not mostly in fdatasync */
    c.fsync = iteration % 2 ? SPOOL_FSYNC_NONE : SPOOL_FSYNC_INTERVAL;
    c.segment_bytes = 64 * 1024;
    c.max_bytes = 64 << 20;
    struct spool *sp;
    if (spool_open(&sp, dir, &c, NULL) < 0)
        _exit(2);
    char p[256];
    uint32_t rng = util_seed();
    for (uint64_t i = 0;; i++) {
        size_t len = 20 + util_rand(&rng) % 200;
        make_payload(p, len, iteration * 1000000 + i);
        if (spool_append(sp, 1, 0, p, len, NULL) < 0)
            _exit(3);
        if (i % 64 == 63) {
            if (spool_sync(sp) < 0)
                _exit(4);
            uint64_t done = i + 1;
            if (write(wfd, &done, sizeof done) != sizeof done)
                _exit(5);
        }
    }
}

static void crash_sigkill_keeps_synced_records(void **state)
{
    struct fx *f = *state;
    log_set_level(LL_WARN);
    uint32_t rng = util_seed();
    enum { ITER = 10 };
    uint64_t synced[ITER] = {0};
    for (uint64_t it = 0; it < ITER; it++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(f->spool, pfd[1], it);
        }
        close(pfd[1]);
        struct timespec ts = {0, (long)(5 + util_rand(&rng) % 60) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* it did not exit on an error */
        uint64_t v;
        while (read(pfd[0], &v, sizeof v) == sizeof v)
            synced[it] = v;
        close(pfd[0]);

        struct spool *sp;
        struct spool_report rep;
        struct spool_config c = small_cfg();
        c.segment_bytes = 64 * 1024;
        c.max_bytes = 64 << 20;
        assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
        /* all damage a kill can cause is a torn tail of the segment being written */
        assert_true(rep.records_discarded <= it + 1);
        assert_int_equal(rep.bytes_discarded, rep.bytes_truncated);
        uint64_t have[ITER] = {0}; /* records per iteration, must be a prefix 0..n-1 */
        struct spool_rec r;
        while (spool_next(sp, 0, &r) == 0) {
            uint64_t id = payload_id(&r);
            uint64_t i = id / 1000000, k = id % 1000000;
            assert_true(i <= it);
            assert_int_equal(k, have[i]); /* in order, no gaps, no duplicates */
            have[i]++;
            check_payload(&r, r.len);
        }
        for (uint64_t i = 0; i <= it; i++) {
            if (have[i] < synced[i])
                fail_msg("iteration %" PRIu64 ": %" PRIu64 " records synced, %" PRIu64 " found", i,
                         synced[i], have[i]);
        }
        print_message("kill %" PRIu64 ": synced %" PRIu64 " found %" PRIu64 " truncated %" PRIu64
                      " bytes\n",
                      it, synced[it], have[it], rep.bytes_truncated);
        assert_int_equal(spool_close(sp), 0);
    }
    log_set_level(LL_INFO);
}

/* ----------------------------------------------------------------------------------------- */
/* diskfull_*                                                                                */
/* ----------------------------------------------------------------------------------------- */

static void diskfull_tmpfs(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->mnt, 0700), 0);
    if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=512k") < 0) {
        print_message("cannot mount a tmpfs (%s): skipping\n", strerror(errno));
        skip();
    }
    f->mounted = true;
    char dir[400], filler[400];
    snprintf(dir, sizeof dir, "%s/spool", f->mnt);
    snprintf(filler, sizeof filler, "%s/filler", f->mnt);
    /* take 256 KiB so the spool hits the wall after ~256 KiB */
    FILE *fp = fopen(filler, "w");
    static char blk[4096];
    for (int i = 0; i < 64; i++)
        assert_int_equal(fwrite(blk, 1, sizeof blk, fp), sizeof blk);
    fclose(fp);

    struct spool_config c = small_cfg();
    c.segment_bytes = 64 * 1024;
    c.max_bytes = 16 << 20; /* the bound is not what stops us: the filesystem is */
    c.write_buffer = 16 * 1024;
    c.retry_interval = 3600; /* only explicit spool_retry() in this test */
    struct spool *sp;
    assert_int_equal(spool_open(&sp, dir, &c, NULL), 0);
    char p[128];
    uint64_t accepted = 0;
    int rc = 0;
    for (int i = 1; i <= 20000; i++) {
        make_payload(p, 100, (uint64_t)i);
        rc = spool_append(sp, 1, 0, p, 100, NULL);
        if (rc < 0)
            break;
        accepted++;
        if (i % 100 == 0 && (rc = spool_sync(sp)) < 0)
            break;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(spool_degraded(sp), -ENOSPC);
    assert_true(accepted > 1000 && accepted < 20000);
    /* fails fast while degraded */
    assert_int_equal(spool_append(sp, 1, 0, p, 100, NULL), -ENOSPC);
    assert_int_equal(spool_retry(sp), -ENOSPC);
    struct spool_stats st;
    spool_stats(sp, &st);
    assert_int_equal(st.degraded, -ENOSPC);
    assert_true(st.append_errors >= 2);
    /* everything accepted is still readable (some of it only from memory) */
    struct spool_rec r;
    uint64_t n = 0;
    while (spool_next(sp, 0, &r) == 0) {
        assert_int_equal(payload_id(&r), ++n);
        check_payload(&r, 100);
    }
    assert_int_equal(n, accepted);

    /* space comes back */
    assert_int_equal(unlink(filler), 0);
    assert_int_equal(spool_retry(sp), 0);
    assert_int_equal(spool_degraded(sp), 0);
    for (uint64_t i = accepted + 1; i <= accepted + 100; i++) {
        make_payload(p, 100, i);
        assert_int_equal(spool_append(sp, 1, 0, p, 100, NULL), 0);
    }
    assert_int_equal(spool_close(sp), 0);

    struct spool_report rep;
    assert_int_equal(spool_open(&sp, dir, &c, &rep), 0);
    assert_int_equal(rep.records_discarded, 0);
    n = 0;
    while (spool_next(sp, 0, &r) == 0) {
        assert_int_equal(payload_id(&r), ++n);
        check_payload(&r, 100);
    }
    assert_int_equal(n, accepted + 100);
    assert_int_equal(spool_close(sp), 0);

    /* An unwritable spool (read-only remount: as root, permissions would not stop us) opens
     * degraded instead of failing, keeps serving what is on disk, and recovers. */
    assert_int_equal(mount(NULL, f->mnt, NULL, MS_REMOUNT | MS_RDONLY, "size=512k"), 0);
    assert_int_equal(spool_open(&sp, dir, &c, &rep), 0);
    assert_int_equal(spool_degraded(sp), -EROFS);
    assert_int_equal(spool_append(sp, 1, 0, p, 100, NULL), -EROFS);
    n = 0;
    while (spool_next(sp, 0, &r) == 0)
        n++;
    assert_int_equal(n, accepted + 100);
    assert_int_equal(mount(NULL, f->mnt, NULL, MS_REMOUNT, "size=512k"), 0);
    assert_int_equal(spool_retry(sp), 0);
    assert_int_equal(spool_append(sp, 1, 0, p, 100, NULL), 0);
    assert_int_equal(spool_close(sp), 0);
}

/*
 * The same failure path without mount privileges: RLIMIT_FSIZE makes write(2) fail with EFBIG
 * once a segment reaches 200 KiB (SIGXFSZ ignored). Runs everywhere, root or not.
 */
static void diskfull_rlimit_fsize(void **state)
{
    struct fx *f = *state;
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    struct spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    c.max_bytes = 16 << 20;
    c.retry_interval = 3600;
    struct spool *sp;
    assert_int_equal(spool_open(&sp, f->spool, &c, NULL), 0);
    lim = old;
    lim.rlim_cur = 200 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char p[128];
    uint64_t accepted = 0;
    int rc = 0;
    for (int i = 1; i <= 5000 && rc == 0; i++) {
        make_payload(p, 100, (uint64_t)i);
        rc = spool_append(sp, 1, 0, p, 100, NULL);
        if (rc == 0)
            accepted++;
        if (rc == 0 && i % 100 == 0)
            rc = spool_sync(sp);
    }
    assert_int_equal(rc, -EFBIG);
    assert_int_equal(spool_degraded(sp), -EFBIG);
    assert_int_equal(spool_append(sp, 1, 0, p, 100, NULL), -EFBIG);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    assert_int_equal(spool_retry(sp), 0);
    assert_int_equal(spool_close(sp), 0);
    struct spool_report rep;
    assert_int_equal(spool_open(&sp, f->spool, &c, &rep), 0);
    assert_int_equal(rep.records_discarded, 0);
    assert_int_equal(rep.records_kept, accepted);
    struct spool_rec r;
    uint64_t n = 0;
    while (spool_next(sp, 0, &r) == 0) {
        assert_int_equal(payload_id(&r), ++n);
        check_payload(&r, 100);
    }
    assert_int_equal(n, accepted);
    assert_int_equal(spool_close(sp), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(basic_crc32c_and_mqtt_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_append_read_ack_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_cursors_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_out_of_order_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_rewind_redelivers_unacked, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_rollover_and_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_lock_and_fsync_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_byte_flip_in_the_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_corrupt_or_missing_state, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_never_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(bound_drops_oldest_keeps_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_sigkill_keeps_synced_records, setup, teardown),
        cmocka_unit_test_setup_teardown(diskfull_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(diskfull_rlimit_fsize, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
