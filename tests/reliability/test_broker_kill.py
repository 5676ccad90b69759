"""rel_broker_kill — the broker is SIGKILLed and restarted 20 times during a steady stream;
every packet's publishes must reach a persistent-session subscriber at least once.

Setup: a private mosquitto (never the shared one), iiotgw with --spool, clean_session=false and
a fixed client id, fed 100 packets/s on stdin with the tiny rule rel_rule.lua (per packet:
P/rel/a retained and P/rel/b, QoS 1). The subscriber is reltest.MqttSub: QoS 1, clean session
false, records a message before it PUBACKs it and never exits during the test.

What a SIGKILLed broker can lose that no client can recover, and how this test closes it.
mosquitto PUBACKs a QoS 1 PUBLISH as soon as it has the message in memory; the gateway then
(correctly) forgets it. If the broker dies before the message is either on the subscriber's
socket or in its persistence file, it is gone, and that loss belongs to the broker, not to the
gateway. So that the test measures the gateway:
  * the subscriber is connected whenever the broker is up (it reconnects every 50 ms), and
    mosquitto forwards a message to connected subscribers *before* it queues the PUBACK
    (handle__publish: sub__messages_queue, then send__puback); on loopback send() puts the bytes
    straight into the subscriber's receive queue, so a PUBACKed message is already with the
    subscriber;
  * `max_inflight_messages 0` and `max_queued_messages 0` (unlimited): the broker never holds a
    message back in its own memory because the subscriber's window is full;
  * while the subscriber is reconnecting after a restart, messages wait in its persistent
    session: `persistence true`, `autosave_on_changes true`, `autosave_interval 1` saves the
    database after every change (on tmpfs, so the saves are cheap; we simulate process crashes);
  * the subscription itself is made durable by one clean broker stop before the stream starts,
    and the test fails if the broker ever reports the subscriber's session as lost;
  * a kill waits until the gateway has reconnected (seen in the broker log), so that kills hit
    a connected publisher with traffic in flight. The gateway's reconnect backoff (1 s doubling
    to 60 s, reset only after 60 s of health) would make that take many minutes over 20 kills;
    when the binary has an `mqtt.backoff_max` knob the test sets it to 1 s, otherwise a kill
    waits at most 3 s for the reconnect (later kills then hit a gateway that is backing off,
    printed as connected_kills) and the final drain may take up to a minute.
The remaining broker-side window is the few microseconds inside one mosquitto loop iteration
between queuing a message for an offline persistent session and saving it; a loss there would
show up as a missing packet and fail the test (it has not happened in our runs).

Checks: every packet id written appears on both P/rel/a and P/rel/b; gateway exits 0 after
stdin EOF (everything acknowledged, spool included). Prints duplicates.
"""
import os
import time

import reltest as R

rng = R.rnd()
RATE = 100
KILLS = int(os.environ.get("IIOTGW_REL_KILLS", "20"))

broker = R.Broker("bk")
d = R.tmpdir("bk")
gw = sub = feeder = None
try:
    broker.start()
    prefix = R.unique("bk")
    sub = R.MqttSub(broker.port, "relsub-" + prefix, [prefix + "/rel/#"], clean=False)
    R.check(sub.subscribed.wait(10), "subscriber: no SUBACK")
    broker.stop()          # clean stop: the subscription is saved before any SIGKILL
    broker.start()
    R.check(R.wait_for(lambda: sub.connects >= 2 and sub.connected.is_set(), 10),
            "subscriber did not reconnect")
    R.check(sub.sessions_lost == 0, "broker lost the subscriber session on a clean restart")

    client_id = "relgw-" + prefix
    fast = R.fast_reconnect_opts("mqtt")
    # Without a backoff knob the gateway's reconnect delay grows to 60 s over 20 quick kills:
    # then a kill does not wait longer than 3 s for the gateway to be connected again.
    reconnect_wait = 20 if fast else 3
    since = broker.log_size()
    gw = R.Gateway(["--mqtt", "mqtt://127.0.0.1:%d" % broker.port, "--prefix", prefix,
                    "--spool", os.path.join(d, "spool"), "-o", "mqtt.clean_session=false",
                    "-o", "mqtt.client_id=" + client_id, "-o", "drain_timeout=120",
                    "-o", "stats_interval=" + os.environ.get("IIOTGW_REL_STATS", "1")] + fast,
                   os.path.join(d, "gw.log"))
    feeder = R.Feeder(gw, 1, RATE)
    down_total = 0.0
    hot_kills = 0   # kills that hit a connected gateway
    for i in range(KILLS):
        if broker.wait_client(client_id, since, reconnect_wait):
            hot_kills += 1
        else:
            R.check(not fast, "kill %d: the gateway did not reconnect within 20 s\n%s"
                    % (i, gw.tail()))
        time.sleep(rng.uniform(0.2, 0.9))
        broker.kill()
        R.check(gw.proc.poll() is None, "iiotgw died after broker kill %d:\n%s" % (i, gw.tail()))
        down = rng.uniform(0.1, 0.8)
        down_total += down
        time.sleep(down)
        since = broker.log_size()
        broker.start()
    time.sleep(0.5)
    feeder.stop()
    gw.close_stdin()
    rc = gw.wait(150)
    written = feeder.ids()
    R.check(not feeder.broken, "stdin pipe broke: the gateway stopped reading")

    want = set(written)

    def complete():
        m = sub.snapshot()
        return want <= set(R.rel_ids(m, prefix, "a")) and want <= set(R.rel_ids(m, prefix, "b"))
    R.wait_for(complete, 15, 0.1)
    msgs = sub.snapshot()
    a, b = R.rel_ids(msgs, prefix, "a"), R.rel_ids(msgs, prefix, "b")
    miss_a, miss_b = sorted(want - set(a)), sorted(want - set(b))
    extra = (set(a) | set(b)) - want
    dups = R.dup_count(a) + R.dup_count(b)
    st = gw.events("stats", True)
    last = st[-1] if st else {}
    print("rel_broker_kill: packets=%d publishes_expected=%d received=%d kills=%d "
          "connected_kills=%d broker_down_s=%.1f backoff_knob=%s missing=%d duplicates=%d (%.2f%%) subscriber_reconnects=%d "
          "sessions_lost=%d gw_exit=%d mqtt_reconnects=%s spool_replayed=%s"
          % (len(written), 2 * len(written), len(a) + len(b), KILLS, hot_kills, down_total,
             " ".join(fast) or "none",
             len(miss_a) + len(miss_b), dups, 100.0 * dups / max(1, 2 * len(written)),
             sub.connects - 1, sub.sessions_lost, rc, last.get("mqtt_reconnects"),
             last.get("spool_replayed")), flush=True)
    R.check(not extra, "ids never written arrived: %r" % sorted(extra)[:10])
    R.check(sub.sessions_lost == 0,
            "the broker lost the subscriber's persistent session %d times (broker-side loss, "
            "not the gateway's)" % sub.sessions_lost)
    R.check(not miss_a and not miss_b,
            "packets missing downstream: P/rel/a %d (e.g. %r), P/rel/b %d (e.g. %r)"
            % (len(miss_a), miss_a[:10], len(miss_b), miss_b[:10]))
    R.check(rc == 0, "iiotgw exit %d after EOF (want 0: everything acknowledged)\n%s"
            % (rc, gw.tail()))
    print("ok")
finally:
    R.stop_all(feeders=[feeder], gateways=[gw], subs=[sub], servers=[broker])
    R.remove_workdir(d)
