"""The Prometheus endpoint (--metrics) scraped by a real Prometheus (Debian's `prometheus`).

1. The daemon reads packets from a live TCP source (this test is the RTT server) with
   --metrics on a free loopback port; a Prometheus started here scrapes it every second, its
   storage in the test's temporary directory.
2. After N packets, SIGUSR1 makes the gateway log its stats report; the `packets` figure of
   that report, iiotgw_packets_total read back through Prometheus's HTTP API and N must agree,
   and so must the per-source line counter. A second, flapping exec: source shows its
   restarts in the report (source.flap.restarts) and in iiotgw_source_restarts_total.
3. `promtool check metrics` accepts the exposition text; the HELP/TYPE lines, the _total
   suffixes, the per-source and per-sink labels and the build info are there.
4. HTTP behaviour: /healthz 200 while running, 404 for another path, 405 (with Allow) for
   POST, HEAD without a body; the endpoint answers while the loop is busy with a client that
   sends half a request and stalls (the loop is not blocked by it).
5. Shutdown: with publishes the (unreachable) broker never acknowledges, SIGTERM starts a
   bounded drain; /healthz answers 503 during it, then the daemon exits.
6. --check refuses a malformed --metrics address; a port already in use is a start error.
7. With the test broker: scraping /metrics does not consume the latency samples of the next
   stats report (mqtt_ack_samples counts every acknowledged packet).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from gwtest import (DEFAULT_RULE, SKIP, check, fail, free_port, iiotgw, run, stop_process,
                    tmpdir, wait_for)

PACKET = ('[INFO] JSON sent via VCP: {"ts":%d,"n1":{"t":27.6,"h":54.1,"g":84190},'
          '"n2":{"t":26.8,"h":48.8},"rssi":-39,"snr":13,"rx":1,"crc":0}\n')
N = 37

for tool in ("prometheus", "promtool"):
    if not shutil.which(tool):
        print("SKIP: %s not installed (Debian package prometheus; tests/setup.sh)" % tool)
        raise SystemExit(SKIP)

d = tmpdir()
procs = []


def cleanup():
    for p in procs:
        stop_process(p, 10)


import atexit  # noqa: E402 (registered after tmpdir's rmtree, so it runs first)
atexit.register(cleanup)


def http(url, method="GET", timeout=5):
    """(status, headers, body) — HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


# --- the RTT server the gateway's tcp: source connects to ----------------------------------
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
rtt_port = srv.getsockname()[1]
conn_box = []
threading.Thread(target=lambda: conn_box.append(srv.accept()[0]), daemon=True).start()

mport = free_port()
maddr = "127.0.0.1:%d" % mport
log_path = os.path.join(d, "gw.log")
log = open(log_path, "w")
# The broker port has nothing listening: publishes wait in the MQTT queue, so the SIGTERM
# drain below has something to wait for. No spool: the queue is in memory.
dead_broker = free_port()
# A second source, "flap", exits at once and is respawned with backoff: its restarts counter
# grows, in the stats report and in /metrics alike.
gw = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s", "rx=tcp:127.0.0.1:%d" % rtt_port,
                       "-s", "flap=exec:exit 3",
                       "--mqtt", "mqtt://127.0.0.1:%d" % dead_broker, "--deadletter", "none",
                       "--metrics", maddr, "-o", "stats_interval=0", "-o", "shutdown_timeout=4"],
                      stdout=subprocess.DEVNULL, stderr=log)
procs.append(gw)


def log_text():
    with open(log_path) as f:
        return f.read()


check(wait_for(lambda: conn_box, 10), "the gateway never connected to the tcp source:\n" + log_text())
check(wait_for(lambda: "metrics_listening" in log_text(), 10),
      "no metrics_listening log line:\n" + log_text())

# --- Prometheus -------------------------------------------------------------------------------
pport = free_port()
pcfg = os.path.join(d, "prometheus.yml")
with open(pcfg, "w") as f:
    f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: iiotgw\n    static_configs:\n"
            "      - targets: ['%s']\n" % maddr)
plog = open(os.path.join(d, "prometheus.log"), "w")
prom = subprocess.Popen(["prometheus", "--config.file=" + pcfg,
                         "--storage.tsdb.path=" + os.path.join(d, "tsdb"),
                         "--web.listen-address=127.0.0.1:%d" % pport,
                         "--storage.tsdb.retention.time=1h"],
                        cwd=d, stdout=plog, stderr=plog)
procs.append(prom)
papi = "http://127.0.0.1:%d/api/v1/query?" % pport


def prom_query(q):
    """The instant vector of query q as {labels-as-json: value} (None while not answering)."""
    try:
        st, _, body = http(papi + urllib.parse.urlencode({"query": q}))
    except OSError:
        return None
    if st != 200:
        return None
    r = json.loads(body)
    return {json.dumps(s["metric"], sort_keys=True): float(s["value"][1])
            for s in r["data"]["result"]}


def prom_scalar(q):
    v = prom_query(q)
    return list(v.values())[0] if v and len(v) == 1 else None


check(wait_for(lambda: prom_scalar('up{job="iiotgw"}') == 1.0, 30, 0.3),
      "Prometheus never scraped the endpoint successfully (up != 1):\n" +
      open(os.path.join(d, "prometheus.log")).read()[-3000:])

# --- feed packets, compare the three numbers ------------------------------------------------
conn = conn_box[0]
for i in range(N):
    conn.sendall((PACKET % (1000 + i)).encode())


def report_packets():
    """The packets figure of the newest stats report in the log."""
    m = re.findall(r"event=stats .*?\bpackets=(\d+)", log_text())
    return int(m[-1]) if m else None


def settled():
    gw.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    return report_packets() == N


check(wait_for(settled, 15, 0.3), "the stats report never counted %d packets (last: %s)"
      % (N, report_packets()))
stats_line = [l for l in log_text().splitlines() if "event=stats" in l][-1]
check(re.search(r"\bsource\.rx\.restarts=0\b", stats_line),
      "the stats report lacks source.rx.restarts: " + stats_line)
check(re.search(r"\bsource\.rx\.lines=%d\b" % N, stats_line),
      "the stats report lacks source.rx.lines=%d: %s" % (N, stats_line))

flap = re.search(r"\bsource\.flap\.restarts=(\d+)\b", stats_line)
check(flap, "the stats report lacks source.flap.restarts: " + stats_line)

reported = report_packets()
via_prom = wait_for(lambda: prom_scalar("iiotgw_packets_total") == reported and reported, 20, 0.3)
check(via_prom, "Prometheus says iiotgw_packets_total=%s, the stats report says packets=%s"
      % (prom_scalar("iiotgw_packets_total"), reported))
src_lines = prom_query('iiotgw_source_lines_total{source="rx"}')
check(src_lines and list(src_lines.values())[0] == N,
      "iiotgw_source_lines_total{source=\"rx\"} through Prometheus: %s, expected %d" % (src_lines, N))
rep_pubs = int(re.search(r"\bpublishes=(\d+)", stats_line).group(1))
pubs = prom_query('iiotgw_publishes_total')
check(rep_pubs > 0 and pubs and list(pubs.values())[0] == rep_pubs,
      "iiotgw_publishes_total through Prometheus: %s, the stats report: %d" % (pubs, rep_pubs))
print("Prometheus: iiotgw_packets_total=%d = stats report packets=%d = sent %d"
      % (prom_scalar("iiotgw_packets_total"), reported, N))

# --- the exposition text ----------------------------------------------------------------------
st, hdr, text = http("http://%s/metrics" % maddr)
check(st == 200, "/metrics answered %d" % st)
check(hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
      "/metrics Content-Type is %r" % hdr.get("Content-Type"))
r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
      "promtool check metrics complains (rc %d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
for want in ('iiotgw_build_info{version="', 'iiotgw_source_restarts_total{source="rx"} 0',
             'iiotgw_sink_up{sink="mqtt"} 0', 'iiotgw_sink_queue_records{sink="mqtt"} ',
             'iiotgw_sink_acked_total{sink="influx"} 0', "iiotgw_spool_size_bytes ",
             "iiotgw_resident_memory_bytes ", "iiotgw_ready 1",
             "# TYPE iiotgw_packets_total counter", "# HELP iiotgw_packets_total "):
    check(want in text, "/metrics lacks %r" % want)
names = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
for name, kind in names:
    check(name.startswith("iiotgw_"), "metric %s lacks the iiotgw_ prefix" % name)
    check((kind == "counter") == name.endswith("_total"),
          "metric %s (%s): counters and only counters end in _total" % (name, kind))
    check("# HELP %s " % name in text, "metric %s has no HELP" % name)
# The flapping source: /metrics and the report agree on its restarts (read back to back; the
# backoff grows from 1 s, so at most one more respawn can fall in between).
gw.send_signal(signal.SIGUSR1)
time.sleep(0.2)
rep = int(re.findall(r"\bsource\.flap\.restarts=(\d+)\b", log_text())[-1])
met = re.search(r'^iiotgw_source_restarts_total\{source="flap"\} (\d+)$',
                http("http://%s/metrics" % maddr)[2], re.M)
check(rep >= 1, "the flapping exec: source shows %d restarts in the stats report" % rep)
check(met and int(met.group(1)) in (rep, rep + 1),
      "iiotgw_source_restarts_total{source=\"flap\"} %s, the stats report says %d"
      % (met.group(1) if met else None, rep))
rss = float(re.search(r"^iiotgw_resident_memory_bytes (\S+)$", text, re.M).group(1))
check(rss > 1e6, "iiotgw_resident_memory_bytes %g is not a plausible RSS" % rss)

# --- HTTP behaviour ---------------------------------------------------------------------------
check(http("http://%s/healthz" % maddr)[0] == 200, "/healthz is not 200 while running")
check(http("http://%s/nope" % maddr)[0] == 404, "an unknown path is not 404")
st, hdr, _ = http("http://%s/metrics" % maddr, method="POST")
check(st == 405 and "GET" in hdr.get("Allow", ""), "POST /metrics: %d, Allow %r" % (st, hdr.get("Allow")))
st, hdr, body = http("http://%s/metrics" % maddr, method="HEAD")
check(st == 200 and body == "", "HEAD /metrics: %d with %d bytes of body" % (st, len(body)))
# A client that sends half a request and then nothing: the loop keeps serving others.
stall = socket.create_connection(("127.0.0.1", mport))
stall.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
st = http("http://%s/healthz" % maddr, timeout=3)[0]
check(st == 200 and time.time() - t0 < 1.5,
      "with a stalled client, /healthz took %.2f s (status %d)" % (time.time() - t0, st))
conn.sendall((PACKET % 9999).encode())
check(wait_for(lambda: (gw.send_signal(signal.SIGUSR1), time.sleep(0.1), report_packets())[2] == N + 1,
               5, 0.2), "a packet sent while a client stalls was not processed")
stall.close()

# --- shutdown: /healthz 503 during the drain --------------------------------------------------
stop_process(prom, 10)
gw.send_signal(signal.SIGTERM)
seen = wait_for(lambda: http("http://%s/healthz" % maddr, timeout=2)[0] == 503, 3, 0.05)
check(seen, "/healthz never answered 503 after SIGTERM (during the drain)")
m = http("http://%s/metrics" % maddr, timeout=2)[2]
check("iiotgw_ready 0" in m, "iiotgw_ready is not 0 during the drain")
try:
    rc = gw.wait(15)
except subprocess.TimeoutExpired:
    fail("the gateway did not exit within 15 s of SIGTERM:\n" + log_text())
check(rc == 2, "exit code %d after a drain with an unreachable broker (expected 2)" % rc)
try:
    socket.create_connection(("127.0.0.1", mport), timeout=1).close()
    fail("the metrics port still accepts connections after exit")
except OSError:
    pass
conn.close()
srv.close()

# --- --check and start errors -----------------------------------------------------------------
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--mqtt", "none", "--metrics", "9108"])
check(r.returncode == 1 and "metrics" in r.stderr and '"9108"' in r.stderr,
      "--check with --metrics 9108: rc %d, %s" % (r.returncode, r.stderr))
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--mqtt", "none", "--metrics",
         "127.0.0.1:9108"])
check(r.returncode == 0, "--check with a good --metrics address: rc %d %s" % (r.returncode, r.stderr))
busy = socket.socket()
# SO_REUSEPORT here: a gateway that set it too would share the port instead of failing.
busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
busy.bind(("127.0.0.1", 0))
busy.listen(1)
r = run(["-r", DEFAULT_RULE, "-s", "stdin", "--mqtt", "none", "--deadletter", "none",
         "--metrics", "127.0.0.1:%d" % busy.getsockname()[1]], input="", timeout=20)
busy.close()
check(r.returncode != 0 and "metrics: cannot listen" in r.stderr,
      "a metrics port in use: rc %d, %s" % (r.returncode, r.stderr[-500:]))
# --- a scrape does not take the stats report's latency samples (needs the test broker) -------
mhost, mqport = os.environ.get("IIOTGW_TEST_MQTT_HOST"), os.environ.get("IIOTGW_TEST_MQTT_PORT")
if mhost and mqport:
    srv2 = socket.socket()
    srv2.bind(("127.0.0.1", 0))
    srv2.listen(1)
    box2 = []
    threading.Thread(target=lambda: box2.append(srv2.accept()[0]), daemon=True).start()
    mport2 = free_port()
    log_path = os.path.join(d, "gw2.log")
    with open(log_path, "w") as log2:
        gw2 = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s",
                                "rx=tcp:127.0.0.1:%d" % srv2.getsockname()[1], "--mqtt",
                                "mqtt://%s:%s" % (mhost, mqport), "--deadletter", "none",
                                "--prefix", "tmetrics%d" % os.getpid(), "--metrics",
                                "127.0.0.1:%d" % mport2, "-o", "stats_interval=0"],
                               stdout=subprocess.DEVNULL, stderr=log2)
    procs.append(gw2)
    check(wait_for(lambda: box2, 10), "second gateway never connected:\n" + log_text())
    for i in range(10):
        box2[0].sendall((PACKET % (5000 + i)).encode())

    def samples_in_metrics():
        m = re.search(r"^iiotgw_mqtt_ack_latency_samples (\d+)$",
                      http("http://127.0.0.1:%d/metrics" % mport2)[2], re.M)
        return m and int(m.group(1)) == 10

    check(wait_for(samples_in_metrics, 10, 0.2), "/metrics never showed 10 latency samples")
    samples_in_metrics()  # scraped twice more: the report below must still see them
    gw2.send_signal(signal.SIGUSR1)
    check(wait_for(lambda: re.search(r"event=stats .*\bmqtt_ack_samples=(\d+)", log_text()), 5),
          "no stats report from the second gateway")
    n = int(re.search(r"event=stats .*\bmqtt_ack_samples=(\d+)", log_text()).group(1))
    check(n == 10, "after scrapes, the stats report has %d latency samples, expected 10" % n)
    stop_process(gw2, 10)
    box2[0].close()
    srv2.close()
else:
    print("note: IIOTGW_TEST_MQTT_HOST not set, latency-sample check skipped")
print("PASS")
