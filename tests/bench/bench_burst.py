"""A burst through a live TCP source with DEFAULT options: is every message and point
delivered, and what is the daemon's peak RSS against the 16 MB budget?

What is measured, and why this way: a live source (tcp:, like an RTT server) cannot be paused
the way a file can, so a burst faster than the broker acknowledges must be absorbed by the
gateway: by the durable spool (the default) on disk, or by the bounded memory FIFOs, which
overflow and drop (`--spool none`). The test serves N packet lines on a loopback socket, all at
once, as fast as the kernel takes them; the daemon runs the default rule with nothing but the
servers' addresses, a topic prefix / database of its own and a state directory (every tuning
option at its default) against the real mosquitto and VictoriaMetrics of tests/servers.sh.
Each packet gives 9 QoS 1 publishes and 9 points. A subscriber (mosquitto_sub) counts the
messages that reached the broker; VictoriaMetrics' export counts the points stored, and the
distinct values of the per-packet counter (stats/packets_received = 1..N) show that none is
missing. Peak RSS is the kernel's high-water mark (VmHWM) of the daemon, read when everything
arrived (or at the deadline).

    python3 bench_burst.py [N ...]            figures for each burst (default 20000 100000),
                                              and for the same burst with --spool none as the
                                              reference of what the default buys
    python3 bench_burst.py --check [N]        correctness only (default 20000): exit 1 when
                                              anything is missing (no timing, no RSS bound)

Needs IIOTGW_BIN and the IIOTGW_TEST_* variables (tests/servers.sh); exit 77 without them.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
import gwtest  # noqa: E402
from gwtest import DEFAULT_RULE, SAMPLE_EXPECTED, need_env  # noqa: E402

RSS_BUDGET_KB = 16 * 1024
PER_PACKET = 9   # publishes and points per full packet with the default rule

host, port, vm = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT", "IIOTGW_TEST_VM_URL")


def packets(n):
    """N lines of the receiver's telemetry, each with all 9 metrics and sts.rx = 1..N."""
    full = [json.loads(l) for l in open(SAMPLE_EXPECTED) if '"n2":{"t"' in l]
    full = [o for o in full if "h" in o["n2"]]
    out = []
    for k in range(n):
        o = dict(full[k % len(full)])
        o["ts"] = 500 * k
        o["sts"] = {"rx": k + 1, "err": 0}
        out.append("[INFO] JSON sent via VCP: %s\n" % json.dumps(o, separators=(",", ":")))
    return "".join(out).encode()


class Server(threading.Thread):
    """Accepts the gateway's connection, writes the whole burst at once, then keeps the
    connection open (a live source has no end)."""

    def __init__(self, data):
        super().__init__(daemon=True)
        self.data = data
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.conn = None
        self.start()

    def run(self):
        self.conn, _ = self.sock.accept()
        try:
            self.conn.sendall(self.data)
        except OSError:
            pass   # the gateway went away: the counts say what arrived

    def close(self):
        for s in (self.conn, self.sock):
            if s:
                s.close()


class Counter:
    """mosquitto_sub on PREFIX/#, counting the rule's messages (the gateway's own topics
    under PREFIX/gateway/ are left out) as they arrive."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.n = 0
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", str(port), "-q", "1", "-t", prefix + "/#",
             "-T", prefix + "/gateway/#", "-F", "%t"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        time.sleep(0.3)   # subscribed before the first publish

    def _read(self):
        for _ in self.proc.stdout:
            self.n += 1

    def stop(self):
        gwtest.stop_process(self.proc, 5)
        self.t.join(5)


def vm_counts(db, n):
    """(samples stored for this database, distinct packets_received values)."""
    series = gwtest.vm_export(vm, '{db="%s"}' % db, expect=PER_PACKET * n, timeout=5)
    # The gateway's own stats point (measurement iiotgw) lands in the same database.
    series = [s for s in series if not s["metric"].get("__name__", "").startswith("iiotgw")]
    total = sum(len(s["values"]) for s in series)
    rx = set()
    for s in series:
        if s["metric"].get("__name__", "").startswith("packets_received"):
            rx.update(s["values"])
    return total, len(rx)


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def burst(n, deadline_s, extra=()):
    tag = gwtest.unique("burst%d" % n)
    prefix, db = tag, tag + "db"
    srv = Server(packets(n))
    sub = Counter(prefix)
    state = gwtest.fresh_state_dir()
    args = [gwtest.iiotgw(), "-r", DEFAULT_RULE, "-s", "rx=tcp:127.0.0.1:%d" % srv.port,
            "--mqtt", "mqtt://%s:%s" % (host, port), "--influx", vm, "--influx-db", db,
            "--prefix", prefix, "--state-dir", state] + list(extra)
    log = open(os.path.join(os.path.dirname(state), "gw.log"), "w+")
    t0 = time.monotonic()
    gw = subprocess.Popen(args, stderr=log)
    want = PER_PACKET * n
    points = rx = 0
    try:
        end = t0 + deadline_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < end and gw.poll() is None:
            if sub.n >= want:
                points, rx = vm_counts(db, n)
                if points >= want and rx == n:
                    break
            if sub.n != last:
                last, last_change = sub.n, time.monotonic()
            elif time.monotonic() - last_change > 5:
                break   # nothing arrived for 5 s: what is missing is lost
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        hwm = status_kb(gw.pid, "VmHWM") if gw.poll() is None else 0
        if sub.n < want or points < want:
            time.sleep(1)   # a last look: VictoriaMetrics ingests asynchronously
            points, rx = vm_counts(db, n)
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
            gw.wait()
        sub.stop()
        srv.close()
    log.seek(0)
    text = log.read()
    log.close()
    stats = [l for l in text.splitlines() if "event=stats " in l]
    f = dict(re.findall(r"(\w+)=(\S+)", stats[-1])) if stats else {}
    return {
        "n": n, "want": want, "received": sub.n, "points": points, "rx": rx,
        "published": int(f.get("publishes", 0)), "dropped": int(f.get("mqtt_dropped", 0)),
        "influx_dropped": int(f.get("influx_dropped", 0)), "spool_drops": int(f.get("spool_drops_full", 0)),
        "hwm_kb": hwm, "elapsed": elapsed, "exit": gw.returncode, "log": text,
    }


def report(r, label="default options, spool in the state directory"):
    ok_msgs = r["received"] >= r["want"]
    ok_pts = r["points"] >= r["want"] and r["rx"] == r["n"]
    ok_rss = 0 < r["hwm_kb"] <= RSS_BUDGET_KB
    print("burst of %d packets through tcp: (%s)" % (r["n"], label))
    print("  MQTT messages: published %d, received by the subscriber %d of %d  %s"
          % (r["published"], r["received"], r["want"], "OK" if ok_msgs else "LOST %d"
             % (r["want"] - r["received"])))
    print("  points: in VictoriaMetrics %d of %d, packets %d of %d  %s"
          % (r["points"], r["want"], r["rx"], r["n"], "OK" if ok_pts else "LOST"))
    print("  drops: mqtt %d, influx %d, spool full %d"
          % (r["dropped"], r["influx_dropped"], r["spool_drops"]))
    print("  peak RSS (VmHWM) %.1f MB = %.2fx the 16 MB budget  %s"
          % (r["hwm_kb"] / 1024.0, r["hwm_kb"] / RSS_BUDGET_KB, "OK" if ok_rss else "OVER"))
    print("  ran %.1f s until everything arrived (or 5 s without progress)" % r["elapsed"])
    return ok_msgs, ok_pts, ok_rss


def main():
    argv = sys.argv[1:]
    check_only = bool(argv) and argv[0] == "--check"
    if check_only:
        argv = argv[1:]
    sizes = [int(a) for a in argv] or ([20000] if check_only else [20000, 100000])
    good = True
    for n in sizes:
        r = burst(n, deadline_s=60 + n / 250.0)
        ok_msgs, ok_pts, ok_rss = report(r)
        if not (ok_msgs and ok_pts):
            print("  log tail:\n" + r["log"][-3000:])
        good = good and ok_msgs and ok_pts and (check_only or ok_rss)
        if not check_only:
            # The reference, same burst, same run: no spool, the memory FIFOs alone.
            ref = burst(n, deadline_s=30 + n / 1000.0, extra=["--spool", "none"])
            report(ref, "reference: --spool none")
    if check_only and not good:
        gwtest.fail("a burst with default options lost messages or points")
    print("ok" if good else "MISS")
    if not check_only and not good:
        sys.exit(1)


main()
