"""reltest.py — helpers for the end-to-end reliability tests (tests/reliability/).

Why a separate helper module: these tests kill and restart servers, so they start their own
private mosquitto / VictoriaMetrics / InfluxDB 1.6 on free ports (never the shared ones from
tests/servers.sh), feed the real iiotgw binary a steady stream on stdin, and need an MQTT
subscriber whose behaviour across broker restarts is fully known. gwtest.py (tests/gateway/)
is imported, not copied.

Contents:
  MqttSub     a minimal MQTT 3.1.1 QoS 1 subscriber thread (persistent session, reconnects every
              50 ms, records a message *before* it sends the PUBACK, never re-subscribes when
              the broker says the session is present, counts sessions the broker lost)
  Broker      private mosquitto with persistence on tmpfs (stop = SIGTERM, kill = SIGKILL)
  VM, Influx1 private VictoriaMetrics / influxd 1.6 on a data dir that survives restarts
  Gateway     iiotgw with stdin as a pipe, stderr in a log file, key=value log parsing
  Feeder      a thread writing one telemetry line per packet at a fixed rate, each with a
              unique "ts" (the packet id), remembering the byte offset after every line
  parse_spool read the documented segment format (docs/reliability.md) without the daemon

Python standard library only (Debian's /usr/bin/python3).
"""
import array
import atexit
import fcntl
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time  # noqa: F401  (re-exported: R.time)
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
import gwtest  # noqa: E402  (shared helpers of the daemon-level tests)
from gwtest import (SKIP, check, fail, free_port, http_get, http_post, iiotgw,  # noqa: E402,F401
                    need_env, stop_process, unique, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
RULE = os.path.join(HERE, "rel_rule.lua")


def _removed_at_exit(d):
    """d, removed when the test exits however it exits (unless IIOTGW_REL_KEEP is set)."""
    if not os.environ.get("IIOTGW_REL_KEEP"):
        atexit.register(shutil.rmtree, d, True)
    return d


def tmpdir(tag):
    return _removed_at_exit(tempfile.mkdtemp(prefix="iiotgw-rel-%s-" % tag))


def shm_dir(tag):
    """A directory on tmpfs (for broker persistence: fast saves; we only simulate process
    crashes of the broker, not power loss)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return _removed_at_exit(tempfile.mkdtemp(prefix="iiotgw-rel-%s-" % tag, dir=base))


def wait_tcp(port, timeout):
    def ok():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    return wait_for(ok, timeout, 0.05)


def wait_http(url, timeout, what):
    """Wait until GET `url` answers 2xx; fail("private <what> did not start") otherwise."""
    def up():
        try:
            http_get(url, timeout=1)
            return True
        except Exception:
            return False
    if not wait_for(up, timeout, 0.1):
        fail("private %s did not start" % what)


# ------------------------------------------------------------------------------------------
# Telemetry lines
# ------------------------------------------------------------------------------------------

def telemetry_line(pid):
    """One probe-rs-like line whose packet id is `ts` (unique per packet in a test)."""
    obj = {"ts": pid, "id": "N2", "n1": {"t": 20.0 + pid % 100 / 10, "h": 50.5, "g": 84190},
           "n2": {"t": 21.5, "h": 40.1}, "sig": {"rssi": -40, "snr": 12},
           "sts": {"rx": pid, "err": 0}}
    return ("[INFO] JSON sent via VCP: %s\n" % json.dumps(obj, separators=(",", ":"))).encode()


# ------------------------------------------------------------------------------------------
# MQTT 3.1.1 subscriber
# ------------------------------------------------------------------------------------------

def _enc_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(ptype, body):
    n = len(body)
    rl = bytearray()
    while True:
        d = n % 128
        n //= 128
        rl.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([ptype]) + bytes(rl) + body


class MqttSub(threading.Thread):
    """QoS 1 subscriber. msgs: list of (topic, payload, retain, dup) in arrival order.

    A message is appended to msgs before its PUBACK is sent, and this thread never dies while
    the test runs, so "the broker handed it over" == "it is in msgs"."""

    def __init__(self, port, client_id, topics, clean=False, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.host, self.port, self.client_id = host, port, client_id
        self.topics, self.clean = list(topics), clean
        self.msgs = []
        self.lock = threading.Lock()
        self.connects = 0
        self.sessions_lost = 0      # CONNACK without session present after the first connect
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._halt = threading.Event()
        self._sock = None
        self.start()

    def stop(self):
        self._halt.set()
        s = self._sock
        if s:
            try:
                s.close()
            except OSError:
                pass
        self.join(5)

    def snapshot(self):
        with self.lock:
            return list(self.msgs)

    def run(self):
        while not self._halt.is_set():
            try:
                self._session()
            except (OSError, ValueError, struct.error):
                pass
            self.connected.clear()
            if self._halt.is_set():
                break
            time.sleep(0.05)

    def _recv_exact(self, s, n, buf):
        while len(buf) < n:
            if self._halt.is_set():
                raise OSError("stopping")
            try:
                d = s.recv(65536)
            except socket.timeout:
                if time.time() - self._last_ping > 10:
                    s.sendall(b"\xc0\x00")  # PINGREQ (keepalive 30 s)
                    self._last_ping = time.time()
                continue
            if not d:
                raise OSError("closed")
            buf += d
        return buf

    def _read_packet(self, s, buf):
        buf = self._recv_exact(s, 2, buf)
        mult, rl, i = 1, 0, 1
        while True:
            buf = self._recv_exact(s, i + 1, buf)
            b = buf[i]
            rl += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        buf = self._recv_exact(s, i + rl, buf)
        return buf[0], bytes(buf[i:i + rl]), buf[i + rl:]

    def _session(self):
        s = socket.create_connection((self.host, self.port), timeout=1)
        self._sock = s
        s.settimeout(0.2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._last_ping = time.time()
        flags = 0x02 if self.clean else 0x00
        s.sendall(_packet(0x10, _enc_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
                          + _enc_str(self.client_id)))
        buf = bytearray()
        ptype, body, buf = self._read_packet(s, buf)
        if ptype >> 4 != 2 or len(body) < 2 or body[1] != 0:
            raise ValueError("CONNACK refused: %r" % body)
        present = body[0] & 1
        self.connects += 1
        if self.connects > 1 and not present and not self.clean:
            self.sessions_lost += 1
        if not present:
            sub = struct.pack("!H", 1) + b"".join(_enc_str(t) + b"\x01" for t in self.topics)
            s.sendall(_packet(0x82, sub))
        self.connected.set()
        while True:
            ptype, body, buf = self._read_packet(s, buf)
            kind = ptype >> 4
            if kind == 3:  # PUBLISH
                qos = (ptype >> 1) & 3
                tl = struct.unpack("!H", body[:2])[0]
                topic = body[2:2 + tl].decode()
                off = 2 + tl
                mid = None
                if qos:
                    mid = body[off:off + 2]
                    off += 2
                with self.lock:
                    self.msgs.append((topic, body[off:].decode(errors="replace"),
                                      bool(ptype & 1), bool(ptype & 8)))
                if qos == 1:
                    s.sendall(b"\x40\x02" + mid)
                elif qos == 2:
                    s.sendall(b"\x50\x02" + mid)  # PUBREC; PUBREL answered below
            elif kind == 6:  # PUBREL
                s.sendall(b"\x70\x02" + body[:2])
            elif kind == 9:  # SUBACK
                self.subscribed.set()


def retained(port, topic, timeout=2):
    return gwtest.mqtt_retained("127.0.0.1", port, topic, timeout)


# ------------------------------------------------------------------------------------------
# Private servers
# ------------------------------------------------------------------------------------------

class _Server:
    """What the private servers share: a process (self.proc) and a scratch dir (self.dir)."""

    STOP_TIMEOUT = 15   # seconds between SIGTERM and SIGKILL in stop()

    def stop(self):
        stop_process(self.proc, self.STOP_TIMEOUT)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Broker(_Server):
    """A private mosquitto. persistent=True: persistence on tmpfs, saved after every change
    (autosave_on_changes, autosave_interval 1), unlimited in-flight and queued messages to
    subscribers (see test_broker_kill.py for why)."""

    STOP_TIMEOUT = 10

    def __init__(self, tag, persistent=True, port=None):
        self.port = port or free_port()
        self.dir = shm_dir(tag)
        os.chmod(self.dir, 0o777)  # mosquitto started as root drops to user "mosquitto"
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        lines = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true",
                 "set_tcp_nodelay true", "max_inflight_messages 0", "max_queued_messages 0",
                 "max_queued_bytes 0"]
        if persistent:
            lines += ["persistence true", "persistence_location %s/" % self.dir,
                      "autosave_interval 1", "autosave_on_changes true"]
        else:
            lines += ["persistence false"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.starts = 0

    def start(self):
        lf = open(self.log, "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=lf, stderr=lf)
        lf.close()
        self.starts += 1
        if not wait_tcp(self.port, 10):
            fail("private mosquitto did not start: %s" % self.tail())

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def wait_client(self, client_id, since, timeout):
        """Wait until the broker log (after byte `since`) shows `client_id` connecting."""
        pat = (" as %s " % client_id).encode()

        def seen():
            with open(self.log, "rb") as f:
                f.seek(since)
                return pat in f.read()
        return wait_for(seen, timeout, 0.02)

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""


class VM(_Server):
    """Private VictoriaMetrics; the data dir survives stop/start."""

    def __init__(self, tag):
        self.port = free_port()
        self.dir = tmpdir(tag)
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["victoria-metrics", "-httpListenAddr=127.0.0.1:%d" % self.port,
             "-storageDataPath=" + os.path.join(self.dir, "data"), "-retentionPeriod=100y",
             "-search.disableCache", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.url + "/health", 30, "victoria-metrics")


class Influx1(_Server):
    """Private influxd 1.6 (same config as tests/servers.sh); data survives stop/start."""

    def __init__(self, tag):
        self.port, self.rpc = free_port(), free_port()
        self.dir = tmpdir(tag)
        self.url = "http://127.0.0.1:%d" % self.port
        self.conf = os.path.join(self.dir, "influxdb.conf")
        d = self.dir
        with open(self.conf, "w") as f:
            f.write('reporting-disabled = true\nbind-address = "127.0.0.1:%d"\n'
                    '[meta]\n  dir = "%s/meta"\n[data]\n  dir = "%s/data"\n  wal-dir = "%s/wal"\n'
                    '  query-log-enabled = false\n[http]\n  bind-address = "127.0.0.1:%d"\n'
                    '  log-enabled = false\n[monitor]\n  store-enabled = false\n'
                    '[continuous_queries]\n  enabled = false\n[subscriber]\n  enabled = false\n'
                    % (self.rpc, d, d, d, self.port))
        self.proc = None

    def start(self):
        lf = open(os.path.join(self.dir, "influxd.log"), "ab")
        self.proc = subprocess.Popen(["influxd", "-config", self.conf], stdout=lf, stderr=lf)
        lf.close()
        wait_http(self.url + "/ping", 30, "influxd")

    def query(self, db, q):
        qs = urllib.parse.urlencode({"db": db, "epoch": "ns", "q": q})
        return json.loads(http_get(self.url + "/query?" + qs))


# ------------------------------------------------------------------------------------------
# The gateway and its input
# ------------------------------------------------------------------------------------------

_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    return {k: (v[1:-1] if v.startswith('"') else v) for k, v in _KV.findall(line)}


class Gateway:
    """iiotgw reading `-s stdin` from a pipe we hold; stderr appended to `log`."""

    def __init__(self, args, log):
        self.log = log
        args = list(args)
        if os.environ.get("IIOTGW_REL_NOSPOOL"):
            # Diagnostic only: run without the spool to see what it buys (tests then may fail).
            out = []
            while args:
                a = args.pop(0)
                if a == "--spool":
                    args.pop(0)
                elif a == "-o" and args[0].startswith("spool."):
                    args.pop(0)
                else:
                    out.append(a)
            args = out + ["--spool", "none"]   # the spool is on by default
        # Its own state directory (lock): tests run gateways side by side, each with its own
        # --spool; one started after another shares nothing but what its arguments name.
        if "--state-dir" not in args:
            args += ["--state-dir", gwtest.fresh_state_dir()]
        self.args = [iiotgw(), "-s", "stdin", "-r", RULE, "--deadletter", "none"] + args
        lf = open(log, "ab")
        self.offset = lf.tell()  # where this run's log starts
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=lf)
        lf.close()
        self.fd = self.proc.stdin.fileno()

    def write(self, data):
        os.write(self.fd, data)

    def unread(self):
        """Bytes still in the stdin pipe (FIONREAD works on the write end: same pipe)."""
        b = array.array("i", [0])
        fcntl.ioctl(self.fd, termios.FIONREAD, b)
        return b[0]

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("iiotgw did not exit within %ss; log tail:\n%s" % (timeout, self.tail()))

    def text(self, whole=False):
        with open(self.log, errors="replace") as f:
            if not whole:
                f.seek(self.offset)
            return f.read()

    def events(self, name, whole=False):
        return [parse_log_line(l) for l in self.text(whole).splitlines()
                if " event=%s" % name in l and re.search(r"event=%s(\s|$)" % name, l)]

    def tail(self, n=3000):
        return self.text(True)[-n:]


class Feeder(threading.Thread):
    """Writes telemetry_line(id) for id = start, start+1, ... at `rate` lines/s to a Gateway.

    written: list of (id, byte offset in this pipe after the line, time.time() after write).
    Stops on stop() or when the pipe breaks (the gateway died)."""

    def __init__(self, gw, start, rate):
        super().__init__(daemon=True)
        self.gw, self.next_id, self.rate = gw, start, rate
        self.written = []
        self.bytes = 0
        self.broken = False
        self._halt = threading.Event()
        self.start()

    def run(self):
        period = 1.0 / self.rate
        t = time.monotonic()
        while not self._halt.is_set():
            line = telemetry_line(self.next_id)
            try:
                self.gw.write(line)
            except (BrokenPipeError, OSError):
                self.broken = True
                return
            self.bytes += len(line)
            self.written.append((self.next_id, self.bytes, time.time()))
            self.next_id += 1
            t += period
            d = t - time.monotonic()
            if d > 0:
                self._halt.wait(d)

    def stop(self):
        self._halt.set()
        self.join(5)

    def ids(self):
        return [w[0] for w in self.written]


# ------------------------------------------------------------------------------------------
# What arrived
# ------------------------------------------------------------------------------------------

def rel_ids(msgs, prefix, which="b"):
    """Packet ids received on P/rel/<which> (payload "id" for b, "id rx_ns" for a)."""
    topic = "%s/rel/%s" % (prefix, which)
    out = []
    for t, p, _r, _d in msgs:
        if t == topic:
            out.append(int(p.split()[0]))
    return out


def rx_times(msgs, prefix):
    """id -> rx_ns as published on P/rel/a (the gateway's receive time of the packet)."""
    out = {}
    for t, p, _r, _d in msgs:
        if t == prefix + "/rel/a":
            i, ns = p.split()
            out[int(i)] = int(ns)
    return out


def dup_count(ids):
    seen, d = set(), 0
    for i in ids:
        if i in seen:
            d += 1
        seen.add(i)
    return d


def vm_points(url, prefix, expect=None):
    """[(id, ts_ms)] of measurement rel (field id) with tag p=prefix, duplicates kept; waits
    (bounded) until at least `expect` points are searchable (see gwtest.vm_export)."""
    out = []
    for s in gwtest.vm_export(url, 'rel_id{p="%s"}' % prefix, expect):
        for v, t in zip(s["values"], s["timestamps"]):
            out.append((int(v), int(t)))
    return out


def parse_events(path, name):
    """key=value dicts of every `event=name` line of a log file."""
    with open(path, errors="replace") as f:
        return [parse_log_line(l) for l in f.read().splitlines()
                if re.search(r" event=%s(\s|$)" % name, l)]


# ------------------------------------------------------------------------------------------
# The spool on disk (format: docs/reliability.md, "On-disk format")
# ------------------------------------------------------------------------------------------

HDR = struct.Struct("<4sIIBBHQq")  # magic crc len sinks flags reserved seq wall_ns


def parse_segment(path):
    """[(offset, total_len, seq, payload bytes)] of the records in one intact segment."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off + HDR.size <= len(data):
        magic, _crc, ln, _s, _fl, _r, seq, _w = HDR.unpack_from(data, off)
        if magic != b"ISPL" or off + HDR.size + ln > len(data):
            break
        out.append((off, HDR.size + ln, seq, data[off + HDR.size:off + HDR.size + ln]))
        off += HDR.size + ln
    return out


def decode_mqtt(payload):
    """(topic, payload text) of a spooled MQTT message, or None for other records."""
    if len(payload) < 20 or payload[0:1] != b"M":
        return None
    _k, _q, _f, _z, tl, _z2, pl, _rx = struct.unpack_from("<BBBBHHIq", payload, 0)
    if 20 + tl + pl != len(payload):
        return None
    return payload[20:20 + tl].decode(errors="replace"), \
        payload[20 + tl:20 + tl + pl].decode(errors="replace")


def segments(spool):
    return sorted(glob.glob(os.path.join(spool, "spool-*.seg")))


def supports(key, value):
    """True when this iiotgw accepts `-o key=value` (probed with --dry-run, no network)."""
    r = subprocess.run([iiotgw(), "--dry-run", "-s", "file:/dev/null", "-r", RULE,
                        "-o", "%s=%s" % (key, value)], capture_output=True, text=True, timeout=20)
    return r.returncode == 0


def fast_reconnect_opts(sink):
    """-o options capping the reconnect/retry backoff of `sink` ("mqtt" or "influx") at 1 s,
    when the binary has such a knob. Its default (1 s doubling to 60 s, reset only after 60 s
    of health) would make 20 restarts in a minute take many minutes."""
    for key in ("%s.backoff_max" % sink, "%s.reconnect_max" % sink):
        if supports(key, "1"):
            return ["-o", key + "=1"]
    return []


# ------------------------------------------------------------------------------------------
# Tear-down (every test's `finally`)
# ------------------------------------------------------------------------------------------

def stop_all(feeders=(), gateways=(), subs=(), servers=()):
    """Stop what a test started, in this order: feeders (no more writes), gateways still
    running (SIGKILL), subscribers, private servers (stopped, dirs removed). None entries are
    what the test never got to start, and are skipped."""
    for f in feeders:
        if f:
            f.stop()
    for g in gateways:
        if g and g.proc.poll() is None:
            g.kill()
    for s in subs:
        if s:
            s.stop()
    for srv in servers:
        srv.cleanup()


def remove_workdir(d):
    """Remove a test's scratch dir, or keep it (and say where) when IIOTGW_REL_KEEP is set."""
    if os.environ.get("IIOTGW_REL_KEEP"):
        print("kept", d)
    else:
        shutil.rmtree(d, ignore_errors=True)


def rnd(seed_env="IIOTGW_REL_SEED"):
    seed = int(os.environ.get(seed_env) or random.randrange(1 << 30))
    print("seed=%d (set %s to repeat)" % (seed, seed_env), flush=True)
    return random.Random(seed)
