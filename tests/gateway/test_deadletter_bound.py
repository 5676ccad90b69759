"""The dead-letter file is bounded (src/deadletter.c, docs/reliability.md): 20,000 bad 4 KB
lines (80 MB of records unbounded) leave at most deadletter_max_bytes (default 8 MiB) in
STATE_DIR/deadletter.jsonl plus one rotated file .1, every record counted, the rotations in
the stats report; a record larger than the cap is dropped from the file and counted."""
import json
import os
import re

from gwtest import DEFAULT_RULE, check, run, tmpdir

CAP = 8 * 1024 * 1024   # the documented default of deadletter_max_bytes
N = 20000
d = tmpdir()
data = os.path.join(d, "bad.txt")
with open(data, "w") as f:
    for i in range(N):
        # balanced but invalid JSON, 4 KB each: every line is dead-lettered as invalid_json
        f.write('{"n1": %d, "junk": x%s}\n' % (i, "y" * 4000))
sd = os.path.join(d, "state")
r = run(["-r", DEFAULT_RULE, "--mqtt", "none", "-s", "file:" + data, "--state-dir", sd],
        timeout=120)
check(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr[-2000:]))
path = os.path.join(sd, "deadletter.jsonl")
files = sorted(n for n in os.listdir(sd) if n.startswith("deadletter"))
sizes = {n: os.path.getsize(os.path.join(sd, n)) for n in files}
print("files:", sizes)
check(files == ["deadletter.jsonl", "deadletter.jsonl.1"],
      "want the current file and one rotated file, got %s" % files)
check(all(s <= CAP for s in sizes.values()), "a dead-letter file exceeds the cap: %s" % sizes)
check(sum(sizes.values()) > CAP, "the files should hold more than one cap's worth: %s" % sizes)
# Both files are whole JSON lines (rotation happens between records), the newest last.
for n in files:
    with open(os.path.join(sd, n)) as f:
        recs = [json.loads(l) for l in f]
    check(recs and all(x["reason"] == "invalid_json" for x in recs), "%s: bad records" % n)
with open(path) as f:
    last = json.loads(f.read().splitlines()[-1])
check('"n1": %d,' % (N - 1) in last["data"], "the newest record must be the last line read")

stats = [l for l in r.stderr.splitlines() if "event=stats " in l][-1]
vals = dict(re.findall(r"(\w+)=(\S+)", stats))
print("stats: deadletter=%s rotations=%s drops=%s bytes=%s" % (
    vals.get("deadletter"), vals.get("deadletter_rotations"), vals.get("deadletter_drops"),
    vals.get("deadletter_bytes")))
check(int(vals["deadletter"]) == N, "every bad line is counted: %s" % vals.get("deadletter"))
check(int(vals["deadletter_rotations"]) >= 9, "rotations not counted: %s" % stats)
check(int(vals["deadletter_bytes"]) == sizes["deadletter.jsonl"], "deadletter_bytes: %s" % stats)
check("event=deadletter_rotated" in r.stderr, "rotations are not logged")

# A record larger than the cap is not written, only counted (and logged once).
small = os.path.join(d, "small")
big = os.path.join(d, "big.txt")
with open(big, "w") as f:
    f.write('{"junk": x%s}\n' % ("y" * 70000))
r = run(["-r", DEFAULT_RULE, "--mqtt", "none", "-s", "file:" + big, "--state-dir", small,
         "-o", "max_line=100000", "-o", "deadletter_max_bytes=65536"])
vals = dict(re.findall(r"(\w+)=(\S+)", [l for l in r.stderr.splitlines() if "event=stats " in l][-1]))
check(r.returncode == 0 and vals["deadletter_drops"] == "1" and
      os.path.getsize(os.path.join(small, "deadletter.jsonl")) == 0 and
      "event=deadletter_record_dropped" in r.stderr,
      "an oversized record must be dropped and counted: exit %d %s" % (r.returncode, vals))
print("ok: %d bad 4 KB lines kept within %d bytes per file, 2 files" % (N, CAP))
