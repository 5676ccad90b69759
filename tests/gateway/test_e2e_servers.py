"""The sample session through the real daemon into a real mosquitto, a real VictoriaMetrics
(v2 write API) and a real InfluxDB 1.6 (v1 write API); everything the docs promise arrives,
and the gateway exits 0 only after every publish and point was acknowledged."""
import os
import subprocess
import time
import urllib.parse

from gwtest import (DEFAULT_RULE, SAMPLE_EXPECTED, SAMPLE_LOG, Subscriber, check,
                    expected_outputs, fail, free_port, http_get, http_post, mqtt_retained,
                    need_env, parse_raw, run, tmpdir, unique, vm_export, wait_for)


def _up(url):
    try:
        http_get(url + "/health", timeout=1)
        return True
    except Exception:
        return False

host, port, _, influx1 = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT",
                                   "IIOTGW_TEST_VM_URL", "IIOTGW_TEST_INFLUX1_URL")
prefix = unique("e2e")
bucket = unique("b")
d = tmpdir()
with open(SAMPLE_EXPECTED) as f:
    expected = [parse_raw(l) for l in f if l.strip()]

# --- MQTT + VictoriaMetrics (v2 API) ------------------------------------------------------
# VictoriaMetrics keeps no bucket label for v2 writes, so series written by other tests could
# mix in: this part uses a private VictoriaMetrics started for this test alone.
vm_port = free_port()
vm_proc = subprocess.Popen(["victoria-metrics", "-httpListenAddr=127.0.0.1:%d" % vm_port,
                            "-storageDataPath=" + os.path.join(d, "vm"), "-retentionPeriod=100y",
                            "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
vm = "http://127.0.0.1:%d" % vm_port
try:
    wait_for(lambda: _up(vm), 20)
except Exception:
    pass
sub = Subscriber(host, port, prefix + "/#")
t0 = time.time()
r = run(["-r", DEFAULT_RULE, "-s", "file:" + SAMPLE_LOG, "--prefix", prefix,
         "--mqtt", "mqtt://%s:%s" % (host, port), "--influx", vm, "--influx-org", "my-org",
         "--influx-bucket", bucket, "--deadletter", os.path.join(d, "dl.jsonl"),
         "-o", "influx.linger=0.2"], timeout=120)
elapsed = time.time() - t0
time.sleep(0.5)
msgs = sub.stop()
check(r.returncode == 0, "exit %d\n%s" % (r.returncode, r.stderr[-3000:]))

want = []
for obj in expected:
    pubs, _ = expected_outputs(obj, prefix)
    want += pubs
got = [m for m in msgs if not m[0].startswith(prefix + "/gateway/")]
if sorted(got) != sorted(want):
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    fail("MQTT mismatch: %d got, %d want; missing e.g. %r; extra e.g. %r"
         % (len(got), len(want), list(missing)[:3], list(extra)[:3]))
status = [m for m in msgs if m[0] == prefix + "/gateway/status"]
check(status and status[0][1] == "online", "status online not seen: %r" % status)
ret = mqtt_retained(host, port, prefix + "/#")
check(ret.get(prefix + "/gateway/status") == "offline", "retained status after exit: %r" % ret)
check(ret.get(prefix + "/node1/temperature") == expected[-1]["n1"]["t"],
      "retained current value must be the last packet's")

series = vm_export(vm, '{__name__=~".+_value"}', expect=sum(len(expected_outputs(o)[1]) for o in expected))
vm_proc.terminate()
vm_proc.wait(10)
counts = {}
for s in series:
    m = s["metric"]
    key = (m["__name__"], m.get("node"), m.get("unit"))
    counts[key] = counts.get(key, 0) + len(s["values"])
n = len(expected)
n2t = sum(1 for o in expected if "t" in o.get("n2", {}))
check(counts.get(("temperature_value", "node1", "celsius")) == n,
      "VictoriaMetrics node1 temperature count: %r" % counts)
check(counts.get(("temperature_value", "node2", "celsius")) == n2t,
      "VictoriaMetrics node2 temperature count %r, want %d" % (counts, n2t))
check(counts.get(("crc_errors_value", "stats", None)) == n, "crc_errors count: %r" % counts)

# --- InfluxDB 1.6 (v1 API) ----------------------------------------------------------------
db = unique("db")
http_post(influx1 + "/query", urllib.parse.urlencode({"q": "CREATE DATABASE " + db}).encode())
r = run(["-r", DEFAULT_RULE, "-s", "file:" + SAMPLE_LOG, "--prefix", prefix, "--mqtt", "none",
         "--influx", influx1, "--influx-db", db, "--deadletter", "none",
         "-o", "influx.linger=0.2"], timeout=120)
check(r.returncode == 0, "v1 run exit %d\n%s" % (r.returncode, r.stderr[-3000:]))
q = urllib.parse.urlencode({"db": db, "epoch": "ns",
                            "q": "SELECT count(value) FROM temperature WHERE node='node1'"})
import json
res = json.loads(http_get(influx1 + "/query?" + q))
cnt = res["results"][0]["series"][0]["values"][0][1]
check(cnt == n, "InfluxDB 1.6 node1 temperature count %r, want %d" % (cnt, n))
q = urllib.parse.urlencode({"db": db, "q": "SELECT last(value) FROM gas_resistance"})
res = json.loads(http_get(influx1 + "/query?" + q))
last = res["results"][0]["series"][0]["values"][0][1]
check(float(last) == float(expected[-1]["n1"]["g"]), "last gas value %r" % last)
print("ok: %d publishes, %d packets in %.2fs" % (len(got), n, elapsed))
