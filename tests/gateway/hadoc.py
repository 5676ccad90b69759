"""hadoc.py — what Home Assistant's MQTT discovery documentation requires of a device-based
discovery payload, as a table, and a validator over it (used by test_ha_discovery.py and
test_ha_params.py).

Sources: the Home Assistant MQTT integration documentation, sections "Discovery messages",
"Device discovery payload" and "Adding information about the origin of a discovery message",
and the per-platform pages sensor.mqtt, binary_sensor.mqtt, number.mqtt, switch.mqtt and
select.mqtt (their "Configuration Variables"); the same schema is in
homeassistant/components/mqtt/schemas.py (DEVICE_DISCOVERY_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA,
MQTT_ENTITY_DEVICE_INFO_SCHEMA) and in sensor.py, binary_sensor.py, number.py, switch.py and
select.py of the same directory. Only the keys the gateway may
send are listed; every other key is reported, so a misspelt key (which Home Assistant would
silently ignore) fails the test instead.
"""
import json
import re

ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")  # discovery topic object_id / component ids

STR, INT, NUM, LIST, DICT = "str", "int", "num", "list", "dict"

# Root of a device discovery payload: dev, o and cmps are required.
ROOT = {
    "required": {"dev": DICT, "o": DICT, "cmps": DICT},
    "optional": {"availability_topic": STR, "payload_available": STR,
                 "payload_not_available": STR, "qos": INT, "state_topic": STR,
                 "command_topic": STR, "encoding": STR},
}
# Device mapping: at least one of identifiers / connections.
DEVICE = {
    "required": {},
    "optional": {"identifiers": LIST, "connections": LIST, "name": STR, "manufacturer": STR,
                 "model": STR, "sw_version": STR, "hw_version": STR, "serial_number": STR,
                 "via_device": STR, "suggested_area": STR, "configuration_url": STR},
}
# Origin mapping: name required.
ORIGIN = {"required": {"name": STR}, "optional": {"sw_version": STR, "support_url": STR}}

# Per component: `p` (platform) and unique_id are required by device-based discovery, plus
# each platform's own required keys.
COMMON_COMPONENT = {"p": STR, "unique_id": STR}
PLATFORMS = {
    "sensor": {
        "required": {"state_topic": STR},
        "optional": {"name": STR, "unit_of_measurement": STR, "device_class": STR,
                     "state_class": STR, "suggested_display_precision": INT,
                     "value_template": STR, "entity_category": STR, "expire_after": INT},
        "enums": {"state_class": {"measurement", "total", "total_increasing"},
                  # a sensor may not be a "config" entity
                  "entity_category": {"diagnostic"},
                  "device_class": {"temperature", "humidity", "signal_strength", "pressure",
                                   "voltage", "current", "power", "illuminance"}},
    },
    "binary_sensor": {
        "required": {"state_topic": STR},
        "optional": {"name": STR, "value_template": STR, "payload_on": STR, "payload_off": STR,
                     "device_class": STR, "entity_category": STR},
        "enums": {"entity_category": {"diagnostic", "config"},
                  "device_class": {"problem", "heat", "connectivity", "safety", "door"}},
    },
    "number": {
        "required": {"command_topic": STR},
        "optional": {"name": STR, "state_topic": STR, "min": NUM, "max": NUM, "step": NUM,
                     "unit_of_measurement": STR, "mode": STR, "entity_category": STR},
        "enums": {"mode": {"auto", "box", "slider"},
                  "entity_category": {"config", "diagnostic"}},
    },
    "switch": {
        "required": {"command_topic": STR},
        "optional": {"name": STR, "state_topic": STR, "payload_on": STR, "payload_off": STR,
                     "state_on": STR, "state_off": STR, "entity_category": STR},
        "enums": {"entity_category": {"config", "diagnostic"}},
    },
    "select": {
        "required": {"command_topic": STR, "options": LIST},
        "optional": {"name": STR, "state_topic": STR, "entity_category": STR},
        "enums": {"entity_category": {"config", "diagnostic"}},
    },
}
# device_class -> the units Home Assistant accepts for it (sensor).
UNITS = {"temperature": {"°C", "°F", "K"}, "humidity": {"%"},
         "signal_strength": {"dB", "dBm"}, "pressure": {"hPa", "Pa", "kPa", "bar", "mbar"}}


def _type_ok(v, t):
    if t == STR:
        return isinstance(v, str)
    if t == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if t == NUM:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == LIST:
        return isinstance(v, list)
    return isinstance(v, dict)


def _keys(obj, schema, where, errs, extra_required=None):
    req = dict(schema["required"])
    req.update(extra_required or {})
    allowed = dict(req)
    allowed.update(schema["optional"])
    for k, t in req.items():
        if k not in obj:
            errs.append("%s: required key %s missing" % (where, k))
    for k, v in obj.items():
        if k not in allowed:
            errs.append("%s: key %s is not a documented option" % (where, k))
        elif not _type_ok(v, allowed[k]):
            errs.append("%s: %s must be %s, got %r" % (where, k, allowed[k], v))
    for k, vals in schema.get("enums", {}).items():
        if k in obj and obj[k] not in vals:
            errs.append("%s: %s=%r not one of %s" % (where, k, obj[k], sorted(vals)))


def validate_device(topic, payload, discovery_prefix):
    """Errors (a list of strings) of one retained device discovery message."""
    errs = []
    m = re.match(r"^%s/device/([^/]+)/config$" % re.escape(discovery_prefix), topic)
    if not m or not ID_RE.match(m.group(1)):
        errs.append("%s: not <prefix>/device/<object_id>/config with [a-zA-Z0-9_-]" % topic)
    try:
        doc = json.loads(payload)
    except ValueError as e:
        return ["%s: not JSON: %s" % (topic, e)]
    if not isinstance(doc, dict):
        return ["%s: not a JSON object" % topic]
    _keys(doc, ROOT, topic, errs)
    dev = doc.get("dev", {})
    if isinstance(dev, dict):
        _keys(dev, DEVICE, topic + " dev", errs)
        if not dev.get("identifiers") and not dev.get("connections"):
            errs.append("%s dev: needs identifiers or connections" % topic)
        if not all(isinstance(i, str) for i in dev.get("identifiers", [])):
            errs.append("%s dev: identifiers must be strings" % topic)
    if isinstance(doc.get("o"), dict):
        _keys(doc["o"], ORIGIN, topic + " o", errs)
        url = doc["o"].get("support_url")
        if url is not None and not re.match(r"^https?://", url):
            errs.append("%s o: support_url must be a URL" % topic)
    if "qos" in doc and doc["qos"] not in (0, 1, 2):
        errs.append("%s: qos must be 0..2" % topic)
    for cid, c in (doc.get("cmps") or {}).items():
        where = "%s cmps.%s" % (topic, cid)
        if not ID_RE.match(cid):
            errs.append("%s: component id must be [a-zA-Z0-9_-]" % where)
        if not isinstance(c, dict) or c.get("p") not in PLATFORMS:
            errs.append("%s: p must be one of %s" % (where, sorted(PLATFORMS)))
            continue
        if set(c) == {"p"}:
            continue  # the documented removal of one component
        plat = PLATFORMS[c["p"]]
        _keys(c, plat, where, errs, COMMON_COMPONENT)
        dc, unit = c.get("device_class"), c.get("unit_of_measurement")
        if c["p"] == "sensor" and dc in UNITS and unit not in UNITS[dc]:
            errs.append("%s: unit %r not allowed for device_class %s" % (where, unit, dc))
        if c["p"] == "number":
            if "step" in c and c["step"] < 0.001:
                errs.append("%s: step must be >= 0.001" % where)
            if "min" in c and "max" in c and c["min"] > c["max"]:
                errs.append("%s: min > max" % where)
        if c["p"] == "select" and (not c["options"] or
                                   not all(isinstance(o, str) for o in c["options"])):
            errs.append("%s: options must be a non-empty list of strings" % where)
    return errs


def components(configs):
    """{component id: (device topic, config)} over every live component."""
    out = {}
    for topic, payload in configs.items():
        if not payload:
            continue
        for cid, c in json.loads(payload).get("cmps", {}).items():
            out[cid] = (topic, c)
    return out
