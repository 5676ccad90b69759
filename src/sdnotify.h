/*
 * sdnotify.h — telling the service manager how the daemon is doing (systemd Type=notify).
 *
 * READY=1 once sources, rules and sinks are set up, STOPPING=1 when shutdown begins, STATUS=
 * lines for `systemctl status`, and WATCHDOG=1 from a libev timer at half the interval the
 * manager asked for (WatchdogSec= -> $WATCHDOG_USEC). The keep-alive comes from a timer of
 * the one event loop, so it stops exactly when the loop stops turning: a rule, a library call
 * or anything else that blocks the loop makes systemd restart the service.
 *
 * Outside systemd ($NOTIFY_SOCKET unset) every call is a cheap no-op. The protocol itself is
 * libsystemd's sd_notify(3); nothing here speaks it by hand.
 *
 * Not re-entrant, loop thread only. The struct is embedded by its owner (struct gateway).
 */
#ifndef IIOTGW_SDNOTIFY_H
#define IIOTGW_SDNOTIFY_H

#include <stdbool.h>

#include <ev.h>

struct sdnotify {
    struct ev_loop *loop;
    ev_timer watchdog; /* WATCHDOG=1 every interval/2; inactive without a watchdog */
    double interval;   /* seconds, from sd_watchdog_enabled(); 0 = no watchdog */
    bool stopping;     /* STOPPING=1 sent: no more READY */
};

/*
 * Read the watchdog interval and start the keep-alive timer when there is one. Always returns 0: a
 * service manager that is absent or does not answer is not an error for the gateway.
 */
int sdnotify_start(struct sdnotify *n, struct ev_loop *loop);

/* READY=1 with a STATUS= line (status may be NULL). */
void sdnotify_ready(struct sdnotify *n, const char *status);

/* STOPPING=1 with a STATUS= line (status may be NULL); sent once, later calls are no-ops. */
void sdnotify_stopping(struct sdnotify *n, const char *status);

/* A STATUS= line alone. */
void sdnotify_status(struct sdnotify *n, const char *status);

/* Stop the keep-alive timer. Safe on a zeroed or already stopped struct. */
void sdnotify_stop(struct sdnotify *n);

#endif
