/*
 * deadletter.c — JSON-lines dead-letter file + publish hook. See deadletter.h.
 */
#include "deadletter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "util.h"

struct deadletter {
    int fd; /* -1: no file */
    char *path;
    char *path_old; /* "<path>.1" */
    uint64_t max_bytes;
    uint64_t size; /* of the current file */
    uint64_t rotations;
    uint64_t drops;
    deadletter_publish_cb cb;
    void *ud;
    const struct clock *clock; /* NULL: the wall clock */
    uint64_t counts[DL_REASON_COUNT];
    uint64_t write_errors;
    struct buf rec; /* reused record buffer */
};

static const char *const reason_names[DL_REASON_COUNT] = {
    "overlong",        "unterminated",  "invalid_json",  "rule_error",
    "influx_rejected", "mqtt_rejected", "value_refused",
};

const char *deadletter_reason_name(enum dl_reason reason)
{
    return (unsigned)reason < DL_REASON_COUNT ? reason_names[reason] : "unknown";
}

static int dl_open_file(struct deadletter *d)
{
    d->fd = open(d->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (d->fd < 0)
        return -errno;
    struct stat st;
    d->size = fstat(d->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

int deadletter_open(struct deadletter **out, const char *path, uint64_t max_bytes,
                    deadletter_publish_cb cb, void *ud, char *err, size_t errlen)
{
    int rc;
    struct deadletter *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->fd = -1;
    d->cb = cb;
    d->ud = ud;
    d->max_bytes = max_bytes ? max_bytes : 1;
    if (path && *path && strcmp(path, "none") != 0) {
        size_t n = strlen(path) + 3;
        if (!(d->path = strdup(path)) || !(d->path_old = malloc(n))) {
            rc = -ENOMEM;
            goto fail;
        }
        snprintf(d->path_old, n, "%s.1", path);
        if ((rc = dl_open_file(d))) {
            snprintf(err, errlen, "deadletter file %s: %s", path, strerror(-rc));
            goto fail;
        }
    }
    *out = d;
    return 0;
fail:
    deadletter_close(d);
    return rc;
}

/* The current file becomes <path>.1 (the previous .1 goes) and a new one starts. */
static int dl_rotate(struct deadletter *d)
{
    if (rename(d->path, d->path_old) < 0)
        return -errno;
    close(d->fd);
    d->rotations++;
    int rc = dl_open_file(d);
    if (rc == 0)
        log_info("deadletter_rotated", "path=%s kept=%s rotations=%llu", log_q(d->path),
                 log_q(d->path_old), (unsigned long long)d->rotations);
    return rc;
}

static void dl_write(struct deadletter *d, const char *p, size_t n)
{
    if (n > d->max_bytes) {
        d->drops++;
        if (d->drops == 1 || d->drops % 1000 == 0)
            log_warn("deadletter_record_dropped",
                     "path=%s bytes=%zu max_bytes=%llu drops=%llu hint=\"raise "
                     "deadletter_max_bytes\"",
                     log_q(d->path), n, (unsigned long long)d->max_bytes,
                     (unsigned long long)d->drops);
        return;
    }
    const char *why = NULL;
    int e = 0;
    if (d->fd >= 0 && d->size > 0 && d->size + n > d->max_bytes && (e = dl_rotate(d)))
        why = "rotate";
    if (!why && d->fd < 0 && (e = dl_open_file(d)))
        why = "open";
    if (!why) {
        ssize_t w = write(d->fd, p, n);
        if (w > 0)
            d->size += (uint64_t)w;
        if (w == (ssize_t)n)
            return;
        why = "write";
        e = w < 0 ? -errno : 0;
    }
    d->write_errors++;
    /* Log the first failure and then every 1000th, not every record. */
    if (d->write_errors == 1 || d->write_errors % 1000 == 0)
        log_error("deadletter_write_failed", "path=%s op=%s err=\"%s\" failures=%llu",
                  log_q(d->path), why, e ? strerror(-e) : "short write",
                  (unsigned long long)d->write_errors);
}

/* Append s[0..n) as a JSON string body: escapes, and bytes >= 0x80 that are not valid UTF-8
 * become \u00XX so the record stays valid JSON whatever the radio sent. */
static void json_escape(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            buf_append_char(b, '\\');
            buf_append_char(b, (char)c);
        } else if (c == '\n') {
            buf_append_str(b, "\\n");
        } else if (c == '\r') {
            buf_append_str(b, "\\r");
        } else if (c == '\t') {
            buf_append_str(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            buf_printf(b, "\\u%04x", c);
        } else if (c < 0x80) {
            buf_append_char(b, (char)c);
        } else {
            /* Validate one UTF-8 sequence; copy it if well-formed. */
            size_t len = util_utf8_decode(p + i, n - i, NULL);
            if (len) {
                buf_append(b, s + i, len);
                i += len - 1;
            } else {
                buf_printf(b, "\\u%04x", c);
            }
        }
    }
}

void deadletter_put(struct deadletter *d, enum dl_reason reason, const char *source,
                    uint64_t line_no, const char *error, const char *data, size_t len)
{
    if ((unsigned)reason >= DL_REASON_COUNT)
        return;
    d->counts[reason]++;

    int64_t now = clock_now_ns(d->clock);
    struct timespec ts = {.tv_sec = (time_t)(now / 1000000000), .tv_nsec = now % 1000000000};
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    struct buf *b = &d->rec;
    buf_clear(b);
    buf_printf(b, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"source\":\"",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
               ts.tv_nsec / 1000000);
    json_escape(b, source ? source : "", source ? strlen(source) : 0);
    buf_printf(b, "\",\"line\":%llu,\"reason\":\"%s\",\"error\":\"", (unsigned long long)line_no,
               reason_names[reason]);
    json_escape(b, error ? error : "", error ? strlen(error) : 0);
    buf_append_str(b, "\",\"data\":\"");
    json_escape(b, data ? data : "", data ? len : 0);
    if (buf_append_str(b, "\"}\n") < 0) {
        log_error("deadletter_oom", "reason=%s", reason_names[reason]);
        return;
    }

    if (d->path)
        dl_write(d, b->p, b->len);
    if (d->cb)
        d->cb(d->ud, b->p, b->len - 1); /* without the newline */
}

uint64_t deadletter_count(const struct deadletter *d, enum dl_reason reason)
{
    return (unsigned)reason < DL_REASON_COUNT ? d->counts[reason] : 0;
}

uint64_t deadletter_total(const struct deadletter *d)
{
    uint64_t t = 0;
    for (int i = 0; i < DL_REASON_COUNT; i++)
        t += d->counts[i];
    return t;
}

void deadletter_set_clock(struct deadletter *d, const struct clock *clock)
{
    d->clock = clock;
}

void deadletter_get_stats(const struct deadletter *d, struct deadletter_stats *st)
{
    *st = (struct deadletter_stats){
        .bytes = d->size,
        .rotations = d->rotations,
        .drops = d->drops,
        .write_errors = d->write_errors,
    };
}

void deadletter_close(struct deadletter *d)
{
    if (!d)
        return;
    if (d->fd >= 0)
        close(d->fd);
    free(d->path);
    free(d->path_old);
    buf_free(&d->rec);
    free(d);
}
