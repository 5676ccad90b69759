#!/usr/bin/python3
"""tests/docker/validate.py — checks of the Docker stack that need no Docker engine (CI has none).

Why: the prototype's dashboards were click-built and lost, its compose file used :latest and
committed secrets. These checks keep docker/ honest against the rest of the repository:

  compose    REPO          `docker-compose config` passes with .env.example as the env file and
                           fails without the secrets; pinned images, healthchecks, depends_on;
                           each profile (influxdb, vm, vm+vmalert) is a complete stack.
  grafana    REPO IIOTGW   dashboards and alert rules of every variant (influxql, flux,
                           victoriametrics) parse; panel counts; datasource uids; every
                           measurement / field / tag value an InfluxQL query names is one that
                           `iiotgw --dry-run` writes (for a capture built here, plus its stats
                           point); thresholds, refresh, variables, annotations, rule links.
                           Running the queries is tests/docker/dashboards.py's job.
  build      REPO          docker/Dockerfile installs the README's build packages and runs the
                           README's CMake invocation (marked blocks in README.md).
  mosquitto  REPO          a real mosquitto starts with docker/mosquitto/mosquitto.conf (ports
                           and paths rewritten), serves the healthcheck listener, and the
                           gateway healthcheck script reads the status topic correctly.

Exit 0 = pass, 1 = fail (every problem is printed), 77 = skipped (tool missing).
Runs with Debian's /usr/bin/python3 (stdlib + yaml).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

sys.dont_write_bytecode = True   # imports below must not leave __pycache__ in the tree

# free_port() is the daemon-level tests' (tests/gateway/gwtest.py, stdlib only): one helper.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import free_port  # noqa: E402

BUCKET = "telemetry"
EXPR_UID = "__expr__"
GRAFANA_UID = "-- Grafana --"
VARIANT_DS = {"influxql": ("iiot-influxdb", "influxdb"), "flux": ("iiot-influxdb", "influxdb"),
              "victoriametrics": ("iiot-victoriametrics", "prometheus")}
PROFILES = {"influxdb": ("influxdb",), "vm": ("vm",), "vm+vmalert": ("vm", "vmalert")}

# The gateway's own stats measurement (tag `gateway`): the Gateway dashboard must show at least
# these fields (rates, queue/spool depth, rule time, reloads, dead letters, ...).
GATEWAY_MEASUREMENT = "iiotgw"
GATEWAY_FIELDS = {"packets", "rule_errors", "rule_time_us", "mqtt_queue", "mqtt_reconnects",
                  "influx_batches", "influx_retries", "spool_bytes", "alerts_active", "reloads",
                  "deadletter", "spool_pending_mqtt", "spool_pending_influx"}

# The prototype's 7 environmental + 4 signal panels, each dashboard plus one new panel (node
# status, packet loss), and the gateway's health.
PANEL_COUNTS = {"Environmental Sensors": 8, "Signal Quality & Statistics": 5, "Gateway": 12}


class Checker:
    """Collects failures so one run reports every problem, not just the first."""

    def __init__(self):
        self.failures = []
        self.passes = 0

    def check(self, cond, what):
        if cond:
            self.passes += 1
        else:
            self.failures.append(what)
            print("FAIL:", what)
        return cond

    def finish(self, name):
        print(f"{name}: {self.passes} checks passed, {len(self.failures)} failed")
        return 1 if self.failures else 0


# =============================================================================================
# compose
# =============================================================================================
def cmd_compose(repo):
    exe = shutil.which("docker-compose")
    if not exe:
        print("SKIP: docker-compose not installed")
        return 77
    c = Checker()
    compose = os.path.join(repo, "docker", "docker-compose.yml")
    env_example = os.path.join(repo, "docker", ".env.example")
    had_env = os.path.exists(os.path.join(repo, "docker", ".env"))
    with tempfile.TemporaryDirectory(prefix="docker_compose_") as tmp:
        env = os.path.join(tmp, "env")
        shutil.copy(env_example, env)
        # --project-directory keeps relative paths anchored at docker/; --env-file keeps the
        # tree clean (no docker/.env is ever created by the test).
        base = [exe, "--env-file", env, "--project-directory", os.path.join(repo, "docker"),
                "-f", compose]
        r = subprocess.run(base + ["config"], capture_output=True, text=True, timeout=60)
        c.check(r.returncode == 0, f"docker-compose config failed: {r.stderr.strip()}")
        if r.returncode != 0:
            return c.finish("compose")
        cfg = yaml.safe_load(r.stdout)

        # Secrets are required: without them config must refuse (the ${VAR:?} guards).
        with open(env) as f:
            lines = [ln for ln in f if not re.match(r"(INFLUX_ADMIN_TOKEN|INFLUX_ADMIN_PASSWORD|"
                                                    r"GRAFANA_ADMIN_PASSWORD)=", ln)]
        with open(env, "w") as f:
            f.writelines(lines)
        clean_env = {k: v for k, v in os.environ.items()
                     if k not in ("INFLUX_ADMIN_TOKEN", "INFLUX_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD")}
        r2 = subprocess.run(base + ["config"], capture_output=True, text=True, timeout=60, env=clean_env)
        c.check(r2.returncode != 0 and "docker/.env" in r2.stderr,
                "docker-compose config must fail with a clear message when secrets are missing")
    c.check(os.path.exists(os.path.join(repo, "docker", ".env")) == had_env,
            "the test must not create docker/.env")

    services = cfg.get("services", {})
    c.check(set(services) >= {"mosquitto", "influxdb", "grafana", "iiotgw", "victoriametrics",
                              "grafana-vm", "iiotgw-vm", "vmalert"},
            f"services missing: {sorted(services)}")
    # Each profile choice is a complete stack of its own: broker, one database, Grafana and
    # the gateway; dependencies stay inside it; no host port is published twice.
    kinds = {"db": ("influxdb", "victoriametrics"), "grafana": ("grafana", "grafana-vm"),
             "gateway": ("iiotgw", "iiotgw-vm")}
    for pname, active in PROFILES.items():
        up = {n for n, svc in services.items() if not svc.get("profiles") or set(svc["profiles"]) & set(active)}
        for kind, names in kinds.items():
            c.check(len(up & set(names)) == 1, f"profile {pname}: want exactly one {kind} service, have {sorted(up)}")
        c.check("mosquitto" in up, f"profile {pname}: mosquitto must run")
        for n in up:
            for dep in services[n].get("depends_on") or {}:
                c.check(dep in up, f"profile {pname}: {n} depends on {dep}, which the profile does not start")
        ports = [str(pt).rsplit(":", 2)[-2] if isinstance(pt, str) else str(pt.get("published"))
                 for n in up for pt in services[n].get("ports", [])]
        c.check(len(ports) == len(set(ports)), f"profile {pname}: host ports published twice: {sorted(ports)}")
    c.check(not services["mosquitto"].get("profiles"), "mosquitto must run in every profile")
    with open(env_example) as f:
        example = f.read()
    c.check(re.search(r"^COMPOSE_PROFILES=influxdb$", example, re.M) is not None,
            ".env.example must select the influxdb profile by default")
    for lang in ("influxql", "flux"):
        for sub in ("provisioning", "dashboards"):
            c.check(os.path.isdir(os.path.join(repo, "docker", "grafana", lang, sub)),
                    f"GRAFANA_QUERY_LANGUAGE={lang}: docker/grafana/{lang}/{sub} missing")
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" not in svc:
            c.check(re.search(r":v?\d+\.\d+\.\d+$", image) is not None,
                    f"{name}: image {image!r} is not pinned to an exact version")
        one_shot = str(svc.get("restart", "no")) == "no"
        if not one_shot:
            hc = svc.get("healthcheck", {})
            c.check(bool(hc.get("test")) and not hc.get("disable"), f"{name}: no healthcheck")
        for dep, spec in (svc.get("depends_on") or {}).items():
            cond = spec.get("condition") if isinstance(spec, dict) else None
            dep_one_shot = str(services.get(dep, {}).get("restart", "no")) == "no"
            want = "service_completed_successfully" if dep_one_shot else "service_healthy"
            c.check(cond == want, f"{name}: depends_on {dep} has condition {cond!r}, want {want}")
        env_vals = svc.get("environment") or {}
        for k, v in env_vals.items():
            if re.search(r"(TOKEN|PASSWORD)$", k) and v:
                # With .env.example as the env file every secret is its CHANGE-ME placeholder.
                c.check("CHANGE-ME" in str(v), f"{name}: secret {k} does not come from the env file")
    gw = services.get("iiotgw", {})
    c.check(any(v.get("target") == "/etc/iiotgw/rules" and v.get("read_only")
                if isinstance(v, dict) else str(v).startswith(os.path.join(repo, "rules") + ":/etc/iiotgw/rules:ro")
                for v in gw.get("volumes", [])),
            "iiotgw: rules/ must be bind-mounted read-only at /etc/iiotgw/rules (hot reload)")
    c.check(cfg.get("services", {}).get("influxdb", {}).get("environment", {})
            .get("DOCKER_INFLUXDB_INIT_BUCKET") == BUCKET, f"influxdb: bucket must be {BUCKET}")

    # Files the compose file mounts must exist in the repo.
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            if src and src.startswith("/"):
                c.check(os.path.exists(src), f"{name}: mounted path {src} does not exist")

    # The Dockerfile's user must not be root.
    with open(os.path.join(repo, "docker", "Dockerfile")) as f:
        users = re.findall(r"^USER\s+(\S+)", f.read(), re.M)
    c.check(bool(users) and users[-1] not in ("root", "0"), "Dockerfile: final stage must run as a non-root USER")
    return c.finish("compose")


# =============================================================================================
# Line protocol of `iiotgw --dry-run` WRITE lines
# =============================================================================================
def split_unescaped(s, sep):
    """Split on `sep` not preceded by a backslash and not inside double quotes."""
    out, cur, i, quoted = [], [], 0, False
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


def parse_line_protocol(line):
    """Returns (measurement, {tag: value}, {field: raw value}) or raises ValueError."""
    parts = split_unescaped(line.strip(), " ")
    if len(parts) < 2:
        raise ValueError(f"not line protocol: {line!r}")
    series = split_unescaped(parts[0], ",")
    tags = {}
    for kv in series[1:]:
        k, _, v = kv.partition("=")
        tags[unescape(k)] = unescape(v)
    fields = {}
    for kv in split_unescaped(parts[1], ","):
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"bad field {kv!r} in {line!r}")
        fields[unescape(k)] = v
    return unescape(series[0]), tags, fields


def schema_from_dry_run(iiotgw, repo, session):
    """Run the gateway over a capture; returns {measurement: {"fields": set, "tags": {key:
    set(values)}}} and the number of WRITE lines seen (the final stats point included)."""
    cmd = [iiotgw, "--dry-run", "-c", "none", "-r", os.path.join(repo, "rules", "default.lua"),
           "-s", "file:" + session]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    schema, n = {}, 0
    for line in r.stdout.splitlines():
        if not line.startswith("WRITE "):
            continue
        m, tags, fields = parse_line_protocol(line[len("WRITE "):])
        n += 1
        s = schema.setdefault(m, {"fields": set(), "tags": {}})
        s["fields"].update(fields)
        for k, v in tags.items():
            s["tags"].setdefault(k, set()).add(v)
    return schema, n


# =============================================================================================
# grafana
# =============================================================================================
def panel_thresholds(p):
    steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    return [(s.get("color"), s.get("value")) for s in steps]


def walk_datasources(obj, path="$"):
    """Yield (path, datasource) for every "datasource" key anywhere in a dashboard."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "datasource":
                yield f"{path}.{k}", v
            else:
                yield from walk_datasources(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_datasources(v, f"{path}[{i}]")


def rule_thresholds(repo):
    with open(os.path.join(repo, "rules", "default.lua")) as f:
        text = f.read()
    return {k: float(v) for k, v in re.findall(r"^\s*(temp_high|offline_after)\s*=\s*([\d.]+)", text, re.M)}


def cmd_grafana(repo, iiotgw):
    import dashboards as dash   # tests/docker/dashboards.py: capture builder, query name parser
    c = Checker()
    gdir = os.path.join(repo, "docker", "grafana")

    # --- the schema the gateway really writes, for a capture of both scenarios -----------------
    with tempfile.TemporaryDirectory(prefix="docker_grafana_") as tmp:
        cap = os.path.join(tmp, "capture.log")
        with open(cap, "w") as f:
            for name in ("fire", "calm"):
                for pkt in dash.Scenario(name, time.time()).history()[-40:]:
                    f.write(dash.capture_line(pkt) + "\n")
        schema, n = schema_from_dry_run(iiotgw, repo, cap)
    c.check(n > 0, "iiotgw --dry-run printed no WRITE lines for the capture")
    c.check(GATEWAY_MEASUREMENT in schema, "iiotgw --dry-run printed no iiotgw stats point")
    print(f"dry-run: {n} WRITE lines; measurements: " +
          ", ".join(f"{m}{ {k: sorted(v) for k, v in s['tags'].items()} }" for m, s in sorted(schema.items())))

    # --- the generator's thresholds are the default rule's ----------------------------------
    sys.path.insert(0, gdir)
    import gen
    th = rule_thresholds(repo)
    c.check(th.get("temp_high") == gen.TEMP_HIGH and th.get("offline_after") == gen.OFFLINE_AFTER,
            f"gen.py TEMP_HIGH/OFFLINE_AFTER {gen.TEMP_HIGH}/{gen.OFFLINE_AFTER} differ from rules/default.lua {th}")

    for variant, (ds_uid, ds_type) in VARIANT_DS.items():
        vdir = os.path.join(gdir, variant)
        with open(os.path.join(vdir, "provisioning", "datasources", "iiot.yml")) as f:
            dss = {d["uid"]: d for d in yaml.safe_load(f)["datasources"]}
        ds = dss.get(ds_uid, {})
        c.check(ds.get("type") == ds_type, f"{variant}: datasource {ds_uid} of type {ds_type} not provisioned")
        jd = ds.get("jsonData", {})
        if variant == "influxql":
            c.check(jd.get("version") == "InfluxQL" and jd.get("dbName") == BUCKET
                    and jd.get("httpHeaderName1") == "Authorization"
                    and ds.get("secureJsonData", {}).get("httpHeaderValue1") == "Token ${INFLUX_READ_TOKEN}",
                    f"{variant}: InfluxQL on database {BUCKET} with the read token in an Authorization header")
        elif variant == "flux":
            c.check(jd.get("version") == "Flux" and jd.get("defaultBucket") == BUCKET
                    and str(ds.get("secureJsonData", {}).get("token", "")).startswith("$"),
                    f"{variant}: Flux on bucket {BUCKET}, token from the environment")
        else:
            c.check(ds.get("url") == "http://victoriametrics:8428", f"{variant}: datasource url")
        with open(os.path.join(vdir, "provisioning", "dashboards", "iiot.yml")) as f:
            prov = yaml.safe_load(f)
        c.check(any(p.get("options", {}).get("path") == "/etc/grafana/dashboards" for p in prov["providers"]),
                f"{variant}: dashboard provider must load /etc/grafana/dashboards")

        # --- dashboards -------------------------------------------------------------------------
        ddir = os.path.join(vdir, "dashboards")
        dashboards, panel_ids = {}, {}
        for fn in sorted(os.listdir(ddir)):
            with open(os.path.join(ddir, fn)) as f:
                try:
                    d = json.load(f)
                except ValueError as e:
                    c.check(False, f"{variant}/{fn}: invalid JSON: {e}")
                    continue
            where = f"{variant}/{fn}"
            dashboards[d.get("title")] = d
            panel_ids[d.get("uid")] = {p["id"] for p in d.get("panels", [])}
            c.check(d.get("refresh") == "10s", f"{where}: refresh must be 10s, is {d.get('refresh')!r}")
            c.check(bool(d.get("uid")), f"{where}: no uid (links would break on re-provisioning)")
            for path, dsref in walk_datasources(d):
                c.check(isinstance(dsref, dict) and dsref.get("uid") in (ds_uid, EXPR_UID, GRAFANA_UID),
                        f"{where}: {path} = {dsref!r} does not resolve to the provisioned datasource {ds_uid}")
            ann = d.get("annotations", {}).get("list", [])
            c.check(any(a.get("builtIn") and a.get("type") == "dashboard" and a.get("enable") for a in ann),
                    f"{where}: the built-in 'Annotations & Alerts' (alert state changes) must be enabled")
            ids = [p.get("id") for p in d.get("panels", [])]
            c.check(len(ids) == len(set(ids)), f"{where}: duplicate panel ids {ids}")
            for p in d.get("panels", []):
                c.check(p.get("type") != "row", f"{where}: rows would change panel counts")
                c.check(p.get("targets"), f"{where}: panel {p.get('title')!r} has no query")
        for title, count in PANEL_COUNTS.items():
            d = dashboards.get(title)
            if c.check(d is not None, f"{variant}: dashboard {title!r} missing (have {sorted(dashboards)})"):
                c.check(len(d["panels"]) == count, f"{variant} {title}: {len(d['panels'])} panels, want {count}")

        def panels(title):
            return {p["title"]: p for p in dashboards.get(title, {}).get("panels", [])}

        env = panels("Environmental Sensors")
        for name in ("Node 1 temperature", "Node 2 temperature"):
            p = env.get(name, {})
            c.check(p.get("type") == "stat", f"{variant} {name}: must be a stat panel")
            c.check(panel_thresholds(p) == [("green", None), ("yellow", 30), ("red", 35)],
                    f"{variant} {name}: thresholds {panel_thresholds(p)}, want green <30, yellow <35, red >=35")
        for name in ("Node 1 humidity", "Node 2 humidity", "Node status"):
            c.check(env.get(name, {}).get("type") == "stat", f"{variant} {name}: must be a stat panel")
        for name in ("Temperature comparison", "Humidity comparison", "Gas resistance (air quality)"):
            c.check(env.get(name, {}).get("type") == "timeseries", f"{variant} {name}: must be a time series")
        envd = dashboards.get("Environmental Sensors", {})
        var = {v["name"]: v for v in envd.get("templating", {}).get("list", [])}
        c.check(var.get("node", {}).get("multi") and var.get("node", {}).get("includeAll"),
                f"{variant}: Environmental Sensors needs a multi-value node variable with All")
        for name in ("Temperature comparison", "Humidity comparison", "Node status"):
            text = json.dumps(env.get(name, {}).get("targets", []))
            c.check("$node" in text or "${node" in text, f"{variant} {name}: must follow the $node variable")
        sig = panels("Signal Quality & Statistics")
        rssi = sig.get("RSSI", {})
        c.check(rssi.get("type") == "gauge", f"{variant}: RSSI must be a gauge")
        c.check(panel_thresholds(rssi) == [("red", None), ("yellow", -80), ("green", -60)],
                f"{variant}: RSSI thresholds {panel_thresholds(rssi)}, want red <-80, yellow <-60, green >=-60")
        snr = sig.get("SNR", {})
        c.check(snr.get("type") == "timeseries" and ("green", 10) in panel_thresholds(snr),
                f"{variant}: SNR: time series with the 10 dB 'excellent' threshold")
        c.check(sig.get("Packets received", {}).get("type") == "stat", f"{variant}: Packets received must be a stat")
        c.check(sig.get("Error rate", {}).get("type") == "gauge", f"{variant}: Error rate must be a gauge")
        c.check("Packet loss & retransmissions" in sig, f"{variant}: packet loss panel missing")

        # --- every name an InfluxQL query uses is written by the gateway -------------------------
        if variant == "influxql":
            used = {}
            for (where, ref), q in dash.variant_queries(repo, variant).items():
                if where.split("/")[-1].startswith("$"):
                    m = re.search(r'FROM "([^"]+)" WITH KEY = "([^"]+)"', q)
                    c.check(bool(m) and m.group(1) in schema and m.group(2) in schema[m.group(1)]["tags"],
                            f"{where}: variable query {q!r} names no written measurement/tag")
                    continue
                nm = dash.names_influxql(q)
                for m in nm["measurements"]:
                    if not c.check(m in schema, f"{where} {ref}: measurement {m!r} is never written ({sorted(schema)})"):
                        continue
                    for f in nm["fields"]:
                        c.check(f in schema[m]["fields"], f"{where} {ref}: field {f!r} not written for {m}")
                        used.setdefault(m, set()).add(("_field", f))
                    for t, v in nm["tags"]:
                        c.check(t in schema[m]["tags"] and (v.startswith("$") or v in schema[m]["tags"][t]),
                                f"{where} {ref}: tag {t}={v!r} never written for {m}")
                        used[m].add((t, v))
                    for t in nm["group"]:
                        c.check(t in schema[m]["tags"], f"{where} {ref}: GROUP BY {t!r}: no such tag on {m}")
            for m, node in [("temperature", "node1"), ("temperature", "node2"), ("humidity", "node1"),
                            ("humidity", "node2"), ("gas_resistance", "node1"), ("rssi", "signal"),
                            ("snr", "signal"), ("packets_received", "stats"), ("crc_errors", "stats")]:
                c.check(("node", node) in used.get(m, set()) or ("node", "$node") in used.get(m, set()),
                        f"no panel shows {m} of {node}")
            gw_used = {v for k, v in used.get(GATEWAY_MEASUREMENT, set()) if k == "_field"}
            c.check(GATEWAY_FIELDS <= gw_used, f"Gateway dashboard misses {sorted(GATEWAY_FIELDS - gw_used)}")

        # --- alert rules -------------------------------------------------------------------------
        with open(os.path.join(vdir, "provisioning", "alerting", "iiot-alerts.yml")) as f:
            a = yaml.safe_load(f)
        rules = {}
        for g in a.get("groups", []):
            c.check(re.fullmatch(r"\d+[sm]", str(g.get("interval", ""))) is not None, f"{variant}: group interval")
            for r in g.get("rules", []):
                rules[r["uid"]] = r
                where = f"{variant}: rule {r['uid']}"
                refs = {q["refId"]: q for q in r.get("data", [])}
                c.check(r.get("condition") in refs, f"{where}: condition {r.get('condition')!r} is not a refId")
                ann = r.get("annotations", {})
                c.check(bool(ann.get("summary")), f"{where}: no summary")
                c.check(int(ann.get("__panelId__", 0)) in panel_ids.get(ann.get("__dashboardUid__"), set()),
                        f"{where}: links to dashboard {ann.get('__dashboardUid__')} panel {ann.get('__panelId__')}"
                        " which does not exist (alert annotations would not show)")
                node_from_query = False
                for q in r.get("data", []):
                    uid = q.get("datasourceUid")
                    c.check(uid in (ds_uid, EXPR_UID), f"{where} {q['refId']}: datasource {uid!r} unresolved")
                    if uid == ds_uid:
                        text = q["model"].get("query") or q["model"].get("expr") or ""
                        node_from_query |= bool(re.search(r'GROUP BY[^)]*"node"|group\(columns: \["node"\]|by \(node\)', text))
                    else:
                        exp = q["model"].get("expression")
                        c.check(exp in refs or "$" in str(exp), f"{where} {q['refId']}: expression input {exp!r} unknown")
                c.check(node_from_query or bool(r.get("labels", {}).get("node")),
                        f"{where}: the node must be in its labels (static or from the query)")

        def threshold(uid):
            for q in rules.get(uid, {}).get("data", []):
                if q.get("model", {}).get("type") == "threshold":
                    ev = q["model"]["conditions"][0]["evaluator"]
                    return ev["type"], ev["params"][0]
            return None

        def span(uid):
            return max((q.get("relativeTimeRange", {}).get("from", 0) for q in rules.get(uid, {}).get("data", [])
                        if q.get("datasourceUid") == ds_uid), default=None)

        want = {"iiot-temperature-high": (("gt", 35), 300), "iiot-packet-error-rate": (("gt", 10), 900),
                "iiot-node-silent": (("lt", 1), None), "iiot-gateway-offline": (("lt", 1), None)}
        for uid, (thr, rng) in want.items():
            if c.check(uid in rules, f"{variant}: alert rule {uid} missing"):
                c.check(threshold(uid) == thr, f"{variant} {uid}: threshold {threshold(uid)}, want {thr}")
                if rng:
                    c.check(span(uid) == rng, f"{variant} {uid}: query range {span(uid)} s, want {rng}")
        c.check(any(q["model"].get("reducer") == "mean" for q in rules.get("iiot-temperature-high", {}).get("data", [])
                    if q.get("datasourceUid") == EXPR_UID), f"{variant}: temperature alert must use the mean")
        for uid in ("iiot-node-silent", "iiot-gateway-offline"):
            c.check(rules.get(uid, {}).get("noDataState") == "Alerting", f"{variant} {uid}: no data must alert")
    return c.finish("grafana")


# =============================================================================================
# Dockerfile vs README
# =============================================================================================
APT_WORDS = {"sudo", "apt", "apt-get", "install", "update", "sh", "bash", "console", "shell"}
PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def readme_block(text, name):
    m = re.search(rf"<!--\s*{re.escape(name)}\s*-->(.*?)<!--\s*/{re.escape(name)}\s*-->", text, re.S)
    return m.group(1) if m else None


def packages_in(text):
    toks = re.split(r"[\s\\`]+", text)
    return {t for t in toks if PKG_RE.match(t) and t not in APT_WORDS and not t.startswith("-")}


def apt_lines(block):
    """The apt-get/apt install lines of a README block (the block may also hold cmake lines)."""
    text = re.sub(r"\\\n", " ", block)
    return [ln for ln in text.splitlines() if re.search(r"\bapt(-get)?\s+install\b", ln)]


def dockerfile_stages(text):
    """Returns [(stage name, [RUN command strings with continuations joined])]."""
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        s = line.strip()
        if s.upper().startswith("FROM "):
            m = re.search(r"\bAS\s+(\S+)", s, re.I)
            stages.append((m.group(1) if m else str(len(stages)), []))
        elif s.upper().startswith("RUN ") and stages:
            stages[-1][1].append(s[4:].strip())
    return stages


def shell_commands(run):
    return [" ".join(c.split()) for c in re.split(r"&&|;", run) if c.strip()]


def cmake_matches(readme_cmd, docker_cmd):
    """Same invocation: identical words; a build command may only add --target/-j/--parallel."""
    r, d = readme_cmd.split(), docker_cmd.split()
    if d[:len(r)] != r:
        return False
    extra = d[len(r):]
    if not extra:
        return True
    if "--build" not in r:
        return False
    return extra[0] in ("--target", "-j", "--parallel")


def cmd_build(repo):
    c = Checker()
    with open(os.path.join(repo, "docker", "Dockerfile")) as f:
        dockerfile = f.read()
    stages = dockerfile_stages(dockerfile)
    c.check(len(stages) >= 2, "Dockerfile must be multi-stage")
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    c.check(all(re.match(r"debian:(12\.\d+|bookworm)", f) for f in froms),
            f"every stage must be Debian bookworm: {froms}")
    build_runs = stages[0][1] if stages else []
    runtime_runs = stages[-1][1] if stages else []
    build_cmds = [cmd for run in build_runs for cmd in shell_commands(run)]
    build_pkgs = packages_in(" ".join(cmd for cmd in build_cmds if "apt-get install" in cmd))
    runtime_pkgs = packages_in(" ".join(cmd for run in runtime_runs for cmd in shell_commands(run)
                                        if "apt-get install" in cmd))
    readme_path = os.path.join(repo, "README.md")
    readme = open(readme_path).read() if os.path.exists(readme_path) else ""
    deps = readme_block(readme, "deps:build")
    if c.check(deps is not None, "README.md has no <!-- deps:build --> ... <!-- /deps:build --> block"):
        want = packages_in(" ".join(apt_lines(deps)))
        c.check(bool(want), "README deps:build block lists no packages")
        c.check(build_pkgs == want, "build packages differ: Dockerfile only "
                f"{sorted(build_pkgs - want)}, README only {sorted(want - build_pkgs)}")
    rt = readme_block(readme, "deps:runtime")
    if rt is not None:   # optional block: the runtime stage may add container tooling
        missing = packages_in(" ".join(apt_lines(rt))) - runtime_pkgs
        c.check(not missing, f"runtime stage lacks README runtime packages {sorted(missing)}")
    # The CMake invocation: a build:cmake block if there is one, else the cmake lines of the
    # deps:build block.
    cm = readme_block(readme, "build:cmake") or deps
    if c.check(cm is not None, "README.md has no block with the CMake invocation"):
        readme_cmds = []
        for line in cm.splitlines():
            line = line.strip()
            if not line or line.startswith("```") or line.startswith("#"):
                continue
            line = re.sub(r"^\$\s+", "", line)
            readme_cmds += [" ".join(x.split()) for x in line.split("&&") if x.strip()]
        readme_cmds = [x for x in readme_cmds if x.startswith("cmake")]
        c.check(bool(readme_cmds), "README build:cmake block has no cmake command")
        docker_cmake = [x for x in build_cmds if x.startswith("cmake")]
        for rc in readme_cmds:
            c.check(any(cmake_matches(rc, dc) for dc in docker_cmake),
                    f"README command {rc!r} not in the Dockerfile build stage ({docker_cmake})")
        for dc in docker_cmake:
            c.check(any(cmake_matches(rc, dc) for rc in readme_cmds),
                    f"Dockerfile command {dc!r} is not the README's invocation ({readme_cmds})")
    return c.finish("build")


# =============================================================================================
# mosquitto
# =============================================================================================
def cmd_mosquitto(repo):
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_sub"):
        print("SKIP: mosquitto / mosquitto_sub not installed")
        return 77
    c = Checker()
    with open(os.path.join(repo, "docker", "mosquitto", "mosquitto.conf")) as f:
        conf = f.read()
    active = [ln.split() for ln in conf.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    c.check(["set_tcp_nodelay", "true"] in active, "set_tcp_nodelay true missing")
    c.check(["persistence", "true"] in active, "persistence true missing")
    c.check(re.search(r"#.*Nagle.*\n(#.*\n)*set_tcp_nodelay true", conf, re.S) is not None,
            "set_tcp_nodelay must be explained by a comment (Nagle)")
    listeners = [ln[1:] for ln in active if ln[0] == "listener"]
    c.check(["1883"] in listeners and ["9001"] in listeners, f"listeners 1883 and 9001: {listeners}")
    c.check("password_file" in conf, "optional password_file not documented in the config")

    ports = {"1883": free_port(), "9001": free_port(), "1880": free_port()}
    with tempfile.TemporaryDirectory(prefix="docker_mosquitto_") as tmp:
        text = conf.replace("/mosquitto/data/", tmp + "/")
        for orig, new in ports.items():
            text = re.sub(rf"^listener {orig}\b", f"listener {new}", text, flags=re.M)
        cfg = os.path.join(tmp, "mosquitto.conf")
        with open(cfg, "w") as f:
            f.write(text)
        log = open(os.path.join(tmp, "log"), "w")
        proc = subprocess.Popen(["mosquitto", "-c", cfg], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", ports["1880"]), 0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.1)
            c.check(proc.poll() is None, "mosquitto exited with the docker config: " +
                    open(os.path.join(tmp, "log")).read())
            # The compose healthcheck command, on the healthcheck listener.
            r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(ports["1880"]),
                                "-t", "$SYS/broker/uptime", "-C", "1", "-W", "5"],
                               capture_output=True, text=True, timeout=15)
            c.check(r.returncode == 0 and "seconds" in r.stdout, f"healthcheck listener: {r.stderr}")
            for name in ("1883", "9001"):
                try:
                    socket.create_connection(("127.0.0.1", ports[name]), 1).close()
                    ok = True
                except OSError:
                    ok = False
                c.check(ok, f"listener {name} not accepting connections")
            # The gateway container's healthcheck script against the real broker.
            hc = os.path.join(repo, "docker", "iiotgw", "healthcheck.sh")
            env = dict(os.environ, IIOTGW_HEALTH_MQTT_HOST="127.0.0.1",
                       IIOTGW_HEALTH_MQTT_PORT=str(ports["1883"]), IIOTGW_PREFIX="dockertest")
            env.pop("IIOTGW_MQTT_USER", None)
            r0 = subprocess.run(["/bin/sh", hc], env=dict(env, IIOTGW_PREFIX="dockertest-none"),
                                capture_output=True, text=True, timeout=20)
            c.check(r0.returncode != 0, "healthcheck passes with no status topic at all")
            for payload, healthy in (("online", True), ("offline", False)):
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(ports["1883"]), "-r",
                                "-q", "1", "-t", "dockertest/gateway/status", "-m", payload],
                               check=True, timeout=10)
                r = subprocess.run(["/bin/sh", hc], env=env, capture_output=True, text=True, timeout=20)
                c.check((r.returncode == 0) == healthy,
                        f"healthcheck with status {payload!r} exited {r.returncode}: {r.stdout}{r.stderr}")
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return c.finish("mosquitto")


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    cmd, repo = argv[1], os.path.abspath(argv[2])
    try:
        if cmd == "compose":
            return cmd_compose(repo)
        if cmd == "grafana" and len(argv) == 4:
            return cmd_grafana(repo, argv[3])
        if cmd == "build":
            return cmd_build(repo)
        if cmd == "mosquitto":
            return cmd_mosquitto(repo)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        print("FAIL:", e)
        return 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
