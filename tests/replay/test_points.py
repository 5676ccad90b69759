"""test_points.py — backfill: the sample session replayed with --clock packet --clock-start
2026-01-01T00:00:00Z into VictoriaMetrics (v2 API) and InfluxDB 1.6 (v1 API) stores every
point at start + (ts - first ts), with its packet's value, none at the replay's wall time;
and a capture edited so the node reboots mid-session keeps every point, at the times the
reboot rule gives (the clock continues from the last packet before it).

Each point's expected timestamp and value come from tests/data/probe-rs-session.expected.jsonl
(the packets a correct reader extracts), not from running iiotgw.
"""
import json
import os
import subprocess
import time
import urllib.parse

from replaytest import (START, START_NS, check, edit_packets, edit_ts, expected_packets,
                        packet_times, sample_lines, write_capture)
from gwtest import (DEFAULT_RULE, SAMPLE_LOG, free_port, http_get, http_post, need_env, run,
                    tmpdir, unique, vm_export, wait_for)

influx1, = need_env("IIOTGW_TEST_INFLUX1_URL")
d = tmpdir()
packets = expected_packets()
times = packet_times(packets)
first_ts = int(packets[0]["ts"])
check(all(t == START_NS + (int(p["ts"]) - first_ts) * 1000000 for p, t in zip(packets, times)),
      "the sample has no reboot: start + (ts - first ts) throughout")

# (measurement, node, key path) -> {timestamp ns: value} the default rule writes
WANT = {}
for p, t in zip(packets, times):
    for node, src in (("node1", p.get("n1", {})), ("node2", p.get("n2", {}))):
        if "t" in src:
            WANT.setdefault(("temperature", node), {})[t] = float(src["t"])
        if "h" in src:
            WANT.setdefault(("humidity", node), {})[t] = float(src["h"])
    if "rssi" in p.get("sig", {}):
        WANT.setdefault(("rssi", "signal"), {})[t] = float(p["sig"]["rssi"])
n_points = sum(len(v) for v in WANT.values())


def replay(*extra, capture=SAMPLE_LOG):
    t0 = time.time()
    r = run(["-r", DEFAULT_RULE, "-s", "file:" + capture, "--mqtt", "none",
             "--deadletter", "none", "--clock", "packet", "--clock-start", START,
             "-o", "influx.linger=0.2", "-o", "stats_interval=0"] + list(extra), timeout=120)
    check(r.returncode == 0, "replay %r exit %d\n%s" % (extra, r.returncode, r.stderr[-2000:]))
    return t0


# --- VictoriaMetrics (private instance: v2 writes carry no bucket label) -------------------
vm_port = free_port()
vm_proc = subprocess.Popen(["victoria-metrics", "-httpListenAddr=127.0.0.1:%d" % vm_port,
                            "-storageDataPath=" + os.path.join(d, "vm"), "-retentionPeriod=100y",
                            "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
vm = "http://127.0.0.1:%d" % vm_port
try:
    def up():
        try:
            return http_get(vm + "/health") .strip() == "OK"
        except Exception:
            return False
    check(wait_for(up, 20), "private VictoriaMetrics did not start")
    wall = replay("--influx", vm, "--influx-org", "lab", "--influx-bucket", unique("b"))
    series = vm_export(vm, '{__name__=~"(temperature|humidity|rssi)_value"}', expect=n_points)
finally:
    vm_proc.terminate()
    vm_proc.wait(10)
got = {}
for s in series:
    key = (s["metric"]["__name__"][:-len("_value")], s["metric"].get("node"))
    for ts_ms, v in zip(s["timestamps"], s["values"]):
        got.setdefault(key, {})[ts_ms * 1000000] = float(v)
for key, want in WANT.items():
    g = got.get(key, {})
    check(g == want, "VictoriaMetrics %s: %d points, want %d; first differences %r" % (
        key, len(g), len(want),
        sorted(set(g.items()) ^ set(want.items()))[:3]))
late = [t for v in got.values() for t in v if t > wall * 1e9 - 86400e9]
check(not late, "points stamped near the replay's wall time: %r" % late[:3])

# --- InfluxDB 1.6 -------------------------------------------------------------------------
db = unique("db")
http_post(influx1 + "/query", urllib.parse.urlencode({"q": "CREATE DATABASE " + db}).encode())
replay("--influx", influx1, "--influx-db", db)
for (meas, node), want in WANT.items():
    q = urllib.parse.urlencode({"db": db, "epoch": "ns",
                                "q": "SELECT value FROM %s WHERE node='%s'" % (meas, node)})
    res = json.loads(http_get(influx1 + "/query?" + q))
    rows = res["results"][0].get("series", [{}])[0].get("values", [])
    g = {int(t): float(v) for t, v in rows}
    check(g == want, "InfluxDB 1.6 %s/%s: %d points, want %d; first differences %r" % (
        meas, node, len(g), len(want), sorted(set(g.items()) ^ set(want.items()))[:3]))
http_post(influx1 + "/query", urllib.parse.urlencode({"q": "DROP DATABASE " + db}).encode())

# --- a node reboot mid-capture, into InfluxDB 1.6 ------------------------------------------
# From packet 120 on the node counts from 2 s again: the clock continues from the last packet
# (+ the new uptime), so no point lands on an earlier one's timestamp and overwrites it.
cut = int(packets[120]["ts"])


def reboot(ts):
    return ts - cut + 2000 if ts >= cut else ts


rb_packets = edit_packets(packets, reboot)
rb_times = packet_times(rb_packets)
capture = os.path.join(d, "reboot.log")
write_capture(capture, edit_ts(sample_lines(), reboot))
want = {t: float(p["n1"]["t"]) for p, t in zip(rb_packets, rb_times) if "t" in p.get("n1", {})}
check(len(want) == len(WANT[("temperature", "node1")]), "one point per packet after the edit")
db = unique("rb")
http_post(influx1 + "/query", urllib.parse.urlencode({"q": "CREATE DATABASE " + db}).encode())
replay("--influx", influx1, "--influx-db", db, capture=capture)
q = urllib.parse.urlencode({"db": db, "epoch": "ns",
                            "q": "SELECT value FROM temperature WHERE node='node1'"})
rows = json.loads(http_get(influx1 + "/query?" + q))["results"][0]["series"][0]["values"]
g = {int(t): float(v) for t, v in rows}
check(g == want, "reboot: %d points, want %d; first differences %r" % (
    len(g), len(want), sorted(set(g.items()) ^ set(want.items()))[:3]))
check(rb_times[120] == rb_times[119] + 2 * 10**9, "the reboot continues from the last packet")
http_post(influx1 + "/query", urllib.parse.urlencode({"q": "DROP DATABASE " + db}).encode())
print("ok: %d points at start + (ts - first ts) in VictoriaMetrics and InfluxDB 1.6" % n_points)
