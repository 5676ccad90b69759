/*
 * test_mqtt_live.c — the MQTT sink against real mosquitto brokers, one scenario per run:
 *
 *   basic       9 QoS1 brief messages (+ QoS 0/2), payloads/QoS/retain seen by a real
 *               subscriber, late subscriber gets the retained ones, status online -> offline
 *   will        a child process running the sink is SIGKILLed: the broker publishes the will
 *   v5          the same publish check with MQTT 5 (+ clean_session false + session expiry)
 *   start_down  broker down at start: messages queue, then arrive in order once it is up
 *   overflow    offline FIFO bounded by count and bytes: oldest dropped and counted
 *   restart     broker SIGSTOPped (so messages are in flight, unacknowledged), SIGKILLed and
 *               restarted mid-stream: every token acked once, nothing acked is lost, the
 *               in-flight ones arrive after the reconnect (duplicates counted)
 *   auth        password file: right password works; wrong one is refused, retried, no crash
 *   tls         CA + server certificate made with openssl at test time; a wrong CA fails
 *
 * Shared-broker scenarios use IIOTGW_TEST_MQTT_PORT (exit 77 when unset); the others start a
 * private `mosquitto -c conf` on a free port (exit 77 when mosquitto/openssl are missing).
 * The subscriber is a plain libmosquitto client on its own thread. Every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <mosquitto.h>

#include "log.h"
#include "mqtt.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------
 * Test context and failure handling
 * ---------------------------------------------------------------------------------------- */

#define MAXB       4
#define MAX_TOKENS 512

struct broker {
    pid_t pid;
    int port;
    int tls_port;
    char conf[256];
    char log[256];
};

struct t {
    struct ev_loop *loop;
    const char *host;
    int shared_port;
    char dir[64];    /* private temp dir */
    char prefix[96]; /* unique topic prefix */
    struct broker brokers[MAXB];
    int nbrokers;
    unsigned acks[MAX_TOKENS]; /* ack count per token */
    unsigned nacks;
    bool done;
    /* re-entrancy checks driven from on_ack (see scenario_basic) */
    struct mqtt_sink *cb_sink;
    char cb_topic[160];
    double cb_at;
    /* peak of stats.inflight, sampled on every loop iteration */
    struct mqtt_sink *sampled;
    size_t peak_inflight;
    ev_check sampler;
};

static void cleanup(struct t *t)
{
    for (int i = 0; i < t->nbrokers; i++) {
        if (t->brokers[i].pid > 0) {
            kill(t->brokers[i].pid, SIGKILL);
            waitpid(t->brokers[i].pid, NULL, 0);
            t->brokers[i].pid = 0;
        }
    }
    if (t->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", t->dir);
        t->dir[0] = '\0';
    }
}

#define CHECK(t, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            cleanup(t);                                                                            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void on_ack(void *ud, uint64_t token)
{
    struct t *t = ud;
    if (token < MAX_TOKENS)
        t->acks[token]++;
    t->nacks++;
    /* Token 400: publish from inside the ack callback (libmosquitto only queues it). */
    if (token == 400 && t->cb_sink) {
        t->cb_at = util_mono();
        if (mqtt_sink_publish(t->cb_sink, t->cb_topic, "from-cb", 7, 1, false, 401) != 0)
            t->acks[402]++; /* flags the failure */
    }
    /* Token 410: free the sink from inside the ack callback, with messages still pending. */
    if (token == 410 && t->cb_sink) {
        mqtt_sink_free(t->cb_sink);
        t->cb_sink = NULL;
    }
}

static void on_done_free(void *ud)
{
    struct t *t = ud;
    t->done = true;
    mqtt_sink_free(t->cb_sink); /* freeing from the done callback must be safe */
    t->cb_sink = NULL;
}

static void sampler_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    struct t *t = container_of(w, struct t, sampler);
    if (!t->sampled)
        return;
    struct mqtt_stats st;
    mqtt_sink_get_stats(t->sampled, &st);
    if (st.inflight > t->peak_inflight)
        t->peak_inflight = st.inflight;
}

static void on_done(void *ud)
{
    ((struct t *)ud)->done = true;
}

/* ------------------------------------------------------------------------------------------
 * Loop driving: run the loop until a predicate holds or a deadline passes
 * ---------------------------------------------------------------------------------------- */

typedef bool (*pred_fn)(struct t *t, void *arg);

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static bool run_until(struct t *t, pred_fn p, void *arg, double timeout)
{
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.005, 0.005);
    ev_timer_start(t->loop, &tick);
    double end = util_mono() + timeout;
    bool ok;
    while (!(ok = p(t, arg)) && util_mono() < end)
        ev_run(t->loop, EVRUN_ONCE);
    ev_timer_stop(t->loop, &tick);
    return ok;
}

static void run_for(struct t *t, double secs)
{
    double end = util_mono() + secs;
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.005, 0.005);
    ev_timer_start(t->loop, &tick);
    while (util_mono() < end)
        ev_run(t->loop, EVRUN_ONCE);
    ev_timer_stop(t->loop, &tick);
}

static bool p_connected(struct t *t, void *arg)
{
    (void)t;
    struct mqtt_stats st;
    mqtt_sink_get_stats(arg, &st);
    return st.connected;
}

static bool p_idle(struct t *t, void *arg)
{
    (void)t;
    return mqtt_sink_pending(arg) == 0;
}

static bool p_done(struct t *t, void *arg)
{
    (void)arg;
    return t->done;
}

/* ------------------------------------------------------------------------------------------
 * Private brokers
 * ---------------------------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void make_dir(struct t *t)
{
    if (t->dir[0])
        return;
    util_strlcpy(t->dir, "/tmp/iiotgw-mqtt-XXXXXX", sizeof t->dir);
    CHECK(t, mkdtemp(t->dir) != NULL, "mkdtemp: %s", strerror(errno));
}

/* Write the config of broker `b` (listener lines + `extra`) and remember it. */
static struct broker *broker_conf(struct t *t, const char *extra)
{
    make_dir(t);
    CHECK(t, t->nbrokers < MAXB, "too many brokers");
    struct broker *b = &t->brokers[t->nbrokers++];
    memset(b, 0, sizeof *b);
    b->port = free_port();
    CHECK(t, b->port > 0, "no free port");
    snprintf(b->conf, sizeof b->conf, "%s/b%d.conf", t->dir, t->nbrokers);
    snprintf(b->log, sizeof b->log, "%s/b%d.log", t->dir, t->nbrokers);
    FILE *f = fopen(b->conf, "w");
    CHECK(t, f, "fopen %s", b->conf);
    /* As root mosquitto would switch to user "mosquitto", who cannot read our 0700 dir. */
    if (geteuid() == 0)
        fprintf(f, "user root\n");
    fprintf(f,
            "per_listener_settings false\npersistence false\nlog_type all\n"
            "listener %d 127.0.0.1\n%s\n",
            b->port, extra ? extra : "allow_anonymous true\n");
    fclose(f);
    return b;
}

static void broker_start(struct t *t, struct broker *b)
{
    pid_t pid = fork();
    CHECK(t, pid >= 0, "fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("mosquitto", "mosquitto", "-c", b->conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    double end = util_mono() + 5;
    while (util_mono() < end) {
        if (port_open(b->port) && (!b->tls_port || port_open(b->tls_port)))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            b->pid = 0;
            char cmd[600];
            snprintf(cmd, sizeof cmd, "cat '%s' '%s' >&2", b->conf, b->log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no broker log)\n");
            CHECK(t, false, "mosquitto exited at start");
        }
        usleep(10000);
    }
    CHECK(t, false, "mosquitto did not listen within 5 s, see %s", b->log);
}

static void broker_kill(struct broker *b, int sig)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, sig);
    if (sig == SIGKILL || sig == SIGTERM) {
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
}

static bool have_prog(const char *name)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------------------------------------
 * Subscriber: a libmosquitto client on its own thread, recording every message
 * ---------------------------------------------------------------------------------------- */

#define SUB_MAX 1024

struct rx {
    char topic[128];
    char payload[64];
    int qos;
    bool retain;
};

struct sub {
    struct mosquitto *mosq;
    pthread_mutex_t mu;
    struct rx rx[SUB_MAX];
    int n;
    bool subscribed;
};

static void sub_on_message(struct mosquitto *mosq, void *ud, const struct mosquitto_message *msg)
{
    (void)mosq;
    struct sub *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n < SUB_MAX) {
        struct rx *r = &s->rx[s->n++];
        util_strlcpy(r->topic, msg->topic, sizeof r->topic);
        size_t len = (size_t)msg->payloadlen < sizeof r->payload - 1 ? (size_t)msg->payloadlen
                                                                     : sizeof r->payload - 1;
        memcpy(r->payload, msg->payload, len);
        r->payload[len] = '\0';
        r->qos = msg->qos;
        r->retain = msg->retain;
    }
    pthread_mutex_unlock(&s->mu);
}

static void sub_on_subscribe(struct mosquitto *mosq, void *ud, int mid, int n, const int *q)
{
    (void)mosq;
    (void)mid;
    (void)n;
    (void)q;
    struct sub *s = ud;
    pthread_mutex_lock(&s->mu);
    s->subscribed = true;
    pthread_mutex_unlock(&s->mu);
}

/* Connect (blocking), subscribe and wait for the SUBACK. */
static struct sub *sub_start(struct t *t, int port, const char *filter, int qos)
{
    struct sub *s = calloc(1, sizeof *s);
    CHECK(t, s, "calloc");
    pthread_mutex_init(&s->mu, NULL);
    s->mosq = mosquitto_new(NULL, true, s);
    CHECK(t, s->mosq, "mosquitto_new");
    mosquitto_message_callback_set(s->mosq, sub_on_message);
    mosquitto_subscribe_callback_set(s->mosq, sub_on_subscribe);
    int rc = mosquitto_connect(s->mosq, t->host, port, 30);
    CHECK(t, rc == MOSQ_ERR_SUCCESS, "subscriber connect: %s", mosquitto_strerror(rc));
    rc = mosquitto_subscribe(s->mosq, NULL, filter, qos);
    CHECK(t, rc == MOSQ_ERR_SUCCESS, "subscribe: %s", mosquitto_strerror(rc));
    rc = mosquitto_loop_start(s->mosq);
    CHECK(t, rc == MOSQ_ERR_SUCCESS, "loop_start: %s", mosquitto_strerror(rc));
    double end = util_mono() + 5;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool ok = s->subscribed;
        pthread_mutex_unlock(&s->mu);
        if (ok)
            break;
        CHECK(t, util_mono() < end, "no SUBACK within 5 s");
        usleep(2000);
    }
    return s;
}

static void sub_stop(struct sub *s)
{
    if (!s)
        return;
    mosquitto_disconnect(s->mosq);
    mosquitto_loop_stop(s->mosq, true);
    mosquitto_destroy(s->mosq);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Number of received messages on `topic` (NULL: all), optionally with this payload. */
static int sub_count(struct sub *s, const char *topic, const char *payload)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if ((!topic || strcmp(s->rx[i].topic, topic) == 0) &&
            (!payload || strcmp(s->rx[i].payload, payload) == 0))
            n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Copy of the last message on `topic`; false if none. */
static bool sub_last(struct sub *s, const char *topic, struct rx *out)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->rx[i].topic, topic) == 0) {
            *out = s->rx[i];
            found = true;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

struct wait_sub {
    struct sub *s;
    const char *topic;
    const char *payload;
    int n;
};

static bool p_sub(struct t *t, void *arg)
{
    (void)t;
    struct wait_sub *w = arg;
    return sub_count(w->s, w->topic, w->payload) >= w->n;
}

static bool wait_sub(struct t *t, struct sub *s, const char *topic, const char *payload, int n,
                     double timeout)
{
    struct wait_sub w = {s, topic, payload, n};
    return run_until(t, p_sub, &w, timeout);
}

/* ------------------------------------------------------------------------------------------
 * Sink helpers
 * ---------------------------------------------------------------------------------------- */

static void base_cfg(struct t *t, struct mqtt_config *c, int port, char *status, size_t slen)
{
    memset(c, 0, sizeof *c);
    c->host = t->host;
    c->port = port;
    c->keepalive = 10;
    c->clean_session = true;
    c->backoff_base = 0.2;
    c->backoff_max = 1.0;
    snprintf(status, slen, "%s/status", t->prefix);
    c->status_topic = status;
}

static struct mqtt_sink *sink_new(struct t *t, const struct mqtt_config *c)
{
    struct mqtt_sink *m = NULL;
    char err[256] = "";
    int rc = mqtt_sink_new(&m, t->loop, c, err, sizeof err);
    CHECK(t, rc == 0 && m, "mqtt_sink_new rc=%d err=%s", rc, err);
    mqtt_sink_set_ack_cb(m, on_ack, t);
    return m;
}

static void sink_close(struct t *t, struct mqtt_sink *m, double timeout)
{
    t->done = false;
    mqtt_sink_close(m, timeout, on_done, t);
    CHECK(t, run_until(t, p_done, NULL, timeout + 3), "close did not complete");
    mqtt_sink_free(m);
}

static void publish_num(struct t *t, struct mqtt_sink *m, const char *leaf, unsigned i, int qos)
{
    char topic[160], payload[32];
    snprintf(topic, sizeof topic, "%s/%s", t->prefix, leaf);
    int len = snprintf(payload, sizeof payload, "%u", i);
    int rc = mqtt_sink_publish(m, topic, payload, (size_t)len, qos, false, i);
    CHECK(t, rc == 0, "publish %u rc=%d", i, rc);
}

/* The subscriber's messages on <prefix>/<leaf> must be 0..n-1 in order, exactly once. */
static void check_sequence(struct t *t, struct sub *s, const char *leaf, unsigned first, unsigned n)
{
    char topic[160];
    snprintf(topic, sizeof topic, "%s/%s", t->prefix, leaf);
    unsigned expect = first;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->rx[i].topic, topic) != 0)
            continue;
        unsigned v = (unsigned)strtoul(s->rx[i].payload, NULL, 10);
        if (v != expect) {
            pthread_mutex_unlock(&s->mu);
            CHECK(t, false, "sequence: got %u, expected %u", v, expect);
        }
        expect++;
    }
    pthread_mutex_unlock(&s->mu);
    CHECK(t, expect == first + n, "sequence: got %u messages, expected %u", expect - first, n);
}

/* ------------------------------------------------------------------------------------------
 * Scenario: basic (and v5) — the 9 brief messages, QoS/retain, late subscriber, status
 * ---------------------------------------------------------------------------------------- */

struct brief_msg {
    const char *leaf;
    const char *payload;
    bool retain;
};

static const struct brief_msg brief[9] = {
    {"node1/temperature", "27.6", true},
    {"node1/humidity", "54.1", true},
    {"node1/gas_resistance", "84190", true},
    {"node2/temperature", "26.8", true},
    {"node2/humidity", "48.8", true},
    {"signal/rssi", "-39", false},
    {"signal/snr", "13", false},
    {"stats/packets_received", "1", false},
    {"stats/crc_errors", "0", false},
};

/* Clear the retained messages we left on the shared broker. */
static void clear_retained(struct t *t, int port)
{
    struct mosquitto *c = mosquitto_new(NULL, true, NULL);
    if (!c || mosquitto_connect(c, t->host, port, 10) != MOSQ_ERR_SUCCESS) {
        if (c)
            mosquitto_destroy(c);
        return;
    }
    char topic[160];
    for (size_t i = 0; i < 9; i++) {
        snprintf(topic, sizeof topic, "%s/%s", t->prefix, brief[i].leaf);
        mosquitto_publish(c, NULL, topic, 0, NULL, 1, true);
    }
    snprintf(topic, sizeof topic, "%s/status", t->prefix);
    mosquitto_publish(c, NULL, topic, 0, NULL, 1, true);
    for (int i = 0; i < 20; i++)
        mosquitto_loop(c, 10, 1);
    mosquitto_disconnect(c);
    mosquitto_destroy(c);
}

static int scenario_basic(struct t *t, int protocol)
{
    char filter[160], status[160], topic[160];
    snprintf(filter, sizeof filter, "%s/#", t->prefix);
    struct sub *s = sub_start(t, t->shared_port, filter, 2);

    struct mqtt_config c;
    base_cfg(t, &c, t->shared_port, status, sizeof status);
    c.protocol = protocol;
    char cid[64];
    snprintf(cid, sizeof cid, "iiotgw-test-%d", (int)getpid());
    c.client_id = cid;
    if (protocol == 5) {
        c.clean_session = false; /* exercises the session expiry property */
        c.session_expiry = 5;
    }
    struct mqtt_sink *m = sink_new(t, &c);
    CHECK(t, run_until(t, p_connected, m, 5), "sink did not connect");
    CHECK(t, wait_sub(t, s, status, "online", 1, 3), "no 'online' status");

    /* The 9 QoS1 messages of one packet, as the rules engine would hand them over. */
    for (unsigned i = 0; i < 9; i++) {
        snprintf(topic, sizeof topic, "%s/%s", t->prefix, brief[i].leaf);
        int rc = mqtt_sink_publish(m, topic, brief[i].payload, strlen(brief[i].payload), 1,
                                   brief[i].retain, i);
        CHECK(t, rc == 0, "publish rc=%d", rc);
    }
    /* One QoS 0 and one QoS 2 message: the QoS must reach the subscriber unchanged. */
    snprintf(topic, sizeof topic, "%s/q0", t->prefix);
    CHECK(t, mqtt_sink_publish(m, topic, "zero", 4, 0, false, 100) == 0, "publish q0");
    snprintf(topic, sizeof topic, "%s/q2", t->prefix);
    CHECK(t, mqtt_sink_publish(m, topic, "two", 3, 2, false, 101) == 0, "publish q2");

    CHECK(t, run_until(t, p_idle, m, 5), "not all acknowledged: pending=%zu", mqtt_sink_pending(m));
    for (unsigned i = 0; i < 9; i++)
        CHECK(t, t->acks[i] == 1, "token %u acked %u times", i, t->acks[i]);
    CHECK(t, t->acks[100] == 1 && t->acks[101] == 1, "q0/q2 acks %u %u", t->acks[100],
          t->acks[101]);
    struct mqtt_stats st;
    mqtt_sink_get_stats(m, &st);
    CHECK(t, st.published == 11 && st.acked == 11 && st.dropped == 0 && st.inflight == 0,
          "stats published=%llu acked=%llu", (unsigned long long)st.published,
          (unsigned long long)st.acked);

    CHECK(t, wait_sub(t, s, NULL, NULL, 12, 3), "subscriber got %d of 12",
          sub_count(s, NULL, NULL));
    for (unsigned i = 0; i < 9; i++) {
        snprintf(topic, sizeof topic, "%s/%s", t->prefix, brief[i].leaf);
        struct rx r;
        CHECK(t, sub_last(s, topic, &r), "missing %s", topic);
        CHECK(t, strcmp(r.payload, brief[i].payload) == 0, "%s payload %s", topic, r.payload);
        CHECK(t, r.qos == 1, "%s qos %d", topic, r.qos);
        CHECK(t, sub_count(s, topic, NULL) == 1, "%s received %d times", topic,
              sub_count(s, topic, NULL));
    }
    struct rx r;
    snprintf(topic, sizeof topic, "%s/q0", t->prefix);
    CHECK(t, sub_last(s, topic, &r) && r.qos == 0 && strcmp(r.payload, "zero") == 0, "q0");
    snprintf(topic, sizeof topic, "%s/q2", t->prefix);
    CHECK(t, sub_last(s, topic, &r) && r.qos == 2 && strcmp(r.payload, "two") == 0, "q2");

    /* A late subscriber sees exactly the retained ones (5 sensors + status). */
    struct sub *late = sub_start(t, t->shared_port, filter, 1);
    CHECK(t, wait_sub(t, late, NULL, NULL, 6, 3), "late subscriber got %d of 6",
          sub_count(late, NULL, NULL));
    run_for(t, 0.2);
    CHECK(t, sub_count(late, NULL, NULL) == 6, "late subscriber got %d, expected 6",
          sub_count(late, NULL, NULL));
    for (unsigned i = 0; i < 9; i++) {
        snprintf(topic, sizeof topic, "%s/%s", t->prefix, brief[i].leaf);
        bool got = sub_last(late, topic, &r);
        CHECK(t, got == brief[i].retain, "%s retained=%d seen=%d", topic, brief[i].retain, got);
        if (got)
            CHECK(t, r.retain && strcmp(r.payload, brief[i].payload) == 0, "%s retain flag", topic);
    }
    CHECK(t, sub_last(late, status, &r) && r.retain && strcmp(r.payload, "online") == 0,
          "retained status is not online");
    sub_stop(late);

    /*
     * A publish made inside the ack callback (i.e. inside mosquitto_loop_read, where
     * libmosquitto only queues packets) must be flushed at once, not at the next event.
     */
    t->cb_sink = m;
    snprintf(t->cb_topic, sizeof t->cb_topic, "%s/cb", t->prefix);
    CHECK(t, mqtt_sink_publish(m, t->cb_topic, "trigger", 7, 1, false, 400) == 0, "publish");
    CHECK(t, run_until(t, p_idle, m, 2) && t->acks[401] == 1 && t->acks[402] == 0,
          "publish from the ack callback not acknowledged");
    double cb_ms = (util_mono() - t->cb_at) * 1e3;
    CHECK(t, cb_ms < 500, "publish from the ack callback took %.1f ms", cb_ms);
    CHECK(t, wait_sub(t, s, t->cb_topic, "from-cb", 1, 2), "from-cb not delivered");
    t->cb_sink = NULL;

    /* Clean close: "offline" is published and acknowledged before the disconnect. */
    sink_close(t, m, 3);
    CHECK(t, wait_sub(t, s, status, "offline", 1, 3), "no 'offline' after close");
    late = sub_start(t, t->shared_port, status, 1);
    CHECK(t, wait_sub(t, late, status, "offline", 1, 3), "retained status is not offline");
    sub_stop(late);
    sub_stop(s);
    clear_retained(t, t->shared_port);

    /* Freeing the sink from inside its ack callback, with more messages pending. */
    m = sink_new(t, &c);
    t->cb_sink = m;
    CHECK(t, run_until(t, p_connected, m, 5), "sink 2 did not connect");
    for (unsigned i = 410; i < 420; i++) {
        snprintf(topic, sizeof topic, "%s/free", t->prefix);
        CHECK(t, mqtt_sink_publish(m, topic, "x", 1, 1, false, i) == 0, "publish");
    }
    run_for(t, 0.3);
    CHECK(t, t->cb_sink == NULL && t->acks[410] == 1, "ack 410 did not free the sink");
    unsigned later = 0;
    for (unsigned i = 411; i < 420; i++)
        later += t->acks[i];
    CHECK(t, later == 0, "%u acks after mqtt_sink_free", later);

    /* Freeing from the done callback of a close. */
    m = sink_new(t, &c);
    t->cb_sink = m;
    CHECK(t, run_until(t, p_connected, m, 5), "sink 3 did not connect");
    t->done = false;
    mqtt_sink_close(m, 1, on_done_free, t);
    CHECK(t, run_until(t, p_done, NULL, 3) && t->cb_sink == NULL, "close/free from done");
    run_for(t, 0.1);

    printf("basic(v%d): 11 published, 11 acked once each, retained/QoS/status verified; "
           "publish from the ack callback acked in %.2f ms; free from callbacks ok\n",
           protocol == 5 ? 5 : 3, cb_ms);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Scenario: will — the gateway process dies, the broker publishes "offline"
 * ---------------------------------------------------------------------------------------- */

static int scenario_will(struct t *t)
{
    char status[160];
    struct mqtt_config c;
    base_cfg(t, &c, t->shared_port, status, sizeof status);
    struct sub *s = sub_start(t, t->shared_port, status, 1);

    int pfd[2];
    CHECK(t, pipe(pfd) == 0, "pipe");
    pid_t pid = fork();
    CHECK(t, pid >= 0, "fork");
    if (pid == 0) {
        /* Child: a gateway that connects, says so, and runs until killed. */
        close(pfd[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct t ct;
        memset(&ct, 0, sizeof ct);
        ct.loop = loop;
        struct mqtt_sink *m = NULL;
        char err[256];
        if (mqtt_sink_new(&m, loop, &c, err, sizeof err) != 0)
            _exit(2);
        if (!run_until(&ct, p_connected, m, 5))
            _exit(3);
        if (write(pfd[1], "c", 1) != 1)
            _exit(4);
        run_for(&ct, 30);
        _exit(0);
    }
    close(pfd[1]);
    char ch;
    ssize_t n = read(pfd[0], &ch, 1); /* bounded: the child exits within 5 s otherwise */
    close(pfd[0]);
    if (n != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        CHECK(t, false, "child sink did not connect");
    }
    CHECK(t, wait_sub(t, s, status, "online", 1, 3), "no 'online' from the child");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(t, wait_sub(t, s, status, "offline", 1, 5), "no last will 'offline' after SIGKILL");
    struct rx r;
    CHECK(t, sub_last(s, status, &r) && strcmp(r.payload, "offline") == 0, "last is not offline");
    sub_stop(s);
    struct sub *late = sub_start(t, t->shared_port, status, 1);
    CHECK(t, wait_sub(t, late, status, "offline", 1, 3), "will was not retained");
    sub_stop(late);
    clear_retained(t, t->shared_port);
    printf("will: 'online' then last will 'offline' (retained) after SIGKILL of the gateway\n");
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Scenarios: start_down / overflow — queue while the broker is down
 * ---------------------------------------------------------------------------------------- */

struct wait_stat {
    struct mqtt_sink *m;
    uint64_t failures;
};

static bool p_failures(struct t *t, void *arg)
{
    (void)t;
    struct wait_stat *w = arg;
    struct mqtt_stats st;
    mqtt_sink_get_stats(w->m, &st);
    return st.connect_failures >= w->failures;
}

static int scenario_queue(struct t *t, bool overflow)
{
    struct broker *b = broker_conf(t, NULL);
    char status[160];
    struct mqtt_config c;
    base_cfg(t, &c, b->port, status, sizeof status);
    unsigned total = overflow ? 25 : 20, keep = overflow ? 10 : 20;
    if (overflow)
        c.queue_max_msgs = 10;
    else
        c.max_inflight = 4; /* the drain must respect the window */
    struct mqtt_sink *m = sink_new(t, &c);
    t->sampled = m;
    t->peak_inflight = 0;
    for (unsigned i = 0; i < total; i++)
        publish_num(t, m, "seq", i, 1);

    struct wait_stat w = {m, 2};
    CHECK(t, run_until(t, p_failures, &w, 5), "no connect failures recorded");
    struct mqtt_stats st;
    mqtt_sink_get_stats(m, &st);
    CHECK(t, !st.connected && st.queued == keep && st.dropped == total - keep,
          "queued=%zu dropped=%llu", st.queued, (unsigned long long)st.dropped);
    CHECK(t, mqtt_sink_pending(m) == keep, "pending=%zu", mqtt_sink_pending(m));

    /* Broker and subscriber come up in one go: the sink cannot reconnect in between. */
    broker_start(t, b);
    char filter[160];
    snprintf(filter, sizeof filter, "%s/#", t->prefix);
    struct sub *s = sub_start(t, b->port, filter, 1);
    CHECK(t, run_until(t, p_idle, m, 5), "queue not drained: pending=%zu", mqtt_sink_pending(m));
    CHECK(t, wait_sub(t, s, NULL, NULL, (int)keep, 3), "subscriber got %d",
          sub_count(s, NULL, NULL));
    run_for(t, 0.1);
    check_sequence(t, s, "seq", total - keep, keep);
    for (unsigned i = 0; i < total; i++)
        CHECK(t, t->acks[i] == (i >= total - keep ? 1u : 0u), "token %u acked %u", i, t->acks[i]);
    mqtt_sink_get_stats(m, &st);
    CHECK(t, st.connected && st.queued == 0 && st.acked == keep, "after drain acked=%llu",
          (unsigned long long)st.acked);
    if (!overflow)
        CHECK(t, t->peak_inflight >= 1 && t->peak_inflight <= 4,
              "peak inflight %zu with max_inflight 4", t->peak_inflight);
    t->sampled = NULL;
    sink_close(t, m, 2);
    sub_stop(s);

    if (overflow) {
        /* Byte bound: topic "<prefix>/seq" + payload; room for exactly 3 such messages. */
        char topic[160];
        snprintf(topic, sizeof topic, "%s/seq", t->prefix);
        size_t cost = strlen(topic) + 10;
        base_cfg(t, &c, free_port(), status, sizeof status);
        c.queue_max_bytes = 3 * cost + cost / 2;
        m = sink_new(t, &c);
        for (unsigned i = 0; i < 8; i++)
            CHECK(t, mqtt_sink_publish(m, topic, "0123456789", 10, 1, false, 200 + i) == 0,
                  "publish");
        mqtt_sink_get_stats(m, &st);
        CHECK(t, st.queued == 3 && st.dropped == 5 && st.queued_bytes == 3 * cost,
              "byte bound: queued=%zu bytes=%zu dropped=%llu", st.queued, st.queued_bytes,
              (unsigned long long)st.dropped);
        /* A message that can never fit is refused, not queued. */
        char big[512];
        memset(big, 'x', sizeof big);
        CHECK(t, mqtt_sink_publish(m, topic, big, sizeof big, 1, false, 300) == -EINVAL,
              "oversized message accepted");
        sink_close(t, m, 0.2);
        CHECK(t, t->acks[300] == 0, "oversize acked");
        /* Free with queued messages and a pending connect, without a close. */
        m = sink_new(t, &c);
        for (unsigned i = 0; i < 3; i++)
            publish_num(t, m, "seq", 310 + i, 1);
        mqtt_sink_free(m);
    }
    printf("%s: %u published while down, %u delivered in order, %u dropped, peak inflight %zu\n",
           overflow ? "overflow" : "start_down", total, keep, total - keep, t->peak_inflight);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Scenario: restart — broker stopped, killed and restarted mid-stream
 * ---------------------------------------------------------------------------------------- */

#define RS_N 200

struct restart_ctx {
    struct t *t;
    struct broker *b;
    struct mqtt_sink *m;
    struct sub *s1, *s2;
    unsigned next;
    bool acked_before_kill[RS_N];
    size_t inflight_at_kill;
    ev_timer timer;
};

static void restart_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct restart_ctx *r = container_of(w, struct restart_ctx, timer);
    struct t *t = r->t;
    if (r->next == 60) {
        broker_kill(r->b, SIGSTOP); /* from now on nothing is acknowledged */
    } else if (r->next == 70) {
        struct mqtt_stats st;
        mqtt_sink_get_stats(r->m, &st);
        r->inflight_at_kill = st.inflight;
        for (unsigned i = 0; i < RS_N; i++)
            r->acked_before_kill[i] = t->acks[i] > 0;
        broker_kill(r->b, SIGKILL);
    } else if (r->next == 120) {
        /* Broker and a new subscriber up in one go, before the sink can reconnect. */
        broker_start(t, r->b);
        char filter[160];
        snprintf(filter, sizeof filter, "%s/#", t->prefix);
        r->s2 = sub_start(t, r->b->port, filter, 1);
    }
    publish_num(t, r->m, "seq", r->next, 1);
    if (++r->next == RS_N)
        ev_timer_stop(t->loop, w);
}

static bool p_all_acked(struct t *t, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < RS_N; i++)
        if (!t->acks[i])
            return false;
    return true;
}

static int scenario_restart(struct t *t)
{
    struct restart_ctx *r = calloc(1, sizeof *r);
    CHECK(t, r, "calloc");
    r->t = t;
    r->b = broker_conf(t, NULL);
    broker_start(t, r->b);
    char filter[160], status[160];
    snprintf(filter, sizeof filter, "%s/#", t->prefix);
    r->s1 = sub_start(t, r->b->port, filter, 1);
    struct mqtt_config c;
    base_cfg(t, &c, r->b->port, status, sizeof status);
    r->m = sink_new(t, &c);
    CHECK(t, run_until(t, p_connected, r->m, 5), "sink did not connect");

    ev_timer_init(&r->timer, restart_tick, 0.005, 0.005);
    ev_timer_start(t->loop, &r->timer);
    CHECK(t, run_until(t, p_all_acked, NULL, 20), "not every token acknowledged (pending=%zu)",
          mqtt_sink_pending(r->m));
    ev_timer_stop(t->loop, &r->timer);
    CHECK(t, run_until(t, p_idle, r->m, 3), "pending=%zu", mqtt_sink_pending(r->m));
    run_for(t, 0.3);

    struct mqtt_stats st;
    mqtt_sink_get_stats(r->m, &st);
    CHECK(t, r->inflight_at_kill > 0, "nothing was in flight at the kill: test proves nothing");
    CHECK(t, st.reconnects >= 1, "no reconnect recorded");

    /* Per token: acked exactly once; received by someone; acked-before-kill seen by s1. */
    unsigned seen1[RS_N] = {0}, seen2[RS_N] = {0};
    char topic[160];
    snprintf(topic, sizeof topic, "%s/seq", t->prefix);
    struct sub *subs[2] = {r->s1, r->s2};
    unsigned *seen[2] = {seen1, seen2};
    for (int k = 0; k < 2; k++) {
        pthread_mutex_lock(&subs[k]->mu);
        for (int i = 0; i < subs[k]->n; i++)
            if (strcmp(subs[k]->rx[i].topic, topic) == 0) {
                unsigned v = (unsigned)strtoul(subs[k]->rx[i].payload, NULL, 10);
                if (v < RS_N)
                    seen[k][v]++;
            }
        pthread_mutex_unlock(&subs[k]->mu);
    }
    unsigned dups = 0, lost = 0, missing_acked = 0;
    for (unsigned i = 0; i < RS_N; i++) {
        CHECK(t, t->acks[i] == 1, "token %u acked %u times", i, t->acks[i]);
        unsigned n = seen1[i] + seen2[i];
        if (n == 0)
            lost++;
        if (n > 1)
            dups += n - 1;
        if (r->acked_before_kill[i] && !seen1[i])
            missing_acked++;
    }
    printf("restart: %u messages, in flight at kill=%zu, lost=%u, acked-but-unseen=%u, "
           "duplicates=%u, reconnects=%llu\n",
           RS_N, r->inflight_at_kill, lost, missing_acked, dups, (unsigned long long)st.reconnects);
    CHECK(t, lost == 0, "%u messages never delivered", lost);
    CHECK(t, missing_acked == 0, "%u acknowledged messages lost", missing_acked);
    sink_close(t, r->m, 2);
    sub_stop(r->s1);
    sub_stop(r->s2);
    free(r);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Scenario: auth — password file, right and wrong password
 * ---------------------------------------------------------------------------------------- */

static int scenario_auth(struct t *t)
{
    if (!have_prog("mosquitto_passwd"))
        return 77;
    make_dir(t);
    char pwfile[128], cmd[256], extra[256];
    snprintf(pwfile, sizeof pwfile, "%s/passwd", t->dir);
    snprintf(cmd, sizeof cmd, "mosquitto_passwd -c -b '%s' gw 's3cr:t' >/dev/null 2>&1", pwfile);
    CHECK(t, system(cmd) == 0, "mosquitto_passwd failed");
    chmod(pwfile, 0600);
    snprintf(extra, sizeof extra, "allow_anonymous false\npassword_file %s\n", pwfile);
    struct broker *b = broker_conf(t, extra);
    broker_start(t, b);

    char status[160];
    struct mqtt_config c;
    base_cfg(t, &c, b->port, status, sizeof status);
    c.username = "gw";
    c.password = "s3cr:t";
    struct mqtt_sink *m = sink_new(t, &c);
    CHECK(t, run_until(t, p_connected, m, 5), "right password: not connected");
    for (unsigned i = 0; i < 3; i++)
        publish_num(t, m, "auth", i, 1);
    CHECK(t, run_until(t, p_idle, m, 3), "right password: not acked");
    CHECK(t, t->acks[0] == 1 && t->acks[1] == 1 && t->acks[2] == 1, "acks");
    sink_close(t, m, 2);

    c.password = "wrong";
    m = sink_new(t, &c);
    publish_num(t, m, "auth", 10, 1);
    struct wait_stat w = {m, 3};
    CHECK(t, run_until(t, p_failures, &w, 6), "wrong password: fewer than 3 refusals");
    struct mqtt_stats st;
    mqtt_sink_get_stats(m, &st);
    CHECK(t, !st.connected && st.queued == 1 && st.acked == 0, "wrong password state");
    sink_close(t, m, 0.3);
    CHECK(t, t->acks[10] == 0, "message acked without a connection");
    printf("auth: right password delivers; wrong password refused %llu times, retried, no crash\n",
           (unsigned long long)st.connect_failures);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Scenario: tls — CA + server certificate generated with openssl
 * ---------------------------------------------------------------------------------------- */

static int scenario_tls(struct t *t)
{
    if (!have_prog("openssl"))
        return 77;
    make_dir(t);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && ( "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
             "-subj /CN=iiotgw-test-ca && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 "
             "-subj /CN=other-ca && "
             "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
             "-subj /CN=localhost && "
             "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out server.crt -days 2 -extfile san.ext && chmod 644 *.key ) >openssl.log 2>&1",
             t->dir);
    CHECK(t, system(cmd) == 0, "openssl failed, see %s/openssl.log", t->dir);
    char extra[1024];
    int tls_port = free_port();
    snprintf(extra, sizeof extra,
             "allow_anonymous true\nlistener %d 127.0.0.1\ncafile %s/ca.crt\n"
             "certfile %s/server.crt\nkeyfile %s/server.key\n",
             tls_port, t->dir, t->dir, t->dir);
    struct broker *b = broker_conf(t, extra);
    b->tls_port = tls_port;
    broker_start(t, b);

    char filter[160], status[160], ca[160], other[160];
    snprintf(filter, sizeof filter, "%s/#", t->prefix);
    snprintf(ca, sizeof ca, "%s/ca.crt", t->dir);
    snprintf(other, sizeof other, "%s/other.crt", t->dir);
    struct sub *s = sub_start(t, b->port, filter, 1); /* plain listener */

    struct mqtt_config c;
    base_cfg(t, &c, tls_port, status, sizeof status);
    c.tls = true;
    c.cafile = ca;
    struct mqtt_sink *m = sink_new(t, &c);
    CHECK(t, run_until(t, p_connected, m, 5), "TLS: not connected");
    for (unsigned i = 0; i < 3; i++)
        publish_num(t, m, "tls", i, 1);
    CHECK(t, run_until(t, p_idle, m, 3), "TLS: not acked");
    CHECK(t, wait_sub(t, s, NULL, NULL, 4, 3), "TLS: subscriber got %d", sub_count(s, NULL, NULL));
    check_sequence(t, s, "tls", 0, 3);
    sink_close(t, m, 2);
    sub_stop(s);

    /* The wrong CA must not connect. */
    c.cafile = other;
    m = sink_new(t, &c);
    struct wait_stat w = {m, 2};
    CHECK(t, run_until(t, p_failures, &w, 5), "wrong CA: no failure recorded");
    struct mqtt_stats st;
    mqtt_sink_get_stats(m, &st);
    CHECK(t, !st.connected, "wrong CA: connected");
    sink_close(t, m, 0.2);
    printf("tls: CA-verified connection delivers; wrong CA rejected (%llu failures)\n",
           (unsigned long long)st.connect_failures);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s basic|will|v5|start_down|overflow|restart|auth|tls\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *sc = argv[1];
    struct t *t = calloc(1, sizeof *t);
    if (!t)
        return 1;
    t->loop = ev_default_loop(0);
    ev_check_init(&t->sampler, sampler_cb);
    ev_check_start(t->loop, &t->sampler);
    const char *host = getenv("IIOTGW_TEST_MQTT_HOST");
    t->host = host && host[0] ? host : "127.0.0.1";
    const char *port = getenv("IIOTGW_TEST_MQTT_PORT");
    t->shared_port = port ? atoi(port) : 0;
    snprintf(t->prefix, sizeof t->prefix, "iiotgw-test/%s/%d-%ld", sc, (int)getpid(),
             (long)time(NULL));
    const char *lvl = getenv("IIOTGW_TEST_LOG");
    log_set_level(lvl ? log_level_parse(lvl) : LL_WARN);
    mosquitto_lib_init();

    bool shared = !strcmp(sc, "basic") || !strcmp(sc, "will") || !strcmp(sc, "v5");
    if (shared && t->shared_port <= 0) {
        fprintf(stderr, "IIOTGW_TEST_MQTT_PORT not set: skipping\n");
        free(t);
        return 77;
    }
    if (!shared && !have_prog("mosquitto")) {
        fprintf(stderr, "mosquitto not installed: skipping\n");
        free(t);
        return 77;
    }

    int rc;
    if (!strcmp(sc, "basic"))
        rc = scenario_basic(t, 3);
    else if (!strcmp(sc, "v5"))
        rc = scenario_basic(t, 5);
    else if (!strcmp(sc, "will"))
        rc = scenario_will(t);
    else if (!strcmp(sc, "start_down"))
        rc = scenario_queue(t, false);
    else if (!strcmp(sc, "overflow"))
        rc = scenario_queue(t, true);
    else if (!strcmp(sc, "restart"))
        rc = scenario_restart(t);
    else if (!strcmp(sc, "auth"))
        rc = scenario_auth(t);
    else if (!strcmp(sc, "tls"))
        rc = scenario_tls(t);
    else {
        fprintf(stderr, "unknown scenario %s\n", sc);
        rc = 2;
    }
    cleanup(t);
    free(t);
    mosquitto_lib_cleanup();
    ev_loop_destroy(ev_default_loop(0));
    return rc;
}
