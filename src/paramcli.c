/*
 * paramcli.c — `iiotgw param list|get|set`: the terminal route to the tunable parameters of
 * the running gateway, through its control socket (paramsrv.h has the protocol).
 *
 * Why a socket and not the broker: it works on a site without broker access, and the socket
 * file's permissions (0660 in the state directory) are an access control every technician's
 * account already understands (be the gateway's user or in its group). The socket is found
 * the way the daemon finds its state directory (statedir.h): --state-dir, else the config
 * file's state_dir, else the same environment rules; --socket names it directly.
 */
#include "paramcli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "statedir.h"

#define CLI_EXIT_OK      0
#define CLI_EXIT_REFUSED 1 /* refused, unknown param, or bad usage */
#define CLI_EXIT_NOCONN  2 /* no gateway answering */

static const char cli_usage[] =
    "Usage: iiotgw param [-c FILE] [--state-dir DIR] [--socket PATH] COMMAND\n"
    "See and change the rule's tunable parameters in the running gateway (docs/tuning.md).\n"
    "\n"
    "Commands:\n"
    "  list                       every parameter: value, default, range, step, unit, set by\n"
    "  get NAME [NODE]            the value in force\n"
    "  set NAME [NODE] VALUE      change it (VALUE \"default\" resets); prints old -> new or\n"
    "                               why it was refused\n"
    "Options:\n"
    "  -c, --config FILE          the gateway's config file (for its state_dir)\n"
    "      --state-dir DIR        the gateway's state directory (holds params.sock)\n"
    "      --socket PATH          the control socket itself\n"
    "Exit status: 0 done; 1 refused or bad usage; 2 no gateway answering.\n";

/* The socket path from the options, the config file, or the state directory rules. */
static int cli_socket_path(const char *config_file, const char *state_dir, char *out, size_t outlen)
{
    char err[512];
    struct config cfg;
    if (config_defaults(&cfg)) {
        fprintf(stderr, "iiotgw param: out of memory\n");
        return -ENOMEM;
    }
    int rc = 0;
    if (config_file && (rc = config_load_file(&cfg, config_file, err, sizeof err))) {
        fprintf(stderr, "iiotgw param: %s\n", err);
        goto out;
    }
    struct statedir_env env;
    statedir_env_get(&env);
    char dir[4096];
    rc = statedir_resolve(state_dir ? state_dir : cfg.state_dir, &env, dir, sizeof dir, err,
                          sizeof err);
    if (rc) {
        fprintf(stderr, "iiotgw param: state directory: %s\n", err);
        goto out;
    }
    if ((rc = statedir_file(dir, "params.sock", out, outlen)))
        fprintf(stderr, "iiotgw param: state directory %s: path too long\n", dir);
out:
    config_free(&cfg);
    return rc;
}

static int cli_request(const char *path, const char *req)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "iiotgw param: socket path %s is too long\n", path);
        return CLI_EXIT_NOCONN;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (e == EACCES || e == EPERM)
            fprintf(stderr,
                    "iiotgw param: %s: permission denied (the gateway's user and group may use "
                    "it; see docs/tuning.md)\n",
                    path);
        else if (e == ENOENT || e == ECONNREFUSED)
            fprintf(stderr, "iiotgw param: no gateway is running with the control socket %s\n",
                    path);
        else
            fprintf(stderr, "iiotgw param: %s: %s\n", path, strerror(e));
        return CLI_EXIT_NOCONN;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t len = strlen(req);
    if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        fprintf(stderr, "iiotgw param: %s: %s\n", path, strerror(errno));
        close(fd);
        return CLI_EXIT_NOCONN;
    }
    char *resp = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            char *nr = realloc(resp, cap + 65536);
            if (!nr)
                break;
            resp = nr;
            cap += 65536;
        }
        ssize_t got = recv(fd, resp + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (!resp || n == 0) {
        fprintf(stderr, "iiotgw param: the gateway closed the connection without an answer\n");
        free(resp);
        return CLI_EXIT_NOCONN;
    }
    resp[n] = '\0';
    char *body = strchr(resp, '\n');
    body = body ? body + 1 : resp + n;
    int code;
    if (!strncmp(resp, "ok\n", 3)) {
        fputs(body, stdout);
        code = CLI_EXIT_OK;
    } else {
        char *nl = strchr(resp, '\n');
        if (nl)
            *nl = '\0';
        fprintf(stderr, "iiotgw param: %s\n", !strncmp(resp, "error: ", 7) ? resp + 7 : resp);
        code = CLI_EXIT_REFUSED;
    }
    free(resp);
    return code;
}

int paramcli_main(int argc, char **argv)
{
    const char *config_file = NULL, *state_dir = NULL, *sock = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(cli_usage, stdout);
            return CLI_EXIT_OK;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--config"))
            dst = &config_file;
        else if (!strcmp(a, "--state-dir"))
            dst = &state_dir;
        else if (!strcmp(a, "--socket"))
            dst = &sock;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "iiotgw param: %s %s\n%s", a,
                    dst ? "needs an argument" : "is not an option", cli_usage);
            return CLI_EXIT_REFUSED;
        }
        *dst = argv[++i];
    }
    int nargs = argc - i;
    const char *verb = nargs > 0 ? argv[i] : "";
    bool ok = (!strcmp(verb, "list") && nargs == 1) ||
              (!strcmp(verb, "get") && (nargs == 2 || nargs == 3)) ||
              (!strcmp(verb, "set") && (nargs == 3 || nargs == 4));
    if (!ok) {
        fputs(cli_usage, stderr);
        return CLI_EXIT_REFUSED;
    }
    char req[1024] = "";
    for (int k = i; k < argc; k++) {
        if (!*argv[k] || strpbrk(argv[k], " \t\r\n")) {
            fprintf(stderr, "iiotgw param: \"%s\": names and values have no spaces\n", argv[k]);
            return CLI_EXIT_REFUSED;
        }
        size_t l = strlen(req);
        if (l + strlen(argv[k]) + 2 >= sizeof req) {
            fprintf(stderr, "iiotgw param: request too long\n");
            return CLI_EXIT_REFUSED;
        }
        snprintf(req + l, sizeof req - l, "%s%s", k > i ? " " : "", argv[k]);
    }
    strcat(req, "\n");
    char path[4096];
    if (sock)
        snprintf(path, sizeof path, "%s", sock);
    else if (cli_socket_path(config_file, state_dir, path, sizeof path))
        return CLI_EXIT_REFUSED;
    return cli_request(path, req);
}
