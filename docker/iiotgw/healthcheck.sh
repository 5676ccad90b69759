#!/bin/sh
# docker/iiotgw/healthcheck.sh — container healthcheck of the iiotgw service.
#
# Healthy means the gateway is connected to the broker: its retained status topic
# <prefix>/gateway/status reads "online" (the gateway's last will sets "offline"). That is the
# same signal MQTT consumers use, so Docker and the plant agree on what "up" means.
# Environment (all optional): IIOTGW_HEALTH_MQTT_HOST (mosquitto), IIOTGW_HEALTH_MQTT_PORT (1883),
# IIOTGW_PREFIX (iiot), IIOTGW_MQTT_USER and IIOTGW_MQTT_PASSWORD_FILE when the broker requires
# a password. Installed as /usr/local/bin/iiotgw-healthcheck by docker/Dockerfile.
set -eu

host=${IIOTGW_HEALTH_MQTT_HOST:-mosquitto}
port=${IIOTGW_HEALTH_MQTT_PORT:-1883}
topic="${IIOTGW_PREFIX:-iiot}/gateway/status"

if [ -n "${IIOTGW_MQTT_USER:-}" ]; then
    pw=$(cat "${IIOTGW_MQTT_PASSWORD_FILE:?IIOTGW_MQTT_PASSWORD_FILE must be set with IIOTGW_MQTT_USER}")
    status=$(mosquitto_sub -h "$host" -p "$port" -t "$topic" -C 1 -W 5 -u "$IIOTGW_MQTT_USER" -P "$pw")
else
    status=$(mosquitto_sub -h "$host" -p "$port" -t "$topic" -C 1 -W 5)
fi
[ "$status" = online ] || { echo "status topic $topic: ${status:-<none>}"; exit 1; }
