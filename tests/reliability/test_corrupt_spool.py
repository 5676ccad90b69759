"""rel_corrupt_spool — a damaged spool at start: the gateway starts, logs spool_recovered with
what it discarded, delivers every intact record and nothing else.

1. Build a spool the natural way: iiotgw with the broker down (nothing listens on the MQTT
   port), 600 packets on stdin (2 MQTT records each), small segments (16 KiB) so there are
   several; EOF; the gateway gives up after drain_timeout=1 and must exit 2 (data left).
2. Parse the segments with the documented format (docs/reliability.md) and list every record.
3. Damage: truncate the last segment in the middle of its 3rd-from-last record (a torn tail:
   that record and the two after it are gone) and flip one random byte inside a record in the
   middle of a middle segment (CRC-32C covers header and payload, so exactly that record is
   lost; recovery resynchronises on the next record).
4. Start the gateway with the broker up (shared mosquitto), add 10 live packets once it is
   connected, EOF: it must
   exit 0, log event=spool_recovered with discarded_records >= 1 and truncated_bytes > 0, and
   the subscriber must receive exactly the intact records plus the live packets: a damaged
   record delivered (or a garbled payload) or an intact one missing fails.
5. Backlog is published without retain, live messages keep the rule's retain flag: the retained
   value of P/rel/a afterwards must be the last live packet's.
"""
import os

import reltest as R

host, mport = R.need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
mport = int(mport)
rng = R.rnd()
N, LIVE = 600, 10

prefix = R.unique("cs")
d = R.tmpdir("cs")
spool = os.path.join(d, "spool")
log = os.path.join(d, "gw.log")
sub = gw = None
try:
    # --- 1. a spool full of pending records -------------------------------------------------
    dead = R.free_port()
    gw = R.Gateway(["--mqtt", "mqtt://127.0.0.1:%d" % dead, "--prefix", prefix, "--spool", spool,
                    "-o", "spool.segment_bytes=16384", "-o", "drain_timeout=1"], log)
    for pid in range(1, N + 1):
        gw.write(R.telemetry_line(pid))
    gw.close_stdin()
    rc1 = gw.wait(30)
    R.check(rc1 == 2, "run with the broker down: exit %d, want 2 (gave up, data left)\n%s"
            % (rc1, gw.tail()))

    # --- 2. what is in the spool ------------------------------------------------------------
    segs = [(p, R.parse_segment(p)) for p in R.segments(spool)]
    segs = [(p, recs) for p, recs in segs if recs]
    R.check(len(segs) >= 3, "want >= 3 non-empty segments, got %d" % len(segs))
    mine = {}  # seq -> (topic, payload) of our P/rel/ messages
    for _p, recs in segs:
        for _off, _ln, seq, payload in recs:
            m = R.decode_mqtt(payload)
            if m and m[0].startswith(prefix + "/rel/"):
                mine[seq] = m
    R.check(len(mine) == 2 * N, "spool holds %d of our records, want %d" % (len(mine), 2 * N))

    # --- 3. damage ----------------------------------------------------------------------------
    lost = set()
    last_path, last_recs = segs[-1]
    R.check(len(last_recs) >= 3, "last segment too short")
    off, ln, _seq, _pl = last_recs[-3]
    cut = off + rng.randrange(1, ln)
    with open(last_path, "r+b") as f:
        f.truncate(cut)
    lost |= {r[2] for r in last_recs[-3:]}
    mid_path, mid_recs = segs[len(segs) // 2 - 1] if len(segs) > 3 else segs[1]
    cand = [r for r in mid_recs[len(mid_recs) // 4: 3 * len(mid_recs) // 4] if r[2] in mine]
    off, ln, seq, _pl = cand[rng.randrange(len(cand))]
    pos = off + rng.randrange(ln)
    with open(mid_path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << rng.randrange(8))]))
    lost.add(seq)
    intact = {s: m for s, m in mine.items() if s not in lost}
    lost_mine = len([s for s in lost if s in mine])

    # --- 4. start with the broker up --------------------------------------------------------
    sub = R.MqttSub(mport, "relsub-" + prefix, [prefix + "/rel/#"], clean=True, host=host)
    R.check(sub.subscribed.wait(10), "subscriber: no SUBACK")
    gw = R.Gateway(["--mqtt", "mqtt://%s:%d" % (host, mport), "--prefix", prefix,
                    "--spool", spool, "-o", "spool.segment_bytes=16384",
                    "-o", "drain_timeout=30"], log)
    live = list(range(N + 1, N + LIVE + 1))
    # Live = produced while connected (what is produced before the connection is backlog too).
    R.check(R.wait_for(lambda: gw.events("mqtt_connected"), 10), "no mqtt_connected\n%s"
            % gw.tail())
    for pid in live:
        gw.write(R.telemetry_line(pid))
        R.time.sleep(0.02)
    gw.close_stdin()
    rc2 = gw.wait(60)
    rec = gw.events("spool_recovered")
    want = [m for m in intact.values()]
    for pid in live:
        want.append((prefix + "/rel/b", str(pid)))
    want_set = set(want)
    R.wait_for(lambda: want_set <= {(t, p) for t, p, _r, _d in sub.snapshot()}, 10, 0.1)
    msgs = sub.snapshot()
    got = [(t, p) for t, p, _r, _d in msgs]
    # P/rel/a payloads of live packets carry this run's rx time: match them by id.
    live_a = {int(p.split()[0]): p for t, p in got if t == prefix + "/rel/a"
              and int(p.split()[0]) in live}
    want_set |= {(prefix + "/rel/a", live_a[i]) for i in live if i in live_a}
    got_set = set(got)
    missing, extra = want_set - got_set, got_set - want_set
    ret = R.retained(mport, prefix + "/rel/a")
    r = rec[0] if rec else {}
    print("rel_corrupt_spool: records=%d segments=%d damaged_records=%d (torn tail 3, flip 1) "
          "delivered_intact=%d/%d missing=%d extra=%d duplicates=%d live=%d "
          "recovered: kept=%s pending=%s discarded_records=%s discarded_bytes=%s "
          "truncated_bytes=%s state=%s exit_down=%d exit_up=%d"
          % (len(mine), len(segs), lost_mine, len(set(intact.values()) & got_set), len(intact),
             len(missing), len(extra), len(got) - len(got_set), len(live), r.get("kept"),
             r.get("pending"), r.get("discarded_records"), r.get("discarded_bytes"),
             r.get("truncated_bytes"), r.get("state"), rc1, rc2), flush=True)
    R.check(rec, "no event=spool_recovered logged at start\n%s" % gw.tail())
    R.check(int(r.get("discarded_records", "0")) >= 1,
            "spool_recovered reports no discarded record: %r" % r)
    R.check(int(r.get("truncated_bytes", "0")) > 0,
            "spool_recovered reports no truncated bytes: %r" % r)
    R.check(not missing, "%d intact/live messages missing, e.g. %r"
            % (len(missing), sorted(missing)[:5]))
    R.check(not extra, "messages that are not intact records or live packets: %r"
            % sorted(extra)[:5])
    R.check(len(live_a) == LIVE, "live P/rel/a messages: %d of %d" % (len(live_a), LIVE))
    R.check(ret.get(prefix + "/rel/a") == live_a.get(live[-1]),
            "retained P/rel/a is %r, want the last live packet's %r (backlog must not be "
            "retained)" % (ret.get(prefix + "/rel/a"), live_a.get(live[-1])))
    R.check(rc2 == 0, "run with the broker up: exit %d, want 0\n%s" % (rc2, gw.tail()))
    print("ok")
finally:
    R.stop_all(gateways=[gw], subs=[sub])
    R.remove_workdir(d)
