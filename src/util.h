/*
 * util.h — tiny helpers every module uses: container_of, clocks, string copies.
 *
 * Kept deliberately small: anything with state lives in its own module.
 */
#ifndef IIOTGW_UTIL_H
#define IIOTGW_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Recover the struct that embeds a libev watcher (see ev.pod, "associating custom data"). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock time in nanoseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t util_now_ns(void);

/* Monotonic time in seconds (CLOCK_MONOTONIC). */
double util_mono(void);

/*
 * Copy at most dstlen-1 bytes of src into dst and always NUL-terminate.
 * Returns strlen(src) like strlcpy, so truncation is (ret >= dstlen).
 */
size_t util_strlcpy(char *dst, const char *src, size_t dstlen);

/*
 * Copy `url` into out with its userinfo (everything between "://" and the last '@') replaced by
 * "***", so a URL can be quoted in an error without its credentials; malformed URLs included
 * (no "://": from "//" or the start). Always NUL-terminates (truncates). Returns out.
 */
const char *util_redact_url(const char *url, char *out, size_t outlen);

/* snprintf into err[errlen]; does nothing when err is NULL or errlen is 0. */
void util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Decode the UTF-8 sequence at s[0..n) (n >= 1): returns its length (1..4) and stores its code
 * point in *cp (cp may be NULL), or returns 0 when it is not a well-formed sequence by RFC 3629
 * (no overlong forms, no surrogates, nothing above U+10FFFF, not cut short by n). Pure.
 */
size_t util_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* xorshift32 step; never returns 0 for a non-zero state. Seed with util_seed(). */
uint32_t util_rand(uint32_t *state);
uint32_t util_seed(void);

#endif
