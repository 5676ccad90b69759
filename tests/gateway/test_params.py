"""Tunable parameters against the real binary and a real mosquitto: the default rule's
thresholds as per-node params, changed over MQTT (refusals for type, range, step and the
temp_clear < temp_high constraint, the retained echo, the params document, MQTT 5 response
topic + correlation data + origin), with `iiotgw param`, and by editing params.conf + SIGHUP;
every change audited; persistence across a restart and a hot reload; an orphaned param; a
bounds change that drops an override; re-subscription after a broker restart; and a packet
above a changed threshold firing the alert."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from gwtest import (DEFAULT_RULE, check, fail, free_port, iiotgw, mqtt_retained, need_env,
                    stop_process, tmpdir, unique, wait_for)

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
prefix = unique("pa")
d = tmpdir()
state = os.environ["STATE_DIRECTORY"]  # gwtest.isolate(): this test's own state directory
pfile = os.path.join(state, "params.conf")
rule = os.path.join(d, "rule.lua")
with open(DEFAULT_RULE) as f:
    RULE_TEXT = f.read()


def write_rule(text):
    with open(rule + ".tmp", "w") as f:
        f.write(text)
    os.rename(rule + ".tmp", rule)


class Gateway:
    def __init__(self, mqtt_port=None, extra=()):
        self.log = []
        self.p = subprocess.Popen(
            [iiotgw(), "-r", rule, "-s", "stdin", "--prefix", prefix,
             "--mqtt", "mqtt://%s:%s" % (host, mqtt_port or port), "-o", "mqtt.protocol=5",
             "-o", "reload_debounce=0.1", "-o", "mqtt.backoff_max=1", "--deadletter", "none",
             # its own client id: tests running in parallel would otherwise take the session over
             "-o", "mqtt.client_id=gw-" + prefix]
            + list(extra),
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: [self.log.append(l) for l in self.p.stderr],
                         daemon=True).start()
        self.wait_log("mqtt_connected")
        time.sleep(0.3)  # SUBACK

    def count(self, word):
        return sum(word in l for l in self.log)

    def wait_log(self, word, n=1, timeout=15):
        if not wait_for(lambda: self.count(word) >= n, timeout):
            fail("timed out waiting for %r x%d in the log:\n%s" % (word, n, "".join(self.log)))

    def lines(self, word):
        return [l for l in self.log if word in l]

    def send(self, obj):
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()

    def stop(self):
        self.p.stdin.close()
        stop_process(self.p, 10)
        time.sleep(0.1)  # the reader thread drains stderr
        bad = [l for l in self.log if "Sanitizer" in l or "runtime error" in l]
        check(not bad and self.p.returncode in (0, 2),
              "gateway exited %s:\n%s" % (self.p.returncode, "".join(self.log[-30:])))


def pub(topic, payload, *props, p=None):
    cmd = ["mosquitto_pub", "-h", host, "-p", str(p or port), "-V", "mqttv5", "-q", "1",
           "-t", topic, "-m", payload]
    for pr in props:
        cmd += ["-D", "publish"] + list(pr)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "mosquitto_pub failed: " + r.stderr)


class Sub:
    """mosquitto_sub -V mqttv5 printing topic|correlation data|payload per message."""

    def __init__(self, topic, p=None):
        self.out = os.path.join(d, "sub-%d.txt" % time.monotonic_ns())
        self.f = open(self.out, "w")
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", str(p or port), "-V", "mqttv5", "-t", topic,
             "-F", "%t|%D|%p"], stdout=self.f, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def msgs(self):
        self.f.flush()
        with open(self.out) as f:
            return [l.rstrip("\n").split("|", 2) for l in f if l.count("|") >= 2]

    def wait(self, pred, what, timeout=15):
        if not wait_for(lambda: any(pred(m) for m in self.msgs()), timeout):
            fail("no message: %s; got %s\ngateway log (tail):\n%s"
                 % (what, self.msgs(), "".join(gw.log[-25:]) if gw else ""))
        return [m for m in self.msgs() if pred(m)][-1]

    def stop(self):
        stop_process(self.proc, 5)
        self.f.close()


def cli(*args, env=None):
    return subprocess.run([iiotgw(), "param"] + list(args), capture_output=True, text=True,
                          timeout=20, env=env)


def state_topic(name, node=None):
    return "%s/gateway/param/%s%s" % (prefix, name, "/" + node if node else "")


def retained(topic):
    return mqtt_retained(host, port, topic, timeout=1).get(topic)


def doc():
    return json.loads(retained(prefix + "/gateway/params"))


def doc_param(name):
    for p in doc()["params"]:
        if p["name"] == name:
            return p
    fail("param %s not in the params document" % name)


write_rule(RULE_TEXT)
gw = None
gw = Gateway()

# --- declared and published ------------------------------------------------------------------
wait_for(lambda: retained(state_topic("temp_high", "node1")) == "35", 5)
for (name, node), want in {("temp_high", "node1"): "35", ("temp_high", "node2"): "35",
                           ("temp_clear", "node1"): "33", ("offline_after", "node2"): "120"}.items():
    check(retained(state_topic(name, node)) == want,
          "retained %s = %r, want %r" % (state_topic(name, node), retained(state_topic(name, node)), want))
th = doc_param("temp_high")
check(th["type"] == "number" and th["min"] == -40 and th["max"] == 125 and th["step"] == 0.5
      and th["unit"] == "°C" and th["default"] == 35 and not th["orphaned"]
      and set(th["nodes"]) == {"node1", "node2"}, "params document entry: %s" % th)
check(doc_param("temp_clear")["below"] == "temp_high", "temp_clear does not declare below")
check(doc_param("offline_after")["type"] == "integer", "offline_after is not an integer")

# --- MQTT refusals (default response topic), each says why, nothing changes ------------------
resp = Sub(prefix + "/gateway/param/response")
cases = [("temp_high", "node1", "abc", "not a number"),
         ("temp_high", "node1", "200", "above the maximum 125"),
         ("temp_high", "node1", "36.2", "not a multiple of the step 0.5"),
         ("temp_clear", "node1", "36", "must stay below temp_high (35)"),
         ("temp_high", "node3", "36", "unknown node"),
         ("nosuch", None, "1", "unknown param")]
for name, node, value, why in cases:
    pub(state_topic(name, node) + "/set", value)
    m = resp.wait(lambda m, v=value, n=name: ('"value":"%s"' % v) in m[2] and ('"param":"%s"' % n) in m[2],
                  "response to %s=%s" % (name, value))
    r = json.loads(m[2])
    check(r["ok"] is False and why in r["message"], "refusal of %s=%s: %s" % (name, value, r))
    gw.wait_log("param_refused", cases.index((name, node, value, why)) + 1)
# Oversized payloads are refused like any other bad value, and the gateway stays up.
pub(state_topic("temp_high", "node1") + "/set", "9" * 5000)
m = resp.wait(lambda m: "(value too long)" in m[2], "response to a 5000-byte value")
check(json.loads(m[2])["ok"] is False, "a 5000-byte value was accepted: %s" % m[2][:200])
check(retained(state_topic("temp_high", "node1")) == "35", "a refused value changed the state topic")

# --- accepted changes: echo on the retained state topic, the document, the audit -------------
pub(state_topic("temp_clear", "node1") + "/set", "28", ("user-property", "origin", "alice"))
resp.wait(lambda m: '"ok":true' in m[2] and "temp_clear node1: 33 -> 28" in m[2], "ok for temp_clear")
pub(state_topic("temp_high", "node1") + "/set", "30\n")
resp.wait(lambda m: "temp_high node1: 35 -> 30" in m[2], "ok for temp_high")
check(wait_for(lambda: retained(state_topic("temp_high", "node1")) == "30", 5),
      "temp_high/node1 not echoed as 30")
slot = doc_param("temp_clear")["nodes"]["node1"]
check(slot["value"] == 28 and slot["overridden"] and slot["origin"] == "mqtt:alice"
      and slot["changed"], "params document after the change: %s" % slot)
audit = gw.lines("event=param_changed param=temp_clear")
check(audit and 'node=node1 old=33 new=28 origin="mqtt" who="alice"' in audit[-1] and "ts=" in audit[-1],
      "audit line: %s" % audit)

# --- MQTT 5 response topic + correlation data --------------------------------------------------
rr = Sub(prefix + "/client/reply")
pub(state_topic("temp_high", "node2") + "/set", "999", ("response-topic", prefix + "/client/reply"),
    ("correlation-data", "req-42"))
m = rr.wait(lambda m: m[1] == "req-42", "reply with correlation data req-42")
check(json.loads(m[2])["ok"] is False and "above the maximum" in m[2], "MQTT 5 reply: %s" % m)
check(not any("999" in x[2] for x in resp.msgs()), "a request with a response topic was also "
      "answered on the default response topic")
rr.stop()

# --- a packet above the changed threshold fires the alert (node2 keeps 35) --------------------
alerts = Sub(prefix + "/alerts/+/temperature")
gw.send({"ts": 1, "n1": {"t": 31.0, "h": 40.0, "g": 1000}, "n2": {"t": 31.0, "h": 40.0}})
m = alerts.wait(lambda m: m[0].endswith("node1/temperature"), "node1 temperature alert")
a = json.loads(m[2])
check(a["state"] == "firing" and a["threshold"] == 30 and a["value"] == 31, "alert: %s" % a)
time.sleep(0.5)
check(not any(x[0].endswith("node2/temperature") for x in alerts.msgs()),
      "node2 fired at 31 with its threshold at 35")
alerts.stop()

# --- the local command -------------------------------------------------------------------------
r = cli("set", "offline_after", "node1", "300")
check(r.returncode == 0 and "offline_after node1: 120 -> 300" in r.stdout, "param set: %s %s" % (r.stdout, r.stderr))
r = cli("get", "offline_after", "node1")
check(r.returncode == 0 and r.stdout.strip() == "300", "param get: %r" % r.stdout)
r = cli("list")
check(r.returncode == 0 and "temp_clear" in r.stdout and "mqtt:alice" in r.stdout
      and "local:uid=%d" % os.getuid() in r.stdout, "param list:\n" + r.stdout)
r = cli("set", "offline_after", "node1", "5")
check(r.returncode == 1 and "below the minimum 10" in r.stderr, "local refusal: %d %s" % (r.returncode, r.stderr))
r = cli("set", "temp_high", "node1", "default")
check(r.returncode == 0 and "temp_high node1: 30 -> 35 (default)" in r.stdout, "reset: %s %s" % (r.stdout, r.stderr))
# Bad requests on the socket itself: answered with an error, the gateway keeps serving.
for req, want in ((b"bogus\n", b"error: usage"), (b"x" * 3000, b"error: request longer than"),
                  (b"set temp_high 36\n", b"error: temp_high: a per-node param: give the node (node1, node2)")):
    so = socket.socket(socket.AF_UNIX)
    so.settimeout(10)
    so.connect(os.path.join(state, "params.sock"))
    so.sendall(req)
    got = b""
    while True:
        chunk = so.recv(4096)
        if not chunk:
            break
        got += chunk
    so.close()
    check(got.startswith(want), "socket answer to %r: %r" % (req[:40], got))
r = cli("--state-dir", os.path.join(d, "nowhere"), "list")
check(r.returncode == 2 and "no gateway is running" in r.stderr, "no daemon: %d %s" % (r.returncode, r.stderr))
gw.wait_log('origin="local" who="uid=%d"' % os.getuid())
check(wait_for(lambda: retained(state_topic("offline_after", "node1")) == "300", 5),
      "local change not echoed on MQTT")
st = os.stat(os.path.join(state, "params.sock"))
check(oct(st.st_mode & 0o777) == oct(0o660), "socket mode %o" % (st.st_mode & 0o777))
# Access control is the socket file's mode: a user who is neither the owner nor in its group
# is refused by the kernel (needs root to run as someone else; skipped otherwise).
if os.getuid() == 0 and shutil.which("setpriv"):
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", iiotgw(),
                        "param", "--socket", os.path.join(state, "params.sock"), "list"],
                       capture_output=True, text=True, timeout=20)
    check(r.returncode == 2 and "permission denied" in r.stderr,
          "another user reached the socket: %d %s" % (r.returncode, r.stderr))
r = cli("set", "temp_high", "node1", "30")
check(r.returncode == 0, "set back to 30: " + r.stderr)

# --- params file + SIGHUP: changed line applied, bad line refused, removed line reset ----------
with open(pfile) as f:
    text = f.read()
check("temp_clear node1 = 28" in text and "by mqtt:alice" in text, "params.conf:\n" + text)
text = text.replace("offline_after node1 = 300", "offline_after node1 = 240")
text += "offline_after node2 = 7\ntemp_high node2 = 34.5\n"
with open(pfile + ".edit", "w") as f:
    f.write(text)
os.rename(pfile + ".edit", pfile)
n_changed = gw.count("event=param_changed")
gw.p.send_signal(signal.SIGHUP)
gw.wait_log("params_file_reloaded")
check(gw.count("event=param_file_refused") == 1 and "below the minimum 10" in gw.lines("param_file_refused")[0],
      "file refusal: %s" % gw.lines("param_file_refused"))
check(wait_for(lambda: retained(state_topic("offline_after", "node1")) == "240", 5)
      and retained(state_topic("temp_high", "node2")) == "34.5", "file changes not applied")
check(gw.count("event=param_changed") == n_changed + 2, "file changes audited: %s" % gw.lines("param_changed")[n_changed:])
check(any('origin="file"' in l for l in gw.lines("param_changed")), "no file origin in the audit")
with open(pfile) as f:
    text = f.read()
check("offline_after node2 = 7" not in text, "the refused line is still in params.conf")

# --- hot reload keeps the overrides -------------------------------------------------------------
write_rule(RULE_TEXT + "\n-- touched\n")
gw.wait_log("rules_reloaded", 1)
check(cli("get", "temp_high", "node1").stdout.strip() == "30", "temp_high lost across a reload")

# --- orphaned: the rule stops declaring offline_after --------------------------------------------
no_offline = re.sub(r"local OFFLINE_AFTER = gw\.param\{.*?\n\}", "local OFFLINE_AFTER = {node1 = 120, node2 = 120}",
                    RULE_TEXT, flags=re.S)
check(no_offline != RULE_TEXT, "could not strip offline_after from the rule")
write_rule(no_offline)
gw.wait_log("rules_reloaded", 2)
gw.wait_log("param_orphaned")
oa = doc_param("offline_after")
check(oa["orphaned"] is True and oa["nodes"]["node1"]["value"] == 240, "orphaned entry: %s" % oa)
r = cli("set", "offline_after", "node1", "200")
check(r.returncode == 1 and "orphaned" in r.stderr, "set of an orphan: %s" % r.stderr)
write_rule(RULE_TEXT)
gw.wait_log("rules_reloaded", 3)
check(doc_param("offline_after")["orphaned"] is False and cli("get", "offline_after", "node1").stdout.strip() == "240",
      "override not back when the param is declared again")

# --- bounds change: temp_high's max (34) now excludes node2's override (34.5) -----------------
narrow = RULE_TEXT.replace('name = "temp_high", default = DEFAULTS.temp_high, min = -40, max = 125',
                           'name = "temp_high", default = DEFAULTS.temp_high, min = -40, max = 34'
                           ).replace("temp_high = 35.0,", "temp_high = 33.5,")
check(narrow.count("max = 34") == 1, "could not narrow temp_high in the rule")
write_rule(narrow)
gw.wait_log("rules_reloaded", 4)
gw.wait_log("param_override_dropped")
dropped = gw.lines("param_override_dropped")[-1]
check("param=temp_high node=node2" in dropped and "above the maximum 34" in dropped, dropped)
check(doc_param("temp_high")["max"] == 34, "the new bounds are not live")
check(wait_for(lambda: retained(state_topic("temp_high", "node2")) == "33.5", 5),
      "temp_high/node2 not back to the (new) default")
check(cli("get", "temp_high", "node1").stdout.strip() == "30", "node1's override (inside the bounds) was dropped")
write_rule(RULE_TEXT)
gw.wait_log("rules_reloaded", 5)
resp.stop()
gw.stop()

# --- restart: the overrides and their audit are still there; a retained command left on the
# broker (which a new subscription receives) is not applied ------------------------------------
subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-r", "-q", "1", "-t",
                state_topic("temp_high", "node2") + "/set", "-m", "40"], check=True, timeout=10)
gw = Gateway()
time.sleep(0.5)
check(gw.count("event=param_changed") == 0 and gw.count("event=param_refused") == 0,
      "a retained command was acted on: %s" % gw.lines("event=param_"))
check(cli("get", "temp_high", "node2").stdout.strip() == "35", "a retained command was applied")
subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-r", "-q", "1", "-t",
                state_topic("temp_high", "node2") + "/set", "-n"], check=True, timeout=10)
check(cli("get", "temp_clear", "node1").stdout.strip() == "28", "temp_clear lost across a restart")
check(doc_param("temp_clear")["nodes"]["node1"]["origin"] == "mqtt:alice", "origin lost across a restart")
alerts = Sub(prefix + "/alerts/node1/temperature")
gw.send({"ts": 2, "n1": {"t": 20.0}})  # below: nothing (alert state starts afresh)
gw.send({"ts": 3, "n1": {"t": 30.5}})  # fires at the persisted 30
alerts.wait(lambda m: '"state":"firing"' in m[2] and '"threshold":30.0' in m[2] and '"value":30.5' in m[2],
            "alert at the persisted threshold")
alerts.stop()
gw.stop()

# --- re-subscription after a broker restart (a broker of this test's own) ------------------------
bport = free_port()
conf = os.path.join(d, "mosquitto.conf")
with open(conf, "w") as f:
    f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % bport)


def broker():
    b = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: b.poll() is None and b.kill())
    time.sleep(0.5)
    return b


b = broker()
gw = Gateway(mqtt_port=bport)
b.terminate()
b.wait()
gw.wait_log("mqtt_disconnected")
b = broker()
gw.wait_log("mqtt_connected", 2, timeout=20)
time.sleep(0.3)  # the subscriptions are sent again with the new CONNACK
pub(state_topic("offline_after", "node2") + "/set", "900", p=bport)
gw.wait_log("param=offline_after node=node2 old=120 new=900")
gw.stop()
stop_process(b, 5)
print("ok")
