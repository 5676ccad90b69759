/*
 * bench_spool.c — how cheap is a spool append? Appends N 100-byte records (two sinks, 18 per
 * simulated packet like the gateway: 9 MQTT + 9 InfluxDB), calling spool_tick every 100 ms of
 * wall time as the daemon's timer would, then reads and acks everything per sink.
 * Prints appends/s (append phase alone) and records/s for the whole pipeline, and fails if a
 * record is missing or damaged.
 *
 *   bench_spool [N=1000000] [always|interval|none] [batch|live] [dir]
 *
 * batch: append everything, then read + ack (the backlog/replay case: reads come from disk).
 * live:  after each packet's 18 appends both sinks read and ack what is new (the steady state
 *        of the daemon: reads come from the write buffer).
 */
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "spool.h"
#include "util.h"

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    int pol = spool_fsync_parse(argc > 2 ? argv[2] : "interval");
    bool live = argc > 3 && strcmp(argv[3], "live") == 0;
    char dir[256];
    if (argc > 4)
        snprintf(dir, sizeof dir, "%s", argv[4]);
    else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/spoolbench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
            return 1;
    }
    if (pol < 0) {
        fprintf(stderr, "bad policy\n");
        return 2;
    }
    struct spool_config cfg = {.nsinks = 2, .fsync = pol};
    cfg.max_bytes = 1ull << 30; /* measure appends, not the drop policy */
    struct spool *sp;
    int r = spool_open(&sp, dir, &cfg, NULL);
    if (r < 0) {
        fprintf(stderr, "spool_open: %s\n", strerror(-r));
        return 1;
    }
    char payload[100];
    memset(payload, 'x', sizeof payload);
    double t0 = util_mono(), next_tick = t0 + 0.1;
    uint64_t ticks = 0, got[2] = {0};
    struct spool_rec rec;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(payload, &i, sizeof i);
        unsigned sink = (i % 18) < 9 ? 1u : 2u;
        if ((r = spool_append(sp, sink, 0, payload, sizeof payload, NULL)) < 0) {
            fprintf(stderr, "append: %s\n", strerror(-r));
            return 1;
        }
        if (i % 18 == 17) {
            for (unsigned k = 0; live && k < 2; k++)
                while (spool_next(sp, k, &rec) == 0) {
                    spool_ack(sp, k, rec.seq);
                    got[k]++;
                }
            if (pol == SPOOL_FSYNC_ALWAYS && i % (18 * 64) == 18 * 64 - 1)
                spool_sync(sp); /* `always`: the daemon syncs per input batch (64 packets) */
            if ((i & 1023) == 1023 && util_mono() >= next_tick) {
                spool_tick(sp);
                ticks++;
                next_tick += 0.1;
            }
        }
    }
    spool_sync(sp);
    double t1 = util_mono();
    for (unsigned k = 0; k < 2; k++) {
        while (spool_next(sp, k, &rec) == 0) {
            uint64_t id;
            memcpy(&id, rec.data, sizeof id);
            if (rec.len != sizeof payload || ((id % 18) < 9) != (k == 0)) {
                fprintf(stderr, "bad record seq=%" PRIu64 "\n", rec.seq);
                return 1;
            }
            spool_ack(sp, k, rec.seq);
            got[k]++;
        }
    }
    spool_sync(sp);
    double t2 = util_mono();
    struct spool_stats st;
    spool_stats(sp, &st);
    if (got[0] + got[1] != n || st.pending[0] || st.pending[1]) {
        fprintf(stderr, "lost records: %" PRIu64 " + %" PRIu64 " of %" PRIu64 "\n", got[0], got[1],
                n);
        return 1;
    }
    printf("mode=%s policy=%s records=%" PRIu64 " bytes=%" PRIu64
           " append_s=%.3f appends_per_s=%.0f "
           "MB_per_s=%.0f read_ack_s=%.3f pipeline_records_per_s=%.0f writes=%" PRIu64
           " fsyncs=%" PRIu64 " ticks=%" PRIu64 "\n",
           live ? "live" : "batch", spool_fsync_name(pol), n, st.appended_bytes, t1 - t0,
           (double)n / (t1 - t0), (double)n * 132 / (t1 - t0) / 1e6, t2 - t1, (double)n / (t2 - t0),
           st.writes, st.fsyncs, ticks);
    spool_close(sp);
    if (argc <= 4)
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
