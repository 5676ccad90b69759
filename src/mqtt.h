/*
 * mqtt.h — the MQTT sink: libmosquitto driven from the libev loop (no mosquitto thread).
 *
 * Publishes are accepted at any time. While connected they go to libmosquitto (which keeps
 * QoS 1/2 messages until PUBACK/PUBCOMP and resends them after a reconnect); while
 * disconnected they wait in a bounded FIFO (count and bytes; on overflow the oldest message is
 * dropped, counted and logged). The sink reconnects with exponential backoff + jitter
 * (1 s -> 60 s). A retained status topic (cfg.status_topic) carries "online" after connect and
 * the last will "offline"; mqtt_sink_close() publishes "offline" itself on a clean shutdown.
 *
 * Nothing here blocks the loop: connect is asynchronous, and the socket is serviced by ev_io
 * watchers (read always, write only while mosquitto_want_write()) plus a 1 s misc timer.
 * TCP_NODELAY is set on the socket (Nagle + delayed ACK add ~44 ms to a burst),
 * and TCP_QUICKACK is re-armed after every read, because a broker without set_tcp_nodelay
 * (mosquitto's default) otherwise holds the PUBACKs of a burst until our delayed ACK.
 * Limitation: libmosquitto resolves the host name with a blocking getaddrinfo() on each
 * connect attempt; use an IP address or a name in /etc/hosts where that matters.
 *
 * Ownership: mqtt_sink_new() returns an object owned by the caller (mqtt_sink_free()). All
 * strings in mqtt_config are copied. Payloads passed to mqtt_sink_publish() are copied.
 */
#ifndef IIOTGW_MQTT_H
#define IIOTGW_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "sink.h"

/*
 * Defaults of a zero field, stated once: the sink applies them and the config table
 * (config.c) shows them as the options' defaults. Plain literals, so that they can be
 * stringified.
 */
#define MQTT_DEFAULT_PORT            1883
#define MQTT_DEFAULT_PORT_TLS        8883
#define MQTT_DEFAULT_KEEPALIVE       30
#define MQTT_DEFAULT_QUEUE_MAX_MSGS  100000
#define MQTT_DEFAULT_QUEUE_MAX_BYTES 67108864 /* 64 MiB */
#define MQTT_DEFAULT_MAX_INFLIGHT    100
#define MQTT_DEFAULT_BACKOFF_BASE    1.0
#define MQTT_DEFAULT_BACKOFF_MAX     60.0

struct mqtt_config {
    const char *host;   /* required */
    int port;           /* default 1883 (8883 with tls) */
    bool tls;           /* mqtts:// */
    const char *cafile; /* TLS: CA bundle (NULL = system default) */
    const char *capath;
    const char *certfile; /* TLS client certificate (optional) */
    const char *keyfile;
    bool tls_insecure;         /* skip hostname verification (tests only) */
    const char *username;      /* optional */
    const char *password;      /* optional; never logged */
    const char *client_id;     /* default "iiotgw-<hostname>" */
    int protocol;              /* 3 = MQTT 3.1.1 (default), 5 = MQTT 5 */
    int keepalive;             /* seconds, default 30 */
    bool clean_session;        /* default true */
    unsigned session_expiry;   /* MQTT 5, seconds, with clean_session false */
    const char *status_topic;  /* retained "online"/"offline" + last will; NULL = none */
    size_t queue_max_msgs;     /* offline FIFO bound, default 100000 */
    size_t queue_max_bytes;    /* offline FIFO bound, default 64 MiB */
    unsigned max_inflight;     /* messages handed to libmosquitto and not yet acknowledged
                                  (QoS 0 until written), default 100; the rest wait in the FIFO */
    double backoff_base;       /* default 1 s */
    double backoff_max;        /* default 60 s */
    const char *replay_prefix; /* sink seam: replayed records go to <prefix>/<topic>; NULL =
                                  the original topic */
};

struct mqtt_stats {
    uint64_t published; /* handed to the broker */
    uint64_t acked;     /* PUBACK/PUBCOMP received (QoS 0: written to the socket) */
    uint64_t dropped;   /* dropped from the full offline FIFO */
    uint64_t reconnects;
    uint64_t connect_failures;
    size_t queued; /* waiting in the offline FIFO */
    size_t queued_bytes;
    size_t inflight; /* handed to libmosquitto, not yet acknowledged */
    bool connected;
};

/* Called for every message once acknowledged (QoS 0: once written). May be NULL. */
typedef void (*mqtt_ack_cb)(void *ud, uint64_t token);

/*
 * Inbound side (see mqtt_sink_set_inbound): `message` for every message the broker delivers on
 * a subscription (topic NUL-terminated, payload `len` bytes, valid only during the call);
 * `connected` after every successful CONNACK, once the subscriptions were sent. Both run
 * from inside libmosquitto's read: they may publish (the publish is handed over once
 * libmosquitto returned) and subscribe, but must not free or close the sink.
 */
struct mqtt_inbound {
    void (*message)(void *ud, const char *topic, const void *payload, size_t len, bool retained);
    void (*connected)(void *ud);
    void *ud;
};

struct mqtt_sink;

/*
 * Create the sink and start connecting. Returns 0, -EINVAL (bad config; err set), -ENOMEM.
 * A broker that is down is not an error: the sink keeps retrying. With protocol 5,
 * clean_session false and session_expiry > 0 the CONNECT carries the session expiry.
 */
int mqtt_sink_new(struct mqtt_sink **out, struct ev_loop *loop, const struct mqtt_config *cfg,
                  char *err, size_t errlen);

/*
 * Subscribe to `filter` (wildcards allowed) at `qos` 0..2, now if connected and again after
 * every reconnect (the session may be clean). Filters are remembered for the sink's life, a
 * filter given twice is kept once. Returns 0, -EINVAL (bad filter or qos) or -ENOMEM.
 */
int mqtt_sink_subscribe(struct mqtt_sink *m, const char *filter, int qos);

/* Set the inbound callbacks (copied; NULL clears them). */
void mqtt_sink_set_inbound(struct mqtt_sink *m, const struct mqtt_inbound *in);

/* Optional acknowledgement callback (used by the spool). */
/*
 * What mqtt_sink_new() would refuse, without connecting or keeping anything: the checks on
 * cfg and, with TLS, the library's own verdict on the CA, certificate and key files. For
 * --check. Returns 0, -EINVAL (err set), -ENOMEM.
 */
int mqtt_check_config(const struct mqtt_config *cfg, char *err, size_t errlen);

void mqtt_sink_set_ack_cb(struct mqtt_sink *m, mqtt_ack_cb cb, void *ud);

/*
 * Queue one message. `token` is an opaque caller value echoed to the ack callback (exactly
 * once per acknowledged message; messages dropped from the full FIFO are never acked). qos 0..2.
 * Returns 0, -EINVAL (bad topic/qos, a message larger than queue_max_bytes, or the sink is
 * closed), -ENOMEM. Never blocks. May be called from the ack callback.
 */
int mqtt_sink_publish(struct mqtt_sink *m, const char *topic, const void *payload, size_t len,
                      int qos, bool retain, uint64_t token);

/*
 * Request/response over MQTT 5. mqtt_sink_message_props(), called from the inbound `message`
 * callback, gives that message's response topic, correlation data and the requester's name
 * (user property "origin", else "client_id"); all empty with MQTT 3.1.1, outside the
 * callback, or when the publisher did not set them (a longer response topic or correlation
 * data is ignored). mqtt_sink_respond() publishes a reply at QoS 0, not retained, outside the
 * FIFO (a reply is only useful while the requester listens), with the correlation data when
 * given (MQTT 5); called from a callback it is sent once libmosquitto returned. Returns 0,
 * -EINVAL (bad topic, payload > 64 KiB), -ENOTCONN (dropped: not connected), -ENOBUFS (64
 * replies already waiting), -ENOMEM, -EIO.
 */
struct mqtt_message_props {
    bool has_response_topic;
    char response_topic[1024];
    unsigned char correlation[256];
    size_t correlation_len;
    char origin[128];
};
void mqtt_sink_message_props(const struct mqtt_sink *m, struct mqtt_message_props *out);
int mqtt_sink_respond(struct mqtt_sink *m, const char *topic, const void *payload, size_t len,
                      const void *corr, size_t corrlen);

/* Messages not yet acknowledged (queued + in flight). 0 means everything reached the broker. */
size_t mqtt_sink_pending(const struct mqtt_sink *m);

void mqtt_sink_get_stats(const struct mqtt_sink *m, struct mqtt_stats *out);

/*
 * Begin a clean shutdown: publish "offline" on the status topic, then disconnect once
 * nothing is pending or `timeout` seconds passed. `done` is called once when disconnected,
 * always from the loop (never from inside this call); it may call mqtt_sink_free().
 * A disconnected sink keeps reconnecting until the timeout while messages are pending.
 */
void mqtt_sink_close(struct mqtt_sink *m, double timeout, void (*done)(void *ud), void *ud);

/* Destroy the sink (messages still pending are lost). Safe at any time, including from the
 * ack and done callbacks; no callback is called after it. NULL is a no-op. */
void mqtt_sink_free(struct mqtt_sink *m);

/*
 * The sink seam (sink.h) over this sink: records are mqttrec.h messages, validated by
 * ops->check with the rules of mqtt_sink_publish; SINK_REPLAY drops retain and applies
 * cfg.replay_prefix. While seam callbacks are set they replace the mqtt_ack_cb. A NULL sink
 * gives a struct sink with ops NULL (disabled). ops->free is mqtt_sink_free.
 */
struct sink mqtt_sink_as_sink(struct mqtt_sink *m);

/*
 * Parse mqtt://[user[:pass]@]host[:port] or mqtts://... into cfg fields (host, port, tls,
 * username, password point into `storage`, which must outlive cfg). Returns 0 or -EINVAL.
 */
int mqtt_parse_url(const char *url, struct mqtt_config *cfg, char *storage, size_t storagelen,
                   char *err, size_t errlen);

#endif
