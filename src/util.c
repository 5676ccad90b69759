/*
 * util.c — clocks, a bounded string copy and a small PRNG for backoff jitter.
 */
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double util_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t util_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t n = strlen(src);
    if (dstlen) {
        size_t c = n < dstlen - 1 ? n : dstlen - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

uint32_t util_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

uint32_t util_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint32_t s = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ (uint32_t)ts.tv_sec;
    return s ? s : 1;
}

const char *util_redact_url(const char *url, char *out, size_t outlen)
{
    const char *start = strstr(url, "://");
    if (start)
        start += 3;
    else if ((start = strstr(url, "//")))
        start += 2;
    else
        start = url;
    const char *at = strrchr(start, '@');
    if (!at) {
        util_strlcpy(out, url, outlen);
        return out;
    }
    snprintf(out, outlen, "%.*s***%s", (int)(start - url), url, at);
    return out;
}
