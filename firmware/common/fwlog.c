/*
 * fwlog.c — firmware log line formatter (see fwlog.h).
 */
#include "fwlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void fwlog_write(const struct fw_hal *hal, const char *level, const char *func, const char *file,
                 int line, const char *fmt, ...)
{
    char buf[FWLOG_MAX_LINE];
    va_list ap;
    size_t n;
    int rc;

    if (!hal->console_write)
        return;
    n = strlen(level);
    memcpy(buf, level, n);
    buf[n++] = ' ';
    va_start(ap, fmt);
    rc = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (rc < 0)
        rc = 0;
    n += (size_t)rc < sizeof(buf) - n - 1 ? (size_t)rc : sizeof(buf) - n - 2;
    /* A message that already ends in a newline (the telemetry line) gets no second one. */
    if (n == 0 || buf[n - 1] != '\n')
        buf[n++] = '\n';
    hal->console_write(hal->ctx, buf, n);
    if (func && file) {
        rc = snprintf(buf, sizeof(buf), "\xe2\x94\x94\xe2\x94\x80 %s @ %s:%d\n", func, file, line);
        if (rc > 0)
            hal->console_write(hal->ctx, buf,
                               (size_t)rc < sizeof(buf) ? (size_t)rc : sizeof(buf) - 1);
    }
}
