/*
 * topic.h — the one validator of MQTT publish topic names.
 *
 * A topic name is accepted when every broker and libmosquitto will take it, so a message
 * that passes here is never refused later for its topic (where it would be lost, or become a
 * record re-sent forever). The rules, MQTT 3.1.1 §1.5.3 and §4.7 and MQTT 5.0 §1.5.4, §4.7:
 *   - 1..65535 bytes (the length is a two-byte prefix on the wire; empty is illegal);
 *   - well-formed UTF-8: no overlong forms, no surrogates (U+D800..U+DFFF), <= U+10FFFF;
 *   - no U+0000;
 *   - none of the code points the spec says a receiver may treat as malformed and that
 *     libmosquitto and mosquitto do refuse: the controls U+0001..U+001F (TAB, CR, LF
 *     included) and U+007F..U+009F (DEL and the C1 controls, e.g. U+0085 NEL), and the
 *     non-characters U+FDD0..U+FDEF and U+nFFFE/U+nFFFF of every plane;
 *   - no wildcard: '+' and '#' are legal only in subscription filters.
 *
 * Pure module: no allocation, no state, re-entrant. The caller owns the bytes; they need not
 * be NUL-terminated (an embedded NUL is refused like any U+0000).
 */
#ifndef IIOTGW_TOPIC_H
#define IIOTGW_TOPIC_H

#include <stddef.h>

#define TOPIC_MAX_LEN 65535u

/*
 * Check topic[0..len) as a publish topic name. Returns NULL when it is valid, else a phrase
 * for an error message ("contains a control character (U+0009)"), in static storage or in
 * `why` (whylen bytes, may be 0 with why NULL: then only static phrases are returned, without
 * the code point).
 */
const char *topic_problem(const char *topic, size_t len, char *why, size_t whylen);

/* topic_problem() == NULL as 0 / -EINVAL, for callers that need no reason. */
int topic_check(const char *topic, size_t len);

#endif
