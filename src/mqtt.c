/*
 * mqtt.c — the MQTT sink: libmosquitto driven from the libev loop (no mosquitto thread).
 *
 * Why this shape: the gateway is single-threaded on libev, so libmosquitto's own thread
 * (mosquitto_loop_start) would force locking around every publish. Instead the sink owns the
 * socket plumbing: an ev_io for read (mosquitto_loop_read), an ev_io for write that is active
 * only while mosquitto_want_write() (mosquitto_loop_write), and a 1 s ev_timer for
 * mosquitto_loop_misc (keepalive, retries). Connects are asynchronous
 * (mosquitto_connect_async / mosquitto_reconnect_async) and retried with backoff.h.
 *
 * Message life cycle: mqtt_sink_publish() appends to our own bounded FIFO; mqtt_pump() hands FIFO
 * messages to libmosquitto while connected and fewer than max_inflight are unacknowledged;
 * a handed message sits in the inflight list (keyed by mid) until on_publish, which fires the
 * ack callback exactly once for its token. On a disconnect libmosquitto keeps QoS 1/2
 * messages and resends them after the next CONNACK (verified by tests/mqtt "restart");
 * QoS 0 packets it has not written yet are discarded by libmosquitto, so we put those back
 * at the head of our FIFO.
 *
 * Re-entrancy: libmosquitto calls our callbacks from inside loop_read/loop_write/publish,
 * and user callbacks (ack, done) may call mqtt_sink_publish/close/free. `depth` counts the
 * libmosquitto calls on the stack; mqtt_sink_free() inside one only marks the sink doomed and
 * the outermost caller destroys it once libmosquitto has returned.
 *
 * Ownership: see mqtt.h (the sink owns its messages, config copies and watchers).
 */
#include "mqtt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "backoff.h"
#include "log.h"
#include "mqttq.h"
#include "mqttrec.h"
#include "sink.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------------------------- */

#define MQTT_CONNECT_TIMEOUT 15.0 /* s: an attempt that got no CONNACK by then is abandoned */
#define MQTT_DROP_LOG_EVERY  10.0 /* s: rate limit of the queue overflow warning */
#define MQTT_REPLIES_MAX     64   /* replies waiting for libmosquitto to return; more dropped */

/* A reply (mqtt_sink_respond) waiting to be sent: topic, payload, correlation data. */
struct mqtt_reply {
    struct mqtt_reply *next;
    size_t tlen, len, corrlen; /* the bytes follow the struct, topic NUL-terminated */
};

enum mqtt_state {
    ST_WAIT,       /* not connected, retry timer armed (or about to be) */
    ST_CONNECTING, /* socket up or pending, waiting for CONNACK */
    ST_CONNECTED,
    ST_CLOSED, /* after close finished: never reconnect */
};

struct mqtt_sink {
    struct ev_loop *loop;
    struct mosquitto *mosq;
    struct mqtt_config cfg; /* strings point into owned copies below */
    char *strs[10];         /* owned copies of the cfg strings */
    bool v5;

    ev_io rio;
    ev_io wio;
    int io_fd; /* fd the io watchers are set to, -1 when stopped */
    ev_timer misc_timer;
    ev_timer retry_timer;
    ev_timer conn_timer;
    ev_timer close_timer;

    struct backoff bo;
    enum mqtt_state state;
    bool ever_connected;
    bool connect_started; /* mosquitto_connect_async done once (then reconnect_async) */

    struct mqttq fifo;     /* not yet handed to libmosquitto */
    struct mqttq inflight; /* handed, waiting for on_publish */
    int status_mid;        /* mid of the last status publish, or -1 */
    /* QoS 0: libmosquitto may write the packet and call on_publish inside mosquitto_publish,
     * before we know the mid; such an ack is noted here and delivered after the call. */
    struct mqtt_msg *publishing;
    bool publishing_acked;
    bool status_offline_sent;

    mqtt_ack_cb ack_cb;
    void *ack_ud;

    /* inbound: the remembered subscriptions (re-sent after every CONNACK) and callbacks */
    char **subs;
    int *sub_qos;
    size_t nsubs;
    struct mqtt_inbound in;
    struct sink_callbacks seam; /* set through the sink ops; wins over ack_cb */

    /* clean shutdown */
    bool closing;
    bool disconnect_sent;
    void (*done_cb)(void *ud);
    void *done_ud;

    /* re-entrancy guard: libmosquitto calls on the stack; free is deferred while > 0 */
    int depth;
    bool doomed;

    /*
     * Inside mosquitto_loop_read/write/misc libmosquitto may hold its own (non-recursive)
     * message mutexes while it runs our callbacks — e.g. on CONNACK it releases queued
     * messages with msgs_out locked and calls on_publish for QoS 0 ones. A mosquitto_publish
     * from there deadlocks. So while in_loop > 0, mqtt_pump() only notes that it has work
     * (pump_deferred) and mqtt_loop_call() runs it once libmosquitto has returned.
     */
    int in_loop;
    bool pump_deferred;

    /* MQTT 5 properties of the message being delivered (mqtt_sink_message_props), and the
     * replies (mqtt_sink_respond) made inside libmosquitto, sent once it returned. */
    const mosquitto_property *rx_props;
    struct mqtt_reply *replies, **replies_tail;
    size_t nreplies;

    /* overflow log rate limit */
    uint64_t dropped_logged;
    double drop_log_at;

    struct mqtt_stats st;
};

static void mqtt_sync_io(struct mqtt_sink *m);
static void mqtt_pump(struct mqtt_sink *m);
static int mqtt_loop_call(struct mqtt_sink *m, int (*fn)(struct mosquitto *, int), int arg);
static void mqtt_start_connect(struct mqtt_sink *m);
static void mqtt_destroy(struct mqtt_sink *m);
static void mqtt_send_replies(struct mqtt_sink *m);

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static void io_stop(struct mqtt_sink *m)
{
    ev_io_stop(m->loop, &m->rio);
    ev_io_stop(m->loop, &m->wio);
    m->io_fd = -1;
}

/* Every watcher off: the sink is closed or about to be freed. */
static void mqtt_stop_watchers(struct mqtt_sink *m)
{
    io_stop(m);
    ev_timer_stop(m->loop, &m->misc_timer);
    ev_timer_stop(m->loop, &m->retry_timer);
    ev_timer_stop(m->loop, &m->conn_timer);
    ev_timer_stop(m->loop, &m->close_timer);
}

/*
 * Make the io watchers match libmosquitto's socket: read always, write only while
 * mosquitto_want_write(). Called after every libmosquitto call that may change either.
 */
static void mqtt_sync_io(struct mqtt_sink *m)
{
    if (m->doomed || !m->mosq)
        return;
    int fd = mosquitto_socket(m->mosq);
    if (fd != m->io_fd) {
        io_stop(m);
        if (fd >= 0) {
            ev_io_set(&m->rio, fd, EV_READ);
            ev_io_set(&m->wio, fd, EV_WRITE);
            ev_io_start(m->loop, &m->rio);
            m->io_fd = fd;
        }
    }
    if (fd < 0)
        return;
    if (mosquitto_want_write(m->mosq))
        ev_io_start(m->loop, &m->wio);
    else
        ev_io_stop(m->loop, &m->wio);
}

/* Called when the outermost libmosquitto call returned: run a deferred free. Returns true
 * if the sink is gone. */
static bool leave(struct mqtt_sink *m)
{
    m->depth--;
    if (m->depth == 0 && m->doomed) {
        mqtt_destroy(m);
        return true;
    }
    return false;
}

/* Call the user's ack callback; it may free the sink. Returns true if the sink is gone. */
static bool call_ack(struct mqtt_sink *m, uint64_t token, uint64_t user)
{
    if ((!m->ack_cb && !m->seam.ack) || m->doomed)
        return false;
    m->depth++;
    if (m->seam.ack)
        m->seam.ack(m->seam.ud, token, user);
    else
        m->ack_cb(m->ack_ud, token);
    return leave(m);
}

static size_t pending_count(const struct mqtt_sink *m)
{
    return m->fifo.count + m->inflight.count;
}

static void log_drops(struct mqtt_sink *m, bool force)
{
    uint64_t n = m->st.dropped - m->dropped_logged;
    if (n == 0)
        return;
    double now = util_mono();
    if (!force && m->drop_log_at > 0 && now - m->drop_log_at < MQTT_DROP_LOG_EVERY)
        return;
    log_warn("mqtt_queue_overflow", "dropped=%llu dropped_total=%llu queued=%zu queued_bytes=%zu",
             (unsigned long long)n, (unsigned long long)m->st.dropped, m->fifo.count,
             m->fifo.bytes);
    m->dropped_logged = m->st.dropped;
    m->drop_log_at = now;
}

/* ------------------------------------------------------------------------------------------
 * Close / finish
 * ---------------------------------------------------------------------------------------- */

/* The close is complete: stop everything and call `done` once. */
static void finish_close(struct mqtt_sink *m)
{
    if (m->state == ST_CLOSED)
        return;
    log_drops(m, true);
    size_t lost = pending_count(m);
    if (lost)
        log_warn("mqtt_close_pending_lost", "pending=%zu", lost);
    m->state = ST_CLOSED;
    mqtt_stop_watchers(m);
    m->st.connected = false;
    log_info("mqtt_closed", "published=%llu acked=%llu dropped=%llu",
             (unsigned long long)m->st.published, (unsigned long long)m->st.acked,
             (unsigned long long)m->st.dropped);
    void (*done)(void *) = m->done_cb;
    m->done_cb = NULL;
    if (done && !m->doomed) {
        /* `done` may free the sink: callers return right after finish_close(). */
        m->depth++;
        done(m->done_ud);
        leave(m);
    }
}

/* Disconnect cleanly if everything is acknowledged (or `force`, on timeout). */
static void close_check(struct mqtt_sink *m, bool force)
{
    if (!m->closing || m->state == ST_CLOSED || m->doomed)
        return;
    bool status_busy = m->status_mid >= 0 && m->state == ST_CONNECTED;
    if (!force && (pending_count(m) > 0 || status_busy))
        return;
    if (m->state == ST_CONNECTED && !m->disconnect_sent) {
        m->disconnect_sent = true;
        m->depth++;
        /* Reason 0 = normal disconnection: the broker discards the will. */
        int rc = m->v5 ? mosquitto_disconnect_v5(m->mosq, 0, NULL) : mosquitto_disconnect(m->mosq);
        mqtt_sync_io(m);
        if (leave(m))
            return;
        if (rc == MOSQ_ERR_SUCCESS && m->state == ST_CONNECTED && m->io_fd >= 0) {
            /* on_disconnect finishes once DISCONNECT is written; bound that wait. */
            ev_timer_stop(m->loop, &m->close_timer);
            ev_timer_set(&m->close_timer, 1.0, 0.);
            ev_timer_start(m->loop, &m->close_timer);
            return;
        }
    }
    finish_close(m);
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mqtt_sink *m = container_of(w, struct mqtt_sink, close_timer);
    if (m->disconnect_sent) {
        finish_close(m);
        return;
    }
    close_check(m, true);
}

/* ------------------------------------------------------------------------------------------
 * Connection state changes
 * ---------------------------------------------------------------------------------------- */

static void mqtt_schedule_retry(struct mqtt_sink *m)
{
    if (m->state == ST_CLOSED || m->doomed)
        return;
    m->state = ST_WAIT;
    double delay = backoff_next(&m->bo, util_mono());
    ev_timer_stop(m->loop, &m->retry_timer);
    ev_timer_set(&m->retry_timer, delay, 0.);
    ev_timer_start(m->loop, &m->retry_timer);
    log_info("mqtt_reconnect_scheduled", "retry_in=%.2f attempt=%u", delay, m->bo.attempts);
}

/*
 * The connection (or the attempt) is gone. Idempotent: libmosquitto may report the same
 * loss through on_disconnect and through a return code.
 */
static void conn_lost(struct mqtt_sink *m, int rc)
{
    if (m->state != ST_CONNECTING && m->state != ST_CONNECTED)
        return;
    bool was_connected = m->state == ST_CONNECTED;
    io_stop(m);
    ev_timer_stop(m->loop, &m->conn_timer);
    m->st.connected = false;
    m->status_mid = -1;

    if (m->disconnect_sent) { /* the end of our own clean close */
        finish_close(m);
        return;
    }

    if (was_connected) {
        /* v5: a DISCONNECT from the broker reports its reason code (>= 0x80) instead. */
        log_warn("mqtt_disconnected", "rc=%d reason=\"%s\" inflight=%zu queued=%zu", rc,
                 m->v5 && rc >= 0x80 ? mosquitto_reason_string(rc) : mosquitto_strerror(rc),
                 m->inflight.count, m->fifo.count);
    } else {
        m->st.connect_failures++;
        log_warn("mqtt_connect_failed", "host=%s port=%d rc=%d reason=\"%s\"", log_q(m->cfg.host),
                 m->cfg.port, rc, mosquitto_strerror(rc));
    }

    /*
     * QoS 0 packets libmosquitto had not written are discarded by it on reconnect: give
     * them back to our FIFO, in order, ahead of everything not yet handed. QoS 1/2 stay in
     * libmosquitto, which resends them (DUP) after the next CONNACK.
     */
    struct mqtt_msg *msg = m->inflight.tail;
    while (msg) {
        struct mqtt_msg *prev = msg->prev;
        if (msg->qos == 0) {
            mqttq_unlink(&m->inflight, msg);
            mqttq_push_head(&m->fifo, msg);
        }
        msg = prev;
    }
    mqtt_schedule_retry(m);
}

static void mqtt_start_connect(struct mqtt_sink *m)
{
    if (m->state == ST_CLOSED || m->doomed)
        return;
    io_stop(m); /* reconnect closes the old socket; its fd number may come back */
    m->state = ST_CONNECTING;
    m->depth++;
    int rc;
    if (!m->connect_started) {
        rc = mosquitto_connect_async(m->mosq, m->cfg.host, m->cfg.port, m->cfg.keepalive);
        if (rc != MOSQ_ERR_INVAL && rc != MOSQ_ERR_NOMEM)
            m->connect_started = true; /* host/port are recorded: reconnect from now on */
    } else {
        rc = mosquitto_reconnect_async(m->mosq);
    }
    int err = errno;
    if (rc == MOSQ_ERR_SUCCESS)
        mqtt_sync_io(m);
    if (leave(m))
        return;
    if (rc != MOSQ_ERR_SUCCESS) {
        if (m->state == ST_CONNECTING) {
            if (rc == MOSQ_ERR_ERRNO)
                log_debug("mqtt_connect_errno", "errno=%d err=\"%s\"", err, strerror(err));
            conn_lost(m, rc);
        }
        return;
    }
    if (m->state == ST_CONNECTING) {
        ev_timer_stop(m->loop, &m->conn_timer);
        ev_timer_set(&m->conn_timer, MQTT_CONNECT_TIMEOUT, 0.);
        ev_timer_start(m->loop, &m->conn_timer);
    }
}

static void retry_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    mqtt_start_connect(container_of(w, struct mqtt_sink, retry_timer));
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mqtt_sink *m = container_of(w, struct mqtt_sink, conn_timer);
    if (m->state != ST_CONNECTING)
        return;
    log_warn("mqtt_connect_timeout", "host=%s port=%d after=%.0f", log_q(m->cfg.host), m->cfg.port,
             MQTT_CONNECT_TIMEOUT);
    /*
     * libmosquitto has no "abort connect" call; shutting the socket down makes the next
     * read fail, which closes it through libmosquitto's own error path.
     */
    int fd = mosquitto_socket(m->mosq);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    m->depth++;
    mqtt_loop_call(m, mosquitto_loop_read, 1);
    if (leave(m))
        return;
    conn_lost(m, MOSQ_ERR_CONN_LOST);
}

/* ------------------------------------------------------------------------------------------
 * libmosquitto callbacks
 * ---------------------------------------------------------------------------------------- */

static void mqtt_publish_status(struct mqtt_sink *m, const char *value)
{
    if (!m->cfg.status_topic || m->state != ST_CONNECTED)
        return;
    int mid = -1;
    int rc =
        mosquitto_publish(m->mosq, &mid, m->cfg.status_topic, (int)strlen(value), value, 1, true);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && rc != MOSQ_ERR_CONN_LOST &&
        rc != MOSQ_ERR_ERRNO) {
        log_warn("mqtt_status_failed", "topic=%s rc=%d reason=\"%s\"", log_q(m->cfg.status_topic),
                 rc, mosquitto_strerror(rc));
        return;
    }
    m->status_mid = mid;
}

/* Send one SUBSCRIBE; a failure is logged, the next CONNACK tries again. */
static void mqtt_send_subscribe(struct mqtt_sink *m, size_t i)
{
    int rc = mosquitto_subscribe(m->mosq, NULL, m->subs[i], m->sub_qos[i]);
    if (rc != MOSQ_ERR_SUCCESS)
        log_warn("mqtt_subscribe_failed", "filter=%s rc=%d reason=\"%s\"", m->subs[i], rc,
                 mosquitto_strerror(rc));
    else
        log_debug("mqtt_subscribed", "filter=%s qos=%d", m->subs[i], m->sub_qos[i]);
}

static void handle_connect(struct mqtt_sink *m, int rc, int flags)
{
    if (m->doomed || m->state == ST_CLOSED)
        return;
    ev_timer_stop(m->loop, &m->conn_timer);
    if (rc != 0) {
        /* Refused: libmosquitto closes the socket after this callback; on_disconnect or the
         * socket check in the caller turns that into a retry. */
        m->st.connect_failures++;
        log_error("mqtt_connect_refused", "host=%s port=%d rc=%d reason=\"%s\"", log_q(m->cfg.host),
                  m->cfg.port, rc,
                  m->v5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc));
        m->state = ST_WAIT; /* not CONNECTING: conn_lost must not count it twice */
        io_stop(m);
        mqtt_schedule_retry(m);
        return;
    }
    if (m->ever_connected)
        m->st.reconnects++;
    m->ever_connected = true;
    m->state = ST_CONNECTED;
    m->st.connected = true;
    backoff_success(&m->bo, util_mono());
    log_info("mqtt_connected",
             "host=%s port=%d client_id=%s protocol=%d session_present=%d "
             "inflight=%zu queued=%zu",
             log_q(m->cfg.host), m->cfg.port, log_q(m->cfg.client_id), m->v5 ? 5 : 3, flags & 1,
             m->inflight.count, m->fifo.count);
    mqtt_publish_status(m, m->closing ? "offline" : "online");
    /* A clean session forgets subscriptions: send every one after every CONNACK. */
    for (size_t i = 0; i < m->nsubs && !m->closing; i++)
        mqtt_send_subscribe(m, i);
    if (m->in.connected && !m->closing) {
        m->depth++;
        m->in.connected(m->in.ud);
        if (leave(m))
            return;
    }
    mqtt_pump(m);
    close_check(m, false);
}

static void handle_message(struct mqtt_sink *m, const struct mosquitto_message *msg)
{
    if (m->doomed || !m->in.message || !msg || !msg->topic)
        return;
    m->depth++;
    m->in.message(m->in.ud, msg->topic, msg->payload ? msg->payload : "",
                  msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, msg->retain);
    leave(m);
}

static void on_message_v3(struct mosquitto *mosq, void *ud, const struct mosquitto_message *msg)
{
    (void)mosq;
    handle_message(ud, msg);
}

static void on_message_v5(struct mosquitto *mosq, void *ud, const struct mosquitto_message *msg,
                          const mosquitto_property *props)
{
    (void)mosq;
    struct mqtt_sink *m = ud;
    m->rx_props = props;
    handle_message(ud, msg);
    m->rx_props = NULL;
}

static void on_connect_v3(struct mosquitto *mosq, void *ud, int rc, int flags)
{
    (void)mosq;
    handle_connect(ud, rc, flags);
}

static void on_connect_v5(struct mosquitto *mosq, void *ud, int rc, int flags,
                          const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    handle_connect(ud, rc, flags);
}

static void handle_disconnect(struct mqtt_sink *m, int rc)
{
    if (m->doomed)
        return;
    conn_lost(m, rc); /* no-op after a refused CONNACK: that already scheduled the retry */
}

static void on_disconnect_v3(struct mosquitto *mosq, void *ud, int rc)
{
    (void)mosq;
    handle_disconnect(ud, rc);
}

static void on_disconnect_v5(struct mosquitto *mosq, void *ud, int rc,
                             const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    handle_disconnect(ud, rc);
}

static void handle_publish(struct mqtt_sink *m, int mid, int reason)
{
    if (m->doomed)
        return;
    if (mid == m->status_mid) {
        m->status_mid = -1;
        close_check(m, false);
        return;
    }
    struct mqtt_msg *msg = mqttq_find(&m->inflight, mid);
    if (!msg) {
        /* Inside mosquitto_publish only QoS 0 writes call back: it is the message in hand. */
        if (m->publishing)
            m->publishing_acked = true;
        return; /* else e.g. a status message from an earlier connection */
    }
    if (reason >= 0x80) {
        /* v5 broker refused this message (e.g. not authorized). Resending cannot help. */
        log_warn("mqtt_publish_rejected", "topic=%s reason=%d reason_str=\"%s\"", log_q(msg->topic),
                 reason, mosquitto_reason_string(reason));
    }
    mqttq_unlink(&m->inflight, msg);
    m->st.acked++;
    uint64_t token = msg->token, user = msg->user;
    free(msg);
    if (call_ack(m, token, user) || m->doomed)
        return;
    mqtt_pump(m);
    close_check(m, false);
}

static void on_publish_v3(struct mosquitto *mosq, void *ud, int mid)
{
    (void)mosq;
    handle_publish(ud, mid, 0);
}

static void on_publish_v5(struct mosquitto *mosq, void *ud, int mid, int reason,
                          const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    handle_publish(ud, mid, reason);
}

/* ------------------------------------------------------------------------------------------
 * Publishing
 * ---------------------------------------------------------------------------------------- */

/* Hand FIFO messages to libmosquitto while connected and below max_inflight. */
static void mqtt_pump(struct mqtt_sink *m)
{
    if (m->in_loop) {
        m->pump_deferred = true; /* see in_loop */
        return;
    }
    while (m->state == ST_CONNECTED && !m->doomed && m->fifo.head &&
           m->inflight.count < m->cfg.max_inflight && !m->disconnect_sent) {
        struct mqtt_msg *msg = m->fifo.head;
        mqttq_unlink(&m->fifo, msg);
        int mid = -1;
        m->depth++;
        m->publishing = msg;
        m->publishing_acked = false;
        int rc = mosquitto_publish(m->mosq, &mid, msg->topic, (int)msg->len, msg->payload, msg->qos,
                                   msg->retain);
        m->publishing = NULL;
        if (leave(m)) {
            free(msg); /* mqtt_destroy() freed everything else */
            return;
        }
        if (m->publishing_acked) {
            /* QoS 0 written synchronously: acknowledged already. */
            m->st.published++;
            m->st.acked++;
            uint64_t token = msg->token, user = msg->user;
            free(msg);
            if (call_ack(m, token, user))
                return;
            continue;
        }
        if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST ||
            rc == MOSQ_ERR_ERRNO) {
            /*
             * A connection error here still means libmosquitto took the message (QoS>0 are
             * in its resend list; QoS 0 come back to us through conn_lost).
             */
            msg->mid = mid;
            mqttq_push_tail(&m->inflight, msg);
            m->st.published++;
            if (rc != MOSQ_ERR_SUCCESS) {
                log_debug("mqtt_publish_conn_error", "rc=%d", rc);
                break;
            }
        } else {
            m->st.dropped++;
            log_warn("mqtt_publish_failed", "topic=%s rc=%d reason=\"%s\"", log_q(msg->topic), rc,
                     mosquitto_strerror(rc));
            free(msg);
        }
    }
    /* A publish from inside a libmosquitto callback is only queued: re-arm write now. */
    mqtt_sync_io(m);
}

/*
 * Queue one validated message: topic = prefix (may be NULL) + '/' + topic[0, tlen). Copies
 * everything. Returns 0 or -ENOMEM.
 */
static int mqtt_enqueue(struct mqtt_sink *m, const char *prefix, const char *topic, size_t tlen,
                        const void *payload, size_t len, int qos, bool retain, uint64_t token,
                        uint64_t user)
{
    size_t plen = prefix ? strlen(prefix) + 1 : 0;
    size_t full = plen + tlen;
    struct mqtt_msg *msg = malloc(sizeof *msg + full + 1 + len + 1);
    if (!msg)
        return -ENOMEM;
    msg->token = token;
    msg->user = user;
    msg->mid = -1;
    msg->qos = qos;
    msg->retain = retain;
    msg->len = len;
    msg->topic = msg->data;
    if (prefix) {
        memcpy(msg->topic, prefix, plen - 1);
        msg->topic[plen - 1] = '/';
    }
    memcpy(msg->topic + plen, topic, tlen);
    msg->topic[full] = '\0';
    msg->payload = msg->data + full + 1;
    if (len)
        memcpy(msg->payload, payload, len);
    msg->payload[len] = '\0';

    /* Bounded FIFO: drop the oldest not-yet-handed messages to make room. */
    while (m->fifo.head && (m->fifo.count + 1 > m->cfg.queue_max_msgs ||
                            m->fifo.bytes + full + len > m->cfg.queue_max_bytes)) {
        struct mqtt_msg *old = m->fifo.head;
        mqttq_unlink(&m->fifo, old);
        free(old);
        m->st.dropped++;
    }
    mqttq_push_tail(&m->fifo, msg);
    log_drops(m, false);
    mqtt_pump(m);
    return 0;
}

int mqtt_sink_publish(struct mqtt_sink *m, const char *topic, const void *payload, size_t len,
                      int qos, bool retain, uint64_t token)
{
    if (!m || !topic || m->doomed || m->state == ST_CLOSED)
        return -EINVAL;
    struct mqtt_rec r = {.topic = topic,
                         .topic_len = strlen(topic),
                         .payload = payload,
                         .payload_len = len,
                         .qos = qos,
                         .retain = retain};
    if (mqtt_rec_check(&r, m->cfg.queue_max_bytes) < 0)
        return -EINVAL;
    return mqtt_enqueue(m, NULL, topic, r.topic_len, payload, len, qos, retain, token, 0);
}

/* ------------------------------------------------------------------------------------------
 * libev watchers
 * ---------------------------------------------------------------------------------------- */

/* After a loop_* call: a closed socket with no callback still has to become a retry. */
static void after_loop_call(struct mqtt_sink *m, int rc)
{
    if (m->doomed || m->state == ST_CLOSED)
        return;
    if (mosquitto_socket(m->mosq) < 0 && (m->state == ST_CONNECTING || m->state == ST_CONNECTED))
        conn_lost(m, rc ? rc : MOSQ_ERR_CONN_LOST);
    else
        mqtt_sync_io(m);
}

/*
 * The broker's socket has Nagle on unless its listener sets set_tcp_nodelay (mosquitto's
 * default is off): after its first PUBACK of a burst it holds the rest until our TCP ACK,
 * which Linux delays up to 40 ms when we have nothing to send back. Re-arming quick-ack
 * after every read sends that ACK at once (measured against a default mosquitto, 9 QoS1
 * messages every 10 ms: without it 7-16 % of bursts were not fully acked 10 ms later; with
 * it none). Linux clears the flag by itself, hence each read.
 */
static void quickack(int fd)
{
#ifdef TCP_QUICKACK
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#else
    (void)fd;
#endif
}

/*
 * Run one libmosquitto loop function with pumping deferred until it returned (see in_loop),
 * then do the deferred pump. The caller holds a depth reference. Returns the call's rc.
 */
static int mqtt_loop_call(struct mqtt_sink *m, int (*fn)(struct mosquitto *, int), int arg)
{
    m->in_loop++;
    int rc = fn ? fn(m->mosq, arg) : mosquitto_loop_misc(m->mosq);
    m->in_loop--;
    if (!m->in_loop && m->pump_deferred && !m->doomed) {
        m->pump_deferred = false;
        mqtt_pump(m);
    }
    if (!m->in_loop && m->replies && !m->doomed)
        mqtt_send_replies(m);
    return rc;
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mqtt_sink *m = container_of(w, struct mqtt_sink, rio);
    m->depth++;
    int rc = mqtt_loop_call(m, mosquitto_loop_read, 1);
    if (mosquitto_socket(m->mosq) >= 0)
        quickack(mosquitto_socket(m->mosq));
    /* Flush at once whatever the callbacks queued (acks -> new publishes, status). */
    if (rc == MOSQ_ERR_SUCCESS && !m->doomed && mosquitto_socket(m->mosq) >= 0 &&
        mosquitto_want_write(m->mosq))
        rc = mqtt_loop_call(m, mosquitto_loop_write, 1);
    if (leave(m))
        return;
    after_loop_call(m, rc);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mqtt_sink *m = container_of(w, struct mqtt_sink, wio);
    m->depth++;
    int rc = mqtt_loop_call(m, mosquitto_loop_write, 1);
    if (leave(m))
        return;
    after_loop_call(m, rc);
}

static void misc_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mqtt_sink *m = container_of(w, struct mqtt_sink, misc_timer);
    log_drops(m, false);
    if (m->state != ST_CONNECTING && m->state != ST_CONNECTED)
        return;
    m->depth++;
    int rc = mqtt_loop_call(m, NULL, 0);
    if (leave(m))
        return;
    after_loop_call(m, rc == MOSQ_ERR_NO_CONN ? MOSQ_ERR_CONN_LOST : rc);
}

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------------------------- */

static int dup_str(struct mqtt_sink *m, int slot, const char **field)
{
    if (!*field)
        return 0;
    m->strs[slot] = strdup(*field);
    if (!m->strs[slot])
        return -ENOMEM;
    *field = m->strs[slot];
    return 0;
}

/* The TLS options on a client: one function, so --check (mqtt_check_config) refuses exactly
 * what the sink would. */
static int tls_setup(struct mosquitto *mosq, const struct mqtt_config *c, char *err, size_t errlen)
{
    if (!c->cafile && !c->capath)
        mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    int rc = mosquitto_tls_set(mosq, c->cafile, c->capath, c->certfile, c->keyfile, NULL);
    if (rc) {
        snprintf(err, errlen, "tls: %s (cafile=%s capath=%s certfile=%s keyfile=%s)",
                 mosquitto_strerror(rc), c->cafile ? c->cafile : "-", c->capath ? c->capath : "-",
                 c->certfile ? c->certfile : "-", c->keyfile ? c->keyfile : "-");
        return -EINVAL;
    }
    if (c->tls_insecure)
        mosquitto_tls_insecure_set(mosq, true);
    return 0;
}

static int setup_mosq(struct mqtt_sink *m, char *err, size_t errlen)
{
    const struct mqtt_config *c = &m->cfg;
    int rc;
    m->mosq = mosquitto_new(c->client_id, c->clean_session, m);
    if (!m->mosq) {
        snprintf(err, errlen, "mosquitto_new failed: %s", strerror(errno));
        return errno == EINVAL ? -EINVAL : -ENOMEM;
    }
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         m->v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    /* libmosquitto's own window must not be the bottleneck of ours (+1 for the status). */
    int window = c->max_inflight + 1 > 65535 ? 65535 : (int)c->max_inflight + 1;
    mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, window);
    if (m->v5) {
        mosquitto_connect_v5_callback_set(m->mosq, on_connect_v5);
        mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect_v5);
        mosquitto_publish_v5_callback_set(m->mosq, on_publish_v5);
        mosquitto_message_v5_callback_set(m->mosq, on_message_v5);
    } else {
        mosquitto_connect_with_flags_callback_set(m->mosq, on_connect_v3);
        mosquitto_disconnect_callback_set(m->mosq, on_disconnect_v3);
        mosquitto_publish_callback_set(m->mosq, on_publish_v3);
        mosquitto_message_callback_set(m->mosq, on_message_v3);
    }
    if (c->username) {
        rc = mosquitto_username_pw_set(m->mosq, c->username, c->password);
        if (rc) {
            snprintf(err, errlen, "username: %s", mosquitto_strerror(rc));
            return -EINVAL;
        }
    }
    if (c->tls && (rc = tls_setup(m->mosq, c, err, errlen)))
        return rc;
    if (c->status_topic) {
        rc = m->v5 ? mosquitto_will_set_v5(m->mosq, c->status_topic, 7, "offline", 1, true, NULL)
                   : mosquitto_will_set(m->mosq, c->status_topic, 7, "offline", 1, true);
        if (rc) {
            snprintf(err, errlen, "status topic %s: %s", c->status_topic, mosquitto_strerror(rc));
            return -EINVAL;
        }
    }
    if (m->v5 && !c->clean_session && c->session_expiry > 0) {
        /*
         * There is no asynchronous connect that takes CONNECT properties. libmosquitto 2.0
         * stores the properties given to mosquitto_connect_bind_v5() before validating the
         * host, and every later (re)connect sends them. Calling it with host NULL stores the
         * session expiry without a blocking connect; it returns MOSQ_ERR_INVAL by design.
         */
        mosquitto_property *props = NULL;
        rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                          c->session_expiry);
        if (rc) {
            snprintf(err, errlen, "session expiry: %s", mosquitto_strerror(rc));
            return -ENOMEM;
        }
        mosquitto_connect_bind_v5(m->mosq, NULL, c->port, c->keepalive, NULL, props);
        mosquitto_property_free_all(&props);
    }
    return 0;
}

/* What mqtt_sink_new refuses before it creates anything (shared with mqtt_check_config). */
static int check_cfg(const struct mqtt_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->host || !cfg->host[0]) {
        snprintf(err, errlen, "mqtt: host is required");
        return -EINVAL;
    }
    if (cfg->protocol != 0 && cfg->protocol != 3 && cfg->protocol != 4 && cfg->protocol != 5) {
        snprintf(err, errlen, "mqtt: protocol must be 3 (3.1.1) or 5, got %d", cfg->protocol);
        return -EINVAL;
    }
    if (cfg->port < 0 || cfg->port > 65535 || cfg->keepalive < 0 || cfg->keepalive > 65535) {
        snprintf(err, errlen, "mqtt: port or keepalive out of range");
        return -EINVAL;
    }
    if ((cfg->certfile == NULL) != (cfg->keyfile == NULL)) {
        snprintf(err, errlen, "mqtt: certfile and keyfile must be given together");
        return -EINVAL;
    }
    if (cfg->password && !cfg->username) {
        snprintf(err, errlen, "mqtt: password given without username");
        return -EINVAL;
    }
    if (cfg->status_topic && mqtt_topic_check(cfg->status_topic, strlen(cfg->status_topic)) < 0) {
        snprintf(err, errlen, "mqtt: invalid status topic");
        return -EINVAL;
    }
    return 0;
}

int mqtt_check_config(const struct mqtt_config *cfg, char *err, size_t errlen)
{
    int rc = check_cfg(cfg, err, errlen);
    if (rc || !cfg->tls)
        return rc;
    /* The TLS files are checked by the library itself (mosquitto_tls_set opens the CA file
     * and directory), on a client that never connects. */
    mosquitto_lib_init();
    struct mosquitto *mosq = mosquitto_new(NULL, true, NULL);
    if (!mosq) {
        snprintf(err, errlen, "mosquitto_new failed: %s", strerror(errno));
        rc = -ENOMEM;
        goto out;
    }
    rc = tls_setup(mosq, cfg, err, errlen);
    mosquitto_destroy(mosq);
out:
    mosquitto_lib_cleanup();
    return rc;
}

int mqtt_sink_new(struct mqtt_sink **out, struct ev_loop *loop, const struct mqtt_config *cfg,
                  char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (!loop) {
        snprintf(err, errlen, "mqtt: no event loop");
        return -EINVAL;
    }
    int crc = check_cfg(cfg, err, errlen);
    if (crc)
        return crc;

    struct mqtt_sink *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "mqtt: out of memory");
        return -ENOMEM;
    }
    int rc = -ENOMEM;
    mosquitto_lib_init();
    m->loop = loop;
    m->cfg = *cfg;
    m->io_fd = -1;
    m->status_mid = -1;
    m->state = ST_WAIT;
    m->v5 = cfg->protocol == 5;

    /* Defaults. */
    struct mqtt_config *c = &m->cfg;
    if (!c->port)
        c->port = c->tls ? MQTT_DEFAULT_PORT_TLS : MQTT_DEFAULT_PORT;
    if (!c->keepalive)
        c->keepalive = MQTT_DEFAULT_KEEPALIVE;
    if (!c->queue_max_msgs)
        c->queue_max_msgs = MQTT_DEFAULT_QUEUE_MAX_MSGS;
    if (!c->queue_max_bytes)
        c->queue_max_bytes = MQTT_DEFAULT_QUEUE_MAX_BYTES;
    if (!c->max_inflight)
        c->max_inflight = MQTT_DEFAULT_MAX_INFLIGHT;
    if (c->backoff_base <= 0)
        c->backoff_base = MQTT_DEFAULT_BACKOFF_BASE;
    if (c->backoff_max <= 0)
        c->backoff_max = MQTT_DEFAULT_BACKOFF_MAX;
    char idbuf[96];
    if (!c->client_id) {
        char host[64];
        if (gethostname(host, sizeof host) != 0)
            util_strlcpy(host, "unknown", sizeof host);
        host[sizeof host - 1] = '\0';
        snprintf(idbuf, sizeof idbuf, "iiotgw-%s", host);
        c->client_id = idbuf;
    }

    if (dup_str(m, 0, &c->host) || dup_str(m, 1, &c->cafile) || dup_str(m, 2, &c->capath) ||
        dup_str(m, 3, &c->certfile) || dup_str(m, 4, &c->keyfile) || dup_str(m, 5, &c->username) ||
        dup_str(m, 6, &c->password) || dup_str(m, 7, &c->client_id) ||
        dup_str(m, 8, &c->status_topic) || dup_str(m, 9, &c->replay_prefix)) {
        snprintf(err, errlen, "mqtt: out of memory");
        goto fail;
    }
    rc = setup_mosq(m, err, errlen);
    if (rc)
        goto fail;

    backoff_init(&m->bo, c->backoff_base, c->backoff_max, 60.0);
    ev_io_init(&m->rio, rio_cb, 0, EV_READ);
    ev_io_init(&m->wio, wio_cb, 0, EV_WRITE);
    ev_timer_init(&m->misc_timer, misc_timer_cb, 1.0, 1.0);
    ev_timer_init(&m->retry_timer, retry_timer_cb, 0., 0.);
    ev_timer_init(&m->conn_timer, conn_timer_cb, 0., 0.);
    ev_timer_init(&m->close_timer, close_timer_cb, 0., 0.);
    ev_timer_start(loop, &m->misc_timer);

    log_info("mqtt_connecting", "host=%s port=%d tls=%d client_id=%s protocol=%d", log_q(c->host),
             c->port, c->tls ? 1 : 0, log_q(c->client_id), m->v5 ? 5 : 3);
    *out = m;
    mqtt_start_connect(m);
    return 0;

fail:
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    for (size_t i = 0; i < ARRAY_LEN(m->strs); i++)
        free(m->strs[i]);
    free(m);
    mosquitto_lib_cleanup();
    return rc;
}

int mqtt_sink_subscribe(struct mqtt_sink *m, const char *filter, int qos)
{
    if (!m || !filter || qos < 0 || qos > 2 || m->doomed)
        return -EINVAL;
    if (mosquitto_sub_topic_check(filter) != MOSQ_ERR_SUCCESS)
        return -EINVAL;
    for (size_t i = 0; i < m->nsubs; i++)
        if (strcmp(m->subs[i], filter) == 0)
            return 0;
    char **subs = realloc(m->subs, (m->nsubs + 1) * sizeof *subs);
    if (!subs)
        return -ENOMEM;
    m->subs = subs;
    int *q = realloc(m->sub_qos, (m->nsubs + 1) * sizeof *q);
    if (!q)
        return -ENOMEM;
    m->sub_qos = q;
    if (!(m->subs[m->nsubs] = strdup(filter)))
        return -ENOMEM;
    m->sub_qos[m->nsubs] = qos;
    m->nsubs++;
    if (m->state == ST_CONNECTED && !m->closing) {
        m->depth++;
        mqtt_send_subscribe(m, m->nsubs - 1);
        mqtt_sync_io(m);
        leave(m);
    }
    return 0;
}

void mqtt_sink_set_inbound(struct mqtt_sink *m, const struct mqtt_inbound *in)
{
    m->in = in ? *in : (struct mqtt_inbound){0};
}

void mqtt_sink_set_ack_cb(struct mqtt_sink *m, mqtt_ack_cb cb, void *ud)
{
    m->ack_cb = cb;
    m->ack_ud = ud;
}

/* ------------------------------------------------------------------------------------------
 * Request / response: MQTT 5 properties of a received message, replies
 * ---------------------------------------------------------------------------------------- */

void mqtt_sink_message_props(const struct mqtt_sink *m, struct mqtt_message_props *out)
{
    memset(out, 0, sizeof *out);
    const mosquitto_property *props = m->rx_props;
    if (!props)
        return;
    char *rt = NULL, *name = NULL, *value = NULL;
    void *corr = NULL;
    uint16_t corrlen = 0;
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &rt, false) && rt &&
        strlen(rt) < sizeof out->response_topic) {
        memcpy(out->response_topic, rt, strlen(rt) + 1);
        out->has_response_topic = true;
    }
    if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corrlen, false) &&
        corr && corrlen <= sizeof out->correlation) {
        memcpy(out->correlation, corr, corrlen);
        out->correlation_len = corrlen;
    }
    /* The first user property "origin" (else "client_id") names the requester. */
    bool skip = false;
    for (const mosquitto_property *p = props;
         (p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                  skip)) != NULL;
         skip = true) {
        bool is_origin = name && !strcmp(name, "origin");
        if ((is_origin || (name && !strcmp(name, "client_id") && !out->origin[0])) && value)
            util_strlcpy(out->origin, value, sizeof out->origin);
        free(name);
        free(value);
        name = value = NULL;
        if (is_origin)
            break;
    }
    free(rt);
    free(corr);
}

static int mqtt_reply_now(struct mqtt_sink *m, const char *topic, const void *payload, size_t len,
                          const void *corr, size_t corrlen)
{
    mosquitto_property *props = NULL;
    if (m->v5 && corrlen &&
        mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr,
                                      (uint16_t)corrlen) != MOSQ_ERR_SUCCESS)
        return -ENOMEM;
    int rc = m->v5 ? mosquitto_publish_v5(m->mosq, NULL, topic, (int)len, payload, 0, false, props)
                   : mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, 0, false);
    mosquitto_property_free_all(&props);
    return rc == MOSQ_ERR_SUCCESS ? 0 : -EIO;
}

static void mqtt_send_replies(struct mqtt_sink *m)
{
    m->depth++;
    while (m->replies && !m->doomed) {
        struct mqtt_reply *r = m->replies;
        m->replies = r->next;
        m->nreplies--;
        const char *t = (const char *)(r + 1);
        if (m->state == ST_CONNECTED)
            (void)mqtt_reply_now(m, t, t + r->tlen + 1, r->len, t + r->tlen + 1 + r->len,
                                 r->corrlen);
        free(r);
    }
    if (!m->replies)
        m->replies_tail = NULL;
    if (leave(m))
        return;
    mqtt_sync_io(m);
}

int mqtt_sink_respond(struct mqtt_sink *m, const char *topic, const void *payload, size_t len,
                      const void *corr, size_t corrlen)
{
    if (!topic || mqtt_topic_check(topic, strlen(topic)) < 0 || len > 65536 || corrlen > 65535)
        return -EINVAL;
    if (m->state != ST_CONNECTED || m->doomed || m->closing)
        return -ENOTCONN;
    if (!m->in_loop) {
        m->depth++;
        int rc = mqtt_reply_now(m, topic, payload, len, corr, corrlen);
        if (leave(m))
            return rc;
        mqtt_sync_io(m);
        return rc;
    }
    /* Inside libmosquitto (a message callback): publishing here could deadlock, see in_loop. */
    if (m->nreplies >= MQTT_REPLIES_MAX)
        return -ENOBUFS;
    size_t tlen = strlen(topic);
    struct mqtt_reply *r = malloc(sizeof *r + tlen + 1 + len + corrlen);
    if (!r)
        return -ENOMEM;
    *r = (struct mqtt_reply){.tlen = tlen, .len = len, .corrlen = corrlen};
    char *b = (char *)(r + 1);
    memcpy(b, topic, tlen + 1);
    if (len)
        memcpy(b + tlen + 1, payload, len);
    if (corrlen)
        memcpy(b + tlen + 1 + len, corr, corrlen);
    if (m->replies_tail)
        *m->replies_tail = r;
    else
        m->replies = r;
    m->replies_tail = &r->next;
    m->nreplies++;
    return 0;
}

size_t mqtt_sink_pending(const struct mqtt_sink *m)
{
    return pending_count(m);
}

void mqtt_sink_get_stats(const struct mqtt_sink *m, struct mqtt_stats *out)
{
    *out = m->st;
    out->queued = m->fifo.count;
    out->queued_bytes = m->fifo.bytes;
    out->inflight = m->inflight.count;
    out->connected = m->state == ST_CONNECTED;
}

void mqtt_sink_close(struct mqtt_sink *m, double timeout, void (*done)(void *ud), void *ud)
{
    if (m->closing || m->state == ST_CLOSED || m->doomed)
        return;
    m->closing = true;
    m->done_cb = done;
    m->done_ud = ud;
    log_info("mqtt_closing", "pending=%zu timeout=%.1f", pending_count(m), timeout);
    m->depth++;
    mqtt_publish_status(m, "offline");
    mqtt_sync_io(m);
    if (leave(m))
        return;
    /*
     * Always finish from the loop, never inside this call (`done` may free the caller).
     * With something pending, close_check runs on each ack (and a disconnected sink keeps
     * reconnecting) until the timeout forces the end.
     */
    bool busy = pending_count(m) > 0 || (m->state == ST_CONNECTED && m->status_mid >= 0);
    ev_timer_set(&m->close_timer, busy && timeout > 0 ? timeout : 0., 0.);
    ev_timer_start(m->loop, &m->close_timer);
}

static void mqtt_destroy(struct mqtt_sink *m)
{
    mqtt_stop_watchers(m);
    while (m->replies) {
        struct mqtt_reply *r = m->replies;
        m->replies = r->next;
        free(r);
    }
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    mqttq_free(&m->fifo);
    mqttq_free(&m->inflight);
    for (size_t i = 0; i < ARRAY_LEN(m->strs); i++)
        free(m->strs[i]);
    for (size_t i = 0; i < m->nsubs; i++)
        free(m->subs[i]);
    free(m->subs);
    free(m->sub_qos);
    free(m);
    mosquitto_lib_cleanup();
}

void mqtt_sink_free(struct mqtt_sink *m)
{
    if (!m)
        return;
    if (m->depth > 0) {
        /* Inside a libmosquitto call (a callback of ours called the user): defer. */
        m->doomed = true;
        m->ack_cb = NULL;
        m->seam = (struct sink_callbacks){0};
        m->done_cb = NULL;
        m->in = (struct mqtt_inbound){0};
        mqtt_stop_watchers(m);
        return;
    }
    mqtt_destroy(m);
}

/* ------------------------------------------------------------------------------------------
 * The sink seam (sink.h): records are mqttrec.h messages
 * ---------------------------------------------------------------------------------------- */

static int mqtt_op_check(const void *self, const void *rec, size_t len)
{
    const struct mqtt_sink *m = self;
    struct mqtt_rec r;
    if (mqtt_rec_decode(rec, len, &r) < 0)
        return -EINVAL;
    return mqtt_rec_check(&r, m->cfg.queue_max_bytes);
}

static int mqtt_op_submit(void *self, const void *rec, size_t len, unsigned flags, uint64_t token)
{
    struct mqtt_sink *m = self;
    struct mqtt_rec r;
    if (m->doomed || m->state == ST_CLOSED)
        return -EINVAL;
    if (mqtt_rec_decode(rec, len, &r) < 0)
        return -EINVAL;
    /* Replays go out without retain (a stale value must not become the retained one), under
     * replay_prefix when configured and the result is still a legal topic length. */
    bool replay = flags & SINK_REPLAY;
    const char *prefix =
        replay && m->cfg.replay_prefix && strlen(m->cfg.replay_prefix) + 1 + r.topic_len <= 65535
            ? m->cfg.replay_prefix
            : NULL;
    /* Checked by mqtt_op_check before it was spooled: no second validation here. */
    return mqtt_enqueue(m, prefix, r.topic, r.topic_len, r.payload, r.payload_len, r.qos,
                        r.retain && !replay, token, r.user);
}

static size_t mqtt_op_pending(const void *self)
{
    return pending_count(self);
}

static bool mqtt_op_healthy(const void *self)
{
    const struct mqtt_sink *m = self;
    return m->state == ST_CONNECTED;
}

static void mqtt_op_set_callbacks(void *self, const struct sink_callbacks *cb)
{
    struct mqtt_sink *m = self;
    m->seam = cb ? *cb : (struct sink_callbacks){0};
}

static void mqtt_op_close(void *self, double timeout, void (*done)(void *ud), void *ud)
{
    mqtt_sink_close(self, timeout, done, ud);
}

static void mqtt_op_stats(const void *self, struct sink_stats *st)
{
    struct mqtt_stats ms;
    mqtt_sink_get_stats(self, &ms);
    *st = (struct sink_stats){.up = ms.connected,
                              .pending = ms.queued + ms.inflight,
                              .queued = ms.queued,
                              .inflight = ms.inflight,
                              .acked = ms.acked,
                              .dropped = ms.dropped,
                              .reconnects = ms.reconnects};
}

static void mqtt_op_free(void *self)
{
    mqtt_sink_free(self);
}

static const struct sink_ops mqtt_sink_ops = {
    .name = "mqtt",
    .check = mqtt_op_check,
    .submit = mqtt_op_submit,
    .pending = mqtt_op_pending,
    .healthy = mqtt_op_healthy,
    .set_callbacks = mqtt_op_set_callbacks,
    .flush = NULL,
    .close = mqtt_op_close,
    .stats = mqtt_op_stats,
    .free = mqtt_op_free,
};

struct sink mqtt_sink_as_sink(struct mqtt_sink *m)
{
    return (struct sink){.ops = m ? &mqtt_sink_ops : NULL, .self = m};
}
