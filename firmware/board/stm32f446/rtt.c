/*
 * rtt.c — SEGGER RTT up-channel 0 (see rtt.h).
 *
 * The control block is the one deliberate global of the firmware: the debug probe locates it
 * by symbol name or by scanning RAM, so it must live at a fixed, linker-visible address.
 */
#include "rtt.h"

#include <string.h>

struct rtt_buffer {
    const char *name;
    char *buf;
    uint32_t size;
    volatile uint32_t wr; /* written by the target */
    volatile uint32_t rd; /* written by the host */
    uint32_t flags;       /* 0 = SEGGER_RTT_MODE_NO_BLOCK_SKIP */
};

struct rtt_cb {
    char id[16];
    int32_t max_up;
    int32_t max_down;
    struct rtt_buffer up[1];
    struct rtt_buffer down[1];
    /* private */
    uint32_t dropped;
};

static char up_buf[RTT_UP_SIZE];
static char down_buf[16];

__attribute__((used, aligned(4))) struct rtt_cb _SEGGER_RTT;

void rtt_init(void)
{
    struct rtt_cb *cb = &_SEGGER_RTT;
    cb->max_up = 1;
    cb->max_down = 1;
    cb->up[0] = (struct rtt_buffer){.name = "Terminal", .buf = up_buf, .size = sizeof(up_buf)};
    cb->down[0] =
        (struct rtt_buffer){.name = "Terminal", .buf = down_buf, .size = sizeof(down_buf)};
    /* Write the id last, and not from one literal: a host scanning RAM must never find a
     * half-initialised block, nor a stale copy of the string elsewhere. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(&cb->id[7], "RTT", 4);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(cb->id, "SEGGER ", 7);
}

size_t rtt_write(const char *buf, size_t len)
{
    struct rtt_buffer *b = &_SEGGER_RTT.up[0];
    uint32_t wr = b->wr, rd = b->rd;
    uint32_t space = rd > wr ? rd - wr - 1 : b->size - (wr - rd) - 1;

    if (len > space) {
        _SEGGER_RTT.dropped++;
        return 0;
    }
    size_t first = b->size - wr;
    if (first > len)
        first = len;
    memcpy(b->buf + wr, buf, first);
    memcpy(b->buf, buf + first, len - first);
    wr += (uint32_t)len;
    if (wr >= b->size)
        wr -= b->size;
    __asm__ volatile("dmb" ::: "memory"); /* data visible before the host sees wr move */
    b->wr = wr;
    return len;
}

uint32_t rtt_dropped(void)
{
    return _SEGGER_RTT.dropped;
}
