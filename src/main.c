/*
 * main.c — command line, configuration, and the daemon's lifetime.
 *
 * Order: defaults -> config file (-c) -> command-line flags (they win) -> secrets resolved ->
 * --check / run. Exit codes are the GW_EXIT_* values in gateway.h.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <ev.h>

#include "config.h"
#include "gateway.h"
#include "gwconfig.h"
#include "log.h"
#include "mqtt.h"
#include "rules.h"
#include "source.h"
#include "watch.h"

static const char usage[] =
    "Usage: iiotgw [OPTIONS]\n"
    "       iiotgw watch [-c FILE] [--mqtt URL] [--prefix P]   live console (iiotgw watch -h)\n"
    "Read telemetry lines from sources, run a Lua rule per packet, publish to MQTT and write\n"
    "InfluxDB line protocol.\n"
    "\n"
    "  -c, --config FILE          Lua config file (see docs/configuration.md)\n"
    "  -r, --rules FILE           rule script (default rules/default.lua)\n"
    "  -s, --source SPEC          a source, repeatable; replaces the config file's sources:\n"
    "                               [NAME=]exec:CMD | serial:DEV[:BAUD] | tcp:HOST:PORT |\n"
    "                               file:PATH | stdin\n"
    "      --mqtt URL             mqtt://[user[:pass]@]host[:port], mqtts://..., or none\n"
    "                               (default mqtt://localhost:1883)\n"
    "      --influx URL           InfluxDB base URL (http://host:8086), or none (default)\n"
    "      --influx-org ORG       v2 API organisation\n"
    "      --influx-bucket B      v2 API bucket\n"
    "      --influx-db DB         v1 API database (selects the v1 /write API)\n"
    "      --influx-token-file F  file holding the token (or set IIOTGW_INFLUX_TOKEN)\n"
    "      --prefix P             topic prefix (default iiot): the rules' gw.prefix, and the\n"
    "                               gateway's own topics live under P/gateway/\n"
    "      --deadletter FILE      dead-letter JSON-lines file, or none\n"
    "      --spool DIR            durable store-and-forward spool directory, or none\n"
    "                               (default); see docs/reliability.md\n"
    "  -o, --set KEY=VALUE        set any config option by key, e.g. -o mqtt.protocol=5\n"
    "      --dry-run              no network: print what each packet would publish and write\n"
    "      --check                validate config and rules, report errors, exit 0/1\n"
    "      --log-level L          error, warn, info (default) or debug\n"
    "  -h, --help                 this help\n"
    "  -V, --version              print the version\n"
    "\n"
    "Signals: SIGHUP reloads the rules, SIGUSR1 logs and publishes stats, SIGINT/SIGTERM\n"
    "shut down gracefully (a second one forces exit).\n"
    "Exit status: 0 ok; 1 configuration or rule error; 2 data left undelivered (drain timeout\n"
    "or queue drops); 3 fatal start-up error.\n";

enum {
    OPT_MQTT = 256,
    OPT_INFLUX,
    OPT_INFLUX_ORG,
    OPT_INFLUX_BUCKET,
    OPT_INFLUX_DB,
    OPT_INFLUX_TOKEN_FILE,
    OPT_PREFIX,
    OPT_DEADLETTER,
    OPT_SPOOL,
    OPT_DRY_RUN,
    OPT_CHECK,
    OPT_LOG_LEVEL,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"rules", required_argument, NULL, 'r'},
    {"source", required_argument, NULL, 's'},
    {"set", required_argument, NULL, 'o'},
    {"mqtt", required_argument, NULL, OPT_MQTT},
    {"influx", required_argument, NULL, OPT_INFLUX},
    {"influx-org", required_argument, NULL, OPT_INFLUX_ORG},
    {"influx-bucket", required_argument, NULL, OPT_INFLUX_BUCKET},
    {"influx-db", required_argument, NULL, OPT_INFLUX_DB},
    {"influx-token-file", required_argument, NULL, OPT_INFLUX_TOKEN_FILE},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"deadletter", required_argument, NULL, OPT_DEADLETTER},
    {"spool", required_argument, NULL, OPT_SPOOL},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"check", no_argument, NULL, OPT_CHECK},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Map a flag to its config key: one table, so flags and config-file keys cannot drift. */
static const char *flag_key(int opt)
{
    switch (opt) {
    case 'r':
        return "rules";
    case OPT_MQTT:
        return "mqtt.url";
    case OPT_INFLUX:
        return "influx.url";
    case OPT_INFLUX_ORG:
        return "influx.org";
    case OPT_INFLUX_BUCKET:
        return "influx.bucket";
    case OPT_INFLUX_DB:
        return "influx.db";
    case OPT_INFLUX_TOKEN_FILE:
        return "influx.token_file";
    case OPT_PREFIX:
        return "prefix";
    case OPT_DEADLETTER:
        return "deadletter_file";
    case OPT_SPOOL:
        return "spool.dir";
    case OPT_LOG_LEVEL:
        return "log_level";
    }
    return NULL;
}

/*
 * Parse every source spec and check that names are unique (source_parse leaves that to its
 * caller; docs/sources.md promises it). Each problem is printed. Returns true when all is well.
 * Used by --check and before a run, so both refuse the same configurations.
 */
static bool check_sources(const struct config *cfg)
{
    char err[512];
    bool ok = true;
    char(*names)[SOURCE_NAME_MAX] = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *names);
    if (!names) {
        fprintf(stderr, "iiotgw: out of memory\n");
        return false;
    }
    for (size_t i = 0; i < cfg->nsources; i++) {
        if (source_parse(cfg->sources[i], (int)i, NULL, names[i], sizeof names[i], err,
                         sizeof err)) {
            fprintf(stderr, "iiotgw: source %zu: %s\n", i, err);
            names[i][0] = '\0';
            ok = false;
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                fprintf(stderr,
                        "iiotgw: source %zu: name \"%s\" is already used by source %zu "
                        "(names must be unique: NAME=KIND:ARG)\n",
                        i, names[i], j);
                ok = false;
                break;
            }
        }
    }
    free(names);
    return ok;
}

/* --check: everything that can be validated without touching the network. */
static int run_check(const struct config *cfg)
{
    char err[512];
    int bad = !check_sources(cfg);
    if (!config_is_none(cfg->mqtt_url)) {
        struct mqtt_config mc;
        char storage[1024];
        if (gwconfig_mqtt(cfg, NULL, &mc, storage, sizeof storage, err, sizeof err)) {
            fprintf(stderr, "iiotgw: mqtt.url: %s\n", err);
            bad = 1;
        }
    }
    struct rules *r = NULL;
    struct rule_sink sink = {0};
    struct rules_config rc;
    gwconfig_rules(cfg, &rc);
    if (rules_open(&r, &rc, &sink, err, sizeof err)) {
        fprintf(stderr, "iiotgw: rules: %s\n", err);
        bad = 1;
    } else {
        rules_close(r);
    }
    if (!bad)
        printf("iiotgw: configuration and rules %s are valid\n", cfg->rules);
    return bad ? GW_EXIT_CONFIG : GW_EXIT_OK;
}

/*
 * A start-up step failed with `rc`: print why and return the exit code. Out of memory is the
 * fatal start-up error (3) and its paths leave `err` unwritten; everything else is a
 * configuration error (1), with the message in `err`.
 */
static int start_error(int rc, const char *err)
{
    bool oom = rc == -ENOMEM;
    fprintf(stderr, "iiotgw: %s\n", oom ? "out of memory" : err);
    return oom ? GW_EXIT_FATAL : GW_EXIT_CONFIG;
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[512] = "";
    int rc;
    int code = GW_EXIT_CONFIG;
    const char *config_file = NULL;
    bool cli_sources = false;

    /* Subcommands: `iiotgw watch ...` is the console (watch.c), not the daemon. */
    if (argc > 1 && strcmp(argv[1], "watch") == 0)
        return watch_main(argc - 1, argv + 1);

    if (config_defaults(&cfg)) {
        fprintf(stderr, "iiotgw: out of memory\n");
        return GW_EXIT_FATAL;
    }

    /* Pass 1: find -c, so the file is applied before the other flags override it. */
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "c:r:s:o:hV", long_opts, NULL)) != -1)
        if (opt == 'c')
            config_file = optarg;
    if (config_file && (rc = config_load_file(&cfg, config_file, err, sizeof err))) {
        code = start_error(rc, err);
        goto out;
    }

    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "c:r:s:o:hV", long_opts, NULL)) != -1) {
        const char *key = flag_key(opt);
        rc = 0;
        switch (opt) {
        case 'c':
            break;
        case 'h':
            fputs(usage, stdout);
            code = GW_EXIT_OK;
            goto out;
        case 'V':
            printf("iiotgw %s\n", IIOTGW_VERSION);
            code = GW_EXIT_OK;
            goto out;
        case 's':
            if (!cli_sources)
                config_clear_sources(&cfg);
            cli_sources = true;
            rc = config_add_source(&cfg, optarg);
            break;
        case 'o': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "iiotgw: -o expects KEY=VALUE, got \"%s\"\n", optarg);
                goto out;
            }
            *eq = '\0';
            rc = config_set(&cfg, optarg, eq + 1, err, sizeof err);
            *eq = '=';
            break;
        }
        case OPT_DRY_RUN:
            cfg.dry_run = true;
            break;
        case OPT_CHECK:
            cfg.check = true;
            break;
        case OPT_INFLUX_DB:
            rc = config_set(&cfg, key, optarg, err, sizeof err);
            if (!rc)
                cfg.influx_api = 1;
            break;
        default:
            if (!key) {
                fputs(usage, stderr);
                goto out;
            }
            rc = config_set(&cfg, key, optarg, err, sizeof err);
            break;
        }
        if (rc) {
            code = start_error(rc, err);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "iiotgw: unexpected argument \"%s\" (sources go after -s)\n", argv[optind]);
        goto out;
    }
    if ((rc = config_finish(&cfg, err, sizeof err))) {
        code = start_error(rc, err);
        goto out;
    }
    log_set_level(log_level_parse(cfg.log_level));

    if (cfg.check) {
        code = run_check(&cfg);
        goto out;
    }
    if (cfg.nsources == 0) {
        fprintf(stderr, "iiotgw: no sources: give at least one -s SPEC (or `sources` in the "
                        "config file); see --help\n");
        goto out;
    }
    if (!check_sources(&cfg))
        goto out;

    signal(SIGPIPE, SIG_IGN);
    /* Become the reaper of our descendants: when an exec source's shell dies, its orphaned
     * children are re-parented to us instead of to PID 1 (which, in containers, often never
     * reaps), and libev's SIGCHLD handler reaps them. No zombies, whatever CMD forks. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* The default loop: exec sources need ev_child, which only the default loop supports. */
    struct ev_loop *loop = EV_DEFAULT;
    if (!loop) {
        fprintf(stderr, "iiotgw: cannot create the event loop\n");
        code = GW_EXIT_FATAL;
        goto out;
    }
    struct gateway gw;
    if ((rc = gateway_init(&gw, loop, &cfg, err, sizeof err))) {
        code = start_error(rc, err);
        log_error("start_failed", "rc=%d error=\"%s\"", rc, rc == -ENOMEM ? "out of memory" : err);
        gateway_free(&gw);
        goto out;
    }
    code = gateway_run(&gw);
    gateway_free(&gw);
    ev_loop_destroy(loop);
out:
    config_free(&cfg);
    return code;
}
