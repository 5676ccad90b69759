/*
 * ring.h — single-producer/single-consumer byte ring for ISR -> main loop hand-off.
 *
 * The UART receive interrupt is the only writer (ring_put), the main loop the only reader
 * (ring_get): head and tail are each written by one side only, so no lock is needed on a
 * single-core Cortex-M as long as the indices are read/written whole (32-bit, volatile).
 * RING_SIZE must be a power of two. A full ring drops the new byte and counts it.
 */
#ifndef FW_RING_H
#define FW_RING_H

#include <stdbool.h>
#include <stdint.h>

#define RING_SIZE 512u

struct ring {
    volatile uint32_t head;    /* written by the producer */
    volatile uint32_t tail;    /* written by the consumer */
    volatile uint32_t dropped; /* producer-side overflow count */
    uint8_t data[RING_SIZE];
};

static inline void ring_init(struct ring *r)
{
    r->head = r->tail = r->dropped = 0;
}

static inline bool ring_put(struct ring *r, uint8_t b)
{
    uint32_t h = r->head;
    if (h - r->tail >= RING_SIZE) {
        r->dropped++;
        return false;
    }
    r->data[h & (RING_SIZE - 1)] = b;
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* data before index, vs. the compiler */
    r->head = h + 1;
    return true;
}

static inline bool ring_get(struct ring *r, uint8_t *b)
{
    uint32_t t = r->tail;
    if (t == r->head)
        return false;
    *b = r->data[t & (RING_SIZE - 1)];
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    r->tail = t + 1;
    return true;
}

#endif
