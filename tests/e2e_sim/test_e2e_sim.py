"""End-to-end through the simulated firmware: node1_sim -> (UDP radio) -> node2_sim ->
stdout RTT stream -> iiotgw (default rule) -> real mosquitto + real VictoriaMetrics.
(VictoriaMetrics is written through the v1 /write?db= API: VM turns `db` into a label, which
isolates each run's series; the v2 API's bucket is not kept as a label by VM.)

usage: test_e2e_sim.py IIOTGW NODE1_SIM NODE2_SIM RULES_DEFAULT_LUA

Two runs:
  clean   no impairments: every frame node 1 measured arrives once on every MQTT topic and in
          VictoriaMetrics, within the codec's precision (0.01 on the radio, 0.1 in the line:
          |published - measured| <= 0.05), gas resistance exactly;
  lossy   loss and bit corruption in both directions: retransmissions happen, CRC failures
          show up in sts.err / iiot/.../stats/crc_errors (and equal what node 2 counted),
          duplicates are dropped by node 2 (sts.dup > 0) and nothing arrives twice downstream;
          every frame node 1 saw acknowledged is there.
Exits 77 when the server variables are unset (ctest SKIP_RETURN_CODE).
Python stdlib only (Debian /usr/bin/python3).
"""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HOST = os.environ.get("IIOTGW_TEST_MQTT_HOST")
PORT = os.environ.get("IIOTGW_TEST_MQTT_PORT")
VM = os.environ.get("IIOTGW_TEST_VM_URL")
if not (HOST and PORT and VM):
    print("SKIP: IIOTGW_TEST_MQTT_HOST/PORT and IIOTGW_TEST_VM_URL not set")
    sys.exit(77)
if len(sys.argv) != 5:
    print(__doc__)
    sys.exit(2)
IIOTGW, NODE1, NODE2, RULES = sys.argv[1:5]
SPEED = 100          # 10 s transmit period = 100 ms real
FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)


def free_udp_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def vm_export(match, want, timeout=20):
    """Series matching `match`; polls until `want` samples are visible (VM ingests async)."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(VM + "/internal/force_flush", timeout=5).read()
        except OSError:
            pass
        url = VM + "/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=10) as r:
            series = [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]
        n = sum(len(s["values"]) for s in series)
        if n >= want or time.time() > deadline:
            return series
        time.sleep(0.3)


def run(name, n_frames, n1_args, n2_args):
    """One pipeline run; returns (node1 records, node1 summary, telemetry lines, node2 stop
    stats, MQTT messages [(topic, payload)], prefix, bucket)."""
    tag = "fwe2e%d%s" % (os.getpid(), name)
    prefix, bucket = tag, tag + "b"
    d = tempfile.mkdtemp(prefix="iiotgw-e2esim-")
    atexit.register(shutil.rmtree, d, True)  # also when a check fails and exits
    p1, p2 = free_udp_ports(2)
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", PORT, "-q", "1", "-v",
                            "-t", prefix + "/#"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)   # subscribed before the first publish
    try:
        n2 = [NODE2, "--udp-port", str(p2), "--peer-port", str(p1), "--speed", str(SPEED),
              "--idle-exit", "30", "--duration", "5000", "--sht-first-ms", "15000"] + n2_args
        gw = [IIOTGW, "-r", RULES, "-s", "stdin", "--prefix", prefix,
              "--mqtt", "mqtt://%s:%s" % (HOST, PORT), "--influx", VM,
              "--influx-db", bucket, "--deadletter", "none",
              "-o", "influx.linger=0.2",
              # its own state (spool, lock) in the run's directory, no installed config
              "--state-dir", os.path.join(d, "state"), "-c", "none"]
        rtt = os.path.join(d, "rtt.txt")
        pipeline = "%s | tee %s | %s" % (" ".join(map(sh_quote, n2)), sh_quote(rtt),
                                         " ".join(map(sh_quote, gw)))
        gwerr = open(os.path.join(d, "gw.err"), "w")
        gwp = subprocess.Popen(["/bin/bash", "-o", "pipefail", "-c", pipeline], stderr=gwerr)
        time.sleep(0.3)   # node 2 listening before node 1 starts
        n1 = subprocess.run([NODE1, "--udp-port", str(p1), "--peer-port", str(p2),
                             "--speed", str(SPEED), "--count", str(n_frames)] + n1_args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            timeout=60)
        rc = gwp.wait(timeout=60)
        gwerr.close()
        check(rc == 0, "%s: pipeline exit %d; gateway stderr:\n%s"
              % (name, rc, open(os.path.join(d, "gw.err")).read()[-2000:]))
        time.sleep(0.5)
    finally:
        sub.terminate()
    msgs = [tuple(l.split(" ", 1)) for l in sub.communicate(timeout=10)[0].splitlines()]
    recs = [json.loads(l) for l in n1.stdout.splitlines()]
    summary = recs.pop()["summary"]
    text = open(rtt).read().splitlines()
    lines = [json.loads(l.split("telemetry ", 1)[1]) for l in text
             if l.startswith("INFO  telemetry {")]
    stop = [l for l in text if "node 2 stopping" in l][-1]
    stats = {k: int(v) for k, v in (kv.split("=") for kv in stop.split(": ", 1)[1].split())}
    shutil.rmtree(d, ignore_errors=True)
    print("%s: node1 %s; node2 %s; %d lines; %d MQTT messages"
          % (name, summary, stats, len(lines), len(msgs)))
    return recs, summary, lines, stats, msgs, prefix, bucket


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def match_lines(name, recs, lines):
    """Pair each telemetry line with the node 1 frame it carries, in order. Only frames node 1
    gave up on may be absent (lost for good, or printed but every ACK lost)."""
    i = 0
    pairs = []
    for l in lines:
        while i < len(recs):
            r = recs[i]
            i += 1
            if (abs(l["n1"]["t"] - r["t_x100"] / 100) <= 0.0501
                    and abs(l["n1"]["h"] - r["h_x100"] / 100) <= 0.0501
                    and l["n1"]["g"] == r["g"]):
                pairs.append((l, r))
                break
            check(not r["acked"], "%s: acked frame seq=%d never printed" % (name, r["seq"]))
        else:
            check(False, "%s: line rx=%d matches no frame node 1 sent" % (name, l["sts"]["rx"]))
    for r in recs[i:]:
        check(not r["acked"], "%s: acked frame seq=%d never printed" % (name, r["seq"]))
    return pairs


def verify_downstream(name, lines, msgs, prefix, bucket):
    """MQTT and VictoriaMetrics carry exactly the printed lines, once each."""
    def topic(t):
        return [p for tp, p in msgs if tp == prefix + "/" + t]
    n = len(lines)
    for key, t in (("t", "node1/temperature"), ("h", "node1/humidity"),
                   ("g", "node1/gas_resistance")):
        got = topic(t)
        check(len(got) == n, "%s: %d messages on %s, want %d" % (name, len(got), t, n))
        want = [l["n1"][key] for l in lines]
        check([float(p) for p in got] == [float(w) for w in want],
              "%s: %s payloads %r != printed %r" % (name, t, got[:5], want[:5]))
    gas = topic("node1/gas_resistance")
    check(all(p.isdigit() for p in gas), "%s: gas payloads not integers: %r" % (name, gas[:3]))
    rx = [int(p) for p in topic("stats/packets_received")]
    check(rx == list(range(1, n + 1)), "%s: packets_received %r not 1..%d" % (name, rx, n))
    err = [int(p) for p in topic("stats/crc_errors")]
    check(err == [l["sts"]["err"] for l in lines], "%s: crc_errors %r" % (name, err))
    n2t = sum(1 for l in lines if "t" in l["n2"])
    check(len(topic("node2/temperature")) == n2t, "%s: node2/temperature count" % name)

    for meas, node, key in (("temperature_value", "node1", "t"),
                            ("gas_resistance_value", "node1", "g")):
        series = vm_export('{__name__="%s",db="%s",node="%s"}' % (meas, bucket, node), n)
        vals = [v for s in series for _, v in sorted(zip(s["timestamps"], s["values"]))]
        check(len(vals) == n, "%s: VictoriaMetrics %s count %d, want %d"
              % (name, meas, len(vals), n))
        check(sorted(vals) == sorted(float(l["n1"][key]) for l in lines),
              "%s: VictoriaMetrics %s values differ from the printed lines" % (name, meas))
    series = vm_export('{__name__="crc_errors_value",db="%s"}' % bucket, n)
    vals = [v for s in series for _, v in sorted(zip(s["timestamps"], s["values"]))]
    check(vals and vals[-1] == lines[-1]["sts"]["err"], "%s: VM crc_errors last %r" % (name, vals[-1:]))


# ---- clean link ----------------------------------------------------------------------------
recs, summary, lines, stats, msgs, prefix, bucket = run("clean", 12, ["--seed", "3"],
                                                        ["--seed", "4"])
check(len(recs) == 12 and all(r["acked"] for r in recs), "clean: not every frame acked")
check(len(lines) == 12, "clean: %d lines printed, want 12" % len(lines))
check(stats["err"] == 0 and lines[-1]["sts"]["err"] == 0, "clean: CRC errors without corruption")
pairs = match_lines("clean", recs, lines)
check(len(pairs) == 12, "clean: %d of 12 frames matched" % len(pairs))
verify_downstream("clean", lines, msgs, prefix, bucket)

# ---- lossy, corrupting link ----------------------------------------------------------------
recs, summary, lines, stats, msgs, prefix, bucket = run(
    "lossy", 20, ["--seed", "11", "--loss", "0.2", "--corrupt", "0.2"],
    ["--seed", "12", "--loss", "0.25", "--corrupt", "0.1"])
check(summary["retransmissions"] > 0, "lossy: no retransmissions")
check(stats["err"] > 0, "lossy: no CRC errors counted despite corruption")
check(lines[-1]["sts"]["err"] == stats["err"],
      "lossy: last line's sts.err %d != node 2's CRC failures %d"
      % (lines[-1]["sts"]["err"], stats["err"]))
check(stats["dup"] > 0, "lossy: no duplicates dropped despite lost ACKs")
check(stats["rx"] == len(lines), "lossy: rx %d != lines %d" % (stats["rx"], len(lines)))
match_lines("lossy", recs, lines)
verify_downstream("lossy", lines, msgs, prefix, bucket)
crc_topic = [p for t, p in msgs if t == prefix + "/stats/crc_errors"]
check(crc_topic and int(crc_topic[-1]) == stats["err"], "lossy: MQTT crc_errors last value")

if FAILURES:
    print("%d failure(s)" % len(FAILURES))
    sys.exit(1)
print("OK")
