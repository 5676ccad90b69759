#!/bin/bash
# docker/influxdb/create-tokens.sh — mint the least-privilege InfluxDB tokens of the stack.
#
# Run by the one-shot `influxdb-tokens` service (influxdb image, so the influx CLI is there)
# after InfluxDB is healthy. Why a job and not /docker-entrypoint-initdb.d: init scripts run
# only on the very first start and as the influxdb user, who cannot chown files for other
# containers; this job also repairs a lost or stale token on every `up`.
#
# Produces, each 0400 and owned by the only user that reads it:
#   /tokens/gateway/influx.token   write-only on bucket $IIOT_BUCKET   (uid $GATEWAY_UID, iiotgw)
#   /tokens/grafana/influx.token   read-only on bucket $IIOT_BUCKET    (uid $GRAFANA_UID, grafana)
# An existing token is kept while InfluxDB still knows it (so restarts do not mint new ones).
# Also maps InfluxQL database $IIOT_BUCKET, retention policy autogen, to the bucket (DBRP), so
# Grafana's InfluxQL datasource (the default dashboards) can read it through the v1 API.
# Inputs (environment): INFLUX_HOST, INFLUX_ORG, INFLUX_TOKEN (operator token, read by the influx
# CLI itself), IIOT_BUCKET, GATEWAY_UID, GRAFANA_UID. Tokens are never printed.
set -euo pipefail

: "${INFLUX_HOST:?}" "${INFLUX_ORG:?}" "${INFLUX_TOKEN:?}" "${IIOT_BUCKET:?}"
: "${GATEWAY_UID:?}" "${GRAFANA_UID:?}"

log() { echo "influxdb-tokens: $*"; }

# ---------------------------------------------------------------------------------------------
# Wait for the server and the bucket (the healthcheck may pass a moment before setup finished).
# ---------------------------------------------------------------------------------------------
bucket_id=
for _ in $(seq 60); do
    if influx ping >/dev/null 2>&1; then
        bucket_id=$(influx bucket list --name "$IIOT_BUCKET" --hide-headers 2>/dev/null \
                    | awk 'NR == 1 { print $1 }') || true
        [ -n "$bucket_id" ] && break
    fi
    sleep 2
done
[ -n "$bucket_id" ] || { log "bucket $IIOT_BUCKET not found in org $INFLUX_ORG"; exit 1; }

# Every token InfluxDB currently knows; used to decide whether a stored token is still valid.
known=$(influx auth list --json)

# ---------------------------------------------------------------------------------------------
# ensure_token FILE UID DESCRIPTION PERMISSION-FLAG
# ---------------------------------------------------------------------------------------------
ensure_token() {
    local file=$1 uid=$2 desc=$3 perm=$4 tok tmp
    if [ -s "$file" ]; then
        tok=$(cat "$file")
        if grep -qF -- "\"$tok\"" <<<"$known"; then
            log "$desc: existing token still valid"
            chown "$uid" "$file" && chmod 0400 "$file"
            return 0
        fi
        log "$desc: stored token unknown to InfluxDB (data volume reset?), minting a new one"
    fi
    tok=$(influx auth create --description "$desc" "$perm" "$bucket_id" --json \
          | sed -n 's/^[[:space:]]*"token":[[:space:]]*"\([^"]*\)".*/\1/p')
    [ -n "$tok" ] || { log "$desc: influx auth create returned no token"; return 1; }
    tmp=$(mktemp "$(dirname "$file")/.token.XXXXXX")
    printf '%s' "$tok" > "$tmp"
    chown "$uid" "$tmp" && chmod 0400 "$tmp"
    mv -f "$tmp" "$file"
    log "$desc: token written to $file"
}

ensure_token /tokens/gateway/influx.token "$GATEWAY_UID" "iiotgw gateway (write $IIOT_BUCKET)" \
    --write-bucket
ensure_token /tokens/grafana/influx.token "$GRAFANA_UID" "grafana (read $IIOT_BUCKET)" \
    --read-bucket

# ---------------------------------------------------------------------------------------------
# DBRP mapping for InfluxQL: database "$IIOT_BUCKET", retention policy "autogen" -> the bucket.
# Kept when it exists (a virtual mapping of the same bucket counts too).
# ---------------------------------------------------------------------------------------------
if influx v1 dbrp list --db "$IIOT_BUCKET" --json 2>/dev/null | grep -q "\"$bucket_id\""; then
    log "dbrp $IIOT_BUCKET/autogen -> bucket $IIOT_BUCKET: exists"
else
    influx v1 dbrp create --db "$IIOT_BUCKET" --rp autogen --bucket-id "$bucket_id" --default >/dev/null
    log "dbrp $IIOT_BUCKET/autogen -> bucket $IIOT_BUCKET: created"
fi
