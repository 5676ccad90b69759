"""Signals during shutdown (the state machine in gateway.c, docs/configuration.md "Signals and
exit codes"):

1. A first SIGTERM that arrives while the gateway waits after EOF for acknowledgements (the
   drain) bounds that wait by shutdown_timeout; it does not skip it. The broker comes up
   during the wait: everything is delivered and the exit code is 0.
2. A second SIGTERM skips the wait: with messages still undelivered (no broker) the gateway
   exits 2 at once.

A private mosquitto on a free port (the test starts and stops it), because the broker must be
down at first."""
import os
import signal
import subprocess
import threading
import time

from gwtest import check, fail, free_port, iiotgw, tmpdir, unique, wait_for

d = tmpdir()
port = free_port()
prefix = unique("sd")
rule = os.path.join(d, "rule.lua")
with open(rule, "w") as f:
    f.write('function on_packet(p) gw.publish(gw.prefix .. "/n", p.ts, 1) end\n')
data = os.path.join(d, "in.jsonl")
with open(data, "w") as f:
    for i in range(5):
        f.write('{"ts":%d}\n' % i)
conf = os.path.join(d, "mosquitto.conf")
with open(conf, "w") as f:
    f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % port)


def start_gateway():
    p = subprocess.Popen([iiotgw(), "-r", rule, "-s", "file:" + data, "--prefix", prefix,
                          "--mqtt", "mqtt://127.0.0.1:%d" % port, "--deadletter", "none",
                          "-o", "drain_timeout=60", "-o", "shutdown_timeout=10",
                          "-o", "mqtt.backoff_base=0.1", "-o", "mqtt.backoff_max=0.2"],
                         stderr=subprocess.PIPE, text=True)
    log = []
    threading.Thread(target=lambda: [log.append(l) for l in p.stderr], daemon=True).start()
    return p, log


def has(log, text):
    return any(text in l for l in list(log))


def wait_exit(p, timeout, log):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        fail("gateway did not exit within %.0f s\n%s" % (timeout, "".join(log)))


broker = None
procs = []
try:
    # 1. SIGTERM during the EOF drain, broker comes up within shutdown_timeout -> exit 0.
    p, log = start_gateway()
    procs.append(p)
    check(wait_for(lambda: has(log, "event=source_eof"), 10), "no EOF:\n" + "".join(log))
    time.sleep(0.3)  # the drain is waiting on the unreachable broker
    check(p.poll() is None, "the drain must wait for the broker:\n" + "".join(log))
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    check(p.poll() is None, "a first SIGTERM during the drain must not skip the wait "
          "(exit %s)\n%s" % (p.poll(), "".join(log)))
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    rc = wait_exit(p, 20, log)
    took = time.time() - t0
    check(rc == 0, "exit %d after the broker came up within shutdown_timeout\n%s"
          % (rc, "".join(log)))
    check(has(log, "event=drained"), "all messages must be acknowledged:\n" + "".join(log))
    check(not has(log, "shutdown_forced"), "one signal is not a forced shutdown:\n" + "".join(log))
    check(took < 10.5, "the wait is bounded by shutdown_timeout: took %.1f s" % took)

    # 2. No broker: a second SIGTERM skips the wait, exit 2 (data left undelivered).
    broker.terminate()
    broker.wait(5)
    broker = None
    p, log = start_gateway()
    procs.append(p)
    check(wait_for(lambda: has(log, "event=source_eof"), 10), "no EOF:\n" + "".join(log))
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    check(p.poll() is None, "the first SIGTERM waits up to shutdown_timeout")
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    rc = wait_exit(p, 10, log)
    check(rc == 2, "a forced exit with messages undelivered must exit 2, got %d\n%s"
          % (rc, "".join(log)))
    check(has(log, "event=shutdown_forced"), "forced shutdown not logged:\n" + "".join(log))
    check(time.time() - t0 < 6, "the second signal must skip the wait")
finally:
    for q in procs:
        if q.poll() is None:
            q.kill()
            q.wait()
    if broker:
        broker.terminate()
        broker.wait(5)
print("ok: SIGTERM during the drain waits and delivers; a second SIGTERM exits 2")
