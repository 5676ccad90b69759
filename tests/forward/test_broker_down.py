"""Broker down at start with --spool: the rule outputs are spooled (stats say so), then the
broker starts: the backlog is delivered (to a subscriber's persistent session) WITHOUT retain
(the broker's retained store holds no data topic afterwards), and the packets that follow,
produced while connected, are live and keep the rule's retain flag (the retained current value
is the last live packet's). The gateway exits 0 only when the spool is empty."""
import os
import time

from fwdtest import (DEFAULT_RULE, Broker, Gateway, check, expected_outputs, free_port,
                     packets, parse_raw, stats_field, sub_collect, tmpdir, unique, wait_for)
from gwtest import mqtt_retained

d = tmpdir()
port = free_port()
prefix = unique("fwd")
broker = Broker(d, port)
broker.start()
sub_collect(port, prefix + "/#", prefix + "-sub", 1)  # create the persistent session
broker.stop()

backlog = packets(30)
live = packets(36)[30:]
gw = Gateway(["-r", DEFAULT_RULE, "-s", "stdin", "--mqtt", "mqtt://127.0.0.1:%d" % port,
              "--prefix", prefix, "--deadletter", "none", "--spool", os.path.join(d, "spool"),
              "-o", "stats_interval=0", "-o", "mqtt.max_inflight=10"])
try:
    check(gw.wait_event("spool_recovered"), "no spool_recovered event:\n" + "".join(gw.log))
    gw.send(backlog)
    want_backlog = []
    for ln in backlog:
        want_backlog += [(t, str(p)) for t, p, _, _ in expected_outputs(parse_raw(ln), prefix)[0]]

    def stats():
        n = len(gw.events("stats"))
        gw.proc.send_signal(10)
        wait_for(lambda: len(gw.events("stats")) > n, 5)
        return gw.events("stats")[-1]

    time.sleep(0.5)
    s = stats()
    check(stats_field(s, "mqtt_connected") == 0, "broker should be down: " + s)
    check(stats_field(s, "spool_pending_mqtt") == len(want_backlog),
          "expected %d spooled publishes: %s" % (len(want_backlog), s))
    check(stats_field(s, "spool_bytes") > 0, "spool_bytes must be real: " + s)

    broker.start()
    check(wait_for(lambda: stats_field(stats(), "spool_pending_mqtt") == 0, 30, 0.3),
          "backlog not delivered:\n" + "".join(gw.log[-30:]))
    s = stats()
    check(stats_field(s, "spool_replayed") >= len(want_backlog), "replayed counter: " + s)
    ret = mqtt_retained("127.0.0.1", port, prefix + "/#")
    data = [t for t in ret if not t.startswith(prefix + "/gateway/")]
    check(not data, "backlog must be published without retain, retained: %r" % data)
    check('"state":"ok"' in ret.get(prefix + "/gateway/spool", ""),
          "retained spool status: %r" % ret.get(prefix + "/gateway/spool"))

    gw.send(live)
    check(wait_for(lambda: stats_field(stats(), "spool_pending_mqtt") == 0 and
                   stats_field(stats(), "publishes") >= len(want_backlog), 15, 0.3),
          "live packets not delivered")
    time.sleep(0.3)
    ret = mqtt_retained("127.0.0.1", port, prefix + "/#")
    last = parse_raw(live[-1])
    check(ret.get(prefix + "/node1/temperature") == last["n1"]["t"],
          "live value must update the retained topic: %r" % ret.get(prefix + "/node1/temperature"))
    rc = gw.close()
    check(rc == 0, "exit %d\n%s" % (rc, "".join(gw.log[-30:])))

    got = sub_collect(port, prefix + "/#", prefix + "-sub", 2)
    got_pairs = [(t, p) for t, p, _ in got]
    missing = list(want_backlog)
    for p in got_pairs:
        if p in missing:
            missing.remove(p)
    check(not missing, "%d backlog publishes missing, e.g. %r" % (len(missing), missing[:3]))
    print("ok: %d backlog publishes delivered without retain; live retained" % len(want_backlog))
finally:
    if gw.proc.poll() is None:
        gw.proc.kill()
    broker.stop()
