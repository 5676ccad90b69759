/*
 * mqttrec.c — the MQTT record codec and message validation. See mqttrec.h.
 *
 * Why its own file: the spool stores records as opaque bytes, the pump moves them without
 * looking inside, and the MQTT sink and the --dry-run printer both read them; a message is
 * validated here once, before it is spooled, with the same rules the sink applies.
 */
#include "mqttrec.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "topic.h"

int mqtt_topic_check(const char *topic, size_t len)
{
    return topic_check(topic, len);
}

int mqtt_rec_check(const struct mqtt_rec *m, size_t max_bytes)
{
    if (mqtt_topic_check(m->topic, m->topic_len) < 0 || m->qos < 0 || m->qos > 2 ||
        (!m->payload && m->payload_len) || m->payload_len > MQTT_REC_MAX_PAYLOAD)
        return -EINVAL;
    if (max_bytes && m->payload_len + m->topic_len > max_bytes)
        return -EINVAL; /* could never fit in the sink's queue */
    return 0;
}

int mqtt_rec_encode(struct buf *out, const struct mqtt_rec *m)
{
    if (!m->topic || m->topic_len > MQTT_REC_MAX_TOPIC || m->payload_len > UINT32_MAX ||
        m->qos < 0 || m->qos > 2 || (m->payload_len && !m->payload))
        return -EINVAL;
    uint8_t h[MQTT_REC_FIXED];
    uint16_t tl = htole16((uint16_t)m->topic_len), zero = 0;
    uint32_t pl = htole32((uint32_t)m->payload_len);
    uint64_t user = htole64(m->user);
    h[0] = 'M';
    h[1] = (uint8_t)m->qos;
    h[2] = m->retain ? 1 : 0;
    h[3] = 0;
    memcpy(h + 4, &tl, 2);
    memcpy(h + 6, &zero, 2);
    memcpy(h + 8, &pl, 4);
    memcpy(h + 12, &user, 8);
    int r = buf_reserve(out, MQTT_REC_FIXED + m->topic_len + m->payload_len);
    if (r < 0)
        return r;
    buf_append(out, h, sizeof h);
    buf_append(out, m->topic, m->topic_len);
    return m->payload_len ? buf_append(out, m->payload, m->payload_len) : 0;
}

int mqtt_rec_decode(const void *data, size_t len, struct mqtt_rec *m)
{
    const uint8_t *p = data;
    if (!p || len < MQTT_REC_FIXED || p[0] != 'M' || p[1] > 2 || p[2] > 1)
        return -EBADMSG;
    uint16_t tl;
    uint32_t pl;
    uint64_t user;
    memcpy(&tl, p + 4, 2);
    memcpy(&pl, p + 8, 4);
    memcpy(&user, p + 12, 8);
    size_t tlen = le16toh(tl), plen = le32toh(pl);
    if (MQTT_REC_FIXED + tlen + plen != len)
        return -EBADMSG;
    m->qos = p[1];
    m->retain = p[2] != 0;
    m->topic_len = tlen;
    m->topic = (const char *)p + MQTT_REC_FIXED;
    m->payload_len = plen;
    m->payload = p + MQTT_REC_FIXED + tlen;
    m->user = le64toh(user);
    return 0;
}
