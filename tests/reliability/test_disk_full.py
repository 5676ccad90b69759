"""rel_disk_full — the spool's filesystem fills up while the broker is down: no crash, a clear
retained status, data keeps flowing from memory once the broker is up, and the status returns
to ok when space comes back.

The spool lives on a real 256 KiB tmpfs (mount -t tmpfs; skipped with exit 77 when mounting is
not permitted), of which a filler file we create takes 200 KiB (and a "hog" thread takes whatever becomes free
while the disk is meant to stay full). A private mosquitto (persistent,
so the subscriber's session outlives the broker being down) is stopped before iiotgw starts; the
stream (100 packets/s on stdin) fills the rest of the tmpfs -> event=spool_degraded. Then the
broker starts: the subscriber must get the retained P/gateway/spool {"state":"degraded",...},
and packets keep arriving. Removing the filler frees space -> event=spool_recovered_disk and
{"state":"ok"} on P/gateway/spool (retained). At EOF every packet written must have arrived
(spool or memory, at least once) and iiotgw must exit 0. The tmpfs is unmounted in `finally`.
"""
import json
import os
import subprocess
import threading
import time

import reltest as R

R.rnd()
RATE = 100
d = R.tmpdir("df")
mnt = os.path.join(d, "mnt")
os.makedirs(mnt)
r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt],
                   capture_output=True, text=True)
if r.returncode != 0:
    R.shutil.rmtree(d, ignore_errors=True)
    print("SKIP: cannot mount a tmpfs here (%s); needs root / CAP_SYS_ADMIN"
          % (r.stderr.strip() or r.returncode), flush=True)
    raise SystemExit(R.SKIP)
broker = R.Broker("df")
sub = gw = feeder = None
prefix = R.unique("df")
try:
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (200 * 1024))
    broker.start()
    sub = R.MqttSub(broker.port, "relsub-" + prefix, [prefix + "/#"], clean=False)
    R.check(sub.subscribed.wait(10), "subscriber: no SUBACK")
    broker.stop()                       # saves the session; the broker stays down for now

    gw = R.Gateway(["--mqtt", "mqtt://127.0.0.1:%d" % broker.port, "--prefix", prefix,
                    "--spool", os.path.join(mnt, "spool"), "-o", "spool.segment_bytes=16384",
                    "-o", "stats_interval=1", "-o", "drain_timeout=60"],
                   os.path.join(d, "gw.log"))
    feeder = R.Feeder(gw, 1, RATE)
    t_start = time.time()
    degraded = R.wait_for(lambda: gw.events("spool_degraded"), 20, 0.1)
    R.check(degraded, "no event=spool_degraded after 20 s of stream on a full tmpfs\n%s"
            % gw.tail())
    R.check(gw.proc.poll() is None, "iiotgw died on a full disk\n%s" % gw.tail())
    t_full = time.time()
    # Once the broker acknowledges, the spool deletes delivered segments and would find room by
    # itself; a "hog" (another process filling the disk, as in real life) keeps the tmpfs full
    # until we decide that space comes back.
    hog_stop = threading.Event()

    def hog():
        with open(os.path.join(mnt, "hog"), "ab") as h:
            while not hog_stop.is_set():
                st = os.statvfs(mnt)
                free = st.f_bavail * st.f_frsize
                try:
                    if free > 0:
                        h.write(b"\0" * free)
                        h.flush()
                except OSError:
                    pass
                hog_stop.wait(0.01)
    hog_thread = threading.Thread(target=hog, daemon=True)
    hog_thread.start()
    time.sleep(1)
    broker.start()
    n_at_up = len(feeder.written)

    def status_seen(state):
        return [json.loads(p) for t, p, _r, _d in sub.snapshot()
                if t == prefix + "/gateway/spool" and json.loads(p).get("state") == state]
    R.check(R.wait_for(lambda: status_seen("degraded"), 15, 0.1),
            "no {\"state\":\"degraded\"} on %s/gateway/spool" % prefix)
    ret = R.retained(broker.port, prefix + "/gateway/spool")
    ret_deg = json.loads(ret.get(prefix + "/gateway/spool", "{}"))
    # Data keeps flowing while degraded: packets written after the broker came up arrive.
    time.sleep(2)
    flowing = [i for i in R.rel_ids(sub.snapshot(), prefix, "b") if i > n_at_up]
    still_degraded = not gw.events("spool_recovered_disk")
    hog_stop.set()
    hog_thread.join(5)
    os.unlink(filler)
    os.unlink(os.path.join(mnt, "hog"))
    t_free = time.time()
    ok = R.wait_for(lambda: gw.events("spool_recovered_disk") and status_seen("ok"), 30, 0.2)
    t_ok = time.time()
    ret_ok = json.loads(R.retained(broker.port, prefix + "/gateway/spool")
                        .get(prefix + "/gateway/spool", "{}"))
    time.sleep(1)
    feeder.stop()
    gw.close_stdin()
    rc = gw.wait(90)
    want = set(feeder.ids())
    R.wait_for(lambda: want <= set(R.rel_ids(sub.snapshot(), prefix, "b")), 10, 0.1)
    got = R.rel_ids(sub.snapshot(), prefix, "b")
    missing = sorted(want - set(got))
    st = gw.events("stats")
    errs = max([int(s.get("spool_append_errors", 0)) for s in st] or [0])
    print("rel_disk_full: packets=%d degraded_after_s=%.1f error=%s retained_while_degraded=%r "
          "flowing_while_degraded=%d spool_append_errors=%d back_to_ok_s=%.1f retained_after=%r "
          "missing=%d duplicates=%d exit=%d"
          % (len(want), t_full - t_start, degraded[0].get("err"), ret_deg.get("state"),
             len(flowing), errs, t_ok - t_free, ret_ok.get("state"), len(missing),
             R.dup_count(got), rc), flush=True)
    R.check(ret_deg.get("state") == "degraded" and ret_deg.get("error"),
            "retained P/gateway/spool while degraded: %r" % ret_deg)
    R.check(still_degraded, "the spool recovered before space was freed (hog failed?)")
    R.check(flowing, "no data flowed while the spool was degraded "
            "(%d packets after broker up)" % len(flowing))
    R.check(ok, "no spool_recovered_disk + {\"state\":\"ok\"} within 30 s of freeing space\n%s"
            % gw.tail())
    R.check(ret_ok.get("state") == "ok", "retained P/gateway/spool after recovery: %r" % ret_ok)
    R.check(not missing, "%d packets never arrived, e.g. %r" % (len(missing), missing[:10]))
    R.check(rc == 0, "exit %d, want 0\n%s" % (rc, gw.tail()))
    print("ok")
finally:
    R.stop_all(feeders=[feeder], gateways=[gw], subs=[sub], servers=[broker])
    subprocess.run(["umount", mnt], capture_output=True)
    R.remove_workdir(d)
