/*
 * rtt.h — a minimal SEGGER RTT implementation: one up-channel (target -> host), "Terminal".
 *
 * The control block layout is SEGGER's (and what probe-rs, OpenOCD and J-Link look for):
 *   char id[16] = "SEGGER RTT"; int max_up; int max_down; up buffers[]; down buffers[];
 *   buffer = { const char *name; char *buf; unsigned size; unsigned wr; unsigned rd; unsigned
 * flags; } The host finds it by scanning RAM for the id string (or via the _SEGGER_RTT ELF symbol)
 * and reads bytes between rd and wr, advancing rd. We never block: a write that does not fit in the
 * free space is dropped whole (SEGGER's NO_BLOCK_SKIP mode) so lines are never cut short — the
 * prototype's truncated-line problem — and a missing probe cannot stall the firmware.
 */
#ifndef FW_RTT_H
#define FW_RTT_H

#include <stddef.h>
#include <stdint.h>

#define RTT_UP_SIZE 1024

void rtt_init(void);
/* Write len bytes to up-channel 0; returns len, or 0 if it did not fit (dropped). */
size_t rtt_write(const char *buf, size_t len);
/* Lines dropped because the host was not reading fast enough (or not attached). */
uint32_t rtt_dropped(void);

#endif
