/*
 * topic.c — MQTT publish topic validation. See topic.h for the rules.
 *
 * Why its own file: topics come from rules (gw.publish, gw.mapper), from the configuration
 * (status and dead-letter topics) and from spooled records of older runs; all of them must be
 * judged by the same rules before a message is accepted, and those rules are the spec's, not
 * whatever a library happens to check at send time.
 */
#include "topic.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

/* Decode the UTF-8 sequence at s[0..n) into *cp. Returns its length, or 0 if malformed. */
static size_t topic_utf8(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static const char *topic_cp_problem(const char *what, uint32_t cp, char *why, size_t whylen)
{
    if (!why || whylen == 0)
        return what;
    snprintf(why, whylen, "%s (U+%04X)", what, (unsigned)cp);
    return why;
}

const char *topic_problem(const char *topic, size_t len, char *why, size_t whylen)
{
    if (!topic || len == 0)
        return "is empty";
    if (len > TOPIC_MAX_LEN)
        return "is longer than 65535 bytes";
    const unsigned char *s = (const unsigned char *)topic;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = topic_utf8(s + i, len - i, &cp);
        if (!l)
            return "is not valid UTF-8";
        if (cp == 0)
            return "contains a NUL byte";
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return topic_cp_problem("contains a control character", cp, why, whylen);
        if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
            return topic_cp_problem("contains a non-character", cp, why, whylen);
        if (cp == '+' || cp == '#')
            return "contains a wildcard ('+' or '#')";
        i += l;
    }
    return NULL;
}

int topic_check(const char *topic, size_t len)
{
    return topic_problem(topic, len, NULL, 0) ? -EINVAL : 0;
}
