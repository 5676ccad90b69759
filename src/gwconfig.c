/*
 * gwconfig.c — config.h -> the modules' config structs. See gwconfig.h.
 */
#include "gwconfig.h"

#include <stdio.h>

#include "forward.h"
#include "influx.h"
#include "mqtt.h"
#include "rules.h"
#include "spool.h"

void gwconfig_topics(const struct config *c, struct gw_topics *t)
{
    /* replay.prefix moves the gateway's own topics too: a replay must not mark a live
     * gateway offline or overwrite its retained rule status. */
    const char *rp = config_is_none(c->replay_prefix) ? "" : c->replay_prefix;
    const char *sep = *rp ? "/" : "";
    snprintf(t->status, sizeof t->status, "%s%s%s/gateway/status", rp, sep, c->prefix);
    snprintf(t->stats, sizeof t->stats, "%s%s%s/gateway/stats", rp, sep, c->prefix);
    snprintf(t->rules, sizeof t->rules, "%s%s%s/gateway/rules", rp, sep, c->prefix);
    snprintf(t->deadletter, sizeof t->deadletter, "%s%s%s/gateway/deadletter", rp, sep, c->prefix);
    snprintf(t->spool, sizeof t->spool, "%s%s%s/gateway/spool", rp, sep, c->prefix);
}

int gwconfig_mqtt(const struct config *c, const char *status_topic, struct mqtt_config *mc,
                  char *storage, size_t storagelen, char *err, size_t errlen)
{
    *mc = (struct mqtt_config){0};
    int rc = mqtt_parse_url(c->mqtt_url, mc, storage, storagelen, err, errlen);
    if (rc)
        return rc;
    mc->cafile = c->mqtt_cafile;
    mc->capath = c->mqtt_capath;
    mc->certfile = c->mqtt_certfile;
    mc->keyfile = c->mqtt_keyfile;
    mc->tls_insecure = c->mqtt_tls_insecure;
    if (c->mqtt_password)
        mc->password = c->mqtt_password;
    mc->client_id = c->mqtt_client_id;
    mc->protocol = (int)c->mqtt_protocol;
    mc->keepalive = (int)c->mqtt_keepalive;
    mc->clean_session = c->mqtt_clean_session;
    mc->session_expiry = (unsigned)c->mqtt_session_expiry;
    mc->status_topic = status_topic;
    mc->queue_max_msgs = (size_t)c->mqtt_queue_max_msgs;
    mc->queue_max_bytes = (size_t)c->mqtt_queue_max_bytes;
    mc->max_inflight = (unsigned)c->mqtt_max_inflight;
    mc->backoff_base = c->mqtt_backoff_base;
    mc->backoff_max = c->mqtt_backoff_max;
    mc->replay_prefix = config_is_none(c->spool_replay_prefix) ? NULL : c->spool_replay_prefix;
    return 0;
}

void gwconfig_influx(const struct config *c, struct influx_config *ic)
{
    *ic = (struct influx_config){
        .url = c->influx_url,
        .api = (int)c->influx_api,
        .org = c->influx_org,
        .bucket = c->influx_bucket,
        .db = c->influx_db,
        .rp = c->influx_rp,
        .token = c->influx_token,
        .batch_lines = (size_t)c->influx_batch_lines,
        .linger = c->influx_linger,
        .gzip = c->influx_gzip,
        .timeout = c->influx_timeout,
        .queue_max_bytes = (size_t)c->influx_queue_max_bytes,
        .backoff_base = c->influx_backoff_base,
        .backoff_max = c->influx_backoff_max,
    };
}

void gwconfig_forward(const struct config *c, const char *status_topic, struct forward_config *fc)
{
    /* MQTT: two sink windows of in-flight messages, so the next batch is queued while the
     * previous one is being acknowledged; never more than the sink's FIFO holds, or the
     * pump itself would make the sink drop messages. */
    int64_t mw = 2 * c->mqtt_max_inflight;
    if (mw > c->mqtt_queue_max_msgs)
        mw = c->mqtt_queue_max_msgs;
    *fc = (struct forward_config){
        .dir = c->dry_run ? NULL : c->spool_dir,
        .fsync = spool_fsync_parse(c->spool_fsync),
        .sync_interval = c->spool_sync_interval,
        .max_bytes = (uint64_t)c->spool_max_bytes,
        .segment_bytes = (uint64_t)c->spool_segment_bytes,
        .replay_share = c->spool_replay_share,
        .status_topic = status_topic,
        .open_required = true,
    };
    fc->window[FWD_MQTT] = (size_t)mw;
    /* InfluxDB: four batches, one in flight and three filling behind it. */
    fc->window[FWD_INFLUX] = (size_t)(4 * c->influx_batch_lines);
}

void gwconfig_rules(const struct config *c, struct rules_config *rc)
{
    *rc = (struct rules_config){
        .path = c->rules,
        .prefix = c->prefix,
        .mem_limit = (size_t)c->rule_mem_limit,
        .instr_limit = (uint64_t)c->rule_instr_limit,
        .time_limit = c->rule_time_limit,
        .lua_path = c->lua_path,
    };
}
