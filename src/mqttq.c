/*
 * mqttq.c — the MQTT sink's message lists. See mqttq.h.
 */
#include "mqttq.h"

#include <stdlib.h>
#include <string.h>

static size_t mqttq_cost(const struct mqtt_msg *msg)
{
    return msg->len + strlen(msg->topic);
}

void mqttq_push_tail(struct mqttq *l, struct mqtt_msg *msg)
{
    msg->next = NULL;
    msg->prev = l->tail;
    if (l->tail)
        l->tail->next = msg;
    else
        l->head = msg;
    l->tail = msg;
    l->count++;
    l->bytes += mqttq_cost(msg);
}

void mqttq_push_head(struct mqttq *l, struct mqtt_msg *msg)
{
    msg->prev = NULL;
    msg->next = l->head;
    if (l->head)
        l->head->prev = msg;
    else
        l->tail = msg;
    l->head = msg;
    l->count++;
    l->bytes += mqttq_cost(msg);
}

void mqttq_unlink(struct mqttq *l, struct mqtt_msg *msg)
{
    if (msg->prev)
        msg->prev->next = msg->next;
    else
        l->head = msg->next;
    if (msg->next)
        msg->next->prev = msg->prev;
    else
        l->tail = msg->prev;
    msg->next = msg->prev = NULL;
    l->count--;
    l->bytes -= mqttq_cost(msg);
}

void mqttq_free(struct mqttq *l)
{
    struct mqtt_msg *msg = l->head;
    while (msg) {
        struct mqtt_msg *next = msg->next;
        free(msg);
        msg = next;
    }
    memset(l, 0, sizeof *l);
}

struct mqtt_msg *mqttq_find(struct mqttq *l, int mid)
{
    /* Acks arrive nearly in order, so the match is almost always at the head. */
    for (struct mqtt_msg *msg = l->head; msg; msg = msg->next)
        if (msg->mid == mid)
            return msg;
    return NULL;
}
