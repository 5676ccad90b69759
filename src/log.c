/*
 * log.c — key=value event logging to stderr. See log.h.
 */
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_threshold = LL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return LL_WARN;
    return -EINVAL;
}

const char *log_level_name(int level)
{
    return level >= 0 && level <= LL_DEBUG ? level_names[level] : "?";
}

void log_set_level(int level)
{
    log_threshold = level;
}

int log_get_level(void)
{
    return log_threshold;
}

int log_enabled(int level)
{
    return level <= log_threshold;
}

void log_emit(int level, const char *event, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (n < 0)
        return;
    if (fmt && *fmt && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    /* Values that may carry outside text are quoted by their callers (log_quote); this is the
     * backstop: no control character of a field, one forgotten there included, can start a
     * new line or rewrite this one on a terminal. */
    for (int i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

char *log_quote(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    if (outlen < 8) {
        if (outlen)
            out[0] = '\0';
        return out;
    }
    if (!s)
        s = "";
    out[o++] = '"';
    size_t limit = outlen - 5; /* room for ...", and NUL */
    for (size_t i = 0; i < n && s[i];) {
        const unsigned char *u = (const unsigned char *)s + i;
        unsigned char c = u[0];
        char tmp[8];
        size_t k, used = 1;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if (c == '\n') {
            memcpy(tmp, "\\n", 2);
            k = 2;
        } else if (c == '\r') {
            memcpy(tmp, "\\r", 2);
            k = 2;
        } else if (c == '\t') {
            memcpy(tmp, "\\t", 2);
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            k = 4;
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            k = 1;
        } else {
            /* Valid UTF-8 is kept, except the C1 controls and the Unicode line and paragraph
             * separators, which some log viewers treat as line breaks; any other byte that
             * is not part of a well-formed sequence is escaped. */
            uint32_t cp = 0;
            size_t avail = n - i;
            size_t len = util_utf8_decode(u, avail, &cp);
            for (size_t j = 1; len && j < len; j++)
                if (!u[j]) /* a NUL ends a C string inside the sequence */
                    len = 0;
            if (!len) {
                snprintf(tmp, sizeof tmp, "\\x%02x", c);
                k = 4;
            } else if (cp < 0xa0 || cp == 0x2028 || cp == 0x2029) {
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
                k = 6;
                used = len;
            } else {
                memcpy(tmp, u, len);
                k = len;
                used = len;
            }
        }
        if (o + k > limit) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
        i += used;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
