/*
 * dryrun.h — `--dry-run` as a sink: a printer that takes the place of both sinks and writes
 * to a stream what the gateway would publish and write, with no network at all:
 *
 *   # <source>:<line> rx_ns=<ns>         before the outputs of a packet (always printed)
 *   # <source>:<line> (text)             before the outputs of a text line (only if any)
 *   # tick                               before the outputs of on_tick (only if any)
 *   PUBLISH <topic> qos=<q> retain=<0|1> <payload>
 *   WRITE <line protocol>
 *   DEADLETTER <record JSON>             the gateway's dead-letter message
 *   # stats / WRITE <line>               the gateway's stats point
 *
 * The gateway's other own messages (status, stats JSON, rule status) are not printed.
 * Records are accepted as they come (a rule's publish is printed even where the MQTT sink
 * would refuse it) and never acknowledged.
 *
 * Ownership: dryrun_new() returns one printer with two faces (dryrun_sink); each face's
 * ops->free drops one reference and the printer is freed (and the stream flushed, not
 * closed) with the last. The stream is borrowed.
 */
#ifndef IIOTGW_DRYRUN_H
#define IIOTGW_DRYRUN_H

#include <stdbool.h>
#include <stdio.h>

#include "forward.h"
#include "sink.h"

struct dryrun;

/* `deadletter_topic`: the gateway's own messages on it print as DEADLETTER. Copied.
 * Returns 0 or -ENOMEM. */
int dryrun_new(struct dryrun **out, FILE *f, const char *deadletter_topic);

/* The face that replaces the sink of `dest`. */
struct sink dryrun_sink(struct dryrun *dr, enum forward_dest dest);

/*
 * Set the header of what comes next (NULL: none). It is printed before the first output that
 * follows, or at once when `now`. Copied.
 */
void dryrun_header(struct dryrun *dr, const char *header, bool now);

#endif
