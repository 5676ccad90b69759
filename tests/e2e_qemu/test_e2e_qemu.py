"""End-to-end through the firmware as ARM machine code: node1-qemu.elf and node2-qemu.elf on
QEMU's netduinoplus2 (Cortex-M4), joined by the RYLR998 radio bridge with induced loss and
bit corruption (firmware/qemu/run.sh) -> node 2's console USART2 as a pty -> iiotgw
-s serial:/dev/pts/N (the serial source's termios path on a real pty, default rule) -> real
mosquitto + real VictoriaMetrics (v1 /write?db=: VM keeps `db` as a label, isolating the run).

usage: test_e2e_qemu.py IIOTGW RUN_SH IMAGES_DIR RULES_DEFAULT_LUA

Ground truth comes from the emulated nodes themselves: node 1's console (one "frame seq=...
t=... h=... g=... acked=... sends=..." line per resolved frame, "retransmit ..." per resend),
node 2's bare data port (every telemetry line it printed, with sts.rx/err/dup) and the
bridge's channel counters. Checks, for one bounded run (RUN_S seconds):
  - packets arrive on MQTT and in VictoriaMetrics with plausible values, each one a frame the
    emulated node 1 measured (within the codec's 0.05 precision, gas exactly);
  - sts.rx counts up by one per packet, sts.err grows (CRC failures from the corrupted
    frames, never more than the bridge corrupted), node 1 retransmitted and node 2 dropped
    duplicates (lost ACKs), yet nothing is duplicated downstream: every MQTT topic and the VM
    series carry each of node 2's lines once, in order.
Exits 77 when the server variables are unset (ctest SKIP_RETURN_CODE). Python stdlib only.
"""
import json
import os
import re
import shutil
import signal
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
IIOTGW, RUN_SH, IMAGES, RULES = sys.argv[1:5]
RUN_S = 30
FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)


def vm_export(match, want, timeout=15):
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


def stop_group(p, grace=10):
    """SIGTERM to the process group p leads (run.sh stops what it started), SIGKILL after."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:   # anything left in the group (a QEMU whose parent was killed) goes too
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


for img in ("node1-qemu.elf", "node2-qemu.elf"):
    if not os.path.exists(os.path.join(IMAGES, img)):
        print("FAIL: %s missing in %s (target e2e_qemu_images needs arm-none-eabi-gcc, "
              "tests/setup.sh)" % (img, IMAGES))
        sys.exit(1)

tag = "fwqemu%d" % os.getpid()
prefix, bucket = tag, tag + "b"
d = tempfile.mkdtemp(prefix="e2e_qemu.")
logs = os.path.join(d, "logs")
run = gw = sub = None
try:
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", PORT, "-q", "1", "-v",
                            "-t", prefix + "/#"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)   # subscribed before the first publish
    run = subprocess.Popen([RUN_SH, "--seconds", str(RUN_S), "--loss", "0.15", "--corrupt",
                            "0.1", "--seed", "7", "--images", IMAGES, "--log-dir", logs],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    first = run.stdout.readline().strip()
    m = re.fullmatch(r"pty: (/dev/pts/\d+)", first)
    if not m:
        raise SystemExit("FAIL: run.sh first line %r is not 'pty: /dev/pts/N'" % first)
    pty = m.group(1)
    gwerr = open(os.path.join(d, "gw.err"), "w")
    gw = subprocess.Popen([IIOTGW, "-r", RULES, "-s", "serial:" + pty, "--prefix", prefix,
                           "--mqtt", "mqtt://%s:%s" % (HOST, PORT), "--influx", VM,
                           "--influx-db", bucket, "--deadletter", "none",
                           "-o", "influx.linger=0.2",
                           # its own state (spool, lock) in the run's directory
                           "--state-dir", os.path.join(d, "state"), "-c", "none"],
                          stderr=gwerr)
    rest = run.communicate(timeout=RUN_S + 30)[0]
    check(run.returncode == 0, "run.sh exit %d" % run.returncode)
    radio_line = [l for l in rest.splitlines() if l.startswith("radio: ")]
    check(radio_line, "run.sh printed no radio summary")
    time.sleep(1.0)   # last publishes and InfluxDB writes out
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=15)
    gwerr.close()
    check(gw.returncode == 0, "iiotgw exit %d; stderr:\n%s"
          % (gw.returncode, open(os.path.join(d, "gw.err")).read()[-2000:]))
    time.sleep(0.5)
finally:
    if run is not None:
        stop_group(run)
    if gw is not None and gw.poll() is None:
        gw.kill()
        gw.wait()
    if sub is not None:
        sub.terminate()

msgs = [tuple(l.split(" ", 1)) for l in sub.communicate(timeout=10)[0].splitlines()]
radio = json.loads(radio_line[0].split(" ", 1)[1]) if radio_line else {}
n1log = open(os.path.join(logs, "node1.log"), errors="replace").read().splitlines()
frames = [dict((k, int(v)) for k, v in re.findall(r"(\w+)=(-?\d+)", l))
          for l in n1log if l.startswith("INFO  frame ")]
retrans = [l for l in n1log if l.startswith("INFO  retransmit ")]
n2lines = [json.loads(l) for l in open(os.path.join(logs, "node2-data.log"))
           if l.startswith("{")]
shutil.rmtree(d, ignore_errors=True)


def topic(t):
    return [p for tp, p in msgs if tp == prefix + "/" + t]


temps, hums, gases = (topic("node1/temperature"), topic("node1/humidity"),
                      topic("node1/gas_resistance"))
rx = [int(p) for p in topic("stats/packets_received")]
err = [int(p) for p in topic("stats/crc_errors")]
n = len(rx)
print("node1: %d frames resolved, %d acked, %d retransmissions; node2: %d lines, last sts %s; "
      "radio %s; downstream: %d packets, rx %s..%s, crc_errors %s..%s"
      % (len(frames), sum(f["acked"] for f in frames), len(retrans), len(n2lines),
         n2lines[-1]["sts"] if n2lines else None, radio, n, rx[:1], rx[-1:], err[:1], err[-1:]))

# ---- packets arrive, plausible, measured by the emulated node 1 ------------------------------
check(n >= 10, "only %d packets downstream in %d s" % (n, RUN_S))
check(len(temps) == n and len(hums) == n and len(gases) == n,
      "per-packet topics differ: %d/%d/%d vs %d packets" % (len(temps), len(hums), len(gases), n))
check(all(15 <= float(t) <= 35 for t in temps), "implausible temperature %r" % temps[:5])
check(all(30 <= float(h) <= 75 for h in hums), "implausible humidity %r" % hums[:5])
check(all(g.isdigit() and 50000 <= int(g) <= 200000 for g in gases),
      "implausible gas resistance %r" % gases[:5])
check(len(topic("node2/temperature")) > 0, "node 2's own SHT3x never published")
# In order, each packet is the next frame node 1 resolved with its values (equal rounded values
# are common: the gas ADC is 10-bit); frames skipped on the way must be ones node 1 gave up on.
# The last packet may be a frame still unresolved when the run ended.
i = 0
matched = []
for k, (t, h, g) in enumerate(zip(temps, hums, gases)):
    j = i
    while j < len(frames) and not (abs(frames[j]["t"] / 100 - float(t)) <= 0.0501
                                   and abs(frames[j]["h"] / 100 - float(h)) <= 0.0501
                                   and frames[j]["g"] == int(g)):
        j += 1
    if j == len(frames):
        check(k == n - 1, "packet t=%s h=%s g=%s is no frame node 1 measured" % (t, h, g))
        continue
    if matched:
        skipped = [f["seq"] for f in frames[i:j] if f["acked"]]
        check(not skipped, "acked frames %r never arrived downstream" % skipped)
    matched.append(frames[j]["seq"])
    i = j + 1
check(len(matched) == len(set(matched)), "a frame arrived twice: %r" % matched)

# ---- radio stats move; retransmission and duplicate dropping ran on the emulated CPUs --------
check(rx == list(range(rx[0], rx[0] + n)) if rx else False,
      "packets_received not consecutive (duplicate or gap downstream): %r" % rx)
check(err and err == sorted(err) and err[-1] > 0, "crc_errors never moved: %r" % err[-5:])
corrupted = radio.get("node1", {}).get("corrupted", 0)
check(corrupted > 0 and err and err[-1] <= corrupted,
      "crc_errors %r vs %d frames corrupted by the bridge" % (err[-1:], corrupted))
check(len(retrans) > 0, "no retransmissions despite loss")
sends = sum(f["sends"] for f in frames)
check(sends <= radio.get("node1", {}).get("sent", 0), "node 1 sent %d, bridge saw %r"
      % (sends, radio.get("node1")))
check(n2lines and n2lines[-1]["sts"]["dup"] > 0, "node 2 dropped no duplicates (lost ACKs)")
check([l["sts"]["rx"] for l in n2lines] == list(range(1, len(n2lines) + 1)),
      "node 2's own lines: sts.rx not 1..%d" % len(n2lines))
# Downstream = node 2's lines from the moment iiotgw had the pty open, each exactly once.
tail = [l for l in n2lines if rx and l["sts"]["rx"] >= rx[0]]
check(rx == [l["sts"]["rx"] for l in tail],
      "downstream rx %r.. is not node 2's printed lines %r.."
      % (rx[:5], [l["sts"]["rx"] for l in tail][:5]))
check(err == [l["sts"]["err"] for l in tail], "crc_errors differ from node 2's lines")

# ---- VictoriaMetrics: the same packets, once -------------------------------------------------
for meas, vals_mqtt in (("temperature_value", temps), ("gas_resistance_value", gases)):
    series = vm_export('{__name__="%s",db="%s",node="node1"}' % (meas, bucket), n)
    vals = [v for s in series for _, v in sorted(zip(s["timestamps"], s["values"]))]
    check(len(vals) == n, "VictoriaMetrics %s: %d samples, want %d" % (meas, len(vals), n))
    check(sorted(vals) == sorted(float(v) for v in vals_mqtt),
          "VictoriaMetrics %s values differ from MQTT" % meas)

if FAILURES:
    print("%d failure(s)" % len(FAILURES))
    sys.exit(1)
print("OK")
