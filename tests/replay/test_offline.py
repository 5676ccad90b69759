"""test_offline.py — a capture with a five-minute silence, replayed on the packet clock into a
real mosquitto, raises and clears the default rule's offline alerts at the right virtual
times; and the retain policy of replayed messages.

The capture is the sample session with every telemetry line of ts 600000..899999 ms removed
(the node and the radio silent for five minutes). The alerts the rule must publish — which
node, firing or ok, and the whole-second "time" — follow from the remaining packets' ts and
the watchdog's 120 s (rules/default.lua), with ticks every second of virtual time.

Retain: under a replay clock the rule's retained publishes go out without retain (the replay
must not overwrite a live site's current values), unless --replay-retain; --replay-prefix P
moves every topic, the gateway's own too, under P/.
"""
import json
import os
import subprocess

from replaytest import (START, START_NS, check, edit_packets, edit_ts, expected_packets, iso,
                        offline_alerts, packet_times, sample_lines, write_capture)
from gwtest import (DEFAULT_RULE, Subscriber, mqtt_retained, need_env, run, tmpdir, unique)

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
d = tmpdir()


def silent(ts):
    return None if 600000 <= ts < 900000 else ts


packets = edit_packets(expected_packets(), silent)
times = packet_times(packets)
capture = os.path.join(d, "silence.log")
write_capture(capture, edit_ts(sample_lines(), silent))
want = sorted(offline_alerts(packets, times))
fire = [a for a in want if a[1] == "firing"]
check(len(fire) >= 2 and any(abs(t - (START_NS // 10**9 + 710)) < 20 for _, _, t in fire),
      "the edited capture must fire both nodes' offline alert about 120 s into the silence: %r"
      % want)


def replay(prefix, *extra, watch=None):
    sub = Subscriber(host, port, (watch or prefix) + "/#", ["-W", "60"])
    r = run(["-r", DEFAULT_RULE, "-s", "file:" + capture, "--prefix", prefix,
             "--mqtt", "mqtt://%s:%s" % (host, port), "--deadletter", "none",
             "--clock", "packet", "--clock-start", START, "-o", "stats_interval=0"]
            + list(extra), timeout=120)
    msgs = sub.stop()
    check(r.returncode == 0, "replay exit %d\n%s" % (r.returncode, r.stderr[-2000:]))
    return [m for m in msgs if prefix in m[0]], r


def alerts(msgs, base):
    out = []
    for topic, payload, _, _ in msgs:
        if topic.startswith(base + "/alerts/") and topic.endswith("/offline"):
            p = json.loads(payload)
            out.append((p["node"], p["state"], p["time"]))
    return sorted(out)


want_iso = sorted((n, s, iso(t)) for n, s, t in want)

# --- default policy: alerts at virtual times, nothing retained -----------------------------
prefix = first = unique("off")
msgs, r = replay(prefix)
got = alerts(msgs, prefix)
check(got == want_iso, "offline alerts:\n got  %r\n want %r" % (got, want_iso))
check("clock_replay_topics" in r.stderr, "a replay onto live topics is warned about")
retained = [m for m in msgs if m[3] and not m[0].startswith(prefix + "/gateway/")]
check(not retained, "rule messages retained under a replay clock: %r" % retained[:3])
ret = mqtt_retained(host, port, prefix + "/#")
check(all(t.startswith(prefix + "/gateway/") for t in ret),
      "retained after the replay: %r" % sorted(ret)[:5])

# --- --replay-retain and --replay-prefix ---------------------------------------------------
prefix = unique("ret")
lab = unique("lab")
msgs, _ = replay(prefix, "--replay-retain", "--replay-prefix", lab, watch=lab)
base = lab + "/" + prefix
check(msgs and all(m[0].startswith(base + "/") for m in msgs),
      "every topic under the replay prefix: %r" % [m[0] for m in msgs if not m[0].startswith(base)][:3])
check(alerts(msgs, base) == want_iso, "alerts under the replay prefix")
check(any(m[0] == base + "/gateway/status" for m in msgs), "gateway status under the prefix")
ret = mqtt_retained(host, port, base + "/#")
last = packets[-1]
check(ret.get(base + "/node1/temperature") == last["n1"]["t"],
      "--replay-retain keeps the last value retained: %r" % ret.get(base + "/node1/temperature"))
check(ret.get(base + "/gateway/status") == "offline", "retained status under the prefix")
# leave the broker as it was: clear the retained messages both runs left
for t in list(ret) + list(mqtt_retained(host, port, first + "/#")):
    subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", t, "-r", "-n"],
                   check=True, timeout=10)
print("ok: %d offline alerts at their virtual times; retain dropped, kept with --replay-retain"
      % len(want))
