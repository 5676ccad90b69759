#!/usr/bin/env bash
# tests/demo.sh — set everything up and run the demo (Debian 12, as root):
#
#   bash tests/demo.sh [CAPTURE]
#
# 1. installs the Debian packages (tests/setup.sh), 2. builds iiotgw (cmake), 3. starts a
# local mosquitto and VictoriaMetrics (InfluxDB line protocol) on free loopback ports,
# 4. subscribes to iiot/# with mosquitto_sub, 5. replays the sample probe-rs RTT session
# (tests/data/probe-rs-session.log, or CAPTURE) through iiotgw with the default rule, 6. shows
# what arrived (topics, retained values, stored series) and checks that every packet of the
# sample arrived, 7. stops the servers and removes its temporary directory.
# Exit status 0 only if all of that worked; on a failure it says which step failed and shows
# the end of that step's log before cleaning up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sample=${1:-$root/tests/data/probe-rs-session.log}
expected=
[ -z "${1:-}" ] && expected=$root/tests/data/probe-rs-session.expected.jsonl

work=$(mktemp -d /tmp/iiotgw-demo.XXXXXX)
sub_pid=
cleanup() {
    if [ -n "$sub_pid" ]; then kill "$sub_pid" 2>/dev/null || true; fi
    bash tests/servers.sh stop "$work/servers" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# fail STEP LOG...: say what failed, show the end of the logs that tell why, exit 1
# (the EXIT trap then stops the servers and removes $work).
fail() {
    local step=$1 f
    shift
    echo >&2
    echo "demo: FAILED: $step" >&2
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "--- last lines of ${f#"$work"/} ---" >&2
        tail -n 30 "$f" >&2
    done
    exit 1
}

[ -r "$sample" ] || fail "capture $sample not readable"
echo "demo: installing missing Debian packages (tests/setup.sh)"
bash tests/setup.sh all >"$work/setup.log" 2>&1 || fail "package installation" "$work/setup.log"
echo "demo: building iiotgw"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/build.log" 2>&1 ||
    fail "cmake configure" "$work/build.log"
cmake --build build -j"$(nproc)" --target iiotgw >>"$work/build.log" 2>&1 ||
    fail "build" "$work/build.log"
echo "built: $(build/iiotgw --version)"

env_out=$(bash tests/servers.sh start "$work/servers" 2>"$work/servers.log") ||
    fail "starting mosquitto / VictoriaMetrics / InfluxDB" "$work/servers.log" \
        "$work/servers/mosquitto.log" "$work/servers/vm.log" "$work/servers/influxdb.log"
eval "$env_out"
mqtt="mqtt://$IIOTGW_TEST_MQTT_HOST:$IIOTGW_TEST_MQTT_PORT"
echo "mosquitto on $mqtt, VictoriaMetrics on $IIOTGW_TEST_VM_URL"

# What a subscriber sees (the README's example):  mosquitto_sub -v -t 'iiot/#'
mosquitto_sub -h "$IIOTGW_TEST_MQTT_HOST" -p "$IIOTGW_TEST_MQTT_PORT" -v -t 'iiot/#' \
    >"$work/sub.txt" 2>"$work/sub.log" &
sub_pid=$!
sleep 0.3
kill -0 "$sub_pid" 2>/dev/null || fail "mosquitto_sub did not start" "$work/sub.log"

echo "replaying $sample ..."
code=0
build/iiotgw -r rules/default.lua -s "rx=file:$sample" --mqtt "$mqtt" \
    --influx "$IIOTGW_TEST_VM_URL" --influx-org my-org --influx-bucket telemetry \
    --deadletter "$work/deadletter.jsonl" -o influx.linger=0.2 \
    --state-dir "$work/state" -c none 2>"$work/iiotgw.log" || code=$?
sleep 0.5
kill "$sub_pid" 2>/dev/null || true
wait "$sub_pid" 2>/dev/null || true
sub_pid=

echo
echo "iiotgw exit code: $code (0 = everything acknowledged by the broker and the database)"
[ "$code" = 0 ] || fail "iiotgw exited with status $code" "$work/iiotgw.log"
grep -E 'event=(exit|stats)' "$work/iiotgw.log" | tail -2 || true
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
if [ -s "$work/deadletter.jsonl" ]; then cut -c1-160 "$work/deadletter.jsonl"; else echo "(none)"; fi
echo
echo "--- series stored in VictoriaMetrics (InfluxDB line protocol, one point per reading) ---"
curl -s "$IIOTGW_TEST_VM_URL/internal/force_flush" >/dev/null || true
# Fresh points become searchable after a moment: wait (bounded) until they are.
for _ in $(seq 50); do
    [ -n "$(curl -s -G "$IIOTGW_TEST_VM_URL/api/v1/export" --data-urlencode 'match[]={__name__="temperature_value"}')" ] && break
    sleep 0.1
done
curl -s -G "$IIOTGW_TEST_VM_URL/api/v1/export" --data-urlencode 'match[]={__name__=~".+_value"}' \
    >"$work/series.jsonl" 2>"$work/curl.log" ||
    fail "reading the series back from VictoriaMetrics" "$work/curl.log" "$work/servers/vm.log"
/usr/bin/python3 - "$work/series.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    s = json.loads(line)
    m = s["metric"]
    tags = ",".join("%s=%s" % (k, v) for k, v in sorted(m.items()) if k not in ("__name__", "db"))
    # (a replay is faster than the ms resolution VictoriaMetrics stores, so show the range)
    print("%-26s %-28s %4d points, %s .. %s" % (m["__name__"], tags, len(s["values"]),
                                              min(s["values"]), max(s["values"])))
PY

# The sample's packets are known (tests/data/probe-rs-session.expected.jsonl): each one gives
# one iiot/node1/temperature message and one temperature point of node 1.
if [ -n "$expected" ]; then
    want=$(grep -c . "$expected")
    got_mqtt=$(grep -c '^iiot/node1/temperature ' "$work/sub.txt" || true)
    got_vm=$(/usr/bin/python3 -c '
import json, sys
print(sum(len(s["values"]) for s in map(json.loads, filter(str.strip, open(sys.argv[1])))
          if s["metric"].get("__name__") == "temperature_value" and s["metric"].get("node") == "node1"))
' "$work/series.jsonl")
    echo
    if [ "$got_mqtt" != "$want" ] || [ "$got_vm" != "$want" ]; then
        fail "the sample has $want packets, but $got_mqtt node1 temperatures arrived over MQTT and $got_vm in VictoriaMetrics" \
            "$work/iiotgw.log" "$work/sub.log"
    fi
    echo "demo: OK: all $want packets of the sample arrived over MQTT and in VictoriaMetrics"
fi
exit 0
