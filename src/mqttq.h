/*
 * mqttq.h — the MQTT sink's message lists: the offline FIFO and the in-flight list (mqtt.c).
 * Doubly linked, counting messages and their bytes (topic + payload, what queue_max_bytes
 * bounds). A message is in at most one list at a time.
 *
 * Ownership: a list owns the messages in it (malloc'ed by mqtt.c, one block each:
 * struct + topic + NUL + payload + NUL); mqttq_free() frees them all.
 */
#ifndef IIOTGW_MQTTQ_H
#define IIOTGW_MQTTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqtt_msg {
    struct mqtt_msg *next;
    struct mqtt_msg *prev; /* inflight list only */
    uint64_t token;
    uint64_t user; /* the producer's token from the record (sink seam), else 0 */
    int mid;
    int qos;
    bool retain;
    /* The gateway's own message (SINK_INTERNAL): a refusal is logged, never dead-lettered,
     * since the dead-letter topic is one of them (a refused dead-letter would loop). */
    bool internal;
    size_t len;  /* payload bytes */
    char *topic; /* points into data */
    char *payload;
    char data[]; /* topic NUL payload */
};

struct mqttq {
    struct mqtt_msg *head;
    struct mqtt_msg *tail;
    size_t count;
    size_t bytes;
};

void mqttq_push_tail(struct mqttq *l, struct mqtt_msg *msg);
void mqttq_push_head(struct mqttq *l, struct mqtt_msg *msg);
void mqttq_unlink(struct mqttq *l, struct mqtt_msg *msg);
void mqttq_free(struct mqttq *l);

/* The message with this mid, or NULL. */
struct mqtt_msg *mqttq_find(struct mqttq *l, int mid);

#endif
