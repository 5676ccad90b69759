"""Dry run over the real-shaped sample session: exactly the expected packets come out, in
order, and each one gives exactly the default rule's publishes and points; the two cut-off lines
are dead-lettered with their source and line number."""
import re
import sys

from gwtest import (DEFAULT_RULE, SAMPLE_EXPECTED, SAMPLE_LOG, check, expected_outputs, fail,
                    parse_dry_run, parse_raw, run, sample_facts)

r = run(["--dry-run", "-r", DEFAULT_RULE, "-s", "file:" + SAMPLE_LOG, "--log-level", "warn"])
check(r.returncode == 0, "exit code %d, stderr:\n%s" % (r.returncode, r.stderr))

recs = parse_dry_run(r.stdout)
packets = [x for x in recs if re.match(r"# file0:\d+ rx_ns=\d+$", x["hdr"])]
with open(SAMPLE_EXPECTED) as f:
    expected = [parse_raw(l) for l in f if l.strip()]
check(len(packets) == len(expected),
      "%d packets in dry-run output, expected %d" % (len(packets), len(expected)))

for i, (rec, obj) in enumerate(zip(packets, expected)):
    pubs, pts = expected_outputs(obj)
    rx = rec["hdr"].rsplit("rx_ns=", 1)[1]
    got_pts = []
    for w in rec["write"]:
        body, _, ts = w.rpartition(" ")
        check(ts == rx, "packet %d: point timestamp %s is not the receive time %s" % (i, ts, rx))
        got_pts.append(body)
    if sorted(rec["pub"]) != sorted(pubs):
        fail("packet %d (%s): publishes differ\n got: %s\nwant: %s"
             % (i, rec["hdr"], sorted(rec["pub"]), sorted(pubs)))
    if sorted(got_pts) != sorted(pts):
        fail("packet %d (%s): points differ\n got: %s\nwant: %s"
             % (i, rec["hdr"], sorted(got_pts), sorted(pts)))

# The telemetry lines the generator cut short (facts.json "cut_lines") must all be
# dead-lettered (kept), named by source and line, never salvaged; nothing else is unterminated.
cut_lines = sample_facts()["cut_lines"]
check(len(cut_lines) >= 2, "the sample should have cut lines: %r" % cut_lines)
dead = [d for x in recs for d in x["dead"]]
unterminated = [d for d in dead if d["reason"] == "unterminated"]
check(sorted(d["line"] for d in unterminated) == cut_lines,
      "expected the cut lines %r dead-lettered as unterminated, got %r" % (cut_lines, dead))
# newline="": the progress bars' carriage returns are not line ends (for iiotgw neither)
with open(SAMPLE_LOG, encoding="utf-8", errors="replace", newline="") as f:
    lines_of_log = f.read().split("\n")
for d in unterminated:
    check(d["source"] == "file0" and d["line"] > 0, "dead-letter without source/line: %r" % d)
    check('"ts"' in lines_of_log[d["line"] - 1], "dead-letter line %d is not the cut line" % d["line"])
check("line_rejected" in r.stderr and "reason=unterminated" in r.stderr,
      "the rejection was not logged:\n" + r.stderr)
print("ok: %d packets, %d dead-lettered" % (len(packets), len(dead)))
