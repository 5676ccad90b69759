#!/usr/bin/env bash
# tests/servers.sh — start/stop the real servers the test suites talk to.
#
#   eval "$(tests/servers.sh start DIR)"   start mosquitto, victoria-metrics and influxdb 1.6 on
#                                          free loopback ports; prints `export VAR=...` lines
#   tests/servers.sh stop DIR              stop them (idempotent)
#
# Everything (configs, data, logs, pid files) lives in DIR, so parallel runs never collide
# and nothing is left in the tree. Servers come from Debian packages (mosquitto,
# victoria-metrics, influxdb); no server is left running when `stop` returns.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: poll until the URL answers (any HTTP status).
wait_http() {
    local url=$1 deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    return 1
}

wait_tcp() {
    local port=$1 deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start() {
    mkdir -p "$dir"
    local mqtt_port vm_port influx_port influx_rpc
    mqtt_port=$(free_port); vm_port=$(free_port); influx_port=$(free_port); influx_rpc=$(free_port)

    # --- mosquitto: anonymous, no persistence, nodelay (latency) -------------------------
    cat >"$dir/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 100000
CONF
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
    echo $! >"$dir/mosquitto.pid"

    # --- victoria-metrics: InfluxDB line protocol on /write and /api/v2/write ---------------
    victoria-metrics -httpListenAddr="127.0.0.1:$vm_port" -storageDataPath="$dir/vm-data" \
        -retentionPeriod=100y -search.disableCache -loggerLevel=ERROR >"$dir/vm.log" 2>&1 &
    echo $! >"$dir/vm.pid"

    # --- influxdb 1.6 -----------------------------------------------------------------------
    cat >"$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_rpc"
[meta]
  dir = "$dir/influx/meta"
[data]
  dir = "$dir/influx/data"
  wal-dir = "$dir/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$influx_port"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
CONF
    influxd -config "$dir/influxdb.conf" >"$dir/influxdb.log" 2>&1 &
    echo $! >"$dir/influxdb.pid"

    wait_tcp "$mqtt_port" 15 || { echo "mosquitto did not start: $(tail -5 "$dir/mosquitto.log")" >&2; stop; exit 1; }
    wait_http "http://127.0.0.1:$vm_port/health" 30 || { echo "victoria-metrics did not start: $(tail -5 "$dir/vm.log")" >&2; stop; exit 1; }
    wait_http "http://127.0.0.1:$influx_port/ping" 30 || { echo "influxdb did not start: $(tail -5 "$dir/influxdb.log")" >&2; stop; exit 1; }

    cat >"$dir/env" <<ENV
export IIOTGW_TEST_MQTT_HOST=127.0.0.1
export IIOTGW_TEST_MQTT_PORT=$mqtt_port
export IIOTGW_TEST_VM_URL=http://127.0.0.1:$vm_port
export IIOTGW_TEST_INFLUX1_URL=http://127.0.0.1:$influx_port
ENV
    cat "$dir/env"
}

stop() {
    local name pid
    for name in mosquitto vm influxdb; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
