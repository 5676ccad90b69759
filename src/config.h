/*
 * config.h — the gateway's configuration: defaults, a Lua config file, command-line flags.
 *
 * One table of option descriptors (config.c) is the single source of truth: it gives every
 * option its config-file key ("mqtt.keepalive"), its type, its default and its place in
 * struct config. The config file (-c) is Lua syntax evaluated in an empty sandbox (no
 * libraries), so comments, arithmetic and local variables work but nothing can touch the
 * system; unknown keys and wrong types are errors naming the key. Command-line flags are
 * applied after the file and win; `-o key=value` sets any option by its key.
 *
 * Secrets: the InfluxDB token comes from influx.token_file or $IIOTGW_INFLUX_TOKEN, the MQTT
 * password from the URL, mqtt.password_file or $IIOTGW_MQTT_PASSWORD. They are never logged,
 * and the environment variables are removed once read, so children never inherit them.
 *
 * Ownership: struct config owns every string in it; config_free() releases them.
 */
#ifndef IIOTGW_CONFIG_H
#define IIOTGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
    /* general */
    char **sources; /* source specs, see source.h */
    size_t nsources;
    char *rules;              /* rule file */
    char *prefix;             /* topic prefix, default "iiot" */
    char *log_level;          /* error|warn|info|debug */
    int64_t max_line;         /* bytes, default 4096 */
    double stats_interval;    /* seconds, default 30 (0 = off) */
    double tick_interval;     /* on_tick period, seconds, default 1 */
    double reload_debounce;   /* seconds, default 0.2 */
    int64_t rule_mem_limit;   /* bytes, default 32 MiB */
    int64_t rule_instr_limit; /* VM instructions per call, default 10M */
    double rule_time_limit;   /* wall-clock seconds per call, default 1 */
    char *lua_path;           /* require() search dirs, ';'-separated; unset = rules.h default */
    char *state_dir;          /* state directory (statedir.h); config_finish() resolves it:
                                 read it with config_state_dir() */
    char *deadletter_file;    /* JSON lines; "none" = off; unset = <state_dir>/deadletter.jsonl */
    int64_t deadletter_max_bytes; /* size cap of the file before it rotates, default 8 MiB */
    bool deadletter_topic;        /* also publish on <prefix>/gateway/deadletter, default true */
    double drain_timeout;         /* finite sources: max wait for acks after EOF, default 30 s */
    double shutdown_timeout;      /* SIGTERM: max wait for acks, default 5 s */
    char *gateway_id;             /* tag/client-id suffix, default: hostname */
    char *metrics;                /* Prometheus endpoint ADDR:PORT, or "none" (default) */
    bool dry_run;
    bool check;

    /* MQTT */
    char *mqtt_url; /* mqtt://[user[:pass]@]host[:port], mqtts://..., or "none" */
    char *mqtt_client_id;
    int64_t mqtt_protocol; /* 3 (3.1.1) or 5 */
    int64_t mqtt_keepalive;
    char *mqtt_cafile;
    char *mqtt_capath;
    char *mqtt_certfile;
    char *mqtt_keyfile;
    bool mqtt_tls_insecure;
    char *mqtt_password_file;
    bool mqtt_clean_session;
    int64_t mqtt_session_expiry;
    int64_t mqtt_queue_max_msgs;
    int64_t mqtt_queue_max_bytes;
    int64_t mqtt_max_inflight;
    double mqtt_backoff_base; /* reconnect delay: first, seconds (default 1) */
    double mqtt_backoff_max;  /* reconnect delay: cap, seconds (default 60) */

    /* InfluxDB */
    char *influx_url;   /* http(s)://host:port base URL, or "none" */
    int64_t influx_api; /* 2 or 1 (set to 1 by --influx-db) */
    char *influx_org;
    char *influx_bucket;
    char *influx_db;
    char *influx_rp;
    char *influx_token_file;
    int64_t influx_batch_lines;
    int64_t influx_batch_bytes;
    double influx_linger;
    bool influx_gzip;
    double influx_timeout;
    int64_t influx_queue_max_bytes;
    double influx_backoff_base; /* retry delay: first, seconds (default 1) */
    double influx_backoff_max;  /* retry delay: cap, seconds (default 60) */

    /* store-and-forward spool (docs/reliability.md) */
    char *spool_dir;             /* directory; unset = <state_dir>/spool; "none": sinks fed
                                    directly, nothing survives an outage or a restart */
    char *spool_fsync;           /* always | interval (default) | none */
    double spool_sync_interval;  /* seconds between spool ticks, default 0.1 */
    int64_t spool_max_bytes;     /* bound, default 256 MiB */
    int64_t spool_segment_bytes; /* default 8 MiB */
    double spool_replay_share;   /* 0..1, backlog's share of each sink's window, default 0.2 */
    char *spool_replay_prefix;   /* "none" (default) or a topic prefix for replayed messages */

    /* Home Assistant MQTT discovery (hadisc.h) */
    bool ha_discovery;              /* default false */
    char *ha_discovery_prefix;      /* default "homeassistant" */
    char *ha_discovery_support_url; /* origin support_url, default unset (omitted) */
    /* replay clock (clock.h, replay.h; docs/configuration.md "Replay clock") */
    char *clock_mode;    /* receive (default) | packet | log */
    char *clock_field;   /* packet field with the node's uptime, dotted path, default "ts" */
    char *clock_unit;    /* unit of that field: ns | us | ms (default) | s */
    char *clock_start;   /* ISO-8601 anchor of the first timed line; unset = mtime - span */
    char *clock_speed;   /* "max" (default) or N x the capture's pace */
    bool replay_retain;  /* keep rule retain flags under a replay clock (default false) */
    char *replay_prefix; /* "none" (default) or a topic level prepended to every topic */

    /* resolved secrets (never printed) */
    char *influx_token;
    char *mqtt_password;
};

/* Fill every field with its default. Returns 0 or -ENOMEM. */
int config_defaults(struct config *c);

/*
 * Load a Lua config file over the current values. Returns 0; -ENOENT/-EACCES when unreadable;
 * -EINVAL on a syntax error, unknown key or wrong type (err: "file:line: message" or
 * "file: key: message").
 */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Set one option by key ("mqtt.keepalive") from text. Returns 0 or -EINVAL (err set). */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen);

/* Append a source spec. Returns 0 or -ENOMEM. */
int config_add_source(struct config *c, const char *spec);
void config_clear_sources(struct config *c);

/*
 * Final checks, path defaults and secret resolution (token file / environment, password
 * file). Resolves state_dir (statedir.h) and makes the unset spool.dir and deadletter_file
 * point into it; refuses a missing default rule file (naming the path, suggesting -r).
 * Creates nothing. On success the secret environment variables are gone from the process
 * (config_scrub_env), so no exec: source inherits them. Returns 0 or -EINVAL with a message
 * (URLs quoted in it have their user:password@ redacted).
 */
int config_finish(struct config *c, char *err, size_t errlen);

/*
 * Overwrite and unset $IIOTGW_INFLUX_TOKEN and $IIOTGW_MQTT_PASSWORD: children started later
 * (exec: sources) and /proc/PID/environ no longer show them. Not thread-safe (setenv family):
 * call before any thread or child exists. Idempotent.
 */
void config_scrub_env(void);

/*
 * The resolved state directory (absolute, statedir.h): where a subsystem keeps files that must
 * survive the daemon — name them with statedir_file(config_state_dir(c), "name", ...). Valid
 * after config_finish() returned 0 (before, it is the configured value or NULL); the
 * directory itself exists once the daemon started (gateway_init creates and locks it; not
 * with --dry-run or --check).
 */
const char *config_state_dir(const struct config *c);

/* The rule file used when none is configured: IIOTGW_DATADIR/rules/default.lua. */
extern const char config_default_rules[];

/* clock.speed as a number: N > 0, or 0 for "max". Returns 0 or -EINVAL. */
int config_speed(const char *s, double *out);

/* True when an optional string option is off: NULL, "" or "none" (e.g. mqtt.url, spool.dir). */
bool config_is_none(const char *value);

void config_free(struct config *c);

#endif
