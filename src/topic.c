/*
 * topic.c — MQTT publish topic validation. See topic.h for the rules.
 *
 * Why its own file: topics come from rules (gw.publish, gw.mapper), from the configuration
 * (status and dead-letter topics) and from spooled records of older runs; all of them must be
 * judged by the same rules before a message is accepted, and those rules are the spec's, not
 * whatever a library happens to check at send time.
 */
#include "topic.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

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
        size_t l = util_utf8_decode(s + i, len - i, &cp);
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
