"""Tuning through Home Assistant, end to end against a real mosquitto: the default rule's
temp_high for node1 is changed through the `number` entity's command topic read from the
retained discovery payload (as Home Assistant would: its payload, its QoS), the applied value
comes back on the entity's state topic, a packet above the new threshold (and below the
default) fires the alert, and after a restart of the gateway the override is still applied
(the same packet fires again, the entity still shows the value)."""
import json
import re
import signal
import subprocess
import threading
import time

from gwtest import (DEFAULT_RULE, Subscriber, check, fail, iiotgw, mqtt_retained, need_env,
                    unique, wait_for)
from hadoc import components, validate_device

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
prefix = unique("hp")
dprefix = unique("hpdisc")
url = "mqtt://%s:%s" % (host, port)
ALERT = prefix + "/alerts/node1/temperature"


class Gateway:
    def __init__(self):
        self.p = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s", "stdin", "--prefix", prefix,
                                   "--mqtt", url, "--deadletter", "none",
                                   "-o", "ha_discovery=true", "-o", "ha_discovery_prefix=" + dprefix,
                                   "-o", "gateway_id=gw-" + prefix],
                                  stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=lambda: [self.log.append(l) for l in self.p.stderr],
                         daemon=True).start()
        if not wait_for(lambda: any("mqtt_connected" in l for l in self.log), 10):
            fail("gateway did not connect:\n" + "".join(self.log))

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(15)
        return self.p.returncode


def configs():
    return mqtt_retained(host, port, dprefix + "/#", 1)


def number_entity(node, name):
    """The number component for (param, node), as Home Assistant sees it after discovery."""
    cfgs = wait_for(lambda: configs() or None, 10) or {}
    errs = []
    for t, pl in cfgs.items():
        errs += validate_device(t, pl, dprefix)
    check(not errs, "discovery payloads break the documented schema:\n  " + "\n  ".join(errs))
    for cid, (dev_topic, c) in components(cfgs).items():
        if c.get("p") == "number" and c.get("unique_id", "").endswith("_param_%s_%s" % (name, node)):
            root = json.loads(cfgs[dev_topic])
            check(root["dev"]["name"] == node, "%s is not on %s's device: %s" % (cid, node,
                                                                                root["dev"]))
            return c, root.get("qos", 0)
    fail("no number entity for %s %s in %s" % (name, node, sorted(components(cfgs))))


gw = Gateway()
try:
    num, qos = number_entity("node1", "temp_high")
    check(num["min"] == -40 and num["max"] == 125 and num["step"] == 0.5 and
          num["unit_of_measurement"] == "°C" and num["mode"] == "box" and
          num["entity_category"] == "config", "temp_high entity: %s" % num)
    retained = mqtt_retained(host, port, num["state_topic"], 1)
    check(retained.get(num["state_topic"]) == "35", "state before: %s" % retained)

    # What Home Assistant does when a box is set: the float as text, on the entity's
    # command_topic with the discovery's qos, not retained.
    def ha_set(entity, value):
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-q", str(qos),
                        "-t", entity["command_topic"], "-m", value], check=True)

    # temp_clear must stay below temp_high: lowering temp_high to 30 first is refused, and
    # the entity snaps back (its state topic keeps 35).
    ha_set(num, "30.0")
    check(wait_for(lambda: any("param_refused" in l and "temp_high" in l for l in gw.log), 5),
          "temp_high 30 below temp_clear 33 was not refused")
    check(mqtt_retained(host, port, num["state_topic"], 1).get(num["state_topic"]) == "35",
          "a refused value changed the state topic")
    clear, _ = number_entity("node1", "temp_clear")
    ha_set(clear, "28.0")
    check(wait_for(lambda: mqtt_retained(host, port, clear["state_topic"], 1)
                   .get(clear["state_topic"]) == "28", 10), "temp_clear 28 not applied")
    alerts = Subscriber(host, port, ALERT)
    ha_set(num, "30.0")
    got = wait_for(lambda: mqtt_retained(host, port, num["state_topic"], 1)
                   .get(num["state_topic"]) == "30", 10)
    check(got, "the state topic did not show 30: %s" % mqtt_retained(host, port,
                                                                      num["state_topic"], 1))
    audit = [l for l in gw.log if "param_changed" in l and "param=temp_high" in l]
    check(audit and "node=node1" in audit[-1] and re.search(r'origin="?mqtt', audit[-1]),
          "no param_changed audit line:\n" + "".join(gw.log[-20:]))

    # 31 °C: below the default 35, above the new 30 -> fires; node2 at 31 must not.
    gw.send('{"n1":{"t":31.0},"n2":{"t":31.0}}')
    time.sleep(2.0)
    msgs = alerts.stop()
    fired = [json.loads(pl) for t, pl, q, r in msgs if t == ALERT]
    check(fired and fired[-1]["state"] == "firing" and fired[-1]["threshold"] == 30,
          "the alert did not fire at the new threshold: %s" % fired)
    n2 = mqtt_retained(host, port, prefix + "/alerts/node2/temperature", 1)
    check(not n2, "node2 fired although only node1 changed: %s" % n2)
    check(gw.stop() == 0, "gateway exit %s:\n%s" % (gw.p.returncode, "".join(gw.log[-20:])))

    # --- restart: the override is still applied ------------------------------------------
    subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", ALERT, "-r", "-n"],
                   check=True)  # forget the old alert, so a new one must be earned
    gw = Gateway()
    num2, _ = number_entity("node1", "temp_high")
    check(num2["command_topic"] == num["command_topic"], "command topic changed: %s" % num2)
    check(wait_for(lambda: mqtt_retained(host, port, num["state_topic"], 1)
                   .get(num["state_topic"]) == "30", 10),
          "after restart the state topic is not 30")
    alerts = Subscriber(host, port, ALERT)
    gw.send('{"n1":{"t":31.0}}')
    time.sleep(2.0)
    fired = [json.loads(pl) for t, pl, q, r in alerts.stop() if t == ALERT]
    check(fired and fired[-1]["state"] == "firing" and fired[-1]["threshold"] == 30,
          "after restart the override is not applied: %s" % fired)
    doc = json.loads(mqtt_retained(host, port, prefix + "/gateway/params", 1)
                     .get(prefix + "/gateway/params", "{}"))
    th = [p for p in doc.get("params", []) if p.get("name") == "temp_high"]
    check(th and th[0]["nodes"]["node1"]["value"] == 30 and th[0]["nodes"]["node1"]["overridden"],
          "params document after restart: %s" % th)
    check(gw.stop() == 0, "gateway exit %s" % gw.p.returncode)
finally:
    gw.stop()
    for t in list(configs()) + list(mqtt_retained(host, port, prefix + "/#", 1)):
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", t, "-r", "-n"])
print("ok")
