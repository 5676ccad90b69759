"""An idle gateway gives back what a burst left in its heap.

A burst of 4,000 packets through a live stdin source with both sinks on real servers (default
options: the spool on) leaves freed memory inside the heap: sent InfluxDB batches, the spool
cursors' read chunks, Lua garbage. glibc keeps such memory resident until the heap is trimmed;
the gateway trims it on the first quiet tick and frees a caught-up cursor's chunk. Checked:
RssAnon once idle minus RssAnon before the burst stays within 0.45 MB (about 0.25 MB with the
trim, about 0.7 MB without it on the development VM).

Skipped in the sanitizer build: ASan's allocator is not glibc's, so the figures mean nothing.
"""
import os
import subprocess
import time

import gwtest
from gwtest import DEFAULT_RULE, SAMPLE_LOG, check, need_env

host, port, vm = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT", "IIOTGW_TEST_VM_URL")
LIMIT_KB = 450


def rss_anon(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    gwtest.fail("no RssAnon in /proc/%d/status" % pid)


gw = subprocess.Popen([gwtest.iiotgw(), "-r", DEFAULT_RULE, "-s", "stdin",
                       "--mqtt", "mqtt://%s:%s" % (host, port), "--influx", vm,
                       "--influx-org", "my-org", "--influx-bucket", gwtest.unique("trim"),
                       "--prefix", gwtest.unique("trim"), "--deadletter", "none",
                       "--log-level", "error"],
                      stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
try:
    time.sleep(1.5)  # connected, first ticks done
    with open("/proc/%d/maps" % gw.pid) as f:
        if "libasan" in f.read():
            print("SKIP: sanitizer build (not glibc's allocator)", flush=True)
            raise SystemExit(gwtest.SKIP)
    before = rss_anon(gw.pid)
    with open(SAMPLE_LOG, "rb") as f:
        session = f.read()
    gw.stdin.write(session * 10)
    gw.stdin.flush()
    time.sleep(5)  # read, ruled, sent and acknowledged long before (about 1 s unloaded)
    growth = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)
        check(gw.poll() is None, "the gateway exited (rc %s)" % gw.returncode)
        growth = rss_anon(gw.pid) - before
        if growth <= LIMIT_KB:
            break
    check(growth is not None and growth <= LIMIT_KB,
          "idle RssAnon grew by %d kB over the burst (before: %d kB), limit %d kB"
          % (growth, before, LIMIT_KB))
    print("PASS: idle RssAnon %d kB before the burst, +%d kB after it (limit +%d kB)"
          % (before, growth, LIMIT_KB))
finally:
    gw.stdin.close()
    gwtest.stop_process(gw, 30)
