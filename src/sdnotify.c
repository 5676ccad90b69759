/*
 * sdnotify.c — READY/STOPPING/STATUS/WATCHDOG notifications through libsystemd's sd_notify().
 * See sdnotify.h.
 *
 * Why libsystemd rather than a datagram written by hand: it handles abstract sockets,
 * WATCHDOG_PID, credentials and future protocol details, and Debian ships it everywhere
 * systemd runs.
 */
#include "sdnotify.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "util.h"

/* Send "HEAD\nSTATUS=status" (or HEAD alone). sd_notify() returns 0 when $NOTIFY_SOCKET is
 * unset, > 0 when sent, < 0 on an error, which is logged at debug level only: the manager is
 * outside the gateway's promises, and a failing socket must not flood the log. */
static void sdnotify_send(const char *head, const char *status)
{
    char msg[512];
    if (status && *status)
        snprintf(msg, sizeof msg, "%s%sSTATUS=%s", head ? head : "", head ? "\n" : "", status);
    else
        snprintf(msg, sizeof msg, "%s", head ? head : "");
    int rc = sd_notify(0, msg);
    if (rc < 0)
        log_debug("sd_notify_failed", "rc=%d error=\"%s\"", rc, strerror(-rc));
}

static void sdnotify_on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    (void)w;
    /* Reaching this callback is the health check: the loop is turning. */
    sdnotify_send("WATCHDOG=1", NULL);
}

int sdnotify_start(struct sdnotify *n, struct ev_loop *loop)
{
    memset(n, 0, sizeof *n);
    n->loop = loop;
    ev_init(&n->watchdog, sdnotify_on_watchdog);
    uint64_t usec = 0;
    /* > 0: a watchdog is expected from this process (it checks WATCHDOG_PID too). */
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        n->interval = (double)usec / 1e6;
        /* Half the interval, as sd_watchdog_enabled(3) advises; a floor keeps an absurd
         * WatchdogSec= from turning the loop into a busy loop. */
        n->watchdog.repeat = n->interval / 2 > 0.001 ? n->interval / 2 : 0.001;
        ev_timer_again(loop, &n->watchdog);
        log_info("watchdog", "interval=%.3f keepalive=%.3f", n->interval, n->watchdog.repeat);
    }
    return 0;
}

void sdnotify_ready(struct sdnotify *n, const char *status)
{
    if (n->stopping)
        return;
    sdnotify_send("READY=1", status);
}

void sdnotify_stopping(struct sdnotify *n, const char *status)
{
    if (n->stopping)
        return;
    n->stopping = true;
    sdnotify_send("STOPPING=1", status);
}

void sdnotify_status(struct sdnotify *n, const char *status)
{
    (void)n;
    sdnotify_send(NULL, status);
}

void sdnotify_stop(struct sdnotify *n)
{
    if (!n->loop || !ev_is_active(&n->watchdog))
        return;
    ev_timer_stop(n->loop, &n->watchdog);
}
