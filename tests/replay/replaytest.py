"""replaytest.py — what the replay tests share: captures edited from the sample session, and
the times the replay clock must give (the arithmetic of src/clock.c, restated independently).

A capture is a list of raw lines (bytes, as probe-rs wrote them). Editing one never parses
the log noise: a telemetry line's `"ts":N` is found with a regular expression and rewritten,
or the line is dropped, so everything else of the sample (ANSI codes, cut lines, stamps)
stays as it was.
"""
import calendar
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import (SAMPLE_EXPECTED, SAMPLE_LOG, check, fail, parse_raw)  # noqa: E402,F401

TS = re.compile(rb'\{"ts":(\d+)')
STAMP = re.compile(rb"^(\d+)\.(\d+)[ \t]")
NS = 1000000000
START = "2026-01-01T00:00:00Z"


def iso_ns(s):
    """ns since the epoch of "2026-01-01T00:00:00Z" (whole seconds)."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) * NS


START_NS = iso_ns(START)


def sample_lines():
    with open(SAMPLE_LOG, "rb") as f:
        return f.read().split(b"\n")


def expected_packets():
    with open(SAMPLE_EXPECTED) as f:
        return [parse_raw(l) for l in f if l.strip()]


def edit_ts(lines, fn):
    """Lines with every `{"ts":N` replaced by fn(N); a line is dropped when fn returns None."""
    out = []
    for ln in lines:
        m = TS.search(ln)
        if not m:
            out.append(ln)
            continue
        v = fn(int(m.group(1)))
        if v is None:
            continue
        out.append(ln[:m.start(1)] + str(v).encode() + ln[m.end(1):])
    return out


def edit_packets(packets, fn):
    """The same edit on the expected packets (dicts with ts as text)."""
    out = []
    for p in packets:
        v = fn(int(p["ts"]))
        if v is None:
            continue
        q = dict(p)
        q["ts"] = str(v)
        out.append(q)
    return out


def write_capture(path, lines):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def track(uptimes_ns, start_ns, tolerance_ns=0):
    """Virtual times of successive uptime readings: the first at start_ns, then as the uptime
    moves; a step back (beyond tolerance) is a reboot right after the previous reading."""
    out, base, last_u, last_v = [], None, None, None
    for u in uptimes_ns:
        if base is None:
            base = start_ns - u
        elif u < last_u and last_u - u <= tolerance_ns:
            u = last_u
        elif u < last_u:
            base = last_v
        v = base + u
        if last_v is not None and v < last_v:
            v = last_v
        out.append(v)
        last_u, last_v = u, v
    return out


def packet_times(packets, start_ns=START_NS):
    """Receive time of each packet under --clock packet (field ts, ms)."""
    return track([int(p["ts"]) * 1000000 for p in packets], start_ns)


def offline_alerts(packets, times, tick_s=1, after=120):
    """The offline alerts rules/default.lua publishes, in order, as (node, state, time_s):
    ticks at start + k * tick before each packet, node1 seen when the packet has n1, node2 on
    every packet (see the rule)."""
    start = times[0]
    last, offline, out = {}, set(), []
    k = 1
    for p, t in zip(packets, times):
        while start + k * tick_s * NS <= t:
            now = start + k * tick_s * NS
            for node in sorted(last):
                if node not in offline and now - last[node] >= after * NS:
                    offline.add(node)
                    out.append((node, "firing", now // NS))
            k += 1
        nodes = (["node1"] if isinstance(p.get("n1"), dict) else []) + ["node2"]
        for node in nodes:
            if node in offline:
                offline.discard(node)
                out.append((node, "ok", t // NS))
            last[node] = t
    return out


def iso(s):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))


def dry_headers(text):
    """(line number, rx_ns) of every packet header of --dry-run output."""
    out = []
    for m in re.finditer(r"^# \S+:(\d+) rx_ns=(-?\d+)$", text, re.M):
        out.append((int(m.group(1)), int(m.group(2))))
    return out
