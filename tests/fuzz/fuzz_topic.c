/*
 * fuzz_topic.c — libFuzzer harness for the MQTT topic validator (src/topic.c).
 *
 * The input is a topic. Checked against libmosquitto, which refuses a message at send time
 * when its topic fails mosquitto_validate_utf8() or mosquitto_pub_topic_check2(): whatever
 * topic_check() accepts, both must accept too (so an accepted topic is never refused later).
 * And topic_problem() agrees with topic_check() and, with a buffer, returns a non-empty reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    char why[96];
    const char *p = topic_problem(t, size, why, sizeof why);
    int rc = topic_check(t, size);
    if ((p == NULL) != (rc == 0) || (p && !*p))
        abort();
    if (rc == 0 && size <= 65535) {
        if (mosquitto_validate_utf8(t, (int)size) != MOSQ_ERR_SUCCESS ||
            mosquitto_pub_topic_check2(t, size) != MOSQ_ERR_SUCCESS)
            abort(); /* accepted here, refused by libmosquitto */
    }
    if (rc == 0 && size > 65535)
        abort();
    return 0;
}
