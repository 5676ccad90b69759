#!/usr/bin/python3
"""tests/docker/dashboards.py — every query the Docker stack's Grafana ships, run against real
databases, with the results checked.

Why: a dashboard panel that stays empty or an alert that never fires is a broken product, and
parsing the JSON cannot tell. There is no Grafana (nor Docker) in CI, so this file does what
Grafana does with a query: it substitutes the macros ($timeFilter, $__interval, $__range,
$__rate_interval, $node, ...) the way Grafana 11 renders them, sends the query to the database
over HTTP exactly as the datasource would, turns the answer into series, runs the server-side
expressions (reduce, math, threshold) of panels and alert rules, and compares the result with
what the data fed in must produce.

  influxql        REPO IIOTGW   the InfluxQL variant (the stack's default) on InfluxDB 1.6
                                (IIOTGW_TEST_INFLUX1_URL; InfluxDB 2 answers the same InfluxQL on
                                its v1 API); panels, variables, annotations, alert rules
  victoriametrics REPO IIOTGW   the VictoriaMetrics variant (MetricsQL) on private
                                victoria-metrics servers started with the compose file's flags
  vmalert         REPO IIOTGW   docker/vmalert/iiot-alerts.yml in a real vmalert against
                                VictoriaMetrics: which alerts become active
  names           REPO          InfluxQL, Flux and MetricsQL variants of every target and rule
                                query name the same measurements, fields, tag filters, grouping
  flux            REPO          every Flux query, macros substituted as Grafana does, parses and
                                type-checks (InfluxData's Flux parser, npm package
                                @influxdata/flux-lsp-node; skipped without it)

Data: two scenarios, built here with known timestamps (no sample capture): "fire" has a heat
excursion on node2 (40 °C for the last 8 min, above the default rule's temp_high), node1 silent
for the last 10 min (longer than offline_after), CRC failures on every frame of the last 15 min
and a second gateway whose stats stopped 10 min ago; "calm" has none of that. Three hours of
packets (one per 30 s) go through `iiotgw --dry-run` with rules/default.lua (so the line
protocol is exactly what the gateway writes) and are re-stamped to their scenario time; the
last packets are fed through the real daemon into the database (stamped now), which also writes
its own stats point. Gateway stats history is synthesized from the daemon's real stats line.

Exit 0 = pass, 1 = fail (every problem is printed), 77 = skipped (server or tool missing).
"""
import http.server
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

VARIANTS = ("influxql", "flux", "victoriametrics")
SKIP = 77
PACKET_EVERY = 30         # s between packets / stats points in the history
HISTORY = 3 * 3600        # s of history before "now"
LIVE_PACKETS = 3
MAX_DATA_POINTS = 1000    # what a ~1000 px wide panel asks for
DASH_RANGE = 6 * 3600     # dashboards' default time range (now-6h .. now)


class Checker:
    def __init__(self):
        self.failures, self.passes = [], 0

    def check(self, cond, what):
        if cond:
            self.passes += 1
        else:
            self.failures.append(what)
            print("FAIL:", what, flush=True)
        return cond

    def finish(self, name):
        print(f"{name}: {self.passes} checks passed, {len(self.failures)} failed", flush=True)
        return 1 if self.failures else 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_req(url, data=None, timeout=10, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# =============================================================================================
# Scenarios
# =============================================================================================
class Scenario:
    """What the gateway saw, as a function of time; also the source of every expected value."""

    def __init__(self, name, t0):
        self.name, self.t0 = name, t0
        self.fire = name == "fire"
        # history packet k at t0 - HISTORY + k*PACKET_EVERY, k = 0..n-1 (last one 30 s before t0)
        self.n_hist = HISTORY // PACKET_EVERY
        self.times = [t0 - HISTORY + k * PACKET_EVERY for k in range(self.n_hist)]
        self.gateways = ["gw-live", "gw-run"] + (["gw-dead"] if self.fire else [])
        self.first_err = min(k for k, t in enumerate(self.times) if self.age(t) <= 900)

    def age(self, t):
        return self.t0 - t

    def packet(self, k, t):
        """Packet k (history 0..n_hist-1, then the live ones) received at time t."""
        a = self.age(t)
        hot = self.fire and a <= 480
        silent1 = self.fire and a <= 600
        # fire: every frame of the last 15 min also counted a CRC failure (err keeps counting)
        err = k - self.first_err + 1 if self.fire and k >= self.first_err else 0
        return {"ts": 1000 * (k + 1), "id": "N2",
                "n1": {} if silent1 else {"t": 24.0, "h": 50.0, "g": 100000},
                "n2": {"t": 40.0 if hot else 26.0, "h": 45.0},
                "sig": {"rssi": -45, "snr": 10}, "sts": {"rx": k + 1, "err": err, "dup": 0}}

    def history(self):
        return [self.packet(k, t) for k, t in enumerate(self.times)]

    def live(self):
        return [self.packet(self.n_hist + i, self.t0) for i in range(LIVE_PACKETS)]

    def last_packet(self):
        return self.live()[-1]

    # gateway stats history: (gateway, t, {field: value}) — counters follow the packets
    def stats_history(self):
        out = []
        for gw in ("gw-live", "gw-dead"):
            if gw == "gw-dead" and not self.fire:
                continue
            end = 0 if gw == "gw-live" else 600
            for k, t in enumerate(self.times):
                a = self.age(t)
                if a < end:
                    continue
                f = {"packets": k + 1, "lines": k + 1, "points": 9 * (k + 1), "publishes": 9 * (k + 1),
                     "rule_time_us": 5.0, "rule_time_max_us": 80.0 if 3600 >= a > 3570 else 20.0,
                     "mqtt_queue": 250 if 1800 >= a > 1770 else 0, "mqtt_inflight": 0,
                     "spool_bytes": 65536 if 1800 >= a > 1770 else 4096,
                     "spool_pending_mqtt": 250 if 1800 >= a > 1770 else 0,
                     "spool_pending_influx": 40 if 1800 >= a > 1770 else 0,
                     "reloads": 1 if a <= 3600 else 0, "reload_failures": 0,
                     "deadletter": 2 if a <= 1800 else 0, "influx_rejected": 2 if a <= 1800 else 0,
                     "influx_batches": k, "influx_retries": 1 if a <= 2400 else 0,
                     "alerts_active": 0, "rule_errors": 1 if a <= 1200 else 0, "rule_overruns": 0,
                     "mqtt_reconnects": 1 if a <= 1500 else 0}
                out.append((gw, t, f))
        return out


def capture_line(pkt):
    # The receiver's RTT output as probe-rs shows it (docs/sources.md): log prefix + JSON.
    return "INFO  JSON sent via VCP: " + json.dumps(pkt, separators=(",", ":"))


def dry_run_lines(iiotgw, repo, packets, times, tmp):
    """Line protocol the gateway writes for each packet, re-stamped to times[i]; and the
    gateway's own stats line (template for the synthesized stats history)."""
    cap = os.path.join(tmp, "history.log")
    with open(cap, "w") as f:
        for p in packets:
            f.write(capture_line(p) + "\n")
    r = subprocess.run([iiotgw, "--dry-run", "-c", "none",
                        "-r", os.path.join(repo, "rules", "default.lua"),
                        "-s", "file:" + cap, "-o", "gateway_id=template"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"iiotgw --dry-run exited {r.returncode}: {r.stderr[-800:]}")
    out, stats, line_no = [], None, None
    for ln in r.stdout.splitlines():
        m = re.match(r"# \S+:(\d+) rx_ns=", ln)
        if m:
            line_no = int(m.group(1))
            continue
        if ln == "# stats":
            line_no = "stats"
            continue
        if ln.startswith("# "):
            line_no = None
            continue
        if ln.startswith("WRITE "):
            lp = ln[len("WRITE "):]
            if line_no == "stats":
                # the gateway's point; the per-source points (iiotgw_source,...) follow it
                if lp.startswith("iiotgw,"):
                    stats = lp
            elif isinstance(line_no, int):
                series_fields, _ts = lp.rsplit(" ", 1)
                out.append(f"{series_fields} {int(times[line_no - 1] * 1e9)}")
    if stats is None:
        raise RuntimeError("iiotgw --dry-run printed no stats line")
    return out, stats


def stats_lines(template, history):
    """Synthesized `iiotgw` points: the real stats line's fields and types, values replaced."""
    series, fields, _ = template.split(" ")
    out = []
    for gw, t, vals in history:
        fs = []
        for kv in fields.split(","):
            k, v = kv.split("=", 1)
            if k in vals:
                v = f"{int(vals[k])}i" if v.endswith("i") else repr(float(vals[k]))
            fs.append(f"{k}={v}")
        out.append(f"iiotgw,gateway={gw} {','.join(fs)} {int(t * 1e9)}")
    return out


def run_daemon(iiotgw, repo, scen, tmp, sink_args):
    """The live packets through the real daemon into the database (points stamped now).
    Returns the daemon's own stats (from its log line), which it also wrote as a point."""
    # A state directory of its own: the default one (as root /var/lib/iiotgw) is the
    # installed daemon's, and a test run must leave nothing there.
    cmd = [iiotgw, "-r", os.path.join(repo, "rules", "default.lua"), "-s", "stdin",
           "--mqtt", "none", "--deadletter", "none", "-o", "influx.linger=0.2",
           "--state-dir", os.path.join(tmp, "state-" + scen.name),
           "-o", "gateway_id=gw-run"] + sink_args
    err = open(os.path.join(tmp, f"daemon-{scen.name}.log"), "w+")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        # One line at a time, 50 ms apart: each packet gets its own receive timestamp.
        for pkt in scen.live():
            p.stdin.write(capture_line(pkt) + "\n")
            p.stdin.flush()
            time.sleep(0.05)
        p.stdin.close()
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err.seek(0)
    log = err.read()
    err.close()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {log[-1500:]}")
    stats = None
    for ln in log.splitlines():
        if "event=stats " in ln:
            stats = dict(kv.split("=", 1) for kv in ln.split("event=stats ", 1)[1].split())
    if stats is None:
        raise RuntimeError("the daemon logged no stats line: " + log[-800:])
    return {k: float(v) for k, v in stats.items()}


def build_lines(iiotgw, repo, scen, tmp):
    hist, template = dry_run_lines(iiotgw, repo, scen.history(), scen.times, tmp)
    return hist + stats_lines(template, scen.stats_history())


# =============================================================================================
# Grafana emulation: intervals, macros, template variables
# =============================================================================================
_ROUND = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
          (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
          (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
          (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
          (16200000, 10800000), (24300000, 21600000), (64800000, 43200000)]


def round_interval_ms(ms):
    """Grafana's rangeutil.roundInterval."""
    for limit, v in _ROUND:
        if ms <= limit:
            return v
    return 86400000


def parse_dur(s):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", s)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def fmt_dur(sec):
    """Grafana's interval text (secondsToHms-like): 20s, 1m, 5m, 2h."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if sec >= n and sec % n == 0:
            return f"{int(sec // n)}{unit}"
    return f"{int(sec * 1000)}ms"


def panel_interval(range_s, low_limit):
    """$__interval of a panel: rangeutil.calculateInterval(range, maxDataPoints, lowLimit)."""
    ms = round_interval_ms(range_s * 1000 / MAX_DATA_POINTS)
    return max(ms / 1000, low_limit)


def regex_escape(v):
    return re.sub(r"([\\^$*+?.()|{}\[\]/])", r"\\\1", v)


def var_value(lang, values):
    """A multi-value variable as Grafana interpolates it into a regex context."""
    esc = [regex_escape(v) for v in values]
    return esc[0] if len(esc) == 1 else "(" + "|".join(esc) + ")"


def interpolate(lang, text, frm, to, interval_s, variables, scrape_s=10):
    """Grafana's macro and variable substitution for one query."""
    rng = int(to - frm)
    if lang == "influxql":
        text = text.replace("$timeFilter", f"time >= {int(frm * 1000)}ms and time <= {int(to * 1000)}ms")
    text = text.replace("$__interval_ms", str(int(interval_s * 1000)))
    text = text.replace("$__rate_interval", fmt_dur(max(interval_s + scrape_s, 4 * scrape_s)))
    text = text.replace("$__interval", fmt_dur(interval_s)).replace("$interval", fmt_dur(interval_s))
    text = text.replace("$__range_s", str(rng)).replace("$__range", f"{rng}s")
    for name, values in variables.items():
        val = var_value(lang, values)
        text = text.replace("${%s:regex}" % name, val).replace("${%s}" % name, val)
        text = re.sub(r"\$%s\b" % re.escape(name), lambda m: val, text)
    return text


# =============================================================================================
# Datasources: query -> [(labels, [(t_s, value)])]
# =============================================================================================
class InfluxQL:
    lang = "influxql"

    def __init__(self, url, db):
        self.url, self.db = url, db

    def write(self, lines):
        body = ("\n".join(lines) + "\n").encode()
        st, txt = http_req(f"{self.url}/write?db={self.db}&precision=ns", body)
        if st != 204:
            raise RuntimeError(f"influx write: {st} {txt[:300]}")

    def raw(self, q):
        qs = urllib.parse.urlencode({"db": self.db, "q": q, "epoch": "ms"})
        st, txt = http_req(f"{self.url}/query", qs.encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        if st != 200:
            raise RuntimeError(f"HTTP {st}: {txt[:300]}")
        res = json.loads(txt)["results"][0]
        if "error" in res:
            raise RuntimeError(res["error"])
        return res.get("series", [])

    def query(self, target_text, frm, to, interval_s, variables, instant=None):
        q = interpolate("influxql", target_text, frm, to, interval_s, variables)
        assert not re.search(r"\$[A-Za-z_{]", q), f"unsubstituted macro in {q}"
        out = []
        for s in self.raw(q):
            cols = s["columns"]
            for ci in range(1, len(cols)):
                pts = [(row[0] / 1000.0, float(row[ci])) for row in s["values"] if row[ci] is not None]
                out.append((dict(s.get("tags") or {}), pts))
        return out, q

    def variable(self, query, frm, to):
        vals = []
        for s in self.raw(interpolate("influxql", query, frm, to, 10, {})):
            vals += [row[1] for row in s["values"]]
        return sorted(set(vals))

    def annotation(self, a, frm, to, variables):
        series, q = self.query(a["query"], frm, to, 10, variables)
        return [(lab, t, v) for lab, pts in series for t, v in pts], q


class Prometheus:
    lang = "promql"

    def __init__(self, url):
        self.url = url

    def write(self, lines):
        body = ("\n".join(lines) + "\n").encode()
        st, txt = http_req(f"{self.url}/api/v2/write?org=iiot&bucket=telemetry", body)
        if st not in (200, 204):
            raise RuntimeError(f"vm write: {st} {txt[:300]}")

    def api(self, path, params):
        st, txt = http_req(f"{self.url}{path}", urllib.parse.urlencode(params, doseq=True).encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        if st != 200:
            raise RuntimeError(f"HTTP {st}: {txt[:300]}")
        d = json.loads(txt)
        if d.get("status") != "success":
            raise RuntimeError(txt[:300])
        return d["data"]

    def query(self, expr, frm, to, interval_s, variables, instant=False):
        q = interpolate("promql", expr, frm, to, interval_s, variables)
        assert not re.search(r"\$[A-Za-z_{]", q), f"unsubstituted macro in {q}"
        if instant:
            data = self.api("/api/v1/query", {"query": q, "time": f"{to:.3f}"})
            return [(r["metric"], [(float(r["value"][0]), float(r["value"][1]))]) for r in data["result"]], q
        # Grafana aligns start and end to the step.
        step = interval_s
        start, end = math.floor(frm / step) * step, math.floor(to / step) * step
        data = self.api("/api/v1/query_range", {"query": q, "start": start, "end": end, "step": f"{step:g}s"})
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]], q

    def variable(self, query, frm, to):
        # Grafana's label_values(metric, label) is the series API's label values, range-bound
        text = query["query"] if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
        data = self.api(f"/api/v1/label/{m.group(2)}/values",
                        {"match[]": m.group(1), "start": int(frm), "end": int(to)})
        return sorted(data)

    def annotation(self, a, frm, to, variables):
        step = parse_dur(a.get("step", "60s"))
        series, q = self.query(a["expr"], frm, to, step, variables)
        return [(lab, t, v) for lab, pts in series for t, v in pts], q


# =============================================================================================
# Server-side expressions (Grafana SSE): reduce, math, threshold
# =============================================================================================
def reduce_series(series, fn):
    out = []
    for labels, pts in series:
        vals = [v for _, v in pts if not math.isnan(v)]
        if not vals:
            continue
        v = {"mean": statistics.fmean(vals), "last": vals[-1], "max": max(vals),
             "min": min(vals), "sum": sum(vals), "count": len(vals)}[fn]
        out.append((labels, [(pts[-1][0], v)]))
    return out


def _key(labels):
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def math_expr(expression, results):
    """$A op $B ...: operands joined on identical label sets (or an operand without labels),
    point-wise on equal timestamps — what SSE does for numbers and series."""
    refs = sorted(set(re.findall(r"\$([A-Z])", expression)))
    base = results[refs[0]]
    out = []
    for labels, pts in base:
        k = _key(labels)
        others = {}
        for r in refs:
            cand = [s for s in results[r] if _key(s[0]) == k or not s[0] or not labels]
            if not cand:
                break
            others[r] = dict(cand[0][1]) if len(cand[0][1]) > 1 or len(pts) > 1 else {None: cand[0][1][0][1]}
        else:
            newpts = []
            for t, _ in pts:
                env = {}
                for r in refs:
                    m = others[r]
                    v = m.get(None, m.get(t)) if None in m else m.get(t)
                    if v is None:
                        break
                    env[r] = v
                else:
                    expr = re.sub(r"\$([A-Z])", lambda mm: f"env['{mm.group(1)}']", expression)
                    try:
                        v = eval(expr, {"__builtins__": {}}, {"env": env})  # noqa: S307 (own files)
                    except ZeroDivisionError:
                        v = math.nan
                    newpts.append((t, float(v)))
            out.append((labels, newpts))
    return out


def threshold(series, op, value):
    res = []
    for labels, pts in series:
        v = pts[-1][1]
        fire = (v > value) if op == "gt" else (v < value) if op == "lt" else None
        res.append((labels, v, bool(fire) and not math.isnan(v)))
    return res


def run_targets(ds, targets, frm, to, interval_s, variables, c, where):
    """Every target of a panel or rule: datasource queries, then expressions in order."""
    results, texts = {}, {}
    for t in targets:
        ref = t["refId"]
        dsref = t.get("datasource") or {}
        if dsref.get("uid") == "__expr__" or t.get("type") in ("reduce", "math", "threshold"):
            if t["type"] == "reduce":
                results[ref] = reduce_series(results[t["expression"]], t["reducer"])
            elif t["type"] == "math":
                results[ref] = math_expr(t["expression"], results)
            continue
        text = t.get("query") if ds.lang == "influxql" else t.get("expr")
        try:
            results[ref], texts[ref] = ds.query(text, frm, to, interval_s, variables,
                                                instant=t.get("instant", False))
        except (RuntimeError, AssertionError, urllib.error.URLError) as e:
            c.check(False, f"{where} {ref}: query failed: {e}\n    {text}")
            results[ref] = []
    return results, texts


# =============================================================================================
# Expectations: what every panel must show for a scenario
# =============================================================================================
def by_tag(series, tag):
    out = {}
    for labels, pts in series:
        out.setdefault(labels.get(tag, ""), []).extend(v for _, v in pts)
    return out


def approx(a, b, tol=1e-6):
    return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))


class Expect:
    """Checks on one result (a refId's series) — each returns an error text or None."""

    def __init__(self, tag=None, series=None, optional=(), **checks):
        self.tag, self.series, self.optional, self.checks = tag, series, set(optional), checks

    def verify(self, series):
        errs = []
        groups = by_tag(series, self.tag) if self.tag else {"": [v for _, pts in series for _, v in pts]}
        if self.series is not None:
            got = set(groups) - self.optional
            if got != set(self.series):
                errs.append(f"series {sorted(groups)} want {sorted(self.series)}"
                            + (f" (optional {sorted(self.optional)})" if self.optional else ""))
        for key, conds in self.checks.items():
            key = "" if key == "all" else key
            vals = groups.get(key)
            if not vals:
                errs.append(f"{key or 'result'}: no values")
                continue
            for cond, want in conds.items():
                got = {"last": vals[-1], "max": max(vals), "min": min(vals),
                       "median": statistics.median(vals), "count": len(vals)}.get(cond)
                if cond == "within":
                    bad = [v for v in vals if not any(approx(v, w) for w in want)]
                    if bad:
                        errs.append(f"{key or 'result'}: values {sorted(set(bad))[:5]} not in {want}")
                elif cond == "range":
                    if not all(want[0] - 1e-9 <= v <= want[1] + 1e-9 for v in vals):
                        errs.append(f"{key or 'result'}: values outside {want}: {sorted(set(vals))[:6]}")
                elif cond == "positive":
                    if not vals[-1] > 0:
                        errs.append(f"{key or 'result'}: last value {vals[-1]} not > 0")
                elif isinstance(want, tuple):
                    if not (want[0] <= got <= want[1]):
                        errs.append(f"{key or 'result'}: {cond} {got} not in [{want[0]}, {want[1]}]")
                elif not approx(got, want):
                    errs.append(f"{key or 'result'}: {cond} {got} want {want}")
        return errs


def expectations(s, run_stats, node_sel):
    """{(dashboard uid, panel title): {refId: Expect}} for scenario s with $node = node_sel."""
    last = s.last_packet()
    fire = s.fire
    nodes = [n for n in ("node1", "node2") if n in node_sel]
    n2t = 40.0 if fire else 26.0
    live_err, live_rx = last["sts"]["err"], last["sts"]["rx"]
    gws = ["gw-live", "gw-dead"] if fire else ["gw-live"]
    opt_run = ["gw-run"]       # one point, stamped now: in instant results, maybe in range ones
    g = {"tag": "gateway", "series": gws, "optional": opt_run}

    def gwx(**per_live):
        return Expect(**g, **{"gw-live": per_live})

    temp_vals = {"node1": {"within": [24.0]}, "node2": {"within": [26.0, 40.0] if fire else [26.0],
                                                          "max": n2t, "last": n2t}}
    env = "iiot-environmental"
    sig = "iiot-signal"
    gw = "iiot-gateway"
    return {
        (env, "Node 1 temperature"): {"A": Expect(all={"last": 24.0})},
        (env, "Node 1 humidity"): {"A": Expect(all={"last": 50.0})},
        (env, "Node 2 temperature"): {"A": Expect(all={"last": n2t})},
        (env, "Node 2 humidity"): {"A": Expect(all={"last": 45.0})},
        (env, "Temperature comparison"): {"A": Expect("node", nodes, **{n: temp_vals[n] for n in nodes})},
        (env, "Humidity comparison"): {"A": Expect("node", nodes, **{n: {"within": [50.0 if n == "node1" else 45.0]}
                                                                    for n in nodes})},
        (env, "Gas resistance (air quality)"): {"A": Expect("node", ["node1"], node1={"within": [100000.0]})},
        (env, "Node status"): {"A": Expect("node", nodes, **{
            n: ({"last": 0.0} if fire and n == "node1" else {"positive": True}) for n in nodes})},
        (sig, "RSSI"): {"A": Expect(all={"last": -45.0})},
        (sig, "SNR"): {"A": Expect("node", ["signal"], signal={"within": [10.0]})},
        (sig, "Packets received"): {"A": Expect(all={"last": float(live_rx)})},
        (sig, "Error rate"): {"E": Expect(all={"last": 100.0 * live_err / (live_err + live_rx)})},
        (sig, "Packet loss & retransmissions"): {
            # 10 frames per full 5 min bucket; the current bucket also holds the live packets
            "A": Expect(all={"max": (10.0, 13.0) if fire else 0.0, "min": 0.0}),
            "B": Expect(all={"median": 10.0, "max": (10.0, 13.0)}),
            "C": Expect(all={"max": 50.0 if fire else 0.0, "range": (0.0, 50.0 if fire else 0.0)})},
        # InfluxQL derivatives use bucket times: 30 s samples in 20 s buckets are 20 or 40 s apart
        (gw, "Packets/s"): {"A": gwx(range=(1 / 40, 1 / 20)), "B": gwx(range=(9 / 40, 9 / 20)),
                            "C": gwx(range=(9 / 40, 9 / 20))},
        (gw, "Gateway status"): {"A": Expect("gateway", s.gateways, **{
            k: ({"last": 0.0} if k == "gw-dead" else {"positive": True}) for k in s.gateways})},
        (gw, "Active alerts"): {"A": Expect("gateway", s.gateways, **{
            "gw-live": {"last": 0.0}, "gw-run": {"last": run_stats["alerts_active"]}})},
        (gw, "Rule errors"): {"A": gwx(max=1.0, min=0.0), "B": gwx(max=0.0)},
        (gw, "Rule time"): {"A": gwx(within=[5.0]), "B": gwx(max=80.0, min=20.0)},
        (gw, "MQTT queue"): {"A": gwx(max=250.0, min=0.0), "B": gwx(max=0.0)},
        (gw, "MQTT reconnects"): {"A": gwx(max=1.0, min=0.0)},
        (gw, "InfluxDB batches and retries"): {"A": gwx(range=(1.5, 3.0)), "B": gwx(median=0.0, max=(1.0, 3.0))},
        (gw, "Spool depth"): {"A": gwx(max=65536.0, min=4096.0)},
        (gw, "Spool pending records"): {"A": gwx(max=250.0, min=0.0), "B": gwx(max=40.0, min=0.0)},
        (gw, "Rule reloads"): {"A": gwx(max=1.0, min=0.0), "B": gwx(max=0.0)},
        (gw, "Dead letters"): {"A": gwx(max=2.0, min=0.0), "B": gwx(max=2.0, min=0.0)},
    }


def rule_expectations(s):
    """{rule uid: {series key: firing?}}; "" is the key of a rule whose result has no labels."""
    if s.fire:
        return {"iiot-temperature-high": {"node2": True},
                "iiot-packet-error-rate": {"": True},
                "iiot-node-silent": {"node1": True, "node2": False},
                "iiot-gateway-offline": {"gw-dead": True, "gw-live": False, "gw-run": False}}
    return {"iiot-temperature-high": {"node1": False, "node2": False},
            "iiot-packet-error-rate": {"": False},
            "iiot-node-silent": {"node1": False, "node2": False},
            "iiot-gateway-offline": {"gw-live": False, "gw-run": False}}


def series_key(labels, static=()):
    """The node or gateway an alert instance is about (labels set by the rule itself aside)."""
    labels = {k: v for k, v in labels.items() if k not in static}
    return labels.get("gateway") or labels.get("node") or ""


# =============================================================================================
# Running every shipped query of one variant
# =============================================================================================
def load_variant(repo, variant):
    base = os.path.join(repo, "docker", "grafana", variant)
    dashes = []
    for fn in sorted(os.listdir(os.path.join(base, "dashboards"))):
        with open(os.path.join(base, "dashboards", fn)) as f:
            dashes.append(json.load(f))
    with open(os.path.join(base, "provisioning", "alerting", "iiot-alerts.yml")) as f:
        alerts = yaml.safe_load(f)
    with open(os.path.join(base, "provisioning", "datasources", "iiot.yml")) as f:
        ds = yaml.safe_load(f)["datasources"][0]
    return dashes, alerts, ds


def check_dashboards(c, ds, dashes, scen, run_stats, now, scrape_s, tested):
    frm, to = now - DASH_RANGE, now
    for d in dashes:
        var_values = {}
        for v in d["templating"]["list"]:
            got = ds.variable(v["query"], frm, to)
            want = {"node": ["node1", "node2"], "gateway": sorted(scen.gateways)}[v["name"]]
            c.check(got == want, f"{scen.name} {d['uid']} variable ${v['name']}: {got}, want {want}")
            var_values[v["name"]] = got
            tested.append(f"variable {d['uid']}/${v['name']} -> {got}")
        selections = [dict(var_values)]
        if "node" in var_values:
            selections.append(dict(var_values, node=["node2"]))
        for a in d["annotations"]["list"]:
            if a.get("builtIn"):
                continue
            for sel in selections:
                try:
                    points, q = ds.annotation(a, frm, to, sel)
                except (RuntimeError, AssertionError) as e:
                    c.check(False, f"{scen.name} {d['uid']} annotation {a['name']!r}: {e}")
                    continue
                nodes = {lab.get("node") for lab, _, _ in points}
                if scen.fire and "node2" in sel.get("node", []):
                    ok = points and nodes == {"node2"} and all(v >= 35 for _, _, v in points)
                else:
                    ok = not points
                c.check(ok, f"{scen.name} {d['uid']} annotation {a['name']!r} ($node={sel.get('node')}): "
                            f"{len(points)} points on {sorted(n for n in nodes if n)}\n    {q}")
                tested.append(f"annotation {d['uid']}/{a['name']} node={sel.get('node')}: {len(points)} points")
        for p in d["panels"]:
            for sel in selections if any("$node" in (t.get("query") or t.get("expr") or "")
                                         for t in p["targets"]) else selections[:1]:
                exp = expectations(scen, run_stats, sel.get("node", ["node1", "node2"])).get((d["uid"], p["title"]))
                where = f"{scen.name} {d['uid']} {p['title']!r} (node={sel.get('node', '-')})"
                if not c.check(exp is not None, f"{where}: the test has no expectation for this panel"):
                    continue
                low = parse_dur(p["interval"]) if p.get("interval") else scrape_s
                interval_s = panel_interval(to - frm, low)
                results, texts = run_targets(ds, p["targets"], frm, to, interval_s, sel, c, where)
                for ref, e in exp.items():
                    errs = e.verify(results.get(ref, []))
                    c.check(not errs, f"{where} {ref}: " + "; ".join(errs) +
                            (f"\n    {texts.get(ref, '(expression)')}" if errs else ""))
                refs = [t["refId"] for t in p["targets"] if not t.get("hide")]
                shown = [t["refId"] for t in p["targets"] if not t.get("hide") and t.get("type") != "reduce"]
                c.check(set(exp) >= set(shown),
                        f"{where}: visible targets {shown} but expectations only for {sorted(exp)}")
                for ref in refs:
                    n = sum(len(pts) for _, pts in results.get(ref, []))
                    tested.append(f"panel {d['uid']}/{p['title']} {ref} node={sel.get('node', '-')}: "
                                  f"{len(results.get(ref, []))} series, {n} points")


def check_alerts(c, ds, alerts, scen, now, tested):
    want = rule_expectations(scen)
    seen = set()
    for g in alerts["groups"]:
        for r in g["rules"]:
            seen.add(r["uid"])
            targets = []
            frm = now - r["data"][0]["relativeTimeRange"]["from"]
            for q in r["data"]:
                m = dict(q["model"])
                if q["datasourceUid"] != "__expr__":
                    m["datasource"] = {"uid": q["datasourceUid"]}
                targets.append(m)
            where = f"{scen.name} rule {r['uid']}"
            results, texts = run_targets(ds, [t for t in targets if t.get("type") != "threshold"],
                                         frm, now, 10, {}, c, where)
            th = next(t for t in targets if t.get("type") == "threshold")
            ev = th["conditions"][0]["evaluator"]
            states = {}
            src = results.get(th["expression"], [])
            if not src:
                states = {"(no data)": r["noDataState"] == "Alerting"}
            for labels, v, fire in threshold(src, ev["type"], ev["params"][0]):
                states[series_key(labels)] = fire
            exp = want.get(r["uid"])
            c.check(states == exp, f"{where}: states {states}, want {exp}\n    " +
                    "\n    ".join(texts.values()))
            tested.append(f"rule {r['uid']}: {states}")
    c.check(seen == set(want), f"rules {sorted(seen)} vs expectations {sorted(want)}")


# =============================================================================================
# Commands
# =============================================================================================
def need(name):
    v = os.environ.get(name)
    if not v:
        print(f"SKIP: {name} not set (run through tests/run.sh or tests/servers.sh)")
        sys.exit(SKIP)
    return v


def cmd_influxql(repo, iiotgw):
    url = need("IIOTGW_TEST_INFLUX1_URL")
    c = Checker()
    dashes, alerts, dsconf = load_variant(repo, "influxql")
    c.check(dsconf["jsonData"]["version"] == "InfluxQL" and dsconf["jsonData"]["dbName"] == "telemetry",
            "influxql datasource: InfluxQL on database telemetry")
    scrape_s = parse_dur(dsconf["jsonData"]["timeInterval"])
    tested = []
    with tempfile.TemporaryDirectory(prefix="docker_dash_") as tmp:
        t0 = time.time()
        dbs = []
        try:
            for name in ("fire", "calm"):
                scen = Scenario(name, t0)
                db = f"dash_{name}_{os.getpid()}"
                dbs.append(db)
                ds = InfluxQL(url, db)
                ds.raw(f'CREATE DATABASE "{db}"')
                ds.write(build_lines(iiotgw, repo, scen, tmp))
                run_stats = run_daemon(iiotgw, repo, scen, tmp, ["--influx", url, "--influx-db", db])
                now = time.time()
                check_dashboards(c, ds, dashes, scen, run_stats, now, scrape_s, tested)
                check_alerts(c, ds, alerts, scen, now, tested)
        finally:
            for db in dbs:
                try:
                    InfluxQL(url, db).raw(f'DROP DATABASE "{db}"')
                except Exception:
                    pass
    for t in tested:
        print("ran:", t)
    return c.finish("influxql")


def vm_flags(repo):
    """The victoriametrics service's flags from docker-compose.yml (paths and ports are ours)."""
    with open(os.path.join(repo, "docker", "docker-compose.yml")) as f:
        svc = yaml.safe_load(f)["services"]["victoriametrics"]
    return [a for a in svc["command"] if not a.startswith(("-storageDataPath", "-httpListenAddr"))]


class VM:
    """A private victoria-metrics: the shared one also holds other tests' node1/node2 series."""

    def __init__(self, repo, tmp, name):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        flags = vm_flags(repo)
        self.offset = next((parse_dur(f.split("=", 1)[1]) for f in flags
                            if f.startswith("-search.latencyOffset=")), 30)
        self.log = open(os.path.join(tmp, f"vm-{name}.log"), "w")
        self.proc = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}",
                                      f"-storageDataPath={os.path.join(tmp, 'vm-' + name)}",
                                      "-loggerLevel=ERROR"] + flags, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if http_ok(self.url + "/health"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"victoria-metrics did not start with {flags}")

    def wait_series(self, match, n, timeout=15):
        """Wait until at least n series match."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, txt = http_req(f"{self.url}/api/v1/series?" + urllib.parse.urlencode(
                {"match[]": match, "start": int(time.time() - 86400)}))
            if st == 200 and len(json.loads(txt)["data"]) >= n:
                return True
            time.sleep(0.3)
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def http_ok(url):
    try:
        return http_req(url, timeout=1)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def feed_vm(repo, iiotgw, scen, tmp):
    vm = VM(repo, tmp, scen.name)
    ds = Prometheus(vm.url)
    ds.write(build_lines(iiotgw, repo, scen, tmp))
    run_stats = run_daemon(iiotgw, repo, scen, tmp, ["--influx", vm.url, "--influx-org", "iiot",
                                                      "--influx-bucket", "telemetry"])
    live_at = time.time()
    # Rows become searchable once VictoriaMetrics flushes them (every few seconds); a dashboard
    # refreshed that much later sees the same, the flush only saves the test the wait.
    http_req(vm.url + "/internal/force_flush")
    if not vm.wait_series('{__name__="iiotgw_packets"}', len(scen.gateways)):
        raise RuntimeError("VictoriaMetrics: the gateway's stats series did not appear")
    return vm, ds, run_stats, live_at


def settle(vm, live_at):
    # VictoriaMetrics answers queries near now as of now - latencyOffset: wait until the live
    # points are older than that, as a dashboard refreshed a few seconds later would.
    delay = live_at + vm.offset + 1.0 - time.time()
    if delay > 0:
        time.sleep(delay)


def cmd_victoriametrics(repo, iiotgw):
    if not shutil.which("victoria-metrics"):
        print("SKIP: victoria-metrics not installed")
        return SKIP
    c = Checker()
    dashes, alerts, dsconf = load_variant(repo, "victoriametrics")
    c.check(dsconf["type"] == "prometheus", "victoriametrics datasource must be a Prometheus one")
    scrape_s = parse_dur(dsconf["jsonData"]["timeInterval"])
    tested = []
    with tempfile.TemporaryDirectory(prefix="docker_dash_vm_") as tmp:
        t0 = time.time()
        vms = []
        try:
            feeds = []
            for name in ("fire", "calm"):
                scen = Scenario(name, t0)
                vm, ds, run_stats, live_at = feed_vm(repo, iiotgw, scen, tmp)
                vms.append(vm)
                feeds.append((scen, vm, ds, run_stats, live_at))
            for scen, vm, ds, run_stats, live_at in feeds:
                settle(vm, live_at)
                now = time.time()
                check_dashboards(c, ds, dashes, scen, run_stats, now, scrape_s, tested)
                check_alerts(c, ds, alerts, scen, now, tested)
        finally:
            for vm in vms:
                vm.stop()
    for t in tested:
        print("ran:", t)
    return c.finish("victoriametrics")


def catcher():
    """An Alertmanager stand-in for vmalert's notifier: (server, list of alerts posted)."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                received.extend(json.loads(body))
            except ValueError:
                pass
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, received


def vmalert_state(port, static):
    st, txt = http_req(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=2)
    if st != 200:
        return None
    return {(a["name"], series_key(a["labels"], static[a["name"]])): a["state"]
            for a in (json.loads(txt)["data"]["alerts"] or [])}


def cmd_vmalert(repo, iiotgw):
    for tool in ("victoria-metrics", "vmalert"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not installed")
            return SKIP
    c = Checker()
    rules_file = os.path.join(repo, "docker", "vmalert", "iiot-alerts.yml")
    r = subprocess.run(["vmalert", "-dryRun", "-rule=" + rules_file], capture_output=True, text=True, timeout=30)
    c.check(r.returncode == 0, f"vmalert -dryRun rejects {rules_file}: {r.stderr[-800:]}")
    with open(rules_file) as f:
        rules = yaml.safe_load(f)
    all_rules = {rl["alert"]: rl for g in rules["groups"] for rl in g["rules"]}
    static = {k: set(rl.get("labels", {})) for k, rl in all_rules.items()}
    with tempfile.TemporaryDirectory(prefix="docker_vmalert_") as tmp:
        # The shipped rules, evaluated every second instead of every 30 s / 1 min (test time).
        fast = yaml.safe_load(yaml.safe_dump(rules))
        for g in fast["groups"]:
            g["interval"] = "1s"
        fast_file = os.path.join(tmp, "rules.yml")
        with open(fast_file, "w") as f:
            yaml.safe_dump(fast, f)
        t0 = time.time()
        runs, vms = [], []
        try:
            for name in ("fire", "calm"):
                scen = Scenario(name, t0)
                vm, ds, run_stats, live_at = feed_vm(repo, iiotgw, scen, tmp)
                vms.append(vm)
                runs.append({"scen": scen, "vm": vm, "live_at": live_at})
            for run in runs:
                settle(run["vm"], run["live_at"])
                srv, received = catcher()
                port = free_port()
                log = open(os.path.join(tmp, f"vmalert-{run['scen'].name}.log"), "w")
                p = subprocess.Popen(["vmalert", "-rule=" + fast_file, "-datasource.url=" + run["vm"].url,
                                      f"-notifier.url=http://127.0.0.1:{srv.server_address[1]}",
                                      f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"],
                                     stdout=log, stderr=subprocess.STDOUT)
                run.update(srv=srv, received=received, port=port, log=log, proc=p, started=time.time())
            for run in runs:
                name = run["scen"].name
                want = {(uid, k): v for uid, m in rule_expectations(run["scen"]).items() for k, v in m.items()}
                want_active = {k for k, v in want.items() if v}
                firing_want = {k for k in want_active if all_rules[k[0]]["for"] in ("0s", 0)}
                state, got = {}, set()
                deadline = time.time() + 20
                while time.time() < deadline:
                    time.sleep(0.5)
                    try:
                        state = vmalert_state(run["port"], static)
                    except (OSError, urllib.error.URLError, ValueError):
                        state = None
                    if state is None:
                        continue
                    got = {(a["labels"].get("alertname"), series_key(a["labels"], static.get(
                        a["labels"].get("alertname"), ()))) for a in run["received"]}
                    # evaluated a few times (1 s interval), and notifications had time to go out
                    if set(state) >= want_active and got >= firing_want and time.time() - run["started"] > 4:
                        break
                state = state or {}
                c.check(set(state) == want_active,
                        f"vmalert {name}: active alerts {sorted(state.items())}, want {sorted(want_active)}")
                for k, st in sorted(state.items()):
                    rule_for = all_rules[k[0]]["for"]
                    want_st = "firing" if rule_for in ("0s", 0) else "pending"
                    c.check(st == want_st, f"vmalert {name}: {k} is {st}, want {want_st} (for: {rule_for})")
                c.check(got == firing_want, f"vmalert {name}: notifier received {sorted(got)}, want {sorted(firing_want)}")
                print(f"ran: vmalert {name}: active {sorted(state.items())}; notified {sorted(got)}")
            c.check(set(all_rules) == set(rule_expectations(Scenario("fire", t0))),
                    f"vmalert rules {sorted(all_rules)} vs expectations")
        finally:
            for run in runs:
                p = run.get("proc")
                if p:
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    run["log"].close()
                    run["srv"].shutdown()
                    run["srv"].server_close()
            for vm in vms:
                vm.stop()
    return c.finish("vmalert")


# =============================================================================================
# names: the three variants of a query use the same measurements, fields, tags
# =============================================================================================
def names_influxql(q):
    aliases = set(re.findall(r'\bAS\s+"([^"]+)"', q))
    ms = set(re.findall(r'FROM\s+"([^"]+)"', q))
    fields = {f for f in re.findall(r'\(\s*"([^"]+)"', q) if f not in aliases}
    fields |= set(re.findall(r'SELECT\s+"([^"]+)"\s+FROM', q))
    tags = set(re.findall(r"\"(\w+)\"\s*=\s*'([^']*)'", q))
    tags |= {(t, "$" + v) for t, v in re.findall(r'"(\w+)"\s*=~\s*/\^\$(\w+)\$/', q)}
    group = set()
    for g in re.findall(r"GROUP BY ([^)]*?)(?:\s+fill\(|\)|$)", re.sub(r"time\([^)]*\)", "time", q)):
        group |= {x for x in re.findall(r'"(\w+)"', g)}
    return {"measurements": ms, "fields": fields, "tags": tags, "group": group}


def names_flux(q):
    return {"measurements": set(re.findall(r'_measurement\s*==\s*"([^"]+)"', q)),
            "fields": set(re.findall(r'_field\s*==\s*"([^"]+)"', q)),
            "tags": set(re.findall(r'r\.(?!_)(\w+)\s*==\s*"([^"]*)"', q))
            | {(t, "$" + v) for t, v in re.findall(r"r\.(\w+)\s*=~\s*/\^\$\{(\w+):regex\}\$/", q)},
            "group": {x for g in re.findall(r"group\(columns:\s*\[([^\]]*)\]", q) for x in re.findall(r'"(\w+)"', g)}}


def names_prom(q):
    metrics = set(re.findall(r"\b([a-z][a-z0-9_]*_[a-z0-9_]+)\s*(?:\{|\[)", q))
    tags = set(re.findall(r'(\w+)="([^"]*)"', q)) | {(t, v) for t, v in re.findall(r'(\w+)=~"(\$\w+)"', q)}
    group = {x.strip() for g in re.findall(r"by \(([^)]*)\)", q) for x in g.split(",") if x.strip()}
    return {"metrics": metrics, "tags": tags, "group": group}


def variant_queries(repo, variant):
    """{(where, refId): query text} of every datasource query a variant ships."""
    dashes, alerts, _ = load_variant(repo, variant)
    out = {}
    key = "expr" if variant == "victoriametrics" else "query"
    for d in dashes:
        for p in d["panels"]:
            for t in p["targets"]:
                if key in t:
                    out[(f"{d['uid']}/{p['title']}", t["refId"])] = t[key]
        for a in d["annotations"]["list"]:
            if key in a:
                out[(f"{d['uid']}/annotation {a['name']}", "")] = a[key]
        for v in d["templating"]["list"]:
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out[(f"{d['uid']}/${v['name']}", "")] = q
    for g in alerts["groups"]:
        for r in g["rules"]:
            for q in r["data"]:
                if key in q["model"]:
                    out[(f"rule {r['uid']}", q["refId"])] = q["model"][key]
    return out


def variable_names(q, lang):
    """Variable queries: measurement and tag key."""
    if lang == "influxql":
        m = re.search(r'FROM "([^"]+)" WITH KEY = "([^"]+)"', q)
        return m and (m.group(1), m.group(2))
    if lang == "flux":
        m = re.search(r'tag: "([^"]+)".*_measurement == "([^"]+)"', q, re.S)
        return m and (m.group(2), m.group(1))
    m = re.search(r"label_values\((\w+), (\w+)\)", q)
    return m and (m.group(1).rsplit("_", 1)[0] if m.group(1).startswith("iiotgw") else m.group(1)[:-len("_value")],
                  m.group(2))


def cmd_names(repo):
    c = Checker()
    iql, flx, prm = (variant_queries(repo, v) for v in VARIANTS)
    c.check(set(iql) == set(flx) == set(prm),
            f"the variants ship different targets: only influxql {sorted(set(iql) - set(prm))}, "
            f"only flux {sorted(set(flx) ^ set(iql))}, only victoriametrics {sorted(set(prm) - set(iql))}")
    for k in sorted(set(iql) & set(flx) & set(prm)):
        where = f"{k[0]} {k[1]}".strip()
        if k[0].split("/")[-1].startswith("$"):
            a, b, p = variable_names(iql[k], "influxql"), variable_names(flx[k], "flux"), variable_names(prm[k], "promql")
            c.check(a is not None and a == b == p, f"{where}: variable names influxql {a}, flux {b}, vm {p}")
            continue
        a, b, p = names_influxql(iql[k]), names_flux(flx[k]), names_prom(prm[k])
        c.check(bool(a["measurements"]) and bool(a["fields"]), f"{where}: no measurement/field in {iql[k]!r}")
        for part in ("measurements", "fields", "tags", "group"):
            c.check(a[part] == b[part], f"{where}: {part} influxql {sorted(a[part])} != flux {sorted(b[part])}")
        want_metrics = {f"{m}_{f}" for m in a["measurements"] for f in a["fields"]}
        c.check(p["metrics"] == want_metrics, f"{where}: metrics {sorted(p['metrics'])} != {sorted(want_metrics)}")
        c.check(p["tags"] == a["tags"], f"{where}: label filters {sorted(p['tags'])} != influxql {sorted(a['tags'])}")
        c.check(p["group"] == a["group"], f"{where}: grouping {sorted(p['group'])} != influxql {sorted(a['group'])}")
    print(f"names: compared {len(iql)} queries across {', '.join(VARIANTS)}")
    return c.finish("names")


# =============================================================================================
# flux: the Flux variant parses and type-checks (no InfluxDB 2 here to run it)
# =============================================================================================
FLUX_CHECK_JS = r"""
const flux = require(process.argv[2]);
const queries = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = {};
for (const [k, q] of Object.entries(queries)) {
  let errs = [];
  try {
    const m = JSON.stringify(flux.parse(q)).match(/"errors":\[[^\]]+\]/g);
    if (m) errs = m;
  } catch (e) { errs = [String(e)]; }
  if (!flux.is_valid_flux(q)) errs.push('is_valid_flux: false');
  out[k] = errs;
}
console.log(JSON.stringify(out));
"""


def flux_module():
    """Path of the @influxdata/flux-lsp-node package (tests/setup.sh installs it globally)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=30).stdout.strip()
    path = os.path.join(root, "@influxdata", "flux-lsp-node")
    return path if os.path.isdir(path) else None


def interpolate_flux(q, frm, to, interval_s, variables):
    """Grafana's Flux datasource: v.* are replaced by literals, ${var:regex} by a regex."""
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    q = q.replace("v.timeRangeStart", iso(frm)).replace("v.timeRangeStop", iso(to))
    q = q.replace("v.windowPeriod", fmt_dur(interval_s)).replace("v.defaultBucket", '"telemetry"')
    for name, values in variables.items():
        q = q.replace("${%s:regex}" % name, var_value("flux", values))
    return q


def cmd_flux(repo):
    mod = flux_module()
    if not mod:
        print("SKIP: node + @influxdata/flux-lsp-node not installed (tests/setup.sh installs them)")
        return SKIP
    c = Checker()
    now = time.time()
    qs = {f"{k[0]} {k[1]}".strip(): interpolate_flux(q, now - DASH_RANGE, now, 20,
                                                     {"node": ["node1", "node2"], "gateway": ["gw-a", "gw-b"]})
          for k, q in variant_queries(repo, "flux").items()}
    with tempfile.TemporaryDirectory(prefix="docker_flux_") as tmp:
        js = os.path.join(tmp, "check.js")
        with open(js, "w") as f:
            f.write(FLUX_CHECK_JS)
        r = subprocess.run(["node", js, mod], input=json.dumps(qs), capture_output=True, text=True, timeout=60)
    if not c.check(r.returncode == 0, f"node flux check exited {r.returncode}: {r.stderr[-800:]}"):
        return c.finish("flux")
    res = json.loads(r.stdout)
    for k, errs in sorted(res.items()):
        c.check(not errs, f"{k}: Flux does not parse/type-check: {' '.join(errs)[:500]}\n    {qs[k]}")
    c.check(len(res) == len(qs) and len(qs) > 0, f"checked {len(res)} of {len(qs)} Flux queries")
    print(f"flux: {len(qs)} queries parsed and type-checked with {os.path.basename(mod)}")
    return c.finish("flux")


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    cmd, repo = argv[1], os.path.abspath(argv[2])
    try:
        if cmd == "names":
            return cmd_names(repo)
        if cmd == "flux":
            return cmd_flux(repo)
        if len(argv) != 4:
            print(__doc__)
            return 2
        iiotgw = argv[3]
        return {"influxql": cmd_influxql, "victoriametrics": cmd_victoriametrics,
                "vmalert": cmd_vmalert}[cmd](repo, iiotgw)
    except (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError) as e:
        print("FAIL:", type(e).__name__, e)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
