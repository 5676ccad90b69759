"""Throughput of the whole daemon with the durable spool on (`interval`) vs off, same run.

What is measured, and why this way: the spool only does work for records that a configured
sink will send, so a run with --mqtt none --influx none would measure nothing. Both sinks are
therefore pointed at the real servers of tests/servers.sh (mosquitto, VictoriaMetrics), and
the daemon reads a generated capture file (-s file:, N packets of the receiver's telemetry, each
giving 9 QoS 1 publishes and 9 points). A finite run exits only after every publish got its
PUBACK and every point its HTTP 2xx (and, with the spool, after the spool is empty), so
packets / wall time is end-to-end delivered throughput, spool append + read + ack included.
Runs alternate off/on (ROUNDS each) so machine noise hits both; the best of each is reported.
Target: on/off >= 0.8.

    python3 bench_spool_gateway.py [PACKETS] [ROUNDS]     (IIOTGW_BIN, IIOTGW_TEST_* set)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import DEFAULT_RULE, SAMPLE_EXPECTED, need_env  # noqa: E402

host, port, vm = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT", "IIOTGW_TEST_VM_URL")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
work = tempfile.mkdtemp(prefix="iiotgw-benchspool-")
try:
    full = [json.loads(l) for l in open(SAMPLE_EXPECTED) if '"n2":{"t"' in l]
    full = [o for o in full if "h" in o["n2"]]  # packets with all 9 metrics
    cap = os.path.join(work, "capture.jsonl")
    with open(cap, "w") as f:
        for k in range(n):
            o = dict(full[k % len(full)])
            o["ts"] = 500 * k
            o["sts"] = {"rx": k + 1, "err": 0}
            f.write("[INFO] JSON sent via VCP: %s\n" % json.dumps(o, separators=(",", ":")))

    def run(spool):
        args = [os.environ["IIOTGW_BIN"], "-r", DEFAULT_RULE, "-s", "file:" + cap,
                "--mqtt", "mqtt://%s:%s" % (host, port), "--prefix", "benchspool",
                "--influx", vm, "--influx-org", "bench", "--influx-bucket", "bench",
                "--deadletter", "none", "-o", "stats_interval=0", "-o", "drain_timeout=120",
                "-o", "influx.linger=0.1"]
        if spool:
            d = os.path.join(work, "spool")
            shutil.rmtree(d, ignore_errors=True)
            args += ["--spool", d, "-o", "spool.fsync=interval"]
        else:
            args += ["--spool", "none"]   # the spool is the default: off is explicit
        t0 = time.monotonic()
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        dt = time.monotonic() - t0
        if r.returncode != 0:
            sys.exit("iiotgw exited %d (spool=%s)\n%s" % (r.returncode, spool, r.stderr[-2000:]))
        st = [l for l in r.stderr.splitlines() if "event=stats" in l][-1]
        f = dict(kv.split("=", 1) for kv in st.split() if "=" in kv)
        ok = (int(f["packets"]) == n and int(f["publishes"]) == int(f["points"]) > 8 * n and
              int(f["mqtt_acked"]) >= int(f["publishes"]) and
              int(f["influx_written"]) >= int(f["points"]))
        if not ok:
            sys.exit("not everything went through (spool=%s): %s" % (spool, st))
        return n / dt

    best = {False: 0.0, True: 0.0}
    for _ in range(rounds):
        for spool in (False, True):
            best[spool] = max(best[spool], run(spool))
    ratio = best[True] / best[False]
    print("packets=%d (x9 publishes + x9 points each), best of %d runs" % (n, rounds))
    print("spool off:            %8.0f packets/s  (%7.0f records/s)" % (best[False],
                                                                      18 * best[False]))
    print("spool on (interval):  %8.0f packets/s  (%7.0f records/s)" % (best[True],
                                                                      18 * best[True]))
    print("ratio on/off: %.2f  (target >= 0.8) %s" % (ratio, "OK" if ratio >= 0.8 else "BELOW"))
finally:
    shutil.rmtree(work, ignore_errors=True)
