#!/usr/bin/env bash
# tests/demo.sh — set everything up and run the demo (Debian 12, as root):
#
#   bash tests/demo.sh
#
# 1. installs the Debian packages (tests/setup.sh), 2. builds iiotgw (cmake), 3. starts a
# local mosquitto and VictoriaMetrics (InfluxDB line protocol) on free loopback ports,
# 4. subscribes to iiot/# with mosquitto_sub, 5. replays the sample probe-rs RTT session
# (../shared/data/probe-rs-session.log) through iiotgw with the default rule, 6. shows what
# arrived (topics, retained values, stored series), 7. stops the servers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sample=${1:-$root/../shared/data/probe-rs-session.log}

bash tests/setup.sh all
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target iiotgw >/dev/null
echo "built: $(build/iiotgw --version)"

work=$(mktemp -d /tmp/iiotgw-demo.XXXXXX)
sub_pid=
cleanup() {
    [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null || true
    bash tests/servers.sh stop "$work/servers" || true
    rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash tests/servers.sh start "$work/servers")"
mqtt="mqtt://$IIOTGW_TEST_MQTT_HOST:$IIOTGW_TEST_MQTT_PORT"
echo "mosquitto on $mqtt, VictoriaMetrics on $IIOTGW_TEST_VM_URL"

# What a subscriber sees (the README's example):  mosquitto_sub -v -t 'iiot/#'
mosquitto_sub -h "$IIOTGW_TEST_MQTT_HOST" -p "$IIOTGW_TEST_MQTT_PORT" -v -t 'iiot/#' \
    >"$work/sub.txt" &
sub_pid=$!
sleep 0.3

echo "replaying $sample ..."
set +e
build/iiotgw -r rules/default.lua -s "rx=file:$sample" --mqtt "$mqtt" \
    --influx "$IIOTGW_TEST_VM_URL" --influx-org my-org --influx-bucket telemetry \
    --deadletter "$work/deadletter.jsonl" -o influx.linger=0.2 2>"$work/iiotgw.log"
code=$?
set -e
sleep 0.5
kill "$sub_pid" 2>/dev/null || true
sub_pid=

echo
echo "iiotgw exit code: $code (0 = everything acknowledged by the broker and the database)"
grep -E 'event=(exit|stats)' "$work/iiotgw.log" | tail -2
echo
echo "--- first MQTT messages (mosquitto_sub -v -t 'iiot/#') ---"
# (head closes the pipe early: keep pipefail from ending the demo here)
{ grep -v '^iiot/gateway/' "$work/sub.txt" | head -12; } || true
echo "... $(grep -vc '^iiot/gateway/' "$work/sub.txt" || true) messages in total"
echo
echo "--- retained current values (what a new subscriber gets at once) ---"
mosquitto_sub -h "$IIOTGW_TEST_MQTT_HOST" -p "$IIOTGW_TEST_MQTT_PORT" -v -t 'iiot/#' \
    --retained-only -W 1 2>/dev/null | sort || true
echo
echo "--- dead-letter (lines the gateway could not use, kept with source and line) ---"
cut -c1-160 "$work/deadletter.jsonl" || true
echo
echo "--- series stored in VictoriaMetrics (InfluxDB line protocol, one point per reading) ---"
curl -s "$IIOTGW_TEST_VM_URL/internal/force_flush" >/dev/null || true
# Fresh points become searchable after a moment: wait (bounded) until they are.
for _ in $(seq 50); do
    [ -n "$(curl -s -G "$IIOTGW_TEST_VM_URL/api/v1/export" --data-urlencode 'match[]={__name__="temperature_value"}')" ] && break
    sleep 0.1
done
curl -s -G "$IIOTGW_TEST_VM_URL/api/v1/export" --data-urlencode 'match[]={__name__=~".+_value"}' |
    /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    s = json.loads(line)
    m = s["metric"]
    tags = ",".join("%s=%s" % (k, v) for k, v in sorted(m.items()) if k not in ("__name__", "db"))
    # (a replay is faster than the ms resolution VictoriaMetrics stores, so show the range)
    print("%-26s %-28s %4d points, %s .. %s" % (m["__name__"], tags, len(s["values"]),
                                              min(s["values"]), max(s["values"])))
'
exit "$code"
