"""Hot reload while packets flow: a changed rule file is picked up (ev_stat + debounce), its
gw.state is handed over, a broken rule keeps the old one running and is reported on the
retained rules status topic with file:line, SIGHUP reloads too, and across all of it no packet
is lost or processed twice."""
import json
import os
import signal
import subprocess
import threading
import time

from gwtest import (Subscriber, check, fail, iiotgw, mqtt_retained, need_env, tmpdir, unique,
                    wait_for)

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
prefix = unique("rl")
d = tmpdir()
rule = os.path.join(d, "rule.lua")

RULE = """-- version %s
function on_packet(p, meta)
  gw.state.n = (gw.state.n or 0) + 1
  gw.publish(gw.prefix .. "/out", "%s:" .. p.ts .. ":" .. gw.state.n, 1, false)
end
"""


def write_rule(text):
    tmp = rule + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, rule)  # what editors do


write_rule(RULE % ("v1", "v1"))
sub = Subscriber(host, port, prefix + "/#")
p = subprocess.Popen([iiotgw(), "-r", rule, "-s", "stdin", "--prefix", prefix,
                      "--mqtt", "mqtt://%s:%s" % (host, port), "--deadletter", "none",
                      "-o", "reload_debounce=0.1"],
                     stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
log = []
threading.Thread(target=lambda: [log.append(l) for l in p.stderr], daemon=True).start()


def wait_log(word, count, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if sum(word in l for l in log) >= count:
            return
        time.sleep(0.05)
    fail("timed out waiting for %r x%d in log:\n%s" % (word, count, "".join(log)))


ts = 0


def send(k):
    global ts
    for _ in range(k):
        ts += 1
        p.stdin.write('{"ts":%d}\n' % ts)
    p.stdin.flush()


send(20)
time.sleep(0.3)
write_rule(RULE % ("v2", "v2"))
wait_log("rules_reloaded", 1)
send(20)
time.sleep(0.2)
write_rule("-- broken\nfunction on_packet(p\n")
wait_log("rules_reload_failed", 1)
send(20)
time.sleep(0.2)


def rules_status():
    status = mqtt_retained(host, port, prefix + "/gateway/rules", 1)
    return json.loads(status.get(prefix + "/gateway/rules", "{}"))


# The status is published asynchronously: poll (bounded) instead of racing the broker.
st = wait_for(lambda: (lambda x: x if x.get("state") == "error" else None)(rules_status()), 10)
check(st and "rule.lua:" in st.get("error", ""),
      "retained rules status must carry the error with file:line: %r" % (st or rules_status()))
with open(rule, "w") as f:          # in-place edit, then SIGHUP for good measure
    f.write(RULE % ("v3", "v3"))
p.send_signal(signal.SIGHUP)
wait_log("rules_reloaded", 2)
send(20)
p.stdin.close()
rc = p.wait(30)
time.sleep(0.3)
msgs = sub.stop()
check(rc == 0, "exit code %d\n%s" % (rc, "".join(log)))

outs = [m[1] for m in msgs if m[0] == prefix + "/out"]
seen = [int(o.split(":")[1]) for o in outs]
check(sorted(seen) == list(range(1, ts + 1)),
      "every packet exactly once: got %d messages, duplicates=%r missing=%r"
      % (len(seen), sorted({x for x in seen if seen.count(x) > 1}),
         sorted(set(range(1, ts + 1)) - set(seen))))
counters = [int(o.split(":")[2]) for o in outs]
check(counters == list(range(1, ts + 1)), "gw.state.n must survive every reload: %r" % counters)
versions = [o.split(":")[0] for o in outs]
check(versions[:20] == ["v1"] * 20 and versions[-20:] == ["v3"] * 20 and "v2" in versions,
      "versions in order v1 -> v2 -> v3: %r" % versions)
check(versions[40:60] == ["v2"] * 20, "broken rule must keep v2 running: %r" % versions[40:60])
st = wait_for(lambda: (lambda x: x if x.get("state") == "ok" else None)(rules_status()), 10)
check(st, "status after the good reload: %r" % rules_status())
print("ok: %d packets across 3 reloads" % ts)
