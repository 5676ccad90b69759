/*
 * paramsrv.c — the daemon's routes to the tunable parameters: MQTT commands, state topics and
 * the params document, and the local control socket. See paramsrv.h.
 *
 * Both routes end in params_set(), so a value refused over MQTT is refused locally for the
 * same reason with the same message; this file only transports requests and answers.
 */
#include "paramsrv.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "log.h"
#include "mqtt.h"
#include "params.h"
#include "util.h"

#define SRV_MAX_CLIENTS 8
#define SRV_REQ_MAX     1024
#define SRV_TIMEOUT     5.0

struct srv_client {
    struct paramsrv *s;
    int fd;
    ev_io io;
    ev_timer timer;
    char req[SRV_REQ_MAX + 1];
    size_t reqlen;
    struct buf out; /* the response, sent from `sent` on */
    size_t sent;
    bool writing;
    bool draining; /* answer sent: read until the client closes (see srv_client_io) */
    unsigned uid;
};

struct paramsrv {
    struct ev_loop *loop;
    struct params *p;
    struct paramsrv_config cfg;
    char *prefix;
    char *socket_path;
    int lfd;
    ev_io accept_io;
    struct srv_client *clients[SRV_MAX_CLIENTS];
    char response_topic[512];
    char doc_topic[512];
    /* Retained state topics published so far, to clear those of params that disappeared. */
    char **published;
    size_t npublished;
    uint64_t changes; /* accepted changes seen (srv_on_changed) */
};

/* ------------------------------------------------------------------------------------------
 * State topics and the document
 * ---------------------------------------------------------------------------------------- */

static void srv_publish(struct paramsrv *s, const char *topic, const char *payload, size_t len)
{
    if (s->cfg.publish)
        s->cfg.publish(s->cfg.ud, topic, payload, len, 1, true);
}

static void srv_publish_doc(struct paramsrv *s)
{
    char *doc = params_json(s->p);
    if (!doc) {
        log_warn("params_doc_failed", "why=\"out of memory\"");
        return;
    }
    srv_publish(s, s->doc_topic, doc, strlen(doc));
    free(doc);
}

static void srv_publish_slot(struct paramsrv *s, const struct param_info *pi, size_t slot)
{
    char topic[512], text[PARAM_TEXT_MAX];
    if (params_topic(topic, sizeof topic, s->prefix, pi->decl->name, pi->slots[slot].node, false))
        return;
    size_t n = params_format(pi->decl, pi->slots[slot].value, text, sizeof text);
    srv_publish(s, topic, text, n);
}

static void srv_on_changed(void *ud, const struct param_info *pi, size_t slot, double old,
                           const struct param_origin *origin)
{
    (void)old;
    (void)origin;
    struct paramsrv *s = ud;
    s->changes++;
    srv_publish_slot(s, pi, slot);
    srv_publish_doc(s);
}

/* After a commit (or an orphan removed): every state topic, and empty retained messages for
 * the topics of params that are gone (so a broker does not keep serving stale values). */
static void srv_on_declared(void *ud)
{
    struct paramsrv *s = ud;
    size_t total = 0;
    for (size_t i = 0; i < params_count(s->p); i++)
        total += params_at(s->p, i)->nslots;
    char **now = calloc(total ? total : 1, sizeof *now);
    size_t n = 0;
    for (size_t i = 0; i < params_count(s->p); i++) {
        const struct param_info *pi = params_at(s->p, i);
        for (size_t k = 0; k < pi->nslots; k++) {
            srv_publish_slot(s, pi, k);
            char topic[512];
            if (now && !params_topic(topic, sizeof topic, s->prefix, pi->decl->name,
                                     pi->slots[k].node, false))
                now[n++] = strdup(topic);
        }
    }
    for (size_t i = 0; i < s->npublished; i++) {
        bool kept = false;
        for (size_t k = 0; k < n && !kept; k++)
            kept = now[k] && !strcmp(now[k], s->published[i]);
        if (!kept)
            srv_publish(s, s->published[i], "", 0);
        free(s->published[i]);
    }
    free(s->published);
    s->published = now;
    s->npublished = now ? n : 0;
    srv_publish_doc(s);
}

/* ------------------------------------------------------------------------------------------
 * MQTT commands
 * ---------------------------------------------------------------------------------------- */

void paramsrv_filters(const struct paramsrv *s, char (*out)[256])
{
    snprintf(out[0], 256, "%s/gateway/param/+/set", s->prefix);
    snprintf(out[1], 256, "%s/gateway/param/+/+/set", s->prefix);
}

bool paramsrv_on_message(struct paramsrv *s, const char *topic, const void *payload, size_t len)
{
    char name[PARAM_NAME_MAX], node[PARAM_NAME_MAX];
    if (params_parse_topic(s->prefix, topic, name, node))
        return false;
    char text[PARAM_TEXT_MAX];
    /* Trim: MQTT apps often append a newline. A value too long for any type is refused by
     * params_set as "not a number" / "not one of". */
    size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
    memcpy(text, payload, n);
    text[n] = '\0';
    if (memchr(text, '\0', n))
        n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        text[--n] = '\0';
    char *t = text;
    while (*t == ' ')
        t++;
    if (len >= sizeof text)
        util_strlcpy(t, "(value too long)", sizeof text - (size_t)(t - text));

    struct mqtt_message_props mp = {0};
    if (s->cfg.mqtt)
        mqtt_sink_message_props(s->cfg.mqtt, &mp);
    struct param_origin o = {.kind = "mqtt", .who = mp.origin[0] ? mp.origin : NULL};
    char msg[512];
    uint64_t before = s->changes;
    int rc = params_set(s->p, name, node, t, &o, msg, sizeof msg);
    bool ok = rc == 0 || rc == -EIO;
    if (s->changes == before) {
        /* Refused or unchanged: echo the value in force anyway, so a Home Assistant number
         * (which shows what the state topic says) snaps back to it. */
        const struct param_info *pi = params_find(s->p, name);
        int slot = pi ? params_slot_index(pi, node) : -1;
        if (slot >= 0)
            srv_publish_slot(s, pi, (size_t)slot);
    }
    cJSON *r = cJSON_CreateObject();
    if (r) {
        cJSON_AddBoolToObject(r, "ok", ok);
        cJSON_AddStringToObject(r, "param", name);
        if (*node)
            cJSON_AddStringToObject(r, "node", node);
        else
            cJSON_AddNullToObject(r, "node");
        cJSON_AddStringToObject(r, "value", t);
        cJSON_AddStringToObject(r, "message", msg);
        char *js = cJSON_PrintUnformatted(r);
        cJSON_Delete(r);
        if (js && s->cfg.mqtt) {
            const char *to = mp.has_response_topic ? mp.response_topic : s->response_topic;
            int prc = mqtt_sink_respond(s->cfg.mqtt, to, js, strlen(js), mp.correlation,
                                        mp.correlation_len);
            if (prc && prc != -ENOTCONN)
                log_warn("param_response_failed", "topic=%s rc=%d", log_q(to), prc);
        }
        free(js);
    }
    return true;
}

/* ------------------------------------------------------------------------------------------
 * The local socket
 * ---------------------------------------------------------------------------------------- */

static void srv_client_free(struct srv_client *c)
{
    struct paramsrv *s = c->s;
    ev_io_stop(s->loop, &c->io);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    buf_free(&c->out);
    for (int i = 0; i < SRV_MAX_CLIENTS; i++)
        if (s->clients[i] == c)
            s->clients[i] = NULL;
    free(c);
}

static void srv_out(struct srv_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void srv_out(struct srv_client *c, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)buf_append(&c->out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* `s` followed by spaces up to `width` characters on screen (UTF-8: "°C" is 2, not 3). */
static const char *srv_pad(char *out, size_t n, const char *s, int width)
{
    int chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        chars += (*p & 0xC0) != 0x80;
    snprintf(out, n, "%s%*s", s, chars < width ? width - chars : 0, "");
    return out;
}

static void srv_list(struct srv_client *c)
{
    struct paramsrv *s = c->s;
    srv_out(c, "ok\n%-16s %-8s %-10s %-10s %-8s %-14s %-6s %-6s %s\n", "NAME", "NODE", "VALUE",
            "DEFAULT", "TYPE", "RANGE", "STEP", "UNIT", "SET BY");
    for (size_t i = 0; i < params_count(s->p); i++) {
        const struct param_info *pi = params_at(s->p, i);
        const struct param_decl *d = pi->decl;
        char def[PARAM_TEXT_MAX], range[2 * PARAM_TEXT_MAX + 4] = "-", step[32] = "-";
        params_format(d, d->def, def, sizeof def);
        if (d->type == PARAM_ENUM) {
            range[0] = '\0';
            for (size_t k = 0; k < d->nvalues; k++) {
                size_t l = strlen(range);
                snprintf(range + l, sizeof range - l, "%s%s", k ? "|" : "", d->values[k]);
            }
        } else if (d->has_min || d->has_max) {
            char a[PARAM_TEXT_MAX] = "", z[PARAM_TEXT_MAX] = "";
            if (d->has_min)
                params_format(d, d->min, a, sizeof a);
            if (d->has_max)
                params_format(d, d->max, z, sizeof z);
            snprintf(range, sizeof range, "%s..%s", a, z);
        }
        if (d->step > 0)
            snprintf(step, sizeof step, "%g", d->step);
        for (size_t k = 0; k < pi->nslots; k++) {
            const struct param_slot *sl = &pi->slots[k];
            char v[PARAM_TEXT_MAX], when[40] = "";
            params_format(d, sl->value, v, sizeof v);
            if (sl->changed_ns) {
                time_t t = (time_t)(sl->changed_ns / 1000000000);
                struct tm tm;
                if (gmtime_r(&t, &tm))
                    strftime(when, sizeof when, " %Y-%m-%dT%H:%M:%SZ", &tm);
            }
            char unit[96];
            srv_out(c, "%-16s %-8s %-10s %-10s %-8s %-14s %-6s %s %s%s%s\n", d->name,
                    sl->node ? sl->node : "-", v, def, params_type_name(d->type), range, step,
                    srv_pad(unit, sizeof unit, d->unit ? d->unit : "-", 6),
                    sl->overridden ? sl->origin : "default", when,
                    pi->orphaned ? "  (orphaned: not declared by the rule)" : "");
        }
    }
}

/* Handle one request line; the response goes to c->out. */
static void srv_request(struct srv_client *c)
{
    struct paramsrv *s = c->s;
    char *argv[5];
    int argc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(c->req, " \t\r\n", &save); tok && argc < 5;
         tok = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = tok;
    if (argc == 1 && !strcmp(argv[0], "list")) {
        srv_list(c);
        return;
    }
    if ((argc == 2 || argc == 3) && !strcmp(argv[0], "get")) {
        const struct param_info *pi = params_find(s->p, argv[1]);
        int slot = pi ? params_slot_index(pi, argc == 3 ? argv[2] : NULL) : -1;
        if (slot < 0) {
            /* The same wording as a refused set (unknown param or node). */
            char msg[512];
            if (!pi)
                snprintf(msg, sizeof msg, "%s: unknown param", argv[1]);
            else if (pi->decl->nnodes && argc == 2)
                snprintf(msg, sizeof msg, "%s: a per-node param: give the node", argv[1]);
            else
                snprintf(msg, sizeof msg, "%s: no such node", argv[1]);
            srv_out(c, "error: %s\n", msg);
            return;
        }
        char v[PARAM_TEXT_MAX];
        params_format(pi->decl, pi->slots[slot].value, v, sizeof v);
        srv_out(c, "ok\n%s\n", v);
        return;
    }
    if ((argc == 3 || argc == 4) && !strcmp(argv[0], "set")) {
        char who[32], msg[512];
        snprintf(who, sizeof who, "uid=%u", c->uid);
        struct param_origin o = {.kind = "local", .who = who};
        int rc = params_set(s->p, argv[1], argc == 4 ? argv[2] : NULL, argv[argc - 1], &o, msg,
                            sizeof msg);
        if (rc == 0)
            srv_out(c, "ok\n%s\n", msg);
        else if (rc == -EIO)
            srv_out(c, "ok\n%s (warning: the params file could not be written)\n", msg);
        else
            srv_out(c, "error: %s\n", msg);
        return;
    }
    srv_out(c, "error: usage: list | get NAME [NODE] | set NAME [NODE] VALUE\n");
}

static void srv_client_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct srv_client *c = container_of(w, struct srv_client, io);
    if (c->draining) {
        /* Closing with unread input would reset the connection and could destroy the answer
         * before the client read it: wait for its EOF (bounded by the timer). */
        char junk[1024];
        ssize_t n = recv(c->fd, junk, sizeof junk, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            srv_client_free(c);
        return;
    }
    if (c->writing) {
        while (c->sent < c->out.len) {
            ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                srv_client_free(c);
                return;
            }
            c->sent += (size_t)n;
        }
        shutdown(c->fd, SHUT_WR);
        c->draining = true;
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_READ);
        ev_io_start(loop, &c->io);
        return;
    }
    ssize_t n = recv(c->fd, c->req + c->reqlen, SRV_REQ_MAX - c->reqlen, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        srv_client_free(c);
        return;
    }
    c->reqlen += (size_t)n;
    c->req[c->reqlen] = '\0';
    char *nl = memchr(c->req, '\n', c->reqlen);
    if (!nl && c->reqlen < SRV_REQ_MAX)
        return;
    if (!nl)
        srv_out(c, "error: request longer than %d bytes\n", SRV_REQ_MAX);
    else {
        *nl = '\0';
        srv_request(c);
    }
    c->writing = true;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(loop, &c->io);
}

static void srv_client_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct srv_client *c = container_of(w, struct srv_client, timer);
    log_warn("param_socket_timeout", "uid=%u", c->uid);
    srv_client_free(c);
}

static void srv_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct paramsrv *s = container_of(w, struct paramsrv, accept_io);
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int slot = -1;
    for (int i = 0; i < SRV_MAX_CLIENTS && slot < 0; i++)
        if (!s->clients[i])
            slot = i;
    struct srv_client *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        static const char busy[] = "error: busy, try again\n";
        (void)send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
        close(fd);
        return;
    }
    struct ucred cred;
    socklen_t cl = sizeof cred;
    c->uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? (unsigned)cred.uid
                                                                      : (unsigned)-1;
    c->s = s;
    c->fd = fd;
    s->clients[slot] = c;
    ev_io_init(&c->io, srv_client_io, fd, EV_READ);
    ev_io_start(loop, &c->io);
    ev_timer_init(&c->timer, srv_client_timeout, SRV_TIMEOUT, 0.);
    ev_timer_start(loop, &c->timer);
}

/* Create the listening socket, mode 0660. A socket file nobody answers on is stale. */
static int srv_listen(struct paramsrv *s, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(s->socket_path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "param socket %s: path longer than %zu bytes", s->socket_path,
                 sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, s->socket_path, strlen(s->socket_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "param socket: %s", strerror(errno));
        return -errno;
    }
    struct stat st;
    if (lstat(s->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            snprintf(err, errlen, "param socket %s: exists and is not a socket", s->socket_path);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            close(fd);
            snprintf(err, errlen, "param socket %s: another gateway answers on it", s->socket_path);
            return -EADDRINUSE;
        }
        unlink(s->socket_path);
    }
    /* umask decides the socket file's mode at bind: owner and group may connect. */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    umask(old);
    if (rc < 0 || listen(fd, SRV_MAX_CLIENTS) < 0) {
        if (rc == 0)
            e = errno;
        close(fd);
        snprintf(err, errlen, "param socket %s: %s", s->socket_path, strerror(e));
        return -e;
    }
    s->lfd = fd;
    ev_io_init(&s->accept_io, srv_accept, fd, EV_READ);
    ev_io_start(s->loop, &s->accept_io);
    log_info("param_socket", "path=%s mode=0660", s->socket_path);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------------------------- */

int paramsrv_new(struct paramsrv **out, struct ev_loop *loop, struct params *p,
                 const struct paramsrv_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    struct paramsrv *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->p = p;
    s->cfg = *cfg;
    s->lfd = -1;
    s->prefix = strdup(cfg->prefix ? cfg->prefix : "iiot");
    s->socket_path = cfg->socket_path ? strdup(cfg->socket_path) : NULL;
    int rc = -ENOMEM;
    if (!s->prefix || (cfg->socket_path && !s->socket_path))
        goto fail;
    snprintf(s->response_topic, sizeof s->response_topic, "%s/gateway/param/response", s->prefix);
    snprintf(s->doc_topic, sizeof s->doc_topic, "%s/gateway/params", s->prefix);
    struct params_listener l = {.ud = s, .changed = srv_on_changed, .declared = srv_on_declared};
    if ((rc = params_listen(p, &l))) {
        snprintf(err, errlen, "params: too many listeners");
        goto fail;
    }
    if (s->socket_path && srv_listen(s, err, errlen)) {
        /* The other routes still work: a missing local command is not worth refusing to
         * start a gateway over. */
        log_warn("param_socket_failed",
                 "error=\"%s\" hint=\"iiotgw param will not reach this "
                 "gateway; MQTT and params.conf + SIGHUP still work\"",
                 err);
        err[0] = '\0';
        free(s->socket_path); /* not ours: never unlink a socket we did not create */
        s->socket_path = NULL;
    }
    *out = s;
    return 0;
fail:
    paramsrv_free(s);
    return rc;
}

void paramsrv_free(struct paramsrv *s)
{
    if (!s)
        return;
    params_unlisten(s->p, s);
    for (int i = 0; i < SRV_MAX_CLIENTS; i++)
        if (s->clients[i])
            srv_client_free(s->clients[i]);
    if (s->lfd >= 0) {
        ev_io_stop(s->loop, &s->accept_io);
        close(s->lfd);
        if (s->socket_path)
            unlink(s->socket_path);
    }
    for (size_t i = 0; i < s->npublished; i++)
        free(s->published[i]);
    free(s->published);
    free(s->prefix);
    free(s->socket_path);
    free(s);
}
