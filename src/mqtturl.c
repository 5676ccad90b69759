/*
 * mqtturl.c — mqtt_parse_url() (declared in mqtt.h): mqtt://[user[:pass]@]host[:port] and
 * mqtts://..., with percent-decoded credentials and bracketed IPv6 hosts.
 *
 * Why its own file: it is pure string handling, shared by the sink set-up and `--check`,
 * and needs none of the libmosquitto plumbing in mqtt.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mqtt.h"

static int mqtturl_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [s, s+n) into *out (advancing it). Returns 0 or -EINVAL. */
static int mqtturl_pct_decode(const char *s, size_t n, char **out, char *end)
{
    char *o = *out;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 1 < n ? mqtturl_hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? mqtturl_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = hi * 16 + lo;
            if (c == 0)
                return -EINVAL;
            i += 2;
        }
        if (o >= end)
            return -ENOSPC;
        *o++ = (char)c;
    }
    if (o >= end)
        return -ENOSPC;
    *o++ = '\0';
    *out = o;
    return 0;
}

int mqtt_parse_url(const char *url, struct mqtt_config *cfg, char *storage, size_t storagelen,
                   char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!url || !cfg || !storage || storagelen == 0) {
        snprintf(err, errlen, "mqtt url: missing argument");
        return -EINVAL;
    }
    bool tls;
    const char *p;
    if (strncmp(url, "mqtt://", 7) == 0) {
        tls = false;
        p = url + 7;
    } else if (strncmp(url, "mqtts://", 8) == 0) {
        tls = true;
        p = url + 8;
    } else {
        snprintf(err, errlen, "mqtt url: scheme must be mqtt:// or mqtts://");
        return -EINVAL;
    }

    /* Authority ends at an optional single trailing '/'. */
    size_t alen = strlen(p);
    if (alen && p[alen - 1] == '/')
        alen--;
    /* Where user:password@ ends, so that no character of a password is quoted below. */
    const char *userinfo_end = NULL;
    for (const char *q = p; *q; q++)
        if (*q == '@')
            userinfo_end = q;
    for (size_t i = 0; i < alen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '/' || ch == '?' || ch == '#' || ch <= ' ' || ch >= 0x7f) {
            if (userinfo_end && p + i < userinfo_end)
                snprintf(err, errlen,
                         "mqtt url: a character of the user name or password "
                         "must be %%-escaped (or use mqtt.password_file)");
            else
                snprintf(err, errlen,
                         "mqtt url: unexpected '%c' (no path, query or spaces allowed)",
                         ch > ' ' && ch < 0x7f ? ch : '?');
            return -EINVAL;
        }
    }

    char *o = storage;
    char *end = storage + storagelen;
    const char *user = NULL, *pass = NULL;
    /* userinfo: up to the last '@' (a password may contain '@' when percent-encoded or not) */
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (p[i] == '@')
            at = p + i;
    const char *hp = p;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (ulen == 0) {
            snprintf(err, errlen, "mqtt url: empty user name before '@'");
            return -EINVAL;
        }
        user = o;
        int rc = mqtturl_pct_decode(p, ulen, &o, end);
        if (rc == 0 && colon) {
            pass = o;
            rc = mqtturl_pct_decode(colon + 1, (size_t)(at - colon - 1), &o, end);
        }
        if (rc) {
            snprintf(err, errlen,
                     rc == -ENOSPC ? "mqtt url: too long"
                                   : "mqtt url: bad %%-escape in user or password");
            return -EINVAL;
        }
        hp = at + 1;
    }
    size_t hplen = (size_t)(p + alen - hp);

    /* host */
    const char *h, *portstr = NULL;
    size_t hlen;
    if (hplen && hp[0] == '[') {
        const char *rb = memchr(hp, ']', hplen);
        if (!rb) {
            snprintf(err, errlen, "mqtt url: missing ']' after IPv6 address");
            return -EINVAL;
        }
        h = hp + 1;
        hlen = (size_t)(rb - h);
        if (hlen == 0) {
            snprintf(err, errlen, "mqtt url: empty IPv6 address");
            return -EINVAL;
        }
        for (size_t i = 0; i < hlen; i++) {
            char ch = h[i];
            if (!(mqtturl_hexval(ch) >= 0 || ch == ':' || ch == '.')) {
                snprintf(err, errlen, "mqtt url: bad character in IPv6 address");
                return -EINVAL;
            }
        }
        const char *after = rb + 1;
        if (after < hp + hplen) {
            if (*after != ':') {
                snprintf(err, errlen, "mqtt url: expected ':port' after ']'");
                return -EINVAL;
            }
            portstr = after + 1;
        }
    } else {
        h = hp;
        size_t ncolons = 0;
        for (size_t i = 0; i < hplen; i++)
            ncolons += hp[i] == ':';
        if (ncolons > 1) {
            snprintf(err, errlen,
                     "mqtt url: too many ':' (an IPv6 address needs [], e.g. mqtt://[::1]:1883)");
            return -EINVAL;
        }
        const char *colon = memchr(hp, ':', hplen);
        hlen = colon ? (size_t)(colon - hp) : hplen;
        if (colon)
            portstr = colon + 1;
        if (hlen == 0) {
            snprintf(err, errlen, "mqtt url: missing host");
            return -EINVAL;
        }
        for (size_t i = 0; i < hlen; i++) {
            char ch = h[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_')) {
                snprintf(err, errlen, "mqtt url: bad character '%c' in host", ch);
                return -EINVAL;
            }
        }
    }

    /* port */
    int port = tls ? MQTT_DEFAULT_PORT_TLS : MQTT_DEFAULT_PORT;
    if (portstr) {
        const char *pend = p + alen;
        size_t plen = (size_t)(pend - portstr);
        if (plen == 0 || plen > 5) {
            snprintf(err, errlen, "mqtt url: bad port");
            return -EINVAL;
        }
        port = 0;
        for (size_t i = 0; i < plen; i++) {
            if (portstr[i] < '0' || portstr[i] > '9') {
                snprintf(err, errlen, "mqtt url: port must be a number");
                return -EINVAL;
            }
            port = port * 10 + (portstr[i] - '0');
        }
        if (port < 1 || port > 65535) {
            snprintf(err, errlen, "mqtt url: port out of range 1..65535");
            return -EINVAL;
        }
    }

    if ((size_t)(end - o) < hlen + 1) {
        snprintf(err, errlen, "mqtt url: too long");
        return -EINVAL;
    }
    memcpy(o, h, hlen);
    o[hlen] = '\0';
    cfg->host = o;
    cfg->port = port;
    cfg->tls = tls;
    cfg->username = user;
    cfg->password = pass;
    return 0;
}
