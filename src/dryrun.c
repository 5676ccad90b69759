/*
 * dryrun.c — the `--dry-run` printer behind the sink seam. See dryrun.h for the output.
 *
 * Why a sink: the gateway then runs exactly the same code with and without --dry-run (rule
 * outputs, dead-letters and the stats point all go through forward.c); only what is at the
 * end of the pipe differs.
 */
#include "dryrun.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mqttrec.h"
#include "util.h"

struct dryrun {
    FILE *f;
    char *deadletter_topic;
    char header[256];
    bool header_pending;
    int refs;
};

static void dryrun_flush_header(struct dryrun *dr)
{
    if (dr->header_pending) {
        fprintf(dr->f, "%s\n", dr->header);
        dr->header_pending = false;
    }
}

void dryrun_header(struct dryrun *dr, const char *header, bool now)
{
    dr->header_pending = header != NULL;
    if (header)
        util_strlcpy(dr->header, header, sizeof dr->header);
    if (now)
        dryrun_flush_header(dr);
}

static int dryrun_mqtt_check(const void *self, const void *rec, size_t len)
{
    (void)self;
    struct mqtt_rec r;
    return mqtt_rec_decode(rec, len, &r) < 0 ? -EINVAL : 0;
}

static int dryrun_mqtt_submit(void *self, const void *rec, size_t len, unsigned flags,
                              uint64_t token)
{
    (void)token;
    struct dryrun *dr = self;
    struct mqtt_rec r;
    if (mqtt_rec_decode(rec, len, &r) < 0)
        return -EINVAL;
    if (flags & SINK_INTERNAL) {
        size_t dl = dr->deadletter_topic ? strlen(dr->deadletter_topic) : 0;
        if (dl && dl == r.topic_len && memcmp(r.topic, dr->deadletter_topic, dl) == 0) {
            dryrun_flush_header(dr);
            fprintf(dr->f, "DEADLETTER %.*s\n", (int)r.payload_len, (const char *)r.payload);
        }
        return 0;
    }
    dryrun_flush_header(dr);
    fprintf(dr->f, "PUBLISH %.*s qos=%d retain=%d %.*s\n", (int)r.topic_len, r.topic, r.qos,
            r.retain ? 1 : 0, (int)r.payload_len, (const char *)r.payload);
    return 0;
}

static int dryrun_influx_check(const void *self, const void *rec, size_t len)
{
    (void)self;
    (void)len;
    return rec ? 0 : -EINVAL;
}

static int dryrun_influx_submit(void *self, const void *rec, size_t len, unsigned flags,
                                uint64_t token)
{
    (void)token;
    struct dryrun *dr = self;
    if (flags & SINK_INTERNAL) {
        fprintf(dr->f, "# stats\nWRITE %.*s\n", (int)len, (const char *)rec);
        return 0;
    }
    dryrun_flush_header(dr);
    fprintf(dr->f, "WRITE %.*s\n", (int)len, (const char *)rec);
    return 0;
}

static size_t dryrun_pending(const void *self)
{
    (void)self;
    return 0;
}

static bool dryrun_healthy(const void *self)
{
    (void)self;
    return true;
}

static void dryrun_set_callbacks(void *self, const struct sink_callbacks *cb)
{
    (void)self;
    (void)cb; /* nothing is ever acknowledged */
}

static void dryrun_flush(void *self)
{
    struct dryrun *dr = self;
    fflush(dr->f);
}

static void dryrun_stats(const void *self, struct sink_stats *st)
{
    (void)self;
    memset(st, 0, sizeof *st);
}

static void dryrun_free(void *self)
{
    struct dryrun *dr = self;
    if (--dr->refs > 0)
        return;
    fflush(dr->f);
    free(dr->deadletter_topic);
    free(dr);
}

static const struct sink_ops dryrun_ops[FWD_NDEST] = {
    [FWD_MQTT] = {.name = "mqtt",
                  .check = dryrun_mqtt_check,
                  .submit = dryrun_mqtt_submit,
                  .pending = dryrun_pending,
                  .healthy = dryrun_healthy,
                  .set_callbacks = dryrun_set_callbacks,
                  .flush = dryrun_flush,
                  .close = NULL,
                  .stats = dryrun_stats,
                  .free = dryrun_free},
    [FWD_INFLUX] = {.name = "influx",
                    .check = dryrun_influx_check,
                    .submit = dryrun_influx_submit,
                    .pending = dryrun_pending,
                    .healthy = dryrun_healthy,
                    .set_callbacks = dryrun_set_callbacks,
                    .flush = dryrun_flush,
                    .close = NULL,
                    .stats = dryrun_stats,
                    .free = dryrun_free},
};

int dryrun_new(struct dryrun **out, FILE *f, const char *deadletter_topic)
{
    struct dryrun *dr = calloc(1, sizeof *dr);
    *out = NULL;
    if (!dr)
        return -ENOMEM;
    if (deadletter_topic && !(dr->deadletter_topic = strdup(deadletter_topic))) {
        free(dr);
        return -ENOMEM;
    }
    dr->f = f;
    dr->refs = FWD_NDEST;
    *out = dr;
    return 0;
}

struct sink dryrun_sink(struct dryrun *dr, enum forward_dest dest)
{
    return (struct sink){.ops = &dryrun_ops[dest], .self = dr};
}
