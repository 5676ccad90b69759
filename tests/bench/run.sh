#!/usr/bin/env bash
# tests/bench/run.sh — print the performance figures the issues ask for, each measured against
# a reference taken in the same run:
#   1. packets/s through extract + decode + default rule + line protocol (sinks disabled)
#      vs a bare cJSON_Parse loop over the same objects;
#   2. idle memory of the running daemon (RssAnon, VmRSS) vs a process that only loads the same
#      libraries;
#   3. p99 latency from line read to the last PUBACK of a packet's 9 publishes at 100 packets/s
#      against a local mosquitto (set_tcp_nodelay true) vs a bare libmosquitto client;
#   4. end-to-end daemon throughput (file -> mosquitto + VictoriaMetrics, every record acked)
#      with the durable spool on (`interval`) vs off;
#   5. a 20,000- and a 100,000-packet burst through a live tcp: source with default options:
#      messages and points delivered, peak RSS vs the 16 MB budget (reference: --spool none);
#   6. the default rule's per-packet time with its thresholds read from gw.param handles vs
#      the same rule with constants.
#
#   bash tests/bench/run.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
secs=${1:-3}

bash tests/setup.sh all
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DIIOTGW_TESTS=ON >/dev/null
cmake --build build-bench -j2 --target iiotgw bench_pipeline bench_mqtt_ref bench_idle_ref bench_params >/dev/null

work=$(mktemp -d /tmp/iiotgw-bench.XXXXXX)
trap 'bash tests/servers.sh stop "$work/servers" || true; rm -rf "$work"' EXIT
eval "$(bash tests/servers.sh start "$work/servers")"
export IIOTGW_BIN="$root/build-bench/iiotgw" BENCH_DIR="$root/build-bench/tests/bench"

echo "== 1. throughput (one core)"
taskset -c 0 "$BENCH_DIR/bench_pipeline" rules/default.lua tests/data/probe-rs-session.log "$secs"
echo
echo "== 2. idle memory"
/usr/bin/python3 tests/bench/bench_memory.py
echo
echo "== 3. publish-to-PUBACK latency at 100 packets/s"
/usr/bin/python3 tests/bench/bench_latency.py "${BENCH_LATENCY_SECONDS:-20}"
echo
echo "== 4. throughput with the spool on (interval) vs off"
/usr/bin/python3 tests/bench/bench_spool_gateway.py "${BENCH_SPOOL_PACKETS:-20000}" 2
echo
echo "== 5. bursts through a live tcp: source, default options"
/usr/bin/python3 tests/bench/bench_burst.py ${BENCH_BURST_PACKETS:-20000 100000}
echo
echo "== 6. reading tunable parameters (gw.param) vs constants in the default rule"
/usr/bin/python3 tests/bench/bench_params.py "$BENCH_DIR/bench_params" "$secs"
