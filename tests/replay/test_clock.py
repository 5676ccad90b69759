"""test_clock.py — the replay clock's arithmetic through the real binary (--dry-run, no servers).

  * --clock packet --clock-start: every packet at start + (ts - first ts), its points and the
    dead-letter records at the capture's time;
  * the default anchor: the capture file's mtime minus its span (the last packet lands on the
    mtime), measured by a first pass;
  * a node reboot mid-capture (ts jumps back): the clock continues from the last packet, never
    runs back, and every point keeps its own timestamp;
  * --clock log: a line's defmt stamp where it has one, else its ts;
  * --clock-field / --clock-unit for other firmware (seconds in a nested field);
  * --speed: a 9.5 s capture at --speed 10 takes about a second, at max almost nothing; ticks
    come in virtual time between the packets; SIGTERM during a paced replay exits cleanly;
  * the config file's clock and replay sections, the retain policy and replay prefix in the
    --dry-run output;
  * hostile time values (huge, negative, not numbers) neither crash nor overflow;
  * bad clock options are refused with exit 1.
"""
import json
import os
import re
import signal
import subprocess
import time

from replaytest import (NS, START, START_NS, check, dry_headers, edit_packets, edit_ts,
                        expected_packets, packet_times, sample_lines, track, write_capture)
from gwtest import DEFAULT_RULE, iiotgw, run, tmpdir  # noqa: E402

d = tmpdir()
packets = expected_packets()
lines = sample_lines()


def dry(capture, *extra, rule=DEFAULT_RULE, timeout=60):
    r = run(["--dry-run", "-r", rule, "-s", "file:" + capture, "--deadletter", "none"]
            + list(extra), timeout=timeout)
    check(r.returncode == 0, "dry run %r exit %d\n%s" % (extra, r.returncode, r.stderr[-2000:]))
    return r


def rx(r):
    return [t for _, t in dry_headers(r.stdout)]


# --- packet clock with an explicit anchor -------------------------------------------------
sample = os.path.join(d, "sample.log")
write_capture(sample, lines)
r = dry(sample, "--clock", "packet", "--clock-start", START)
got = rx(r)
want = packet_times(packets)
check(len(got) == len(packets), "%d packet headers, want %d" % (len(got), len(packets)))
check(got == want, "packet clock: first differences %r" %
      [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w][:3])
check(got[0] == START_NS, "first packet at the anchor")
first_ts = int(packets[0]["ts"])
check(got[-1] == START_NS + (int(packets[-1]["ts"]) - first_ts) * 1000000, "last packet")
# the points carry the same time
w = [l for l in r.stdout.splitlines() if l.startswith("WRITE temperature,node=node1")]
check(w and w[0].endswith(" %d" % START_NS), "first point's timestamp: %r" % w[:1])
check("clock_replay_done" in r.stderr and "reboots=0" in r.stderr, r.stderr[-800:])
dead = [json.loads(l[len("DEADLETTER "):]) for l in r.stdout.splitlines()
        if l.startswith("DEADLETTER ")]
check(dead and all(x["time"].startswith("2026-01-01T00:") for x in dead),
      "dead-letter times follow the capture: %r" % [x["time"] for x in dead])

# --- default anchor: mtime minus span -----------------------------------------------------
mtime = 1770000000  # 2026-02-02T02:40:00Z
os.utime(sample, (mtime, mtime))
got = rx(dry(sample, "--clock", "packet"))
span = (int(packets[-1]["ts"]) - first_ts) * 1000000
check(got[-1] == mtime * NS, "default anchor: last packet %d, want the mtime %d" %
      (got[-1], mtime * NS))
check(got[0] == mtime * NS - span, "default anchor: first packet at mtime - span")

# --- a reboot mid-capture -----------------------------------------------------------------
cut = int(packets[100]["ts"])  # from this packet on, the node counts from 1500 ms again


def reboot(ts):
    return ts - cut + 1500 if ts >= cut else ts


rb_packets = edit_packets(packets, reboot)
rb = os.path.join(d, "reboot.log")
write_capture(rb, edit_ts(lines, reboot))
r = dry(rb, "--clock", "packet", "--clock-start", START)
got = rx(r)
want = packet_times(rb_packets)
check(got == want, "reboot: first differences %r" %
      [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w][:3])
check(all(b > a for a, b in zip(got, got[1:])), "times strictly increase across the reboot")
check(got[100] == got[99] + 1500 * 1000000, "after the reboot: last time + new uptime")
check("event=clock_reboot" in r.stderr and "reboots=1" in r.stderr, r.stderr[-1500:])

# --- log clock: the defmt stamp where the line has one ------------------------------------
r = dry(sample, "--clock", "log", "--clock-start", START)
got = dict(dry_headers(r.stdout))
ups = []
stamped = 0
for i, ln in enumerate(lines):
    if b'{"ts":' not in ln:
        continue
    m = re.match(rb"^(?:\x1b\[[0-9;]*m)*(\d+)\.(\d+)[ \t]", ln)
    if m:
        stamped += 1
        ups.append((i + 1, int(m.group(1)) * NS + int(m.group(2).ljust(9, b"0")[:9])))
    else:
        ups.append((i + 1, int(re.search(rb'\{"ts":(\d+)', ln).group(1)) * 1000000))
check(stamped >= 10, "the sample has stamped telemetry lines (%d)" % stamped)
times = dict(zip([n for n, _ in ups], track([u for _, u in ups], START_NS, 2 * NS)))
bad = [(n, got[n], times.get(n)) for n in got if got[n] != times.get(n)]
check(not bad, "log clock: first differences %r" % bad[:3])
stamp_line = next(n for n, u in ups if u % 1000000000 == 305000000)
check((got[stamp_line] - START_NS + ups[0][1]) % NS == 305000000,
      "a stamped line keeps the stamp's fraction")

# --- another firmware: uptime in seconds in a nested field --------------------------------
other = os.path.join(d, "other.log")
with open(other, "w") as f:
    for i, up in enumerate([100, 101.5, 160]):
        f.write('INFO  {"hdr":{"up":%s},"v":%d}\n' % (up, i))
rule = os.path.join(d, "rule.lua")
with open(rule, "w") as f:
    f.write("function on_packet(p, meta) gw.point('v', {}, {v = p.v}) end\n"
            "function on_tick(now) gw.publish('tick', gw.iso8601(now)) end\n")
r = dry(other, "--clock", "packet", "--clock-field", "hdr.up", "--clock-unit", "s",
        "--clock-start", START, rule=rule)
check(rx(r) == [START_NS, START_NS + 1500000000, START_NS + 60 * NS], "nested field in s: %r" % rx(r))
ticks = re.findall(r"^PUBLISH tick qos=1 retain=0 (\S+)$", r.stdout, re.M)
check(len(ticks) == 60 and ticks[0] == "2026-01-01T00:00:01Z" and ticks[-1] == "2026-01-01T00:01:00Z",
      "60 virtual ticks between the packets: %d %r" % (len(ticks), ticks[:2] + ticks[-1:]))
out = r.stdout.splitlines()
check(out.index("PUBLISH tick qos=1 retain=0 2026-01-01T00:00:02Z") <
      next(i for i, l in enumerate(out) if l.startswith("# ") and "rx_ns=%d" % (START_NS + 60 * NS) in l),
      "ticks are printed before the packet after the gap")

# --- --speed: a 9.5 s capture ---------------------------------------------------------------
short = os.path.join(d, "short.log")
write_capture(short, edit_ts(lines, lambda ts: ts if ts <= 13000 else None))


def timed(*extra):
    t0 = time.monotonic()
    r = dry(short, "--clock", "packet", "--clock-start", START, *extra)
    return time.monotonic() - t0, r


t_max, r = timed()
check(len(rx(r)) == 2, "short capture: 2 packets (%r)" % rx(r))
t_10, r10 = timed("--speed", "10")
t_5, _ = timed("--speed", "5")
check(rx(r10) == rx(r), "pacing does not change the times")
check(t_max < 0.8, "--speed max took %.2f s" % t_max)
check(0.7 < t_10 - t_max < 2.5, "--speed 10 over 9.5 s of capture took %.2f s (max %.2f s)" % (t_10, t_max))
check(1.5 < t_5 - t_max < 4.0, "--speed 5 took %.2f s" % t_5)

# --- pacing keeps order and time: a text line after a held packet is not earlier ----------
held = os.path.join(d, "held.log")
with open(held, "w") as f:
    f.write('{"ts":1000}\n{"ts":1500}\nplain text\n{"ts":2000}\n')
with open(rule, "w") as f:
    f.write("function on_packet(p, meta) gw.publish('p', meta.rx_ns) end\n"
            "function on_line(text, meta) gw.publish('l', meta.rx_ns) end\n")
r = dry(held, "--clock", "packet", "--clock-start", START, "--speed", "10", rule=rule)
seq = re.findall(r"^PUBLISH ([pl]) qos=1 retain=0 (\d+)$", r.stdout, re.M)
check(seq == [("p", str(START_NS)), ("p", str(START_NS + 500000000)),
              ("l", str(START_NS + 500000000)), ("p", str(START_NS + 1000000000))],
      "paced order and times: %r" % seq)

# --- SIGTERM during a paced replay: the held lines are dropped, the exit is clean ----------
p = subprocess.Popen([iiotgw(), "--dry-run", "-r", DEFAULT_RULE, "-s", "file:" + sample,
                      "--deadletter", "none", "--clock", "packet", "--clock-start", START,
                      "--speed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
p.send_signal(signal.SIGTERM)
out, err = p.communicate(timeout=20)
check(p.returncode == 0, "SIGTERM during pacing: exit %d\n%s" % (p.returncode, err[-1500:]))
check("event=clock_held_dropped" in err, "held lines dropped on SIGTERM: %s" % err[-1500:])
n = len(dry_headers(out))
check(1 <= n <= 3, "about one second of a real-time replay ran (%d packets)" % n)

# --- the config file's clock and replay sections; the retain policy as --dry-run shows it ----
conf = os.path.join(d, "lab.conf")
with open(conf, "w") as f:
    f.write('clock = {mode = "packet", start = "%s", field = "ts", unit = "ms"}\n'
            'replay = {retain = false, prefix = "lab"}\n' % START)
r = run(["--dry-run", "-c", conf, "-r", DEFAULT_RULE, "-s", "file:" + short, "--deadletter", "none"])
check(r.returncode == 0 and rx(r) == [START_NS, START_NS + 9500000000], "config file: %r %s"
      % (rx(r), r.stderr[-800:]))
pubs = re.findall(r"^PUBLISH (\S+) qos=\d retain=(\d)", r.stdout, re.M)
check(pubs and all(t.startswith("lab/iiot/") for t, _ in pubs), "replay.prefix: %r" % pubs[:3])
check(all(rt == "0" for _, rt in pubs), "no retain under the replay clock: %r" % pubs[:3])
r = run(["--dry-run", "-c", conf, "-r", DEFAULT_RULE, "-s", "file:" + short, "--deadletter", "none",
         "--replay-retain"])
check(("lab/iiot/node1/temperature", "1") in re.findall(r"^PUBLISH (\S+) qos=\d retain=(\d)",
                                                        r.stdout, re.M), "--replay-retain keeps it")
r = run(["--dry-run", "-r", DEFAULT_RULE, "-s", "file:" + short, "--deadletter", "none"])
check(("iiot/node1/temperature", "1") in re.findall(r"^PUBLISH (\S+) qos=\d retain=(\d)",
                                                   r.stdout, re.M), "receive clock: retain as before")

# --- hostile times: never a crash, an overflow or a hang (run under ASan+UBSan by the suite) --
hostile = os.path.join(d, "hostile.log")
with open(hostile, "w") as f:
    for v in ("1e400", "-5", '"x"', "null", "9223372036854775807", "4611686018427387903",
              "[1]", '{"ts":1}', "1.5e3", "0", "99999999999999999999"):
        f.write('{"ts":%s}\n9999999999.999999 INFO {"ts":%s}\n4000000000.5 INFO {"ts":1}\n'
                '{"ts":0}\n' % (v, v))
for mode in ("packet", "log"):
    r = dry(hostile, "--clock", mode, "--clock-start", START, timeout=60)
    check("runtime error" not in r.stderr and "clock_replay_done" in r.stderr,
          "hostile times under --clock %s: %s" % (mode, r.stderr[-1500:]))

# --- bad options ----------------------------------------------------------------------------
for args, what in ((["--clock", "wall"], "clock.mode"),
                   (["--clock", "packet", "--clock-start", "2026-01-01"], "clock.start"),
                   (["--clock", "packet", "--clock-unit", "min"], "clock.unit"),
                   (["--clock", "packet", "--clock-field", "a..b"], "clock.field"),
                   (["--speed", "10"], "clock.speed"),
                   (["--clock", "packet", "--speed", "0"], "clock.speed"),
                   (["--replay-prefix", "a/#"], "replay.prefix")):
    r = run(["--dry-run", "-r", DEFAULT_RULE, "-s", "file:" + short] + args)
    check(r.returncode == 1 and what in r.stderr, "%r: exit %d %r" % (args, r.returncode, r.stderr))
print("ok: packet, default anchor, reboot, log, nested field, speed 10 %.2f s / 5 %.2f s / max %.2f s"
      % (t_10, t_5, t_max))
