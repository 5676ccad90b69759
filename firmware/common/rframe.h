/*
 * rframe.h — the node 1 <-> node 2 radio frame (binary, big-endian, CRC-16/CCITT-FALSE).
 *
 * Layout (docs/radio-protocol.md has the byte table and test vectors):
 *
 *   0  version  (RFRAME_VERSION)
 *   1  type     (RFRAME_DATA / RFRAME_ACK / RFRAME_NACK)
 *   2  src      sender's RYLR998 address
 *   3  seq      uint16, the DATA frame's sequence number (ACK/NACK echo it)
 *   DATA only:
 *   5  flags    bit0 temperature missing, bit1 humidity missing, bit2 gas missing
 *   6  t_x100   int16   °C × 100
 *   8  h_x100   uint16  %RH × 100
 *   10 gas      uint32  ohms
 *   last 2      CRC-16/CCITT-FALSE over all preceding bytes
 *
 * DATA is 16 bytes, ACK/NACK 7 bytes. A missing sensor's field is sent as 0 and flagged.
 * Pure module: no allocation, no I/O.
 */
#ifndef FW_RFRAME_H
#define FW_RFRAME_H

#include <stddef.h>
#include <stdint.h>

#define RFRAME_VERSION  1
#define RFRAME_DATA_LEN 16
#define RFRAME_ACK_LEN  7
#define RFRAME_MAX_LEN  RFRAME_DATA_LEN

enum rframe_type { RFRAME_DATA = 1, RFRAME_ACK = 2, RFRAME_NACK = 3 };

#define RFRAME_NO_TEMP 0x01u
#define RFRAME_NO_HUM  0x02u
#define RFRAME_NO_GAS  0x04u

struct rframe {
    uint8_t type; /* enum rframe_type */
    uint8_t src;
    uint16_t seq;
    /* DATA payload */
    uint8_t flags;
    int16_t t_x100;
    uint16_t h_x100;
    uint32_t gas;
};

/*
 * Encode f into buf. Returns the frame length (16 or 7), or -ENOSPC if len is too small,
 * -EINVAL for an unknown type.
 */
int rframe_encode(const struct rframe *f, uint8_t *buf, size_t len);

/*
 * Decode buf[0..len) into f. Returns 0, -EBADMSG on a CRC mismatch (f->type/src/seq are still
 * filled best-effort so the receiver can NACK), -EPROTO for a wrong version/type/length.
 */
int rframe_decode(const uint8_t *buf, size_t len, struct rframe *f);

#endif
