/*
 * paramsrv.h — the daemon's routes to the tunable parameters (params.h): MQTT command and
 * state topics, and the local control socket `iiotgw param` talks to (paramcli.c).
 *
 * MQTT (docs/tuning.md has the layout): a message on <prefix>/gateway/param/<name>[/<node>]/set
 * is applied with params_set() (origin "mqtt", who = the MQTT 5 user property "origin" or
 * "client_id" when present); the answer, a JSON object {"ok","param","node","value",
 * "message"}, goes to the request's MQTT 5 response topic with its correlation data, else to
 * <prefix>/gateway/param/response. Every applied value is echoed, retained, on
 * <prefix>/gateway/param/<name>[/<node>] (also after a refusal, so a Home Assistant number
 * snaps back), and the retained document <prefix>/gateway/params is republished.
 *
 * Local socket: a SOCK_STREAM UNIX socket created with mode 0660 (the directory's mode and
 * the socket's group decide who may connect: that is the access control). One request line,
 * one response, then the server half-closes (the client reads to EOF) and waits for the
 * client to close:
 *   list | get NAME [NODE] | set NAME [NODE] VALUE
 * The response's first line is "ok" or "error: <message>", the rest is the text to print.
 * The caller's uid (SO_PEERCRED) is the audit's "who" ("uid=1000"). At most 8 clients at a
 * time, 5 s each; a request longer than 1 KiB is refused.
 *
 * Ownership: paramsrv_new() returns an object owned by the caller (paramsrv_free(), which
 * removes the socket file). The registry, the loop and the MQTT sink are borrowed and must
 * outlive it.
 */
#ifndef IIOTGW_PARAMSRV_H
#define IIOTGW_PARAMSRV_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

struct params;
struct mqtt_sink;

struct paramsrv_config {
    const char *prefix;      /* topic prefix */
    const char *socket_path; /* control socket; NULL = none */
    struct mqtt_sink *mqtt;  /* replies; NULL = no MQTT route (state topics still published) */
    /* The gateway's own publish path (retained state topics, the params document). */
    void (*publish)(void *ud, const char *topic, const char *payload, size_t len, int qos,
                    bool retain);
    void *ud;
};

struct paramsrv;

/*
 * Start the routes: listen on the registry (state topics published after every change and
 * commit), create the socket (a stale socket file is replaced). A socket that cannot be
 * created (path too long, another process answering on it, permissions) is logged
 * (param_socket_failed) and the other routes work without it. Returns 0, -ENOMEM or
 * -ENOSPC (too many registry listeners) with err set.
 */
int paramsrv_new(struct paramsrv **out, struct ev_loop *loop, struct params *p,
                 const struct paramsrv_config *cfg, char *err, size_t errlen);

/* The MQTT subscriptions the routes need ("<prefix>/gateway/param/+/set", ".../+/+/set"),
 * written to out[0..1] (each >= 256 bytes). */
void paramsrv_filters(const struct paramsrv *s, char (*out)[256]);

/*
 * An inbound MQTT message (from the gateway's dispatcher). Returns true when it was a param
 * command (handled), false when the topic is not one (left to others).
 */
bool paramsrv_on_message(struct paramsrv *s, const char *topic, const void *payload, size_t len);

void paramsrv_free(struct paramsrv *s); /* NULL is a no-op */

#endif
