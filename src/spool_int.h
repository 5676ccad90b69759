/*
 * spool_int.h — what the spool's files share (spool.c: runtime; spool_format.c: the on-disk
 * record format and CRC-32C; spool_recover.c: recovery at open). Not part of the API: only
 * those three files include it. See spool.h for the contract and docs/reliability.md for the
 * format.
 */
#ifndef IIOTGW_SPOOL_INT_H
#define IIOTGW_SPOOL_INT_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spool.h"

/* ----------------------------------------------------------------------------------------- */
/* On-disk format                                                                            */
/* ----------------------------------------------------------------------------------------- */

/*
 * Record header, 32 bytes, little endian:
 *    0 u32 magic  "ISPL"
 *    4 u32 crc    CRC-32C over header bytes 8..31 and the payload
 *    8 u32 len    payload bytes
 *   12 u8  sinks  bitmask of sinks that need the record
 *   13 u8  flags  SPOOL_F_*
 *   14 u16 0      reserved (must be 0: part of validation)
 *   16 u64 seq
 *   24 i64 wall   CLOCK_REALTIME ns at append
 * The magic lets recovery resynchronise after damage; the CRC covering the header fields
 * means a flipped length or sequence number is detected like a flipped payload byte.
 */
#define REC_MAGIC     0x4c505349u /* "ISPL" read as little endian */
#define HDR           32u
#define STATE_MAGIC   0x53505349u /* "ISPS" */
#define STATE_VERSION 1u
#define STATE_SIZE    96u
#define STATE_NAME    "spool.state"
#define STATE_TMP     "spool.state.tmp"
#define LOCK_NAME     "spool.lock"
#define SEG_NAME_LEN  26 /* "spool-" + 16 hex + ".seg" */

struct hdr {
    uint32_t crc;
    uint32_t len;
    unsigned sinks;
    unsigned flags;
    uint64_t seq;
    int64_t wall;
};

static inline void put16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}
static inline void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}
static inline void put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}
static inline uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}
static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}
static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* ----------------------------------------------------------------------------------------- */
/* Data structures                                                                           */
/* ----------------------------------------------------------------------------------------- */

struct seg {
    uint64_t name;      /* sequence number in the file name (first seq when created) */
    uint64_t first_seq; /* 0 while empty */
    uint64_t last_seq;
    uint64_t bytes; /* valid bytes, including the write buffer for the active segment */
    uint64_t nrec;
    uint64_t nalert;
    bool damaged; /* recovery or a read found damage (count it once) */
};

/*
 * Ring of bits, one per sequence number from `wseq` on: 1 = done for this sink (acked,
 * not tagged for it, or vanished). Words are popped as the committed cursor passes them.
 */
struct bitwin {
    uint64_t *w;
    size_t cap; /* words, power of two */
    size_t head;
    size_t n;
    uint64_t wseq; /* seq of bit 0 of w[head], multiple of 64 */
};

/* A positioned reader with a chunk cache over one segment file. */
struct reader {
    int fd;
    uint64_t fd_name;
    uint8_t *buf;
    size_t cap;
    uint64_t bname; /* segment the chunk belongs to (UINT64_MAX = none) */
    uint64_t boff;
    size_t blen;
};

struct cursor {
    uint64_t base;         /* committed: lowest seq not yet done */
    uint64_t hi;           /* every seq < hi has been read (classified) at least once */
    uint64_t pending;      /* records tagged for this sink not yet acked */
    uint64_t replay_below; /* records re-read below this seq are re-deliveries */
    struct bitwin bits;
    size_t seg;   /* read position: index into segs ... */
    uint64_t off; /* ... and byte offset */
    struct reader rd;
    /* where the oldest pending record was last found (spool_stats) */
    uint64_t age_name, age_off;
};

struct spool {
    struct spool_config cfg;
    int dirfd;
    int lockfd;
    struct seg *segs;
    size_t nsegs, segcap;
    int afd;          /* active segment (segs[nsegs-1]), O_APPEND; -1 if none */
    uint64_t flushed; /* active segment bytes already written to the file */
    bool tail_dirty;  /* a failed write left bytes past `flushed` we could not cut */
    uint8_t *wbuf;
    size_t wlen, wcap;
    uint64_t next_seq;
    uint64_t open_seq; /* next_seq at open: older records are replays */
    uint64_t total;    /* bytes in all segments incl. wbuf */
    uint64_t unsynced; /* bytes written since the last fdatasync */
    bool need_dirsync;
    int degraded;
    double retry_at;
    double state_at;
    bool state_dirty;
    uint64_t state_next_seq; /* next_seq recorded in the last state file written */
    struct spool_stats st;   /* counters (derived fields are filled in spool_stats) */
    struct cursor cur[SPOOL_MAX_SINKS];
    struct reader age_rd;
    uint8_t *scratch;
    size_t scratch_cap;
};

/* ----------------------------------------------------------------------------------------- */
/* Shared helpers                                                                            */
/* ----------------------------------------------------------------------------------------- */

/* spool_format.c: record header codec and validation, segment file names. */
void spool_hdr_encode(uint8_t *h, uint32_t len, unsigned sinks, unsigned flags, uint64_t seq,
                      int64_t wall);
void spool_hdr_decode(const uint8_t *h, struct hdr *o);
/* A complete, intact record at b[off] with seq > min_seq? Fills *out (may be NULL). */
bool spool_rec_valid_at(const uint8_t *b, size_t len, size_t off, uint64_t min_seq,
                        struct hdr *out);
/* Offset of the first valid record at or after `from`, or `len` if there is none. */
size_t spool_find_valid(const uint8_t *b, size_t len, size_t from, uint64_t min_seq);
void spool_seg_name(char *out, size_t outlen, uint64_t name);

/* spool.c */
int spool_grow(uint8_t **p, size_t *cap, size_t need);
int spool_read_full(int fd, void *buf, size_t len, uint64_t off, size_t *got);
int spool_segs_reserve(struct spool *sp);
bool spool_do_fsync(const struct spool *sp);

/*
 * spool_recover.c: read the state file, scan and repair every segment, set the cursors and
 * next_seq (in rep->next_seq too). sp->dirfd and sp->cfg are set; the active segment is not
 * created yet. Returns 0 or -ENOMEM (damage is never an error).
 */
int spool_recover(struct spool *sp, struct spool_report *rep);

#endif
