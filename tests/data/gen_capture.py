#!/usr/bin/env python3
"""gen_capture.py — generate the sample probe-rs session of tests/data/ from the firmware simulator.

    gen_capture.py --sim build/tests/data/capture_sim            # rewrite the files here
    gen_capture.py --sim build/tests/data/capture_sim --check    # regenerate into a temporary
                                                                 # directory, compare byte for byte

capture_sim (firmware/board/host/capture_sim.c) runs node 1 and node 2 — the real application
code, sensor drivers over the emulated sensors, the simulated radios with loss and corruption —
on one manual clock, and prints what node 2 wrote on its RTT console and on USART2, stamped with
its uptime. This script wraps that console output the way real probe-rs/defmt RTT sessions look
when people capture them to a file: the flash progress bars first (redrawn with carriage returns
and ANSI codes), then every log line in one of four layouts chosen at random per line

    INFO  telemetry {...}                    + "└─ emit @ firmware/app/node2.c:54"   (defmt)
    ESC[32mINFO ESC[0m telemetry {...}       + a dimmed location line               (colour)
    123.456000 INFO  telemetry {...}         + location                             (timestamps)
    [INFO] telemetry {...} (node2 firmware/app/node2.c:54)                          (legacy)

with some location lines left out, a few probe-side lines (one with a non-JSON brace pair),
a few telemetry lines cut short (the probe lost the link in the middle of a line, so the line
ends early) and a few harmless damaged text lines (a cut location line, an ANSI sequence cut
by the end of the line).

It writes, from its own knowledge of what it emitted (never by running iiotgw):
    probe-rs-session.log             the capture
    probe-rs-session.expected.jsonl  every telemetry object a correct reader extracts, in order
    probe-rs-session.facts.json      line/packet counts, the cut lines' numbers, the simulator
                                     counters — what tests assert instead of magic numbers
Everything is determined by SEED (the simulator's and this script's random choices).
"""
import argparse
import filecmp
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = "probe-rs-session"
SEED = 7
# 2000 simulated seconds (~200 packets) of a node carried around (RSSI/SNR vary) over a lossy
# link with some corruption and lost ACKs (retransmissions, duplicates, CRC errors), and a
# marginal SHT3x on node 2 (some packets lack n2.t or n2.h).
SIM_ARGS = ["--duration", "2000", "--loss", "0.06", "--corrupt", "0.04", "--ack-loss", "0.03",
            "--distance", "90", "--swing", "0.7", "--start-hour", "8.5", "--sht-error", "0.04",
            "--node1-delay-ms", "2300"]
CUT_TELEMETRY = 3   # telemetry lines cut short
LAYOUTS = (("defmt", 50), ("colour", 20), ("stamp", 15), ("legacy", 15))
COLOUR = {"INFO": "32", "WARN": "33", "ERROR": "31"}
SPIN = "⠁⠂⠄⡀⢀⠠⠐⠈"


def run_sim(sim, seed):
    out = subprocess.run([sim, "--seed", str(seed)] + SIM_ARGS, check=True, capture_output=True,
                         text=True).stdout
    events, data, summary = [], [], None
    pending = None
    for rec in out.splitlines():
        tag, rest = rec.split("\t", 1)
        if tag == "S":
            summary = json.loads(rest)
            continue
        ms, text = rest.split("\t", 1)
        ms = int(ms)
        if tag == "D":
            data.append(text)
        elif text.startswith("└─ "):
            pending["loc"] = text[len("└─ "):]
        else:
            level, msg = text[:5].strip(), text[6:]
            pending = {"ms": ms, "level": level, "msg": msg, "loc": None}
            events.append(pending)
    if summary is None:
        sys.exit("capture_sim printed no summary")
    return events, data, summary


def progress(rng, label, total_kib, secs, rate):
    """One probe-rs progress bar: its redraws separated by '\\r', the final frame last."""
    frames, width = [], 24
    steps = rng.randint(5, 8)
    for i in range(steps):
        done = total_kib * i / steps
        fill = int(width * i / steps)
        bar = "#" * fill + (">" if fill < width else "") + "-" * max(0, width - fill - 1)
        frames.append("\x1b[2K%13s %s [00:00:%02d] [%s] %6.2f KiB/%.2f KiB @ %.2f KiB/s (eta %ds )"
                      % (label, SPIN[i % len(SPIN)], int(secs * i / steps), bar, done, total_kib,
                         rate * (0.6 + 0.4 * i / steps), int(secs * (steps - i) / steps)))
    frames.append("\x1b[2K%13s \x1b[32m✔\x1b[0m [00:00:%02d] [%s] %.2f KiB/%.2f KiB @ %.2f KiB/s "
                  "(eta 0s )" % (label, secs, "#" * width, total_kib, total_kib, rate))
    return "\r".join(frames)


def location_suffix(loc):
    """'emit @ firmware/app/node2.c:54' -> 'node2 firmware/app/node2.c:54' (legacy layout)."""
    path = loc.split(" @ ", 1)[1] if " @ " in loc else loc
    return "node2 " + path


def render(rng, ev):
    """The line(s) of one firmware log event, in a randomly chosen layout."""
    layout = rng.choices([n for n, _ in LAYOUTS], [w for _, w in LAYOUTS])[0]
    lvl, msg, loc = ev["level"], ev["msg"], ev["loc"]
    if layout == "legacy":
        return ["[%s] %s (%s)" % (lvl, msg, location_suffix(loc))]
    if layout == "colour":
        head = "\x1b[%sm%-5s\x1b[0m %s" % (COLOUR[lvl], lvl, msg)
        tail = "\x1b[2m└─ %s\x1b[0m" % loc
    elif layout == "stamp":
        head = "%.6f %-5s %s" % (ev["ms"] / 1000.0, lvl, msg)
        tail = "└─ " + loc
    else:
        head = "%-5s %s" % (lvl, msg)
        tail = "└─ " + loc
    # probe-rs prints the location only when the firmware's defmt data has it
    return [head] if rng.random() < 0.15 else [head, tail]


def cut(rng, line):
    """The line cut short somewhere inside its JSON object (after the "ts" key's value begins,
    and at least 8 bytes before its end, so the object can never be complete)."""
    start = line.index('{"ts":') + len('{"ts":') + 1
    return line[:rng.randint(start, len(line) - 8)]


def generate(sim, seed):
    rng = random.Random(seed)
    events, data, summary = run_sim(sim, seed)
    telemetry = [i for i, ev in enumerate(events) if ev["msg"].startswith("telemetry {")]
    if [events[i]["msg"][len("telemetry "):] for i in telemetry] != data:
        sys.exit("RTT telemetry lines differ from the USART2 lines")
    # cut lines: spread over the session, never the first or last packets
    cuts = set(rng.sample(telemetry[5:-5], CUT_TELEMETRY))
    text_events = [i for i, ev in enumerate(events) if i not in telemetry and ev["loc"]]
    cut_loc = rng.choice(text_events)
    broken_csi = rng.choice([i for i in text_events if i != cut_loc])
    probe_note = rng.choice(telemetry[len(telemetry) // 2:-5])

    lines = [progress(rng, "Erasing", 128.0, 1, 98.31) + "\r",
             progress(rng, "Programming", 36.0, 3, 11.84) + "    Finished in 4.12s",
             "\x1b]0;probe-rs attach\x07      Attached to RTT up channel 0 "
             "{name: \"Terminal\", size: 1024, mode: NoBlockSkip}"]
    expected, cut_lines = [], []
    cut_loc_due = False
    for i, ev in enumerate(events):
        if i == probe_note:
            lines.append(" WARN probe_rs::rtt: RTT read stalled for 1.2 s, re-attaching "
                         "{core: 0, channel: 0}")
        out = render(rng, ev)
        if i in cuts:
            head = cut(rng, out[0])
            if out[0].startswith("[") and rng.random() < 0.5:
                head += " (" + location_suffix(ev["loc"]) + ")"
            out = [head]  # the rest of the event never arrived
            cut_lines.append(len(lines) + 1)
        elif i in telemetry:
            expected.append(ev["msg"][len("telemetry "):])
        cut_loc_due = cut_loc_due or i == cut_loc
        if cut_loc_due and len(out) == 2 and i not in telemetry:
            out[1] = out[1][:rng.randint(8, len(out[1]) - 4)]
            cut_loc_due = False
        if i == broken_csi:
            out[0] += "\x1b[3"
        lines += out
    log = "".join(l + "\n" for l in lines)
    facts = {
        "generator": "tests/data/gen_capture.py (capture_sim %s)" % " ".join(
            ["--seed", str(seed)] + SIM_ARGS),
        "lines": len(lines),
        "bytes": len(log.encode()),
        "packets": len(expected),
        "telemetry_lines": len(telemetry),
        "cut_lines": cut_lines,
        "first_ts": json.loads(expected[0])["ts"],
        "last_ts": json.loads(expected[-1])["ts"],
        "simulator": summary,
    }
    return log, "".join(e + "\n" for e in expected), json.dumps(facts, indent=1) + "\n"


def write(outdir, sim, seed):
    log, exp, facts = generate(sim, seed)
    for suffix, text in ((".log", log), (".expected.jsonl", exp), (".facts.json", facts)):
        with open(os.path.join(outdir, BASE + suffix), "w", encoding="utf-8", newline="") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", required=True, help="path of the capture_sim binary")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", default=HERE, help="output directory (default: tests/data)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare with --out")
    a = ap.parse_args()
    if not a.check:
        write(a.out, a.sim, a.seed)
        return 0
    tmp = tempfile.mkdtemp(prefix="iiotgw-gencap-")
    try:
        write(tmp, a.sim, a.seed)
        bad = [s for s in (".log", ".expected.jsonl", ".facts.json")
               if not filecmp.cmp(os.path.join(tmp, BASE + s), os.path.join(a.out, BASE + s),
                                  shallow=False)]
        for s in bad:
            print("FAIL: %s%s differs from what the generator writes for seed %d "
                  "(regenerate: %s --sim %s)" % (BASE, s, a.seed, sys.argv[0], a.sim))
        if not bad:
            print("ok: %s.{log,expected.jsonl,facts.json} are exactly what seed %d generates"
                  % (BASE, a.seed))
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
