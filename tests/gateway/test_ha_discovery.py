"""Home Assistant MQTT discovery against a real mosquitto: the retained device discovery
messages follow the documented schema (hadoc.py), unique_ids are unique, every announced state
topic really receives values, an alert only seen published gets its entity, Home Assistant's
"online" on <discovery_prefix>/status makes the gateway publish everything again, a reload
that drops a metric removes that entity ({"p": platform}) and one that drops a node's last
entity removes the device (empty retained payload), and without ha_discovery nothing is
published under the discovery prefix."""
import json
import os
import signal
import subprocess
import threading
import time

from gwtest import (Subscriber, check, fail, iiotgw, mqtt_retained, need_env, tmpdir, unique,
                    wait_for)
from hadoc import components, validate_device

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
prefix = unique("ha")
dprefix = unique("hadisc")
d = tmpdir()
rule = os.path.join(d, "rule.lua")

ENTRIES = {
    "n1t": '{path="n1.t", topic=P.."/node1/temperature", qos=1, retain=true, '
           'measurement="temperature", tags={node="node1", unit="celsius"}}',
    "n1g": '{path="n1.g", topic=P.."/node1/gas", qos=1, retain=true, '
           'measurement="gas_resistance", tags={node="node1", unit="ohms"}, '
           'ha={name="Gas", precision=0}}',
    "n2t": '{path="n2.t", topic=P.."/node2/temperature", qos=1, retain=true, '
           'measurement="temperature", tags={node="node2", unit="celsius"}}',
    "rssi": '{path="sig.rssi", topic=P.."/signal/rssi", qos=1, measurement="rssi", '
            'tags={node="signal", unit="dbm"}, ha={node="node2", name="RSSI"}}',
}
RULE = """local P = gw.prefix
local MAP = gw.mapper({%s})
local BUZZER = gw.param{name = "buzzer", type = "boolean", default = false, nodes = {"node1"}}
local MODE = gw.param{name = "mode", type = "enum", values = {"eco", "fast"}, default = "eco"}
gw.describe_alert(P .. "/alerts/node1/temperature", {node = "node1", device_class = "heat"})
function on_packet(p)
  MAP(p)
  local t = p.n1 and p.n1.t
  if type(t) == "number" then
    gw.publish(P .. "/alerts/node1/temperature",
               gw.json({node = "node1", state = t >= 35 and "firing" or "ok", value = t}), 1, true)
  end
  if p.door then
    gw.publish(P .. "/alerts/node3/door", gw.json({state = "firing"}), 1, true)
  end
end
"""


def write_rule(keys):
    tmp = rule + ".tmp"
    with open(tmp, "w") as f:
        f.write(RULE % ", ".join(ENTRIES[k] for k in keys))
    os.rename(tmp, rule)


def configs():
    return mqtt_retained(host, port, dprefix + "/#", 1)


def validate_all(cfgs):
    errs = []
    for t, pl in cfgs.items():
        errs += validate_device(t, pl, dprefix)
    check(not errs, "discovery payloads break the documented schema:\n  " + "\n  ".join(errs))
    uids = [c["unique_id"] for _, (t, c) in components(cfgs).items() if "unique_id" in c]
    check(len(uids) == len(set(uids)), "unique_ids not unique: %s" % uids)


# --- without ha_discovery: nothing under the discovery prefix ------------------------------
write_rule(["n1t"])
r = subprocess.run([iiotgw(), "-r", rule, "-s", "stdin", "--prefix", prefix, "--mqtt",
                    "mqtt://%s:%s" % (host, port), "--deadletter", "none",
                    "-o", "ha_discovery_prefix=" + dprefix],
                   input='{"n1":{"t":20.5}}\n', capture_output=True, text=True, timeout=30)
check(r.returncode == 0, "gateway without discovery failed: %s" % r.stderr[-2000:])
check(configs() == {}, "discovery published although ha_discovery is off: %s" % configs())

# --- with it --------------------------------------------------------------------------------
write_rule(["n1t", "n1g", "n2t", "rssi"])
gwid = "gw-" + prefix
state = Subscriber(host, port, prefix + "/#")
p = subprocess.Popen([iiotgw(), "-r", rule, "-s", "stdin", "--prefix", prefix,
                      "--mqtt", "mqtt://%s:%s" % (host, port), "--deadletter", "none",
                      "-o", "ha_discovery=true", "-o", "ha_discovery_prefix=" + dprefix,
                      "-o", "ha_discovery_support_url=https://support.example.org/iiotgw",
                      "-o", "gateway_id=" + gwid, "-o", "stats_interval=0.5",
                      "-o", "reload_debounce=0.05"],
                     stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
log = []
threading.Thread(target=lambda: [log.append(l) for l in p.stderr], daemon=True).start()


def stop_gw():
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(15)


try:
    gw_oid = "iiotgw_gw-" + prefix
    dev_topic = lambda node: "%s/device/%s%s/config" % (dprefix, gw_oid, "_" + node if node else "")
    want = {dev_topic(None), dev_topic("node1"), dev_topic("node2")}
    cfgs = wait_for(lambda: (lambda c: c if set(c) == want else None)(configs()), 10) or configs()
    check(set(cfgs) == want, "device topics: got %s, want %s" % (sorted(cfgs), sorted(want)))
    validate_all(cfgs)

    gwdoc = json.loads(cfgs[dev_topic(None)])
    check(gwdoc["o"] == {"name": "iiotgw", "sw_version": gwdoc["dev"]["sw_version"],
                         "support_url": "https://support.example.org/iiotgw"},
          "origin block: %s" % gwdoc["o"])
    check(gwdoc["availability_topic"] == prefix + "/gateway/status",
          "availability is not the gateway's LWT status topic: %s" % gwdoc)
    n1 = json.loads(cfgs[dev_topic("node1")])
    check(n1["dev"]["via_device"] == gwdoc["dev"]["identifiers"][0],
          "node1 is not via_device the gateway: %s" % n1["dev"])
    comps = components(cfgs)
    t1 = comps.get("node1_temperature", (None, {}))[1]
    check(t1.get("p") == "sensor" and t1.get("unit_of_measurement") == "°C" and
          t1.get("device_class") == "temperature" and t1.get("state_class") == "measurement" and
          t1.get("suggested_display_precision") == 1 and
          t1.get("state_topic") == prefix + "/node1/temperature",
          "node1 temperature sensor: %s" % t1)
    gas = comps.get("node1_gas", (None, {}))[1]
    check(gas.get("name") == "Gas" and gas.get("unit_of_measurement") == "Ω" and
          gas.get("suggested_display_precision") == 0 and "device_class" not in gas,
          "rule's ha metadata not applied: %s" % gas)
    rssi_dev, rssi = comps.get("signal_rssi", (None, {}))
    check(rssi_dev == dev_topic("node2") and rssi.get("device_class") == "signal_strength",
          "rssi not on node2 as signal_strength: %s %s" % (rssi_dev, rssi))
    sw_dev, sw = comps.get("param_buzzer_node1", (None, {}))
    check(sw_dev == dev_topic("node1") and sw.get("p") == "switch" and
          sw.get("command_topic") == prefix + "/gateway/param/buzzer/node1/set" and
          sw.get("payload_on") == "true" and sw.get("entity_category") == "config",
          "boolean param as a switch on node1: %s %s" % (sw_dev, sw))
    sel_dev, sel = comps.get("param_mode", (None, {}))
    check(sel_dev == dev_topic(None) and sel.get("p") == "select" and
          sel.get("options") == ["eco", "fast"] and
          sel.get("state_topic") == prefix + "/gateway/param/mode",
          "global enum param as a select on the gateway: %s %s" % (sel_dev, sel))
    al = comps.get("alerts_node1_temperature", (None, {}))[1]
    check(al.get("p") == "binary_sensor" and al.get("payload_on") == "firing" and
          al.get("device_class") == "heat", "declared alert: %s" % al)

    # --- state topics receive values -------------------------------------------------------
    p.stdin.write('{"n1":{"t":36.5,"g":84190},"n2":{"t":24.0},"sig":{"rssi":-40}}\n')
    p.stdin.write('{"door":1}\n')
    p.stdin.flush()
    # a stats report (0.5 s) and the dynamic alert's discovery
    cfgs = wait_for(lambda: (lambda c: c if "alerts_node3_door" in components(c) else None)(
        configs()), 10) or configs()
    time.sleep(0.5)
    validate_all(cfgs)
    comps = components(cfgs)
    check("alerts_node3_door" in comps and comps["alerts_node3_door"][0] == dev_topic("node3"),
          "an alert seen published got no entity on its node: %s" % sorted(comps))
    msgs = state.stop()
    got = {}
    for t, pl, q, ret in msgs:
        got.setdefault(t, []).append(pl)
    for cid, (dt, c) in comps.items():
        st = c.get("state_topic")
        if not st:
            continue
        check(st in got, "state topic %s of %s received nothing" % (st, cid))
        last = got[st][-1]
        tpl = c.get("value_template")
        if tpl:
            field = tpl.replace("{{ value_json.", "").replace(" }}", "")
            doc = json.loads(last)
            check(field in doc, "%s: %s has no field %s" % (cid, last, field))
            if c["p"] == "binary_sensor":
                check(doc[field] in (c["payload_on"], c["payload_off"]),
                      "%s: state %r is neither payload_on nor payload_off" % (cid, doc[field]))
        elif c["p"] == "sensor":
            float(last)  # a plain number, as Home Assistant reads it without a template
    check(json.loads(got[prefix + "/alerts/node1/temperature"][-1])["state"] == "firing",
          "the alert did not fire")

    # --- Home Assistant comes online: everything again --------------------------------------
    # The subscriber first gets the retained copies (one per device), then whatever comes.
    def count_after(payload):
        sub = Subscriber(host, port, dprefix + "/+/+/config")
        time.sleep(0.3)
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", dprefix + "/status",
                        "-m", payload], check=True)
        time.sleep(2.0)
        return sub.stop()[len(cfgs):]

    check(count_after("offline") == [], "republished on 'offline'")
    re_msgs = count_after("online")
    check(sorted(m[0] for m in re_msgs) == sorted(cfgs),
          "after 'online' republished %s, want %s" % (sorted(m[0] for m in re_msgs), sorted(cfgs)))
    check(all(m[2] == 1 and m[3] and m[1] == cfgs[m[0]] for m in re_msgs),
          "republished not the same retained QoS 1 payloads: %s" % re_msgs)

    # --- reload without a metric: its entity is removed -------------------------------------
    write_rule(["n1t", "n2t", "rssi"])
    wait_for(lambda: sum("rules_reloaded" in l for l in log) >= 1, 10)
    cfgs = wait_for(lambda: (lambda c: c if json.loads(c.get(dev_topic("node1"), "{}"))
                             .get("cmps", {}).get("node1_gas") == {"p": "sensor"} else None)(
                                 configs()), 10) or configs()
    n1 = json.loads(cfgs[dev_topic("node1")])
    check(n1["cmps"].get("node1_gas") == {"p": "sensor"},
          "dropped metric not removed: %s" % n1["cmps"].get("node1_gas"))
    check("node1_temperature" in n1["cmps"] and len(n1["cmps"]["node1_temperature"]) > 1,
          "kept metric lost: %s" % n1["cmps"])
    validate_all(cfgs)

    # --- reload without any node2 entity: the device is removed -----------------------------
    write_rule(["n1t"])
    wait_for(lambda: sum("rules_reloaded" in l for l in log) >= 2, 10)
    cfgs = wait_for(lambda: (lambda c: c if dev_topic("node2") not in c else None)(configs()),
                    10) or configs()
    check(dev_topic("node2") not in cfgs,
          "node2 device not removed (empty retained payload): %s" % cfgs.get(dev_topic("node2")))
    check(dev_topic("node1") in cfgs and dev_topic(None) in cfgs, "other devices lost")
    stop_gw()
    check(p.returncode == 0, "gateway exit %s:\n%s" % (p.returncode, "".join(log[-30:])))
finally:
    stop_gw()
    # Leave the broker as found: clear the retained discovery and state messages.
    for t in list(configs()) + list(mqtt_retained(host, port, prefix + "/#", 1)):
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", t, "-r", "-n"])
print("ok")
