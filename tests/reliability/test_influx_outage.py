"""rel_influx_outage — the database is stopped for a while mid-stream and started again: every
point lands, with its original timestamp, exactly once in the set of (id, time) read back.

Two gateways run side by side on the same stream (100 packets/s on stdin, rel_rule.lua), each
with its own spool: one writes a private VictoriaMetrics through the v2 API, the other a private
InfluxDB 1.6 through the v1 API. Both servers are stopped (SIGTERM) 2 s into the stream for 4 s,
then started again on the same port and data directory; the stream goes on throughout.

The original timestamp of each point is the gateway's receive time of the packet; the rule also
publishes it on P/rel/a ("<id> <rx_ns>", shared mosquitto, not stopped), which gives the exact
expected time of every point. Read back: VictoriaMetrics /api/v1/export (milliseconds: compare
with rx_ns // 1e6), InfluxDB 1.6 /query?epoch=ns (exact nanoseconds). A point re-stamped at
replay time, missing, or never written fails the test.
"""
import os
import time
import urllib.parse

import reltest as R

host, mport = R.need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
mport = int(mport)
R.rnd()
RATE = 100


class Tee:
    """Feeder target writing every line to both gateways."""

    def __init__(self, *gws):
        self.gws = gws

    def write(self, data):
        for g in self.gws:
            g.write(data)


vm, ix = R.VM("io-vm"), R.Influx1("io-ix")
d = R.tmpdir("io")
pv, pi = R.unique("iov"), R.unique("ioi")
db = R.unique("db")
sub = gv = gi = feeder = None
try:
    vm.start()
    ix.start()
    R.http_post(ix.url + "/query", urllib.parse.urlencode({"q": "CREATE DATABASE " + db}).encode())
    sub = R.MqttSub(mport, "relsub-" + pv, [pv + "/rel/a", pi + "/rel/a"], clean=False, host=host)
    R.check(sub.subscribed.wait(10), "subscriber: no SUBACK")
    fast = R.fast_reconnect_opts("influx")
    common = ["--mqtt", "mqtt://%s:%d" % (host, mport), "-o", "influx.linger=0.2",
              "-o", "drain_timeout=60", "-o", "stats_interval=1"] + fast
    gv = R.Gateway(common + ["--prefix", pv, "--spool", os.path.join(d, "spool-v"),
                             "--influx", vm.url, "--influx-org", "rel", "--influx-bucket", "rel"],
                   os.path.join(d, "gw-v.log"))
    gi = R.Gateway(common + ["--prefix", pi, "--spool", os.path.join(d, "spool-i"),
                             "--influx", ix.url, "--influx-db", db], os.path.join(d, "gw-i.log"))
    feeder = R.Feeder(Tee(gv, gi), 1, RATE)
    time.sleep(2)
    t_stop = time.time()
    vm.stop()
    ix.stop()
    written_at_stop = len(feeder.written)
    time.sleep(4)
    vm.start()
    ix.start()
    t_up = time.time()
    time.sleep(2)
    feeder.stop()
    gv.close_stdin()
    gi.close_stdin()
    rc_v, rc_i = gv.wait(90), gi.wait(90)
    t_done = time.time()
    want = set(feeder.ids())
    R.check(not feeder.broken, "a gateway stopped reading stdin")

    R.wait_for(lambda: want <= set(R.rx_times(sub.snapshot(), pv)) and
               want <= set(R.rx_times(sub.snapshot(), pi)), 10, 0.1)
    msgs = sub.snapshot()
    rx_v, rx_i = R.rx_times(msgs, pv), R.rx_times(msgs, pi)
    R.check(want <= set(rx_v) and want <= set(rx_i),
            "reference MQTT messages missing (shared broker): %d/%d"
            % (len(want - set(rx_v)), len(want - set(rx_i))))

    # VictoriaMetrics: (id, ms) pairs must be exactly the expected ones.
    pts_v = R.vm_points(vm.url, pv, expect=len(want))
    exp_v = {(i, rx_v[i] // 1000000) for i in want}
    got_v = set(pts_v)
    # InfluxDB 1.6: exact nanoseconds.
    res = ix.query(db, "SELECT id FROM rel WHERE p='%s'" % pi)
    series = res["results"][0].get("series") or [{"values": []}]
    pts_i = [(int(v[1]), int(v[0])) for v in series[0]["values"]]
    exp_i = {(i, rx_i[i]) for i in want}
    got_i = set(pts_i)

    def last_stats(g):
        st = g.events("stats")
        return st[-1] if st else {}
    sv, si = last_stats(gv), last_stats(gi)
    during = sum(1 for i in want if t_stop <= rx_v[i] / 1e9 <= t_up)
    print("rel_influx_outage: packets=%d outage_s=%.1f packets_during_outage=%d "
          "vm: points=%d missing=%d wrong_or_extra=%d duplicates=%d retries=%s exit=%d | "
          "influxdb1.6: points=%d missing=%d wrong_or_extra=%d retries=%s exit=%d | "
          "drain_after_restart_s=%.1f backoff_knob=%s"
          % (len(want), t_up - t_stop, during, len(pts_v), len(exp_v - got_v),
             len(got_v - exp_v), len(pts_v) - len(got_v), sv.get("influx_retries"), rc_v,
             len(pts_i), len(exp_i - got_i), len(got_i - exp_i), si.get("influx_retries"), rc_i,
             t_done - t_up, " ".join(fast) or "none"), flush=True)
    R.check(written_at_stop > 0 and during > 0, "the outage did not happen mid-stream")
    R.check(got_v == exp_v, "VictoriaMetrics: missing %r, wrong/extra %r"
            % (sorted(exp_v - got_v)[:5], sorted(got_v - exp_v)[:5]))
    R.check(got_i == exp_i, "InfluxDB 1.6: missing %r, wrong/extra %r"
            % (sorted(exp_i - got_i)[:5], sorted(got_i - exp_i)[:5]))
    R.check(rc_v == 0 and rc_i == 0, "exit codes %d/%d (want 0)\n%s\n%s"
            % (rc_v, rc_i, gv.tail(1500), gi.tail(1500)))
    print("ok")
finally:
    R.stop_all(feeders=[feeder], gateways=[gv, gi], subs=[sub], servers=[vm, ix])
    R.remove_workdir(d)
