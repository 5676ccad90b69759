/*
 * watch.h — `iiotgw watch`: a live console for the person on site, built from what a running
 * gateway publishes (no access to the gateway process itself is needed, only to its broker).
 *
 *   iiotgw watch [-c FILE] [--mqtt URL] [--prefix P]
 *
 * It subscribes to <prefix>/# (and to the gateway's Home Assistant discovery messages, when it
 * publishes them, to learn which node a topic belongs to: signal/rssi is node2's in the
 * default rule) and shows, per node, the last value of every metric with its
 * age and update rate (RSSI/SNR and the packet/CRC counters of the default rule among them,
 * counters also as a rate), the alerts firing, the gateway's status, rule state and last
 * reload, its packet and error rates (from the stats topic) and the tunable params with their
 * values (the retained <prefix>/gateway/params document).
 *
 * On a terminal it is a full-screen ncurses view redrawn as messages arrive (and every second
 * for the ages); `q` quits. When stdout is not a terminal it prints one line per message
 * instead (for logs and scripts). SIGINT, SIGTERM and SIGHUP end it too; the terminal is
 * restored on every exit path.
 *
 * Exit status: 0 after `q` or a signal, 1 on a usage or configuration error, 3 when the
 * terminal or the event loop cannot be set up.
 */
#ifndef IIOTGW_WATCH_H
#define IIOTGW_WATCH_H

/* argv[0] is "watch". Returns the exit status. */
int watch_main(int argc, char **argv);

#endif
