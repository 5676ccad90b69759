"""fwdtest.py — helpers for the store-and-forward tests: a private mosquitto we can stop and
start (with on-disk persistence, so a subscriber's persistent session survives the outage),
and a gateway fed line by line through stdin."""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import (DEFAULT_RULE, SAMPLE_EXPECTED, check, expected_outputs, fail,  # noqa: E402,F401
                    free_port, iiotgw, parse_raw, tmpdir, unique, wait_for)


def wait_port(port, timeout=10):
    import socket

    def ok():
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False
        finally:
            s.close()
    return wait_for(ok, timeout)


class Broker:
    """mosquitto on a fixed port with persistence in `d` (sessions survive a restart)."""

    def __init__(self, d, port):
        self.d, self.port, self.proc = d, port, None
        self.conf = os.path.join(d, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/\nset_tcp_nodelay true\n"
                    "max_queued_messages 100000\n" % (port, d))
            if os.geteuid() == 0:  # else mosquitto drops to user mosquitto: no write access to d
                f.write("user root\n")

    def start(self):
        self.log = open(os.path.join(self.d, "mosquitto.log"), "a")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        check(wait_port(self.port), "mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: writes the persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def sub_collect(port, topic, client_id, seconds):
    """Connect with a persistent MQTT 5 session (retain-as-published), read for `seconds`,
    return [(topic, payload, retain)]."""
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
                        "-c", "-i", client_id, "-x", "3600", "--retain-as-published", "-q", "1",
                        "-t", topic, "-F", "%r %t %p", "-W", str(seconds)],
                       capture_output=True, text=True)
    out = []
    for ln in r.stdout.splitlines():
        parts = ln.split(" ", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2], parts[0] == "1"))
    return out


class Gateway:
    """iiotgw reading stdin; stderr collected for log checks."""

    def __init__(self, args):
        self.proc = subprocess.Popen([iiotgw()] + args, stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        self.t = threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr],
                                  daemon=True)
        self.t.start()

    def send(self, lines):
        for ln in lines:
            self.proc.stdin.write(ln if ln.endswith("\n") else ln + "\n")
        self.proc.stdin.flush()

    def events(self, name):
        return [l for l in self.log if " event=%s " % name in l or l.rstrip().endswith(
            "event=" + name)]

    def wait_event(self, name, timeout=10):
        return wait_for(lambda: self.events(name), timeout)

    def close(self, timeout=30):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("gateway did not exit\n" + "".join(self.log[-40:]))
        self.t.join(5)
        return rc


def stats_field(line, key):
    for kv in line.split():
        if kv.startswith(key + "="):
            return float(kv.split("=", 1)[1])
    return None


def packets(n):
    with open(SAMPLE_EXPECTED) as f:
        lines = [l for l in f if l.strip()]
    return lines[:n]
