/*
 * main.c — command line, configuration, and the daemon's lifetime.
 *
 * Order: defaults -> config file (-c, else the installed one when it exists) -> command-line
 * flags (they win) -> paths and secrets resolved -> --check / run. Exit codes are the
 * GW_EXIT_* values in gateway.h.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "gateway.h"
#include "gwconfig.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "paramcli.h"
#include "rules.h"
#include "ruletest.h"
#include "source.h"
#include "statedir.h"
#include "watch.h"

#ifndef IIOTGW_SYSCONFDIR
#define IIOTGW_SYSCONFDIR "/etc/iiotgw"
#endif
/* Read when no -c is given and it exists (the package installs it). */
#define DEFAULT_CONFIG IIOTGW_SYSCONFDIR "/iiotgw.conf"

static const char usage[] =
    "Usage: iiotgw [OPTIONS]\n"
    "       iiotgw test FILE...\n"
    "Read telemetry lines from sources, run a Lua rule per packet, publish to MQTT and write\n"
    "InfluxDB line protocol.\n"
    "\n"
    "  -c, --config FILE          Lua config file (see docs/configuration.md), or none; without\n"
    "                               -c, " DEFAULT_CONFIG " is read when it exists\n"
    "                               ($IIOTGW_CONFIG names another default, or none)\n"
    "  -r, --rules FILE           rule script (default " IIOTGW_DATADIR "/rules/default.lua)\n"
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
    "      --state-dir DIR        state directory: spool, dead letters, lock (default\n"
    "                               $STATE_DIRECTORY, as root " STATEDIR_SYSTEM ", else\n"
    "                               $XDG_STATE_HOME/iiotgw or ~/.local/state/iiotgw)\n"
    "      --deadletter FILE      dead-letter JSON-lines file (default\n"
    "                               STATE_DIR/deadletter.jsonl, rotated), or none\n"
    "      --spool DIR            durable store-and-forward spool directory (default\n"
    "                               STATE_DIR/spool), or none (outputs in memory only: a\n"
    "                               burst, an outage or a restart can lose data); see\n"
    "                               docs/reliability.md\n"
    "      --metrics ADDR:PORT    serve Prometheus metrics on http://ADDR:PORT/metrics and\n"
    "                               /healthz, e.g. 127.0.0.1:9108, or none (default)\n"
    "      --clock MODE           receive (default): stamp lines when read; packet: from the\n"
    "                               packet's uptime field; log: from the log line's defmt\n"
    "                               timestamp (else the field); see docs/lab.md\n"
    "      --clock-start TIME     ISO-8601 time of the capture's first timed line (default:\n"
    "                               the capture file's mtime minus its span)\n"
    "      --clock-field PATH     packet field with the node's uptime (default ts)\n"
    "      --clock-unit U         unit of that field: ns, us, ms (default) or s\n"
    "      --speed N              replay files at N x the capture's pace (1 = real time);\n"
    "                               N = max (default): as fast as the sinks take it\n"
    "      --replay-retain        keep the rules' retain flags under a replay clock (default:\n"
    "                               replayed messages are never retained)\n"
    "      --replay-prefix P      publish every topic under P/ (keeps a replay off a live\n"
    "                               site's topics)\n"
    "  -o, --set KEY=VALUE        set any config option by key, e.g. -o mqtt.protocol=5;\n"
    "                               rule limits: rule_time_limit (seconds per rule call,\n"
    "                               default 1), rule_mem_limit, rule_instr_limit\n"
    "      --dry-run              no network: print what each packet would publish and write\n"
    "      --check                validate config and rules, report errors, exit 0/1\n"
    "      --log-level L          error, warn, info (default) or debug\n"
    "  -h, --help                 this help\n"
    "  -V, --version              print the version\n"
    "\n"
    "`iiotgw test FILE...` runs rule test files in-process on a virtual clock and exits 0\n"
    "(all passed), 1 (a test failed) or 2 (usage or test file error); see docs/rules.md,\n"
    "\"Rule tests\".\n"
    "\n"
    "Tunable parameters (docs/tuning.md): the rule's thresholds are changed at run time over\n"
    "MQTT (P/gateway/param/NAME[/NODE]/set), by editing STATE_DIR/params.conf + SIGHUP, or with\n"
    "    iiotgw param [-c FILE] [--state-dir DIR] list | get NAME [NODE] | set NAME [NODE] VALUE\n"
    "(see `iiotgw param --help`).\n"
    "\n"
    "On-site console (docs/tuning.md): what a running gateway publishes, live; q quits:\n"
    "    iiotgw watch [-c FILE] [--mqtt URL] [--prefix P]   (see `iiotgw watch --help`)\n"
    "Home Assistant discovery: ha_discovery = true (docs/configuration.md).\n"
    "\n"
    "Signals: SIGHUP re-reads the params file and reloads the rules, SIGUSR1 logs and\n"
    "publishes stats, SIGINT/SIGTERM shut down gracefully (a second one forces exit).\n"
    "Environment: IIOTGW_MQTT_PASSWORD, IIOTGW_INFLUX_TOKEN (secrets, removed once read);\n"
    "NOTIFY_SOCKET, WATCHDOG_USEC (systemd: READY/STOPPING/WATCHDOG notifications).\n"
    "Exit status: 0 ok; 1 configuration or rule error; 2 data left undelivered (drain timeout\n"
    "or queue drops); 3 fatal start-up error (also a full or failing disk); 4 another instance\n"
    "holds the state directory.\n";

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
    OPT_STATE_DIR,
    OPT_DRY_RUN,
    OPT_CHECK,
    OPT_LOG_LEVEL,
    OPT_METRICS,
    OPT_CLOCK,
    OPT_CLOCK_START,
    OPT_CLOCK_FIELD,
    OPT_CLOCK_UNIT,
    OPT_SPEED,
    OPT_REPLAY_RETAIN,
    OPT_REPLAY_PREFIX,
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
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"check", no_argument, NULL, OPT_CHECK},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"clock", required_argument, NULL, OPT_CLOCK},
    {"clock-start", required_argument, NULL, OPT_CLOCK_START},
    {"clock-field", required_argument, NULL, OPT_CLOCK_FIELD},
    {"clock-unit", required_argument, NULL, OPT_CLOCK_UNIT},
    {"speed", required_argument, NULL, OPT_SPEED},
    {"replay-retain", no_argument, NULL, OPT_REPLAY_RETAIN},
    {"replay-prefix", required_argument, NULL, OPT_REPLAY_PREFIX},
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
    case OPT_STATE_DIR:
        return "state_dir";
    case OPT_LOG_LEVEL:
        return "log_level";
    case OPT_METRICS:
        return "metrics";
    case OPT_CLOCK:
        return "clock.mode";
    case OPT_CLOCK_START:
        return "clock.start";
    case OPT_CLOCK_FIELD:
        return "clock.field";
    case OPT_CLOCK_UNIT:
        return "clock.unit";
    case OPT_SPEED:
        return "clock.speed";
    case OPT_REPLAY_PREFIX:
        return "replay.prefix";
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

/* --check: file: sources name files that exist and can be read (the daemon would fail). */
static bool check_file_sources(const struct config *cfg)
{
    bool ok = true;
    for (size_t i = 0; i < cfg->nsources; i++) {
        enum source_kind kind;
        char name[SOURCE_NAME_MAX], err[256];
        if (source_parse(cfg->sources[i], (int)i, &kind, name, sizeof name, err, sizeof err) ||
            kind != SOURCE_FILE)
            continue;
        /* The kind is the first "file:" of a valid spec: a name cannot contain ':'. */
        const char *path = strstr(cfg->sources[i], "file:") + 5;
        if (access(path, R_OK) < 0) {
            fprintf(stderr, "iiotgw: source %zu (%s): file %s: %s\n", i, name, path,
                    strerror(errno));
            ok = false;
        }
    }
    return ok;
}

/* --check: the state directory and the spool directory can be created, and the lock. */
static bool check_state(const struct config *cfg)
{
    char err[512];
    bool ok = true;
    if (statedir_probe(cfg->state_dir, err, sizeof err)) {
        fprintf(stderr, "iiotgw: state directory %s\n", err);
        ok = false;
    }
    if (!config_is_none(cfg->spool_dir) && statedir_probe(cfg->spool_dir, err, sizeof err)) {
        fprintf(stderr, "iiotgw: spool.dir: %s\n", err);
        ok = false;
    }
    /* A held lock is not an error here: --check is how an operator validates an edited
     * config while the service runs. It is reported, since a second daemon would refuse. */
    pid_t holder;
    if (ok && statedir_lock_probe(cfg->state_dir, &holder) == -EBUSY)
        fprintf(stderr,
                "iiotgw: note: state directory %s is in use by a running iiotgw (PID %ld); "
                "another instance on it would refuse to start (exit %d)\n",
                cfg->state_dir, (long)holder, GW_EXIT_LOCKED);
    return ok;
}

/* --check: everything that can be validated without touching the network. */
static int run_check(const struct config *cfg)
{
    char err[512];
    int bad = !check_sources(cfg);
    if (cfg->nsources == 0) {
        fprintf(stderr, "iiotgw: no sources: give at least one -s SPEC (or `sources` in the "
                        "config file)\n");
        bad = 1;
    }
    if (!bad && !check_file_sources(cfg))
        bad = 1;
    if (!cfg->dry_run && !check_state(cfg))
        bad = 1;
    if (!config_is_none(cfg->mqtt_url)) {
        struct mqtt_config mc;
        char storage[1024];
        if (gwconfig_mqtt(cfg, NULL, &mc, storage, sizeof storage, err, sizeof err)) {
            fprintf(stderr, "iiotgw: mqtt.url: %s\n", err);
            bad = 1;
        } else if (mqtt_check_config(&mc, err, sizeof err)) {
            fprintf(stderr, "iiotgw: mqtt: %s\n", err);
            bad = 1;
        }
    }
    if (!config_is_none(cfg->metrics) && metrics_check_addr(cfg->metrics, err, sizeof err)) {
        fprintf(stderr, "iiotgw: %s\n", err);
        bad = 1;
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
 * fatal start-up error (3) and its paths leave `err` unwritten, as are a full or failing disk
 * (-ENOSPC, -EDQUOT, -EIO: the state directory or spool could not be set up); -EBUSY is a
 * state directory or spool held by another instance (4); everything else is a configuration
 * error (1). The message is in `err`.
 */
static int start_error(int rc, const char *err)
{
    bool oom = rc == -ENOMEM;
    fprintf(stderr, "iiotgw: %s\n", oom ? "out of memory" : err);
    if (rc == -EBUSY)
        return GW_EXIT_LOCKED;
    /* A full or failing disk under the state directory or spool may clear by itself: exit
     * 3, which a service manager restarts (exit 1 it does not: the unit's
     * RestartPreventExitStatus=1). */
    if (oom || rc == -ENOSPC || rc == -EDQUOT || rc == -EIO)
        return GW_EXIT_FATAL;
    return GW_EXIT_CONFIG;
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[512] = "";
    int rc;
    int code = GW_EXIT_CONFIG;
    const char *config_file = NULL;
    bool cli_sources = false;

    /* A subcommand, not the daemon: talks to the running gateway. */
    if (argc > 1 && strcmp(argv[1], "param") == 0)
        return paramcli_main(argc - 1, argv + 1);

    /* A subcommand, not an option: its arguments are test files, not daemon flags. */
    if (argc >= 2 && strcmp(argv[1], "test") == 0)
        return ruletest_main(argc - 1, argv + 1);

    /* Subcommands: `iiotgw watch ...` is the console (watch.c), not the daemon. */
    if (argc > 1 && strcmp(argv[1], "watch") == 0)
        return watch_main(argc - 1, argv + 1);

    if (config_defaults(&cfg)) {
        fprintf(stderr, "iiotgw: out of memory\n");
        return GW_EXIT_FATAL;
    }

    /* Pass 1: find -c, so the file is applied before the other flags override it. */
    int opt;
    bool info_only = false;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "c:r:s:o:hV", long_opts, NULL)) != -1) {
        if (opt == 'c')
            config_file = optarg;
        else if (opt == 'h' || opt == 'V')
            info_only = true;
    }
    /* Without -c the installed config applies when it exists, so the installed daemon needs
     * no path option; $IIOTGW_CONFIG replaces that default (tests isolate themselves from an
     * installed config with IIOTGW_CONFIG=none). --help and --version read nothing. */
    bool implicit = false;
    if (!config_file && !info_only) {
        const char *env = getenv("IIOTGW_CONFIG");
        if (env && *env)
            config_file = env;
        else if (access(DEFAULT_CONFIG, F_OK) == 0)
            config_file = DEFAULT_CONFIG;
        implicit = config_file != NULL;
    }
    if (config_is_none(config_file))
        config_file = NULL;
    if (config_file && (rc = config_load_file(&cfg, config_file, err, sizeof err))) {
        code = start_error(rc, err);
        goto out;
    }
    if (config_file && implicit)
        log_info("config_default", "file=%s hint=\"-c none reads no config file\"", config_file);

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
        case OPT_REPLAY_RETAIN:
            cfg.replay_retain = true;
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
        log_error("start_failed", "rc=%d error=%s", rc,
                  log_q(rc == -ENOMEM ? "out of memory" : err));
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
