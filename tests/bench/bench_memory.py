"""Idle memory of the running daemon (RssAnon <= 3 MB, VmRSS <= 12 MB targets) against a
reference process that only loads and initialises the same libraries, same run.

The daemon runs the default rule with both sinks connected to real servers, has processed the
sample session once (so the rule state, buffers and connections are warm) and then sits idle
on a live stdin source."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import DEFAULT_RULE, SAMPLE_LOG, need_env  # noqa: E402

host, port, vm = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT", "IIOTGW_TEST_VM_URL")


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "VmRSS", "RssFile"):
                out[k] = int(v.split()[0])  # kB
    return out


ref = subprocess.Popen([os.path.join(os.environ["BENCH_DIR"], "bench_idle_ref")],
                       stdout=subprocess.PIPE, text=True)
ref.stdout.readline()
gw = subprocess.Popen([os.environ["IIOTGW_BIN"], "-r", DEFAULT_RULE, "-s", "stdin",
                       "--mqtt", "mqtt://%s:%s" % (host, port), "--influx", vm,
                       "--influx-org", "my-org", "--influx-bucket", "bench",
                       "--deadletter", "none", "--log-level", "warn"],
                      stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
with open(SAMPLE_LOG, "rb") as f:
    gw.stdin.write(f.read())
gw.stdin.flush()
time.sleep(3)  # processed, acknowledged, idle
g, r = status(gw.pid), status(ref.pid)
gw.stdin.close()
gw.wait(30)
ref.kill()
ref.wait()
mb = lambda kb: kb / 1024.0
print("  iiotgw     RssAnon %6.2f MB  VmRSS %6.2f MB  (targets: RssAnon <= 3, VmRSS <= 12)  %s"
      % (mb(g["RssAnon"]), mb(g["VmRSS"]),
         "PASS" if g["RssAnon"] <= 3 * 1024 and g["VmRSS"] <= 12 * 1024 else "MISS"))
print("  reference  RssAnon %6.2f MB  VmRSS %6.2f MB  (same libraries loaded, idle)"
      % (mb(r["RssAnon"]), mb(r["VmRSS"])))
print("  gateway's own cost: RssAnon +%.2f MB, VmRSS +%.2f MB; VmRSS %.2fx the reference"
      % (mb(g["RssAnon"] - r["RssAnon"]), mb(g["VmRSS"] - r["VmRSS"]), g["VmRSS"] / r["VmRSS"]))
