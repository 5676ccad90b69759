/*
 * mqttrec.h — the MQTT record: how one MQTT message travels through the pump and lies in
 * the spool (which stores it as opaque bytes), and the one place where a message is
 * validated. Encoded as (little endian):
 *
 *   u8 kind = 'M', u8 qos, u8 flags (bit0 retain), u8 0, u16 topic_len, u16 0,
 *   u32 payload_len, u64 user, topic bytes, payload bytes.
 *
 * `user` is the producer's token (the gateway's latency slot, see gwstats.h). It only means
 * something in the run that appended the record; records of older versions carry 0 there.
 *
 * Pure functions, no allocation except in the `struct buf` the caller passes.
 */
#ifndef IIOTGW_MQTTREC_H
#define IIOTGW_MQTTREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define MQTT_REC_FIXED       20u
#define MQTT_REC_MAX_TOPIC   65535u
#define MQTT_REC_MAX_PAYLOAD 268435455u /* the MQTT remaining-length limit */

struct mqtt_rec {
    const char *topic; /* after decode: not NUL-terminated, use topic_len */
    size_t topic_len;
    const void *payload;
    size_t payload_len;
    int qos;
    bool retain;
    uint64_t user;
};

/* A valid publish topic of `len` bytes (topic.h: the MQTT spec's rules, everything
 * libmosquitto would refuse at send time included)? 0 or -EINVAL. */
int mqtt_topic_check(const char *topic, size_t len);

/*
 * Would an MQTT sink take this message? Topic as above, qos 0..2, payload within the MQTT
 * limit and topic + payload <= max_bytes (the sink's queue bound; 0 = no bound).
 * Returns 0 or -EINVAL.
 */
int mqtt_rec_check(const struct mqtt_rec *m, size_t max_bytes);

/* Append the encoded message to `out`. Returns 0, -EINVAL (unencodable), -ENOMEM. */
int mqtt_rec_encode(struct buf *out, const struct mqtt_rec *m);

/* Decode in place: pointers in *m point into data. Returns 0 or -EBADMSG. */
int mqtt_rec_decode(const void *data, size_t len, struct mqtt_rec *m);

#endif
