"""p99 added latency from line read to the last PUBACK of its 9 publishes, at 100 packets/s,
against the local mosquitto started with set_tcp_nodelay true (tests/servers.sh); target
<= 2 ms. The gateway measures it itself (stats mqtt_ack_p99_ms, reported on SIGUSR1); the
reference is a bare libmosquitto client doing the same bursts in the same run."""
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import DEFAULT_RULE, SAMPLE_EXPECTED, need_env  # noqa: E402

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20
rate = 100.0

ref = subprocess.run([os.path.join(os.environ["BENCH_DIR"], "bench_mqtt_ref"), host, port,
                      str(rate), str(secs)], capture_output=True, text=True, check=True)
r50, r99, rmax, rn = ref.stdout.split()

lines = [l for l in open(SAMPLE_EXPECTED) if '"n2":{"t"' in l]  # packets with all 9 metrics
gw = subprocess.Popen([os.environ["IIOTGW_BIN"], "-r", DEFAULT_RULE, "-s", "stdin",
                       "--mqtt", "mqtt://%s:%s" % (host, port), "--prefix", "benchlat",
                       "--deadletter", "none", "-o", "stats_interval=0"],
                      stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
log = []
threading.Thread(target=lambda: [log.append(l) for l in gw.stderr], daemon=True).start()
time.sleep(1.0)
gw.send_signal(10)  # SIGUSR1: reset the latency window after connect
time.sleep(0.2)
n = int(rate * secs)
start = time.monotonic()
for k in range(n):
    due = start + k / rate
    while time.monotonic() < due:
        time.sleep(max(0.0, due - time.monotonic()))
    gw.stdin.write(lines[k % len(lines)])
    gw.stdin.flush()
time.sleep(0.5)
gw.send_signal(10)
time.sleep(0.3)
gw.stdin.close()
gw.wait(30)
# The report forced by the second SIGUSR1 holds the samples of the run (the first one only
# reset the window after connect; the exit report that follows has none).
stats = max((l for l in log if "event=stats" in l),
            key=lambda l: float(re.search(r"\bmqtt_ack_samples=([0-9.]+)", l).group(1)))
get = lambda k: float(re.search(r"\b%s=([0-9.]+)" % k, stats).group(1))
p50, p99, mx, cnt = (get("mqtt_ack_p50_ms"), get("mqtt_ack_p99_ms"), get("mqtt_ack_max_ms"),
                     get("mqtt_ack_samples"))
print("  iiotgw     p50 %.3f ms  p99 %.3f ms  max %.3f ms  over %d packets x 9 QoS1 publishes"
      "  (target p99 <= 2 ms)  %s" % (p50, p99, mx, cnt, "PASS" if p99 <= 2.0 else "MISS"))
print("  reference  p50 %s ms  p99 %s ms  max %s ms  bare libmosquitto client, same bursts"
      % (r50, r99, rmax))
print("  added by the gateway at p99: %.3f ms (%.2fx the bare client)"
      % (p99 - float(r99), p99 / float(r99) if float(r99) > 0 else float("inf")))
