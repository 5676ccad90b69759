"""gwtest.py — shared helpers for the daemon-level tests (they drive the real iiotgw binary).

Only the Python standard library is used, so the tests run with Debian's /usr/bin/python3.
Servers are the real ones started by tests/servers.sh (IIOTGW_TEST_* variables); a test that
needs one and does not find its variable exits 77, which CTest reports as skipped.
The sample session is the one in tests/data/ (see tests/data/gen_capture.py). Temporary
directories and files made here are removed when the test exits, however it exits (a failed
check, an exception, SIGTERM from a CTest timeout).
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
SAMPLE_LOG = os.path.join(DATA, "probe-rs-session.log")
SAMPLE_EXPECTED = os.path.join(DATA, "probe-rs-session.expected.jsonl")
SAMPLE_FACTS = os.path.join(DATA, "probe-rs-session.facts.json")
DEFAULT_RULE = os.path.join(ROOT, "rules", "default.lua")
SKIP = 77


def iiotgw():
    path = os.environ.get("IIOTGW_BIN")
    if not path or not os.access(path, os.X_OK):
        fail("IIOTGW_BIN is not set to the iiotgw binary")
    return path


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def need_env(*names):
    vals = []
    for n in names:
        v = os.environ.get(n)
        if not v:
            print("SKIP: %s not set (run through tests/run.sh)" % n, flush=True)
            sys.exit(SKIP)
        vals.append(v)
    return vals


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sample_facts():
    """What the generator knows about the sample session: lines, packets, cut_lines, ..."""
    with open(SAMPLE_FACTS) as f:
        return json.load(f)


# SIGTERM (CTest's timeout) exits through sys.exit, so the atexit cleanups below still run.
signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))


def tmpdir():
    """A fresh directory under $TMPDIR, removed with its contents when the test exits."""
    d = tempfile.mkdtemp(prefix="iiotgw-gwtest-")
    atexit.register(shutil.rmtree, d, True)
    return d


def write_file(d, name, text):
    """Write text to d/name and return the path."""
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def read_jsonl(path):
    """The JSON records of a JSON-lines file (a dead-letter file): [] when it does not exist."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def fresh_state_dir():
    """A new, empty state directory (see docs/reliability.md) under a temporary directory
    removed when the test exits. For a test that runs daemons side by side: each needs its
    own, or the second refuses to start (the state directory's lock)."""
    return os.path.join(tmpdir(), "state")


def isolate():
    """Every daemon a test starts gets a state directory of the test's own (spool, dead-letter
    file, lock: $STATE_DIRECTORY, inherited by each child) and reads no installed config file
    (IIOTGW_CONFIG=none; /etc/iiotgw/iiotgw.conf exists where the package is installed).
    Called on import, so anything that imports this module is isolated; the directory goes
    when the test exits. Daemons started one after another share it, as a restarted service
    shares /var/lib/iiotgw."""
    os.environ["STATE_DIRECTORY"] = fresh_state_dir()
    os.environ["IIOTGW_CONFIG"] = "none"
    os.environ.pop("XDG_STATE_HOME", None)


isolate()


def unique(tag):
    return "t%s%d%d" % (tag, os.getpid(), int(time.time() * 1000) % 100000)


# ------------------------------------------------------------------------------------------
# What the default rule must produce for one packet (docs/rules.md)
# ------------------------------------------------------------------------------------------

def parse_raw(line):
    """Parse JSON keeping number tokens as their source text (so 24.0 stays "24.0")."""
    return json.loads(line, parse_int=lambda s: s, parse_float=lambda s: s)


def lp_float(tok):
    """Line-protocol text of a float field: shortest round-trip, no trailing .0."""
    r = repr(float(tok))
    return r[:-2] if r.endswith(".0") else r


def expected_outputs(obj, prefix="iiot"):
    """(publishes, points) the default rule gives for one parsed packet.

    publishes: list of (topic, payload, qos, retain); points: list of line-protocol strings
    without timestamp.
    """
    pubs, pts = [], []
    n1, n2 = obj.get("n1", {}), obj.get("n2", {})
    sig, sts = obj.get("sig", {}), obj.get("sts", {})

    def sensor(node, key, name, unit, src):
        if key in src:
            pubs.append(("%s/%s/%s" % (prefix, node, name), src[key], 1, True))
            pts.append("%s,node=%s,unit=%s value=%s" % (name, node, unit, lp_float(src[key])))

    sensor("node1", "t", "temperature", "celsius", n1)
    sensor("node1", "h", "humidity", "percent", n1)
    sensor("node1", "g", "gas_resistance", "ohms", n1)
    sensor("node2", "t", "temperature", "celsius", n2)
    sensor("node2", "h", "humidity", "percent", n2)
    for key, unit in (("rssi", "dbm"), ("snr", "db")):
        if key in sig:
            pubs.append(("%s/signal/%s" % (prefix, key), sig[key], 1, False))
            pts.append("%s,node=signal,unit=%s value=%s" % (key, unit, lp_float(sig[key])))
    for key, name in (("rx", "packets_received"), ("err", "crc_errors")):
        if key in sts:
            pubs.append(("%s/stats/%s" % (prefix, name), sts[key], 1, False))
            pts.append("%s,node=stats value=%s" % (name, lp_float(sts[key])))
    return pubs, pts


# ------------------------------------------------------------------------------------------
# Dry-run output
# ------------------------------------------------------------------------------------------

def parse_dry_run(text):
    """Split --dry-run output into records: [{'hdr': '# file0:5 rx_ns=..', 'pub': [...],
    'write': [...], 'dead': [...]}]."""
    recs = []
    cur = None
    for line in text.splitlines():
        if line.startswith("# "):
            cur = {"hdr": line, "pub": [], "write": [], "dead": []}
            recs.append(cur)
        elif line.startswith("PUBLISH "):
            topic, qos, retain, payload = line[8:].split(" ", 3)
            cur["pub"].append((topic, payload, int(qos[4:]), retain == "retain=1"))
        elif line.startswith("WRITE "):
            cur["write"].append(line[6:])
        elif line.startswith("DEADLETTER "):
            if cur is None:
                cur = {"hdr": "", "pub": [], "write": [], "dead": []}
                recs.append(cur)
            cur["dead"].append(json.loads(line[11:]))
    return recs


# ------------------------------------------------------------------------------------------
# MQTT subscriber (mosquitto_sub, MQTT 5 with retain-as-published so flags are visible)
# ------------------------------------------------------------------------------------------

class Subscriber:
    def __init__(self, host, port, topic, extra=()):
        self.out = tempfile.NamedTemporaryFile(prefix="iiotgw-sub-", delete=False)
        atexit.register(lambda path=self.out.name: os.path.exists(path) and os.unlink(path))
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", str(port), "-V", "mqttv5",
             "--retain-as-published", "-q", "2", "-t", topic, "-F", "%r %q %t %p"] + list(extra),
            stdout=self.out, stderr=subprocess.PIPE)
        # A failing check exits the test at once: never leave the subscriber running.
        atexit.register(lambda p=self.proc: p.poll() is None and p.kill())
        time.sleep(0.3)  # let SUBACK happen before the publisher starts

    def stop(self):
        stop_process(self.proc, 5)
        self.out.close()
        with open(self.out.name, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        os.unlink(self.out.name)
        msgs = []
        for ln in lines:
            parts = ln.split(" ", 3)
            if len(parts) < 3:
                continue
            msgs.append((parts[2], parts[3] if len(parts) > 3 else "", int(parts[1]),
                         parts[0] == "1"))
        return msgs


def mqtt_retained(host, port, topic, timeout=2):
    """Messages a fresh subscriber receives at once (the retained ones)."""
    r = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t", topic, "-v",
                        "-W", str(timeout), "--retained-only"],
                       capture_output=True, text=True)
    out = {}
    for ln in r.stdout.splitlines():
        t, _, p = ln.partition(" ")
        out[t] = p
    return out


# ------------------------------------------------------------------------------------------
# Process helpers
# ------------------------------------------------------------------------------------------

def stop_process(proc, timeout):
    """SIGTERM `proc` if it still runs and reap it; SIGKILL it after `timeout` seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args, timeout=60, **kw):
    return subprocess.run([iiotgw()] + args, capture_output=True, text=True, timeout=timeout, **kw)


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def http_post(url, data=b"", timeout=10):
    req = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def vm_export(base, match, expect=None, timeout=15):
    """VictoriaMetrics /api/v1/export: list of {'metric':{..}, 'values':[..], 'timestamps':[..]}

    Freshly written points become searchable only after VictoriaMetrics flushed them (about a
    second), so this polls: until at least `expect` values are visible, or — without
    `expect` — until two reads half a second apart agree; never longer than `timeout`."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            http_get(base + "/internal/force_flush")
        except Exception:
            pass
        q = urllib.parse.urlencode({"match[]": match})
        text = http_get(base + "/api/v1/export?" + q)
        series = [json.loads(l) for l in text.splitlines() if l.strip()]
        n = sum(len(s["values"]) for s in series)
        if expect is not None and n >= expect:
            return series
        if expect is None and n and n == last:
            return series
        if time.time() >= deadline:
            return series
        last = n
        time.sleep(0.5 if expect is None else 0.2)


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()
