"""rel_poison_record — a spooled record the sink refuses for good is dead-lettered and leaves
the spool; it is never re-sent forever, and it does not pin the spool across restarts.

1. Build a spool the natural way: iiotgw with the broker down, 20 packets (2 MQTT records
   each); EOF; the gateway gives up after drain_timeout=1 and exits 2 (data left).
2. Turn one record into a poison record as an older binary (which accepted any topic the
   libmosquitto wildcard check let through) could have written it: its topic P/rel/b becomes
   P/rel<TAB>b (same length), the CRC-32C recomputed so the spool sees an intact record.
3. Start with the broker up and a dead-letter file: the run must exit 0 (everything delivered
   or dead-lettered), deliver every other record, and write exactly one dead-letter record
   with reason mqtt_rejected, the poison topic in its error and the payload as data.
4. Restart once more on the same spool: nothing left to replay (no message arrives, exit 0).
"""
import json
import os
import struct

import reltest as R

host, mport = R.need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
mport = int(mport)
N = 20


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


prefix = R.unique("pz")
d = R.tmpdir("pz")
spool = os.path.join(d, "spool")
log = os.path.join(d, "gw.log")
dl = os.path.join(d, "dead.jsonl")
sub = gw = None
try:
    # --- 1. a spool with pending records -----------------------------------------------------
    dead = R.free_port()
    gw = R.Gateway(["--mqtt", "mqtt://127.0.0.1:%d" % dead, "--prefix", prefix, "--spool", spool,
                    "--influx", "none", "-o", "drain_timeout=1"], log)
    for pid in range(1, N + 1):
        gw.write(R.telemetry_line(pid))
    gw.close_stdin()
    rc1 = gw.wait(30)
    R.check(rc1 == 2, "run with the broker down: exit %d, want 2\n%s" % (rc1, gw.tail()))

    # --- 2. poison one record ----------------------------------------------------------------
    poisoned = None
    for path in R.segments(spool):
        for off, ln, seq, payload in R.parse_segment(path):
            m = R.decode_mqtt(payload)
            if m and m[0] == prefix + "/rel/b" and m[1] == "7":
                tl = struct.unpack_from("<H", payload, 4)[0]
                topic = payload[20:20 + tl]
                bad = topic.replace(b"/rel/b", b"/rel\tb")
                new = payload[:20] + bad + payload[20 + tl:]
                with open(path, "r+b") as f:
                    f.seek(off)
                    hdr = bytearray(f.read(R.HDR.size))
                    struct.pack_into("<I", hdr, 4, crc32c(bytes(hdr[8:]) + new))
                    f.seek(off)
                    f.write(bytes(hdr) + new)
                poisoned = seq
    R.check(poisoned is not None, "record of packet 7 not found in the spool")

    # --- 3. restart with the broker up ------------------------------------------------------
    sub = R.MqttSub(mport, "relsub-" + prefix, [prefix + "/rel/#"], clean=True, host=host)
    R.check(sub.subscribed.wait(10), "subscriber: no SUBACK")
    gw = R.Gateway(["--mqtt", "mqtt://%s:%d" % (host, mport), "--prefix", prefix,
                    "--spool", spool, "--influx", "none", "--deadletter", dl,
                    "-o", "drain_timeout=10"], log)
    gw.close_stdin()
    rc2 = gw.wait(40)
    want = 2 * N - 1
    R.wait_for(lambda: len(sub.snapshot()) >= want, 10, 0.1)
    got = {(t, p) for t, p, _r, _d in sub.snapshot()}
    records = []
    if os.path.exists(dl):
        with open(dl) as f:
            records = [json.loads(l) for l in f if l.strip()]
    rej = [r for r in records if r.get("reason") == "mqtt_rejected"]
    print("rel_poison_record: exit_down=%d exit_up=%d delivered=%d/%d deadletters=%d "
          "(mqtt_rejected %d)" % (rc1, rc2, len(got), want, len(records), len(rej)), flush=True)
    R.check(rc2 == 0, "run with the broker up: exit %d, want 0 (poison record pinned the "
            "spool?)\n%s" % (rc2, gw.tail()))
    R.check(len(got) == want, "delivered %d distinct messages, want %d" % (len(got), want))
    R.check((prefix + "/rel/b", "7") not in got, "the poison record was delivered?")
    R.check(len(rej) == 1, "want 1 mqtt_rejected dead-letter, got %r" % records)
    R.check("rel\\tb" in rej[0].get("error", "") and rej[0].get("data") == "7",
            "dead-letter does not name the topic / keep the payload: %r" % rej[0])

    # --- 4. nothing left to replay ----------------------------------------------------------
    before = len(sub.snapshot())
    gw = R.Gateway(["--mqtt", "mqtt://%s:%d" % (host, mport), "--prefix", prefix,
                    "--spool", spool, "--influx", "none", "-o", "drain_timeout=5"], log)
    gw.close_stdin()
    rc3 = gw.wait(30)
    R.time.sleep(0.5)
    R.check(rc3 == 0, "third run: exit %d, want 0\n%s" % (rc3, gw.tail()))
    R.check(len(sub.snapshot()) == before, "third run re-sent %d messages"
            % (len(sub.snapshot()) - before))
    print("ok")
finally:
    R.stop_all(gateways=[gw], subs=[sub])
    R.remove_workdir(d)
