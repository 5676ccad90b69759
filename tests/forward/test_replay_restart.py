"""Restart with a non-empty spool: a first gateway run with the broker unreachable gives up
after its drain timeout (exit 2) leaving the publishes in the spool; a second run with an
empty source and the broker up replays them all under spool.replay_prefix, without retain, and
exits 0 only once they are acknowledged; a third run finds the spool empty."""
import os
import time

from fwdtest import (DEFAULT_RULE, Broker, check, expected_outputs, free_port, iiotgw,
                     packets, parse_raw, tmpdir, unique)
from gwtest import Subscriber
import subprocess

d = tmpdir()
port = free_port()
prefix = unique("rpl")
spool = os.path.join(d, "spool")
src = os.path.join(d, "in.jsonl")
with open(src, "w") as f:
    f.writelines(packets(20))
want = []
for ln in packets(20):
    want += [(t, str(p)) for t, p, _, _ in expected_outputs(parse_raw(ln), prefix)[0]]
empty = os.path.join(d, "empty.jsonl")
open(empty, "w").close()


def gw(source, extra=()):
    return subprocess.run([iiotgw(), "-r", DEFAULT_RULE, "-s", "file:" + source, "--mqtt",
                           "mqtt://127.0.0.1:%d" % port, "--prefix", prefix, "--deadletter",
                           "none", "--spool", spool] + list(extra),
                          capture_output=True, text=True, timeout=60)


r = gw(src, ["-o", "drain_timeout=1"])
check(r.returncode == 2, "first run: broker down, expected exit 2, got %d\n%s"
      % (r.returncode, r.stderr[-2000:]))
check("event=drain_timeout" in r.stderr, "no drain_timeout logged")

broker = Broker(d, port)
broker.start()
try:
    sub = Subscriber("127.0.0.1", port, "replay/" + prefix + "/#", ["-t", prefix + "/#"])
    r = gw(empty, ["-o", "spool.replay_prefix=replay"])
    time.sleep(0.5)
    msgs = sub.stop()
    check(r.returncode == 0, "replay run: exit %d\n%s" % (r.returncode, r.stderr[-3000:]))
    rec = [l for l in r.stderr.splitlines() if "event=spool_recovered" in l]
    check(rec and "pending=%d" % len(want) in rec[0], "recovery report: %r" % rec)
    data = [m for m in msgs if "/gateway/" not in m[0]]
    check(all(m[0].startswith("replay/" + prefix + "/") for m in data),
          "replayed messages must be under the replay prefix: %r" % data[:3])
    check(not any(m[3] for m in data), "replayed messages must not be retained")
    got = sorted((m[0][len("replay/"):], m[1]) for m in data)
    check(got == sorted(want), "replayed %d, want %d" % (len(got), len(want)))

    r = gw(empty)
    check(r.returncode == 0, "third run: exit %d" % r.returncode)
    rec = [l for l in r.stderr.splitlines() if "event=spool_recovered" in l]
    check(rec and " pending=0 " in rec[0], "spool should be empty now: %r" % rec)
    print("ok: %d publishes replayed after restart" % len(want))
finally:
    broker.stop()
